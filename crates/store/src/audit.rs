//! Appending to and reading the per-organisation audit hash chain. [`append`] runs inside the
//! caller's transaction, so an event exists exactly when its change does. The head row
//! (`audit_heads`) is updated first: on PostgreSQL that row lock orders concurrent writers of one
//! organisation; on SQLite the single writer connection does.

use carebridge_domain::audit::{AuditEntry, AuditRecord, chain_hash, genesis};
use carebridge_domain::{OrgId, Timestamp};

use crate::{Exec, StoreError, Tx, exec, run};

/// Appends one event to `org`'s chain within `tx`.
pub async fn append(
    tx: &mut Tx,
    org: OrgId,
    at: Timestamp,
    entry: &AuditEntry,
) -> Result<AuditRecord, StoreError> {
    let g = genesis(org);
    exec!(tx, c => sqlx::query("INSERT INTO audit_heads (org_id, seq, hash) VALUES ($1, 0, $2) ON CONFLICT (org_id) DO NOTHING")
        .bind(org.0).bind(&g).execute(c).await)?;
    let (seq, prev_hash): (i64, String) = run!(tx, c => sqlx::query_as(
        "UPDATE audit_heads SET seq = seq + 1 WHERE org_id = $1 RETURNING seq, hash")
        .bind(org.0).fetch_one(c).await)?;
    let at_ms = at.as_millisecond();
    let hash = chain_hash(org, &prev_hash, seq, at_ms, entry);
    exec!(tx, c => sqlx::query("UPDATE audit_heads SET hash = $2 WHERE org_id = $1")
        .bind(org.0).bind(&hash).execute(c).await)?;
    exec!(tx, c => sqlx::query(
        "INSERT INTO audit_events (org_id, seq, at, actor, action, target_type, target_id, before_digest, after_digest, source, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)")
        .bind(org.0).bind(seq).bind(at_ms).bind(&entry.actor).bind(&entry.action).bind(&entry.target_type)
        .bind(&entry.target_id).bind(&entry.before_digest).bind(&entry.after_digest).bind(&entry.source)
        .bind(&prev_hash).bind(&hash).execute(c).await)?;
    Ok(AuditRecord {
        seq,
        at_ms,
        actor: entry.actor.clone(),
        action: entry.action.clone(),
        target_type: entry.target_type.clone(),
        target_id: entry.target_id.clone(),
        before_digest: entry.before_digest.clone(),
        after_digest: entry.after_digest.clone(),
        source: entry.source.clone(),
        prev_hash,
        hash,
    })
}

/// The last event of an organisation's chain: its number and hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: String,
}

/// `org`'s chain head within `tx`, created (as the genesis) when missing. On PostgreSQL the head
/// row stays locked until the transaction ends, so nobody else appends meanwhile; on SQLite the
/// transaction's write lock does the same. A bulk writer reads it once, then keeps it (see
/// [`chain_rows`]).
pub async fn head_for_append(tx: &mut Tx, org: OrgId) -> Result<ChainHead, StoreError> {
    let g = genesis(org);
    exec!(tx, c => sqlx::query("INSERT INTO audit_heads (org_id, seq, hash) VALUES ($1, 0, $2) ON CONFLICT (org_id) DO NOTHING")
        .bind(org.0).bind(&g).execute(c).await)?;
    let (seq, hash): (i64, String) = run!(tx, c => sqlx::query_as(
        "UPDATE audit_heads SET seq = seq WHERE org_id = $1 RETURNING seq, hash")
        .bind(org.0).fetch_one(c).await)?;
    Ok(ChainHead { seq, hash })
}

/// The rows of `entries` appended after `from`, and the head after them, with the same hashes
/// [`append`] would give one by one: pure CPU work (a hash per event), which a bulk writer does
/// on another thread while its connection writes. [`append_rows`] writes them.
pub fn chain_rows(
    org: OrgId,
    from: &ChainHead,
    at: Timestamp,
    entries: Vec<AuditEntry>,
) -> (crate::bulk::Rows, ChainHead) {
    let mut rows = crate::bulk::Rows::with_capacity(entries.len(), AUDIT_COLS.len());
    let at_ms = at.as_millisecond();
    let mut prev = from.hash.clone();
    let mut seq = from.seq;
    for e in entries {
        seq += 1;
        let hash = chain_hash(org, &prev, seq, at_ms, &e);
        rows.uuid(org.0)
            .int(seq)
            .int(at_ms)
            .text_owned(e.actor)
            .text_owned(e.action)
            .text_owned(e.target_type)
            .text_owned(e.target_id)
            .opt_text_owned(e.before_digest)
            .opt_text_owned(e.after_digest)
            .text_owned(e.source)
            .text_owned(prev)
            .text(&hash)
            .end();
        prev = hash;
    }
    (rows, ChainHead { seq, hash: prev })
}

/// Writes rows made by [`chain_rows`] from head `from` to head `to`. The head must still be
/// `from` (else [`StoreError::Corrupt`]: the rows would not continue the chain).
pub async fn append_rows(
    tx: &mut Tx,
    org: OrgId,
    from: &ChainHead,
    rows: crate::bulk::Rows,
    to: &ChainHead,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let moved = exec!(tx, c => sqlx::query(
        "UPDATE audit_heads SET seq = $2, hash = $3 WHERE org_id = $1 AND seq = $4 AND hash = $5")
        .bind(org.0).bind(to.seq).bind(&to.hash).bind(from.seq).bind(&from.hash)
        .execute(c).await)?;
    if moved != 1 {
        return Err(StoreError::Corrupt(
            "the audit chain's head moved during a bulk append".into(),
        ));
    }
    crate::bulk::insert(tx, "audit_events", AUDIT_COLS, rows, "").await?;
    Ok(())
}

const AUDIT_COLS: &[(&str, crate::bulk::Col)] = {
    use crate::bulk::Col;
    &[
        ("org_id", Col::Uuid),
        ("seq", Col::Int),
        ("at", Col::Int),
        ("actor", Col::Text),
        ("action", Col::Text),
        ("target_type", Col::Text),
        ("target_id", Col::Text),
        ("before_digest", Col::Text),
        ("after_digest", Col::Text),
        ("source", Col::Text),
        ("prev_hash", Col::Text),
        ("hash", Col::Text),
    ]
};

/// The audit entry of a change by `actor` (digests of the before/after states as JSON).
pub fn entry<B: serde::Serialize, A: serde::Serialize>(
    actor: &carebridge_domain::auth::Actor,
    action: &str,
    target_type: &str,
    target_id: &str,
    before: Option<&B>,
    after: Option<&A>,
) -> AuditEntry {
    AuditEntry {
        actor: actor.principal.audit_label(),
        action: action.to_string(),
        target_type: target_type.to_string(),
        target_id: target_id.to_string(),
        before_digest: before.and_then(digest_json),
        after_digest: after.and_then(digest_json),
        source: actor.source.as_str().to_string(),
    }
}

/// `carebridge_domain::audit::digest` of a state's JSON, hashed as it is written (no buffer
/// for the JSON); `None` if it cannot be written as JSON.
fn digest_json<T: serde::Serialize + ?Sized>(state: &T) -> Option<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    serde_json::to_writer(&mut h, state).ok()?;
    Some(hex::encode(h.finalize()))
}

type Row = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    String,
);

fn from_row(r: Row) -> AuditRecord {
    AuditRecord {
        seq: r.0,
        at_ms: r.1,
        actor: r.2,
        action: r.3,
        target_type: r.4,
        target_id: r.5,
        before_digest: r.6,
        after_digest: r.7,
        source: r.8,
        prev_hash: r.9,
        hash: r.10,
    }
}

const COLS: &str = "seq, at, actor, action, target_type, target_id, before_digest, after_digest, source, prev_hash, hash";

/// Events of `org` with `seq > after`, oldest first, at most `limit`.
pub async fn page(
    x: &mut impl Exec,
    org: OrgId,
    after: i64,
    limit: i64,
) -> Result<Vec<AuditRecord>, StoreError> {
    let sql = format!(
        "SELECT {COLS} FROM audit_events WHERE org_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
    );
    let rows: Vec<Row> =
        run!(x, c => sqlx::query_as(&sql).bind(org.0).bind(after).bind(limit).fetch_all(c).await)?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// Events of `org` with `seq < before`, newest first, at most `limit` (the API's default order).
pub async fn page_desc(
    x: &mut impl Exec,
    org: OrgId,
    before: i64,
    limit: i64,
    filter: &AuditFilter,
) -> Result<Vec<AuditRecord>, StoreError> {
    // Each present filter adds one `$n`, so the statement text is one of eight and each
    // filter can use its index. `action` matches a prefix (`person.` finds every person
    // action), with LIKE's wildcards in the value escaped.
    let mut sql = format!("SELECT {COLS} FROM audit_events WHERE org_id = $1 AND seq < $2");
    let mut binds: Vec<String> = Vec::new();
    for (col, v) in [
        ("target_id", filter.target.clone()),
        ("actor", filter.actor.clone()),
    ] {
        if let Some(v) = v {
            binds.push(v);
            sql.push_str(&format!(" AND {col} = ${}", binds.len() + 3));
        }
    }
    if let Some(a) = &filter.action {
        binds.push(format!("{}%", crate::like_escape(a)));
        sql.push_str(&format!(
            " AND action LIKE ${} ESCAPE '\\'",
            binds.len() + 3
        ));
    }
    sql.push_str(" ORDER BY seq DESC LIMIT $3");
    let rows: Vec<Row> = run!(x, c => {
        let mut q = sqlx::query_as(&sql).bind(org.0).bind(before).bind(limit);
        for b in &binds {
            q = q.bind(b.clone());
        }
        q.fetch_all(c).await
    })?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// Which audit events a page shows: all, or those of one target, one actor, and/or actions
/// starting with a prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub target: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
}

/// The recorded head `(seq, hash)` of `org`'s chain.
pub async fn head(x: &mut impl Exec, org: OrgId) -> Result<Option<(i64, String)>, StoreError> {
    Ok(
        run!(x, c => sqlx::query_as("SELECT seq, hash FROM audit_heads WHERE org_id = $1").bind(org.0).fetch_optional(c).await)?,
    )
}

/// Every organisation that has an audit chain.
pub async fn orgs(x: &mut impl Exec) -> Result<Vec<OrgId>, StoreError> {
    let ids: Vec<uuid::Uuid> = run!(x, c => sqlx::query_scalar("SELECT org_id FROM audit_heads ORDER BY org_id").fetch_all(c).await)?;
    Ok(ids.into_iter().map(OrgId).collect())
}

/// Records a change by `actor` on a target within `tx`: digests of the before/after states
/// (serialised as JSON), never the states themselves.
pub async fn record<B: serde::Serialize, A: serde::Serialize>(
    tx: &mut Tx,
    org: OrgId,
    actor: &carebridge_domain::auth::Actor,
    action: &str,
    target_type: &str,
    target_id: &str,
    before: Option<&B>,
    after: Option<&A>,
    at: Timestamp,
) -> Result<AuditRecord, StoreError> {
    let entry = entry(actor, action, target_type, target_id, before, after);
    append(tx, org, at, &entry).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_digest_is_the_digest_of_the_json() {
        use carebridge_domain::audit::digest;
        let state = serde_json::json!({"name": "Anna Müller", "phones": ["+41791234567"], "n": 3});
        let bytes = serde_json::to_vec(&state).unwrap();
        assert_eq!(digest_json(&state), Some(digest(&bytes)));
        assert_ne!(digest_json("other"), Some(digest(&bytes)));
    }
}
