//! Authorization codes and token grants.
//!
//! - A code (`cba_…`, 256 random bits, stored as a SHA-256 digest) lives
//!   [`CODE_TTL_MS`] and is redeemed once: the redeeming `UPDATE … WHERE used_at IS NULL` is the
//!   single-use guard. Presenting it again revokes the grant it produced (RFC 9700 §4.5).
//! - A token grant is one row per code (or device) exchange: every access token names it
//!   (`gid`) and stops working the moment it is revoked. Its refresh token
//!   `cbr_<grant id><secret>` rotates in place: the row keeps only the digest of the newest
//!   secret and one compare-and-swap `UPDATE` both checks and rotates it. A secret that is not
//!   the newest one is a replayed (stolen) token: the whole grant is revoked (reuse detection).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carebridge_domain::{OrgId, PersonId, Timestamp};
use carebridge_store::{Db, StoreError, Tx, exec, run, sqlx};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

/// Lifetime of an authorization code.
pub const CODE_TTL_MS: i64 = 60_000;
/// Absolute lifetime of a refresh token chain: 30 days.
pub const REFRESH_TTL_MS: i64 = 30 * 86_400_000;

fn digest(b: &[u8]) -> Vec<u8> {
    Sha256::digest(b).to_vec()
}

fn list(s: &str) -> Vec<String> {
    s.split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Why a grant could not be redeemed (all map to OAuth `invalid_grant`).
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("{0}")]
    Invalid(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for GrantError {
    fn from(e: sqlx::Error) -> Self {
        GrantError::Store(e.into())
    }
}

/// What a code records for its exchange.
pub struct CodeInput<'a> {
    pub client_id: &'a str,
    pub org: OrgId,
    pub person: PersonId,
    pub session: Uuid,
    pub redirect_uri: &'a str,
    pub scopes: &'a [String],
    pub nonce: Option<&'a str>,
    pub code_challenge: Option<&'a str>,
    pub auth_time: i64,
    pub amr: &'a [String],
}

/// Issues a code.
pub async fn issue_code(db: &Db, i: CodeInput<'_>, now: Timestamp) -> Result<String, StoreError> {
    let secret = crate::random_bytes::<32>();
    let mut tx = db.begin().await?;
    let amr = serde_json::to_string(i.amr).unwrap_or_else(|_| "[]".into());
    exec!(&mut tx, c => sqlx::query(
        "INSERT INTO auth_codes (digest, client_id, org_id, person_id, session_id, redirect_uri, scopes, nonce, code_challenge, auth_time, amr, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)")
        .bind(digest(&secret)).bind(i.client_id).bind(i.org.0).bind(i.person.0).bind(i.session).bind(i.redirect_uri)
        .bind(i.scopes.join(" ")).bind(i.nonce).bind(i.code_challenge).bind(i.auth_time).bind(&amr)
        .bind(now.as_millisecond() + CODE_TTL_MS).execute(c).await)?;
    tx.commit().await?;
    Ok(format!("cba_{}", URL_SAFE_NO_PAD.encode(secret)))
}

/// A grant that produced tokens.
#[derive(Clone, Debug)]
pub struct Issued {
    pub grant: Uuid,
    pub org: OrgId,
    pub person: PersonId,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub session: Option<Uuid>,
    pub nonce: Option<String>,
    /// The new refresh token, when the grant has one.
    pub refresh: Option<String>,
}

/// PKCE (RFC 7636) S256: `BASE64URL(SHA256(verifier)) == challenge`, in constant time.
pub fn pkce_ok(verifier: &str, challenge: &str) -> bool {
    let ok_chars = verifier.len() >= 43
        && verifier.len() <= 128
        && verifier
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c));
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    ok_chars & bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

fn refresh_token(grant: Uuid, secret: &[u8; 32]) -> String {
    let mut b = Vec::with_capacity(48);
    b.extend_from_slice(grant.as_bytes());
    b.extend_from_slice(secret);
    format!("cbr_{}", URL_SAFE_NO_PAD.encode(b))
}

/// Splits a refresh token into its grant id and secret.
pub fn parse_refresh(token: &str) -> Option<(Uuid, Vec<u8>)> {
    let raw = URL_SAFE_NO_PAD.decode(token.strip_prefix("cbr_")?).ok()?;
    if raw.len() != 48 {
        return None;
    }
    let id = Uuid::from_slice(&raw[..16]).ok()?;
    Some((id, raw[16..].to_vec()))
}

/// Creates a token grant (inside `tx`); with `refresh` it gets a refresh token.
pub async fn create(
    tx: &mut Tx,
    org: OrgId,
    person: PersonId,
    client_id: &str,
    session: Option<Uuid>,
    scopes: &[String],
    auth_time: i64,
    amr: &[String],
    refresh: bool,
    now: Timestamp,
) -> Result<(Uuid, Option<String>), StoreError> {
    let id = carebridge_domain::ids::new_v7(now);
    let secret = crate::random_bytes::<32>();
    let ms = now.as_millisecond();
    let amr_json = serde_json::to_string(amr).unwrap_or_else(|_| "[]".into());
    exec!(tx, c => sqlx::query(
        "INSERT INTO token_grants (id, org_id, person_id, client_id, session_id, scopes, auth_time, amr, refresh_digest, generation, created_at, last_used_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $10, $11)")
        .bind(id).bind(org.0).bind(person.0).bind(client_id).bind(session).bind(scopes.join(" ")).bind(auth_time)
        .bind(&amr_json).bind(refresh.then(|| digest(&secret))).bind(ms).bind(ms + REFRESH_TTL_MS).execute(c).await)?;
    Ok((id, refresh.then(|| refresh_token(id, &secret))))
}

/// Revokes a grant (idempotent).
pub async fn revoke(
    tx: &mut Tx,
    grant: Uuid,
    reason: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query("UPDATE token_grants SET revoked_at = $2, revoked_reason = $3 WHERE id = $1 AND revoked_at IS NULL")
        .bind(grant).bind(now.as_millisecond()).bind(reason).execute(c).await)?;
    Ok(())
}

type CodeRow = (
    String,
    Uuid,
    Uuid,
    Uuid,
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    String,
);

/// Redeems a code for `client_id`: single use, unexpired, same redirect URI, PKCE verifier
/// when a challenge was sent (and only then), person still active. `refresh_allowed` says
/// whether the client may get a refresh token (it gets one when `offline_access` was granted).
pub async fn redeem_code(
    db: &Db,
    code: &str,
    client_id: &str,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
    refresh_allowed: bool,
    now: Timestamp,
) -> Result<Issued, GrantError> {
    let Some(secret) = code
        .strip_prefix("cba_")
        .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
    else {
        return Err(GrantError::Invalid("unknown authorization code"));
    };
    let d = digest(&secret);
    let ms = now.as_millisecond();
    let mut tx = db.begin().await?;
    let row: Option<CodeRow> = run!(&mut tx, c => sqlx::query_as(
        "UPDATE auth_codes SET used_at = $2 WHERE digest = $1 AND used_at IS NULL \
         RETURNING client_id, org_id, person_id, session_id, redirect_uri, scopes, nonce, code_challenge, auth_time, amr")
        .bind(&d).bind(ms).fetch_optional(c).await)?;
    let Some((owner, org, person, session, uri, scopes, nonce, challenge, auth_time, amr)) = row
    else {
        // Used before: revoke what the first redemption produced (the code may be stolen).
        let prior: Option<(Option<Uuid>, String)> = run!(&mut tx, c => sqlx::query_as("SELECT grant_id, client_id FROM auth_codes WHERE digest = $1")
            .bind(&d).fetch_optional(c).await)?;
        return match prior {
            Some((grant, owner)) if owner == client_id => {
                if let Some(g) = grant {
                    revoke(&mut tx, g, "code_reuse", now).await?;
                }
                tx.commit().await?;
                Err(GrantError::Invalid(
                    "the authorization code was already used; the tokens issued for it are revoked",
                ))
            }
            _ => Err(GrantError::Invalid("unknown authorization code")),
        };
    };
    // From here on the code is spent, whatever the outcome: commit that even on failure.
    let fail = async |tx: Tx, why: &'static str| -> Result<Issued, GrantError> {
        tx.commit().await?;
        Err(GrantError::Invalid(why))
    };
    if owner != client_id {
        return fail(tx, "the authorization code was issued to another client").await;
    }
    let expired: bool = run!(&mut tx, c => sqlx::query_scalar("SELECT expires_at <= $2 FROM auth_codes WHERE digest = $1")
        .bind(&d).bind(ms).fetch_one(c).await)?;
    if expired {
        return fail(tx, "the authorization code has expired").await;
    }
    if redirect_uri != Some(uri.as_str()) {
        return fail(
            tx,
            "redirect_uri differs from the one of the authorization request",
        )
        .await;
    }
    match (challenge.as_deref(), verifier) {
        (Some(ch), Some(v)) if pkce_ok(v, ch) => {}
        (Some(_), Some(_)) => {
            return fail(
                tx,
                "the PKCE code_verifier does not match the code_challenge",
            )
            .await;
        }
        (Some(_), None) => return fail(tx, "code_verifier is required (PKCE)").await,
        (None, Some(_)) => {
            return fail(
                tx,
                "code_verifier sent, but the authorization request had no code_challenge",
            )
            .await;
        }
        (None, None) => {}
    }
    let active: Option<bool> = run!(&mut tx, c => sqlx::query_scalar("SELECT active FROM people WHERE id = $1 AND org_id = $2")
        .bind(person).bind(org).fetch_optional(c).await)?;
    if active != Some(true) {
        return fail(tx, "the person is no longer active").await;
    }
    let scopes = list(&scopes);
    let amr: Vec<String> = serde_json::from_str(&amr).unwrap_or_default();
    let with_refresh = refresh_allowed && scopes.iter().any(|s| s == "offline_access");
    let (grant, refresh) = create(
        &mut tx,
        OrgId(org),
        PersonId(person),
        client_id,
        Some(session),
        &scopes,
        auth_time,
        &amr,
        with_refresh,
        now,
    )
    .await?;
    exec!(&mut tx, c => sqlx::query("UPDATE auth_codes SET grant_id = $2 WHERE digest = $1").bind(&d).bind(grant).execute(c).await)?;
    tx.commit().await?;
    Ok(Issued {
        grant,
        org: OrgId(org),
        person: PersonId(person),
        client_id: client_id.to_string(),
        scopes,
        auth_time,
        amr,
        session: Some(session),
        nonce,
        refresh,
    })
}

type RotRow = (Uuid, Uuid, String, i64, String, Option<Uuid>);

/// One refresh waiting for its compare-and-swap.
struct Job {
    id: Uuid,
    old: Vec<u8>,
    new: Vec<u8>,
    client: String,
    now_ms: i64,
    reply: tokio::sync::oneshot::Sender<Result<Option<RotRow>, String>>,
}

/// Group commit for refresh-token rotation: concurrent refreshes are collected (up to 64) and
/// checked-and-rotated by one `UPDATE … FROM (VALUES …)` on the writer. Each row still has
/// its own compare-and-swap condition (grant, current digest, client, not revoked, not
/// expired, person active), so the result per token is what one statement per token would
/// give; on SQLite it saves a thread hop and a statement per refresh. Two refreshes of the
/// same token in one batch: one wins, the other takes the slow path and counts as reuse.
pub struct Rotator {
    jobs: tokio::sync::OnceCell<tokio::sync::mpsc::Sender<Job>>,
}

impl Default for Rotator {
    fn default() -> Self {
        Rotator {
            jobs: tokio::sync::OnceCell::new(),
        }
    }
}

const BATCH: usize = 64;

async fn rotate_batch(db: &Db, batch: &[Job]) -> Result<Vec<(Uuid, Vec<u8>, RotRow)>, StoreError> {
    let pg = db.backend() == carebridge_store::Backend::Postgres;
    let values: Vec<String> = (0..batch.len())
        .map(|i| {
            let b = i * 5;
            if pg {
                format!(
                    "(${}::uuid, ${}::bytea, ${}::bytea, ${}::text, ${}::bigint)",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5
                )
            } else {
                format!(
                    "(${}, ${}, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5
                )
            }
        })
        .collect();
    let (alias, c1, c2, c3, c4, c5) = if pg {
        (
            "v(id, old, new, client, now)",
            "v.id",
            "v.old",
            "v.new",
            "v.client",
            "v.now",
        )
    } else {
        (
            "v",
            "v.column1",
            "v.column2",
            "v.column3",
            "v.column4",
            "v.column5",
        )
    };
    let sql = format!(
        "UPDATE token_grants SET refresh_digest = {c3}, generation = generation + 1, last_used_at = {c5} \
         FROM (VALUES {}) AS {alias} \
         WHERE token_grants.id = {c1} AND token_grants.refresh_digest = {c2} AND token_grants.client_id = {c4} \
         AND token_grants.revoked_at IS NULL AND token_grants.expires_at > {c5} \
         AND EXISTS (SELECT 1 FROM people p WHERE p.id = token_grants.person_id AND p.org_id = token_grants.org_id AND p.active) \
         RETURNING token_grants.id, token_grants.refresh_digest, token_grants.org_id, token_grants.person_id, token_grants.scopes, \
         token_grants.auth_time, token_grants.amr, token_grants.session_id",
        values.join(", ")
    );
    type Out = (Uuid, Vec<u8>, Uuid, Uuid, String, i64, String, Option<Uuid>);
    let mut w = db.write().await?;
    let rows: Vec<Out> = run!(&mut w, c => {
        let mut q = sqlx::query_as(&sql);
        for j in batch {
            q = q.bind(j.id).bind(&j.old).bind(&j.new).bind(&j.client).bind(j.now_ms);
        }
        q.fetch_all(c).await
    })?;
    Ok(rows
        .into_iter()
        .map(|(id, d, org, person, scopes, auth, amr, session)| {
            (id, d, (org, person, scopes, auth, amr, session))
        })
        .collect())
}

async fn rotator_loop(db: Db, mut rx: tokio::sync::mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        match rotate_batch(&db, &batch).await {
            Ok(rows) => {
                for j in batch {
                    // The winner of its grant is the job whose new digest the row now holds.
                    let hit = rows
                        .iter()
                        .find(|(id, d, _)| *id == j.id && *d == j.new)
                        .map(|(_, _, r)| r.clone());
                    let _ = j.reply.send(Ok(hit));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for j in batch {
                    let _ = j.reply.send(Err(msg.clone()));
                }
            }
        }
    }
}

impl Rotator {
    /// Checks and rotates one refresh token (the row of its grant, or `None` when the
    /// compare-and-swap did not match).
    async fn rotate(
        &self,
        db: &Db,
        id: Uuid,
        old: Vec<u8>,
        new: Vec<u8>,
        client: String,
        now_ms: i64,
    ) -> Result<Option<RotRow>, StoreError> {
        let jobs = self
            .jobs
            .get_or_init(|| async {
                let (tx, rx) = tokio::sync::mpsc::channel(4096);
                tokio::spawn(rotator_loop(db.clone(), rx));
                tx
            })
            .await;
        let (reply, rx) = tokio::sync::oneshot::channel();
        jobs.send(Job {
            id,
            old,
            new,
            client,
            now_ms,
            reply,
        })
        .await
        .map_err(|_| StoreError::Corrupt("the refresh rotator stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Corrupt("the refresh rotator stopped".into()))?
            .map_err(StoreError::Corrupt)
    }
}

/// Uses a refresh token: rotates it and returns the grant with the new token. Reuse of an
/// older token revokes the grant.
pub async fn refresh(
    db: &Db,
    rotator: &Rotator,
    token: &str,
    client_id: &str,
    now: Timestamp,
) -> Result<Issued, GrantError> {
    let Some((id, secret)) = parse_refresh(token) else {
        return Err(GrantError::Invalid("unknown refresh token"));
    };
    let old = digest(&secret);
    let fresh = crate::random_bytes::<32>();
    let ms = now.as_millisecond();
    // The fast path is one compare-and-swap, batched with concurrent refreshes into one
    // statement (see [`Rotator`]).
    let row = rotator
        .rotate(
            db,
            id,
            old.clone(),
            digest(&fresh),
            client_id.to_string(),
            ms,
        )
        .await?;
    if let Some((org, person, scopes, auth_time, amr, session)) = row {
        return Ok(Issued {
            grant: id,
            org: OrgId(org),
            person: PersonId(person),
            client_id: client_id.to_string(),
            scopes: list(&scopes),
            auth_time,
            amr: serde_json::from_str(&amr).unwrap_or_default(),
            session,
            nonce: None,
            refresh: Some(refresh_token(id, &fresh)),
        });
    }
    // Why not? Read the row and, for a replayed token, revoke the grant.
    let mut tx = db.begin().await?;
    let r: Option<(Option<Vec<u8>>, String, Option<i64>, i64)> = run!(&mut tx, c => sqlx::query_as(
        "SELECT refresh_digest, client_id, revoked_at, expires_at FROM token_grants WHERE id = $1")
        .bind(id).fetch_optional(c).await)?;
    let Some((current, owner, revoked, expires)) = r else {
        return Err(GrantError::Invalid("unknown refresh token"));
    };
    if owner != client_id {
        return Err(GrantError::Invalid(
            "the refresh token was issued to another client",
        ));
    }
    if revoked.is_some() {
        return Err(GrantError::Invalid("the refresh token is revoked"));
    }
    if expires <= ms {
        return Err(GrantError::Invalid("the refresh token has expired"));
    }
    let matches = current.is_some_and(|c| bool::from(c.as_slice().ct_eq(&old)));
    if !matches {
        revoke(&mut tx, id, "refresh_reuse", now).await?;
        tx.commit().await?;
        return Err(GrantError::Invalid(
            "the refresh token was already used; every token of this grant is revoked",
        ));
    }
    Err(GrantError::Invalid("the person is no longer active"))
}

/// Whether a grant is live for its person: not revoked and the person active. Used for every
/// access token presented to the API, introspection and userinfo.
pub async fn live(db: &Db, grant: Uuid) -> Result<bool, StoreError> {
    let mut c = db.read().await?;
    let r: Option<(Option<i64>, bool)> = run!(&mut c, c => sqlx::query_as(
        "SELECT g.revoked_at, p.active FROM token_grants g JOIN people p ON p.id = g.person_id AND p.org_id = g.org_id WHERE g.id = $1")
        .bind(grant).fetch_optional(c).await)?;
    Ok(matches!(r, Some((None, true))))
}

/// The grant a refresh token belongs to, when the token is the grant's current one and the
/// grant was issued to `client_id` (for revocation, RFC 7009).
pub async fn grant_of_refresh(
    db: &Db,
    token: &str,
    client_id: &str,
) -> Result<Option<Uuid>, StoreError> {
    let Some((id, secret)) = parse_refresh(token) else {
        return Ok(None);
    };
    let mut c = db.read().await?;
    let r: Option<(Option<Vec<u8>>, String)> = run!(&mut c, c => sqlx::query_as(
        "SELECT refresh_digest, client_id FROM token_grants WHERE id = $1").bind(id).fetch_optional(c).await)?;
    Ok(match r {
        Some((Some(d), owner))
            if owner == client_id && bool::from(d.as_slice().ct_eq(&digest(&secret))) =>
        {
            Some(id)
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc7636_example() {
        // RFC 7636 appendix B.
        assert!(pkce_ok(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_ok(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXx",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_ok(
            "short",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
    }

    #[test]
    fn refresh_tokens_round_trip() {
        let id = Uuid::from_u128(42);
        let t = refresh_token(id, &[7u8; 32]);
        assert_eq!(parse_refresh(&t), Some((id, vec![7u8; 32])));
        assert_eq!(parse_refresh("cbr_abc"), None);
        assert_eq!(parse_refresh("xyz"), None);
    }
}
