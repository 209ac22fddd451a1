//! The qualification catalogue, its "includes" relation, and the qualifications people hold.

use carebridge_domain::duty::Catalogue;
use carebridge_domain::time::from_millis;
use carebridge_domain::{OrgId, QualificationId};
use carebridge_proto::duties::{HeldQualification, Qualification};
use carebridge_store::{Exec, StoreError, Tx, exec, run, sqlx};
use uuid::Uuid;

type Row = (Uuid, String, i64, i64, i64);

async fn with_includes(
    x: &mut impl Exec,
    org: OrgId,
    rows: Vec<Row>,
) -> Result<Vec<Qualification>, StoreError> {
    let edges = edges(x, org).await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, version, created, updated)| Qualification {
            id,
            name,
            includes: edges
                .iter()
                .filter(|(a, _)| *a == id)
                .map(|(_, b)| *b)
                .collect(),
            version,
            created_at: from_millis(created),
            updated_at: from_millis(updated),
        })
        .collect())
}

/// All "includes" edges of the organisation, `(qualification, included)`.
pub async fn edges(x: &mut impl Exec, org: OrgId) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
    Ok(run!(x, c => sqlx::query_as(
        "SELECT qualification_id, includes_id FROM qualification_includes WHERE org_id = $1 ORDER BY qualification_id, includes_id")
        .bind(org.0).fetch_all(c).await)?)
}

/// The organisation's catalogue as the domain's rule object.
pub async fn catalogue(x: &mut impl Exec, org: OrgId) -> Result<Catalogue, StoreError> {
    Ok(Catalogue::new(
        edges(x, org)
            .await?
            .into_iter()
            .map(|(a, b)| (QualificationId(a), QualificationId(b))),
    ))
}

pub async fn get(
    x: &mut impl Exec,
    org: OrgId,
    id: Uuid,
) -> Result<Option<Qualification>, StoreError> {
    let r: Option<Row> = run!(x, c => sqlx::query_as(
        "SELECT id, name, version, created_at, updated_at FROM qualifications WHERE org_id = $1 AND id = $2")
        .bind(org.0).bind(id).fetch_optional(c).await)?;
    Ok(with_includes(x, org, r.into_iter().collect()).await?.pop())
}

pub async fn page(
    x: &mut impl Exec,
    org: OrgId,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Qualification>, StoreError> {
    let rows: Vec<Row> = run!(x, c => sqlx::query_as(
        "SELECT id, name, version, created_at, updated_at FROM qualifications WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3")
        .bind(org.0).bind(after.unwrap_or(Uuid::nil())).bind(limit).fetch_all(c).await)?;
    with_includes(x, org, rows).await
}

/// Which of `ids` are qualifications of `org`.
pub async fn existing(
    x: &mut impl Exec,
    org: OrgId,
    ids: &[Uuid],
) -> Result<Vec<Uuid>, StoreError> {
    let mut out = Vec::new();
    for id in ids {
        let found: Option<Uuid> = run!(x, c => sqlx::query_scalar("SELECT id FROM qualifications WHERE org_id = $1 AND id = $2")
            .bind(org.0).bind(*id).fetch_optional(c).await)?;
        if found.is_some() {
            out.push(*id);
        }
    }
    Ok(out)
}

/// Whether another qualification of the organisation has this folded name.
pub async fn name_taken(
    x: &mut impl Exec,
    org: OrgId,
    name_key: &str,
    except: Option<Uuid>,
) -> Result<bool, StoreError> {
    let id: Option<Uuid> = run!(x, c => sqlx::query_scalar("SELECT id FROM qualifications WHERE org_id = $1 AND name_key = $2")
        .bind(org.0).bind(name_key).fetch_optional(c).await)?;
    Ok(id.is_some_and(|id| Some(id) != except))
}

pub async fn insert(
    tx: &mut Tx,
    org: OrgId,
    q: &Qualification,
    name_key: &str,
) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query(
        "INSERT INTO qualifications (id, org_id, name, name_key, version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(q.id).bind(org.0).bind(&q.name).bind(name_key).bind(q.version)
        .bind(q.created_at.as_millisecond()).bind(q.updated_at.as_millisecond()).execute(c).await)?;
    set_includes(tx, org, q.id, &q.includes).await
}

pub async fn update(
    tx: &mut Tx,
    org: OrgId,
    q: &Qualification,
    name_key: &str,
    if_version: i64,
) -> Result<bool, StoreError> {
    let n = exec!(tx, c => sqlx::query(
        "UPDATE qualifications SET name = $3, name_key = $4, version = $5, updated_at = $6 WHERE org_id = $1 AND id = $2 AND version = $7")
        .bind(org.0).bind(q.id).bind(&q.name).bind(name_key).bind(q.version).bind(q.updated_at.as_millisecond()).bind(if_version)
        .execute(c).await)?;
    if n == 1 {
        set_includes(tx, org, q.id, &q.includes).await?;
    }
    Ok(n == 1)
}

async fn set_includes(
    tx: &mut Tx,
    org: OrgId,
    id: Uuid,
    includes: &[Uuid],
) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query("DELETE FROM qualification_includes WHERE org_id = $1 AND qualification_id = $2")
        .bind(org.0).bind(id).execute(c).await)?;
    for inc in includes {
        exec!(tx, c => sqlx::query("INSERT INTO qualification_includes (qualification_id, includes_id, org_id) VALUES ($1, $2, $3)")
            .bind(id).bind(*inc).bind(org.0).execute(c).await)?;
    }
    Ok(())
}

/// How often a qualification is referenced: (held by people, needed by positions, included by others).
pub async fn usage(x: &mut impl Exec, org: OrgId, id: Uuid) -> Result<(i64, i64, i64), StoreError> {
    let held: i64 = run!(x, c => sqlx::query_scalar("SELECT COUNT(*) FROM person_qualifications WHERE org_id = $1 AND qualification_id = $2")
        .bind(org.0).bind(id).fetch_one(c).await)?;
    let needed: i64 = run!(x, c => sqlx::query_scalar("SELECT COUNT(*) FROM duty_positions WHERE org_id = $1 AND qualification_id = $2")
        .bind(org.0).bind(id).fetch_one(c).await)?;
    let included: i64 = run!(x, c => sqlx::query_scalar("SELECT COUNT(*) FROM qualification_includes WHERE org_id = $1 AND includes_id = $2")
        .bind(org.0).bind(id).fetch_one(c).await)?;
    Ok((held, needed, included))
}

pub async fn delete(tx: &mut Tx, org: OrgId, id: Uuid) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query("DELETE FROM qualification_includes WHERE org_id = $1 AND qualification_id = $2").bind(org.0).bind(id).execute(c).await)?;
    exec!(tx, c => sqlx::query("DELETE FROM qualifications WHERE org_id = $1 AND id = $2").bind(org.0).bind(id).execute(c).await)?;
    Ok(())
}

/// What a person holds, with expiry.
pub async fn held(
    x: &mut impl Exec,
    org: OrgId,
    person: Uuid,
) -> Result<Vec<HeldQualification>, StoreError> {
    let rows: Vec<(Uuid, String, Option<i64>)> = run!(x, c => sqlx::query_as(
        "SELECT q.id, q.name, pq.valid_until FROM person_qualifications pq JOIN qualifications q ON q.id = pq.qualification_id \
         WHERE pq.org_id = $1 AND pq.person_id = $2 AND q.org_id = $1 ORDER BY q.name, q.id")
        .bind(org.0).bind(person).fetch_all(c).await)?;
    Ok(rows
        .into_iter()
        .map(|(qualification_id, name, until)| HeldQualification {
            qualification_id,
            name,
            valid_until: until.map(from_millis),
        })
        .collect())
}

pub async fn hold(
    tx: &mut Tx,
    org: OrgId,
    person: Uuid,
    q: Uuid,
    until_ms: Option<i64>,
) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query(
        "INSERT INTO person_qualifications (person_id, qualification_id, org_id, valid_until) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (person_id, qualification_id) DO UPDATE SET valid_until = excluded.valid_until")
        .bind(person).bind(q).bind(org.0).bind(until_ms).execute(c).await)?;
    Ok(())
}

pub async fn drop_held(tx: &mut Tx, org: OrgId, person: Uuid, q: Uuid) -> Result<bool, StoreError> {
    let n = exec!(tx, c => sqlx::query("DELETE FROM person_qualifications WHERE org_id = $1 AND person_id = $2 AND qualification_id = $3")
        .bind(org.0).bind(person).bind(q).execute(c).await)?;
    Ok(n == 1)
}
