//! Groups and skills (`labels`, told apart by `kind`), with member counts.

use carebridge_domain::OrgId;
use carebridge_domain::time::from_millis;
use carebridge_proto::directory::Label;
use carebridge_store::{Exec, StoreError, Tx, exec, run, sqlx};
use uuid::Uuid;

type Row = (Uuid, String, String, i64, i64);

fn label(r: Row) -> (Label, String) {
    (
        Label {
            id: r.0,
            name: r.1,
            members: r.3,
            created_at: from_millis(r.4),
        },
        r.2,
    )
}

const SELECT: &str = "SELECT l.id, l.name, l.name_key, \
    (SELECT COUNT(*) FROM person_labels pl WHERE pl.label_id = l.id AND pl.org_id = l.org_id), l.created_at FROM labels l";

/// Labels of one kind in name order after `after` (a name key), with their keys.
pub async fn page(
    x: &mut impl Exec,
    org: OrgId,
    kind: &str,
    after: &str,
    limit: i64,
) -> Result<Vec<(Label, String)>, StoreError> {
    let sql = format!(
        "{SELECT} WHERE l.org_id = $1 AND l.kind = $2 AND l.name_key > $3 ORDER BY l.name_key LIMIT $4"
    );
    let rows: Vec<Row> = run!(x, c => sqlx::query_as(&sql).bind(org.0).bind(kind).bind(after).bind(limit).fetch_all(c).await)?;
    Ok(rows.into_iter().map(label).collect())
}

pub async fn get(
    x: &mut impl Exec,
    org: OrgId,
    kind: &str,
    id: Uuid,
) -> Result<Option<(Label, String)>, StoreError> {
    let sql = format!("{SELECT} WHERE l.org_id = $1 AND l.kind = $2 AND l.id = $3");
    let r: Option<Row> =
        run!(x, c => sqlx::query_as(&sql).bind(org.0).bind(kind).bind(id).fetch_optional(c).await)?;
    Ok(r.map(label))
}

/// The id of the label with this key, if any.
pub async fn by_key(
    x: &mut impl Exec,
    org: OrgId,
    kind: &str,
    key: &str,
) -> Result<Option<Uuid>, StoreError> {
    Ok(
        run!(x, c => sqlx::query_scalar("SELECT id FROM labels WHERE org_id = $1 AND kind = $2 AND name_key = $3")
        .bind(org.0).bind(kind).bind(key).fetch_optional(c).await)?,
    )
}

pub async fn insert(
    tx: &mut Tx,
    org: OrgId,
    kind: &str,
    id: Uuid,
    name: &str,
    key: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query("INSERT INTO labels (id, org_id, kind, name, name_key, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(id).bind(org.0).bind(kind).bind(name).bind(key).bind(now_ms).execute(c).await)?;
    Ok(())
}

pub async fn rename(
    tx: &mut Tx,
    org: OrgId,
    id: Uuid,
    name: &str,
    key: &str,
) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query("UPDATE labels SET name = $3, name_key = $4 WHERE org_id = $1 AND id = $2")
        .bind(org.0).bind(id).bind(name).bind(key).execute(c).await)?;
    Ok(())
}

/// Gives every person with the label a new version (their representation changes).
pub async fn touch_members(
    tx: &mut Tx,
    org: OrgId,
    id: Uuid,
    now_ms: i64,
) -> Result<u64, StoreError> {
    Ok(exec!(tx, c => sqlx::query(
        "UPDATE people SET version = version + 1, updated_at = $3 WHERE org_id = $1 AND id IN \
         (SELECT person_id FROM person_labels WHERE label_id = $2 AND org_id = $1)")
        .bind(org.0).bind(id).bind(now_ms).execute(c).await)?)
}

pub async fn delete(tx: &mut Tx, org: OrgId, id: Uuid) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query("DELETE FROM person_labels WHERE org_id = $1 AND label_id = $2")
        .bind(org.0).bind(id).execute(c).await)?;
    exec!(tx, c => sqlx::query("DELETE FROM labels WHERE org_id = $1 AND id = $2")
        .bind(org.0).bind(id).execute(c).await)?;
    Ok(())
}
