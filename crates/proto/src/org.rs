//! Organisations and the one-time set-up.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::identity::CreatedApiKey;

/// An organisation (tenant).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Org {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    /// ISO 3166-1 alpha-2; national phone numbers are read in this region.
    pub default_region: String,
    pub default_language: String,
    pub contact_email: Option<String>,
    /// Listed in the public discovery index.
    pub discoverable: bool,
    pub version: i64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: jiff::Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: jiff::Timestamp,
}

fn default_region() -> String {
    "CH".into()
}

fn default_language() -> String {
    "de".into()
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    /// URL name: 2–63 of `a-z`, `0-9`, inner `-`.
    pub slug: String,
    pub name: String,
    #[serde(default = "default_region")]
    pub default_region: String,
    #[serde(default = "default_language")]
    pub default_language: String,
    #[serde(default)]
    pub contact_email: Option<String>,
}

/// Fields to change; absent fields stay, `null` clears a nullable field.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrg {
    pub name: Option<String>,
    pub default_region: Option<String>,
    pub default_language: Option<String>,
    #[serde(
        default,
        deserialize_with = "crate::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub contact_email: Option<Option<String>>,
    pub discoverable: Option<bool>,
}

/// The first administrator, created with the first organisation.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupAdmin {
    pub given_name: String,
    pub family_name: String,
    pub email: String,
    /// At least 12 characters.
    pub password: String,
}

/// Body of `POST /api/v1/setup`: the one-time token printed at first start.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    pub token: String,
    pub org: CreateOrg,
    pub admin: SetupAdmin,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SetupResponse {
    pub org: Org,
    pub admin_person_id: Uuid,
    /// An organisation-admin API key, shown once.
    pub api_key: CreatedApiKey,
}
