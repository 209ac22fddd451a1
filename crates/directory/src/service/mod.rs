//! Directory rules: every path (API, CLI, set-up, demo, later import and SCIM) calls these
//! functions, so validation and audit are the same whatever the source.

pub mod people;
pub mod roles;
pub mod units;

use carebridge_proto::Page;
use carebridge_web::CursorKey;
use serde::Serialize;

/// Cuts a fetched `limit + 1` rows to a page and builds the cursor from the last row kept.
pub(crate) fn paginate<T, K: Serialize>(
    mut items: Vec<T>,
    limit: i64,
    cursor: &CursorKey,
    kind: &str,
    key: impl Fn(&T) -> K,
) -> Page<T> {
    let more = items.len() as i64 > limit;
    if more {
        items.truncate(usize::try_from(limit).unwrap_or(0));
    }
    let next_cursor = if more {
        items.last().map(|t| cursor.encode(kind, &key(t)))
    } else {
        None
    };
    Page { items, next_cursor }
}
