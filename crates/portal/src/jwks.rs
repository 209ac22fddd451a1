//! The identity provider's signing keys, as the portal knows them: fetched from the issuer's
//! OpenID discovery document (`jwks_uri`), cached, and refetched
//!
//! - in the background when the copy is older than [`REFRESH_MS`] (requests keep being served
//!   with the cached keys meanwhile);
//! - at once when a token names a `kid` the cache does not hold (a rotation), at most once per
//!   [`RETRY_MS`] so that tokens with made-up key ids cannot make the portal hammer the issuer;
//! - never past [`MAX_AGE_MS`]: when the issuer stays unreachable that long, the cached keys
//!   expire and the portal refuses tokens with 503 instead of trusting keys it can no longer
//!   confirm.
//!
//! Verification itself (EdDSA only, known `kid`, issuer, audience `portal`, expiry) is the
//! identity provider's own [`carebridge_identity::keys::verify_with`], so the two sides apply
//! one rule. Time is a parameter, as everywhere.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use carebridge_domain::Timestamp;
use serde_json::Value;

/// A cached key set is refreshed in the background after this long (5 minutes).
pub const REFRESH_MS: i64 = 5 * 60_000;
/// Cached keys are not used past this age (1 hour, the longest token lifetime of the issuer).
pub const MAX_AGE_MS: i64 = 60 * 60_000;
/// Fetches for unknown key ids (or after a failure) at most this often (10 seconds).
pub const RETRY_MS: i64 = 10_000;

#[derive(Default)]
struct Snapshot {
    keys: Arc<Vec<(String, String)>>,
    fetched_at: Option<i64>,
    last_try: Option<i64>,
}

/// The key cache of one issuer.
pub struct Jwks {
    issuer: String,
    http: reqwest::Client,
    snap: RwLock<Snapshot>,
    fetching: tokio::sync::Mutex<()>,
}

/// Why no key set could be used.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error(
        "the identity provider {0} is unreachable and the cached keys have expired; try again later"
    )]
    Unavailable(String),
    #[error(
        "the token names a signing key the portal fetched moments ago without finding it; try again in 10 seconds"
    )]
    Refreshing,
}

impl Jwks {
    /// A cache for `issuer` (its `iss`, e.g. `https://id.example.ch`); nothing is fetched yet.
    pub fn new(issuer: &str) -> Arc<Jwks> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(3))
            .build()
            .unwrap_or_default();
        Arc::new(Jwks {
            issuer: issuer.trim_end_matches('/').to_string(),
            http,
            snap: RwLock::new(Snapshot::default()),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    fn read(&self) -> (Arc<Vec<(String, String)>>, Option<i64>, Option<i64>) {
        match self.snap.read() {
            Ok(s) => (s.keys.clone(), s.fetched_at, s.last_try),
            Err(p) => {
                let s = p.into_inner();
                (s.keys.clone(), s.fetched_at, s.last_try)
            }
        }
    }

    fn write(&self, f: impl FnOnce(&mut Snapshot)) {
        match self.snap.write() {
            Ok(mut s) => f(&mut s),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// The keys to verify a token with key id `kid` at `now`.
    pub async fn keys_for(
        self: &Arc<Self>,
        kid: Option<&str>,
        now: Timestamp,
    ) -> Result<Arc<Vec<(String, String)>>, JwksError> {
        let now_ms = now.as_millisecond();
        let (keys, fetched, last_try) = self.read();
        let fresh = fetched.is_some_and(|f| now_ms - f < MAX_AGE_MS);
        let known = kid.is_some_and(|k| keys.iter().any(|(id, _)| id == k));
        let may_try = last_try.is_none_or(|t| now_ms - t >= RETRY_MS);
        if fresh && known {
            if fetched.is_some_and(|f| now_ms - f >= REFRESH_MS) && may_try {
                let me = self.clone();
                tokio::spawn(async move { me.refresh(now_ms).await });
            }
            return Ok(keys);
        }
        if may_try {
            self.refresh(now_ms).await;
        } else {
            // A fetch may be under way (ours to wait for, not to repeat).
            drop(self.fetching.lock().await);
        }
        let (keys, fetched, _) = self.read();
        if fetched.is_none_or(|f| now_ms - f >= MAX_AGE_MS) {
            return Err(JwksError::Unavailable(self.issuer.clone()));
        }
        let known = kid.is_some_and(|k| keys.iter().any(|(id, _)| id == k));
        if !known && kid.is_some() && !may_try {
            // The key may be brand new (a rotation right after our last fetch) and the rate
            // limit kept us from fetching for this token: "try again shortly", not "invalid".
            // When this request did fetch, an unknown key is refused as such (401).
            return Err(JwksError::Refreshing);
        }
        Ok(keys)
    }

    /// One fetch at a time; a caller that waited for another's fetch does not fetch again.
    async fn refresh(&self, now_ms: i64) {
        let _guard = self.fetching.lock().await;
        let (_, _, last_try) = self.read();
        if last_try.is_some_and(|t| now_ms - t < RETRY_MS) {
            return;
        }
        self.write(|s| s.last_try = Some(now_ms));
        match self.fetch().await {
            Ok(keys) => self.write(|s| {
                s.keys = Arc::new(keys);
                s.fetched_at = Some(now_ms);
            }),
            Err(e) => {
                tracing::warn!(issuer = %self.issuer, error = %e, "fetching the identity provider's keys failed")
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<(String, String)>, String> {
        let conf: Value = self
            .http
            .get(format!("{}/.well-known/openid-configuration", self.issuer))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("discovery: {e}"))?
            .json()
            .await
            .map_err(|e| format!("discovery: {e}"))?;
        if conf.get("issuer").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err("the discovery document names another issuer".into());
        }
        let uri = conf
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or("the discovery document has no jwks_uri")?;
        let set: Value = self
            .http
            .get(uri)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("jwks: {e}"))?
            .json()
            .await
            .map_err(|e| format!("jwks: {e}"))?;
        Ok(ed25519_keys(&set))
    }
}

/// The Ed25519 signing keys of a JWKS document as `(kid, x)`; other key types are skipped.
pub fn ed25519_keys(set: &Value) -> Vec<(String, String)> {
    set.get("keys")
        .and_then(Value::as_array)
        .map(|keys| {
            keys.iter()
                .filter(|k| {
                    k.get("kty").and_then(Value::as_str) == Some("OKP")
                        && k.get("crv").and_then(Value::as_str) == Some("Ed25519")
                        && k.get("use")
                            .and_then(Value::as_str)
                            .is_none_or(|u| u == "sig")
                })
                .filter_map(|k| {
                    Some((
                        k.get("kid")?.as_str()?.to_string(),
                        k.get("x")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ed25519_signing_keys_count() {
        let set = serde_json::json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "kid": "a", "x": "xa", "use": "sig"},
            {"kty": "OKP", "crv": "X25519", "kid": "b", "x": "xb"},
            {"kty": "RSA", "kid": "c", "n": "…", "e": "AQAB"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "d", "x": "xd", "use": "enc"},
            {"kty": "OKP", "crv": "Ed25519", "x": "no kid"},
        ]});
        assert_eq!(ed25519_keys(&set), vec![("a".into(), "xa".into())]);
        assert!(ed25519_keys(&serde_json::json!({})).is_empty());
    }
}
