//! HTTP for API keys, OAuth clients, the token and introspection endpoints, the JWKS and the
//! discovery document.

use axum::extract::State;
use carebridge_domain::auth::{Actor, Permission, Source};
use carebridge_proto::identity::{
    ApiKey, CreateApiKey, CreateOAuthClient, CreatedApiKey, CreatedOAuthClient, OAuthClient,
};
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
        .routes(routes!(list_clients, create_client))
        .routes(routes!(get_client, revoke_client))
        .merge(crate::manage::router())
}

/// OAuth clients of the organisation.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/oauth-clients", tag = "oauth-clients",
    params(("org" = String, Path, description = "slug or id"), PageQuery),
    responses((status = 200, body = Page<OAuthClient>)), security(("bearer" = [])))]
async fn list_clients(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(_org): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<Page<OAuthClient>>, ApiError> {
    let limit = page_limit(q.limit)?;
    require(&p, &o, Permission::ClientsManage)?;
    Ok(axum::Json(
        crate::clients::list(&s.db, &o, &s.cursor, q.cursor.as_deref(), limit).await?,
    ))
}

/// Register a client; a confidential client's secret is in this response only.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/oauth-clients", tag = "oauth-clients", request_body = CreateOAuthClient,
    params(("org" = String, Path, description = "slug or id"), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = CreatedOAuthClient), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn create_client(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(org): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    body: Json<CreateOAuthClient>,
) -> Result<Created<CreatedOAuthClient>, ApiError> {
    require(&p, &o, Permission::ClientsManage)?;
    let idem = Idem::new(
        &p,
        &format!("POST {}/oauth-clients", o.id),
        key,
        &body.digest,
    );
    let outcome = crate::clients::create(
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
        collection: format!("/api/v1/orgs/{org}/oauth-clients"),
    })
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/oauth-clients/{client}", tag = "oauth-clients",
    params(("org" = String, Path, description = "slug or id"), ("client" = Uuid, Path)),
    responses((status = 200, body = OAuthClient), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn get_client(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, id)): Path<(String, Uuid)>,
) -> Result<axum::Json<OAuthClient>, ApiError> {
    require(&p, &o, Permission::ClientsManage)?;
    Ok(axum::Json(crate::clients::get(&s.db, &o, id).await?))
}

/// Revoke a client: it gets no more tokens and its tokens stop passing introspection.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/oauth-clients/{client}", tag = "oauth-clients",
    params(("org" = String, Path, description = "slug or id"), ("client" = Uuid, Path)),
    responses((status = 200, body = OAuthClient), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn revoke_client(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, id)): Path<(String, Uuid)>,
) -> Result<axum::Json<OAuthClient>, ApiError> {
    require(&p, &o, Permission::ClientsManage)?;
    Ok(axum::Json(
        crate::clients::revoke(&s.db, &Actor::new(p, Source::Api), &o, id, s.now()).await?,
    ))
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

/// OpenID Connect discovery, the JWKS, the OAuth endpoints, the sign-in pages and the
/// account pages: outside `/api/v1`; the OAuth endpoints authenticate clients themselves.
pub fn public_router(options: &crate::ctx::Options) -> axum::Router<AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/oauth2/jwks", get(jwks))
        .route("/oauth2/authorize", get(crate::authorize::authorize))
        .route("/oauth2/login", post(crate::authorize::login))
        .route("/oauth2/consent", post(crate::authorize::consent))
        .route("/oauth2/mfa", post(crate::mfa::verify))
        .route("/oauth2/mfa/resend", post(crate::mfa::resend))
        .route("/oauth2/mfa/enrol", post(crate::mfa::enrol))
        .route("/oauth2/token", post(crate::token::token))
        .route("/oauth2/introspect", post(crate::token::introspect))
        .route("/oauth2/revoke", post(crate::token::revoke))
        .route(
            "/oauth2/userinfo",
            get(crate::token::userinfo).post(crate::token::userinfo),
        )
        .route(
            "/oauth2/device_authorization",
            post(crate::device::authorize),
        )
        .route(
            "/oauth2/device",
            get(crate::device::page).post(crate::device::decide),
        )
        .route("/oauth2/logout", get(crate::logout::logout))
        .route("/oauth2/upstream", get(crate::upstream::start))
        .route("/oauth2/upstream/callback", get(crate::upstream::callback))
        .route(
            "/account/forgot",
            get(crate::account::forgot_page).post(crate::account::forgot),
        )
        .route(
            "/account/password",
            get(crate::account::password_form).post(crate::account::set_password),
        )
        .route("/.well-known/openid-configuration", get(discovery))
        .layer(axum::Extension(crate::ctx::Ctx::new(options)))
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

/// The discovery document (OpenID Connect Discovery 1.0).
async fn discovery(State(s): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let base = s.base_url();
    let doc = serde_json::json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/oauth2/authorize"),
        "token_endpoint": format!("{base}/oauth2/token"),
        "userinfo_endpoint": format!("{base}/oauth2/userinfo"),
        "jwks_uri": format!("{base}/oauth2/jwks"),
        "revocation_endpoint": format!("{base}/oauth2/revoke"),
        "introspection_endpoint": format!("{base}/oauth2/introspect"),
        "device_authorization_endpoint": format!("{base}/oauth2/device_authorization"),
        "end_session_endpoint": format!("{base}/oauth2/logout"),
        "scopes_supported": carebridge_domain::oauth::SCOPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": carebridge_domain::oauth::GRANTS,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "amr", "azp", "sid", "org", "name", "given_name", "family_name", "locale", "email", "phone_number"],
        "prompt_values_supported": ["none", "login", "consent"],
        "ui_locales_supported": ["de", "en", "fr", "it", "fi", "sv"],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
    });
    (
        [(axum::http::header::CACHE_CONTROL, "public, max-age=300")],
        axum::Json(doc),
    )
        .into_response()
}
