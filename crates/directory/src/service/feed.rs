//! The offline sync feed of contacts (`GET /contacts/changes`): a caller's upserts and removals
//! since their cursor, only ever of people they may see.
//!
//! A cursor (signed, so it cannot be forged) says what the client holds: the state of the
//! organisation at change number `seq`, seen as viewer `viewer` (a digest of the rules, stored
//! in `feed_viewers`). An answer is one page of a *pass* that brings the client to the head
//! change number read when the pass began, as the caller's current viewer:
//!
//! - no cursor: every person, upserts of those visible (a snapshot);
//! - same viewer as before: the people changed since `seq` and those deleted since;
//! - another viewer (a grant, role or membership of the caller changed, or the unit tree
//!   moved): every person, so that people who became visible come and those who no longer are
//!   go.
//!
//! For each person looked at: the fields the current viewer sees now (nothing for deactivated
//! or deleted people) and the fields the client's viewer saw at `seq` (the person's state then
//! comes from `contact_log` when they changed since). Visible now and changed or differently visible:
//! upsert; invisible now but visible then: removal. Removals name only people the client's
//! viewer could see at some point since its last sync (one whose page a pass had passed before
//! they came into view may be named without having been given), so the feed does not leak the
//! ids of others. When the caller's viewer changes in the
//! middle of a pass, or the cursor belongs to someone else, or its viewer is gone, or it is
//! older than the pruned log explains (30 to 60 days, [`prune`]), the answer starts again with
//! `reset: true` and a snapshot.

use std::collections::HashMap;

use carebridge_domain::auth::Principal;
use carebridge_domain::visibility::{Fields, Memberships, Viewer};
use carebridge_domain::{Timestamp, Violations};
use carebridge_proto::directory::{ChangesQuery, ContactChanges};
use carebridge_store::Db;
use carebridge_store::orgs::OrgRef;
use carebridge_web::{CursorKey, ServiceError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::repo::feed::Prior;
use crate::repo::{feed as repo, people as people_repo};
use crate::service::access;

const DEFAULT_LIMIT: u32 = 500;
const MAX_LIMIT: u32 = 1000;

/// What the client holds, and the pass under way.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Cursor {
    /// Whose cursor this is.
    who: String,
    /// The client holds the state at this change number (none yet: `None`) …
    seq: Option<i64>,
    /// … or, for people read while the pass that brought it there ran, any state up to this
    /// one.
    seen: i64,
    /// As seen by this viewer (digest).
    viewer: String,
    pass: Option<Pass>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Pass {
    /// The change number the pass brings the client to.
    target: i64,
    /// The newest change number that may have been read during the pass.
    seen: i64,
    /// The viewer it brings the client to.
    viewer: String,
    /// Look at everyone (else only people changed since `seq`).
    all: bool,
    /// The last id looked at.
    after: Uuid,
}

/// A person's state (memberships, active) and the change numbers during which it held.
struct State<'a> {
    memberships: &'a Memberships,
    active: bool,
    /// It began at this change number …
    from: i64,
    /// … and ended before this one (`None`: it is the current state).
    until: Option<i64>,
}

/// Every state of a person from their change log after `from` and their current row (`None`:
/// deleted).
fn states<'a>(
    logs: &'a [(i64, Option<Prior>)],
    current: Option<(&'a Memberships, bool, i64)>,
) -> Vec<State<'a>> {
    let mut out = Vec::new();
    let mut begin: Option<i64> = None;
    for (seq, prior) in logs {
        if let Some(p) = prior {
            out.push(State {
                memberships: &p.memberships,
                active: p.active,
                // The first logged state began at creation (or before `from`); later ones
                // at the previous change.
                from: begin.unwrap_or(p.created),
                until: Some(*seq),
            });
        }
        begin = Some(*seq);
    }
    if let Some((m, active, created)) = current {
        out.push(State {
            memberships: m,
            active,
            from: begin.unwrap_or(created),
            until: None,
        });
    }
    out
}

/// How long the log explains past states (pruned by [`prune`]; 30 to 60 days are kept).
pub const LOG_KEPT_MS: i64 = 30 * 24 * 3600 * 1000;
/// Viewers no pass ended as for this long are dropped.
const VIEWER_KEPT_MS: i64 = 90 * 24 * 3600 * 1000;
/// A stored viewer's use is written at most this often.
const VIEWER_TOUCH_MS: i64 = 24 * 3600 * 1000;

/// Housekeeping of the feed's tables (every organisation): see [`repo::prune`].
pub async fn prune(db: &Db, now: Timestamp) -> Result<u64, ServiceError> {
    let now = now.as_millisecond();
    let mut tx = db.begin().await?;
    let n = repo::prune(&mut tx, now, LOG_KEPT_MS, now - VIEWER_KEPT_MS).await?;
    tx.commit().await?;
    Ok(n)
}

pub async fn changes(
    db: &Db,
    principal: &Principal,
    org: &OrgRef,
    key: &CursorKey,
    q: &ChangesQuery,
    now: Timestamp,
) -> Result<ContactChanges, ServiceError> {
    let (page, from) = changes_once(db, principal, org, key, q, now).await?;
    // Pruned while this page read the log: the page may miss what the pruned entries
    // explained, so the caller starts again (the second call sees the floor).
    if let Some(from) = from
        && from < repo::floor(&mut db.read().await?, org.id).await?
    {
        return Ok(changes_once(db, principal, org, key, q, now).await?.0);
    }
    Ok(page)
}

/// One answer, with the change number it read the log from (`None`: no log was read).
async fn changes_once(
    db: &Db,
    principal: &Principal,
    org: &OrgRef,
    key: &CursorKey,
    q: &ChangesQuery,
    now: Timestamp,
) -> Result<(ContactChanges, Option<i64>), ServiceError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ServiceError::Invalid(Violations::single(
            "/query/limit",
            "out_of_range",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        )));
    }
    let given: Option<Cursor> = key.decode_opt("contacts", q.cursor.as_deref())?;
    let mut c = db.read().await?;
    // The head first: whatever is read afterwards is at least this new.
    let head = repo::head(&mut c, org.id).await?;
    let floor = repo::floor(&mut c, org.id).await?;
    let viewer = access::viewer(&mut c, principal, org).await?;
    let digest = viewer.digest();
    let who = access::viewer_key(principal);
    let fresh = |reset: bool| {
        (
            reset,
            None,
            head,
            None,
            Pass {
                target: head,
                seen: head,
                viewer: digest.clone(),
                all: true,
                after: Uuid::nil(),
            },
        )
    };
    // `from`/`seen`: the client's state; `old`: the viewer it holds it as.
    type Start = (bool, Option<i64>, i64, Option<Viewer>, Pass);
    let (reset, from, seen, old, mut pass): Start = match given {
        None => fresh(false),
        Some(cur) if cur.who != who => fresh(true),
        // A database restored from a backup: the client knows more than the server.
        Some(cur) if cur.seen > head => fresh(true),
        // Older than the log explains (pruned after 30 to 60 days): start again.
        Some(cur) if cur.seq.is_some_and(|s| s < floor) => fresh(true),
        Some(cur) => {
            let old = match cur.seq {
                Some(_) => repo::viewer(&mut c, org.id, &cur.viewer)
                    .await?
                    .and_then(|j| serde_json::from_str::<Viewer>(&j).ok()),
                None => None,
            };
            match (cur.seq, old, cur.pass) {
                // The viewer the client holds its state as is gone: start again.
                (Some(_), None, _) => fresh(true),
                // The caller's view changed in the middle of a pass: start again.
                (_, _, Some(p)) if p.viewer != digest => fresh(true),
                (seq, old, Some(p)) => (false, seq, cur.seen, old, p),
                (seq, old, None) => (
                    false,
                    seq,
                    cur.seen,
                    old,
                    Pass {
                        target: head,
                        seen: head,
                        viewer: digest.clone(),
                        all: cur.viewer != digest,
                        after: Uuid::nil(),
                    },
                ),
            }
        }
    };
    // A snapshot looks only at people the viewer sees; a pass after a change of viewer looks
    // at everyone (some may have to go).
    let visible = (from.is_none() && !viewer.all).then(|| people_repo::Visible {
        own: viewer.own,
        units: viewer.unit_ids(),
        groups: viewer.group_ids(),
    });
    let ids = repo::candidates(
        &mut c,
        org.id,
        pass.all || from.is_none(),
        from,
        pass.after,
        i64::from(limit),
        visible.as_ref(),
    )
    .await?;
    let seqs = repo::seqs(&mut c, org.id, &ids).await?;
    let memberships = repo::memberships(&mut c, org.id, &ids).await?;
    let logs = match from {
        Some(f) => repo::priors_since(&mut c, org.id, f, &ids).await?,
        None => HashMap::new(),
    };
    let none = Memberships::default();
    let mut upserts: Vec<(Uuid, Fields)> = Vec::new();
    let mut removals = Vec::new();
    for id in &ids {
        let current = seqs.get(id);
        let now_m = memberships.get(id).unwrap_or(&none);
        let new_f = match current {
            Some((_, _, true)) => viewer.fields(*id, now_m),
            _ => Fields::NONE,
        };
        // What the client's viewer may have shown of them: any state that held at some point
        // between the client's `from` and `seen` (people read during the last pass may be
        // newer than its target).
        let old_f = match (from, &old) {
            (Some(f), Some(ov)) => {
                let no_logs = Vec::new();
                let log = logs.get(id).unwrap_or(&no_logs);
                let cur = current.map(|(_, created, active)| (now_m, *active, *created));
                states(log, cur)
                    .iter()
                    .filter(|s| s.active && s.from <= seen && s.until.is_none_or(|u| u > f))
                    .fold(Fields::NONE, |acc, s| {
                        acc.union(ov.fields(*id, s.memberships))
                    })
            }
            _ => Fields::NONE,
        };
        let changed = match from {
            None => true,
            Some(f) => current.is_some_and(|(s, _, _)| *s > f),
        };
        if !new_f.is_empty() {
            if changed || old_f != new_f {
                upserts.push((*id, new_f));
            }
        } else if !old_f.is_empty() {
            removals.push(*id);
        }
    }
    let wanted: Vec<Uuid> = upserts.iter().map(|u| u.0).collect();
    let mut people = people_repo::by_ids(&mut c, org.id, &wanted).await?;
    // Whatever this page read is no newer than the head read now.
    pass.seen = pass.seen.max(repo::head(&mut c, org.id).await?);
    let fields: HashMap<Uuid, Fields> = upserts.into_iter().collect();
    people.sort_by_key(|p| p.id);
    for p in &mut people {
        access::mask(p, fields.get(&p.id).copied().unwrap_or(Fields::NONE));
    }
    drop(c);
    let used = repo::viewer_used(&mut db.read().await?, org.id, &pass.viewer).await?;
    if used.is_none_or(|at| at < now.as_millisecond() - VIEWER_TOUCH_MS) {
        let json = serde_json::to_string(&viewer).map_err(|e| {
            ServiceError::Store(carebridge_store::StoreError::Corrupt(format!(
                "viewer json: {e}"
            )))
        })?;
        let mut tx = db.begin().await?;
        repo::save_viewer(&mut tx, org.id, &pass.viewer, &json, now.as_millisecond()).await?;
        tx.commit().await?;
    }
    let more = ids.len() == limit as usize;
    let next = if more {
        Cursor {
            who,
            seq: from,
            seen,
            viewer: if from.is_some() {
                old.as_ref().map(Viewer::digest).unwrap_or_default()
            } else {
                String::new()
            },
            pass: Some(Pass {
                after: ids.last().copied().unwrap_or(pass.after),
                ..pass
            }),
        }
    } else {
        Cursor {
            who,
            seq: Some(pass.target),
            seen: pass.seen,
            viewer: pass.viewer,
            pass: None,
        }
    };
    Ok((
        ContactChanges {
            reset,
            upserts: people,
            removals,
            more,
            next_cursor: key.encode("contacts", &next),
        },
        from,
    ))
}
