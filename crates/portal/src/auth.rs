//! Who is calling the portal: the portal checks access tokens itself (see [`crate::jwks`]), so
//! it needs nothing of the identity provider but its published keys.
//!
//! - [`Caller`]: a person (client or relative) with a token of scope `portal` from a sign-in
//!   (it names a grant, `gid`); refused while the organisation has the `portal` feature off
//!   (the ERP's feeds and the office keep working, so nothing is lost meanwhile).
//! - [`Erp`]: the organisation's ERP or back office with a client-credentials token of scope
//!   `portal:erp`.
//! - [`Office`]: the ERP, or an organisation admin with a short-lived office token (scope
//!   `portal:office`), for reading and answering (the admin console's portal page).
//!
//! Both are tokens with audience `portal`, so a token for Carebridge's own APIs is refused here,
//! and a portal token is refused there.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use carebridge_domain::oauth::PORTAL_AUDIENCE;
use carebridge_identity::keys::{TokenError, verify_with};
use carebridge_web::{ApiError, AppState, ServiceError};
use serde::Deserialize;
use uuid::Uuid;

use crate::jwks::{Jwks, JwksError};

/// The portal role's shared state, an extension on its router. The key cache is made on first
/// use: without a configured issuer the issuer is this server's own public URL, known only once
/// it listens.
pub struct Portal {
    issuer: Option<String>,
    jwks: std::sync::OnceLock<Arc<Jwks>>,
}

impl Portal {
    pub fn new(issuer: Option<String>) -> Portal {
        Portal {
            issuer,
            jwks: std::sync::OnceLock::new(),
        }
    }

    fn jwks(&self, s: &AppState) -> &Arc<Jwks> {
        self.jwks
            .get_or_init(|| Jwks::new(self.issuer.as_deref().unwrap_or(s.base_url())))
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    org: Option<String>,
    #[serde(default)]
    scope: String,
    gid: Option<String>,
}

/// A signed-in person (client or relative).
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub subject: Uuid,
    pub org: Uuid,
}

/// The organisation's ERP side.
#[derive(Clone, Debug)]
pub struct Erp {
    pub org: Uuid,
    pub client_id: String,
}

fn unauthorized(detail: impl Into<String>) -> ApiError {
    ApiError::Unauthorized {
        detail: detail.into(),
    }
}

async fn claims(parts: &Parts, s: &AppState) -> Result<Claims, ApiError> {
    let portal = parts
        .extensions
        .get::<Arc<Portal>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal("portal state missing".into()))?;
    let token = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| unauthorized("send an access token as Authorization: Bearer <token>"))?;
    let kid = carebridge_identity::keys::kid_of(token);
    let now = s.now();
    let jwks = portal.jwks(s);
    let keys = jwks
        .keys_for(kid.as_deref(), now)
        .await
        .map_err(|e| match e {
            JwksError::Unavailable(_) => ApiError::Unavailable {
                code: "issuer_unavailable",
                detail: e.to_string(),
            },
            JwksError::Refreshing => ApiError::Unavailable {
                code: "issuer_keys_refreshing",
                detail: e.to_string(),
            },
        })?;
    verify_with::<Claims>(
        token,
        &keys,
        jwks.issuer(),
        &[PORTAL_AUDIENCE],
        Some(now),
    )
    .map_err(|e| {
        unauthorized(match e {
            TokenError::Malformed => "the access token is not a well-formed JWT".to_string(),
            TokenError::Algorithm => "the access token must be signed with EdDSA".to_string(),
            TokenError::UnknownKey => {
                "the access token is signed by a key the identity provider does not publish"
                    .to_string()
            }
            TokenError::Invalid(why) => format!(
                "the access token was refused (expired, another issuer or audience, or a bad signature): {why}"
            ),
        })
    })
}

fn has_scope(c: &Claims, want: &str) -> bool {
    c.scope.split(' ').any(|s| s == want)
}

fn org_of(c: &Claims) -> Result<Uuid, ApiError> {
    c.org
        .as_deref()
        .and_then(|o| Uuid::parse_str(o).ok())
        .ok_or_else(|| unauthorized("the access token names no organisation"))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let c = claims(parts, s).await?;
        if c.gid.is_none() {
            return Err(ServiceError::Forbidden {
                detail: "this endpoint is for signed-in clients and relatives, not for client-credentials tokens".into(),
            }
            .into());
        }
        if !has_scope(&c, "portal") {
            return Err(ServiceError::Forbidden {
                detail: "insufficient_scope: the token lacks the scope `portal`".into(),
            }
            .into());
        }
        let subject = Uuid::parse_str(&c.sub)
            .map_err(|_| unauthorized("the token's subject is not a person"))?;
        let org = org_of(&c)?;
        let mut db = s.db.read().await?;
        if !carebridge_store::features::enabled(&mut db, org, "portal").await? {
            return Err(ServiceError::Forbidden {
                detail: "feature_off: the organisation has switched the customer portal off".into(),
            }
            .into());
        }
        Ok(Caller { subject, org })
    }
}

/// The organisation's back office: the ERP's client-credentials token (`portal:erp`), or an
/// organisation admin's short-lived office token (`portal:office`, made by the identity
/// provider's `POST /api/v1/orgs/{org}/portal-token`, which checks the role). Used on the
/// endpoints that read and answer (requests, messages, links, settings), never on the ERP's
/// feeds, which stay the ERP's.
pub struct Office(pub Erp);

impl FromRequestParts<AppState> for Office {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let c = claims(parts, s).await?;
        if c.gid.is_none() && has_scope(&c, "portal:erp") {
            return Ok(Office(Erp {
                org: org_of(&c)?,
                client_id: c.sub,
            }));
        }
        if c.gid.is_none() && has_scope(&c, carebridge_domain::oauth::PORTAL_OFFICE_SCOPE) {
            let person = Uuid::parse_str(&c.sub)
                .map_err(|_| unauthorized("the token's subject is not a person"))?;
            return Ok(Office(Erp {
                org: org_of(&c)?,
                client_id: format!("office:{person}"),
            }));
        }
        Err(ServiceError::Forbidden {
            detail: "insufficient_scope: this needs the ERP's token (`portal:erp`) or an organisation admin's office token (`portal:office`)".into(),
        }
        .into())
    }
}

impl FromRequestParts<AppState> for Erp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let c = claims(parts, s).await?;
        if c.gid.is_some() || !has_scope(&c, "portal:erp") {
            return Err(ServiceError::Forbidden {
                detail: "insufficient_scope: the ERP feed needs a client-credentials token with scope `portal:erp`".into(),
            }
            .into());
        }
        Ok(Erp {
            org: org_of(&c)?,
            client_id: c.sub,
        })
    }
}
