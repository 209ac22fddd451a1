//! Idempotency keys for creates: the first response to a key is stored in the same transaction
//! as the created row, so a retried request returns that response instead of creating a
//! duplicate. A key reused with a different request body is a conflict.

use crate::{Exec, StoreError, Tx, exec, run};

/// A stored first response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub request_hash: String,
    pub status: u16,
    pub response: String,
}

/// The stored response for `(scope, key)`, if any.
pub async fn lookup(
    x: &mut impl Exec,
    scope: &str,
    key: &str,
) -> Result<Option<Stored>, StoreError> {
    let row: Option<(String, i32, String)> = run!(x, c => sqlx::query_as(
        "SELECT request_hash, status, response FROM idempotency_keys WHERE scope = $1 AND key = $2")
        .bind(scope).bind(key).fetch_optional(c).await)?;
    Ok(row.map(|(request_hash, status, response)| Stored {
        request_hash,
        status: u16::try_from(status).unwrap_or(200),
        response,
    }))
}

/// Records the first response for `(scope, key)` inside the creating transaction. A concurrent
/// request with the same key fails here with [`StoreError::Unique`] and rolls back.
pub async fn save(
    tx: &mut Tx,
    scope: &str,
    key: &str,
    stored: &Stored,
    now_ms: i64,
) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, request_hash, status, response, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(scope).bind(key).bind(&stored.request_hash).bind(i32::from(stored.status)).bind(&stored.response).bind(now_ms)
        .execute(c).await)?;
    Ok(())
}

/// Forgets keys older than `before_ms` (kept 24 hours by the server).
pub async fn purge(tx: &mut Tx, before_ms: i64) -> Result<u64, StoreError> {
    let r = run!(tx, c => sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1").bind(before_ms).execute(c).await.map(|r| r.rows_affected()))?;
    Ok(r)
}
