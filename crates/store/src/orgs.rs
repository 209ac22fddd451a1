//! Resolving an organisation from a URL segment (slug or id). Shared by every role: each role
//! owns its own tables, but all of them hang off an organisation and need its id and region
//! before they can scope a query.

use carebridge_domain::OrgId;
use uuid::Uuid;

use crate::{Exec, StoreError};

/// The organisation facts every role needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgRef {
    pub id: OrgId,
    pub slug: String,
    pub default_region: String,
    pub default_language: String,
}

/// Finds an organisation by id (when `key` parses as a UUID) or slug.
pub async fn resolve(x: &mut impl Exec, key: &str) -> Result<Option<OrgRef>, StoreError> {
    let row: Option<(Uuid, String, String, String)> = if let Ok(id) = Uuid::parse_str(key) {
        run!(x, c => sqlx::query_as("SELECT id, slug, default_region, default_language FROM organisations WHERE id = $1")
            .bind(id).fetch_optional(c).await)?
    } else {
        run!(x, c => sqlx::query_as("SELECT id, slug, default_region, default_language FROM organisations WHERE slug = $1")
            .bind(key).fetch_optional(c).await)?
    };
    Ok(
        row.map(|(id, slug, default_region, default_language)| OrgRef {
            id: OrgId(id),
            slug,
            default_region,
            default_language,
        }),
    )
}
