//! Browser plumbing of the sign-in pages: cookies (Secure when the issuer is https, always
//! HttpOnly), the CSRF double-submit token, the caller's address for rate limits, and the
//! check that a continuation target stays on our own sign-in endpoints (no open redirect).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

/// The CSRF cookie (double-submit: the form field must equal it).
pub const CSRF_COOKIE: &str = "cb_csrf";

/// The value of cookie `name`.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
}

/// A `Set-Cookie` header: HttpOnly, Path=/, SameSite as given, Secure on https.
pub fn set_cookie(
    name: &str,
    value: &str,
    max_age_s: i64,
    same_site: &str,
    secure: bool,
) -> Option<(header::HeaderName, HeaderValue)> {
    let secure = if secure { "; Secure" } else { "" };
    let v = format!(
        "{name}={value}; Path=/; Max-Age={max_age_s}; HttpOnly; SameSite={same_site}{secure}"
    );
    HeaderValue::from_str(&v)
        .ok()
        .map(|v| (header::SET_COOKIE, v))
}

/// The CSRF token of this browser, and a cookie to set when it had none.
pub fn csrf(
    headers: &HeaderMap,
    secure: bool,
) -> (String, Option<(header::HeaderName, HeaderValue)>) {
    match cookie(headers, CSRF_COOKIE).filter(|c| c.len() == 43) {
        Some(c) => (c, None),
        None => {
            let t = URL_SAFE_NO_PAD.encode(crate::random_bytes::<32>());
            let set = set_cookie(CSRF_COOKIE, &t, 86_400, "Strict", secure);
            (t, set)
        }
    }
}

/// Whether the form's CSRF field matches the cookie (constant time).
pub fn csrf_ok(headers: &HeaderMap, field: Option<&str>) -> bool {
    match (cookie(headers, CSRF_COOKIE), field) {
        (Some(c), Some(f)) if !c.is_empty() => bool::from(c.as_bytes().ct_eq(f.as_bytes())),
        _ => false,
    }
}

/// A form of the sign-in pages: it carries the CSRF token.
pub trait Csrf {
    fn csrf(&self) -> Option<&str>;
}

/// A posted sign-in form: parsed, with a CSRF token matching the cookie; otherwise the page
/// that says what is wrong (400 unreadable, 403 CSRF). The error is the response itself, as
/// for axum's own rejections.
#[allow(clippy::result_large_err)]
pub fn posted<F: Csrf>(
    headers: &HeaderMap,
    form: Result<axum::extract::Form<F>, axum::extract::rejection::FormRejection>,
    lang: crate::i18n::Lang,
) -> Result<F, axum::response::Response> {
    let t = lang.texts();
    let Ok(axum::extract::Form(f)) = form else {
        return Err(crate::pages::message(
            axum::http::StatusCode::BAD_REQUEST,
            lang,
            t.error_title,
            "The form could not be read.",
        ));
    };
    if !csrf_ok(headers, f.csrf()) {
        return Err(crate::pages::message(
            axum::http::StatusCode::FORBIDDEN,
            lang,
            t.error_title,
            t.csrf,
        ));
    }
    Ok(f)
}

/// Whether `next` is one of our own continuation targets: a path on this server under
/// `/oauth2/authorize?` or `/oauth2/device?`, never another host (the fixed path prefix means
/// whatever follows is a query string of our own endpoint).
pub fn next_ok(next: &str) -> bool {
    (next.starts_with("/oauth2/authorize?")
        || next.starts_with("/oauth2/device?")
        || next == "/oauth2/device"
        || next == "/account")
        && !next.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// The caller's address: the server's [`carebridge_web::ClientAddr`] (which honours trusted
/// proxies), else the TCP peer, else `0.0.0.0`.
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if let Some(a) = parts.extensions.get::<carebridge_web::ClientAddr>() {
            return Ok(ClientIp(a.0));
        }
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        ))
    }
}

/// `User-Agent`, shortened, for the session list.
pub fn user_agent(headers: &HeaderMap) -> String {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_own_endpoints_are_continuations() {
        assert!(next_ok(
            "/oauth2/authorize?client_id=x&redirect_uri=https%3A%2F%2Fa"
        ));
        assert!(next_ok("/oauth2/device?user_code=ABCD-EFGH"));
        for bad in [
            "https://evil.example/",
            "//evil.example/oauth2/authorize?",
            "/\\evil.example",
            "/oauth2/authorizeX?",
            "/oauth2/authorize?\nSet-Cookie:x",
            "javascript:alert(1)",
        ] {
            assert!(!next_ok(bad), "{bad}");
        }
    }

    #[test]
    fn csrf_needs_the_same_value_in_cookie_and_form() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; cb_csrf=tok123"),
        );
        assert!(csrf_ok(&h, Some("tok123")));
        assert!(!csrf_ok(&h, Some("tok124")));
        assert!(!csrf_ok(&h, None));
        assert!(!csrf_ok(&HeaderMap::new(), Some("tok123")));
    }

    #[test]
    fn cookies_are_http_only_and_secure_on_https() {
        let (_, v) = set_cookie("cb_session", "abc", 60, "Lax", true).unwrap();
        let v = v.to_str().unwrap();
        assert!(
            v.contains("HttpOnly") && v.contains("SameSite=Lax") && v.contains("; Secure"),
            "{v}"
        );
        let (_, v) = set_cookie("cb_csrf", "abc", 60, "Strict", false).unwrap();
        let v = v.to_str().unwrap();
        assert!(
            v.contains("HttpOnly") && v.contains("SameSite=Strict") && !v.contains("Secure"),
            "{v}"
        );
        assert!(set_cookie("x", "bad\nvalue", 1, "Lax", true).is_none());
    }
}
