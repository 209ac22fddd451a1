//! What Carebridge clients put inside MLS application messages: a small JSON document, the
//! same for every client (CLI, web app), so that they understand each other.
//!
//! - `{"type":"text","text":"…"}`: a text message.
//! - `{"type":"attachment",…}`: a file encrypted on the sending device with a fresh
//!   AES-256-GCM key, uploaded as an opaque blob; the message carries the blob's id, the key,
//!   the nonce, the file's name, media type and size. The server never sees the key.
//!
//! A payload that is not such a document (e.g. from an older or foreign client) reads as
//! text, lossily decoded as UTF-8.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ClientError;

/// The decoded content of an application message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Content {
    Text { text: String },
    Attachment(AttachmentRef),
}

/// Everything a member needs to fetch and open an attachment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRef {
    /// The blob's id at `/api/v1/chat/groups/{duty}/attachments/{id}`.
    pub id: Uuid,
    /// The file name as the sender named it (a display name, never a path to write to
    /// unchecked).
    pub name: String,
    /// Media type, e.g. `image/jpeg`.
    pub mime: String,
    /// Size of the plaintext in bytes.
    pub size: u64,
    /// AES-256-GCM key (base64, 32 bytes).
    pub key: String,
    /// AES-GCM nonce (base64, 12 bytes).
    pub nonce: String,
}

impl Content {
    pub fn text(s: impl Into<String>) -> Content {
        Content::Text { text: s.into() }
    }

    /// The bytes that go into the MLS application message.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising these plain structs cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a decrypted payload; anything that is not a Carebridge document is text.
    pub fn decode(bytes: &[u8]) -> Content {
        serde_json::from_slice(bytes).unwrap_or_else(|_| Content::Text {
            text: String::from_utf8_lossy(bytes).into_owned(),
        })
    }
}

/// Encrypts `data` under a fresh key: the ciphertext to upload, and the key and nonce for
/// the message.
pub(crate) fn seal(data: &[u8], key: &[u8; 32], nonce: &[u8; 12]) -> Result<Vec<u8>, ClientError> {
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key))
        .encrypt(Nonce::from_slice(nonce), data)
        .map_err(|_| ClientError::State("could not encrypt the attachment".into()))
}

/// Opens a downloaded attachment; fails when the blob is not the one the message names
/// (wrong key, truncated or altered) or its size differs.
pub(crate) fn open(a: &AttachmentRef, blob: &[u8]) -> Result<Vec<u8>, ClientError> {
    let bad = |what: &str| ClientError::State(format!("attachment {}: {what}", a.id));
    let key = STANDARD.decode(&a.key).map_err(|_| bad("bad key"))?;
    let nonce = STANDARD.decode(&a.nonce).map_err(|_| bad("bad nonce"))?;
    if key.len() != 32 || nonce.len() != 12 {
        return Err(bad("bad key or nonce length"));
    }
    let plain = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key))
        .decrypt(Nonce::from_slice(&nonce), blob)
        .map_err(|_| bad("does not decrypt (altered or not the named file)"))?;
    if plain.len() as u64 != a.size {
        return Err(bad("size differs from the message"));
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_attachments_round_trip_and_foreign_payloads_read_as_text() {
        let t = Content::text("Grüezi");
        assert_eq!(Content::decode(&t.encode()), t);
        assert_eq!(
            Content::decode(b"plain bytes"),
            Content::text("plain bytes")
        );
        let key = [7u8; 32];
        let nonce = [9u8; 12];
        let blob = seal(b"%PDF-1.7 ...", &key, &nonce).unwrap();
        let a = AttachmentRef {
            id: Uuid::nil(),
            name: "plan.pdf".into(),
            mime: "application/pdf".into(),
            size: 12,
            key: STANDARD.encode(key),
            nonce: STANDARD.encode(nonce),
        };
        assert_eq!(open(&a, &blob).unwrap(), b"%PDF-1.7 ...");
        let mut altered = blob.clone();
        altered[0] ^= 1;
        assert!(open(&a, &altered).is_err());
        assert!(open(&a, &blob[..blob.len() - 1]).is_err());
        let c = Content::Attachment(a.clone());
        assert_eq!(Content::decode(&c.encode()), c);
    }
}
