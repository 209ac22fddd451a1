//! Contact grants and what resolving a viewer needs: the unit tree and the grants of an
//! organisation.

use carebridge_domain::OrgId;
use carebridge_domain::time::from_millis;
use carebridge_domain::visibility::{Fields, Grant, Side, TreeUnit};
use carebridge_proto::directory::{ContactGrant, GrantSide};
use carebridge_store::{Exec, StoreError, Tx, exec, run, sqlx};
use uuid::Uuid;

type Row = (Uuid, String, Uuid, String, Uuid, i64, i64, i64, i64);

const COLS: &str =
    "id, viewer_kind, viewer_id, target_kind, target_id, fields, version, created_at, updated_at";

fn grant(r: Row) -> Result<(ContactGrant, Grant), StoreError> {
    let side = |k: &str, id: Uuid| {
        Side::parse(k)
            .map(|s| (s, id))
            .ok_or_else(|| StoreError::Corrupt(format!("contact grant side '{k}'")))
    };
    let fields = Fields(u8::try_from(r.5).unwrap_or(0) & Fields::GRANTABLE.0);
    let g = Grant {
        viewer: side(&r.1, r.2)?,
        target: side(&r.3, r.4)?,
        fields,
    };
    Ok((
        ContactGrant {
            id: r.0,
            viewer: GrantSide { kind: r.1, id: r.2 },
            target: GrantSide { kind: r.3, id: r.4 },
            fields: fields.names(),
            version: r.6,
            created_at: from_millis(r.7),
            updated_at: from_millis(r.8),
        },
        g,
    ))
}

/// Every grant of the organisation, in id order.
pub async fn all(x: &mut impl Exec, org: OrgId) -> Result<Vec<(ContactGrant, Grant)>, StoreError> {
    let sql = format!("SELECT {COLS} FROM contact_grants WHERE org_id = $1 ORDER BY id");
    let rows: Vec<Row> = run!(x, c => sqlx::query_as(&sql).bind(org.0).fetch_all(c).await)?;
    rows.into_iter().map(grant).collect()
}

/// Grants in id order after `after`, at most `limit`.
pub async fn page(
    x: &mut impl Exec,
    org: OrgId,
    after: Uuid,
    limit: i64,
) -> Result<Vec<ContactGrant>, StoreError> {
    let sql = format!(
        "SELECT {COLS} FROM contact_grants WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3"
    );
    let rows: Vec<Row> =
        run!(x, c => sqlx::query_as(&sql).bind(org.0).bind(after).bind(limit).fetch_all(c).await)?;
    rows.into_iter().map(|r| grant(r).map(|g| g.0)).collect()
}

pub async fn get(
    x: &mut impl Exec,
    org: OrgId,
    id: Uuid,
) -> Result<Option<ContactGrant>, StoreError> {
    let sql = format!("SELECT {COLS} FROM contact_grants WHERE org_id = $1 AND id = $2");
    let r: Option<Row> =
        run!(x, c => sqlx::query_as(&sql).bind(org.0).bind(id).fetch_optional(c).await)?;
    r.map(|r| grant(r).map(|g| g.0)).transpose()
}

pub async fn insert(
    tx: &mut Tx,
    org: OrgId,
    g: &ContactGrant,
    fields: Fields,
) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query(
        "INSERT INTO contact_grants (id, org_id, viewer_kind, viewer_id, target_kind, target_id, fields, version, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
        .bind(g.id).bind(org.0).bind(&g.viewer.kind).bind(g.viewer.id).bind(&g.target.kind).bind(g.target.id)
        .bind(i64::from(fields.0)).bind(g.version).bind(g.created_at.as_millisecond()).bind(g.updated_at.as_millisecond())
        .execute(c).await)?;
    Ok(())
}

/// Sets a grant's fields if `expected` is its version.
pub async fn set_fields(
    tx: &mut Tx,
    org: OrgId,
    id: Uuid,
    fields: Fields,
    expected: i64,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let n = exec!(tx, c => sqlx::query(
        "UPDATE contact_grants SET fields = $3, version = version + 1, updated_at = $4 WHERE org_id = $1 AND id = $2 AND version = $5")
        .bind(org.0).bind(id).bind(i64::from(fields.0)).bind(now_ms).bind(expected).execute(c).await)?;
    Ok(n == 1)
}

pub async fn delete(tx: &mut Tx, org: OrgId, id: Uuid) -> Result<bool, StoreError> {
    let n = exec!(tx, c => sqlx::query("DELETE FROM contact_grants WHERE org_id = $1 AND id = $2")
        .bind(org.0).bind(id).execute(c).await)?;
    Ok(n == 1)
}

/// How many grants name this unit or group on either side.
pub async fn uses(x: &mut impl Exec, org: OrgId, id: Uuid) -> Result<i64, StoreError> {
    Ok(run!(x, c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM contact_grants WHERE org_id = $1 AND (viewer_id = $2 OR target_id = $2)")
        .bind(org.0).bind(id).fetch_one(c).await)?)
}

/// The organisation's unit tree (ids and paths).
pub async fn tree(x: &mut impl Exec, org: OrgId) -> Result<Vec<TreeUnit>, StoreError> {
    let rows: Vec<(Uuid, String)> = run!(x, c => sqlx::query_as("SELECT id, path FROM units WHERE org_id = $1")
        .bind(org.0).fetch_all(c).await)?;
    Ok(rows
        .into_iter()
        .map(|(id, path)| TreeUnit { id, path })
        .collect())
}

/// Whether a group (a label of kind `group`) exists in the organisation.
pub async fn group_exists(x: &mut impl Exec, org: OrgId, id: Uuid) -> Result<bool, StoreError> {
    let n: i64 = run!(x, c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM labels WHERE org_id = $1 AND id = $2 AND kind = 'group'")
        .bind(org.0).bind(id).fetch_one(c).await)?;
    Ok(n > 0)
}
