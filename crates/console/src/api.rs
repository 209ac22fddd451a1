//! The console's way to the API: every page reads and writes through Carebridge's own HTTP API,
//! called in-process (the composed router as a `tower` service, with the signed-in person's
//! access token), so what a page shows and allows is exactly what the API allows that person —
//! unit scopes, contact grants, validation and audit included. Nothing here touches the
//! database.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use carebridge_proto::problem::{FieldError, Problem};
use carebridge_web::ClientAddr;
use http_body_util::BodyExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::ServiceExt;

/// Largest API answer the console reads (a page of people is far below).
const MAX_BODY: usize = 8 * 1024 * 1024;

/// Why an API call did not give what the page wanted.
#[derive(Debug)]
pub enum Fail {
    /// The API answered with a problem document (validation, forbidden, not found, conflict…).
    Problem(Problem),
    /// The token is no longer accepted (revoked grant, deactivated person): sign in again.
    SignedOut,
    /// The API could not be reached or answered something unreadable.
    Broken(String),
}

impl Fail {
    pub fn status(&self) -> u16 {
        match self {
            Fail::Problem(p) => p.status,
            Fail::SignedOut => 401,
            Fail::Broken(_) => 500,
        }
    }

    /// The failing places of a validation error.
    pub fn fields(&self) -> &[FieldError] {
        match self {
            Fail::Problem(p) => &p.errors,
            _ => &[],
        }
    }

    /// One line for the person: the problem's detail or title.
    pub fn message(&self) -> String {
        match self {
            Fail::Problem(p) => p.detail.clone().unwrap_or_else(|| p.title.clone()),
            Fail::SignedOut => "signed out".into(),
            Fail::Broken(_) => "the server could not answer".into(),
        }
    }
}

/// A read or write result with the resource's ETag, when it has one.
pub struct Got<T> {
    pub value: T,
    pub etag: Option<String>,
}

/// The API as one signed-in person (or nobody, for the token endpoint) sees it.
#[derive(Clone)]
pub struct Api {
    router: Router,
    token: Option<String>,
    addr: Option<ClientAddr>,
    request_id: Option<HeaderValue>,
}

impl Api {
    pub fn new(
        router: Router,
        token: Option<String>,
        addr: Option<ClientAddr>,
        request_id: Option<HeaderValue>,
    ) -> Api {
        Api {
            router,
            token,
            addr,
            request_id,
        }
    }

    /// The same API with another token (the portal's office token).
    pub fn with_token(&self, token: String) -> Api {
        Api {
            token: Some(token),
            ..self.clone()
        }
    }

    /// The same API without the person's token (public endpoints that refuse credentials,
    /// such as discovery).
    pub fn anonymous(&self) -> Api {
        Api {
            token: None,
            ..self.clone()
        }
    }

    /// One request; the status, headers and body as the API answered.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        if_match: Option<&str>,
    ) -> Result<(StatusCode, axum::http::HeaderMap, Vec<u8>), Fail> {
        self.raw_with(method, path, content_type, body, if_match, &[])
            .await
    }

    /// [`Api::raw`] with further request headers (e.g. `Prefer`).
    pub async fn raw_with(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        if_match: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Result<(StatusCode, axum::http::HeaderMap, Vec<u8>), Fail> {
        let mut b = Request::builder().method(method).uri(path);
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        if let Some(t) = &self.token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(ct) = content_type {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        if let Some(m) = if_match {
            b = b.header(header::IF_MATCH, m);
        }
        if let Some(id) = &self.request_id {
            b = b.header("x-request-id", id.clone());
        }
        let mut req = b
            .body(Body::from(body))
            .map_err(|e| Fail::Broken(format!("request: {e}")))?;
        if let Some(a) = self.addr {
            req.extensions_mut().insert(a);
        }
        let res = match self.router.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let (parts, body) = res.into_parts();
        let bytes = http_body_util::Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| Fail::Broken(format!("body: {e}")))?
            .to_bytes()
            .to_vec();
        Ok((parts.status, parts.headers, bytes))
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        if_match: Option<&str>,
    ) -> Result<Got<T>, Fail> {
        let ct = body.as_ref().map(|_| "application/json");
        let (status, headers, bytes) = self
            .raw(method, path, ct, body.unwrap_or_default(), if_match)
            .await?;
        if status == StatusCode::UNAUTHORIZED {
            return Err(Fail::SignedOut);
        }
        if !status.is_success() {
            return Err(match serde_json::from_slice::<Problem>(&bytes) {
                Ok(p) => Fail::Problem(p),
                Err(_) => Fail::Broken(format!("{path}: status {status}")),
            });
        }
        let etag = headers
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = if bytes.is_empty() {
            b"null".to_vec()
        } else {
            bytes
        };
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| Fail::Broken(format!("{path}: unreadable answer: {e}")))?;
        Ok(Got { value, etag })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Got<T>, Fail> {
        self.json(Method::GET, path, None, None).await
    }

    /// A JSON write (`POST`, `PUT`, `PATCH`, `DELETE`); `if_match` for updates.
    pub async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &impl Serialize,
        if_match: Option<&str>,
    ) -> Result<Got<T>, Fail> {
        let body = serde_json::to_vec(body).map_err(|e| Fail::Broken(format!("encode: {e}")))?;
        self.json(method, path, Some(body), if_match).await
    }

    pub async fn delete(&self, path: &str) -> Result<(), Fail> {
        self.json::<serde_json::Value>(Method::DELETE, path, None, None)
            .await
            .map(|_| ())
    }
}

/// `path?k=v&…` with the pairs whose value is present, URL-encoded.
pub fn with_query(path: &str, pairs: &[(&str, Option<&str>)]) -> String {
    let present: Vec<(&str, &str)> = pairs
        .iter()
        .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| (*k, v)))
        .collect();
    if present.is_empty() {
        return path.to_string();
    }
    match serde_urlencoded::to_string(&present) {
        Ok(q) => format!("{path}?{q}"),
        Err(_) => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_skip_empty_values_and_encode() {
        assert_eq!(with_query("/p", &[("q", None), ("x", Some(""))]), "/p");
        assert_eq!(
            with_query("/p", &[("q", Some("a b&c")), ("unit", Some("u"))]),
            "/p?q=a+b%26c&unit=u"
        );
    }
}
