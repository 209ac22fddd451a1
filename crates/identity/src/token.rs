//! The token endpoint (RFC 6749 §3.2; so far the `client_credentials` grant) and token
//! introspection (RFC 7662). Errors are OAuth error documents (`{"error": …}`), not problem
//! documents, because OAuth clients expect them.
//!
//! Access tokens are EdDSA-signed JWTs (RFC 9068 shape): `iss`, `sub` (the client for
//! client-credentials tokens), `aud`, `exp`, `iat`, `jti`, `org`, `scope`, `client_id`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use carebridge_domain::auth::{Permission, Principal};
use carebridge_domain::oauth::grant_scopes;
use carebridge_store::{Db, StoreError};
use carebridge_web::{ApiError, AppState};
use serde_json::{Value, json};
use tokio::sync::RwLock;

use crate::clients::{self, Authenticated};
use crate::keys::{self, SigningKey};

/// Lifetime of an access token.
pub const ACCESS_TOKEN_TTL_S: i64 = 600;
/// The audience of tokens for Carebridge's own APIs.
pub const API_AUDIENCE: &str = "carebridge";
/// How long a node keeps signing with the key it loaded (a rotation by another node or the CLI
/// is picked up within this time; the retired key stays published far longer).
const KEY_REFRESH: Duration = Duration::from_secs(30);

/// The active signing key, loaded once per [`KEY_REFRESH`] instead of once per token.
#[derive(Default)]
pub struct KeyCache {
    inner: RwLock<Option<(Arc<SigningKey>, Instant)>>,
}

impl KeyCache {
    pub async fn get(&self, db: &Db) -> Result<Arc<SigningKey>, StoreError> {
        if let Some((k, at)) = self.inner.read().await.as_ref()
            && at.elapsed() < KEY_REFRESH
        {
            return Ok(k.clone());
        }
        let k = Arc::new(keys::active(db).await?);
        *self.inner.write().await = Some((k.clone(), Instant::now()));
        Ok(k)
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut r = (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED
        && let Ok(v) = "Basic realm=\"carebridge\"".parse()
    {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// `%XX` decoding of the form-encoded parts of HTTP Basic client credentials (RFC 6749 §2.3.1).
fn pct_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The client's credentials from HTTP Basic or the form body; `Err` for a malformed header or
/// when both methods are used.
fn credentials(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<Option<(String, String)>, &'static str> {
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(h) => {
            let v = h.to_str().map_err(|_| "malformed Authorization header")?;
            let b64 = v
                .strip_prefix("Basic ")
                .ok_or("use HTTP Basic client authentication")?;
            let raw = STANDARD
                .decode(b64.trim())
                .map_err(|_| "malformed Basic credentials")?;
            let raw = String::from_utf8(raw).map_err(|_| "malformed Basic credentials")?;
            let (id, secret) = raw.split_once(':').ok_or("malformed Basic credentials")?;
            Some((
                pct_decode(id).ok_or("malformed Basic credentials")?,
                pct_decode(secret).ok_or("malformed Basic credentials")?,
            ))
        }
    };
    let post = match (form.get("client_id"), form.get("client_secret")) {
        (Some(id), Some(secret)) => Some((id.clone(), secret.clone())),
        _ => None,
    };
    match (basic, post) {
        (Some(_), Some(_)) => Err("use one client authentication method, not two"),
        (b, p) => Ok(b.or(p)),
    }
}

async fn client(
    db: &Db,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<Authenticated, Response> {
    let creds = credentials(headers, form)
        .map_err(|d| oauth_error(StatusCode::BAD_REQUEST, "invalid_request", d))?;
    let Some((id, secret)) = creds else {
        return Err(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication is required (HTTP Basic or client_secret_post)",
        ));
    };
    match clients::authenticate(db, &id, &secret).await {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client, wrong secret, or revoked",
        )),
        Err(e) => Err(ApiError::from(e).into_response()),
    }
}

/// `POST /oauth2/token`.
pub async fn token(
    State(s): State<AppState>,
    Extension(cache): Extension<Arc<KeyCache>>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "send the parameters as application/x-www-form-urlencoded",
        );
    };
    let c = match client(&s.db, &headers, &form).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "this server issues client_credentials tokens so far",
            );
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            );
        }
    }
    if !c.grants.iter().any(|g| g == "client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "this client may not use the client_credentials grant",
        );
    }
    let requested = form.get("scope").map(String::as_str).unwrap_or("");
    let Some(scopes) = grant_scopes(requested, &c.scopes, false) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "a requested scope is not allowed for this client",
        );
    };
    let now = s.now();
    let key = match cache.get(&s.db).await {
        Ok(k) => k,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let scope = scopes.join(" ");
    let claims = json!({
        "iss": s.base_url(),
        "sub": c.client_id,
        "aud": API_AUDIENCE,
        "exp": now.as_second() + ACCESS_TOKEN_TTL_S,
        "iat": now.as_second(),
        "jti": carebridge_domain::ids::new_v7(now).to_string(),
        "org": c.org.0.to_string(),
        "scope": scope,
        "client_id": c.client_id,
    });
    match key.sign(&claims) {
        Ok(t) => (
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(json!({
                "access_token": t,
                "token_type": "Bearer",
                "expires_in": ACCESS_TOKEN_TTL_S,
                "scope": scope,
            })),
        )
            .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `POST /oauth2/introspect` (RFC 7662): a client of an organisation learns whether a token of
/// that organisation is active. Tokens of other organisations, expired, foreign-signed or
/// `alg: none` tokens, and tokens of revoked clients are all simply inactive.
pub async fn introspect(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "send the parameters as application/x-www-form-urlencoded",
        );
    };
    let c = match client(&s.db, &headers, &form).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(token) = form.get("token") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "token is required",
        );
    };
    let inactive = || {
        (
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(json!({"active": false})),
        )
            .into_response()
    };
    let now = s.now();
    let published = match keys::published(&s.db, now).await {
        Ok(p) => p,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let Ok(claims) = keys::verify::<Value>(token, &published, s.base_url(), API_AUDIENCE, now)
    else {
        return inactive();
    };
    if claims.get("org").and_then(Value::as_str) != Some(c.org.0.to_string().as_str()) {
        return inactive();
    }
    let issued_to = claims
        .get("client_id")
        .and_then(Value::as_str)
        .unwrap_or("");
    match clients::live(&s.db, issued_to).await {
        Ok(true) => {}
        Ok(false) => return inactive(),
        Err(e) => return ApiError::from(e).into_response(),
    }
    let mut out = claims;
    if let Some(o) = out.as_object_mut() {
        o.insert("active".into(), Value::Bool(true));
        o.insert("token_type".into(), Value::String("Bearer".into()));
    }
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(out)).into_response()
}

/// Authenticates an access token presented as `Authorization: Bearer` on the API: a valid
/// token of this issuer for the API audience whose client is not revoked becomes a
/// [`Principal::Client`] with the permissions its scopes map to. `None` for anything else.
pub async fn authenticate_bearer(
    db: &Db,
    token: &str,
    issuer: &str,
    now: carebridge_domain::Timestamp,
) -> Result<Option<Principal>, StoreError> {
    let published = keys::published(db, now).await?;
    let Ok(claims) = keys::verify::<Value>(token, &published, issuer, API_AUDIENCE, now) else {
        return Ok(None);
    };
    let (Some(client_id), Some(org)) = (
        claims.get("client_id").and_then(Value::as_str),
        claims
            .get("org")
            .and_then(Value::as_str)
            .and_then(|o| uuid::Uuid::parse_str(o).ok()),
    ) else {
        return Ok(None);
    };
    if !clients::live(db, client_id).await? {
        return Ok(None);
    }
    let mut permissions: Vec<Permission> = claims
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or("")
        .split(' ')
        .filter_map(Permission::of_scope)
        .collect();
    permissions.sort();
    permissions.dedup();
    Ok(Some(Principal::Client {
        client_id: client_id.to_string(),
        org: carebridge_domain::OrgId(org),
        permissions,
    }))
}
