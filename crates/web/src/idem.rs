//! Idempotent creates, used by every create service: look the key up inside the creating
//! transaction, replay the stored response, or create and store the response before commit.

use carebridge_domain::auth::Principal;
use carebridge_store::idempotency::{self, Stored};
use carebridge_store::{Db, Exec, Tx};
use serde::Serialize;

use crate::error::ServiceError;

/// An idempotency key bound to its caller and request.
#[derive(Clone, Debug)]
pub struct Idem {
    /// Caller and operation, e.g. `apikey:<id>:POST /orgs/x/people`.
    pub scope: String,
    pub key: String,
    /// SHA-256 of the request body.
    pub request_hash: String,
}

impl Idem {
    /// `None` when the request had no `Idempotency-Key`.
    pub fn new(
        principal: &Principal,
        operation: &str,
        key: Option<String>,
        request_hash: &str,
    ) -> Option<Idem> {
        key.map(|key| Idem {
            scope: format!("{}:{operation}", principal.audit_label()),
            key,
            request_hash: request_hash.to_string(),
        })
    }
}

/// The result of a create: fresh, or the stored first response of a retried request.
#[derive(Debug)]
pub enum Outcome<T> {
    Fresh(T),
    Replayed(String),
}

/// Looks up a stored response; errors when the key was used for a different request.
pub async fn replay(
    x: &mut impl Exec,
    idem: Option<&Idem>,
) -> Result<Option<String>, ServiceError> {
    let Some(i) = idem else { return Ok(None) };
    match idempotency::lookup(x, &i.scope, &i.key).await? {
        None => Ok(None),
        Some(s) if s.request_hash == i.request_hash => Ok(Some(s.response)),
        Some(_) => Err(ServiceError::IdempotencyMismatch),
    }
}

/// Stores the first response inside the creating transaction.
pub async fn save<T: Serialize>(
    tx: &mut Tx,
    idem: Option<&Idem>,
    response: &T,
    now_ms: i64,
) -> Result<(), ServiceError> {
    let Some(i) = idem else { return Ok(()) };
    let response = serde_json::to_string(response)
        .map_err(|e| ServiceError::Store(carebridge_store::StoreError::Corrupt(e.to_string())))?;
    idempotency::save(
        tx,
        &i.scope,
        &i.key,
        &Stored {
            request_hash: i.request_hash.clone(),
            status: 201,
            response,
        },
        now_ms,
    )
    .await?;
    Ok(())
}

/// Runs a create in one transaction with its idempotency key: replays the stored response of
/// a retried request, or runs `create` and stores its response before commit.
pub async fn create<T: Serialize>(
    db: &Db,
    idem: Option<Idem>,
    now_ms: i64,
    create: impl AsyncFnOnce(&mut Tx) -> Result<T, ServiceError>,
) -> Result<Outcome<T>, ServiceError> {
    let mut tx = db.begin().await?;
    if let Some(stored) = replay(&mut tx, idem.as_ref()).await? {
        return Ok(Outcome::Replayed(stored));
    }
    let value = create(&mut tx).await?;
    save(&mut tx, idem.as_ref(), &value, now_ms).await?;
    tx.commit().await?;
    Ok(Outcome::Fresh(value))
}
