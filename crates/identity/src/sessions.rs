//! Browser sign-in sessions. The cookie `cb_session` holds `<session id>.<256-bit secret>`;
//! the database keeps only the secret's SHA-256 digest. A session knows how the person proved
//! who they are (`amr`: `pwd`, then `otp`/`sms`/`totp` once a second factor passed) and ends
//! after [`SESSION_TTL_MS`], on sign-out, or when revoked (by the person, an admin, or a
//! password reset).

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carebridge_domain::{AccountId, Timestamp};
use carebridge_store::{Db, Exec, StoreError, Tx, exec, run, sqlx};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

/// The session cookie.
pub const COOKIE: &str = "cb_session";
/// Absolute lifetime of a browser session: 12 hours.
pub const SESSION_TTL_MS: i64 = 12 * 3_600_000;

/// A live session.
#[derive(Clone, Debug)]
pub struct Session {
    pub id: Uuid,
    pub account: AccountId,
    pub amr: Vec<String>,
    pub auth_time: i64,
    pub mfa_at: Option<i64>,
}

impl Session {
    /// Whether a second factor was proven in this session.
    pub fn mfa(&self) -> bool {
        self.mfa_at.is_some()
    }
}

/// A session as the person sees it in their list.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Listed {
    pub id: Uuid,
    pub user_agent: String,
    pub amr: Vec<String>,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

fn digest(secret: &[u8]) -> Vec<u8> {
    Sha256::digest(secret).to_vec()
}

/// Starts a session; returns it and the cookie value.
pub async fn create(
    tx: &mut Tx,
    account: AccountId,
    amr: &[&str],
    user_agent: &str,
    now: Timestamp,
) -> Result<(Session, String), StoreError> {
    let id = carebridge_domain::ids::new_v7(now);
    let secret = crate::random_bytes::<32>();
    let ms = now.as_millisecond();
    let amr: Vec<String> = amr.iter().map(|s| s.to_string()).collect();
    let amr_json = serde_json::to_string(&amr).unwrap_or_else(|_| "[]".into());
    exec!(tx, c => sqlx::query(
        "INSERT INTO sessions (id, account_id, secret_digest, amr, auth_time, user_agent, created_at, last_seen_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $5, $5, $7)")
        .bind(id).bind(account.0).bind(digest(&secret)).bind(&amr_json).bind(ms).bind(user_agent)
        .bind(ms + SESSION_TTL_MS).execute(c).await)?;
    let cookie = format!("{}.{}", id.simple(), URL_SAFE_NO_PAD.encode(secret));
    Ok((
        Session {
            id,
            account,
            amr,
            auth_time: ms,
            mfa_at: None,
        },
        cookie,
    ))
}

/// The live session named by the request's cookie, if any.
pub async fn current(
    db: &Db,
    headers: &HeaderMap,
    now: Timestamp,
) -> Result<Option<Session>, StoreError> {
    let Some(v) = crate::web::cookie(headers, COOKIE) else {
        return Ok(None);
    };
    let Some((id, secret)) = v.split_once('.') else {
        return Ok(None);
    };
    let (Ok(id), Ok(secret)) = (Uuid::parse_str(id), URL_SAFE_NO_PAD.decode(secret)) else {
        return Ok(None);
    };
    let mut c = db.read().await?;
    let row: Option<(
        Uuid,
        Vec<u8>,
        String,
        i64,
        Option<i64>,
        i64,
        Option<i64>,
        bool,
    )> = run!(&mut c, c => sqlx::query_as(
        "SELECT s.account_id, s.secret_digest, s.amr, s.auth_time, s.mfa_at, s.expires_at, s.revoked_at, a.disabled \
         FROM sessions s JOIN accounts a ON a.id = s.account_id WHERE s.id = $1")
        .bind(id).fetch_optional(c).await)?;
    let Some((account, stored, amr, auth_time, mfa_at, expires, revoked, disabled)) = row else {
        return Ok(None);
    };
    if !bool::from(stored.as_slice().ct_eq(&digest(&secret)))
        || revoked.is_some()
        || disabled
        || expires <= now.as_millisecond()
    {
        return Ok(None);
    }
    Ok(Some(Session {
        id,
        account: AccountId(account),
        amr: serde_json::from_str(&amr).unwrap_or_default(),
        auth_time,
        mfa_at,
    }))
}

/// Records a passed second factor (`method`: `totp`, `sms`, `recovery`).
pub async fn mark_mfa(
    tx: &mut Tx,
    s: &Session,
    method: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let mut amr = s.amr.clone();
    if !amr.iter().any(|m| m == method) {
        amr.push(method.to_string());
    }
    if !amr.iter().any(|m| m == "mfa") {
        amr.push("mfa".into());
    }
    let amr = serde_json::to_string(&amr).unwrap_or_else(|_| "[]".into());
    exec!(tx, c => sqlx::query("UPDATE sessions SET mfa_at = $2, amr = $3, last_seen_at = $2 WHERE id = $1")
        .bind(s.id).bind(now.as_millisecond()).bind(&amr).execute(c).await)?;
    Ok(())
}

/// Ends one session of an account (and revokes the tokens issued through it); `false` when
/// there is no such live session.
pub async fn revoke(
    tx: &mut Tx,
    account: AccountId,
    id: Uuid,
    reason: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let ms = now.as_millisecond();
    let n = exec!(tx, c => sqlx::query("UPDATE sessions SET revoked_at = $3 WHERE id = $1 AND account_id = $2 AND revoked_at IS NULL")
        .bind(id).bind(account.0).bind(ms).execute(c).await)?;
    exec!(tx, c => sqlx::query("UPDATE token_grants SET revoked_at = $2, revoked_reason = $3 WHERE session_id = $1 AND revoked_at IS NULL")
        .bind(id).bind(ms).bind(reason).execute(c).await)?;
    Ok(n > 0)
}

/// Ends a session without touching its tokens (sign-out: apps keep what they were given).
pub async fn end(tx: &mut Tx, id: Uuid, now: Timestamp) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query("UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
        .bind(id).bind(now.as_millisecond()).execute(c).await)?;
    Ok(())
}

/// Ends every session of an account and revokes every token grant of its persons.
pub async fn revoke_all(
    tx: &mut Tx,
    account: AccountId,
    reason: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let ms = now.as_millisecond();
    exec!(tx, c => sqlx::query("UPDATE sessions SET revoked_at = $2 WHERE account_id = $1 AND revoked_at IS NULL")
        .bind(account.0).bind(ms).execute(c).await)?;
    exec!(tx, c => sqlx::query(
        "UPDATE token_grants SET revoked_at = $2, revoked_reason = $3 WHERE revoked_at IS NULL AND person_id IN (SELECT id FROM people WHERE account_id = $1)")
        .bind(account.0).bind(ms).bind(reason).execute(c).await)?;
    Ok(())
}

/// The live sessions of an account, newest first.
pub async fn list(
    x: &mut impl Exec,
    account: AccountId,
    now: Timestamp,
) -> Result<Vec<Listed>, StoreError> {
    let rows: Vec<(Uuid, String, String, i64, i64, i64)> = run!(x, c => sqlx::query_as(
        "SELECT id, user_agent, amr, created_at, last_seen_at, expires_at FROM sessions \
         WHERE account_id = $1 AND revoked_at IS NULL AND expires_at > $2 ORDER BY created_at DESC LIMIT 100")
        .bind(account.0).bind(now.as_millisecond()).fetch_all(c).await)?;
    Ok(rows
        .into_iter()
        .map(
            |(id, user_agent, amr, created_at, last_seen_at, expires_at)| Listed {
                id,
                user_agent,
                amr: serde_json::from_str(&amr).unwrap_or_default(),
                created_at,
                last_seen_at,
                expires_at,
            },
        )
        .collect())
}
