//! Extractors whose every rejection is a problem document naming the failing place.

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use bytes::Bytes;
use carebridge_domain::auth::Principal;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// A JSON body: `Content-Type: application/json` required, size limited by the router's body
/// limit, unknown fields rejected by the target type, errors point at the failing field.
/// Also keeps the SHA-256 of the raw body (for idempotency keys).
#[derive(Debug, Clone)]
pub struct Json<T> {
    pub value: T,
    pub digest: String,
}

fn json_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        out.push('/');
        match seg {
            Segment::Seq { index } => out.push_str(&index.to_string()),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                out.push_str(&key.replace('~', "~0").replace('/', "~1"))
            }
            Segment::Unknown => out.push('?'),
        }
    }
    out
}

/// Deserializes JSON and names the failing place as a JSON pointer.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let pointer = json_pointer(e.path());
        let inner = e.into_inner();
        let code = if inner.is_syntax() || inner.is_eof() {
            "malformed_json"
        } else {
            "invalid_json_value"
        };
        // serde's message names the field for unknown/missing fields; drop its line/column noise.
        let msg = inner.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        ApiError::BadRequest {
            code,
            detail: msg,
            pointer: Some(pointer),
        }
    })
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if mime != "application/json"
            && !(mime.starts_with("application/") && mime.ends_with("+json"))
        {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| match e {
            BytesRejection::FailedToBufferBody(f) => {
                let text = f.body_text();
                if text.contains("length limit") {
                    ApiError::PayloadTooLarge {
                        limit: crate::extract::BODY_LIMIT,
                    }
                } else {
                    ApiError::bad_request("unreadable_body", "the request body could not be read")
                }
            }
            _ => ApiError::bad_request("unreadable_body", "the request body could not be read"),
        })?;
        let value = parse_json(&bytes)?;
        Ok(Json {
            value,
            digest: hex::encode(Sha256::digest(&bytes)),
        })
    }
}

/// The body size limit of the API (bytes); larger bodies get 413.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Path parameters; a malformed id is a 400 naming the parameter.
#[derive(Debug, Clone)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                use axum::extract::path::ErrorKind;
                let (pointer, detail) = match e.kind() {
                    ErrorKind::ParseErrorAtKey {
                        key,
                        value,
                        expected_type,
                    } => (
                        format!("/path/{key}"),
                        format!(
                            "'{value}' is not a valid {}",
                            if expected_type.contains("Uuid") {
                                "id (UUID)"
                            } else {
                                expected_type
                            }
                        ),
                    ),
                    ErrorKind::ParseErrorAtIndex { index, value, .. } => {
                        (format!("/path/{index}"), format!("'{value}' is malformed"))
                    }
                    other => {
                        let msg = other.to_string();
                        // axum names the parameter in backticks: "Cannot parse `person` with value …".
                        let name = msg.split('`').nth(1).unwrap_or("").to_string();
                        (
                            if name.is_empty() {
                                "/path".to_string()
                            } else {
                                format!("/path/{name}")
                            },
                            msg,
                        )
                    }
                };
                Err(ApiError::BadRequest {
                    code: "invalid_path_parameter",
                    detail,
                    pointer: Some(pointer),
                })
            }
            Err(e) => Err(ApiError::Internal(e.body_text())),
        }
    }
}

/// Query parameters; unknown or malformed parameters are a 400.
#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|e| {
                let pointer = format!("/query{}", json_pointer(e.path()));
                let msg = e.into_inner().to_string();
                ApiError::BadRequest {
                    code: "invalid_query",
                    detail: msg,
                    pointer: Some(pointer),
                }
            })
    }
}

/// `If-Match: "<version>"`, required on updates (428 when absent, 400 when malformed).
#[derive(Debug, Clone, Copy)]
pub struct IfMatch(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(v) = parts.headers.get(header::IF_MATCH) else {
            return Err(ApiError::PreconditionRequired);
        };
        let s = v.to_str().unwrap_or("").trim();
        let s = s.strip_prefix("W/").unwrap_or(s);
        s.strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .and_then(|s| s.parse::<i64>().ok())
            .map(IfMatch)
            .ok_or_else(|| {
                ApiError::bad_request_at(
                    "invalid_if_match",
                    "If-Match must be an ETag this API returned, e.g. \"3\"",
                    "/header/if-match",
                )
            })
    }
}

/// `Idempotency-Key` on creates (optional): 1–255 visible ASCII characters.
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.headers.get("idempotency-key") {
            None => Ok(IdempotencyKey(None)),
            Some(v) => {
                let s = v.to_str().unwrap_or("");
                if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| b.is_ascii_graphic()) {
                    Err(ApiError::bad_request_at(
                        "invalid_idempotency_key",
                        "Idempotency-Key must be 1 to 255 visible ASCII characters",
                        "/header/idempotency-key",
                    ))
                } else {
                    Ok(IdempotencyKey(Some(s.to_string())))
                }
            }
        }
    }
}

/// The authenticated caller, put into the request by the server's authentication middleware.
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Auth)
            .ok_or_else(|| ApiError::Unauthorized {
                detail: "send an API key as Authorization: Bearer <key>".into(),
            })
    }
}

/// `If-Match` where it is optional (deletes): checked when present.
#[derive(Debug, Clone, Copy)]
pub struct IfMatchOpt(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatchOpt {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if parts.headers.contains_key(header::IF_MATCH) {
            IfMatch::from_request_parts(parts, state)
                .await
                .map(|m| IfMatchOpt(Some(m.0)))
        } else {
            Ok(IfMatchOpt(None))
        }
    }
}
