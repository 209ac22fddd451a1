//! API keys: `cbk_<key id>_<secret>`. The key id finds the row; the secret (256 random bits) is
//! checked against its SHA-256 digest in constant time. Keys belong to one organisation (or, for
//! platform operators, to none), carry a set of permissions, can expire and be revoked, and are
//! shown once.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carebridge_domain::auth::{Actor, Permission, Principal, Via};
use carebridge_domain::time::from_millis;
use carebridge_domain::validate::bounded_text;
use carebridge_domain::{ApiKeyId, OrgId, PersonId, Timestamp, Violations};
use carebridge_proto::Page;
use carebridge_proto::identity::{ApiKey, CreateApiKey, CreatedApiKey};
use carebridge_store::orgs::OrgRef;
use carebridge_store::{Db, Exec, StoreError, Tx, audit, exec, run, sqlx};
use carebridge_web::idem::{self, Idem, Outcome};
use carebridge_web::{CursorKey, ServiceError};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

const PREFIX: &str = "cbk_";

/// Builds the presented form of a key.
fn token(id: ApiKeyId, secret: &[u8; 32]) -> String {
    format!(
        "{PREFIX}{}_{}",
        id.0.simple(),
        URL_SAFE_NO_PAD.encode(secret)
    )
}

/// Splits a presented key into id and secret digest; `None` if it is not shaped like a key.
fn parse(tok: &str) -> Option<(Uuid, [u8; 32])> {
    let rest = tok.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id = Uuid::try_parse(id).ok()?;
    let secret = URL_SAFE_NO_PAD.decode(secret).ok()?;
    if secret.len() != 32 {
        return None;
    }
    Some((id, Sha256::digest(&secret).into()))
}

type KeyRow = (
    Uuid,
    Option<Uuid>,
    String,
    String,
    Option<Uuid>,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);
const COLS: &str = "id, org_id, name, permissions, person_id, created_by, created_at, expires_at, revoked_at, last_used_at";

fn key(r: KeyRow) -> ApiKey {
    ApiKey {
        id: r.0,
        org_id: r.1,
        name: r.2,
        permissions: serde_json::from_str(&r.3).unwrap_or_default(),
        person_id: r.4,
        created_by: r.5,
        created_at: from_millis(r.6),
        expires_at: r.7.map(from_millis),
        revoked_at: r.8.map(from_millis),
        last_used_at: r.9.map(from_millis),
    }
}

/// Validates the requested permissions; platform permission only for platform keys.
fn permissions(v: &mut Violations, perms: &[String], platform: bool) -> Vec<Permission> {
    if perms.is_empty() {
        v.push("/permissions", "required", "name at least one permission");
    }
    let mut out = Vec::new();
    for (i, p) in perms.iter().enumerate() {
        match Permission::parse(p) {
            Some(Permission::Platform) if !platform => v.push(
                format!("/permissions/{i}"),
                "invalid_permission",
                "'platform' is only for platform keys (CLI)",
            ),
            Some(p) if !out.contains(&p) => out.push(p),
            Some(_) => {}
            None => v.push(
                format!("/permissions/{i}"),
                "invalid_permission",
                format!(
                    "unknown permission '{p}'; known: {}",
                    Permission::ALL.map(|p| p.as_str()).join(", ")
                ),
            ),
        }
    }
    out.sort();
    out
}

/// Creates a key inside `tx`. `org: None` makes a platform key.
pub async fn create_in(
    tx: &mut Tx,
    actor: &Actor,
    org: Option<OrgId>,
    input: &CreateApiKey,
    now: Timestamp,
) -> Result<CreatedApiKey, ServiceError> {
    let mut v = Violations::new();
    let name = bounded_text(&mut v, "/name", &input.name, 1, 100);
    let perms = permissions(&mut v, &input.permissions, org.is_none());
    if input.expires_at.is_some_and(|e| e <= now) {
        v.push(
            "/expires_at",
            "in_the_past",
            "the expiry must be in the future",
        );
    }
    if let Some(person) = input.person_id {
        let found: Option<Uuid> = match org {
            Some(org) => {
                run!(tx, c => sqlx::query_scalar("SELECT id FROM people WHERE org_id = $1 AND id = $2")
                .bind(org.0).bind(person).fetch_optional(c).await)?
            }
            None => None,
        };
        if found.is_none() {
            v.push(
                "/person_id",
                "unknown_person",
                "no such person in this organisation",
            );
        }
    }
    v.into_result()?;
    let id = ApiKeyId::generate(now);
    let secret = crate::random_bytes::<32>();
    let digest: [u8; 32] = Sha256::digest(secret).into();
    let perm_names: Vec<String> = perms.iter().map(|p| p.as_str().to_string()).collect();
    let perms_json = serde_json::to_string(&perm_names).unwrap_or_default();
    let created_by = actor.principal.audit_label();
    exec!(tx, c => sqlx::query(
        "INSERT INTO api_keys (id, org_id, name, secret_digest, permissions, created_by, created_at, expires_at, person_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
        .bind(id.0).bind(org.map(|o| o.0)).bind(&name).bind(&digest[..]).bind(&perms_json).bind(&created_by)
        .bind(now.as_millisecond()).bind(input.expires_at.map(|e| e.as_millisecond())).bind(input.person_id).execute(c).await)?;
    let k = ApiKey {
        id: id.0,
        org_id: org.map(|o| o.0),
        name,
        permissions: perm_names,
        person_id: input.person_id,
        created_by,
        created_at: now,
        expires_at: input.expires_at,
        revoked_at: None,
        last_used_at: None,
    };
    if let Some(org) = org {
        audit::record(
            tx,
            org,
            actor,
            "apikey.create",
            "api_key",
            &k.id.to_string(),
            None::<&ApiKey>,
            Some(&k),
            now,
        )
        .await?;
    }
    Ok(CreatedApiKey {
        key: k,
        secret: token(id, &secret),
    })
}

/// `POST /orgs/{org}/api-keys`. The stored first response of an idempotent retry does not hold
/// the secret again (it is shown once): the retry gets the key without it.
pub async fn create(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    input: CreateApiKey,
    idem: Option<Idem>,
    now: Timestamp,
) -> Result<Outcome<CreatedApiKey>, ServiceError> {
    let mut tx = db.begin().await?;
    if let Some(stored) = idem::replay(&mut tx, idem.as_ref()).await? {
        return Ok(Outcome::Replayed(stored));
    }
    let created = create_in(&mut tx, actor, Some(org.id), &input, now).await?;
    let redacted = CreatedApiKey {
        key: created.key.clone(),
        secret: "(shown once; create a new key if it was lost)".into(),
    };
    idem::save(&mut tx, idem.as_ref(), &redacted, now.as_millisecond()).await?;
    tx.commit().await?;
    Ok(Outcome::Fresh(created))
}

pub async fn list(
    db: &Db,
    org: &OrgRef,
    cursor: &CursorKey,
    after: Option<&str>,
    limit: i64,
) -> Result<Page<ApiKey>, ServiceError> {
    let after: Option<Uuid> = cursor.decode_opt("apikeys", after)?;
    let mut c = db.read().await?;
    let sql =
        format!("SELECT {COLS} FROM api_keys WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3");
    let rows: Vec<KeyRow> = run!(&mut c, c => sqlx::query_as(&sql).bind(org.id.0).bind(after.unwrap_or(Uuid::nil())).bind(limit + 1).fetch_all(c).await)?;
    let items: Vec<ApiKey> = rows.into_iter().map(key).collect();
    Ok(cursor.page("apikeys", items, limit, |k| k.id))
}

async fn get(x: &mut impl Exec, org: OrgId, id: Uuid) -> Result<Option<ApiKey>, StoreError> {
    let sql = format!("SELECT {COLS} FROM api_keys WHERE org_id = $1 AND id = $2");
    let r: Option<KeyRow> =
        run!(x, c => sqlx::query_as(&sql).bind(org.0).bind(id).fetch_optional(c).await)?;
    Ok(r.map(key))
}

/// Revokes a key at once; idempotent.
pub async fn revoke(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    id: Uuid,
    now: Timestamp,
) -> Result<ApiKey, ServiceError> {
    let mut tx = db.begin().await?;
    let before = get(&mut tx, org.id, id)
        .await?
        .ok_or(ServiceError::NotFound { what: "API key" })?;
    if before.revoked_at.is_some() {
        return Ok(before);
    }
    exec!(&mut tx, c => sqlx::query("UPDATE api_keys SET revoked_at = $3 WHERE org_id = $1 AND id = $2")
        .bind(org.id.0).bind(id).bind(now.as_millisecond()).execute(c).await)?;
    let mut after = before.clone();
    after.revoked_at = Some(now);
    audit::record(
        &mut tx,
        org.id,
        actor,
        "apikey.revoke",
        "api_key",
        &id.to_string(),
        Some(&before),
        Some(&after),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// How often `last_used_at` is written at most (so authentication is not a write per request).
const LAST_USED_GRANULARITY_MS: i64 = 60_000;

/// Authenticates a presented key. `Ok(None)` for anything that is not a valid, live key.
pub async fn authenticate(
    db: &Db,
    presented: &str,
    now: Timestamp,
) -> Result<Option<Principal>, StoreError> {
    let Some((id, digest)) = parse(presented) else {
        return Ok(None);
    };
    let mut c = db.read().await?;
    let row: Option<(
        Option<Uuid>,
        Vec<u8>,
        String,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<Uuid>,
        Option<bool>,
    )> = run!(&mut c, c => sqlx::query_as(
        "SELECT k.org_id, k.secret_digest, k.permissions, k.expires_at, k.revoked_at, k.last_used_at, k.person_id, p.active \
         FROM api_keys k LEFT JOIN people p ON p.id = k.person_id AND p.org_id = k.org_id WHERE k.id = $1")
        .bind(id).fetch_optional(c).await)?;
    let Some((org, stored, perms, expires, revoked, last_used, person, active)) = row else {
        return Ok(None);
    };
    if !bool::from(stored.as_slice().ct_eq(&digest[..])) {
        return Ok(None);
    }
    let now_ms = now.as_millisecond();
    if revoked.is_some() || expires.is_some_and(|e| e <= now_ms) {
        return Ok(None);
    }
    // A personal key acts as its person: only while the person is active, with their roles.
    let personal = match (org, person) {
        (Some(org), Some(person)) => {
            if active != Some(true) {
                return Ok(None);
            }
            let roles = crate::signin::role_grants(&mut c, OrgId(org), PersonId(person)).await?;
            Some((OrgId(org), PersonId(person), roles))
        }
        _ => None,
    };
    drop(c);
    if last_used.is_none_or(|t| now_ms - t > LAST_USED_GRANULARITY_MS) {
        let mut tx = db.begin().await?;
        exec!(&mut tx, c => sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1").bind(id).bind(now_ms).execute(c).await)?;
        tx.commit().await?;
    }
    let names: Vec<String> =
        serde_json::from_str(&perms).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    if let Some((org, person, roles)) = personal {
        return Ok(Some(Principal::Person {
            via: Via::ApiKey(ApiKeyId(id)),
            org,
            person,
            scopes: names.iter().filter_map(|n| Permission::parse(n)).collect(),
            roles,
        }));
    }
    Ok(Some(Principal::ApiKey {
        id: ApiKeyId(id),
        org: org.map(OrgId),
        permissions: names.iter().filter_map(|n| Permission::parse(n)).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_back() {
        let id = ApiKeyId(Uuid::from_u128(0xabc));
        let secret = [7u8; 32];
        let t = token(id, &secret);
        let (pid, digest) = parse(&t).unwrap();
        assert_eq!(pid, id.0);
        assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(secret)));
        assert!(parse("cbk_nope").is_none());
        assert!(parse(&t.replace("cbk_", "xyz_")).is_none());
        assert!(parse(&format!("{}_{}", &t[..36], "AAAA")).is_none());
    }
}
