//! Duties and their positions.

use std::collections::HashMap;

use carebridge_domain::OrgId;
use carebridge_domain::time::from_millis;
use carebridge_proto::duties::{Duty, Position};
use carebridge_store::{Exec, StoreError, Tx, exec, run, sqlx};
use jiff::tz::TimeZone;
use uuid::Uuid;

use super::placeholders;

/// Columns of `d` (duties) joined with `u` (its unit), read by [`DutyRow`]; the counts come
/// from the covering index `assignments_duty_counts` inside the query.
const COLS: &str = "d.id, d.unit_id, d.title, d.location, d.description, d.starts_at, d.ends_at, d.time_zone, d.state, d.chat, \
    d.roster_version, d.version, d.created_at, d.updated_at, u.path, \
    (SELECT COUNT(*) FROM assignments a WHERE a.duty_id = d.id AND a.status = 'confirmed' AND a.org_id = d.org_id) AS confirmed, \
    (SELECT COUNT(*) FROM assignments a WHERE a.duty_id = d.id AND a.status = 'requested' AND a.org_id = d.org_id) AS requested";

/// Columns of a position `p` after [`COLS`]: id, name, qualification, needed, filled.
const POSITION_COLS: &str = "p.id, p.name, p.qualification_id, p.needed, \
    (SELECT COUNT(*) FROM assignments a WHERE a.position_id = p.id AND a.status = 'confirmed' AND a.org_id = p.org_id)";

/// A duty row joined with one of its positions (none for a duty without positions).
struct DutyPositionRow(Stored, Option<Position>);

impl<'r, R: sqlx::Row> sqlx::FromRow<'r, R> for DutyPositionRow
where
    usize: sqlx::ColumnIndex<R>,
    Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(r: &'r R) -> Result<Self, sqlx::Error> {
        let DutyRow(d) = DutyRow::from_row(r)?;
        let id: Option<Uuid> = r.try_get(17)?;
        let pos = match id {
            Some(id) => Some(Position {
                id,
                name: r.try_get(18)?,
                qualification_id: r.try_get(19)?,
                needed: r.try_get(20)?,
                filled: r.try_get(21)?,
            }),
            None => None,
        };
        Ok(DutyPositionRow(d, pos))
    }
}

/// One row of [`COLS`], decoded on either backend.
struct DutyRow(Stored);

impl<'r, R: sqlx::Row> sqlx::FromRow<'r, R> for DutyRow
where
    usize: sqlx::ColumnIndex<R>,
    Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(r: &'r R) -> Result<Self, sqlx::Error> {
        let starts = from_millis(r.try_get(5)?);
        let ends = from_millis(r.try_get(6)?);
        let tz: String = r.try_get(7)?;
        Ok(DutyRow(Stored {
            duty: Duty {
                id: r.try_get(0)?,
                unit_id: r.try_get(1)?,
                title: r.try_get(2)?,
                location: r.try_get(3)?,
                description: r.try_get(4)?,
                starts_at: starts,
                ends_at: ends,
                starts_local: local(starts, &tz),
                ends_local: local(ends, &tz),
                time_zone: tz,
                state: r.try_get(8)?,
                chat: r.try_get(9)?,
                roster_version: r.try_get(10)?,
                positions: Vec::new(),
                confirmed: r.try_get(15)?,
                requested: r.try_get(16)?,
                version: r.try_get(11)?,
                created_at: from_millis(r.try_get(12)?),
                updated_at: from_millis(r.try_get(13)?),
            },
            unit_path: r.try_get(14)?,
        }))
    }
}

/// A duty with the path of its unit (for scope checks).
#[derive(Clone, Debug)]
pub struct Stored {
    pub duty: Duty,
    pub unit_path: String,
}

/// Local time with offset and zone name.
pub fn local(t: jiff::Timestamp, tz: &str) -> String {
    thread_local! {
        // Zones by name: a listing formats two times per duty, mostly in one or two zones.
        static ZONES: std::cell::RefCell<HashMap<String, Option<TimeZone>>> = std::cell::RefCell::new(HashMap::new());
    }
    let zone = ZONES.with(|z| {
        let mut z = z.borrow_mut();
        if z.len() > 64 {
            z.clear();
        }
        z.entry(tz.to_string())
            .or_insert_with(|| TimeZone::get(tz).ok())
            .clone()
    });
    match zone {
        Some(z) => t.to_zoned(z).to_string(),
        None => t.to_string(),
    }
}

fn duty(r: DutyRow) -> Stored {
    r.0
}

/// SQL for the organisation's (`$1`) longest duty in milliseconds, as a scalar subquery.
pub(crate) const SPAN: &str =
    "COALESCE((SELECT s.max_ms FROM duty_spans s WHERE s.org_id = $1), 0)";

/// The longest duty of the organisation so far, in milliseconds (0 without duties).
pub async fn span(x: &mut impl Exec, org: OrgId) -> Result<i64, StoreError> {
    let v: Option<i64> = run!(x, c => sqlx::query_scalar("SELECT max_ms FROM duty_spans WHERE org_id = $1")
        .bind(org.0).fetch_optional(c).await)?;
    Ok(v.unwrap_or(0))
}

/// Records a duty's length in the organisation's longest-duty figure (written only when it grows).
pub async fn widen_span(tx: &mut Tx, org: OrgId, d: &Duty) -> Result<(), StoreError> {
    let len = d.ends_at.as_millisecond() - d.starts_at.as_millisecond();
    if len > span(tx, org).await? {
        exec!(tx, c => sqlx::query(
            "INSERT INTO duty_spans (org_id, max_ms) VALUES ($1, $2) \
             ON CONFLICT (org_id) DO UPDATE SET max_ms = CASE WHEN excluded.max_ms > duty_spans.max_ms THEN excluded.max_ms ELSE duty_spans.max_ms END")
            .bind(org.0).bind(len).execute(c).await)?;
    }
    Ok(())
}

pub async fn insert(tx: &mut Tx, org: OrgId, d: &Duty) -> Result<(), StoreError> {
    widen_span(tx, org, d).await?;
    exec!(tx, c => sqlx::query(
        "INSERT INTO duties (id, org_id, unit_id, title, location, description, starts_at, ends_at, time_zone, state, chat, roster_version, version, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)")
        .bind(d.id).bind(org.0).bind(d.unit_id).bind(&d.title).bind(&d.location).bind(&d.description)
        .bind(d.starts_at.as_millisecond()).bind(d.ends_at.as_millisecond()).bind(&d.time_zone)
        .bind(&d.state).bind(d.chat).bind(d.roster_version).bind(d.version)
        .bind(d.created_at.as_millisecond()).bind(d.updated_at.as_millisecond()).execute(c).await)?;
    Ok(())
}

/// Writes the duty's fields if its version is still `if_version`; keeps assignments' start
/// times in step. `false` when another change came first.
pub async fn update(
    tx: &mut Tx,
    org: OrgId,
    d: &Duty,
    if_version: i64,
) -> Result<bool, StoreError> {
    let n = exec!(tx, c => sqlx::query(
        "UPDATE duties SET unit_id = $3, title = $4, location = $5, description = $6, starts_at = $7, ends_at = $8, time_zone = $9, state = $10, chat = $11, version = $12, updated_at = $13 \
         WHERE org_id = $1 AND id = $2 AND version = $14")
        .bind(org.0).bind(d.id).bind(d.unit_id).bind(&d.title).bind(&d.location).bind(&d.description)
        .bind(d.starts_at.as_millisecond()).bind(d.ends_at.as_millisecond()).bind(&d.time_zone)
        .bind(&d.state).bind(d.chat).bind(d.version).bind(d.updated_at.as_millisecond()).bind(if_version)
        .execute(c).await)?;
    exec!(tx, c => sqlx::query("UPDATE assignments SET starts_at = $3 WHERE org_id = $1 AND duty_id = $2 AND starts_at <> $3")
        .bind(org.0).bind(d.id).bind(d.starts_at.as_millisecond()).execute(c).await)?;
    Ok(n == 1)
}

/// Takes the duty's row lock for the rest of the transaction (a no-op write).
pub async fn lock(tx: &mut Tx, org: OrgId, id: Uuid) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query("UPDATE duties SET roster_version = roster_version WHERE org_id = $1 AND id = $2")
        .bind(org.0).bind(id).execute(c).await)?;
    Ok(())
}

/// Sets the chat switch (part of "save assignment"); bumps the duty's version.
pub async fn set_chat(
    tx: &mut Tx,
    org: OrgId,
    id: Uuid,
    chat: bool,
    now_ms: i64,
) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query("UPDATE duties SET chat = $3, version = version + 1, updated_at = $4 WHERE org_id = $1 AND id = $2")
        .bind(org.0).bind(id).bind(chat).bind(now_ms).execute(c).await)?;
    Ok(())
}

pub async fn delete(tx: &mut Tx, org: OrgId, id: Uuid) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query("DELETE FROM duty_positions WHERE org_id = $1 AND duty_id = $2").bind(org.0).bind(id).execute(c).await)?;
    exec!(tx, c => sqlx::query("DELETE FROM duties WHERE org_id = $1 AND id = $2").bind(org.0).bind(id).execute(c).await)?;
    Ok(())
}

/// One duty without positions and counts.
pub async fn get_bare(
    x: &mut impl Exec,
    org: OrgId,
    id: Uuid,
) -> Result<Option<Stored>, StoreError> {
    let sql = format!(
        "SELECT {COLS} FROM duties d JOIN units u ON u.id = d.unit_id WHERE d.org_id = $1 AND d.id = $2"
    );
    let r: Option<DutyRow> =
        run!(x, c => sqlx::query_as(&sql).bind(org.0).bind(id).fetch_optional(c).await)?;
    Ok(r.map(duty))
}

/// Several duties (positions and counts filled), in the order of `ids`; missing ones skipped.
pub async fn get_many(
    x: &mut impl Exec,
    org: OrgId,
    ids: &[Uuid],
) -> Result<Vec<Stored>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {COLS} FROM (VALUES {}) m CROSS JOIN duties d JOIN units u ON u.id = d.unit_id WHERE d.id = m.column1 AND d.org_id = $1",
        carebridge_store::id_values(2, ids.len())
    );
    let rows: Vec<DutyRow> = run!(x, c => {
        let mut q = sqlx::query_as(&sql).bind(org.0);
        for id in ids { q = q.bind(*id); }
        q.fetch_all(c).await
    })?;
    let mut found: HashMap<Uuid, Stored> =
        rows.into_iter().map(duty).map(|s| (s.duty.id, s)).collect();
    let mut out: Vec<Stored> = ids.iter().filter_map(|id| found.remove(id)).collect();
    complete(x, org, &mut out).await?;
    Ok(out)
}

/// One duty with positions and counts.
pub async fn get(x: &mut impl Exec, org: OrgId, id: Uuid) -> Result<Option<Stored>, StoreError> {
    let Some(d) = get_bare(x, org, id).await? else {
        return Ok(None);
    };
    let mut v = vec![d];
    complete(x, org, &mut v).await?;
    Ok(v.pop())
}

/// Where a listing may look: the whole organisation or unit subtrees.
pub enum Scope<'a> {
    All,
    Units(&'a [String]),
}

/// Duties overlapping `[from, to)` in start order after `(starts_at, id)`.
pub async fn page(
    x: &mut impl Exec,
    org: OrgId,
    from_ms: i64,
    to_ms: i64,
    scope: Scope<'_>,
    state: Option<&str>,
    after: Option<(i64, Uuid)>,
    limit: i64,
) -> Result<Vec<Stored>, StoreError> {
    enum Arg {
        Int(i64),
        Id(Uuid),
        Text(String),
    }
    let mut args: Vec<Arg> = Vec::new();
    let ph = |a: Arg, args: &mut Vec<Arg>| {
        args.push(a);
        format!("${}", args.len() + 1)
    };
    let hi = ph(Arg::Int(to_ms), &mut args);
    let from = ph(Arg::Int(from_ms), &mut args);
    // "Ends after from" becomes a bounded range on a start index: no duty of the organisation
    // is longer than its recorded span ([`SPAN`], evaluated once per query).
    let mut sql = format!(
        "SELECT {COLS} FROM duties d JOIN units u ON u.id = d.unit_id WHERE d.org_id = $1 AND d.starts_at >= {from} - {SPAN} AND d.starts_at < {hi} AND d.ends_at > {from}"
    );
    if let Scope::Units(paths) = &scope {
        // Unit-scoped callers read the (unit_id, starts_at) index of each unit in their subtrees.
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let ors: Vec<String> = paths
            .iter()
            .map(|p| format!("su.path LIKE {}", ph(Arg::Text(format!("{p}%")), &mut args)))
            .collect();
        sql += &format!(
            " AND d.unit_id IN (SELECT su.id FROM units su WHERE su.org_id = $1 AND ({}))",
            ors.join(" OR ")
        );
    }
    if let Some((s, id)) = after {
        let a = ph(Arg::Int(s), &mut args);
        let b = ph(Arg::Id(id), &mut args);
        sql += &format!(" AND (d.starts_at > {a} OR (d.starts_at = {a} AND d.id > {b}))");
    }
    if let Some(st) = state {
        sql += &format!(
            " AND d.state = {}",
            ph(Arg::Text(st.to_string()), &mut args)
        );
    }
    sql += &format!(
        " ORDER BY d.starts_at, d.id LIMIT {}",
        ph(Arg::Int(limit), &mut args)
    );
    // The page's duties with their positions in one statement (rows through sqlx cost more
    // than the join): one row per position, or one for a duty without positions.
    let sql = format!(
        "SELECT m.*, {POSITION_COLS} FROM ({sql}) m LEFT JOIN duty_positions p ON p.duty_id = m.id AND p.org_id = $1 \
         ORDER BY m.starts_at, m.id, p.ordinal"
    );
    let rows: Vec<DutyPositionRow> = run!(x, c => {
        let mut q = sqlx::query_as(&sql).bind(org.0);
        for a in &args {
            q = match a {
                Arg::Int(i) => q.bind(*i),
                Arg::Id(u) => q.bind(*u),
                Arg::Text(t) => q.bind(t.clone()),
            };
        }
        q.fetch_all(c).await
    })?;
    let mut out: Vec<Stored> = Vec::new();
    for DutyPositionRow(d, pos) in rows {
        if out.last().is_none_or(|l| l.duty.id != d.duty.id) {
            out.push(d);
        }
        if let (Some(p), Some(last)) = (pos, out.last_mut()) {
            last.duty.positions.push(p);
        }
    }
    Ok(out)
}

/// Fills the positions of `list`, each with its count of confirmed people.
pub async fn complete(
    x: &mut impl Exec,
    org: OrgId,
    list: &mut [Stored],
) -> Result<(), StoreError> {
    if list.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = list.iter().map(|s| s.duty.id).collect();
    let psql = format!(
        "SELECT p.duty_id, p.id, p.name, p.qualification_id, p.needed, \
         (SELECT COUNT(*) FROM assignments a WHERE a.position_id = p.id AND a.status = 'confirmed' AND a.org_id = p.org_id) \
         FROM duty_positions p WHERE p.org_id = $1 AND p.duty_id IN ({}) ORDER BY p.duty_id, p.ordinal",
        placeholders(2, ids.len())
    );
    let positions: Vec<(Uuid, Uuid, String, Option<Uuid>, i64, i64)> = run!(x, c => {
        let mut q = sqlx::query_as(&psql).bind(org.0);
        for id in &ids { q = q.bind(*id); }
        q.fetch_all(c).await
    })?;
    let index: HashMap<Uuid, usize> = list
        .iter()
        .enumerate()
        .map(|(i, s)| (s.duty.id, i))
        .collect();
    for (duty, id, name, qualification_id, needed, filled) in positions {
        if let Some(&i) = index.get(&duty) {
            list[i].duty.positions.push(Position {
                id,
                name,
                qualification_id,
                needed,
                filled,
            });
        }
    }
    Ok(())
}

/// Replaces a duty's positions: updates kept ones, inserts new ones, deletes the rest.
pub async fn write_positions(
    tx: &mut Tx,
    org: OrgId,
    duty: Uuid,
    keep_or_new: &[(Uuid, String, Option<Uuid>, i64)],
    delete: &[Uuid],
) -> Result<(), StoreError> {
    for id in delete {
        exec!(tx, c => sqlx::query("DELETE FROM duty_positions WHERE org_id = $1 AND duty_id = $2 AND id = $3")
            .bind(org.0).bind(duty).bind(*id).execute(c).await)?;
    }
    for (i, (id, name, q, needed)) in keep_or_new.iter().enumerate() {
        exec!(tx, c => sqlx::query(
            "INSERT INTO duty_positions (id, duty_id, org_id, name, qualification_id, needed, ordinal) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, qualification_id = excluded.qualification_id, needed = excluded.needed, ordinal = excluded.ordinal")
            .bind(*id).bind(duty).bind(org.0).bind(name).bind(*q).bind(*needed).bind(i as i64).execute(c).await)?;
    }
    Ok(())
}

/// How many assignments (any status) each of a duty's positions has.
pub async fn position_usage(
    x: &mut impl Exec,
    org: OrgId,
    duty: Uuid,
) -> Result<HashMap<Uuid, i64>, StoreError> {
    let rows: Vec<(Uuid, i64)> = run!(x, c => sqlx::query_as(
        "SELECT position_id, COUNT(*) FROM assignments WHERE org_id = $1 AND duty_id = $2 AND position_id IS NOT NULL GROUP BY position_id")
        .bind(org.0).bind(duty).fetch_all(c).await)?;
    Ok(rows.into_iter().collect())
}
