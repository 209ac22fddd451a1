//! Wire types of the Carebridge API, shared by the server and the client SDK.
//!
//! API boundary: these types *are* the JSON format. Request types reject unknown fields.
//! Invariant: this crate depends on neither sqlx nor axum (CI checks with `cargo tree -i`).

pub mod audit;
pub mod chat;
pub mod directory;
pub mod duties;
pub mod identity;
pub mod org;
pub mod outbox;
pub mod portal;
pub mod problem;

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

pub use jiff::Timestamp;

/// A page of results with the cursor for the next page (absent on the last page).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Opaque; pass as `cursor` to get the next page. Absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `?limit=&cursor=` on every list endpoint.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// For PATCH bodies: distinguishes an absent field (`None`, keep) from an explicit `null`
/// (`Some(None)`, clear).
pub fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}
