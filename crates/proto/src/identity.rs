//! API keys (service accounts until single sign-on exists).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ApiKey {
    pub id: Uuid,
    /// Absent for platform keys.
    pub org_id: Option<Uuid>,
    pub name: String,
    /// e.g. `directory:read`, `directory:write`, `roles:write`, `audit:read`, `org:read`,
    /// `org:write`, `apikeys:manage`.
    pub permissions: Vec<String>,
    /// Set for a personal key: it acts as this person, with what their roles allow, narrowed
    /// to `permissions`.
    pub person_id: Option<Uuid>,
    pub created_by: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: jiff::Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<jiff::Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<jiff::Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<jiff::Timestamp>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    pub name: String,
    pub permissions: Vec<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<jiff::Timestamp>,
    /// Makes a personal key for this person of the organisation.
    #[serde(default)]
    pub person_id: Option<Uuid>,
}

/// A new key; `secret` is shown only in this response. Send it as `Authorization: Bearer <secret>`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedApiKey {
    pub key: ApiKey,
    pub secret: String,
}
