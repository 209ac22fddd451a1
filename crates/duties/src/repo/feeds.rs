//! Personal calendar feeds: a secret URL per feed, stored as a SHA-256 digest.

use carebridge_domain::OrgId;
use carebridge_domain::time::from_millis;
use carebridge_proto::duties::CalendarFeed;
use carebridge_store::{Exec, StoreError, Tx, exec, run, sqlx};
use uuid::Uuid;

type Row = (Uuid, i64, Option<i64>, Option<i64>);

fn feed(r: Row) -> CalendarFeed {
    CalendarFeed {
        id: r.0,
        created_at: from_millis(r.1),
        revoked_at: r.2.map(from_millis),
        last_used_at: r.3.map(from_millis),
    }
}

pub async fn insert(
    tx: &mut Tx,
    org: OrgId,
    person: Uuid,
    id: Uuid,
    digest: &[u8],
    now_ms: i64,
) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query(
        "INSERT INTO calendar_feeds (id, org_id, person_id, secret_digest, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(id).bind(org.0).bind(person).bind(digest).bind(now_ms).execute(c).await)?;
    Ok(())
}

pub async fn of_person(
    x: &mut impl Exec,
    org: OrgId,
    person: Uuid,
) -> Result<Vec<CalendarFeed>, StoreError> {
    let rows: Vec<Row> = run!(x, c => sqlx::query_as(
        "SELECT id, created_at, revoked_at, last_used_at FROM calendar_feeds WHERE org_id = $1 AND person_id = $2 ORDER BY id")
        .bind(org.0).bind(person).fetch_all(c).await)?;
    Ok(rows.into_iter().map(feed).collect())
}

pub async fn revoke(
    tx: &mut Tx,
    org: OrgId,
    person: Uuid,
    id: Uuid,
    now_ms: i64,
) -> Result<Option<CalendarFeed>, StoreError> {
    exec!(tx, c => sqlx::query("UPDATE calendar_feeds SET revoked_at = $4 WHERE org_id = $1 AND person_id = $2 AND id = $3 AND revoked_at IS NULL")
        .bind(org.0).bind(person).bind(id).bind(now_ms).execute(c).await)?;
    let r: Option<Row> = run!(tx, c => sqlx::query_as(
        "SELECT id, created_at, revoked_at, last_used_at FROM calendar_feeds WHERE org_id = $1 AND person_id = $2 AND id = $3")
        .bind(org.0).bind(person).bind(id).fetch_optional(c).await)?;
    Ok(r.map(feed))
}

/// A live feed by id: `(org, person, digest, last_used_at)`.
pub async fn lookup(
    x: &mut impl Exec,
    id: Uuid,
) -> Result<Option<(Uuid, Uuid, Vec<u8>, Option<i64>)>, StoreError> {
    Ok(run!(x, c => sqlx::query_as(
        "SELECT org_id, person_id, secret_digest, last_used_at FROM calendar_feeds WHERE id = $1 AND revoked_at IS NULL")
        .bind(id).fetch_optional(c).await)?)
}

pub async fn touch(tx: &mut Tx, id: Uuid, now_ms: i64) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query("UPDATE calendar_feeds SET last_used_at = $2 WHERE id = $1").bind(id).bind(now_ms).execute(c).await)?;
    Ok(())
}
