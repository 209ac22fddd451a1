//! Sign-in through the organisation's own identity provider (federation): Carebridge is an
//! OpenID Connect relying party of the upstream provider (Microsoft Entra ID or any standard
//! one), with the `openidconnect` crate: discovery, code flow with PKCE and nonce, ID-token
//! signature and claims checks.
//!
//! Linking: the person of the organisation whose external id (SCIM `externalId`) is the
//! provider's object id (`oid`, Entra ID) or subject (`sub`); else, if the organisation allows
//! it, the person with the provider's e-mail when the provider says it is *verified*
//! (`email_verified: true`). Never by an unverified claim. Nobody found: a clear page, no
//! account is created. A person without an account gets one (no password) on the first
//! federated sign-in. The session's second factor counts as done when the provider reports
//! one (`amr` contains `mfa`).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use carebridge_domain::auth::{Actor, Permission, Source};
use carebridge_domain::{AccountId, OrgId, Timestamp, Violations};
use carebridge_proto::identity::{PutUpstreamProvider, UpstreamProvider};
use carebridge_proto::problem::Problem;
use carebridge_store::{audit, exec, run, sqlx};
use carebridge_web::{ApiError, AppState, Auth, Json, OrgPath, Path, ServiceError, require};
use openidconnect::core::{
    CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreResponseType,
};
use openidconnect::{
    AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::i18n::Lang;
use crate::pages;

const FLOW_TTL_MS: i64 = 600_000;

/// A configured provider.
#[derive(Clone, Debug)]
pub struct Provider {
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    client_secret: String,
    pub link_by_email: bool,
    pub jit_create: bool,
}

/// What a just-in-time creation knows about the new person.
#[derive(Clone, Debug)]
pub struct NewPerson {
    pub given_name: String,
    pub family_name: String,
    /// Only a verified e-mail.
    pub email: Option<String>,
    /// The provider's subject (`oid` or `sub`), so the next sign-in links by external id.
    pub external_id: String,
}

/// Creates a person in the directory (the server wires the directory's own service in, so
/// validation, search and audit are the directory's); returns the person id.
pub type Provisioner = std::sync::Arc<
    dyn Fn(
            carebridge_store::Db,
            carebridge_store::orgs::OrgRef,
            NewPerson,
            Timestamp,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Uuid, ServiceError>> + Send>,
        > + Send
        + Sync,
>;

/// The provider of an organisation, if it has one.
pub async fn provider(s: &AppState, org: OrgId) -> Result<Option<Provider>, ApiError> {
    let mut c = s.db.read().await?;
    let r: Option<(String, String, String, String, bool, bool)> = run!(&mut c, c => sqlx::query_as(
        "SELECT name, issuer, client_id, client_secret, link_by_email, jit_create FROM upstream_providers WHERE org_id = $1")
        .bind(org.0).fetch_optional(c).await)?;
    Ok(r.map(
        |(name, issuer, client_id, client_secret, link_by_email, jit_create)| Provider {
            name,
            issuer,
            client_id,
            client_secret,
            link_by_email,
            jit_create,
        },
    ))
}

fn redirect_uri(s: &AppState) -> String {
    format!("{}/oauth2/upstream/callback", s.base_url())
}

fn http() -> Result<openidconnect::reqwest::Client, ApiError> {
    openidconnect::reqwest::Client::builder()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// The link on the sign-in page for the organisation `org` (when it has a provider).
pub async fn button(s: &AppState, org: OrgId, slug: &str, next: &str) -> Option<(String, String)> {
    let p = provider(s, org).await.ok().flatten()?;
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("org", slug).append_pair("next", next);
    Some((format!("/oauth2/upstream?{}", q.finish()), p.name))
}

#[derive(Deserialize)]
pub struct StartQuery {
    org: Option<String>,
    next: Option<String>,
}

fn lang(headers: &HeaderMap) -> Lang {
    Lang::pick(
        None,
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    )
}

/// `GET /oauth2/upstream?org=…&next=…`: off to the organisation's provider.
pub async fn start(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<StartQuery>,
) -> Response {
    let l = lang(&headers);
    let t = l.texts();
    let r: Result<Response, ApiError> = async {
        let next = q.next.unwrap_or_default();
        if !crate::web::next_ok(&next) {
            return Ok(pages::message(StatusCode::BAD_REQUEST, l, t.error_title, "The link names an unknown continuation."));
        }
        let mut c = s.db.read().await?;
        let org = carebridge_store::orgs::resolve(&mut c, q.org.as_deref().unwrap_or("")).await?;
        drop(c);
        let Some(org) = org else {
            return Ok(pages::message(StatusCode::NOT_FOUND, l, t.error_title, "Unknown organisation."));
        };
        let Some(p) = provider(&s, org.id).await? else {
            return Ok(pages::message(StatusCode::NOT_FOUND, l, t.error_title, "This organisation has no sign-in provider."));
        };
        let http = http()?;
        let Ok(meta) = CoreProviderMetadata::discover_async(IssuerUrl::new(p.issuer.clone()).map_err(|e| ApiError::Internal(e.to_string()))?, &http).await else {
            return Ok(pages::message(StatusCode::BAD_GATEWAY, l, t.error_title, format!("{} cannot be reached right now.", p.name)));
        };
        let client = CoreClient::from_provider_metadata(meta, ClientId::new(p.client_id.clone()), Some(ClientSecret::new(p.client_secret.clone())))
            .set_redirect_uri(RedirectUrl::new(redirect_uri(&s)).map_err(|e| ApiError::Internal(e.to_string()))?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(AuthenticationFlow::<CoreResponseType>::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        let now = s.now().as_millisecond();
        let mut tx = s.db.begin().await?;
        exec!(&mut tx, c => sqlx::query("DELETE FROM upstream_flows WHERE expires_at < $1").bind(now).execute(c).await)?;
        exec!(&mut tx, c => sqlx::query("INSERT INTO upstream_flows (state, org_id, next, nonce, pkce_verifier, expires_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(state.secret()).bind(org.id.0).bind(&next).bind(nonce.secret()).bind(verifier.secret()).bind(now + FLOW_TTL_MS).execute(c).await)?;
        tx.commit().await?;
        Ok(Redirect::to(url.as_str()).into_response())
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /oauth2/upstream/callback`: back from the provider.
pub async fn callback(
    State(s): State<AppState>,
    axum::Extension(ctx): axum::Extension<std::sync::Arc<crate::ctx::Ctx>>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let l = lang(&headers);
    let t = l.texts();
    let r: Result<Response, ApiError> = async {
        let now = s.now();
        let state = q.state.unwrap_or_default();
        let mut tx = s.db.begin().await?;
        let flow: Option<(Uuid, String, String, String, i64)> = run!(&mut tx, c => sqlx::query_as(
            "DELETE FROM upstream_flows WHERE state = $1 RETURNING org_id, next, nonce, pkce_verifier, expires_at")
            .bind(&state).fetch_optional(c).await)?;
        tx.commit().await?;
        let Some((org, next, nonce, verifier, expires)) = flow.filter(|f| f.4 > now.as_millisecond()) else {
            return Ok(pages::message(StatusCode::BAD_REQUEST, l, t.error_title, "This sign-in has expired or was already used. Start again."));
        };
        let _ = expires;
        let org = OrgId(org);
        let Some(p) = provider(&s, org).await? else {
            return Ok(pages::message(StatusCode::NOT_FOUND, l, t.error_title, "This organisation has no sign-in provider."));
        };
        if let Some(e) = q.error {
            tracing::info!(error = %e, "upstream provider refused the sign-in");
            return Ok(pages::message(StatusCode::FORBIDDEN, l, t.error_title, format!("{} did not sign you in.", p.name)));
        }
        let Some(code) = q.code else {
            return Ok(pages::message(StatusCode::BAD_REQUEST, l, t.error_title, "The provider sent no code."));
        };
        let http = http()?;
        let bad_gateway = |why: String| {
            tracing::warn!(reason = %why, "upstream sign-in failed");
            pages::message(StatusCode::BAD_GATEWAY, l, t.error_title, format!("{} answered in a way Carebridge cannot accept.", p.name))
        };
        let meta = match CoreProviderMetadata::discover_async(IssuerUrl::new(p.issuer.clone()).map_err(|e| ApiError::Internal(e.to_string()))?, &http).await {
            Ok(m) => m,
            Err(e) => return Ok(bad_gateway(e.to_string())),
        };
        let client = CoreClient::from_provider_metadata(meta, ClientId::new(p.client_id.clone()), Some(ClientSecret::new(p.client_secret.clone())))
            .set_redirect_uri(RedirectUrl::new(redirect_uri(&s)).map_err(|e| ApiError::Internal(e.to_string()))?);
        let tokens = match client.exchange_code(AuthorizationCode::new(code)) {
            Ok(req) => match req.set_pkce_verifier(PkceCodeVerifier::new(verifier)).request_async(&http).await {
                Ok(t) => t,
                Err(e) => return Ok(bad_gateway(e.to_string())),
            },
            Err(e) => return Ok(bad_gateway(e.to_string())),
        };
        let Some(id_token) = tokens.id_token() else {
            return Ok(bad_gateway("no ID token".into()));
        };
        let clock = chrono_now(now);
        let v = client
            .id_token_verifier()
            .set_allowed_algs(vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256, CoreJwsSigningAlgorithm::EcdsaP256Sha256, CoreJwsSigningAlgorithm::EdDsa])
            .set_time_fn(move || clock);
        let claims = match id_token.claims(&v, &Nonce::new(nonce)) {
            Ok(c) => c,
            Err(e) => return Ok(bad_gateway(e.to_string())),
        };
        // Verified above; read the claims the core type does not model (`oid`, `amr`).
        let raw: Value = jsonwebtoken::dangerous::insecure_decode::<Value>(id_token.to_string()).map(|d| d.claims).unwrap_or(Value::Null);
        let subject = raw.get("oid").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| claims.subject().to_string());
        let verified_email = match (claims.email(), claims.email_verified()) {
            (Some(e), Some(true)) => Some(e.as_str().to_lowercase()),
            _ => None,
        };
        let upstream_mfa = raw.get("amr").and_then(Value::as_array).is_some_and(|a| a.iter().any(|m| m == "mfa"));
        let mut found = link(&s, org, &subject, verified_email.as_deref().filter(|_| p.link_by_email)).await?;
        if found.is_none()
            && p.jit_create
            && let Some(provision) = ctx.provision.clone()
        {
            let mut c = s.db.read().await?;
            let org_ref = carebridge_store::orgs::resolve(&mut c, &org.0.to_string()).await?;
            drop(c);
            if let Some(org_ref) = org_ref {
                let name = claims.name().and_then(|n| n.get(None)).map(|n| n.as_str().to_string()).unwrap_or_default();
                let given = claims.given_name().and_then(|n| n.get(None)).map(|n| n.as_str().to_string())
                    .unwrap_or_else(|| name.split_whitespace().next().unwrap_or("").to_string());
                let family = claims.family_name().and_then(|n| n.get(None)).map(|n| n.as_str().to_string())
                    .unwrap_or_else(|| name.split_whitespace().skip(1).collect::<Vec<_>>().join(" "));
                let new = NewPerson {
                    given_name: if given.is_empty() { "?".into() } else { given },
                    family_name: if family.is_empty() { "?".into() } else { family },
                    email: verified_email.clone(),
                    external_id: subject.clone(),
                };
                match provision(s.db.clone(), org_ref, new, now).await {
                    Ok(person) => found = Some((person, None)),
                    Err(e) => {
                        tracing::warn!(error = %e, "just-in-time creation failed");
                    }
                }
            }
        }
        let Some((person, account)) = found else {
            return Ok(pages::message(
                StatusCode::FORBIDDEN,
                l,
                t.error_title,
                format!("{} signed you in, but your organisation's directory has no active person for this account. Ask your administrator.", p.name),
            ));
        };
        let mut tx = s.db.begin().await?;
        let account = match account {
            Some(a) => AccountId(a),
            None => {
                let login = verified_email.clone().unwrap_or_else(|| format!("upstream:{}:{subject}", org.0));
                let a = match crate::accounts::find(&mut tx, &login).await? {
                    Some((a, _)) => a,
                    None => crate::accounts::create_in(&mut tx, &login, None, now).await?,
                };
                exec!(&mut tx, c => sqlx::query("UPDATE people SET account_id = $3 WHERE id = $1 AND org_id = $2 AND account_id IS NULL")
                    .bind(person).bind(org.0).bind(a.0).execute(c).await)?;
                a
            }
        };
        let amr: &[&str] = if upstream_mfa { &["fed", "mfa"] } else { &["fed"] };
        let (session, cookie) = crate::sessions::create(&mut tx, account, amr, &crate::web::user_agent(&headers), now).await?;
        if upstream_mfa {
            crate::sessions::mark_mfa(&mut tx, &session, "fed", now).await?;
        }
        tx.commit().await?;
        let mut resp = Redirect::to(&next).into_response();
        if let Some((k, v)) = crate::web::set_cookie(crate::sessions::COOKIE, &cookie, crate::sessions::SESSION_TTL_MS / 1000, "Lax", crate::authorize::secure(&s)) {
            resp.headers_mut().insert(k, v);
        }
        Ok(resp)
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}

fn chrono_now(now: Timestamp) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(now.as_second(), 0).unwrap_or_default()
}

/// The active person of `org` for the provider's subject or verified e-mail: `(person, account)`.
async fn link(
    s: &AppState,
    org: OrgId,
    subject: &str,
    verified_email: Option<&str>,
) -> Result<Option<(Uuid, Option<Uuid>)>, ApiError> {
    let mut c = s.db.read().await?;
    let by_id: Option<(Uuid, Option<Uuid>)> = run!(&mut c, c => sqlx::query_as(
        "SELECT id, account_id FROM people WHERE org_id = $1 AND external_id = $2 AND active")
        .bind(org.0).bind(subject).fetch_optional(c).await)?;
    if by_id.is_some() {
        return Ok(by_id);
    }
    let Some(email) = verified_email else {
        return Ok(None);
    };
    let esc = carebridge_store::like_escape(email);
    let pattern = format!("%\"value\":\"{esc}\"%");
    let rows: Vec<(Uuid, Option<Uuid>)> = run!(&mut c, c => sqlx::query_as(
        "SELECT id, account_id FROM people WHERE org_id = $1 AND active AND lower(emails) LIKE $2 ESCAPE '\\' LIMIT 2")
        .bind(org.0).bind(&pattern).fetch_all(c).await)?;
    // Two people with the same address: ambiguous, link nobody.
    Ok(if rows.len() == 1 {
        rows.into_iter().next()
    } else {
        None
    })
}

/// The organisation's upstream provider (without its secret).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/upstream-idp", tag = "identity",
    params(("org" = String, Path, description = "slug or id")),
    responses((status = 200, body = UpstreamProvider), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get_provider(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(_org): Path<String>,
) -> Result<axum::Json<UpstreamProvider>, ApiError> {
    require(&p, &o, Permission::ClientsManage)?;
    let Some(pr) = provider(&s, o.id).await? else {
        return Err(ServiceError::NotFound {
            what: "upstream provider",
        }
        .into());
    };
    Ok(axum::Json(UpstreamProvider {
        name: pr.name,
        issuer: pr.issuer,
        client_id: pr.client_id,
        link_by_email: pr.link_by_email,
        jit_create: pr.jit_create,
        redirect_uri: redirect_uri(&s),
    }))
}

/// Set the organisation's upstream provider ("Sign in with …"); the answer names the
/// redirect URI to register at the provider.
#[utoipa::path(put, path = "/api/v1/orgs/{org}/upstream-idp", tag = "identity", request_body = PutUpstreamProvider,
    params(("org" = String, Path, description = "slug or id")),
    responses((status = 200, body = UpstreamProvider), (status = 422, body = Problem)), security(("bearer" = [])))]
pub async fn put_provider(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(_org): Path<String>,
    body: Json<PutUpstreamProvider>,
) -> Result<axum::Json<UpstreamProvider>, ApiError> {
    require(&p, &o, Permission::ClientsManage)?;
    let b = body.value;
    let mut v = Violations::new();
    let name = carebridge_domain::validate::bounded_text(&mut v, "/name", &b.name, 1, 100);
    let issuer = b.issuer.trim().trim_end_matches('/').to_string();
    let https = issuer.starts_with("https://");
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| issuer.starts_with(p));
    if url::Url::parse(&issuer).is_err() || !(https || loopback) {
        v.push(
            "/issuer",
            "invalid_issuer",
            "an https URL (http only on a loopback address, for tests)",
        );
    }
    if b.client_id.trim().is_empty() || b.client_id.len() > 500 {
        v.push(
            "/client_id",
            "required",
            "the client id the provider gave Carebridge",
        );
    }
    if b.client_secret.is_empty() || b.client_secret.len() > 2000 {
        v.push(
            "/client_secret",
            "required",
            "the client secret the provider gave Carebridge",
        );
    }
    v.into_result().map_err(ServiceError::from)?;
    let now = s.now().as_millisecond();
    let out = UpstreamProvider {
        name,
        issuer,
        client_id: b.client_id.trim().to_string(),
        link_by_email: b.link_by_email,
        jit_create: b.jit_create,
        redirect_uri: redirect_uri(&s),
    };
    let mut tx = s.db.begin().await?;
    exec!(&mut tx, c => sqlx::query(
        "INSERT INTO upstream_providers (org_id, name, issuer, client_id, client_secret, link_by_email, jit_create, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $8, $7, $7) \
         ON CONFLICT (org_id) DO UPDATE SET name = excluded.name, issuer = excluded.issuer, client_id = excluded.client_id, client_secret = excluded.client_secret, \
         link_by_email = excluded.link_by_email, jit_create = excluded.jit_create, updated_at = excluded.updated_at")
        .bind(o.id.0).bind(&out.name).bind(&out.issuer).bind(&out.client_id).bind(&b.client_secret).bind(out.link_by_email).bind(now).bind(out.jit_create).execute(c).await)?;
    audit::record(
        &mut tx,
        o.id,
        &Actor::new(p, Source::Api),
        "identity.upstream_provider",
        "organisation",
        &o.id.0.to_string(),
        None::<&()>,
        Some(&out),
        s.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(out))
}
