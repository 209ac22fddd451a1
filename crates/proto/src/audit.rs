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

/// `?limit=&cursor=` and the filters of the audit log.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page (with the same filters).
    pub cursor: Option<String>,
    /// Only events about this target id (e.g. a person's id).
    pub target: Option<String>,
    /// Only events by this actor (as shown in `actor`, e.g. `person:<id>`).
    pub actor: Option<String>,
    /// Only actions starting with this (e.g. `person.` or `grant.create`).
    pub action: Option<String>,
}
