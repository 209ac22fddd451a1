//! Signed pagination cursors. A cursor is the position after the last row of a page, serialised
//! and authenticated with an HMAC under a server key, so a tampered or foreign cursor is a clear
//! 400 rather than a confusing page.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::Sha256;
use std::sync::Arc;

use crate::error::ServiceError;

/// The server's cursor-signing key (shared by every node through the database).
#[derive(Clone)]
pub struct CursorKey(Arc<Vec<u8>>);

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(***)")
    }
}

const TAG_LEN: usize = 16;

impl CursorKey {
    pub fn new(key: Vec<u8>) -> Self {
        Self(Arc::new(key))
    }

    fn mac(&self, kind: &str, payload: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut m = match <Hmac<Sha256> as Mac>::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => return Vec::new(),
        };
        m.update(kind.as_bytes());
        m.update(&[0]);
        m.update(payload);
        m.finalize().into_bytes()[..TAG_LEN].to_vec()
    }

    /// Encodes a position; `kind` binds the cursor to one listing (a people cursor is not a
    /// units cursor).
    pub fn encode<T: Serialize>(&self, kind: &str, pos: &T) -> String {
        let payload = serde_json::to_vec(pos).unwrap_or_default();
        let tag = self.mac(kind, &payload);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// Decodes and verifies a cursor of listing `kind`.
    pub fn decode<T: DeserializeOwned>(&self, kind: &str, cursor: &str) -> Result<T, ServiceError> {
        let bad = || ServiceError::BadCursor;
        let (p, t) = cursor.split_once('.').ok_or_else(bad)?;
        let payload = URL_SAFE_NO_PAD.decode(p).map_err(|_| bad())?;
        let tag = URL_SAFE_NO_PAD.decode(t).map_err(|_| bad())?;
        let want = self.mac(kind, &payload);
        if want.is_empty()
            || !bool::from(subtle::ConstantTimeEq::ct_eq(
                want.as_slice(),
                tag.as_slice(),
            ))
        {
            return Err(bad());
        }
        serde_json::from_slice(&payload).map_err(|_| bad())
    }

    /// Cuts `limit + 1` fetched rows to a page of `limit` and encodes the position of the last
    /// row kept as the next cursor (absent when there was no extra row: the last page).
    pub fn page<T, K: Serialize>(
        &self,
        kind: &str,
        mut items: Vec<T>,
        limit: i64,
        key: impl Fn(&T) -> K,
    ) -> carebridge_proto::Page<T> {
        let keep = usize::try_from(limit).unwrap_or(0);
        let more = items.len() > keep;
        items.truncate(keep);
        let next_cursor = if more {
            items.last().map(|t| self.encode(kind, &key(t)))
        } else {
            None
        };
        carebridge_proto::Page { items, next_cursor }
    }

    /// Decodes an optional cursor.
    pub fn decode_opt<T: DeserializeOwned>(
        &self,
        kind: &str,
        cursor: Option<&str>,
    ) -> Result<Option<T>, ServiceError> {
        cursor.map(|c| self.decode(kind, c)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let k = CursorKey::new(vec![7; 32]);
        let c = k.encode("people", &("müller", 42));
        let back: (String, i32) = k.decode("people", &c).unwrap();
        assert_eq!(back, ("müller".to_string(), 42));
        assert!(k.decode::<(String, i32)>("units", &c).is_err());
        let mut t = c.clone();
        t.replace_range(0..1, if c.starts_with('A') { "B" } else { "A" });
        assert!(k.decode::<(String, i32)>("people", &t).is_err());
        assert!(k.decode::<(String, i32)>("people", "garbage").is_err());
        let other = CursorKey::new(vec![8; 32]);
        assert!(other.decode::<(String, i32)>("people", &c).is_err());
    }
}
