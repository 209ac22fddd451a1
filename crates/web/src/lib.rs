//! The HTTP conventions every role follows, and the service-layer error they share.
//!
//! - [`ServiceError`]: what a role's service layer returns (no HTTP in it);
//! - [`ApiError`]: RFC 9457 problem documents, mapped variant by variant (a database outage is a
//!   503, never a 400; 5xx bodies are opaque and the cause is logged with the request id);
//! - extractors that turn every malformed request into a problem naming the failing place
//!   ([`Json`], [`Path`], [`Query`], [`IfMatch`], [`IdempotencyKey`], [`Auth`]);
//! - responses with `ETag` ([`Tagged`], [`Created`]); signed pagination cursors ([`CursorKey`]);
//! - [`AppState`], the state every role router shares.

pub mod cursor;
pub mod error;
pub mod extract;
pub mod idem;
pub mod respond;

use std::sync::Arc;

use carebridge_domain::{Clock, Timestamp};
use carebridge_store::Db;

pub use cursor::CursorKey;

/// The caller's address as the server determined it (the TCP peer, or the client named in
/// `X-Forwarded-For` when the peer is a trusted reverse proxy); put into every request's
/// extensions by the server's middleware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::IpAddr);

/// The caller's address: the peer, or — when the peer is one of `trusted` proxies — the
/// right-most address of `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_addr(
    peer: std::net::IpAddr,
    forwarded_for: Option<&str>,
    trusted: &[std::net::IpAddr],
) -> std::net::IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let mut addr = peer;
    for hop in forwarded_for.unwrap_or("").rsplit(',') {
        match hop.trim().parse::<std::net::IpAddr>() {
            Ok(ip) => {
                addr = ip;
                if !trusted.contains(&ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    addr
}

#[cfg(test)]
mod addr_tests {
    use super::client_addr;

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let p = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let proxy = p("10.0.0.1");
        // Not behind a trusted proxy: the header is the caller's own claim, ignored.
        assert_eq!(
            client_addr(p("203.0.113.9"), Some("1.2.3.4"), &[proxy]),
            p("203.0.113.9")
        );
        // Behind it: the right-most untrusted hop (a client cannot push its own left entries).
        assert_eq!(
            client_addr(proxy, Some("1.2.3.4, 198.51.100.7"), &[proxy]),
            p("198.51.100.7")
        );
        assert_eq!(
            client_addr(proxy, Some("198.51.100.7, 10.0.0.1"), &[proxy]),
            p("198.51.100.7")
        );
        assert_eq!(client_addr(proxy, None, &[proxy]), proxy);
        assert_eq!(client_addr(proxy, Some("garbage"), &[proxy]), proxy);
    }
}
pub use error::{ApiError, REQUEST_ID, ServiceError};
pub use extract::{Auth, IdempotencyKey, IfMatch, IfMatchOpt, Json, Path, Query};
pub use respond::{Created, Tagged};

/// State shared by every role's router.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub cursor: CursorKey,
    /// The public base URL (`public_url`, or `http(s)://<bound address>`), set once the
    /// listener is bound; the OpenID issuer.
    pub base_url: Arc<std::sync::OnceLock<String>>,
}

impl AppState {
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The public base URL without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.base_url
            .get()
            .map(|s| s.trim_end_matches('/'))
            .unwrap_or("")
    }
}

/// Page size from `?limit=`: 1 to 200, default 50.
pub fn page_limit(limit: Option<u32>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(50),
        Some(n @ 1..=200) => Ok(i64::from(n)),
        Some(n) => Err(ApiError::bad_request_at(
            "invalid_limit",
            format!("limit must be 1 to 200, got {n}"),
            "/query/limit",
        )),
    }
}

use carebridge_domain::auth::{Permission, Principal};
use carebridge_store::orgs::OrgRef;

/// The `{org}` of the path, resolved for the authenticated caller *before* anything else of the
/// request (body included) is looked at: another tenant's organisation is a 404 whatever the
/// request carries, so the tenant-isolation rule holds for every route that has `{org}`.
pub struct OrgPath(pub OrgRef);

impl axum::extract::FromRequestParts<AppState> for OrgPath {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Auth(principal) = Auth::from_request_parts(parts, state).await?;
        let params = axum::extract::RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::Internal(e.body_text()))?;
        let org = params
            .iter()
            .find(|(k, _)| *k == "org")
            .map(|(_, v)| v.to_string())
            .ok_or_else(|| ApiError::Internal("route has no {org}".into()))?;
        let mut c = state.db.read().await.map_err(ApiError::from)?;
        match carebridge_store::orgs::resolve(&mut c, &org)
            .await
            .map_err(ApiError::from)?
        {
            Some(o)
                if matches!(principal, Principal::System { .. })
                    || principal.org() == Some(o.id) =>
            {
                Ok(OrgPath(o))
            }
            _ => Err(ServiceError::NotFound {
                what: "organisation",
            }
            .into()),
        }
    }
}

/// Checks that `principal` holds `perm` in `org` (403 otherwise; membership was checked by
/// [`OrgPath`]).
pub fn require(principal: &Principal, org: &OrgRef, perm: Permission) -> Result<(), ServiceError> {
    if principal.allows(org.id, perm) {
        Ok(())
    } else {
        Err(ServiceError::Forbidden {
            detail: format!("this credential lacks the '{}' permission", perm.as_str()),
        })
    }
}

/// The signed-in person of a `/api/v1/me/…` route with their organisation; 403 for
/// credentials that are not a person's (organisation and platform keys).
pub struct Me(pub Principal, pub OrgRef);

impl axum::extract::FromRequestParts<AppState> for Me {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Auth(principal) = Auth::from_request_parts(parts, state).await?;
        let Some((org, _)) = principal.person() else {
            return Err(ServiceError::Forbidden {
                detail: "'/me' routes need a personal credential (a person's key or sign-in)"
                    .into(),
            }
            .into());
        };
        let mut c = state.db.read().await.map_err(ApiError::from)?;
        let org = carebridge_store::orgs::resolve(&mut c, &org.to_string())
            .await
            .map_err(ApiError::from)?
            .ok_or(ApiError::Service(ServiceError::NotFound {
                what: "organisation",
            }))?;
        Ok(Me(principal, org))
    }
}
