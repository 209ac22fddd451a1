//! The token endpoint (RFC 6749 §3.2; so far the `client_credentials` grant) and token
//! introspection (RFC 7662). Errors are OAuth error documents (`{"error": …}`), not problem
//! documents, because OAuth clients expect them.
//!
//! Access tokens are EdDSA-signed JWTs (RFC 9068 shape): `iss`, `sub` (the client for
//! client-credentials tokens), `aud`, `exp`, `iat`, `jti`, `org`, `scope`, `client_id`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use carebridge_domain::auth::{Permission, Principal, Via};
use carebridge_domain::oauth::{API_AUDIENCE, PORTAL_AUDIENCE, audience, grant_scopes};
use carebridge_store::{Db, StoreError};
use carebridge_web::{ApiError, AppState};
use serde_json::{Value, json};
use tokio::sync::RwLock;

use crate::clients::{self, Client};
use crate::ctx::Ctx;
use crate::grants::{self, GrantError};
use crate::keys::{self, SigningKey};
use crate::signin;

/// Lifetime of an access token.
pub const ACCESS_TOKEN_TTL_S: i64 = 600;
/// How long a node keeps signing with the key it loaded (a rotation by another node or the CLI
/// is picked up within this time; the retired key stays published far longer).
const KEY_REFRESH: Duration = Duration::from_secs(30);

/// The active signing key, loaded once per [`KEY_REFRESH`] (of the server's clock) instead of
/// once per token.
#[derive(Default)]
pub struct KeyCache {
    inner: RwLock<Option<(Arc<SigningKey>, carebridge_domain::Timestamp)>>,
}

impl KeyCache {
    pub async fn get(
        &self,
        db: &Db,
        now: carebridge_domain::Timestamp,
    ) -> Result<Arc<SigningKey>, StoreError> {
        if let Some((k, at)) = self.inner.read().await.as_ref()
            && now >= *at
            && now.duration_since(*at).unsigned_abs() < KEY_REFRESH
        {
            return Ok(k.clone());
        }
        let k = Arc::new(keys::active(db).await?);
        *self.inner.write().await = Some((k.clone(), now));
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

/// The calling client: authenticated by secret (confidential), or named by `client_id` alone
/// when it is public.
/// The parameters of an OAuth endpoint's form and its authenticated calling client.
pub async fn client_request(
    s: &AppState,
    ctx: &Ctx,
    ip: std::net::IpAddr,
    headers: &HeaderMap,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Result<(Client, HashMap<String, String>), Response> {
    let Ok(Form(form)) = form else {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "send the parameters as application/x-www-form-urlencoded",
        ));
    };
    let c = calling_client(s, ctx, ip, headers, &form).await?;
    Ok((c, form))
}

/// Per-source protection: an address with too many failed client authentications gets 429
/// for a minute, whatever it sends.
pub async fn calling_client(
    s: &AppState,
    ctx: &Ctx,
    ip: std::net::IpAddr,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<Client, Response> {
    if ctx.client_blocked(ip) {
        let mut r = oauth_error(
            StatusCode::TOO_MANY_REQUESTS,
            "invalid_request",
            "too many failed client authentications from this address: wait a minute",
        );
        r.headers_mut().insert(
            header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("60"),
        );
        return Err(r);
    }
    let r = authenticate_client(s, headers, form).await;
    if let Err(resp) = &r
        && resp.status() == StatusCode::UNAUTHORIZED
    {
        ctx.client_failed(ip);
    }
    r
}

async fn authenticate_client(
    s: &AppState,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<Client, Response> {
    let creds = credentials(headers, form)
        .map_err(|d| oauth_error(StatusCode::BAD_REQUEST, "invalid_request", d))?;
    let unknown = || {
        oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client, wrong secret, or revoked",
        )
    };
    match creds {
        Some((id, secret)) => {
            match clients::authenticate(&s.db, &id, &secret, s.base_url()).await {
                Ok(Some(c)) => Ok(c),
                Ok(None) => Err(unknown()),
                Err(e) => Err(ApiError::from(e).into_response()),
            }
        }
        None => {
            let Some(id) = form.get("client_id") else {
                return Err(oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "client authentication is required (HTTP Basic or client_secret_post; client_id alone for public clients)",
                ));
            };
            match clients::lookup(&s.db, id, s.base_url()).await {
                Ok(Some(c)) if c.public => Ok(c),
                Ok(Some(_)) => Err(oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "this client is confidential: authenticate with its secret",
                )),
                Ok(None) => Err(unknown()),
                Err(e) => Err(ApiError::from(e).into_response()),
            }
        }
    }
}

fn ok_json(v: Value) -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        axum::Json(v),
    )
        .into_response()
}

/// Signs the access token of a person's grant: audience from the scopes (portal or API).
pub fn person_access_token(
    key: &SigningKey,
    issuer: &str,
    i: &grants::Issued,
    scopes: &[String],
    now: carebridge_domain::Timestamp,
) -> Result<String, StoreError> {
    let aud = audience(scopes).unwrap_or(API_AUDIENCE);
    key.sign(&json!({
        "iss": issuer,
        "sub": i.person.0.to_string(),
        "aud": aud,
        "exp": now.as_second() + ACCESS_TOKEN_TTL_S,
        "iat": now.as_second(),
        "auth_time": i.auth_time / 1000,
        "jti": carebridge_domain::ids::new_v7(now).to_string(),
        "org": i.org.0.to_string(),
        "scope": scopes.join(" "),
        "client_id": i.client_id,
        "gid": i.grant.to_string(),
    }))
}

/// The OpenID claims of a person for the granted scopes (ID token and userinfo).
pub async fn person_claims(
    db: &Db,
    org: carebridge_domain::OrgId,
    person: carebridge_domain::PersonId,
    scopes: &[String],
) -> Result<serde_json::Map<String, Value>, StoreError> {
    let mut m = serde_json::Map::new();
    m.insert("sub".into(), Value::String(person.0.to_string()));
    let mut c = db.read().await?;
    let Some(cl) = signin::claims(&mut c, org, person).await? else {
        return Ok(m);
    };
    let has = |s: &str| scopes.iter().any(|x| x == s);
    if has("profile") {
        m.insert(
            "name".into(),
            json!(format!("{} {}", cl.given_name, cl.family_name)),
        );
        m.insert("given_name".into(), json!(cl.given_name));
        m.insert("family_name".into(), json!(cl.family_name));
        if let Some(l) = cl.language {
            m.insert("locale".into(), json!(l));
        }
    }
    if has("email")
        && let Some(e) = cl.email
    {
        m.insert("email".into(), json!(e));
    }
    if has("phone")
        && let Some(p) = cl.phone
    {
        m.insert("phone_number".into(), json!(p));
    }
    m.insert("org".into(), json!(org.0.to_string()));
    Ok(m)
}

/// The token response of a person's grant (access token, ID token with `openid`, refresh
/// token when the grant has one).
async fn person_tokens(
    s: &AppState,
    cache: &KeyCache,
    i: &grants::Issued,
    scopes: &[String],
) -> Response {
    let now = s.now();
    let issuer = s.base_url();
    let key = match cache.get(&s.db, s.now()).await {
        Ok(k) => k,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let access = match person_access_token(&key, issuer, i, scopes, now) {
        Ok(t) => t,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let mut out = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_TTL_S,
        "scope": scopes.join(" "),
    });
    if scopes.iter().any(|x| x == "openid") {
        let mut claims = match person_claims(&s.db, i.org, i.person, scopes).await {
            Ok(c) => c,
            Err(e) => return ApiError::from(e).into_response(),
        };
        claims.insert("iss".into(), json!(issuer));
        claims.insert("aud".into(), json!(i.client_id));
        claims.insert("azp".into(), json!(i.client_id));
        claims.insert("exp".into(), json!(now.as_second() + ACCESS_TOKEN_TTL_S));
        claims.insert("iat".into(), json!(now.as_second()));
        claims.insert("auth_time".into(), json!(i.auth_time / 1000));
        claims.insert("amr".into(), json!(i.amr));
        if let Some(sid) = i.session {
            claims.insert("sid".into(), json!(sid.to_string()));
        }
        if let Some(n) = &i.nonce {
            claims.insert("nonce".into(), json!(n));
        }
        match key.sign(&Value::Object(claims)) {
            Ok(t) => out["id_token"] = json!(t),
            Err(e) => return ApiError::from(e).into_response(),
        }
    }
    if let Some(r) = &i.refresh {
        out["refresh_token"] = json!(r);
    }
    ok_json(out)
}

fn grant_error(e: GrantError) -> Response {
    match e {
        GrantError::Invalid(why) => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why),
        GrantError::Store(e) => ApiError::from(e).into_response(),
    }
}

/// `POST /oauth2/token`.
pub async fn token(
    State(s): State<AppState>,
    Extension(ctx): Extension<Arc<Ctx>>,
    crate::web::ClientIp(ip): crate::web::ClientIp,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (c, form) = match client_request(&s, &ctx, ip, &headers, form).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let grant = match form.get("grant_type").map(String::as_str) {
        Some(g) => g.to_string(),
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            );
        }
    };
    if !crate::clients::known_grant(&grant) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "supported: authorization_code, refresh_token, client_credentials, urn:ietf:params:oauth:grant-type:device_code",
        );
    }
    if !c.may(&grant) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "this client may not use this grant type",
        );
    }
    let now = s.now();
    match grant.as_str() {
        "authorization_code" => {
            let Some(code) = form.get("code") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "code is required",
                );
            };
            match grants::redeem_code(
                &s.db,
                code,
                &c.client_id,
                form.get("redirect_uri").map(String::as_str),
                form.get("code_verifier").map(String::as_str),
                c.may("refresh_token"),
                now,
            )
            .await
            {
                Ok(i) => {
                    let scopes = i.scopes.clone();
                    person_tokens(&s, &ctx.keys, &i, &scopes).await
                }
                Err(e) => grant_error(e),
            }
        }
        "refresh_token" => {
            let Some(rt) = form.get("refresh_token") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "refresh_token is required",
                );
            };
            match grants::refresh(&s.db, &ctx.rotator, rt, &c.client_id, now).await {
                Ok(i) => {
                    // A refresh may narrow the scopes, never widen them.
                    let scopes = match form.get("scope") {
                        None => i.scopes.clone(),
                        Some(req) => match grant_scopes(req, &i.scopes, true) {
                            Some(s) if !s.is_empty() => s,
                            _ => {
                                return oauth_error(
                                    StatusCode::BAD_REQUEST,
                                    "invalid_scope",
                                    "a refresh can only keep or narrow the granted scopes",
                                );
                            }
                        },
                    };
                    person_tokens(&s, &ctx.keys, &i, &scopes).await
                }
                Err(e) => grant_error(e),
            }
        }
        "urn:ietf:params:oauth:grant-type:device_code" => {
            let Some(dc) = form.get("device_code") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "device_code is required",
                );
            };
            match crate::device::redeem(&s.db, dc, &c, now).await {
                Ok(Ok(i)) => {
                    let scopes = i.scopes.clone();
                    person_tokens(&s, &ctx.keys, &i, &scopes).await
                }
                Ok(Err(code)) => {
                    oauth_error(StatusCode::BAD_REQUEST, code, crate::device::describe(code))
                }
                Err(e) => ApiError::from(e).into_response(),
            }
        }
        _ => client_credentials(&s, &ctx.keys, &c, &form).await,
    }
}

async fn client_credentials(
    s: &AppState,
    cache: &KeyCache,
    c: &Client,
    form: &HashMap<String, String>,
) -> Response {
    let Some(org) = c.org else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "built-in clients have no client credentials",
        );
    };
    let requested = form.get("scope").map(String::as_str).unwrap_or("");
    let Some(scopes) = grant_scopes(requested, &c.scopes, false) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "a requested scope is not allowed for this client",
        );
    };
    let aud = match audience(&scopes) {
        Ok(a) => a,
        Err(why) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", why),
    };
    let now = s.now();
    let key = match cache.get(&s.db, s.now()).await {
        Ok(k) => k,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let scope = scopes.join(" ");
    let claims = json!({
        "iss": s.base_url(),
        "sub": c.client_id,
        "aud": aud,
        "exp": now.as_second() + ACCESS_TOKEN_TTL_S,
        "iat": now.as_second(),
        "jti": carebridge_domain::ids::new_v7(now).to_string(),
        "org": org.0.to_string(),
        "scope": scope,
        "client_id": c.client_id,
    });
    match key.sign(&claims) {
        Ok(t) => ok_json(json!({
            "access_token": t,
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_TTL_S,
            "scope": scope,
        })),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `POST /oauth2/introspect` (RFC 7662): a client of an organisation learns whether a token of
/// that organisation is active. Tokens of other organisations, expired, foreign-signed or
/// `alg: none` tokens, and tokens of revoked clients are all simply inactive.
pub async fn introspect(
    State(s): State<AppState>,
    Extension(ctx): Extension<Arc<Ctx>>,
    crate::web::ClientIp(ip): crate::web::ClientIp,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (c, form) = match client_request(&s, &ctx, ip, &headers, form).await {
        Ok(x) => x,
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
    let Ok(claims) = keys::verify_with::<Value>(
        token,
        &published,
        s.base_url(),
        &[API_AUDIENCE, PORTAL_AUDIENCE],
        Some(now),
    ) else {
        return inactive();
    };
    // An organisation's client learns about its organisation's tokens only; Carebridge's own
    // apps about the tokens issued to them.
    let own = match c.org {
        Some(o) => claims.get("org").and_then(Value::as_str) == Some(o.0.to_string().as_str()),
        None => claims.get("client_id").and_then(Value::as_str) == Some(c.client_id.as_str()),
    };
    if !own {
        return inactive();
    }
    if let Some(gid) = claims.get("gid").and_then(Value::as_str) {
        let Ok(gid) = uuid::Uuid::parse_str(gid) else {
            return inactive();
        };
        match grants::live(&s.db, gid).await {
            Ok(true) => {}
            Ok(false) => return inactive(),
            Err(e) => return ApiError::from(e).into_response(),
        }
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
/// token of this issuer for the API audience. A person's token (it names its grant, `gid`)
/// becomes a [`Principal::Person`] with the person's roles narrowed to the token's scopes, as
/// long as the grant is not revoked and the person is active; a client-credentials token
/// becomes a [`Principal::Client`] while its client is not revoked. `None` for anything else.
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
    let scope = claims.get("scope").and_then(Value::as_str).unwrap_or("");
    let permissions = Permission::of_scopes(scope.split(' '));
    let org = carebridge_domain::OrgId(org);
    if let Some(gid) = claims.get("gid").and_then(Value::as_str) {
        let (Ok(grant), Some(Ok(person))) = (
            uuid::Uuid::parse_str(gid),
            claims
                .get("sub")
                .and_then(Value::as_str)
                .map(uuid::Uuid::parse_str),
        ) else {
            return Ok(None);
        };
        if !grants::live(db, grant).await? {
            return Ok(None);
        }
        let mut c = db.read().await?;
        let roles = signin::role_grants(&mut c, org, carebridge_domain::PersonId(person)).await?;
        return Ok(Some(Principal::Person {
            via: Via::Token {
                client_id: client_id.to_string(),
                grant,
                oauth_scopes: scope
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            },
            org,
            person: carebridge_domain::PersonId(person),
            scopes: permissions,
            roles,
        }));
    }
    if !clients::live(db, client_id).await? {
        return Ok(None);
    }
    Ok(Some(Principal::Client {
        client_id: client_id.to_string(),
        org,
        permissions,
    }))
}

/// `GET`/`POST /oauth2/userinfo` (OpenID Connect Core §5.3): the claims of the person of a
/// live access token with the `openid` scope.
pub async fn userinfo(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let bearer_error = |code: &str, desc: &str| {
        let mut r = oauth_error(StatusCode::UNAUTHORIZED, code, desc);
        if let Ok(v) = format!("Bearer error=\"{code}\"").parse() {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        r
    };
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return bearer_error(
            "invalid_token",
            "send the access token as Authorization: Bearer",
        );
    };
    let now = s.now();
    let published = match keys::published(&s.db, now).await {
        Ok(p) => p,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let Ok(claims) = keys::verify_with::<Value>(
        token.trim(),
        &published,
        s.base_url(),
        &[API_AUDIENCE, PORTAL_AUDIENCE],
        Some(now),
    ) else {
        return bearer_error("invalid_token", "the access token is invalid or expired");
    };
    let scopes: Vec<String> = claims
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or("")
        .split(' ')
        .map(str::to_string)
        .collect();
    let (Some(Ok(grant)), Some(Ok(person)), Some(Ok(org))) = (
        claims
            .get("gid")
            .and_then(Value::as_str)
            .map(uuid::Uuid::parse_str),
        claims
            .get("sub")
            .and_then(Value::as_str)
            .map(uuid::Uuid::parse_str),
        claims
            .get("org")
            .and_then(Value::as_str)
            .map(uuid::Uuid::parse_str),
    ) else {
        return bearer_error("invalid_token", "not a token of a signed-in person");
    };
    if !scopes.iter().any(|x| x == "openid") {
        let mut r = oauth_error(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "the token lacks the openid scope",
        );
        if let Ok(v) = "Bearer error=\"insufficient_scope\"".parse() {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        return r;
    }
    match grants::live(&s.db, grant).await {
        Ok(true) => {}
        Ok(false) => return bearer_error("invalid_token", "the token was revoked"),
        Err(e) => return ApiError::from(e).into_response(),
    }
    match person_claims(
        &s.db,
        carebridge_domain::OrgId(org),
        carebridge_domain::PersonId(person),
        &scopes,
    )
    .await
    {
        Ok(m) => ok_json(Value::Object(m)),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `POST /oauth2/revoke` (RFC 7009): revokes the grant behind a refresh token or an access
/// token of the calling client. Answers 200 for unknown tokens too, as the RFC asks.
pub async fn revoke(
    State(s): State<AppState>,
    Extension(ctx): Extension<Arc<Ctx>>,
    crate::web::ClientIp(ip): crate::web::ClientIp,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (c, form) = match client_request(&s, &ctx, ip, &headers, form).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(token) = form.get("token") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "token is required",
        );
    };
    let now = s.now();
    let grant = if token.starts_with("cbr_") {
        match grants::grant_of_refresh(&s.db, token, &c.client_id).await {
            Ok(g) => g,
            Err(e) => return ApiError::from(e).into_response(),
        }
    } else {
        let published = match keys::published(&s.db, now).await {
            Ok(p) => p,
            Err(e) => return ApiError::from(e).into_response(),
        };
        keys::verify_with::<Value>(
            token,
            &published,
            s.base_url(),
            &[API_AUDIENCE, PORTAL_AUDIENCE],
            None,
        )
        .ok()
        .filter(|cl| cl.get("client_id").and_then(Value::as_str) == Some(c.client_id.as_str()))
        .and_then(|cl| {
            cl.get("gid")
                .and_then(Value::as_str)
                .and_then(|g| uuid::Uuid::parse_str(g).ok())
        })
    };
    if let Some(g) = grant {
        let r: Result<(), StoreError> = async {
            let mut tx = s.db.begin().await?;
            grants::revoke(&mut tx, g, "revoked_by_client", now).await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = r {
            return ApiError::from(e).into_response();
        }
    }
    ok_json(json!({}))
}
