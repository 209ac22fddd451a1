//! What the contacts sync feed reads and what every write of people leaves for it:
//!
//! - `contact_heads`: a per-organisation change counter. A writing transaction takes the next
//!   value with one `UPDATE … RETURNING`, which also locks the row until commit, so values
//!   become visible in order (a reader that saw value `n` has seen every change up to `n`).
//! - `people.change_seq` / `created_seq`: the counter value of a person's last change and of
//!   their creation.
//! - `contact_log`: a person's state just before a change (`prior`, JSON of [`Prior`]:
//!   memberships and whether active); NULL when they did not exist. Every write of a person
//!   logs it except renames of their groups or units (which change neither).
//!   The feed evaluates a client's earlier viewer on the state the client saw.
//! - `feed_viewers`: the viewers clients synced as, by digest (a cursor names a digest), with
//!   when a pass last ended as them.
//! - Housekeeping ([`prune`]) keeps about 30 to 60 days of log: `contact_heads.log_floor` is the
//!   oldest change number it still explains.

use std::collections::HashMap;

use carebridge_domain::OrgId;
use carebridge_domain::visibility::Memberships;
use carebridge_store::{Exec, StoreError, Tx, exec, run, sqlx};
use uuid::Uuid;

use super::placeholders;

/// Ids per `IN (…)` list.
const CHUNK: usize = 500;

/// A person's state as far as visibility goes: memberships and whether they are active.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Prior {
    #[serde(flatten)]
    pub memberships: Memberships,
    #[serde(rename = "a")]
    pub active: bool,
    /// The person's `created_seq`.
    #[serde(rename = "c", default)]
    pub created: i64,
}

/// The current state of these people, to log before they change (`None`: no such person).
pub async fn priors_now(
    x: &mut impl Exec,
    org: OrgId,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, Option<Prior>)>, StoreError> {
    let mut ms = memberships(x, org, ids).await?;
    let seqs = seqs(x, org, ids).await?;
    Ok(ids
        .iter()
        .map(|id| {
            let p = seqs.get(id).map(|(_, created, active)| Prior {
                memberships: ms.remove(id).unwrap_or_default(),
                active: *active,
                created: *created,
            });
            (*id, p)
        })
        .collect())
}

/// Takes the organisation's next change number (and holds its row until commit).
pub async fn next_seq(tx: &mut Tx, org: OrgId) -> Result<i64, StoreError> {
    Ok(run!(tx, c => sqlx::query_scalar(
        "INSERT INTO contact_heads (org_id, seq) VALUES ($1, 1) \
         ON CONFLICT (org_id) DO UPDATE SET seq = contact_heads.seq + 1 RETURNING seq")
        .bind(org.0).fetch_one(c).await)?)
}

/// The organisation's last committed change number.
pub async fn head(x: &mut impl Exec, org: OrgId) -> Result<i64, StoreError> {
    let v: Option<i64> = run!(x, c => sqlx::query_scalar("SELECT seq FROM contact_heads WHERE org_id = $1")
        .bind(org.0).fetch_optional(c).await)?;
    Ok(v.unwrap_or(0))
}

/// The oldest change number the log still explains (older states: start again).
pub async fn floor(x: &mut impl Exec, org: OrgId) -> Result<i64, StoreError> {
    let v: Option<i64> = run!(x, c => sqlx::query_scalar("SELECT log_floor FROM contact_heads WHERE org_id = $1")
        .bind(org.0).fetch_optional(c).await)?;
    Ok(v.unwrap_or(0))
}

/// Prunes the feed's tables of every organisation: a head remembered at least `keep_ms` ago
/// becomes the log's floor (older log entries go) and the current head is remembered; viewers
/// unused since `viewers_before` go. Returns the log entries deleted.
pub async fn prune(
    tx: &mut Tx,
    now_ms: i64,
    keep_ms: i64,
    viewers_before: i64,
) -> Result<u64, StoreError> {
    exec!(tx, c => sqlx::query(
        "UPDATE contact_heads SET mark_seq = seq, mark_at = $1 WHERE mark_at = 0")
        .bind(now_ms).execute(c).await)?;
    let due: Vec<(Uuid, i64)> = run!(tx, c => sqlx::query_as(
        "SELECT org_id, mark_seq FROM contact_heads WHERE mark_at <= $1")
        .bind(now_ms - keep_ms).fetch_all(c).await)?;
    let mut n = 0;
    for (org, mark) in due {
        n += exec!(tx, c => sqlx::query("DELETE FROM contact_log WHERE org_id = $1 AND seq < $2")
            .bind(org).bind(mark).execute(c).await)?;
        exec!(tx, c => sqlx::query(
            "UPDATE contact_heads SET log_floor = $2, mark_seq = seq, mark_at = $3 WHERE org_id = $1")
            .bind(org).bind(mark).bind(now_ms).execute(c).await)?;
    }
    exec!(tx, c => sqlx::query("DELETE FROM feed_viewers WHERE used_at < $1")
        .bind(viewers_before).execute(c).await)?;
    Ok(n)
}

/// Marks people as changed at `seq` (and, with `created`, as created then).
pub async fn touch(
    tx: &mut Tx,
    org: OrgId,
    seq: i64,
    ids: &[Uuid],
    created: bool,
) -> Result<(), StoreError> {
    let set = if created {
        "change_seq = $2, created_seq = $2"
    } else {
        "change_seq = $2"
    };
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "UPDATE people SET {set} WHERE org_id = $1 AND id IN ({})",
            placeholders(3, chunk.len())
        );
        exec!(tx, c => {
            let mut q = sqlx::query(&sql).bind(org.0).bind(seq);
            for id in chunk { q = q.bind(*id); }
            q.execute(c).await
        })?;
    }
    Ok(())
}

/// Marks everyone in unit `unit` (directly) as changed at `seq` (the unit's name shows on them).
pub async fn touch_unit_members(
    tx: &mut Tx,
    org: OrgId,
    seq: i64,
    unit: Uuid,
) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query(
        "UPDATE people SET change_seq = $2 WHERE org_id = $1 AND id IN \
         (SELECT person_id FROM person_units WHERE unit_id = $3 AND org_id = $1)")
        .bind(org.0).bind(seq).bind(unit).execute(c).await)?;
    Ok(())
}

/// Records what these people were members of before the change at `seq` (the first record of
/// a person at one `seq` wins: it is the state before the transaction).
pub async fn log_priors(
    tx: &mut Tx,
    org: OrgId,
    seq: i64,
    priors: &[(Uuid, Option<Prior>)],
) -> Result<(), StoreError> {
    use carebridge_store::bulk::{Col, Rows, insert};
    if priors.is_empty() {
        return Ok(());
    }
    let mut rows = Rows::new();
    for (id, m) in priors {
        let json = m
            .as_ref()
            .map(|m| serde_json::to_string(m).unwrap_or_default());
        rows.uuid(org.0)
            .int(seq)
            .uuid(*id)
            .opt_text(json.as_deref())
            .end();
    }
    insert(
        tx,
        "contact_log",
        &[
            ("org_id", Col::Uuid),
            ("seq", Col::Int),
            ("person_id", Col::Uuid),
            ("prior", Col::Text),
        ],
        rows,
        "ON CONFLICT DO NOTHING",
    )
    .await?;
    Ok(())
}

/// Current memberships (units, groups) of these people; people without any are absent.
pub async fn memberships(
    x: &mut impl Exec,
    org: OrgId,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Memberships>, StoreError> {
    let mut out: HashMap<Uuid, Memberships> = HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        let ph = placeholders(2, chunk.len());
        let sql = format!(
            "SELECT person_id, unit_id FROM person_units WHERE org_id = $1 AND person_id IN ({ph})"
        );
        let units: Vec<(Uuid, Uuid)> = run!(x, c => {
            let mut q = sqlx::query_as(&sql).bind(org.0);
            for id in chunk { q = q.bind(*id); }
            q.fetch_all(c).await
        })?;
        let sql = format!(
            "SELECT pl.person_id, pl.label_id FROM person_labels pl JOIN labels l ON l.id = pl.label_id \
             WHERE pl.org_id = $1 AND l.kind = 'group' AND pl.person_id IN ({ph})"
        );
        let groups: Vec<(Uuid, Uuid)> = run!(x, c => {
            let mut q = sqlx::query_as(&sql).bind(org.0);
            for id in chunk { q = q.bind(*id); }
            q.fetch_all(c).await
        })?;
        for (p, u) in units {
            out.entry(p).or_default().units.push(u);
        }
        for (p, g) in groups {
            out.entry(p).or_default().groups.push(g);
        }
    }
    for m in out.values_mut() {
        m.units.sort();
        m.groups.sort();
    }
    Ok(out)
}

/// The people who carry a label.
pub async fn label_members(
    x: &mut impl Exec,
    org: OrgId,
    label: Uuid,
) -> Result<Vec<Uuid>, StoreError> {
    Ok(run!(x, c => sqlx::query_scalar(
        "SELECT person_id FROM person_labels WHERE org_id = $1 AND label_id = $2")
        .bind(org.0).bind(label).fetch_all(c).await)?)
}

/// The ids the feed has to look at after `after`, in id order, at most `limit`: with `all`,
/// every person (only those `visible` when given: a snapshot needs no others); otherwise those
/// changed after `from`; and, with a `from`, those with a log record after it (people deleted
/// since). Two index-ordered reads merged here, so a page costs its own size, not the
/// organisation's.
pub async fn candidates(
    x: &mut impl Exec,
    org: OrgId,
    all: bool,
    from: Option<i64>,
    after: Uuid,
    limit: i64,
    visible: Option<&super::people::Visible>,
) -> Result<Vec<Uuid>, StoreError> {
    // Walking everyone, SQLite must take the primary key's range in id order; with a plain
    // `org_id = ?` it prefers an organisation index and sorts all of it on every page
    // (`+` hides the column from the planner; PostgreSQL has no unary `+` on uuid).
    let org_col = match (all, Exec::raw(&mut *x)) {
        (true, carebridge_store::Raw::Sqlite(_)) => "+p.org_id",
        _ => "p.org_id",
    };
    let mut sql = format!("SELECT p.id FROM people p WHERE {org_col} = $1 AND p.id > $2");
    let mut n = 2;
    if !all {
        n += 1;
        sql += &format!(" AND p.change_seq > ${n}");
    }
    let vis = visible.map(|v| super::people::visible_sql(v, n + 1));
    if let Some((clause, ids)) = &vis {
        sql += &format!(" AND {clause}");
        n += ids.len();
    }
    sql += &format!(" ORDER BY p.id LIMIT ${}", n + 1);
    let mut ids: Vec<Uuid> = run!(x, c => {
        let mut q = sqlx::query_scalar(&sql).bind(org.0).bind(after);
        if !all {
            q = q.bind(from.unwrap_or(0));
        }
        if let Some((_, v)) = &vis {
            for id in v { q = q.bind(*id); }
        }
        q.bind(limit).fetch_all(c).await
    })?;
    if let Some(f) = from {
        let gone: Vec<Uuid> = run!(x, c => sqlx::query_scalar(
            "SELECT DISTINCT person_id FROM contact_log WHERE org_id = $1 AND seq > $2 AND person_id > $3 \
             ORDER BY person_id LIMIT $4")
            .bind(org.0).bind(f).bind(after).bind(limit).fetch_all(c).await)?;
        ids.extend(gone);
        ids.sort();
        ids.dedup();
        ids.truncate(usize::try_from(limit).unwrap_or(0));
    }
    Ok(ids)
}

/// Each id's log records after `from`, in order: `(seq, state before that change)`.
pub async fn priors_since(
    x: &mut impl Exec,
    org: OrgId,
    from: i64,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<(i64, Option<Prior>)>>, StoreError> {
    let mut out: HashMap<Uuid, Vec<(i64, Option<Prior>)>> = HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "SELECT person_id, seq, prior FROM contact_log WHERE org_id = $1 AND seq > $2 AND person_id IN ({}) \
             ORDER BY person_id, seq",
            placeholders(3, chunk.len())
        );
        let rows: Vec<(Uuid, i64, Option<String>)> = run!(x, c => {
            let mut q = sqlx::query_as(&sql).bind(org.0).bind(from);
            for id in chunk { q = q.bind(*id); }
            q.fetch_all(c).await
        })?;
        for (id, seq, prior) in rows {
            let m = match prior {
                Some(j) => Some(
                    serde_json::from_str::<Prior>(&j)
                        .map_err(|e| StoreError::Corrupt(format!("contact_log prior: {e}")))?,
                ),
                None => None,
            };
            out.entry(id).or_default().push((seq, m));
        }
    }
    Ok(out)
}

/// `(change_seq, created_seq, active)` of these people.
pub async fn seqs(
    x: &mut impl Exec,
    org: OrgId,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, (i64, i64, bool)>, StoreError> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "SELECT id, change_seq, created_seq, active FROM people WHERE org_id = $1 AND id IN ({})",
            placeholders(2, chunk.len())
        );
        let rows: Vec<(Uuid, i64, i64, bool)> = run!(x, c => {
            let mut q = sqlx::query_as(&sql).bind(org.0);
            for id in chunk { q = q.bind(*id); }
            q.fetch_all(c).await
        })?;
        out.extend(rows.into_iter().map(|(id, a, b, act)| (id, (a, b, act))));
    }
    Ok(out)
}

/// Stores a viewer under its digest, or marks a stored one as used now.
pub async fn save_viewer(
    tx: &mut Tx,
    org: OrgId,
    digest: &str,
    viewer_json: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query(
        "INSERT INTO feed_viewers (org_id, digest, viewer, created_at, used_at) VALUES ($1, $2, $3, $4, $4) \
         ON CONFLICT (org_id, digest) DO UPDATE SET used_at = excluded.used_at")
        .bind(org.0).bind(digest).bind(viewer_json).bind(now_ms).execute(c).await)?;
    Ok(())
}

/// When a stored viewer was last used (`None`: not stored).
pub async fn viewer_used(
    x: &mut impl Exec,
    org: OrgId,
    digest: &str,
) -> Result<Option<i64>, StoreError> {
    Ok(
        run!(x, c => sqlx::query_scalar("SELECT used_at FROM feed_viewers WHERE org_id = $1 AND digest = $2")
        .bind(org.0).bind(digest).fetch_optional(c).await)?,
    )
}

/// A stored viewer's JSON.
pub async fn viewer(
    x: &mut impl Exec,
    org: OrgId,
    digest: &str,
) -> Result<Option<String>, StoreError> {
    Ok(
        run!(x, c => sqlx::query_scalar("SELECT viewer FROM feed_viewers WHERE org_id = $1 AND digest = $2")
        .bind(org.0).bind(digest).fetch_optional(c).await)?,
    )
}
