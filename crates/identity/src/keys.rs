//! Token signing keys: Ed25519 (JWS `EdDSA`), kept in the database so every node of a
//! deployment signs with the same key and publishes the same JWKS.
//!
//! - The newest key that is not retired signs. `carebridge keys rotate` retires it and makes a
//!   new one at once.
//! - A retired key stays in the JWKS for [`MAX_TOKEN_TTL_MS`] after its retirement, so every
//!   token it signed can still be verified until it expires; then it drops out.
//! - Verification accepts only `EdDSA` with a known `kid` (never `alg: none`, never a key
//!   carried in the token).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carebridge_domain::Timestamp;
use carebridge_store::{Db, Exec, StoreError, Tx, exec, run, sqlx};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The longest lifetime of any token this server signs (access and ID tokens): one hour.
pub const MAX_TOKEN_TTL_MS: i64 = 3_600_000;

/// The active signing key.
pub struct SigningKey {
    pub kid: String,
    key: EncodingKey,
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// A fresh Ed25519 key: `(kid, pkcs8 der, public x)`. The kid is derived from the public key.
fn generate() -> Result<(String, Vec<u8>, String), StoreError> {
    let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(corrupt)?;
    let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(corrupt)?;
    let public = pair.public_key().as_ref().to_vec();
    let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(&public)[..12]);
    Ok((kid, doc.as_ref().to_vec(), URL_SAFE_NO_PAD.encode(public)))
}

async fn insert_new(tx: &mut Tx, now: Timestamp) -> Result<String, StoreError> {
    let (kid, der, x) = generate()?;
    exec!(tx, c => sqlx::query(
        "INSERT INTO signing_keys (kid, alg, private_der, public_x, created_at) VALUES ($1, 'EdDSA', $2, $3, $4)")
        .bind(&kid).bind(&der).bind(&x).bind(now.as_millisecond()).execute(c).await)?;
    Ok(kid)
}

async fn active_row(x: &mut impl Exec) -> Result<Option<(String, Vec<u8>)>, StoreError> {
    Ok(run!(x, c => sqlx::query_as(
        "SELECT kid, private_der FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC, kid LIMIT 1")
        .fetch_optional(c).await)?)
}

/// Makes sure a signing key exists (first start); returns the active key id.
pub async fn ensure(db: &Db, now: Timestamp) -> Result<String, StoreError> {
    let mut tx = db.begin().await?;
    let kid = match active_row(&mut tx).await? {
        Some((kid, _)) => kid,
        None => insert_new(&mut tx, now).await?,
    };
    tx.commit().await?;
    Ok(kid)
}

/// Retires the active key and creates a new one; returns the new key id.
pub async fn rotate(db: &Db, now: Timestamp) -> Result<String, StoreError> {
    let mut tx = db.begin().await?;
    exec!(&mut tx, c => sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
        .bind(now.as_millisecond()).execute(c).await)?;
    let kid = insert_new(&mut tx, now).await?;
    tx.commit().await?;
    Ok(kid)
}

/// The active signing key.
pub async fn active(db: &Db) -> Result<SigningKey, StoreError> {
    let mut c = db.read().await?;
    let (kid, der) = active_row(&mut c)
        .await?
        .ok_or_else(|| corrupt("no signing key (the server creates one on start)"))?;
    Ok(SigningKey {
        kid,
        key: EncodingKey::from_ed_der(&der),
    })
}

/// The published keys: the active one and those retired less than [`MAX_TOKEN_TTL_MS`] ago,
/// newest first, as `(kid, x)`.
pub async fn published(db: &Db, now: Timestamp) -> Result<Vec<(String, String)>, StoreError> {
    let mut c = db.read().await?;
    Ok(run!(&mut c, c => sqlx::query_as(
        "SELECT kid, public_x FROM signing_keys WHERE retired_at IS NULL OR retired_at > $1 ORDER BY COALESCE(retired_at, 9223372036854775807) DESC, created_at DESC, kid")
        .bind(now.as_millisecond() - MAX_TOKEN_TTL_MS).fetch_all(c).await)?)
}

/// The JWKS document (RFC 7517) of [`published`].
pub async fn jwks(db: &Db, now: Timestamp) -> Result<Value, StoreError> {
    let keys: Vec<Value> = published(db, now)
        .await?
        .into_iter()
        .map(|(kid, x)| json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid, "x": x}))
        .collect();
    Ok(json!({ "keys": keys }))
}

impl SigningKey {
    /// Signs `claims` as a compact JWS with this key's `kid`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, StoreError> {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &self.key).map_err(corrupt)
    }
}

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("not a well-formed token")]
    Malformed,
    #[error("signed with an algorithm other than EdDSA")]
    Algorithm,
    #[error("signed by a key this server does not publish")]
    UnknownKey,
    #[error("signature, expiry, issuer or audience check failed: {0}")]
    Invalid(String),
}

/// The `kid` in a token's header, if it has one (to pick, or fetch, the key before verifying).
pub fn kid_of(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).ok().and_then(|h| h.kid)
}

/// Verifies a token against the published keys: `EdDSA` only, known `kid`, signature, the
/// given issuer and audience, and `exp` after `now` (the clock is a parameter, as everywhere).
pub fn verify<T: DeserializeOwned>(
    token: &str,
    published: &[(String, String)],
    issuer: &str,
    audience: &str,
    now: Timestamp,
) -> Result<T, TokenError> {
    verify_with(token, published, issuer, &[audience], Some(now))
}

/// [`verify`] for any of several audiences; with `now: None` an expired token passes too
/// (for `id_token_hint` at sign-out and for revocation, where only the signature matters).
pub fn verify_with<T: DeserializeOwned>(
    token: &str,
    published: &[(String, String)],
    issuer: &str,
    audiences: &[&str],
    now: Option<Timestamp>,
) -> Result<T, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if header.alg != Algorithm::EdDSA {
        return Err(TokenError::Algorithm);
    }
    let kid = header.kid.ok_or(TokenError::UnknownKey)?;
    let (_, x) = published
        .iter()
        .find(|(k, _)| *k == kid)
        .ok_or(TokenError::UnknownKey)?;
    let key = DecodingKey::from_ed_components(x).map_err(|_| TokenError::UnknownKey)?;
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_issuer(&[issuer]);
    v.set_audience(audiences);
    v.leeway = 0;
    v.validate_exp = false;
    v.set_required_spec_claims(&["exp", "iss", "aud"]);
    let data = jsonwebtoken::decode::<Value>(token, &key, &v)
        .map_err(|e| TokenError::Invalid(e.to_string()))?;
    if let Some(now) = now {
        match data.claims.get("exp").and_then(Value::as_i64) {
            Some(exp) if exp > now.as_second() => {}
            _ => return Err(TokenError::Invalid("expired".into())),
        }
    }
    serde_json::from_value(data.claims).map_err(|e| TokenError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Claims {
        iss: String,
        aud: String,
        sub: String,
        exp: i64,
    }

    fn key() -> (SigningKey, Vec<(String, String)>) {
        let (kid, der, x) = generate().unwrap();
        (
            SigningKey {
                kid: kid.clone(),
                key: EncodingKey::from_ed_der(&der),
            },
            vec![(kid, x)],
        )
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_795_000_000).unwrap()
    }

    fn claims(exp: i64) -> Claims {
        Claims {
            iss: "https://id.example".into(),
            aud: "portal".into(),
            sub: "p1".into(),
            exp,
        }
    }

    #[test]
    fn signs_and_verifies_and_refuses_the_rest() {
        let (k, published) = key();
        let far = 4_000_000_000;
        let t = k.sign(&claims(far)).unwrap();
        let got: Claims = verify(&t, &published, "https://id.example", "portal", now()).unwrap();
        assert_eq!(got, claims(far));
        // Wrong audience, wrong issuer, expired.
        assert!(matches!(
            verify::<Claims>(&t, &published, "https://id.example", "backend", now()),
            Err(TokenError::Invalid(_))
        ));
        assert!(verify::<Claims>(&t, &published, "https://evil", "portal", now()).is_err());
        let old = k.sign(&claims(now().as_second())).unwrap();
        assert!(verify::<Claims>(&old, &published, "https://id.example", "portal", now()).is_err());
        // A key this server does not publish.
        let (other, _) = key();
        let foreign = other.sign(&claims(far)).unwrap();
        assert_eq!(
            verify::<Claims>(&foreign, &published, "https://id.example", "portal", now())
                .unwrap_err(),
            TokenError::UnknownKey
        );
        // `alg: none` with the right kid and claims.
        let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let none = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "kid": published[0].0})),
            b64(&serde_json::to_value(claims(far)).unwrap())
        );
        assert!(
            verify::<Claims>(&none, &published, "https://id.example", "portal", now()).is_err()
        );
        // A tampered payload keeps the signature of the original.
        let parts: Vec<&str> = t.split('.').collect();
        let mut c = claims(far);
        c.sub = "admin".into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(&serde_json::to_value(c).unwrap()),
            parts[2]
        );
        assert!(matches!(
            verify::<Claims>(&forged, &published, "https://id.example", "portal", now()),
            Err(TokenError::Invalid(_))
        ));
    }
}
