//! Responses with ETags: [`Tagged`] for reads and updates, [`Created`] for creates (201 with
//! `Location`, or the stored first response when an idempotent create is retried).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::idem::Outcome;

/// A JSON body with `ETag: "<version>"`.
pub struct Tagged<T>(pub T, pub i64);

fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

impl<T: Serialize> IntoResponse for Tagged<T> {
    fn into_response(self) -> Response {
        let mut r = axum::Json(self.0).into_response();
        r.headers_mut().insert(header::ETAG, etag(self.1));
        r
    }
}

/// A created resource: 201, `Location` (the collection path + id), `ETag` when versioned.
pub struct Created<T> {
    pub outcome: Outcome<T>,
    /// The collection URL; the resource's `id` is appended.
    pub collection: String,
}

fn json_field(v: &serde_json::Value, ptr: &str) -> Option<serde_json::Value> {
    v.pointer(ptr).cloned()
}

impl<T: Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        let (value, replayed) = match self.outcome {
            Outcome::Fresh(t) => (serde_json::to_value(t).unwrap_or_default(), false),
            Outcome::Replayed(s) => (serde_json::from_str(&s).unwrap_or_default(), true),
        };
        // The resource is either the body itself or its `key` (API keys wrap theirs).
        let id = json_field(&value, "/id").or_else(|| json_field(&value, "/key/id"));
        let version = json_field(&value, "/version").and_then(|v| v.as_i64());
        let mut r = (StatusCode::CREATED, axum::Json(value)).into_response();
        let location = id.as_ref().and_then(|v| v.as_str()).and_then(|id| {
            HeaderValue::from_str(&format!("{}/{}", self.collection.trim_end_matches('/'), id)).ok()
        });
        if let Some(loc) = location {
            r.headers_mut().insert(header::LOCATION, loc);
        }
        if let Some(v) = version {
            r.headers_mut().insert(header::ETAG, etag(v));
        }
        if replayed {
            r.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        r
    }
}
