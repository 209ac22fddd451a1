//! Units: a tree stored as materialised paths.

use carebridge_domain::time::from_millis;
use carebridge_domain::{OrgId, UnitId};
use carebridge_proto::directory::Unit;
use carebridge_store::{Exec, StoreError, Tx, exec, run, sqlx};
use uuid::Uuid;

type UnitRow = (Uuid, Option<Uuid>, String, String, i64, i64, i64);

const COLS: &str = "id, parent_id, name, path, version, created_at, updated_at";

/// A unit with its stored path string.
#[derive(Clone, Debug)]
pub struct StoredUnit {
    pub unit: Unit,
    pub path: String,
}

fn unit(r: UnitRow) -> StoredUnit {
    let ids =
        r.3.split('/')
            .filter(|s| !s.is_empty())
            .filter_map(|s| Uuid::parse_str(s).ok())
            .collect();
    StoredUnit {
        unit: Unit {
            id: r.0,
            parent_id: r.1,
            name: r.2,
            path: ids,
            version: r.4,
            created_at: from_millis(r.5),
            updated_at: from_millis(r.6),
        },
        path: r.3,
    }
}

pub async fn insert(tx: &mut Tx, org: OrgId, u: &Unit, path: &str) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query(
        "INSERT INTO units (id, org_id, parent_id, name, path, version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(u.id).bind(org.0).bind(u.parent_id).bind(&u.name).bind(path).bind(u.version)
        .bind(u.created_at.as_millisecond()).bind(u.updated_at.as_millisecond()).execute(c).await)?;
    Ok(())
}

pub async fn get(
    x: &mut impl Exec,
    org: OrgId,
    id: UnitId,
) -> Result<Option<StoredUnit>, StoreError> {
    let sql = format!("SELECT {COLS} FROM units WHERE org_id = $1 AND id = $2");
    let r: Option<UnitRow> =
        run!(x, c => sqlx::query_as(&sql).bind(org.0).bind(id.0).fetch_optional(c).await)?;
    Ok(r.map(unit))
}

/// Units in tree order (by path), after `after`, at most `limit`.
pub async fn page(
    x: &mut impl Exec,
    org: OrgId,
    after: &str,
    limit: i64,
) -> Result<Vec<StoredUnit>, StoreError> {
    let sql =
        format!("SELECT {COLS} FROM units WHERE org_id = $1 AND path > $2 ORDER BY path LIMIT $3");
    let rows: Vec<UnitRow> =
        run!(x, c => sqlx::query_as(&sql).bind(org.0).bind(after).bind(limit).fetch_all(c).await)?;
    Ok(rows.into_iter().map(unit).collect())
}

/// Names of the children of `parent` (or of the roots).
pub async fn sibling_names(
    x: &mut impl Exec,
    org: OrgId,
    parent: Option<UnitId>,
) -> Result<Vec<(Uuid, String)>, StoreError> {
    Ok(match parent {
        Some(p) => {
            run!(x, c => sqlx::query_as("SELECT id, name FROM units WHERE org_id = $1 AND parent_id = $2")
            .bind(org.0).bind(p.0).fetch_all(c).await)?
        }
        None => {
            run!(x, c => sqlx::query_as("SELECT id, name FROM units WHERE org_id = $1 AND parent_id IS NULL")
            .bind(org.0).fetch_all(c).await)?
        }
    })
}

/// Paths of the unit at `path` and everything below it.
pub async fn subtree_paths(
    x: &mut impl Exec,
    org: OrgId,
    path: &str,
) -> Result<Vec<String>, StoreError> {
    Ok(
        run!(x, c => sqlx::query_scalar("SELECT path FROM units WHERE org_id = $1 AND path LIKE $2")
        .bind(org.0).bind(format!("{path}%")).fetch_all(c).await)?,
    )
}

/// Renames and/or re-parents a unit (version-checked), rewriting the paths of its subtree.
pub async fn update(
    tx: &mut Tx,
    org: OrgId,
    u: &Unit,
    expected_version: i64,
    old_path: &str,
    new_path: &str,
) -> Result<bool, StoreError> {
    let n = exec!(tx, c => sqlx::query(
        "UPDATE units SET name = $4, parent_id = $5, version = $6, updated_at = $7 WHERE org_id = $1 AND id = $2 AND version = $3")
        .bind(org.0).bind(u.id).bind(expected_version).bind(&u.name).bind(u.parent_id).bind(u.version)
        .bind(u.updated_at.as_millisecond()).execute(c).await)?;
    if n != 1 {
        return Ok(false);
    }
    if old_path != new_path {
        let old_len = i64::try_from(old_path.len()).unwrap_or(i64::MAX);
        exec!(tx, c => sqlx::query(
            "UPDATE units SET path = $2 || substr(path, CAST($3 AS INTEGER)) WHERE org_id = $1 AND path LIKE $4")
            .bind(org.0).bind(new_path).bind(old_len + 1).bind(format!("{old_path}%")).execute(c).await)?;
    }
    Ok(true)
}

/// What still hangs on a unit: (child units, people, role assignments).
pub async fn usage(
    x: &mut impl Exec,
    org: OrgId,
    id: UnitId,
) -> Result<(i64, i64, i64, i64), StoreError> {
    let children: i64 = run!(x, c => sqlx::query_scalar("SELECT COUNT(*) FROM units WHERE org_id = $1 AND parent_id = $2")
        .bind(org.0).bind(id.0).fetch_one(c).await)?;
    let people: i64 = run!(x, c => sqlx::query_scalar("SELECT COUNT(*) FROM person_units WHERE org_id = $1 AND unit_id = $2")
        .bind(org.0).bind(id.0).fetch_one(c).await)?;
    let roles: i64 = run!(x, c => sqlx::query_scalar("SELECT COUNT(*) FROM role_assignments WHERE org_id = $1 AND unit_id = $2")
        .bind(org.0).bind(id.0).fetch_one(c).await)?;
    let duties: i64 = run!(x, c => sqlx::query_scalar("SELECT COUNT(*) FROM duties WHERE org_id = $1 AND unit_id = $2")
        .bind(org.0).bind(id.0).fetch_one(c).await)?;
    Ok((children, people, roles, duties))
}

pub async fn delete(tx: &mut Tx, org: OrgId, id: UnitId) -> Result<bool, StoreError> {
    let n = exec!(tx, c => sqlx::query("DELETE FROM units WHERE org_id = $1 AND id = $2").bind(org.0).bind(id.0).execute(c).await)?;
    Ok(n == 1)
}

/// Which of `ids` are units of `org`.
pub async fn existing(
    x: &mut impl Exec,
    org: OrgId,
    ids: &[Uuid],
) -> Result<Vec<Uuid>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT id FROM units WHERE org_id = $1 AND id IN ({})",
        super::placeholders(2, ids.len())
    );
    run!(x, c => {
        let mut q = sqlx::query_scalar(&sql).bind(org.0);
        for id in ids {
            q = q.bind(*id);
        }
        q.fetch_all(c).await
    })
    .map_err(Into::into)
}
