//! Server-wide secrets kept in the database (cursor-signing key, the one-time set-up token's
//! digest), so every node of a multi-node deployment shares them and nothing is node-local.

use crate::{Db, StoreError, exec, run};

/// Returns the secret `name`, creating it from `generate()` on first use. Safe against a race
/// of two nodes: the first insert wins and both read it back.
pub async fn get_or_create(
    db: &Db,
    name: &str,
    generate: impl FnOnce() -> Vec<u8>,
    now_ms: i64,
) -> Result<Vec<u8>, StoreError> {
    if let Some(v) = get(db, name).await? {
        return Ok(v);
    }
    let value = generate();
    let mut tx = db.begin().await?;
    exec!(&mut tx, c => sqlx::query("INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
        .bind(name).bind(&value).bind(now_ms).execute(c).await)?;
    tx.commit().await?;
    get(db, name)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("secret {name} vanished")))
}

pub async fn get(db: &Db, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let mut c = db.read().await?;
    Ok(
        run!(&mut c, c => sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1").bind(name).fetch_optional(c).await)?,
    )
}

/// Replaces (or sets) the secret `name`.
pub async fn put(db: &Db, name: &str, value: &[u8], now_ms: i64) -> Result<(), StoreError> {
    let mut tx = db.begin().await?;
    exec!(&mut tx, c => sqlx::query("INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET value = excluded.value, created_at = excluded.created_at")
        .bind(name).bind(value).bind(now_ms).execute(c).await)?;
    tx.commit().await
}

/// Deletes the secret `name`; returns whether it existed.
pub async fn delete(db: &Db, name: &str) -> Result<bool, StoreError> {
    let mut tx = db.begin().await?;
    let n = run!(&mut tx, c => sqlx::query("DELETE FROM server_secrets WHERE name = $1").bind(name).execute(c).await.map(|r| r.rows_affected()))?;
    tx.commit().await?;
    Ok(n > 0)
}
