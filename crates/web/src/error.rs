//! Service errors and their problem documents.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use carebridge_domain::Violations;
use carebridge_proto::problem::{FieldError, Problem};
use carebridge_store::StoreError;

tokio::task_local! {
    /// The current request's id, set by the server's request-id middleware so that problem
    /// documents and error logs can name it.
    pub static REQUEST_ID: String;
}

/// What a role's service layer can fail with. No HTTP here; [`ApiError`] maps it.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The target does not exist *for this caller* (also used for other organisations' ids, so
    /// that existence never leaks across tenants).
    #[error("{what} not found")]
    NotFound { what: &'static str },
    /// The caller is known but lacks the permission.
    #[error("forbidden: {detail}")]
    Forbidden { detail: String },
    /// The input breaks a rule; each violation names its place.
    #[error("invalid input: {0}")]
    Invalid(Violations),
    /// The change conflicts with the current state (e.g. deleting a unit that is not empty).
    #[error("{code}: {detail}")]
    Conflict { code: &'static str, detail: String },
    /// `If-Match` named another version than the current one.
    #[error("version mismatch: current version is {current}")]
    VersionMismatch { current: i64 },
    /// An `Idempotency-Key` was reused with a different request.
    #[error("idempotency key reused with a different request")]
    IdempotencyMismatch,
    /// A pagination cursor that this listing did not return (tampered, foreign or stale).
    #[error("invalid cursor")]
    BadCursor,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Violations> for ServiceError {
    fn from(v: Violations) -> Self {
        ServiceError::Invalid(v)
    }
}

/// An HTTP error, rendered as `application/problem+json`.
#[derive(Debug)]
pub enum ApiError {
    Service(ServiceError),
    /// No or bad credentials.
    Unauthorized {
        detail: String,
    },
    /// The request itself is malformed (syntax, types, headers); `pointer` names the place.
    BadRequest {
        code: &'static str,
        detail: String,
        pointer: Option<String>,
    },
    /// `If-Match` is required on updates.
    PreconditionRequired,
    PayloadTooLarge {
        limit: usize,
    },
    UnsupportedMediaType,
    /// No such route.
    RouteNotFound,
    MethodNotAllowed,
    /// A service this one depends on is not reachable (e.g. the identity provider whose keys
    /// the portal needs); the detail says which.
    Unavailable {
        code: &'static str,
        detail: String,
    },
    /// Unexpected failure; the cause is logged, never shown.
    Internal(String),
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError::Service(e)
    }
}

impl From<carebridge_store::sqlx::Error> for ApiError {
    fn from(e: carebridge_store::sqlx::Error) -> Self {
        ApiError::Service(ServiceError::Store(e.into()))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Service(ServiceError::Store(e))
    }
}

impl ApiError {
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            detail: detail.into(),
            pointer: None,
        }
    }

    pub fn bad_request_at(
        code: &'static str,
        detail: impl Into<String>,
        pointer: impl Into<String>,
    ) -> Self {
        ApiError::BadRequest {
            code,
            detail: detail.into(),
            pointer: Some(pointer.into()),
        }
    }

    /// Status, stable code, title, detail and field errors.
    fn parts(
        &self,
    ) -> (
        StatusCode,
        &'static str,
        &'static str,
        Option<String>,
        Vec<FieldError>,
    ) {
        use ServiceError as S;
        match self {
            ApiError::Service(S::NotFound { what }) => (
                StatusCode::NOT_FOUND,
                "not_found",
                "Not found",
                Some(format!("{what} not found")),
                vec![],
            ),
            ApiError::Service(S::Forbidden { detail }) => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "Forbidden",
                Some(detail.clone()),
                vec![],
            ),
            ApiError::Service(S::Invalid(v)) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "The request has invalid values",
                Some(v.to_string()),
                v.0.iter()
                    .map(|x| FieldError {
                        pointer: x.pointer.clone(),
                        code: x.code.to_string(),
                        detail: x.message.clone(),
                    })
                    .collect(),
            ),
            ApiError::Service(S::Conflict { code, detail }) => (
                StatusCode::CONFLICT,
                code,
                "Conflict",
                Some(detail.clone()),
                vec![],
            ),
            ApiError::Service(S::VersionMismatch { current }) => (
                StatusCode::PRECONDITION_FAILED,
                "version_mismatch",
                "The resource has changed",
                Some(format!(
                    "If-Match does not name the current version (\"{current}\"); read it again and retry"
                )),
                vec![],
            ),
            ApiError::Service(S::IdempotencyMismatch) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "Idempotency-Key reused",
                Some("this Idempotency-Key was used for a different request".into()),
                vec![FieldError {
                    pointer: "/header/idempotency-key".into(),
                    code: "idempotency_key_reused".into(),
                    detail: "use a new key for a new request".into(),
                }],
            ),
            ApiError::Service(S::BadCursor) => (
                StatusCode::BAD_REQUEST,
                "invalid_cursor",
                "Bad request",
                Some("the cursor is not one this listing returned".into()),
                vec![FieldError {
                    pointer: "/query/cursor".into(),
                    code: "invalid_cursor".into(),
                    detail: "pass the next_cursor of the previous page unchanged".into(),
                }],
            ),
            ApiError::Service(S::Store(StoreError::Unique { .. })) => (
                StatusCode::CONFLICT,
                "already_exists",
                "Conflict",
                Some("a resource with the same unique value already exists".into()),
                vec![],
            ),
            ApiError::Service(S::Store(StoreError::ForeignKey { .. })) => (
                StatusCode::CONFLICT,
                "still_referenced",
                "Conflict",
                Some("the change would break a reference between resources".into()),
                vec![],
            ),
            ApiError::Service(S::Store(StoreError::Unavailable(_))) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                Some("the database is not reachable; try again later".into()),
                vec![],
            ),
            ApiError::Service(S::Store(
                StoreError::Query(_) | StoreError::Migrate(_) | StoreError::Corrupt(_),
            ))
            | ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                None,
                vec![],
            ),
            ApiError::Unauthorized { detail } => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Authentication required",
                Some(detail.clone()),
                vec![],
            ),
            ApiError::BadRequest {
                code,
                detail,
                pointer,
            } => (
                StatusCode::BAD_REQUEST,
                code,
                "Bad request",
                Some(detail.clone()),
                pointer
                    .iter()
                    .map(|p| FieldError {
                        pointer: p.clone(),
                        code: code.to_string(),
                        detail: detail.clone(),
                    })
                    .collect(),
            ),
            ApiError::PreconditionRequired => (
                StatusCode::PRECONDITION_REQUIRED,
                "if_match_required",
                "If-Match required",
                Some(
                    "updates need an If-Match header with the ETag of the version you read".into(),
                ),
                vec![],
            ),
            ApiError::PayloadTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Request body too large",
                Some(format!("the body exceeds {limit} bytes")),
                vec![],
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
                Some("send the body as Content-Type: application/json".into()),
                vec![],
            ),
            ApiError::RouteNotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "Not found",
                Some("no such route".into()),
                vec![],
            ),
            ApiError::Unavailable { code, detail } => (
                StatusCode::SERVICE_UNAVAILABLE,
                code,
                "Service unavailable",
                Some(detail.clone()),
                vec![],
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
                None,
                vec![],
            ),
        }
    }

    /// The stable code of this error (for logs and tests).
    pub fn code(&self) -> &'static str {
        self.parts().1
    }
}

/// Base of every problem `type` URI.
pub const PROBLEM_BASE: &str = "https://carebridge.dev/problems/";

impl ApiError {
    /// The problem document of this error, as a response would carry it (without a request
    /// id): for work that answers later, such as import jobs.
    pub fn problem(&self) -> Problem {
        let (status, code, title, detail, errors) = self.parts();
        Problem {
            kind: format!("{PROBLEM_BASE}{code}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail,
            code: code.to_string(),
            request_id: None,
            errors,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, title, detail, errors) = self.parts();
        let request_id = REQUEST_ID.try_with(Clone::clone).ok();
        if status.is_server_error() {
            // The real cause goes to the log with the request id; the caller sees nothing of it.
            let cause = match &self {
                ApiError::Service(e) => e.to_string(),
                ApiError::Internal(s) => s.clone(),
                ApiError::Unavailable { detail, .. } => detail.clone(),
                _ => String::new(),
            };
            tracing::error!(request_id = request_id.as_deref().unwrap_or("-"), code, error = %cause, "request failed");
        }
        let body = Problem {
            kind: format!("{PROBLEM_BASE}{code}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail,
            code: code.to_string(),
            request_id,
            errors,
        };
        let mut res = (status, axum::Json(body)).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if matches!(self, ApiError::Unavailable { .. }) {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
        }
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

impl From<carebridge_store::sqlx::Error> for ServiceError {
    fn from(e: carebridge_store::sqlx::Error) -> Self {
        ServiceError::Store(StoreError::from(e))
    }
}
