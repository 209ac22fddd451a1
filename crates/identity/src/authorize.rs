//! The authorization endpoint (OpenID Connect Core §3.1, OAuth 2.1 with PKCE) and the sign-in
//! form it leads to.
//!
//! Order of checks, so that nothing ever redirects to an unchecked place: the client must be
//! known and the `redirect_uri` one of its registered URIs *exactly*; until both hold, errors
//! are pages on this server. After that, errors go back to the client as `error=…` with
//! `state` and `iss` (RFC 9207). Every page's form carries the request as `next`, a path of
//! this server (see [`crate::web::next_ok`]), so a sign-in always continues at this endpoint.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Form, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use carebridge_domain::oauth::{audience, grant_scopes};
use carebridge_domain::{OrgId, Timestamp};
use carebridge_store::{run, sqlx};
use carebridge_web::{ApiError, AppState};
use serde::Deserialize;

use crate::clients::{self, Client};
use crate::ctx::Ctx;
use crate::i18n::Lang;
use crate::pages::{self, render};
use crate::sessions::{self, Session};
use crate::signin::{self, Claims, Membership};
use crate::web::{self, ClientIp};

/// The parameters of an authorization request that this server reads.
#[derive(Clone, Debug, Default)]
pub struct AuthRequest {
    pub response_type: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
    pub max_age: Option<String>,
    pub ui_locales: Option<String>,
    pub login_hint: Option<String>,
    pub org: Option<String>,
}

impl AuthRequest {
    pub fn parse(query: &str) -> AuthRequest {
        let m: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let get = |k: &str| m.get(k).cloned();
        AuthRequest {
            response_type: get("response_type").unwrap_or_default(),
            client_id: get("client_id").unwrap_or_default(),
            redirect_uri: get("redirect_uri").unwrap_or_default(),
            scope: get("scope").unwrap_or_default(),
            state: get("state"),
            nonce: get("nonce"),
            code_challenge: get("code_challenge"),
            code_challenge_method: get("code_challenge_method"),
            prompt: get("prompt"),
            max_age: get("max_age"),
            ui_locales: get("ui_locales"),
            login_hint: get("login_hint"),
            org: get("org"),
        }
    }

    /// This request as a path of this server; `interactive` drops `prompt` and `max_age`, which
    /// the sign-in form has just satisfied (so the continuation does not ask again).
    pub fn next(&self, interactive: bool) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                s.append_pair(k, v);
            }
        };
        put("response_type", &Some(self.response_type.clone()));
        put("client_id", &Some(self.client_id.clone()));
        put("redirect_uri", &Some(self.redirect_uri.clone()));
        put("scope", &Some(self.scope.clone()));
        put("state", &self.state);
        put("nonce", &self.nonce);
        put("code_challenge", &self.code_challenge);
        put("code_challenge_method", &self.code_challenge_method);
        if !interactive {
            put("prompt", &self.prompt);
            put("max_age", &self.max_age);
        }
        put("ui_locales", &self.ui_locales);
        put("login_hint", &self.login_hint);
        put("org", &self.org);
        format!("/oauth2/authorize?{}", s.finish())
    }

    fn prompts(&self, p: &str) -> bool {
        self.prompt
            .as_deref()
            .is_some_and(|v| v.split(' ').any(|x| x == p))
    }
}

/// Where an authorization response goes: `redirect_uri` with the parameters added.
fn to_client(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    match url::Url::parse(redirect_uri) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            let mut r = Redirect::to(u.as_str()).into_response();
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            );
            r
        }
        Err(_) => (StatusCode::BAD_REQUEST, "invalid redirect_uri").into_response(),
    }
}

fn lang_of(headers: &HeaderMap, ui_locales: Option<&str>) -> Lang {
    Lang::pick(
        ui_locales,
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    )
}

/// The outcome of the checks every interactive flow passes (authorization and device).
#[allow(clippy::large_enum_variant)]
pub enum Gate {
    /// Signed in, organisation chosen, second factor done where required.
    Through {
        session: Session,
        member: Membership,
        claims: Claims,
    },
    /// A page the person must fill in first (sign-in, organisation, second factor).
    Page(Response),
    /// `prompt=none` and interaction would be needed: this OAuth error code.
    Passive(&'static str),
}

/// Signs the person in (or finds their session), picks the organisation and asks for the
/// second factor when the organisation's policy wants one.
#[allow(clippy::too_many_arguments)]
pub async fn gate(
    s: &AppState,
    headers: &HeaderMap,
    lang: Lang,
    next: &str,
    fixed_org: Option<OrgId>,
    org_param: Option<&str>,
    login_hint: &str,
    force_login: bool,
    max_age_s: Option<i64>,
    passive: bool,
) -> Result<Gate, ApiError> {
    let now = s.now();
    let t = lang.texts();
    let session = sessions::current(&s.db, headers, now).await?;
    let too_old = |sess: &Session| {
        max_age_s.is_some_and(|m| now.as_millisecond() - sess.auth_time > m.saturating_mul(1000))
    };
    let session = match session {
        Some(sess) if !force_login && !too_old(&sess) => sess,
        _ => {
            if passive {
                return Ok(Gate::Passive("login_required"));
            }
            // The organisation's own provider, when the organisation is known already.
            let org = match (fixed_org, org_param) {
                (Some(o), _) => {
                    let mut c = s.db.read().await?;
                    carebridge_store::orgs::resolve(&mut c, &o.0.to_string()).await?
                }
                (None, Some(slug)) => {
                    let mut c = s.db.read().await?;
                    carebridge_store::orgs::resolve(&mut c, slug).await?
                }
                (None, None) => None,
            };
            let upstream = match org {
                Some(o) => crate::upstream::button(s, o.id, &o.slug, next).await,
                None => None,
            };
            return Ok(Gate::Page(login_page(
                headers,
                s,
                lang,
                next,
                login_hint,
                None,
                StatusCode::OK,
                upstream,
            )));
        }
    };
    let members: Vec<Membership> = signin::memberships(&s.db, session.account)
        .await?
        .into_iter()
        .filter(|m| m.active)
        .collect();
    let chosen = match (fixed_org, org_param) {
        (Some(o), _) => members.iter().find(|m| m.org == o),
        (None, Some(slug)) => members
            .iter()
            .find(|m| m.slug == slug || m.org.0.to_string() == slug),
        (None, None) if members.len() == 1 => members.first(),
        (None, None) if members.len() > 1 => {
            if passive {
                return Ok(Gate::Passive("account_selection_required"));
            }
            let orgs = members
                .iter()
                .map(|m| {
                    let mut q = url::form_urlencoded::Serializer::new(String::new());
                    q.append_pair("org", &m.slug);
                    (format!("{next}&{}", q.finish()), m.org_name.clone())
                })
                .collect();
            return Ok(Gate::Page(render(
                StatusCode::OK,
                &pages::Orgs {
                    t,
                    lang: lang.code(),
                    title: t.choose_org,
                    orgs,
                },
                vec![],
            )));
        }
        (None, None) => None,
    };
    let Some(member) = chosen.cloned() else {
        if passive {
            return Ok(Gate::Passive("access_denied"));
        }
        return Ok(Gate::Page(pages::message(
            StatusCode::FORBIDDEN,
            lang,
            t.error_title,
            t.no_membership,
        )));
    };
    let mut c = s.db.read().await?;
    let Some(claims) = signin::claims(&mut c, member.org, member.person).await? else {
        return Ok(Gate::Page(pages::message(
            StatusCode::FORBIDDEN,
            lang,
            t.error_title,
            t.no_membership,
        )));
    };
    let policy = signin::mfa_policy(&mut c, member.org).await?;
    drop(c);
    if signin::mfa_required(&policy, &claims) && !session.mfa() {
        if passive {
            return Ok(Gate::Passive("interaction_required"));
        }
        return Ok(Gate::Page(
            crate::mfa::page(s, headers, &session, &claims, next, lang, None).await?,
        ));
    }
    Ok(Gate::Through {
        session,
        member,
        claims,
    })
}

/// The sign-in form.
pub fn login_page(
    headers: &HeaderMap,
    s: &AppState,
    lang: Lang,
    next: &str,
    login: &str,
    error: Option<&'static str>,
    status: StatusCode,
    upstream: Option<(String, String)>,
) -> Response {
    let (csrf, set) = web::csrf(headers, secure(s));
    let t = lang.texts();
    render(
        status,
        &pages::Login {
            t,
            lang: lang.code(),
            title: t.sign_in,
            error,
            csrf: &csrf,
            next,
            login,
            upstream,
        },
        set.into_iter().collect(),
    )
}

/// Whether cookies get the `Secure` flag (the issuer is https).
pub fn secure(s: &AppState) -> bool {
    s.base_url().starts_with("https://")
}

/// `GET /oauth2/authorize`.
pub async fn authorize(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let r = AuthRequest::parse(q.as_deref().unwrap_or(""));
    match authorize_inner(&s, &headers, r).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn authorize_inner(
    s: &AppState,
    headers: &HeaderMap,
    r: AuthRequest,
) -> Result<Response, ApiError> {
    let lang = lang_of(headers, r.ui_locales.as_deref());
    let t = lang.texts();
    let bad_page = |text: &str| {
        pages::message(
            StatusCode::BAD_REQUEST,
            lang,
            t.error_title,
            text.to_string(),
        )
    };
    if r.client_id.is_empty() {
        return Ok(bad_page("client_id is missing."));
    }
    let Some(client) = clients::lookup(&s.db, &r.client_id, s.base_url()).await? else {
        return Ok(bad_page("This app (client_id) is unknown or was revoked."));
    };
    if r.redirect_uri.is_empty() || !client.redirect_uris.contains(&r.redirect_uri) {
        return Ok(bad_page(
            "The redirect_uri is not registered for this app; sign-in stops here.",
        ));
    }
    let issuer = s.base_url().to_string();
    let err = |code: &str, desc: &str| {
        let mut p = vec![
            ("error", code),
            ("error_description", desc),
            ("iss", issuer.as_str()),
        ];
        if let Some(st) = r.state.as_deref() {
            p.push(("state", st));
        }
        to_client(&r.redirect_uri, &p)
    };
    if r.response_type != "code" {
        return Ok(err(
            "unsupported_response_type",
            "only response_type=code is supported",
        ));
    }
    if !client.may("authorization_code") {
        return Ok(err(
            "unauthorized_client",
            "this client may not use the authorization code flow",
        ));
    }
    if r.scope.trim().is_empty() {
        return Ok(err("invalid_scope", "scope is required"));
    }
    let Some(scopes) = grant_scopes(&r.scope, &client.scopes, true) else {
        return Ok(err(
            "invalid_scope",
            "a requested scope is not allowed for this client",
        ));
    };
    if let Err(why) = audience(&scopes) {
        return Ok(err("invalid_scope", why));
    }
    match (
        r.code_challenge.as_deref(),
        r.code_challenge_method.as_deref(),
    ) {
        (Some(ch), Some("S256"))
            if ch.len() == 43
                && ch
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') => {}
        (Some(_), Some("S256")) => {
            return Ok(err(
                "invalid_request",
                "code_challenge must be a BASE64URL-encoded SHA-256 digest (43 characters)",
            ));
        }
        (Some(_), _) => return Ok(err("invalid_request", "code_challenge_method must be S256")),
        (None, Some(_)) => {
            return Ok(err(
                "invalid_request",
                "code_challenge_method without code_challenge",
            ));
        }
        (None, None) if client.public => {
            return Ok(err(
                "invalid_request",
                "public clients must use PKCE (code_challenge with S256)",
            ));
        }
        (None, None) => {}
    }
    if r.nonce.as_deref().is_some_and(|n| n.len() > 512)
        || r.state.as_deref().is_some_and(|n| n.len() > 2048)
    {
        return Ok(err("invalid_request", "state or nonce is too long"));
    }
    let max_age = match r.max_age.as_deref() {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n),
            _ => {
                return Ok(err(
                    "invalid_request",
                    "max_age must be a non-negative integer",
                ));
            }
        },
    };
    let passive = r.prompts("none");
    if passive && r.prompt.as_deref() != Some("none") {
        return Ok(err(
            "invalid_request",
            "prompt=none cannot be combined with other values",
        ));
    }
    let next = r.next(true);
    let gate = gate(
        s,
        headers,
        lang,
        &next,
        client.org,
        r.org.as_deref(),
        r.login_hint.as_deref().unwrap_or(""),
        r.prompts("login"),
        max_age,
        passive,
    )
    .await?;
    let (session, member) = match gate {
        Gate::Through {
            session, member, ..
        } => (session, member),
        Gate::Page(p) => return Ok(p),
        Gate::Passive(code) => {
            return Ok(err(code, "the person must interact with the sign-in pages"));
        }
    };
    if !client.first_party {
        let granted = consented(s, &member, &client).await?;
        let covered = scopes.iter().all(|sc| granted.iter().any(|g| g == sc));
        if !covered || r.prompts("consent") {
            if passive {
                return Ok(err(
                    "consent_required",
                    "the person has not allowed this app yet",
                ));
            }
            let (csrf, set) = web::csrf(headers, secure(s));
            return Ok(render(
                StatusCode::OK,
                &pages::Consent {
                    t,
                    lang: lang.code(),
                    title: t.consent_title,
                    csrf: &csrf,
                    next: &r.next(true),
                    client_name: &client.name,
                    scopes: scopes
                        .iter()
                        .map(|sc| t.scope(sc))
                        .filter(|d| !d.is_empty())
                        .collect(),
                },
                set.into_iter().collect(),
            ));
        }
    }
    let code = crate::grants::issue_code(
        &s.db,
        crate::grants::CodeInput {
            client_id: &client.client_id,
            org: member.org,
            person: member.person,
            session: session.id,
            redirect_uri: &r.redirect_uri,
            scopes: &scopes,
            nonce: r.nonce.as_deref(),
            code_challenge: r.code_challenge.as_deref(),
            auth_time: session.auth_time,
            amr: &session.amr,
        },
        s.now(),
    )
    .await?;
    let mut p = vec![("code", code.as_str()), ("iss", issuer.as_str())];
    if let Some(st) = r.state.as_deref() {
        p.push(("state", st));
    }
    Ok(to_client(&r.redirect_uri, &p))
}

/// The scopes the person allowed this client before.
async fn consented(s: &AppState, m: &Membership, client: &Client) -> Result<Vec<String>, ApiError> {
    let mut c = s.db.read().await?;
    let r: Option<String> = run!(&mut c, c => sqlx::query_scalar("SELECT scopes FROM consents WHERE person_id = $1 AND client_id = $2")
        .bind(m.person.0).bind(&client.client_id).fetch_optional(c).await)?;
    Ok(r.map(|s| s.split(' ').map(str::to_string).collect())
        .unwrap_or_default())
}

impl crate::web::Csrf for LoginForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

#[derive(Deserialize)]
pub struct LoginForm {
    csrf: Option<String>,
    next: Option<String>,
    login: Option<String>,
    password: Option<String>,
}

/// `POST /oauth2/login`: checks the password and starts a session, then continues at `next`.
pub async fn login(
    State(s): State<AppState>,
    Extension(ctx): Extension<Arc<Ctx>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let lang = lang_of(&headers, None);
    let t = lang.texts();
    let f = match web::posted(&headers, form, lang) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let next = f.next.unwrap_or_default();
    if !web::next_ok(&next) {
        return pages::message(
            StatusCode::BAD_REQUEST,
            lang,
            t.error_title,
            "The form names an unknown continuation.",
        );
    }
    let login = f.login.unwrap_or_default();
    let password = f.password.unwrap_or_default();
    let again = |e: &'static str, st: StatusCode| {
        login_page(&headers, &s, lang, &next, &login, Some(e), st, None)
    };
    if !ctx.attempt(ip) {
        return again(t.too_many, StatusCode::TOO_MANY_REQUESTS);
    }
    match login_inner(&s, &ctx, &headers, &login, password, s.now()).await {
        Ok(Ok(cookie)) => {
            let mut r = Redirect::to(&next).into_response();
            if let Some((k, v)) = web::set_cookie(
                sessions::COOKIE,
                &cookie,
                sessions::SESSION_TTL_MS / 1000,
                "Lax",
                secure(&s),
            ) {
                r.headers_mut().insert(k, v);
            }
            r
        }
        Ok(Err(LoginRefused::Locked)) => again(t.locked, StatusCode::FORBIDDEN),
        Ok(Err(LoginRefused::Wrong)) => again(t.wrong_credentials, StatusCode::UNAUTHORIZED),
        Err(e) => e.into_response(),
    }
}

enum LoginRefused {
    Wrong,
    Locked,
}

async fn login_inner(
    s: &AppState,
    ctx: &Ctx,
    headers: &HeaderMap,
    login: &str,
    password: String,
    now: Timestamp,
) -> Result<Result<String, LoginRefused>, ApiError> {
    let account = signin::find(&s.db, login).await?;
    let Some(a) = account else {
        ctx.verify_password(password, None).await;
        return Ok(Err(LoginRefused::Wrong));
    };
    if a.locked_until.is_some_and(|u| u > now.as_millisecond()) {
        return Ok(Err(LoginRefused::Locked));
    }
    let ok = ctx.verify_password(password, a.password_hash.clone()).await;
    let mut tx = s.db.begin().await?;
    if !ok || a.disabled {
        signin::failed(&mut tx, a.id, now).await?;
        tx.commit().await?;
        return Ok(Err(LoginRefused::Wrong));
    }
    signin::succeeded(&mut tx, &a).await?;
    let (_, cookie) =
        sessions::create(&mut tx, a.id, &["pwd"], &web::user_agent(headers), now).await?;
    tx.commit().await?;
    Ok(Ok(cookie))
}

impl crate::web::Csrf for ConsentForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

#[derive(Deserialize)]
pub struct ConsentForm {
    csrf: Option<String>,
    next: Option<String>,
    decision: Option<String>,
}

/// `POST /oauth2/consent`: remembers the allowed scopes (or answers `access_denied`).
pub async fn consent(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<ConsentForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let lang = lang_of(&headers, None);
    let t = lang.texts();
    let f = match web::posted(&headers, form, lang) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let next = f.next.unwrap_or_default();
    let Some(query) = next
        .strip_prefix("/oauth2/authorize?")
        .filter(|_| web::next_ok(&next))
    else {
        return pages::message(
            StatusCode::BAD_REQUEST,
            lang,
            t.error_title,
            "The form names an unknown continuation.",
        );
    };
    let r = AuthRequest::parse(query);
    match consent_inner(&s, &headers, &r, f.decision.as_deref() == Some("allow")).await {
        Ok(Some(resp)) => resp,
        Ok(None) => Redirect::to(&next).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn consent_inner(
    s: &AppState,
    headers: &HeaderMap,
    r: &AuthRequest,
    allow: bool,
) -> Result<Option<Response>, ApiError> {
    let now = s.now();
    let lang = lang_of(headers, r.ui_locales.as_deref());
    let t = lang.texts();
    let Some(client) = clients::lookup(&s.db, &r.client_id, s.base_url()).await? else {
        return Ok(Some(pages::message(
            StatusCode::BAD_REQUEST,
            lang,
            t.error_title,
            "This app is unknown or was revoked.",
        )));
    };
    if !client.redirect_uris.contains(&r.redirect_uri) {
        return Ok(Some(pages::message(
            StatusCode::BAD_REQUEST,
            lang,
            t.error_title,
            "The redirect_uri is not registered for this app.",
        )));
    }
    let Some(session) = sessions::current(&s.db, headers, now).await? else {
        return Ok(None);
    };
    if !allow {
        let issuer = s.base_url().to_string();
        let mut p = vec![
            ("error", "access_denied"),
            ("error_description", "the person did not allow access"),
            ("iss", issuer.as_str()),
        ];
        if let Some(st) = r.state.as_deref() {
            p.push(("state", st));
        }
        return Ok(Some(to_client(&r.redirect_uri, &p)));
    }
    let Some(scopes) = grant_scopes(&r.scope, &client.scopes, true) else {
        return Ok(None);
    };
    let members = signin::memberships(&s.db, session.account).await?;
    let Some(m) = members
        .iter()
        .find(|m| Some(m.org) == client.org && m.active)
    else {
        return Ok(None);
    };
    let mut tx = s.db.begin().await?;
    let previous: Option<String> = run!(&mut tx, c => sqlx::query_scalar("SELECT scopes FROM consents WHERE person_id = $1 AND client_id = $2")
        .bind(m.person.0).bind(&client.client_id).fetch_optional(c).await)?;
    let mut all: Vec<String> = previous
        .map(|p| p.split(' ').map(str::to_string).collect())
        .unwrap_or_default();
    for sc in scopes {
        if !all.contains(&sc) {
            all.push(sc);
        }
    }
    carebridge_store::exec!(&mut tx, c => sqlx::query(
        "INSERT INTO consents (person_id, client_id, org_id, scopes, granted_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (person_id, client_id) DO UPDATE SET scopes = excluded.scopes, granted_at = excluded.granted_at")
        .bind(m.person.0).bind(&client.client_id).bind(m.org.0).bind(all.join(" ")).bind(now.as_millisecond()).execute(c).await)?;
    tx.commit().await?;
    Ok(None)
}
