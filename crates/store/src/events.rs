//! The event outbox: facts other roles must learn about (a duty's new roster, later directory
//! changes), appended in the same transaction as the change itself, read by consumers in `seq`
//! order. An event carries a complete state (e.g. the whole roster and its version), not a
//! delta, so a consumer that missed or reordered events still converges on the newest one.
//!
//! `seq` is allocated at insert; on PostgreSQL two concurrent transactions may commit their
//! events out of `seq` order, which is why payloads carry their own per-subject versions.

use std::sync::atomic::{AtomicBool, Ordering};

use uuid::Uuid;

use crate::{Backend, Exec, StoreError, Tx, exec, run};

/// The PostgreSQL channel told (at commit) that roster events were appended.
pub const CHANNEL: &str = "carebridge_events";

/// Counts this process's commits that appended events (SQLite; on PostgreSQL `NOTIFY` on
/// [`CHANNEL`] reaches every node). A watch channel rather than a bare notification: a
/// consumer busy with a step when a commit lands still sees the change when it next waits.
static COMMITTED: std::sync::LazyLock<tokio::sync::watch::Sender<u64>> =
    std::sync::LazyLock::new(|| tokio::sync::watch::channel(0).0);

/// A consumer's view of [`COMMITTED`]: `changed().await` returns once events were committed
/// after the last time it looked.
pub fn committed_events() -> tokio::sync::watch::Receiver<u64> {
    COMMITTED.subscribe()
}

/// Set by [`append`] on SQLite, where one writer means one write transaction at a time: the
/// commit of that transaction wakes the consumers ([`Tx::commit`]). A rolled-back
/// transaction leaves it set; the next commit then wakes them for nothing, which is harmless.
pub(crate) static APPENDED: AtomicBool = AtomicBool::new(false);

/// Called by [`Tx::commit`] after a successful SQLite commit.
pub(crate) fn committed() {
    if APPENDED.swap(false, Ordering::AcqRel) {
        COMMITTED.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// One stored event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub seq: i64,
    pub topic: String,
    pub subject_id: Uuid,
    /// JSON document.
    pub payload: String,
    pub created_at: i64,
}

/// Appends an event inside the transaction of the change it reports.
pub async fn append(
    tx: &mut Tx,
    org: Uuid,
    topic: &str,
    subject: Uuid,
    payload: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query(
        "INSERT INTO events (org_id, topic, subject_id, payload, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(org).bind(topic).bind(subject).bind(payload).bind(now_ms).execute(c).await)?;
    if topic != crate::rosters::TOPIC {
        return Ok(());
    }
    match tx.backend() {
        Backend::Sqlite => APPENDED.store(true, Ordering::Release),
        Backend::Postgres => {
            // Delivered to every listening node when (and only if) the transaction commits.
            exec!(tx, c => sqlx::query("SELECT pg_notify($1, '')").bind(CHANNEL).execute(c).await)?;
        }
    }
    Ok(())
}

/// Events of one organisation and topic after `after_seq`, oldest first.
pub async fn after(
    x: &mut impl Exec,
    org: Uuid,
    topic: &str,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<Event>, StoreError> {
    let rows: Vec<(i64, String, Uuid, String, i64)> = run!(x, c => sqlx::query_as(
        "SELECT seq, topic, subject_id, payload, created_at FROM events WHERE org_id = $1 AND topic = $2 AND seq > $3 ORDER BY seq LIMIT $4")
        .bind(org).bind(topic).bind(after_seq).bind(limit).fetch_all(c).await)?;
    Ok(rows
        .into_iter()
        .map(|(seq, topic, subject_id, payload, created_at)| Event {
            seq,
            topic,
            subject_id,
            payload,
            created_at,
        })
        .collect())
}
