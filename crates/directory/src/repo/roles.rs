//! Role assignments.

use carebridge_domain::time::from_millis;
use carebridge_domain::{OrgId, RoleAssignmentId};
use carebridge_proto::directory::RoleAssignment;
use carebridge_store::{Exec, StoreError, Tx, exec, run, sqlx};
use uuid::Uuid;

type RoleRow = (Uuid, Uuid, String, Option<Uuid>, i64);

fn role(r: RoleRow) -> RoleAssignment {
    RoleAssignment {
        id: r.0,
        person_id: r.1,
        role: r.2,
        unit_id: r.3,
        created_at: from_millis(r.4),
    }
}

pub async fn insert(tx: &mut Tx, org: OrgId, r: &RoleAssignment) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query("INSERT INTO role_assignments (id, org_id, person_id, role, unit_id, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(r.id).bind(org.0).bind(r.person_id).bind(&r.role).bind(r.unit_id).bind(r.created_at.as_millisecond())
        .execute(c).await)?;
    Ok(())
}

pub async fn get(
    x: &mut impl Exec,
    org: OrgId,
    id: RoleAssignmentId,
) -> Result<Option<RoleAssignment>, StoreError> {
    let r: Option<RoleRow> = run!(x, c => sqlx::query_as(
        "SELECT id, person_id, role, unit_id, created_at FROM role_assignments WHERE org_id = $1 AND id = $2")
        .bind(org.0).bind(id.0).fetch_optional(c).await)?;
    Ok(r.map(role))
}

/// Assignments of `person` (all of them) for duplicate checks.
pub async fn of_person(
    x: &mut impl Exec,
    org: OrgId,
    person: Uuid,
) -> Result<Vec<RoleAssignment>, StoreError> {
    let rows: Vec<RoleRow> = run!(x, c => sqlx::query_as(
        "SELECT id, person_id, role, unit_id, created_at FROM role_assignments WHERE org_id = $1 AND person_id = $2 ORDER BY id")
        .bind(org.0).bind(person).fetch_all(c).await)?;
    Ok(rows.into_iter().map(role).collect())
}

/// A page of assignments by id, optionally of one person and/or scoped to one unit.
pub async fn page(
    x: &mut impl Exec,
    org: OrgId,
    person: Option<Uuid>,
    unit: Option<Uuid>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<RoleAssignment>, StoreError> {
    let after = after.unwrap_or(Uuid::nil());
    let mut sql = String::from(
        "SELECT id, person_id, role, unit_id, created_at FROM role_assignments WHERE org_id = $1 AND id > $2",
    );
    let mut binds = Vec::new();
    for (col, v) in [("person_id", person), ("unit_id", unit)] {
        if let Some(v) = v {
            binds.push(v);
            sql.push_str(&format!(" AND {col} = ${}", binds.len() + 3));
        }
    }
    sql.push_str(" ORDER BY id LIMIT $3");
    let rows: Vec<RoleRow> = run!(x, c => {
        let mut q = sqlx::query_as(&sql).bind(org.0).bind(after).bind(limit);
        for b in &binds {
            q = q.bind(*b);
        }
        q.fetch_all(c).await
    })?;
    Ok(rows.into_iter().map(role).collect())
}

pub async fn delete(tx: &mut Tx, org: OrgId, id: RoleAssignmentId) -> Result<bool, StoreError> {
    let n = exec!(tx, c => sqlx::query("DELETE FROM role_assignments WHERE org_id = $1 AND id = $2").bind(org.0).bind(id.0).execute(c).await)?;
    Ok(n == 1)
}
