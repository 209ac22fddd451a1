//! SCIM 2.0 (RFC 7643/7644) for provisioning from Microsoft Entra ID and other identity
//! systems, at `/scim/v2`.
//!
//! - Authentication: an organisation API key (`Authorization: Bearer cbk_…`, created with
//!   `carebridge apikey create` or the API, shown once, stored hashed) with `directory:read`
//!   and `directory:write`; the organisation is the key's.
//! - Users are the directory's people, Groups its groups. Writes go through the same services
//!   as the API and the import (`service::people`, `service::labels`): same validation, audit
//!   and sync feed. What SCIM knows beyond the directory's fields (userName, externalId,
//!   department, manager; a group's externalId) lives in `scim_users` / `scim_groups`.
//! - Filters are parsed by `domain::scim` and translated to SQL (`filter`), never evaluated by
//!   loading rows; sorting and `startIndex`/`count` paging happen in the query.
//! - PATCH applies RFC 7644 operations to the resource's JSON (`patch`, with the forms Entra
//!   sends: capitalised op names, `"False"` strings, value-path filters, path-less values with
//!   dotted keys), then stores the result like a PUT.
//! - Errors are SCIM error documents (`application/scim+json`).

mod discovery;
mod filter;
mod groups;
mod patch;
mod repo;
mod users;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use carebridge_domain::auth::{Actor, Permission, Principal, Source};
use carebridge_store::StoreError;
use carebridge_store::orgs::OrgRef;
use carebridge_web::{AppState, ServiceError};
use serde_json::{Value, json};

pub const CONTENT_TYPE: &str = "application/scim+json";
pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// Largest page.
pub const MAX_COUNT: i64 = 200;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/scim/v2/ServiceProviderConfig",
            read_only(get(discovery::service_provider_config)),
        )
        .route("/scim/v2/Schemas", read_only(get(discovery::schemas)))
        .route("/scim/v2/Schemas/{id}", read_only(get(discovery::schema)))
        .route(
            "/scim/v2/ResourceTypes",
            read_only(get(discovery::resource_types)),
        )
        .route(
            "/scim/v2/ResourceTypes/{id}",
            read_only(get(discovery::resource_type)),
        )
        .route(
            "/scim/v2/.search",
            axum::routing::post(discovery::search_unsupported),
        )
        .route("/scim/v2/Users/.search", axum::routing::post(users::search))
        .route(
            "/scim/v2/Groups/.search",
            axum::routing::post(groups::search),
        )
        .route("/scim/v2/Users", get(users::list).post(users::create))
        .route(
            "/scim/v2/Users/{id}",
            get(users::get)
                .put(users::replace)
                .patch(users::patch)
                .delete(users::delete),
        )
        .route("/scim/v2/Groups", get(groups::list).post(groups::create))
        .route(
            "/scim/v2/Groups/{id}",
            get(groups::get)
                .put(groups::replace)
                .patch(groups::patch)
                .delete(groups::delete),
        )
        .route("/scim/v2/{*rest}", axum::routing::any(not_found))
        .layer(axum::extract::DefaultBodyLimit::max(4 * 1024 * 1024))
}

fn read_only(r: axum::routing::MethodRouter<AppState>) -> axum::routing::MethodRouter<AppState> {
    r.post(discovery::read_only)
        .put(discovery::read_only)
        .patch(discovery::read_only)
        .delete(discovery::read_only)
}

async fn not_found() -> ScimError {
    ScimError::new(404, None, "no such SCIM endpoint")
}

/// A SCIM error response.
#[derive(Debug)]
pub struct ScimError {
    pub status: u16,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    pub fn new(status: u16, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type,
            detail: detail.into(),
        }
    }

    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::new(400, Some("invalidValue"), detail)
    }

    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::new(400, Some("invalidSyntax"), detail)
    }
}

impl From<ServiceError> for ScimError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound { what } => ScimError::new(404, None, format!("no such {what}")),
            ServiceError::Forbidden { detail } => ScimError::new(403, None, detail),
            ServiceError::Invalid(v) => ScimError::invalid_value(
                v.0.iter()
                    .map(|x| format!("{}: {}", x.pointer, x.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            ServiceError::Conflict { detail, .. } => {
                ScimError::new(409, Some("uniqueness"), detail)
            }
            ServiceError::VersionMismatch { current } => ScimError::new(
                412,
                None,
                format!("the resource changed: its version is W/\"{current}\""),
            ),
            ServiceError::IdempotencyMismatch | ServiceError::BadCursor => {
                ScimError::invalid_value("bad request")
            }
            ServiceError::Store(s) => s.into(),
        }
    }
}

impl From<StoreError> for ScimError {
    fn from(e: StoreError) -> Self {
        match e {
            // Two requests raced past the checks: the database's constraint decided.
            StoreError::Unique { .. } => ScimError::new(
                409,
                Some("uniqueness"),
                "a resource with this unique value exists already",
            ),
            StoreError::ForeignKey { .. } => {
                ScimError::invalid_value("a referenced resource does not exist (any more)")
            }
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "scim: database unavailable");
                ScimError::new(503, None, "the database is unavailable; try again")
            }
            other => {
                tracing::error!(error = %other, "scim: internal error");
                ScimError::new(500, None, "internal error")
            }
        }
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "schemas": [ERROR],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = json!(t);
        }
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut r = (status, axum::Json(body)).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if self.status == 401 {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"scim\""),
            );
        }
        r
    }
}

/// A SCIM JSON response with optional `ETag` and `Location`.
pub struct Scim {
    pub status: StatusCode,
    pub body: Value,
    pub version: Option<i64>,
    pub location: Option<String>,
}

impl IntoResponse for Scim {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body)).into_response();
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Some(v) = self.version
            && let Ok(x) = HeaderValue::from_str(&format!("W/\"{v}\""))
        {
            h.insert(header::ETAG, x);
        }
        if let Some(l) = self.location
            && let Ok(x) = HeaderValue::from_str(&l)
        {
            h.insert(header::LOCATION, x);
        }
        r
    }
}

impl Scim {
    pub fn ok(body: Value) -> Scim {
        Scim {
            status: StatusCode::OK,
            body,
            version: None,
            location: None,
        }
    }
}

/// The caller of a SCIM request: an organisation-wide credential with `directory:read` and
/// `directory:write`.
pub struct Caller {
    pub actor: Actor,
    pub org: OrgRef,
}

/// Authenticates a SCIM request (the server's middleware put the principal in, if any).
pub async fn caller(s: &AppState, parts: &axum::http::Extensions) -> Result<Caller, ScimError> {
    let Some(p) = parts.get::<Principal>().cloned() else {
        return Err(ScimError::new(
            401,
            None,
            "send the organisation's SCIM token as Authorization: Bearer <token>",
        ));
    };
    let Some(org_id) = p.org() else {
        return Err(ScimError::new(
            403,
            None,
            "SCIM needs a key of one organisation",
        ));
    };
    if !p.allows(org_id, Permission::DirectoryRead) || !p.allows(org_id, Permission::DirectoryWrite)
    {
        return Err(ScimError::new(
            403,
            None,
            "this credential lacks 'directory:read' and 'directory:write' over the organisation",
        ));
    }
    let mut c = s.db.read().await?;
    let org = carebridge_store::orgs::resolve(&mut c, &org_id.0.to_string())
        .await?
        .ok_or_else(|| ScimError::new(403, None, "the credential's organisation is gone"))?;
    Ok(Caller {
        actor: Actor::new(p, Source::Scim),
        org,
    })
}

/// The base URL of resources (`…/scim/v2`).
pub fn base(s: &AppState) -> String {
    format!("{}/scim/v2", s.base_url())
}

/// Reads a JSON body, whatever the content type says (Entra sends `application/scim+json`).
pub fn body(bytes: &[u8]) -> Result<Value, ScimError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ScimError::invalid_syntax(format!("the body is not JSON: {e}")))
}

/// `If-Match: W/"3"` (or `"3"`): the version, if given.
pub fn if_match(h: &HeaderMap) -> Result<Option<i64>, ScimError> {
    let Some(v) = h.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("").trim();
    if s == "*" {
        return Ok(None);
    }
    let t = s.trim_start_matches("W/").trim_matches('"');
    t.parse::<i64>().map(Some).map_err(|_| {
        ScimError::new(
            412,
            None,
            format!("If-Match '{s}' is not a version of this resource"),
        )
    })
}

/// `startIndex` (1-based) and `count` of a list request.
pub fn paging(q: &std::collections::HashMap<String, String>) -> Result<(i64, i64), ScimError> {
    let get = |k: &str| {
        q.iter()
            .find(|(x, _)| x.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    };
    let start = match get("startIndex") {
        None => 1,
        Some(v) => v
            .parse::<i64>()
            .map_err(|_| ScimError::invalid_value("startIndex must be an integer"))?
            .max(1),
    };
    let count = match get("count") {
        None => MAX_COUNT,
        Some(v) => v
            .parse::<i64>()
            .map_err(|_| ScimError::invalid_value("count must be an integer"))?
            .clamp(0, MAX_COUNT),
    };
    Ok((start, count))
}

/// A query parameter by case-insensitive name.
pub fn param<'a>(q: &'a std::collections::HashMap<String, String>, k: &str) -> Option<&'a str> {
    q.iter()
        .find(|(x, _)| x.eq_ignore_ascii_case(k))
        .map(|(_, v)| v.as_str())
}

/// `ORDER BY` of a list: `sortBy` through `column` (which knows the resource's attributes),
/// `sortOrder`, then `id` so that pages are stable.
pub fn order_by(
    q: &std::collections::HashMap<String, String>,
    id: &str,
    column: impl Fn(&str) -> Option<&'static str>,
) -> Result<String, ScimError> {
    let Some(by) = param(q, "sortBy") else {
        return Ok(id.to_string());
    };
    let col = column(&by.to_ascii_lowercase())
        .ok_or_else(|| ScimError::invalid_value(format!("sortBy '{by}' is not supported")))?;
    let desc = param(q, "sortOrder").is_some_and(|o| o.eq_ignore_ascii_case("descending"));
    Ok(format!("{col} {}, {id}", if desc { "DESC" } else { "ASC" }))
}

/// A list response.
pub fn list_response(total: i64, start: i64, items: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": items.len(),
        "Resources": items,
    })
}

/// Keeps only the requested attributes (`attributes`) or drops some (`excludedAttributes`);
/// `id`, `schemas` and `meta` always stay (they are `returned: always`).
pub fn project(mut v: Value, q: &std::collections::HashMap<String, String>) -> Value {
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .map(|x| {
                let x = x.trim();
                // Drop a schema URI prefix of a core attribute.
                let x = x
                    .strip_prefix(USER)
                    .or_else(|| x.strip_prefix(GROUP))
                    .map(|r| r.trim_start_matches(':'))
                    .unwrap_or(x);
                x.to_ascii_lowercase()
            })
            .filter(|x| !x.is_empty())
            .collect()
    };
    let always = ["id", "schemas", "meta"];
    let Some(obj) = v.as_object_mut() else {
        return v;
    };
    if let Some(a) = param(q, "attributes") {
        let want = split(a);
        let keep = |k: &str| {
            let k = k.to_ascii_lowercase();
            always.contains(&k.as_str())
                || want.iter().any(|w| {
                    *w == k || w.starts_with(&format!("{k}.")) || w.starts_with(&format!("{k}:"))
                })
        };
        obj.retain(|k, _| keep(k));
        // Sub-attributes asked for: `name.givenName` keeps only that part of `name`.
        for (k, val) in obj.iter_mut() {
            let kl = k.to_ascii_lowercase();
            let subs: Vec<String> = want
                .iter()
                .filter_map(|w| w.strip_prefix(&format!("{kl}.")).map(String::from))
                .collect();
            if !subs.is_empty()
                && !want.contains(&kl)
                && let Some(o) = val.as_object_mut()
            {
                o.retain(|sk, _| subs.contains(&sk.to_ascii_lowercase()));
            }
        }
    } else if let Some(x) = param(q, "excludedAttributes") {
        let drop = split(x);
        obj.retain(|k, _| {
            let k = k.to_ascii_lowercase();
            always.contains(&k.as_str()) || !drop.contains(&k)
        });
        for (k, val) in obj.iter_mut() {
            let kl = k.to_ascii_lowercase();
            let subs: Vec<String> = drop
                .iter()
                .filter_map(|w| w.strip_prefix(&format!("{kl}.")).map(String::from))
                .collect();
            if !subs.is_empty()
                && let Some(o) = val.as_object_mut()
            {
                o.retain(|sk, _| !subs.contains(&sk.to_ascii_lowercase()));
            }
        }
    }
    v
}

/// An RFC 3339 time from milliseconds.
pub fn time(ms: i64) -> String {
    carebridge_domain::time::from_millis(ms).to_string()
}
