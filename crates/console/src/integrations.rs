//! Integrations: SCIM provisioning from Entra ID (the tenant URL and a token, shown once), API
//! keys, OAuth clients (apps and integrations; a confidential client's secret shown once), and
//! the organisation's own identity provider for "Sign in with …" — with the values an
//! administrator pastes into Entra ID shown plainly. Secrets appear only in the answer to the
//! form that made them, never in a URL.

use askama::Template;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::Method;
use axum::response::Response;
use carebridge_proto::Page;
use carebridge_proto::identity::{
    ApiKey, CreatedApiKey, CreatedOAuthClient, OAuthClient, UpstreamProvider,
};
use uuid::Uuid;

use crate::api::Fail;
use crate::people::field_errors;
use crate::web::{Chrome, Ctx, Fields, delete_then, html, id_or_404, see};

/// Permissions an organisation key can be given.
const KEY_PERMISSIONS: &[&str] = &[
    "org:read",
    "org:write",
    "directory:read",
    "directory:write",
    "roles:write",
    "audit:read",
    "duties:read",
    "duties:write",
    "apikeys:manage",
    "clients:manage",
];
/// Scopes and grants a registered client can be given.
const CLIENT_SCOPES: &[&str] = &[
    "openid",
    "profile",
    "email",
    "phone",
    "offline_access",
    "directory:read",
    "directory:write",
    "duties:read",
    "portal",
    "portal:erp",
];
const CLIENT_GRANTS: &[&str] = &["authorization_code", "refresh_token", "client_credentials"];
/// The name of keys made with the SCIM button.
const SCIM_KEY: &str = "SCIM (Entra ID provisioning)";

/// A secret to show once.
pub struct Shown {
    what: String,
    id: String,
    secret: String,
}

#[derive(Template)]
#[template(path = "integrations.html")]
struct IntegrationsPage {
    c: Chrome,
    base: String,
    keys: Vec<ApiKey>,
    clients: Vec<OAuthClient>,
    upstream: Option<UpstreamProvider>,
    shown: Option<Shown>,
    key_permissions: &'static [&'static str],
    client_scopes: &'static [&'static str],
    client_grants: &'static [&'static str],
    errors: Vec<String>,
}

async fn page(ctx: &Ctx, shown: Option<Shown>, errors: Vec<String>, status: u16) -> Response {
    let keys = match ctx
        .api
        .get::<Page<ApiKey>>(&ctx.s.org_path("/api-keys?limit=200"))
        .await
    {
        Ok(k) => k.value.items,
        Err(f) => return ctx.fail(&f),
    };
    let clients = ctx
        .api
        .get::<Page<OAuthClient>>(&ctx.s.org_path("/oauth-clients?limit=200"))
        .await
        .map(|c| c.value.items)
        .unwrap_or_default();
    let upstream = ctx
        .api
        .get::<UpstreamProvider>(&ctx.s.org_path("/upstream-idp"))
        .await
        .ok()
        .map(|u| u.value);
    html(
        &IntegrationsPage {
            c: ctx.chrome("integrations", ctx.t().integrations),
            base: ctx.base.clone(),
            keys,
            clients,
            upstream,
            shown,
            key_permissions: KEY_PERMISSIONS,
            client_scopes: CLIENT_SCOPES,
            client_grants: CLIENT_GRANTS,
            errors,
        },
        status,
    )
}

/// `GET /console/integrations`.
pub async fn show(Extension(ctx): Extension<Ctx>) -> Response {
    page(&ctx, None, Vec::new(), 200).await
}

async fn refused(ctx: &Ctx, f: Fail) -> Response {
    match f {
        f @ Fail::Problem(_) if matches!(f.status(), 400 | 409 | 422) => {
            page(ctx, None, field_errors(ctx.t(), &f), 422).await
        }
        f => ctx.fail(&f),
    }
}

async fn create_key(ctx: &Ctx, name: String, permissions: Vec<String>) -> Response {
    let body = serde_json::json!({"name": name, "permissions": permissions});
    match ctx
        .api
        .send::<CreatedApiKey>(Method::POST, &ctx.s.org_path("/api-keys"), &body, None)
        .await
    {
        Ok(k) => {
            let shown = Shown {
                what: k.value.key.name,
                id: k.value.key.id.to_string(),
                secret: k.value.secret,
            };
            page(ctx, Some(shown), Vec::new(), 201).await
        }
        Err(f) => refused(ctx, f).await,
    }
}

/// `POST /console/integrations/scim`: an organisation key for SCIM provisioning.
pub async fn scim(Extension(ctx): Extension<Ctx>) -> Response {
    create_key(
        &ctx,
        SCIM_KEY.into(),
        vec!["directory:read".into(), "directory:write".into()],
    )
    .await
}

/// `POST /console/integrations/keys`.
pub async fn key(Extension(ctx): Extension<Ctx>, body: Bytes) -> Response {
    let f = Fields::parse(&body);
    create_key(&ctx, f.get("name").unwrap_or_default(), f.all("permission")).await
}

/// `POST /console/integrations/keys/{id}/revoke`.
pub async fn revoke_key(Extension(ctx): Extension<Ctx>, Path(id): Path<String>) -> Response {
    revoke(&ctx, &id, "api-keys").await
}

/// `POST /console/integrations/clients/{id}/revoke`.
pub async fn revoke_client(Extension(ctx): Extension<Ctx>, Path(id): Path<String>) -> Response {
    revoke(&ctx, &id, "oauth-clients").await
}

async fn revoke(ctx: &Ctx, id: &str, what: &str) -> Response {
    let id: Uuid = match id_or_404(ctx, id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    delete_then(ctx, &format!("/{what}/{id}"), "/console/integrations").await
}

/// `POST /console/integrations/clients`: registers an app or integration.
pub async fn client(Extension(ctx): Extension<Ctx>, body: Bytes) -> Response {
    let f = Fields::parse(&body);
    let redirects: Vec<String> = f
        .get("redirect_uris")
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let body = serde_json::json!({
        "name": f.get("name").unwrap_or_default(),
        "public": f.get("public").is_some(),
        "redirect_uris": redirects,
        "scopes": f.all("scope"),
        "grants": f.all("grant"),
        "first_party": f.get("first_party").is_some(),
    });
    match ctx
        .api
        .send::<CreatedOAuthClient>(Method::POST, &ctx.s.org_path("/oauth-clients"), &body, None)
        .await
    {
        Ok(c) => {
            let c = c.value;
            let shown = c.client_secret.map(|secret| Shown {
                what: c.client.name.clone(),
                id: c.client.client_id.clone(),
                secret,
            });
            page(&ctx, shown, Vec::new(), 201).await
        }
        Err(f) => refused(&ctx, f).await,
    }
}

/// `POST /console/integrations/upstream`: the organisation's own identity provider.
pub async fn upstream(Extension(ctx): Extension<Ctx>, body: Bytes) -> Response {
    let f = Fields::parse(&body);
    let body = serde_json::json!({
        "name": f.get("name").unwrap_or_default(),
        "issuer": f.get("issuer").unwrap_or_default(),
        "client_id": f.get("client_id").unwrap_or_default(),
        "client_secret": f.get("client_secret").unwrap_or_default(),
        "link_by_email": f.get("link_by_email").is_some(),
        "jit_create": f.get("jit_create").is_some(),
    });
    match ctx
        .api
        .send::<UpstreamProvider>(Method::PUT, &ctx.s.org_path("/upstream-idp"), &body, None)
        .await
    {
        Ok(_) => see("/console/integrations"),
        Err(f) => refused(&ctx, f).await,
    }
}
