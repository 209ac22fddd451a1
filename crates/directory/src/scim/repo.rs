//! SQL of SCIM: its own attributes (`scim_users`, `scim_groups`) and the filtered, sorted,
//! paged id lists of Users and Groups.

use carebridge_domain::OrgId;
use carebridge_store::{Exec, StoreError, Tx, exec, run, sqlx};
use uuid::Uuid;

use super::filter::Arg;

/// What SCIM keeps about a person beyond the directory's fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserExtra {
    pub user_name: Option<String>,
    pub external_id: Option<String>,
    pub department: Option<String>,
    pub manager_id: Option<Uuid>,
}

type ExtraRow = (Uuid, String, Option<String>, Option<String>, Option<Uuid>);

/// The SCIM attributes of these people (absent: none stored).
pub async fn user_extras(
    x: &mut impl Exec,
    org: OrgId,
    ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, UserExtra>, StoreError> {
    let mut out = std::collections::HashMap::new();
    for chunk in ids.chunks(500) {
        let sql = format!(
            "SELECT person_id, user_name, external_id, department, manager_id FROM scim_users \
             WHERE org_id = $1 AND person_id IN ({})",
            crate::repo::placeholders(2, chunk.len())
        );
        let rows: Vec<ExtraRow> = run!(x, c => {
            let mut q = sqlx::query_as(&sql).bind(org.0);
            for id in chunk { q = q.bind(*id); }
            q.fetch_all(c).await
        })?;
        for r in rows {
            out.insert(
                r.0,
                UserExtra {
                    user_name: Some(r.1),
                    external_id: r.2,
                    department: r.3,
                    manager_id: r.4,
                },
            );
        }
    }
    Ok(out)
}

/// Stores a person's SCIM attributes (replacing what was there).
pub async fn set_user_extra(
    tx: &mut Tx,
    org: OrgId,
    person: Uuid,
    e: &UserExtra,
    user_name: &str,
) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query("DELETE FROM scim_users WHERE org_id = $1 AND person_id = $2")
        .bind(org.0).bind(person).execute(c).await)?;
    exec!(tx, c => sqlx::query(
        "INSERT INTO scim_users (person_id, org_id, user_name, user_name_key, external_id, department, manager_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(person).bind(org.0).bind(user_name).bind(user_name.to_lowercase())
        .bind(&e.external_id).bind(&e.department).bind(e.manager_id)
        .execute(c).await)?;
    Ok(())
}

/// The person holding this userName (ignoring case), if any: SCIM's own, else the first
/// e-mail of a person without SCIM attributes.
pub async fn user_name_owner(
    x: &mut impl Exec,
    org: OrgId,
    backend: carebridge_store::Backend,
    user_name: &str,
) -> Result<Option<Uuid>, StoreError> {
    let key = user_name.to_lowercase();
    let own: Option<Uuid> = run!(x, c => sqlx::query_scalar(
        "SELECT person_id FROM scim_users WHERE org_id = $1 AND user_name_key = $2")
        .bind(org.0).bind(&key).fetch_optional(c).await)?;
    if own.is_some() {
        return Ok(own);
    }
    let first = match backend {
        carebridge_store::Backend::Sqlite => "LOWER(json_extract(p.emails, '$[0].value'))",
        carebridge_store::Backend::Postgres => "LOWER(p.emails::jsonb -> 0 ->> 'value')",
    };
    let sql = format!(
        "SELECT p.id FROM people p WHERE p.org_id = $1 AND {first} = $2 \
         AND NOT EXISTS (SELECT 1 FROM scim_users su WHERE su.person_id = p.id)"
    );
    Ok(run!(x, c => sqlx::query_scalar(&sql).bind(org.0).bind(&key).fetch_optional(c).await)?)
}

/// Bumps a person's version (SCIM attributes changed while the directory's did not), for the
/// ETag and the sync feed.
pub async fn touch_person(
    tx: &mut Tx,
    org: OrgId,
    person: Uuid,
    now_ms: i64,
    seq: i64,
) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query(
        "UPDATE people SET version = version + 1, updated_at = $3, change_seq = $4 WHERE org_id = $1 AND id = $2")
        .bind(org.0).bind(person).bind(now_ms).bind(seq).execute(c).await)?;
    Ok(())
}

/// A group's SCIM externalId.
pub async fn group_external_ids(
    x: &mut impl Exec,
    org: OrgId,
    ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Option<String>>, StoreError> {
    let mut out = std::collections::HashMap::new();
    for chunk in ids.chunks(500) {
        let sql = format!(
            "SELECT label_id, external_id FROM scim_groups WHERE org_id = $1 AND label_id IN ({})",
            crate::repo::placeholders(2, chunk.len())
        );
        let rows: Vec<(Uuid, Option<String>)> = run!(x, c => {
            let mut q = sqlx::query_as(&sql).bind(org.0);
            for id in chunk { q = q.bind(*id); }
            q.fetch_all(c).await
        })?;
        out.extend(rows);
    }
    Ok(out)
}

pub async fn set_group_external_id(
    tx: &mut Tx,
    org: OrgId,
    label: Uuid,
    external_id: Option<&str>,
) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query("DELETE FROM scim_groups WHERE org_id = $1 AND label_id = $2")
        .bind(org.0).bind(label).execute(c).await)?;
    exec!(tx, c => sqlx::query("INSERT INTO scim_groups (label_id, org_id, external_id) VALUES ($1, $2, $3)")
        .bind(label).bind(org.0).bind(external_id).execute(c).await)?;
    Ok(())
}

/// Members of a group: `(person id, given name, family name)`.
pub async fn members(
    x: &mut impl Exec,
    org: OrgId,
    label: Uuid,
) -> Result<Vec<(Uuid, String, String)>, StoreError> {
    Ok(run!(x, c => sqlx::query_as(
        "SELECT p.id, p.given_name, p.family_name FROM person_labels pl JOIN people p ON p.id = pl.person_id \
         WHERE pl.org_id = $1 AND pl.label_id = $2 ORDER BY p.id")
        .bind(org.0).bind(label).fetch_all(c).await)?)
}

/// Groups of these people: `(person, group id, group name)`.
pub async fn groups_of(
    x: &mut impl Exec,
    org: OrgId,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, Uuid, String)>, StoreError> {
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        let sql = format!(
            "SELECT pl.person_id, l.id, l.name FROM person_labels pl JOIN labels l ON l.id = pl.label_id \
             WHERE pl.org_id = $1 AND l.kind = 'group' AND pl.person_id IN ({}) ORDER BY l.name_key",
            crate::repo::placeholders(2, chunk.len())
        );
        let rows: Vec<(Uuid, Uuid, String)> = run!(x, c => {
            let mut q = sqlx::query_as(&sql).bind(org.0);
            for id in chunk { q = q.bind(*id); }
            q.fetch_all(c).await
        })?;
        out.extend(rows);
    }
    Ok(out)
}

/// `COUNT(*)` and one page of ids of `FROM {from} WHERE {filter}` ordered by `order`
/// (`start` is 1-based).
#[allow(clippy::too_many_arguments)]
pub async fn count_and_page(
    x: &mut impl Exec,
    org: OrgId,
    from: &str,
    id_col: &str,
    filter: &str,
    args: &[Arg],
    order: &str,
    start: i64,
    count: i64,
) -> Result<(i64, Vec<Uuid>), StoreError> {
    let count_sql = format!("SELECT COUNT(*) FROM {from} WHERE {filter}");
    let n = args.len();
    let page_sql = format!(
        "SELECT {id_col} FROM {from} WHERE {filter} ORDER BY {order} LIMIT ${} OFFSET ${}",
        n + 2,
        n + 3
    );
    let total: i64 = run!(x, c => {
        let mut q = sqlx::query_scalar(&count_sql).bind(org.0);
        for a in args {
            q = match a {
                Arg::Text(s) => q.bind(s.clone()),
                Arg::Int(i) => q.bind(*i),
                Arg::Bool(b) => q.bind(*b),
                Arg::Id(u) => q.bind(*u),
            };
        }
        q.fetch_one(c).await
    })?;
    if count == 0 {
        return Ok((total, Vec::new()));
    }
    let ids: Vec<Uuid> = run!(x, c => {
        let mut q = sqlx::query_scalar(&page_sql).bind(org.0);
        for a in args {
            q = match a {
                Arg::Text(s) => q.bind(s.clone()),
                Arg::Int(i) => q.bind(*i),
                Arg::Bool(b) => q.bind(*b),
                Arg::Id(u) => q.bind(*u),
            };
        }
        q.bind(count).bind(start - 1).fetch_all(c).await
    })?;
    Ok((total, ids))
}

/// Takes the write lock on a group's row (a no-op update; SQLite's writer is single anyway).
/// False when there is no such group.
pub async fn lock_group(tx: &mut Tx, org: OrgId, id: Uuid) -> Result<bool, StoreError> {
    let n = exec!(tx, c => sqlx::query(
        "UPDATE labels SET name = name WHERE org_id = $1 AND id = $2 AND kind = 'group'")
        .bind(org.0).bind(id).execute(c).await)?;
    Ok(n == 1)
}
