//! The sign-in pages (askama templates in `templates/`, HTML-escaped by default) and the
//! headers every page carries: no caching, no framing (clickjacking), no referrer, a strict
//! content security policy (no scripts at all).

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::i18n::{Lang, Texts};

#[derive(Template)]
#[template(path = "login.html")]
pub struct Login<'a> {
    pub t: &'static Texts,
    pub lang: &'static str,
    pub title: &'static str,
    pub error: Option<&'static str>,
    pub csrf: &'a str,
    pub next: &'a str,
    pub login: &'a str,
    /// "Sign in with <provider>": `(href, provider name)`.
    pub upstream: Option<(String, String)>,
}

#[derive(Template)]
#[template(path = "mfa.html")]
pub struct Mfa<'a> {
    pub t: &'static Texts,
    pub lang: &'static str,
    pub title: &'static str,
    pub error: Option<&'static str>,
    pub csrf: &'a str,
    pub next: &'a str,
    pub sms: bool,
    pub phone_hint: &'a str,
}

#[derive(Template)]
#[template(path = "enrol.html")]
pub struct Enrol<'a> {
    pub t: &'static Texts,
    pub lang: &'static str,
    pub title: &'static str,
    pub error: Option<&'static str>,
    pub csrf: &'a str,
    pub next: &'a str,
    /// An SVG we generate ourselves from the otpauth URL (no outside input reaches it raw).
    pub qr_svg: &'a str,
    pub secret: &'a str,
}

#[derive(Template)]
#[template(path = "recovery.html")]
pub struct Recovery<'a> {
    pub t: &'static Texts,
    pub lang: &'static str,
    pub title: &'static str,
    pub codes: &'a [String],
    pub next: &'a str,
}

#[derive(Template)]
#[template(path = "consent.html")]
pub struct Consent<'a> {
    pub t: &'static Texts,
    pub lang: &'static str,
    pub title: &'static str,
    pub csrf: &'a str,
    pub next: &'a str,
    pub client_name: &'a str,
    pub scopes: Vec<&'static str>,
}

#[derive(Template)]
#[template(path = "orgs.html")]
pub struct Orgs {
    pub t: &'static Texts,
    pub lang: &'static str,
    pub title: &'static str,
    pub orgs: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct Message {
    pub t: &'static Texts,
    pub lang: &'static str,
    pub title: &'static str,
    pub text: String,
    pub error: bool,
}

#[derive(Template)]
#[template(path = "forgot.html")]
pub struct Forgot<'a> {
    pub t: &'static Texts,
    pub lang: &'static str,
    pub title: &'static str,
    pub csrf: &'a str,
}

#[derive(Template)]
#[template(path = "password.html")]
pub struct Password<'a> {
    pub t: &'static Texts,
    pub lang: &'static str,
    pub title: &'static str,
    pub error: Option<&'static str>,
    pub csrf: &'a str,
    pub token: &'a str,
}

#[derive(Template)]
#[template(path = "device.html")]
pub struct Device<'a> {
    pub t: &'static Texts,
    pub lang: &'static str,
    pub title: &'static str,
    pub error: Option<&'static str>,
    pub csrf: &'a str,
    pub user_code: &'a str,
    pub org: &'a str,
}

/// Renders a page with the security headers; `extra` are further headers (cookies).
pub fn render(
    status: StatusCode,
    page: &impl Template,
    extra: Vec<(header::HeaderName, HeaderValue)>,
) -> Response {
    let body = match page.render() {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "page rendering failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "page rendering failed").into_response();
        }
    };
    let mut r = (status, axum::response::Html(body)).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'"),
    );
    for (k, v) in extra {
        h.append(k, v);
    }
    r
}

/// A page with one sentence (errors, confirmations).
pub fn message(
    status: StatusCode,
    lang: Lang,
    title: &'static str,
    text: impl Into<String>,
) -> Response {
    render(
        status,
        &Message {
            t: lang.texts(),
            lang: lang.code(),
            title,
            text: text.into(),
            error: status.is_client_error() || status.is_server_error(),
        },
        vec![],
    )
}
