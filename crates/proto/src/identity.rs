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

/// An OAuth client of the organisation (an app or integration that gets tokens).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct OAuthClient {
    pub id: Uuid,
    /// Public identifier the app sends as `client_id`.
    pub client_id: String,
    pub name: String,
    /// A public client (browser or mobile app) has no secret and must use PKCE.
    pub public: bool,
    /// Exact-match redirect URIs.
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    /// e.g. `client_credentials`, `authorization_code`, `refresh_token`.
    pub grants: Vec<String>,
    /// First-party apps skip the consent page.
    pub first_party: bool,
    pub created_by: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: jiff::Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<jiff::Timestamp>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOAuthClient {
    pub name: String,
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub grants: Vec<String>,
    #[serde(default)]
    pub first_party: bool,
}

/// A new client; `client_secret` (confidential clients) is shown only in this response.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedOAuthClient {
    pub client: OAuthClient,
    pub client_secret: Option<String>,
}

/// Which people must use a second factor: role names (`org_admin`, `unit_admin`,
/// `dispatcher`, `member`, `client`, `relative`) or person kinds (`staff`, `volunteer`,
/// `client`, `relative`). Default: `org_admin`, `unit_admin`, `client`, `relative`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MfaPolicy {
    pub required_for: Vec<String>,
}

/// An invitation sent to a person's e-mail address: a link to set the first password.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Invitation {
    pub person_id: Uuid,
    pub account_id: Uuid,
    /// Where the link went.
    pub email: String,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: jiff::Timestamp,
}

/// `POST /api/v1/orgs/{org}/portal-token`: a short-lived token for the customer portal's
/// office endpoints (requests, messages, links), for an organisation admin (the console).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct OfficeToken {
    pub access_token: String,
    pub token_type: String,
    /// Seconds.
    pub expires_in: i64,
}

/// A browser sign-in session.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct SignInSession {
    pub id: Uuid,
    pub user_agent: String,
    /// How the person proved who they are (`pwd`, `sms`, `otp`, `mfa`, …).
    pub amr: Vec<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: jiff::Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub last_seen_at: jiff::Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: jiff::Timestamp,
}

/// An app a person allowed to sign them in.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Consent {
    pub client_id: String,
    pub client_name: String,
    pub scopes: Vec<String>,
    #[schema(value_type = String, format = DateTime)]
    pub granted_at: jiff::Timestamp,
}

/// The organisation's upstream OpenID provider (e.g. Microsoft Entra ID), for "Sign in with …".
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PutUpstreamProvider {
    /// Shown on the sign-in button ("Sign in with <name>").
    pub name: String,
    /// The provider's issuer URL, e.g. `https://login.microsoftonline.com/<tenant id>/v2.0`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Link a person by a *verified* e-mail (`email_verified: true`) when no person has the
    /// provider's subject (`oid` for Entra ID, else `sub`) as external id. Default true.
    #[serde(default = "yes")]
    pub link_by_email: bool,
    /// Create a person (in no unit, kind staff) when the provider signs in someone the
    /// directory does not know yet. Default false: such sign-ins are refused.
    #[serde(default)]
    pub jit_create: bool,
}

fn yes() -> bool {
    true
}

/// The upstream provider as stored (the secret is never shown again).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct UpstreamProvider {
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub link_by_email: bool,
    pub jit_create: bool,
    /// The redirect URI to register at the provider (in Entra ID: "Web" platform).
    pub redirect_uri: String,
}
