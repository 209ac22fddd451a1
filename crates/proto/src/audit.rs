//! The audit log.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One audit event: who did what to which target, when, from where. Digests are SHA-256 of the
/// target's state before and after; the data itself is not in the log.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct AuditEvent {
    pub seq: i64,
    #[schema(value_type = String, format = DateTime)]
    pub at: jiff::Timestamp,
    pub actor: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub before_digest: Option<String>,
    pub after_digest: Option<String>,
    /// `api`, `cli`, `setup`, `demo`, later `import`, `scim`.
    pub source: String,
    pub prev_hash: String,
    pub hash: String,
}

/// Result of checking an organisation's audit chain.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct AuditVerification {
    pub ok: bool,
    pub events_checked: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
