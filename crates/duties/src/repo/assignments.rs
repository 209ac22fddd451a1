//! Assignments: a person on a duty (confirmed), asking to be (requested) or declined.

use carebridge_domain::OrgId;
use carebridge_domain::time::from_millis;
use carebridge_proto::duties::{Assignment, RosterLine};
use carebridge_store::{Exec, StoreError, Tx, exec, run, sqlx};
use uuid::Uuid;

type Row = (
    Uuid,
    Uuid,
    Uuid,
    Option<Uuid>,
    String,
    String,
    bool,
    Option<String>,
    i64,
    i64,
    i64,
);

pub(crate) const COLS: &str = "a.id, a.duty_id, a.person_id, a.position_id, a.role, a.status, a.qualification_override, a.note, a.version, a.created_at, a.updated_at";

pub(crate) fn assignment(r: Row) -> Assignment {
    Assignment {
        id: r.0,
        duty_id: r.1,
        person_id: r.2,
        position_id: r.3,
        role: r.4,
        status: r.5,
        qualification_override: r.6,
        note: r.7,
        version: r.8,
        created_at: from_millis(r.9),
        updated_at: from_millis(r.10),
    }
}

pub async fn insert(
    tx: &mut Tx,
    org: OrgId,
    a: &Assignment,
    starts_ms: i64,
) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query(
        "INSERT INTO assignments (id, org_id, duty_id, person_id, position_id, role, status, qualification_override, note, starts_at, version, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)")
        .bind(a.id).bind(org.0).bind(a.duty_id).bind(a.person_id).bind(a.position_id).bind(&a.role)
        .bind(&a.status).bind(a.qualification_override).bind(&a.note).bind(starts_ms).bind(a.version)
        .bind(a.created_at.as_millisecond()).bind(a.updated_at.as_millisecond()).execute(c).await)?;
    Ok(())
}

/// Writes role, position, status, override and note if the version is still `if_version`.
pub async fn update(
    tx: &mut Tx,
    org: OrgId,
    a: &Assignment,
    if_version: i64,
) -> Result<bool, StoreError> {
    let n = exec!(tx, c => sqlx::query(
        "UPDATE assignments SET position_id = $3, role = $4, status = $5, qualification_override = $6, note = $7, version = $8, updated_at = $9 \
         WHERE org_id = $1 AND id = $2 AND version = $10")
        .bind(org.0).bind(a.id).bind(a.position_id).bind(&a.role).bind(&a.status).bind(a.qualification_override)
        .bind(&a.note).bind(a.version).bind(a.updated_at.as_millisecond()).bind(if_version).execute(c).await)?;
    Ok(n == 1)
}

pub async fn delete(tx: &mut Tx, org: OrgId, id: Uuid) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query("DELETE FROM assignments WHERE org_id = $1 AND id = $2").bind(org.0).bind(id).execute(c).await)?;
    Ok(())
}

pub async fn get(
    x: &mut impl Exec,
    org: OrgId,
    duty: Uuid,
    id: Uuid,
) -> Result<Option<Assignment>, StoreError> {
    let sql = format!(
        "SELECT {COLS} FROM assignments a WHERE a.org_id = $1 AND a.duty_id = $2 AND a.id = $3"
    );
    let r: Option<Row> =
        run!(x, c => sqlx::query_as(&sql).bind(org.0).bind(duty).bind(id).fetch_optional(c).await)?;
    Ok(r.map(assignment))
}

/// The assignment of `person` on `duty`, whatever its status.
pub async fn of_person(
    x: &mut impl Exec,
    org: OrgId,
    duty: Uuid,
    person: Uuid,
) -> Result<Option<Assignment>, StoreError> {
    let sql = format!(
        "SELECT {COLS} FROM assignments a WHERE a.org_id = $1 AND a.duty_id = $2 AND a.person_id = $3"
    );
    let r: Option<Row> = run!(x, c => sqlx::query_as(&sql).bind(org.0).bind(duty).bind(person).fetch_optional(c).await)?;
    Ok(r.map(assignment))
}

/// A duty's assignments after `after` (by id).
pub async fn page(
    x: &mut impl Exec,
    org: OrgId,
    duty: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Assignment>, StoreError> {
    let sql = format!(
        "SELECT {COLS} FROM assignments a WHERE a.org_id = $1 AND a.duty_id = $2 AND a.id > $3 ORDER BY a.id LIMIT $4"
    );
    let rows: Vec<Row> = run!(x, c => sqlx::query_as(&sql).bind(org.0).bind(duty).bind(after.unwrap_or(Uuid::nil())).bind(limit).fetch_all(c).await)?;
    Ok(rows.into_iter().map(assignment).collect())
}

/// The roster (confirmed assignments) of a duty, by person id.
pub async fn roster(
    x: &mut impl Exec,
    org: OrgId,
    duty: Uuid,
) -> Result<Vec<RosterLine>, StoreError> {
    let rows: Vec<(Uuid, String, Option<Uuid>)> = run!(x, c => sqlx::query_as(
        "SELECT person_id, role, position_id FROM assignments WHERE org_id = $1 AND duty_id = $2 AND status = 'confirmed' ORDER BY person_id")
        .bind(org.0).bind(duty).fetch_all(c).await)?;
    Ok(rows
        .into_iter()
        .map(|(person_id, role, position_id)| RosterLine {
            person_id,
            role,
            position_id,
        })
        .collect())
}

/// A person's assignments on duties that end after `from` and start before `to`, after
/// `(starts_at, duty id)`, in start order.
pub async fn of_person_between(
    x: &mut impl Exec,
    org: OrgId,
    person: Uuid,
    from_ms: i64,
    to_ms: i64,
    status: Option<&str>,
    after: Option<(i64, Uuid)>,
    limit: i64,
) -> Result<Vec<(i64, Assignment)>, StoreError> {
    let (a_ms, a_id) = after.unwrap_or((i64::MIN, Uuid::nil()));
    // No duty is longer than the organisation's span: a bounded range on the person's start index.
    let span = super::duties::SPAN;
    let mut sql = format!(
        "SELECT a.starts_at, {COLS} FROM assignments a JOIN duties d ON d.id = a.duty_id \
         WHERE a.org_id = $1 AND a.person_id = $2 AND a.starts_at >= $3 - {span} AND a.starts_at < $4 AND d.org_id = $1 AND d.ends_at > $8 \
         AND (a.starts_at > $5 OR (a.starts_at = $5 AND a.duty_id > $6))"
    );
    if status.is_some() {
        sql += " AND a.status = $9";
    }
    sql += " ORDER BY a.starts_at, a.duty_id LIMIT $7";
    type R = (
        i64,
        Uuid,
        Uuid,
        Uuid,
        Option<Uuid>,
        String,
        String,
        bool,
        Option<String>,
        i64,
        i64,
        i64,
    );
    let rows: Vec<R> = run!(x, c => {
        let mut q = sqlx::query_as(&sql).bind(org.0).bind(person).bind(from_ms).bind(to_ms).bind(a_ms).bind(a_id).bind(limit).bind(from_ms);
        if let Some(s) = status {
            q = q.bind(s.to_string());
        }
        q.fetch_all(c).await
    })?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.0,
                assignment((r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8, r.9, r.10, r.11)),
            )
        })
        .collect())
}
