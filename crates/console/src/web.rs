//! The console's browser plumbing: the signed-in middleware (session cookie, token refresh,
//! CSRF check of every posted form), sign-in and sign-out, the language switch, the page
//! chrome shared by every template, error pages and security headers.

use askama::Template;
use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use carebridge_web::ClientAddr;
use http_body_util::BodyExt;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::Console;
use crate::api::{Api, Fail, with_query};
use crate::i18n::{Lang, Texts};
use crate::session::{self, Caps, Pending, Session};

/// The largest form the console accepts.
const MAX_FORM: usize = 1024 * 1024;

/// The signed-in request: the session and the API as that person.
#[derive(Clone)]
pub struct Ctx {
    pub s: Session,
    pub api: Api,
    /// The path and query of this request (the language switch comes back here).
    pub here: String,
    pub now: jiff::Timestamp,
    /// This server's public base URL (for values pasted elsewhere, e.g. into Entra ID).
    pub base: String,
}

impl Ctx {
    pub fn lang(&self) -> Lang {
        Lang::of(&self.s.lang).unwrap_or(Lang::En)
    }

    pub fn t(&self) -> &'static Texts {
        self.lang().texts()
    }

    pub fn chrome(&self, nav: &'static str, title: impl Into<String>) -> Chrome {
        let lang = self.lang();
        Chrome {
            lang: lang.code(),
            t: lang.texts(),
            title: title.into(),
            org_name: self.s.org_name.clone(),
            name: self.s.name.clone(),
            csrf: self.s.csrf.clone(),
            caps: self.s.caps,
            nav,
            here: self.here.clone(),
            langs: Lang::ALL
                .iter()
                .map(|l| (l.code(), l.name(), *l == lang))
                .collect(),
            notice: None,
        }
    }

    /// The page for a failed API call: sign in again, not allowed, not found, or the
    /// problem's own words.
    pub fn fail(&self, f: &Fail) -> Response {
        let t = self.t();
        match f {
            Fail::SignedOut => to_login(&self.here),
            Fail::Problem(p) if p.status == 403 => {
                message(self.chrome("", t.error_title), 403, t.not_allowed)
            }
            Fail::Problem(p) if p.status == 404 => {
                message(self.chrome("", t.error_title), 404, t.not_found)
            }
            Fail::Problem(p) => message(
                self.chrome("", t.error_title),
                p.status,
                &p.detail.clone().unwrap_or_else(|| p.title.clone()),
            ),
            Fail::Broken(e) => {
                tracing::warn!(error = %e, "console: API call failed");
                message(self.chrome("", t.error_title), 502, t.broken)
            }
        }
    }
}

/// What every page shows around its content.
pub struct Chrome {
    pub lang: &'static str,
    pub t: &'static Texts,
    pub title: String,
    pub org_name: String,
    pub name: String,
    pub csrf: String,
    pub caps: Caps,
    pub nav: &'static str,
    pub here: String,
    pub langs: Vec<(&'static str, &'static str, bool)>,
    /// A one-line confirmation ("Saved.").
    pub notice: Option<String>,
}

/// Renders a template with a status.
pub fn html(t: &impl Template, status: u16) -> Response {
    match t.render() {
        Ok(body) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console: template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "template error").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    c: Chrome,
    text: &'a str,
}

pub fn message(c: Chrome, status: u16, text: &str) -> Response {
    html(&MessagePage { c, text }, status)
}

/// A 303 to `to` (after a successful form).
pub fn see(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

fn to_login(next: &str) -> Response {
    see(&with_query("/console/login", &[("next", Some(next))]))
}

/// Security headers of every console answer: no scripts, nothing from elsewhere, no framing,
/// never cached (pages hold personal data).
pub async fn headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// A posted form's fields, in order (repeated names allowed: multi-selects).
pub struct Fields(Vec<(String, String)>);

impl Fields {
    pub fn parse(body: &[u8]) -> Fields {
        Fields(form_urlencoded::parse(body).into_owned().collect())
    }

    /// The first value of `name`, trimmed; `None` when absent or blank.
    pub fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// The `If-Match` value for the form's `version` field (a form without one matches no
    /// version, so the API refuses it as stale).
    pub fn if_match(&self) -> String {
        format!(
            "\"{}\"",
            self.get("version")
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(-1)
        )
    }

    /// Every value of `name`, trimmed, blanks included (for rows of aligned fields).
    pub fn list(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }

    /// Every non-blank value of `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }
}

/// Only pages of the console may be continued to after sign-in or a language switch.
pub fn local(next: &str) -> Option<&str> {
    (next.starts_with("/console")
        && !next.starts_with("//")
        && !next.contains("/../")
        && !next
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\'))
    .then_some(next)
}

fn client_addr(req: &Request) -> Option<ClientAddr> {
    req.extensions().get::<ClientAddr>().copied()
}

/// Lets only signed-in people through: opens the session cookie (else to the sign-in), refreshes
/// the access token when it runs out (and sets the new cookie on the answer), and checks the
/// CSRF field of every posted form before any handler sees it.
pub async fn signed_in(State(c): State<Console>, req: Request, next: Next) -> Response {
    let now = c.app().now().as_millisecond();
    let here = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/console".into());
    let back = if req.method() == Method::GET {
        here.clone()
    } else {
        "/console".into()
    };
    let Some(mut s) = session::read_cookie(req.headers(), session::COOKIE)
        .and_then(|raw| session::open_session(&c.app().cursor, &raw, now))
    else {
        return to_login(&back);
    };
    let addr = client_addr(&req);
    let rid = req.headers().get("x-request-id").cloned();
    let mut renewed = false;
    if session::stale(&s, now) {
        let anon = Api::new(c.0.api.clone(), None, addr, rid.clone());
        match session::refresh(&anon, &c.0.refreshes, &c.0.refresh_lock, &s, now).await {
            Ok(next) => {
                s = next;
                renewed = true;
            }
            Err(_) => {
                let mut r = to_login(&back);
                clear(&mut r, session::COOKIE, c.secure());
                return r;
            }
        }
    }
    let api = Api::new(c.0.api.clone(), Some(s.at.clone()), addr, rid);
    let mut req = req;
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if req.method() == Method::POST && multipart {
        // A file upload: the body is the handler's to stream, so the token comes in the
        // form's action URL (`?csrf=`).
        let token = req.uri().query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "csrf")
                .map(|(_, v)| v.into_owned())
        });
        if !s.csrf_ok(token.as_deref()) {
            let ctx = Ctx {
                s,
                api,
                here: here.clone(),
                now: c.app().now(),
                base: c.app().base_url().to_string(),
            };
            let t = ctx.t();
            return message(ctx.chrome("", t.error_title), 403, t.csrf_failed);
        }
    } else if req.method() == Method::POST {
        let (parts, body) = req.into_parts();
        let is_form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let bytes = match http_body_util::Limited::new(body, MAX_FORM).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "form too large").into_response(),
        };
        let fields = Fields::parse(&bytes);
        if !is_form || !s.csrf_ok(fields.get("csrf").as_deref()) {
            let ctx = Ctx {
                s,
                api,
                here: here.clone(),
                now: c.app().now(),
                base: c.app().base_url().to_string(),
            };
            let t = ctx.t();
            return message(ctx.chrome("", t.error_title), 403, t.csrf_failed);
        }
        req = Request::from_parts(parts, Body::from(bytes));
    }
    let sealed = renewed.then(|| session::seal_session(&c.app().cursor, &s));
    req.extensions_mut().insert(Ctx {
        s,
        api,
        here,
        now: c.app().now(),
        base: c.app().base_url().to_string(),
    });
    let mut res = next.run(req).await;
    if let Some(v) = sealed
        .and_then(|v| session::cookie(session::COOKIE, &v, session::SESSION_MS / 1000, c.secure()))
        && !res.headers().contains_key(header::SET_COOKIE)
    {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

fn clear(r: &mut Response, name: &str, secure: bool) {
    if let Some(v) = session::cookie(name, "", 0, secure) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// `GET /console/login`: starts a sign-in at this server's authorization endpoint
/// (authorization code with PKCE S256, `state` bound to a sealed cookie).
pub async fn login(State(c): State<Console>, Query(q): Query<LoginQuery>) -> Response {
    let now = c.app().now().as_millisecond();
    let next = q
        .next
        .as_deref()
        .and_then(local)
        .unwrap_or("/console")
        .to_string();
    let p = Pending {
        state: session::random(),
        verifier: session::random(),
        next,
        until: now + 600_000,
    };
    let redirect_uri = format!("{}/console/callback", c.app().base_url());
    let scope = format!(
        "openid profile offline_access {}",
        carebridge_domain::oauth::CONSOLE_SCOPE
    );
    let challenge = session::challenge(&p.verifier);
    let to = with_query(
        "/oauth2/authorize",
        &[
            ("response_type", Some("code")),
            ("client_id", Some(carebridge_domain::oauth::CONSOLE_CLIENT)),
            ("redirect_uri", Some(&redirect_uri)),
            ("scope", Some(&scope)),
            ("state", Some(&p.state)),
            ("code_challenge", Some(&challenge)),
            ("code_challenge_method", Some("S256")),
        ],
    );
    let mut r = see(&to);
    if let Some(v) = session::cookie(
        session::LOGIN_COOKIE,
        &session::seal_pending(&c.app().cursor, &p),
        600,
        c.secure(),
    ) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// A page for someone who is not signed in (yet).
fn bare(lang: Lang, status: u16, text: &str) -> Response {
    let t = lang.texts();
    let c = Chrome {
        lang: lang.code(),
        t,
        title: t.error_title.into(),
        org_name: String::new(),
        name: String::new(),
        csrf: String::new(),
        caps: Caps::default(),
        nav: "",
        here: "/console".into(),
        langs: Vec::new(),
        notice: None,
    };
    message(c, status, text)
}

/// `GET /console/callback`: the authorization server's answer. Checks `state` against the
/// sealed sign-in cookie, redeems the code (in-process, with the PKCE verifier), finds out what
/// the person may see, and starts the console session.
pub async fn callback(
    State(c): State<Console>,
    Query(q): Query<CallbackQuery>,
    req: Request,
) -> Response {
    let now = c.app().now().as_millisecond();
    let lang = Lang::from_accept(
        req.headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    );
    let pending = session::read_cookie(req.headers(), session::LOGIN_COOKIE)
        .and_then(|raw| session::open_pending(&c.app().cursor, &raw, now));
    let (Some(p), Some(code), Some(state)) = (pending, q.code.as_deref(), q.state.as_deref())
    else {
        if let Some(e) = q.error.as_deref() {
            tracing::info!(error = %e, "console sign-in refused by the authorization server");
        }
        // Start again: an expired or foreign sign-in, or a refusal.
        return bare(
            lang,
            400,
            "The sign-in could not be completed. Open /console to sign in again.",
        );
    };
    if !bool::from(p.state.as_bytes().ct_eq(state.as_bytes())) {
        return bare(lang, 400, "The sign-in does not match this browser.");
    }
    let addr = client_addr(&req);
    let rid = req.headers().get("x-request-id").cloned();
    let anon = Api::new(c.0.api.clone(), None, addr, rid.clone());
    let redirect_uri = format!("{}/console/callback", c.app().base_url());
    let tokens = match session::token_call(
        &anon,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &redirect_uri),
            ("client_id", carebridge_domain::oauth::CONSOLE_CLIENT),
            ("code_verifier", &p.verifier),
        ],
    )
    .await
    {
        Ok(t) => t,
        Err(_) => return bare(lang, 400, "The sign-in code was not accepted."),
    };
    let Some(claims) = session::claims(&tokens.access_token) else {
        return bare(lang, 502, lang.texts().broken);
    };
    let api = Api::new(
        c.0.api.clone(),
        Some(tokens.access_token.clone()),
        addr,
        rid,
    );
    let org = format!("/api/v1/orgs/{}", claims.org);
    let probe = |path: String| {
        let api = api.clone();
        async move { api.get::<serde_json::Value>(&path).await.is_ok() }
    };
    let caps = Caps {
        people: probe(format!("{org}/people?limit=1")).await,
        duties: probe(format!("{org}/duties?limit=1")).await,
        audit: probe(format!("{org}/audit?limit=1")).await,
        settings: probe(format!("{org}/app-settings")).await,
    };
    let org_name = match api.get::<carebridge_proto::org::Org>(&org).await {
        Ok(o) => o.value.name,
        Err(_) => String::new(),
    };
    let (name, language) = match api
        .get::<carebridge_proto::directory::Person>(&format!("{org}/people/{}", claims.sub))
        .await
    {
        Ok(p) => (
            format!("{} {}", p.value.given_name, p.value.family_name),
            p.value.language,
        ),
        Err(_) => (String::new(), None),
    };
    let lang = language.as_deref().and_then(Lang::of).unwrap_or(lang);
    let s = Session {
        at: tokens.access_token,
        ax: now + tokens.expires_in * 1000,
        rt: tokens.refresh_token,
        ex: now + session::SESSION_MS,
        org: claims.org,
        org_name,
        me: claims.sub,
        name,
        lang: lang.code().into(),
        csrf: session::random(),
        caps,
    };
    let mut r = see(&p.next);
    if let Some(v) = session::cookie(
        session::COOKIE,
        &session::seal_session(&c.app().cursor, &s),
        session::SESSION_MS / 1000,
        c.secure(),
    ) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    clear(&mut r, session::LOGIN_COOKIE, c.secure());
    r
}

/// `POST /console/logout`: revokes the sign-in (refresh token, and with it every access token
/// of the grant), forgets the session, and ends the identity session too.
pub async fn logout(State(c): State<Console>, Extension(ctx): Extension<Ctx>) -> Response {
    if let Some(rt) = ctx.s.rt.as_deref() {
        let body = serde_urlencoded::to_string([
            ("token", rt),
            ("client_id", carebridge_domain::oauth::CONSOLE_CLIENT),
        ])
        .unwrap_or_default();
        if let Err(e) = ctx
            .api
            .raw(
                Method::POST,
                "/oauth2/revoke",
                Some("application/x-www-form-urlencoded"),
                body.into_bytes(),
                None,
            )
            .await
        {
            tracing::warn!(error = ?e, "console: revoking at sign-out failed");
        }
    }
    let mut r = see("/oauth2/logout");
    clear(&mut r, session::COOKIE, c.secure());
    r
}

/// `POST /console/lang`: the person's language, stored on their directory entry (so every
/// device remembers it) and in the session.
pub async fn set_lang(
    State(c): State<Console>,
    Extension(ctx): Extension<Ctx>,
    body: Bytes,
) -> Response {
    let f = Fields::parse(&body);
    let Some(lang) = f.get("lang").as_deref().and_then(Lang::of) else {
        return message(ctx.chrome("", ctx.t().error_title), 422, "unknown language");
    };
    let me = ctx.s.org_path(&format!("/people/{}", ctx.s.me));
    // Best effort: a person who may not change their own entry still gets the language for
    // this session.
    if let Ok(p) = ctx
        .api
        .get::<carebridge_proto::directory::Person>(&me)
        .await
        && let Err(e) = ctx
            .api
            .send::<serde_json::Value>(
                Method::PATCH,
                &me,
                &serde_json::json!({ "language": lang.code() }),
                p.etag.as_deref(),
            )
            .await
    {
        tracing::info!(error = ?e, "console: language not stored on the person");
    }
    let mut s = ctx.s.clone();
    s.lang = lang.code().into();
    let back = f
        .get("back")
        .as_deref()
        .and_then(local)
        .unwrap_or("/console")
        .to_string();
    let mut r = see(&back);
    if let Some(v) = session::cookie(
        session::COOKIE,
        &session::seal_session(&c.app().cursor, &s),
        session::SESSION_MS / 1000,
        c.secure(),
    ) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    c: Chrome,
}

/// `GET /console`: the start page (where the person may go).
pub async fn home(Extension(ctx): Extension<Ctx>) -> Response {
    let t = ctx.t();
    if !(ctx.s.caps.people || ctx.s.caps.duties || ctx.s.caps.audit || ctx.s.caps.settings) {
        return message(ctx.chrome("", t.console), 403, t.no_role);
    }
    html(
        &HomePage {
            c: ctx.chrome("", t.welcome),
        },
        200,
    )
}

/// `GET /console/assets/console.css`: the one stylesheet, cached for a day.
pub async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("../assets/console.css"),
    )
        .into_response()
}

/// Two ids from the path, or the not-found page.
#[allow(clippy::result_large_err)]
pub fn ids_or_404(ctx: &Ctx, a: &str, b: &str) -> Result<(Uuid, Uuid), Response> {
    Ok((id_or_404(ctx, a)?, id_or_404(ctx, b)?))
}

/// Deletes `api_path` (of the organisation) and goes back to `back`, or shows why not.
pub async fn delete_then(ctx: &Ctx, api_path: &str, back: &str) -> Response {
    match ctx.api.delete(&ctx.s.org_path(api_path)).await {
        Ok(()) => see(back),
        Err(f) => ctx.fail(&f),
    }
}

/// An id from the path, or the not-found page (the error is the response itself, as for
/// axum's own rejections).
#[allow(clippy::result_large_err)]
pub fn id_or_404(ctx: &Ctx, raw: &str) -> Result<Uuid, Response> {
    Uuid::parse_str(raw).map_err(|_| {
        let t = ctx.t();
        message(ctx.chrome("", t.error_title), 404, t.not_found)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_paths_are_continued_to() {
        assert_eq!(local("/console/people?q=a"), Some("/console/people?q=a"));
        assert_eq!(local("//evil.example/console"), None);
        assert_eq!(local("https://evil.example/console"), None);
        assert_eq!(local("/oauth2/logout"), None);
        assert_eq!(local("/console/../oauth2"), None);
        assert_eq!(local("/console\\x"), None);
    }

    #[test]
    fn repeated_fields_are_kept() {
        let f = Fields::parse(b"unit=a&unit=b&unit=&name=+x+");
        assert_eq!(f.all("unit"), vec!["a", "b"]);
        assert_eq!(f.get("name").as_deref(), Some("x"));
        assert_eq!(f.get("none"), None);
    }
}
