//! Pagination cursors. A cursor is the position after the last row of a page, serialised and
//! sealed (AES-256-GCM with a random nonce, the listing's name as associated data) under a key
//! derived from the server's cursor secret: a tampered or foreign cursor is a clear 400 rather
//! than a confusing page, and a caller cannot read what a position holds (a sort key may be a
//! name the caller is not shown; a sync position names people the caller does not see).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::Sha256;
use std::sync::Arc;

use crate::error::ServiceError;

/// The server's cursor key (shared by every node through the database).
#[derive(Clone)]
pub struct CursorKey(Arc<Vec<u8>>);

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(***)")
    }
}

impl CursorKey {
    pub fn new(key: Vec<u8>) -> Self {
        Self(Arc::new(key))
    }

    /// The AEAD key: HMAC-SHA256 of a fixed label under the server secret.
    fn sealing_key(&self) -> Option<LessSafeKey> {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).ok()?;
        m.update(b"carebridge cursor v2");
        let k = m.finalize().into_bytes();
        UnboundKey::new(&AES_256_GCM, &k).ok().map(LessSafeKey::new)
    }

    /// Encodes a position; `kind` binds the cursor to one listing (a people cursor is not a
    /// units cursor).
    pub fn encode<T: Serialize>(&self, kind: &str, pos: &T) -> String {
        let mut data = serde_json::to_vec(pos).unwrap_or_default();
        let mut nonce = [0u8; NONCE_LEN];
        let sealed = self.sealing_key().is_some_and(|key| {
            aws_lc_rs::rand::fill(&mut nonce).is_ok()
                && key
                    .seal_in_place_append_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(kind.as_bytes()),
                        &mut data,
                    )
                    .is_ok()
        });
        if !sealed {
            // Never a readable cursor: an empty one decodes to an error.
            return String::new();
        }
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Decodes and verifies a cursor of listing `kind`.
    pub fn decode<T: DeserializeOwned>(&self, kind: &str, cursor: &str) -> Result<T, ServiceError> {
        let bad = || ServiceError::BadCursor;
        let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
        if raw.len() < NONCE_LEN {
            return Err(bad());
        }
        let (n, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(n).map_err(|_| bad())?;
        let key = self.sealing_key().ok_or_else(bad)?;
        let mut buf = sealed.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(kind.as_bytes()), &mut buf)
            .map_err(|_| bad())?;
        serde_json::from_slice(plain).map_err(|_| bad())
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
        // Sealed: the position cannot be read from the cursor.
        let raw = URL_SAFE_NO_PAD.decode(&c).unwrap();
        assert!(!raw.windows(7).any(|w| w == "müller".as_bytes()));
        assert_ne!(
            c,
            k.encode("people", &("müller", 42)),
            "a fresh nonce each time"
        );
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
