//! RFC 9457 problem documents: every error the API returns.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An error, as `application/problem+json`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// Stable machine code as a URI, e.g. `https://carebridge.dev/problems/validation`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The stable code alone (last segment of `type`), e.g. `validation`.
    pub code: String,
    /// The request id (also in the `x-request-id` response header); quote it to support.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// For validation errors: each failing place.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// One failing place in a request.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    /// JSON pointer (RFC 6901) into the request body, or `/query/<name>`, `/path/<name>`,
    /// `/header/<name>` for other parts of the request.
    pub pointer: String,
    pub code: String,
    pub detail: String,
}
