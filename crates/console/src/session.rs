//! Signing in to the console: the console is a first-party OpenID Connect client of this very
//! server (`carebridge-console`, authorization code + PKCE, scope `admin`), and it keeps the
//! person's tokens in a cookie sealed with AES-256-GCM under a key derived from the server's
//! secret (any node can open it; the browser can neither read nor change it). The access token
//! lives 10 minutes and is refreshed here when it runs out; refreshes of one refresh token that
//! race (two tabs) share one answer, because a second use of a rotated refresh token would be
//! taken for a replay and revoke the sign-in. Each session carries a random CSRF token that
//! every form must echo.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, Method, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::api::{Api, Fail};

/// The session cookie.
pub const COOKIE: &str = "cb_console";
/// The pending sign-in (state, PKCE verifier, where to go afterwards), for 10 minutes.
pub const LOGIN_COOKIE: &str = "cb_console_login";
/// Sealing labels: a login cookie cannot pass for a session.
const SESSION_KIND: &str = "console-session";
const LOGIN_KIND: &str = "console-login";
/// A console session ends 12 hours after sign-in, like the identity session.
pub const SESSION_MS: i64 = 12 * 3_600_000;
/// Refresh this long before the access token runs out.
const REFRESH_EARLY_MS: i64 = 30_000;

/// What the console may show, found out at sign-in by asking the API.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Caps {
    pub people: bool,
    pub duties: bool,
    pub audit: bool,
    pub settings: bool,
}

/// A signed-in person, as sealed in the session cookie.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Session {
    /// Access token and its expiry (ms).
    pub at: String,
    pub ax: i64,
    /// Refresh token.
    pub rt: Option<String>,
    /// End of the session (ms).
    pub ex: i64,
    pub org: Uuid,
    pub org_name: String,
    pub me: Uuid,
    pub name: String,
    pub lang: String,
    pub csrf: String,
    pub caps: Caps,
}

impl Session {
    /// Whether a posted form's CSRF field is this session's (constant time).
    pub fn csrf_ok(&self, field: Option<&str>) -> bool {
        field.is_some_and(|f| bool::from(self.csrf.as_bytes().ct_eq(f.as_bytes())))
    }

    /// API path of the organisation: `/api/v1/orgs/<id>` + `rest`.
    pub fn org_path(&self, rest: &str) -> String {
        format!("/api/v1/orgs/{}{rest}", self.org)
    }
}

/// A sign-in under way.
#[derive(Serialize, Deserialize)]
pub struct Pending {
    pub state: String,
    pub verifier: String,
    pub next: String,
    pub until: i64,
}

/// Random URL-safe text of 32 bytes.
pub fn random() -> String {
    let mut b = [0u8; 32];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        // Never a guessable value: an empty one fails every comparison and every sign-in.
        return String::new();
    }
    URL_SAFE_NO_PAD.encode(b)
}

/// The PKCE S256 challenge of a verifier.
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A `Set-Cookie` value: HttpOnly, Path=/console, SameSite=Lax, Secure on https.
pub fn cookie(name: &str, value: &str, max_age_s: i64, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/console; Max-Age={max_age_s}; HttpOnly; SameSite=Lax{secure}"
    ))
    .ok()
}

/// The value of cookie `name`.
pub fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
}

pub fn seal_session(key: &carebridge_web::CursorKey, s: &Session) -> String {
    key.encode(SESSION_KIND, s)
}

pub fn open_session(key: &carebridge_web::CursorKey, raw: &str, now_ms: i64) -> Option<Session> {
    key.decode::<Session>(SESSION_KIND, raw)
        .ok()
        .filter(|s| s.ex > now_ms && !s.csrf.is_empty())
}

pub fn seal_pending(key: &carebridge_web::CursorKey, p: &Pending) -> String {
    key.encode(LOGIN_KIND, p)
}

pub fn open_pending(key: &carebridge_web::CursorKey, raw: &str, now_ms: i64) -> Option<Pending> {
    key.decode::<Pending>(LOGIN_KIND, raw)
        .ok()
        .filter(|p| p.until > now_ms)
}

/// The token endpoint's answer.
#[derive(Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: i64,
}

/// The claims of our own access token the console needs (read without checking the
/// signature: the token came straight from this server's token endpoint, in-process, and the
/// API checks it on every call anyway).
#[derive(Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub org: Uuid,
}

pub fn claims(access_token: &str) -> Option<Claims> {
    let payload = access_token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Posts a form to the token endpoint (in-process, no credential: the console is a public
/// client).
pub async fn token_call(api: &Api, form: &[(&str, &str)]) -> Result<Tokens, Fail> {
    let body = serde_urlencoded::to_string(form).map_err(|e| Fail::Broken(e.to_string()))?;
    let (status, _, bytes) = api
        .raw(
            Method::POST,
            "/oauth2/token",
            Some("application/x-www-form-urlencoded"),
            body.into_bytes(),
            None,
        )
        .await?;
    if !status.is_success() {
        // `invalid_grant` and friends: the sign-in is over.
        tracing::info!(status = %status, "console token request refused");
        return Err(Fail::SignedOut);
    }
    serde_json::from_slice(&bytes).map_err(|e| Fail::Broken(format!("token answer: {e}")))
}

/// Recent refreshes by the digest of the refresh token they used, so that concurrent requests
/// of one session share one rotation.
#[derive(Default)]
pub struct Refreshes(Mutex<HashMap<[u8; 32], (Session, Instant)>>);

const SHARE_FOR: Duration = Duration::from_secs(60);

impl Refreshes {
    fn key(rt: &str) -> [u8; 32] {
        Sha256::digest(rt.as_bytes()).into()
    }

    pub fn recent(&self, rt: &str) -> Option<Session> {
        let map = self.0.lock().ok()?;
        map.get(&Self::key(rt))
            .filter(|(_, at)| at.elapsed() < SHARE_FOR)
            .map(|(s, _)| s.clone())
    }

    pub fn remember(&self, rt: &str, s: &Session) {
        if let Ok(mut map) = self.0.lock() {
            map.retain(|_, (_, at)| at.elapsed() < SHARE_FOR);
            map.insert(Self::key(rt), (s.clone(), Instant::now()));
        }
    }
}

/// Whether the session's access token must be refreshed before use.
pub fn stale(s: &Session, now_ms: i64) -> bool {
    s.ax - REFRESH_EARLY_MS <= now_ms
}

/// A fresh access token for the session, through its refresh token. Serialised per process by
/// `lock`, and shared with concurrent requests that hold the same refresh token.
pub async fn refresh(
    api: &Api,
    refreshes: &Refreshes,
    lock: &tokio::sync::Mutex<()>,
    s: &Session,
    now_ms: i64,
) -> Result<Session, Fail> {
    let Some(rt) = s.rt.as_deref() else {
        return Err(Fail::SignedOut);
    };
    let _g = lock.lock().await;
    if let Some(done) = refreshes.recent(rt) {
        return Ok(done);
    }
    let t = token_call(
        api,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", carebridge_domain::oauth::CONSOLE_CLIENT),
        ],
    )
    .await?;
    let mut next = s.clone();
    next.at = t.access_token;
    next.ax = now_ms + t.expires_in * 1000;
    next.rt = t.refresh_token.or(next.rt);
    refreshes.remember(rt, &next);
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(ex: i64) -> Session {
        Session {
            at: "a.b.c".into(),
            ax: 10,
            rt: None,
            ex,
            org: Uuid::nil(),
            org_name: "O".into(),
            me: Uuid::nil(),
            name: "N".into(),
            lang: "en".into(),
            csrf: "x".repeat(43),
            caps: Caps::default(),
        }
    }

    #[test]
    fn sessions_are_sealed_bound_to_their_kind_and_expire() {
        let key = carebridge_web::CursorKey::new(vec![7u8; 32]);
        let raw = seal_session(&key, &session(1_000));
        assert!(open_session(&key, &raw, 999).is_some());
        assert!(open_session(&key, &raw, 1_000).is_none(), "expired");
        assert!(
            open_pending(&key, &raw, 0).is_none(),
            "a session is no login"
        );
        let other = carebridge_web::CursorKey::new(vec![8u8; 32]);
        assert!(
            open_session(&other, &raw, 0).is_none(),
            "another server's key"
        );
        let mut flipped = raw.into_bytes();
        flipped[20] ^= 1;
        let flipped = String::from_utf8(flipped).unwrap_or_default();
        assert!(open_session(&key, &flipped, 0).is_none(), "tampered");
    }

    #[test]
    fn csrf_must_match() {
        let s = session(1);
        assert!(s.csrf_ok(Some(&"x".repeat(43))));
        assert!(!s.csrf_ok(Some("x")));
        assert!(!s.csrf_ok(None));
    }

    #[test]
    fn pkce_challenge_is_s256() {
        // BASE64URL(SHA-256(verifier)) without padding, as computed independently with
        // Python's hashlib and base64.urlsafe_b64encode.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mJ0kFkprN7rUfEKeBNxjcCrQbmHY1RvwEs"),
            "q-q2yEVoGYbjDsW2EIVgYdwelDjpb5rnlDxaXODyhMU"
        );
    }
}
