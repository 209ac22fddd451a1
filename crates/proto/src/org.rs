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

/// Branding the apps show.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Branding {
    /// `#rrggbb`.
    #[serde(default)]
    pub primary_color: Option<String>,
    /// `#rrggbb`.
    #[serde(default)]
    pub secondary_color: Option<String>,
    /// An https URL.
    #[serde(default)]
    pub logo_url: Option<String>,
}

/// Who clients and members contact for help.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Support {
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
}

/// What the organisation's apps are configured with (`PUT /orgs/{org}/app-settings`); the
/// public discovery document is made from it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AppSettings {
    /// Languages the apps offer (BCP 47 primary tags: `de`, `fr`, `it`, `en`, `fi`, `sv`);
    /// empty means the organisation's default language.
    #[serde(default)]
    pub languages: Vec<String>,
    #[serde(default)]
    pub branding: Branding,
    #[serde(default)]
    pub support: Support,
    /// Base URL of the customer portal the apps call with the access token (run by the ERP
    /// vendor or by Carebridge's `portal` role).
    #[serde(default)]
    pub portal_url: Option<String>,
    /// Base URL of the chat service (defaults to this server when the chat is on).
    #[serde(default)]
    pub chat_url: Option<String>,
    /// Free-form settings for the apps (`GET /discovery/{org}/settings`), at most 64 keys.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub app: serde_json::Map<String, serde_json::Value>,
}

/// The public discovery document of an organisation (`GET /discovery/{org}`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Discovery {
    pub org_id: Uuid,
    pub slug: String,
    pub name: String,
    /// The OpenID Connect issuer to sign in with.
    pub issuer: String,
    /// The public client id of Carebridge's app.
    pub client_id: String,
    /// The customer portal's base URL; absent when the `portal` feature is off.
    pub portal_url: Option<String>,
    /// The chat's base URL; absent when the `chat` feature is off (unless set explicitly).
    pub chat_url: Option<String>,
    /// Enabled features, in name order (`chat`, `directory`, `portal`).
    pub features: Vec<String>,
    pub languages: Vec<String>,
    pub branding: Branding,
    pub support: Support,
}

/// An entry of the discovery index.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct DiscoveryEntry {
    pub slug: String,
    pub name: String,
}
