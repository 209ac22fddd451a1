//! HTTP for API keys.

use axum::extract::State;
use carebridge_domain::auth::{Actor, Permission, Source};
use carebridge_proto::identity::{ApiKey, CreateApiKey, CreatedApiKey};
use carebridge_proto::problem::Problem;
use carebridge_proto::{Page, PageQuery};
use carebridge_web::idem::Idem;
use carebridge_web::{
    ApiError, AppState, Auth, Created, IdempotencyKey, Json, OrgPath, Path, Query, page_limit,
    require,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::apikeys;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/api-keys", tag = "api-keys",
    params(("org" = String, Path, description = "slug or id"), PageQuery),
    responses((status = 200, body = Page<ApiKey>)), security(("bearer" = [])))]
async fn list_keys(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(_org): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<Page<ApiKey>>, ApiError> {
    let limit = page_limit(q.limit)?;
    require(&p, &o, Permission::ApiKeysManage)?;
    Ok(axum::Json(
        apikeys::list(&s.db, &o, &s.cursor, q.cursor.as_deref(), limit).await?,
    ))
}

/// Create an API key; the secret is in this response only.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/api-keys", tag = "api-keys", request_body = CreateApiKey,
    params(("org" = String, Path, description = "slug or id"), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = CreatedApiKey), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn create_key(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(org): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    body: Json<CreateApiKey>,
) -> Result<Created<CreatedApiKey>, ApiError> {
    require(&p, &o, Permission::ApiKeysManage)?;
    let idem = Idem::new(&p, &format!("POST {}/api-keys", o.id), key, &body.digest);
    let outcome = apikeys::create(
        &s.db,
        &Actor::new(p, Source::Api),
        &o,
        body.value,
        idem,
        s.now(),
    )
    .await?;
    Ok(Created {
        outcome,
        collection: format!("/api/v1/orgs/{org}/api-keys"),
    })
}

/// Revoke an API key at once.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/api-keys/{key}", tag = "api-keys",
    params(("org" = String, Path, description = "slug or id"), ("key" = Uuid, Path)),
    responses((status = 200, body = ApiKey), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn revoke_key(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, key)): Path<(String, Uuid)>,
) -> Result<axum::Json<ApiKey>, ApiError> {
    require(&p, &o, Permission::ApiKeysManage)?;
    Ok(axum::Json(
        apikeys::revoke(&s.db, &Actor::new(p, Source::Api), &o, key, s.now()).await?,
    ))
}

/// OpenID Connect discovery and the JWKS: public, outside `/api/v1`.
pub fn public_router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/oauth2/jwks", axum::routing::get(jwks))
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get(discovery),
        )
}

/// The published signing keys (RFC 7517); cacheable for five minutes.
async fn jwks(State(s): State<AppState>) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let doc = crate::keys::jwks(&s.db, s.now())
        .await
        .map_err(ApiError::from)?;
    Ok((
        [(axum::http::header::CACHE_CONTROL, "public, max-age=300")],
        axum::Json(doc),
    )
        .into_response())
}

/// The discovery document (OpenID Connect Discovery 1.0). It names only what this server
/// serves today; the authorization and token endpoints join it when they exist.
async fn discovery(State(s): State<AppState>) -> axum::Json<serde_json::Value> {
    let base = s.base_url();
    axum::Json(serde_json::json!({
        "issuer": base,
        "jwks_uri": format!("{base}/oauth2/jwks"),
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "token_endpoint_auth_signing_alg_values_supported": ["EdDSA"],
        "subject_types_supported": ["public"],
        "response_types_supported": [],
    }))
}
