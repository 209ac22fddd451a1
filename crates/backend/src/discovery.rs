//! Discovery and app settings (seed 000's "Backend Service"): the public document an app
//! reads before sign-in (`GET /discovery/{org}`: issuer, portal and chat URLs, features,
//! languages, branding, support), the organisation's free-form app settings
//! (`GET /discovery/{org}/settings`) and the index of organisations that opted in
//! (`GET /discovery?q=`). Admins change the settings through `/api/v1/orgs/{org}/app-settings`
//! (audited).
//!
//! Invariant: apps never send their access token here. Every discovery endpoint refuses a
//! request with an `Authorization` header (400), and the server's middleware lets such
//! requests through unauthenticated so that this answer, not a 401, is what they get. The
//! documents are public and cacheable (ETag, `If-None-Match` → 304).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use carebridge_domain::auth::{Actor, Permission, Source};
use carebridge_domain::org::{check_color, check_https_url, check_language};
use carebridge_domain::{OrgId, Timestamp, Violations};
use carebridge_proto::org::{AppSettings, Discovery, DiscoveryEntry};
use carebridge_proto::problem::Problem;
use carebridge_store::orgs::OrgRef;
use carebridge_store::{Db, Exec, StoreError, audit, exec, run, sqlx};
use carebridge_web::{ApiError, AppState, Auth, Json, OrgPath, Path, ServiceError, require};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_settings, put_settings))
}

/// The public routes (outside `/api/v1`).
/// Where the other roles of this deployment are, as discovery tells apps.
#[derive(Clone, Debug, Default)]
pub struct Deployment {
    /// The identity provider's issuer when it runs elsewhere; `None`: this server.
    pub issuer: Option<String>,
    /// Whether this server runs the `portal` role (then it is the default portal URL).
    pub portal_here: bool,
}

pub fn public_router(d: Deployment) -> axum::Router<AppState> {
    axum::Router::new()
        .route("/discovery", axum::routing::get(index))
        .route("/discovery/{org}", axum::routing::get(document))
        .route(
            "/discovery/{org}/settings",
            axum::routing::get(app_settings),
        )
        .layer(axum::Extension(std::sync::Arc::new(d)))
}

/// Checks app settings; returns them normalised.
pub fn check(mut s: AppSettings) -> Result<AppSettings, Violations> {
    let mut v = Violations::new();
    s.languages = s
        .languages
        .iter()
        .map(|l| l.trim().to_lowercase())
        .collect();
    for (i, l) in s.languages.iter().enumerate() {
        check_language(&mut v, &format!("/languages/{i}"), l);
    }
    s.languages.dedup();
    for (p, c) in [
        ("/branding/primary_color", &s.branding.primary_color),
        ("/branding/secondary_color", &s.branding.secondary_color),
    ] {
        if let Some(c) = c {
            check_color(&mut v, p, c);
        }
    }
    for (p, u) in [
        ("/branding/logo_url", &s.branding.logo_url),
        ("/support/url", &s.support.url),
        ("/portal_url", &s.portal_url),
        ("/chat_url", &s.chat_url),
    ] {
        if let Some(u) = u {
            check_https_url(&mut v, p, u);
        }
    }
    if let Some(e) = &s.support.email
        && !email_ok(e)
    {
        v.push("/support/email", "invalid_email", "an e-mail address");
    }
    if let Some(p) = &s.support.phone
        && (p.is_empty()
            || p.len() > 40
            || !p
                .chars()
                .all(|c| c.is_ascii_digit() || " +-()/".contains(c)))
    {
        v.push(
            "/support/phone",
            "invalid_phone",
            "a phone number (digits, spaces, + - ( ) /)",
        );
    }
    if s.app.len() > 64 {
        v.push("/app", "too_many_keys", "at most 64 settings");
    }
    if serde_json::to_string(&s.app)
        .map(|j| j.len())
        .unwrap_or(usize::MAX)
        > 16_384
    {
        v.push("/app", "too_large", "at most 16 KiB of settings");
    }
    v.into_result().map(|()| s)
}

fn email_ok(e: &str) -> bool {
    let e = e.trim();
    e.len() <= 254
        && e.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty()
                && d.contains('.')
                && !d.starts_with('.')
                && !e.contains(char::is_whitespace)
        })
}

async fn load(x: &mut impl Exec, org: OrgId) -> Result<AppSettings, StoreError> {
    let j: String = run!(x, c => sqlx::query_scalar("SELECT settings FROM organisations WHERE id = $1").bind(org.0).fetch_one(c).await)?;
    // Settings written before this schema (or `{}`) read as defaults.
    Ok(serde_json::from_str(&j).unwrap_or_default())
}

/// The app settings of the organisation.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/app-settings", tag = "organisations",
    params(("org" = String, Path, description = "slug or id")),
    responses((status = 200, body = AppSettings)), security(("bearer" = [])))]
async fn get_settings(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(_org): Path<String>,
) -> Result<axum::Json<AppSettings>, ApiError> {
    require(&p, &o, Permission::OrgRead)?;
    let mut c = s.db.read().await?;
    Ok(axum::Json(load(&mut c, o.id).await?))
}

/// Replace the app settings (what discovery publishes); audited.
#[utoipa::path(put, path = "/api/v1/orgs/{org}/app-settings", tag = "organisations", request_body = AppSettings,
    params(("org" = String, Path, description = "slug or id")),
    responses((status = 200, body = AppSettings), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn put_settings(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(_org): Path<String>,
    body: Json<AppSettings>,
) -> Result<axum::Json<AppSettings>, ApiError> {
    require(&p, &o, Permission::OrgWrite)?;
    let after = check(body.value).map_err(ServiceError::from)?;
    Ok(axum::Json(
        save(&s.db, &Actor::new(p, Source::Api), &o, after, s.now()).await?,
    ))
}

/// Stores checked settings with an audit event.
pub async fn save(
    db: &Db,
    actor: &Actor,
    o: &OrgRef,
    after: AppSettings,
    now: Timestamp,
) -> Result<AppSettings, ServiceError> {
    let mut tx = db.begin().await?;
    let before = load(&mut tx, o.id).await?;
    if before == after {
        return Ok(after);
    }
    let j = serde_json::to_string(&after).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    exec!(&mut tx, c => sqlx::query("UPDATE organisations SET settings = $2, updated_at = $3 WHERE id = $1")
        .bind(o.id.0).bind(&j).bind(now.as_millisecond()).execute(c).await)?;
    audit::record(
        &mut tx,
        o.id,
        actor,
        "org.app_settings",
        "organisation",
        &o.id.0.to_string(),
        Some(&before),
        Some(&after),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// 400 for any request that carries an `Authorization` header.
fn refuse_credentials(headers: &HeaderMap) -> Result<(), ApiError> {
    if headers.contains_key(header::AUTHORIZATION) {
        return Err(ApiError::BadRequest {
            code: "credentials_not_allowed",
            detail: "discovery is public: send no Authorization header (never send an access token here)".into(),
            pointer: Some("/header/authorization".into()),
        });
    }
    Ok(())
}

/// A cacheable JSON answer with a strong ETag of its body.
fn cacheable(headers: &HeaderMap, body: &impl serde::Serialize) -> Response {
    let bytes = match serde_json::to_vec(body) {
        Ok(b) => b,
        Err(e) => return ApiError::Internal(e.to_string()).into_response(),
    };
    let tag = format!("\"{}\"", hex_prefix(&Sha256::digest(&bytes)));
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut r = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    h.insert(header::VARY, HeaderValue::from_static("Authorization"));
    r
}

fn hex_prefix(d: &[u8]) -> String {
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

async fn org_of(db: &Db, org: &str) -> Result<OrgRef, ApiError> {
    let mut c = db.read().await?;
    carebridge_store::orgs::resolve(&mut c, org)
        .await?
        .ok_or(ApiError::Service(ServiceError::NotFound {
            what: "organisation",
        }))
}

/// `GET /discovery/{org}`.
async fn document(
    State(s): State<AppState>,
    axum::Extension(d): axum::Extension<std::sync::Arc<Deployment>>,
    headers: HeaderMap,
    axum::extract::Path(org): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    refuse_credentials(&headers)?;
    let o = org_of(&s.db, &org).await?;
    let mut c = s.db.read().await?;
    let settings = load(&mut c, o.id).await?;
    let name: String = run!(&mut c, c => sqlx::query_scalar("SELECT name FROM organisations WHERE id = $1").bind(o.id.0).fetch_one(c).await)?;
    let features = carebridge_store::features::enabled_list(&mut c, o.id.0).await?;
    let base = s.base_url().to_string();
    let chat_url = match (&settings.chat_url, features.iter().any(|f| f == "chat")) {
        (Some(u), _) => Some(u.clone()),
        (None, true) => Some(base.clone()),
        (None, false) => None,
    };
    let doc = Discovery {
        org_id: o.id.0,
        slug: o.slug.clone(),
        name,
        issuer: d.issuer.clone().unwrap_or_else(|| base.clone()),
        client_id: "carebridge-app".into(),
        portal_url: if features.iter().any(|f| f == "portal") {
            settings
                .portal_url
                .clone()
                .or_else(|| d.portal_here.then(|| base.clone()))
        } else {
            None
        },
        chat_url,
        features,
        languages: if settings.languages.is_empty() {
            vec![o.default_language.clone()]
        } else {
            settings.languages.clone()
        },
        branding: settings.branding,
        support: settings.support,
    };
    Ok(cacheable(&headers, &doc))
}

/// `GET /discovery/{org}/settings`.
async fn app_settings(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(org): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    refuse_credentials(&headers)?;
    let o = org_of(&s.db, &org).await?;
    let mut c = s.db.read().await?;
    Ok(cacheable(&headers, &load(&mut c, o.id).await?.app))
}

#[derive(Deserialize)]
struct IndexQuery {
    q: Option<String>,
}

/// `GET /discovery?q=`: organisations that opted in, by name or slug (at most 20).
async fn index(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<IndexQuery>,
) -> Result<Response, ApiError> {
    refuse_credentials(&headers)?;
    let q = q.q.unwrap_or_default().trim().to_lowercase();
    if q.chars().count() < 2 || q.len() > 100 {
        return Err(ServiceError::from(Violations::single(
            "/query/q",
            "invalid_query",
            "2 to 100 characters of a name or code",
        ))
        .into());
    }
    let esc = carebridge_store::like_escape(&q);
    let pattern = format!("%{esc}%");
    let mut c = s.db.read().await?;
    let rows: Vec<(Uuid, String, String)> = run!(&mut c, c => sqlx::query_as(
        "SELECT id, slug, name FROM organisations WHERE discoverable AND (lower(name) LIKE $1 ESCAPE '\\' OR lower(slug) LIKE $1 ESCAPE '\\') ORDER BY name, slug LIMIT 20")
        .bind(&pattern).fetch_all(c).await)?;
    let out: Vec<DiscoveryEntry> = rows
        .into_iter()
        .map(|(_, slug, name)| DiscoveryEntry { slug, name })
        .collect();
    Ok(cacheable(&headers, &out))
}
