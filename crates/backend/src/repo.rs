//! SQL for organisations. Every function takes the executor it runs on.

use carebridge_domain::OrgId;
use carebridge_domain::time::from_millis;
use carebridge_proto::org::Org;
use carebridge_store::{Exec, StoreError, Tx, exec, run, sqlx};
use uuid::Uuid;

type OrgRow = (
    Uuid,
    String,
    String,
    String,
    String,
    Option<String>,
    bool,
    i64,
    i64,
    i64,
);

const COLS: &str = "id, slug, name, default_region, default_language, contact_email, discoverable, version, created_at, updated_at";

fn org(r: OrgRow) -> Org {
    Org {
        id: r.0,
        slug: r.1,
        name: r.2,
        default_region: r.3,
        default_language: r.4,
        contact_email: r.5,
        discoverable: r.6,
        version: r.7,
        created_at: from_millis(r.8),
        updated_at: from_millis(r.9),
    }
}

pub async fn insert(tx: &mut Tx, o: &Org) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query(
        "INSERT INTO organisations (id, slug, name, default_region, default_language, contact_email, discoverable, version, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
        .bind(o.id).bind(&o.slug).bind(&o.name).bind(&o.default_region).bind(&o.default_language)
        .bind(&o.contact_email).bind(o.discoverable).bind(o.version)
        .bind(o.created_at.as_millisecond()).bind(o.updated_at.as_millisecond())
        .execute(c).await)?;
    Ok(())
}

pub async fn get(x: &mut impl Exec, id: OrgId) -> Result<Option<Org>, StoreError> {
    let sql = format!("SELECT {COLS} FROM organisations WHERE id = $1");
    let r: Option<OrgRow> = run!(x, c => sqlx::query_as(&sql).bind(id.0).fetch_optional(c).await)?;
    Ok(r.map(org))
}

pub async fn slug_taken(x: &mut impl Exec, slug: &str) -> Result<bool, StoreError> {
    let n: i64 = run!(x, c => sqlx::query_scalar("SELECT COUNT(*) FROM organisations WHERE slug = $1").bind(slug).fetch_one(c).await)?;
    Ok(n > 0)
}

pub async fn count(x: &mut impl Exec) -> Result<i64, StoreError> {
    Ok(run!(x, c => sqlx::query_scalar("SELECT COUNT(*) FROM organisations").fetch_one(c).await)?)
}

/// All organisations after `after` (by slug), at most `limit`.
pub async fn page(
    x: &mut impl Exec,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Org>, StoreError> {
    let sql = format!("SELECT {COLS} FROM organisations WHERE slug > $1 ORDER BY slug LIMIT $2");
    let rows: Vec<OrgRow> = run!(x, c => sqlx::query_as(&sql).bind(after.unwrap_or("")).bind(limit).fetch_all(c).await)?;
    Ok(rows.into_iter().map(org).collect())
}

/// Writes the changed fields if `expected_version` is current; returns false on a version race.
pub async fn update(tx: &mut Tx, o: &Org, expected_version: i64) -> Result<bool, StoreError> {
    let n = exec!(tx, c => sqlx::query(
        "UPDATE organisations SET name = $3, default_region = $4, default_language = $5, contact_email = $6, \
         discoverable = $7, version = $8, updated_at = $9 WHERE id = $1 AND version = $2")
        .bind(o.id).bind(expected_version).bind(&o.name).bind(&o.default_region).bind(&o.default_language)
        .bind(&o.contact_email).bind(o.discoverable).bind(o.version).bind(o.updated_at.as_millisecond())
        .execute(c).await)?;
    Ok(n == 1)
}
