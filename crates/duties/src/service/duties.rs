//! Duties: create, read, the calendar listing, change (incl. move and cancel), delete, rosters
//! and the roster event feed.

use std::collections::HashSet;

use carebridge_domain::auth::{Actor, Permission, Reach};
use carebridge_domain::duty::{DutyInput, DutyState, PositionInput, check_duty, check_positions};
use carebridge_domain::{DutyId, PositionId, Timestamp, Violations};
use carebridge_proto::Page;
use carebridge_proto::duties::{
    CreateDuty, DutiesQuery, Duty, EventsQuery, PositionInput as WirePosition, Roster, RosterEvent,
    UpdateDuty,
};
use carebridge_store::orgs::OrgRef;
use carebridge_store::{Db, Tx, audit, events, features, rosters, run, sqlx};
use carebridge_web::idem::{self, Idem, Outcome};
use carebridge_web::{CursorKey, ServiceError};
use uuid::Uuid;

use super::{authorize, instant, reach};
use crate::repo::duties::{self as repo, Scope, Stored};
use crate::repo::{assignments as assignments_repo, qualifications as quals_repo};

pub(crate) const NOT_FOUND: ServiceError = ServiceError::NotFound { what: "duty" };

/// The path of a unit of the organisation, or a violation at `pointer`.
async fn unit_path(
    tx: &mut impl carebridge_store::Exec,
    org: &OrgRef,
    unit: Uuid,
    pointer: &str,
) -> Result<String, ServiceError> {
    let p: Option<String> = run!(tx, c => sqlx::query_scalar("SELECT path FROM units WHERE org_id = $1 AND id = $2")
        .bind(org.id.0).bind(unit).fetch_optional(c).await)?;
    p.ok_or_else(|| {
        Violations::single(pointer, "unknown_unit", "no such unit in this organisation").into()
    })
}

/// Refuses switching the chat on unless the organisation has the chat feature.
pub(crate) async fn check_chat(tx: &mut Tx, org: &OrgRef, on: bool) -> Result<(), ServiceError> {
    if on && !features::enabled(tx, org.id.0, "chat").await? {
        return Err(ServiceError::Conflict {
            code: "chat_not_enabled",
            detail: "the organisation has not switched the chat feature on (PUT /api/v1/orgs/{org}/features/chat)".into(),
        });
    }
    Ok(())
}

/// Checks positions against the catalogue; returns `(id, name, qualification, needed)` rows.
async fn positions(
    tx: &mut Tx,
    org: &OrgRef,
    list: &[WirePosition],
    existing: &HashSet<Uuid>,
    now: Timestamp,
) -> Result<Vec<(Uuid, String, Option<Uuid>, i64)>, ServiceError> {
    let names = check_positions(
        &list
            .iter()
            .map(|p| PositionInput {
                name: &p.name,
                count: p.needed,
            })
            .collect::<Vec<_>>(),
    )?;
    let mut v = Violations::new();
    let quals: Vec<Uuid> = list.iter().filter_map(|p| p.qualification_id).collect();
    let known = quals_repo::existing(tx, org.id, &quals).await?;
    let mut out = Vec::with_capacity(list.len());
    for (i, (p, name)) in list.iter().zip(names).enumerate() {
        if let Some(q) = p.qualification_id
            && !known.contains(&q)
        {
            v.push(
                format!("/positions/{i}/qualification_id"),
                "unknown_qualification",
                "no such qualification in this organisation",
            );
        }
        let id = match p.id {
            Some(id) if existing.contains(&id) => id,
            Some(_) => {
                v.push(
                    format!("/positions/{i}/id"),
                    "unknown_position",
                    "no such position on this duty; leave out the id for a new one",
                );
                continue;
            }
            None => PositionId::generate(now).0,
        };
        out.push((id, name, p.qualification_id, p.needed));
    }
    v.into_result()?;
    Ok(out)
}

pub async fn create_in(
    tx: &mut Tx,
    actor: &Actor,
    org: &OrgRef,
    input: &CreateDuty,
    now: Timestamp,
) -> Result<Duty, ServiceError> {
    let path = unit_path(tx, org, input.unit_id, "/unit_id").await?;
    authorize(actor, org, Permission::DutiesWrite, &path)?;
    let f = check_duty(&DutyInput {
        title: &input.title,
        location: input.location.as_deref(),
        description: input.description.as_deref(),
        starts_at: &input.starts_at,
        ends_at: &input.ends_at,
        time_zone: input.time_zone.as_deref().unwrap_or("UTC"),
    })?;
    check_chat(tx, org, input.chat).await?;
    let pos = positions(tx, org, &input.positions, &HashSet::new(), now).await?;
    let d = Duty {
        id: DutyId::generate(now).0,
        unit_id: input.unit_id,
        title: f.title,
        location: f.location,
        description: f.description,
        starts_at: f.starts_at,
        ends_at: f.ends_at,
        starts_local: repo::local(f.starts_at, &f.time_zone),
        ends_local: repo::local(f.ends_at, &f.time_zone),
        time_zone: f.time_zone,
        state: DutyState::Planned.as_str().into(),
        chat: input.chat,
        roster_version: 0,
        positions: Vec::new(),
        confirmed: 0,
        requested: 0,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    repo::insert(tx, org.id, &d).await?;
    repo::write_positions(tx, org.id, d.id, &pos, &[]).await?;
    let d = repo::get(tx, org.id, d.id).await?.ok_or(NOT_FOUND)?.duty;
    audit::record(
        tx,
        org.id,
        actor,
        "duty.create",
        "duty",
        &d.id.to_string(),
        None::<&Duty>,
        Some(&d),
        now,
    )
    .await?;
    Ok(d)
}

pub async fn create(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    input: CreateDuty,
    idem: Option<Idem>,
    now: Timestamp,
) -> Result<Outcome<Duty>, ServiceError> {
    idem::create(db, idem, now.as_millisecond(), async |tx| {
        create_in(tx, actor, org, &input, now).await
    })
    .await
}

/// A duty the actor may read.
pub async fn get(db: &Db, actor: &Actor, org: &OrgRef, id: Uuid) -> Result<Duty, ServiceError> {
    let mut c = db.read().await?;
    let s = repo::get(&mut c, org.id, id).await?.ok_or(NOT_FOUND)?;
    authorize(actor, org, Permission::DutiesRead, &s.unit_path)?;
    Ok(s.duty)
}

/// The calendar: duties overlapping `[from, to)` (default: the coming 7 days) that the actor
/// may read, in start order.
pub async fn list(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    cursor: &CursorKey,
    q: &DutiesQuery,
    limit: i64,
    now: Timestamp,
) -> Result<Page<Duty>, ServiceError> {
    let r = reach(actor, org, Permission::DutiesRead)?;
    let from = instant("from", q.from.as_deref())?.unwrap_or(now);
    let to =
        instant("to", q.to.as_deref())?.unwrap_or(from + jiff::SignedDuration::from_hours(24 * 7));
    let state = match q.state.as_deref() {
        None => None,
        Some(s) => Some(
            DutyState::parse(s)
                .ok_or_else(|| {
                    Violations::single(
                        "/query/state",
                        "invalid_state",
                        format!("must be one of {}", DutyState::expected()),
                    )
                })?
                .as_str(),
        ),
    };
    let after: Option<(i64, Uuid)> = cursor.decode_opt("duties", q.cursor.as_deref())?;
    let mut c = db.read().await?;
    let mut paths: Vec<String> = match &r {
        Reach::Units(p) => p.clone(),
        _ => Vec::new(),
    };
    if let Some(u) = q.unit_id {
        let p = unit_path(&mut c, org, u, "/query/unit_id").await?;
        match &r {
            Reach::All => paths = vec![p],
            // Narrow each reachable subtree to the asked one.
            _ => {
                paths = paths
                    .iter()
                    .filter_map(|root| {
                        if p.starts_with(root.as_str()) {
                            Some(p.clone())
                        } else if root.starts_with(p.as_str()) {
                            Some(root.clone())
                        } else {
                            None
                        }
                    })
                    .collect();
            }
        }
    }
    let scope = if matches!(r, Reach::All) && q.unit_id.is_none() {
        Scope::All
    } else {
        Scope::Units(&paths)
    };
    let items = repo::page(
        &mut c,
        org.id,
        from.as_millisecond(),
        to.as_millisecond(),
        scope,
        state,
        after,
        limit + 1,
    )
    .await?;
    let items: Vec<Duty> = items.into_iter().map(|s| s.duty).collect();
    Ok(cursor.page("duties", items, limit, |d| {
        (d.starts_at.as_millisecond(), d.id)
    }))
}

/// Changes a duty. Moving (start, end), cancelling, switching the chat or changing the unit
/// emits a roster event; removing a position that people hold is refused.
pub async fn update(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    id: Uuid,
    if_match: i64,
    patch: UpdateDuty,
    now: Timestamp,
) -> Result<Duty, ServiceError> {
    let mut tx = db.begin().await?;
    let cur = repo::get(&mut tx, org.id, id).await?.ok_or(NOT_FOUND)?;
    authorize(actor, org, Permission::DutiesWrite, &cur.unit_path)?;
    if cur.duty.version != if_match {
        return Err(ServiceError::VersionMismatch {
            current: cur.duty.version,
        });
    }
    let d = &cur.duty;
    let start_s = d.starts_at.to_string();
    let end_s = d.ends_at.to_string();
    let loc = match &patch.location {
        Some(v) => v.clone(),
        None => d.location.clone(),
    };
    let desc = match &patch.description {
        Some(v) => v.clone(),
        None => d.description.clone(),
    };
    let f = check_duty(&DutyInput {
        title: patch.title.as_deref().unwrap_or(&d.title),
        location: loc.as_deref(),
        description: desc.as_deref(),
        starts_at: patch.starts_at.as_deref().unwrap_or(&start_s),
        ends_at: patch.ends_at.as_deref().unwrap_or(&end_s),
        time_zone: patch.time_zone.as_deref().unwrap_or(&d.time_zone),
    })?;
    let state = match patch.state.as_deref() {
        None => DutyState::parse(&d.state).unwrap_or(DutyState::Planned),
        Some(s) => DutyState::parse(s).ok_or_else(|| {
            Violations::single(
                "/state",
                "invalid_state",
                format!("must be one of {}", DutyState::expected()),
            )
        })?,
    };
    let mut next = d.clone();
    if let Some(u) = patch.unit_id
        && u != d.unit_id
    {
        let p = unit_path(&mut tx, org, u, "/unit_id").await?;
        authorize(actor, org, Permission::DutiesWrite, &p)?;
        next.unit_id = u;
    }
    if let Some(chat) = patch.chat {
        check_chat(&mut tx, org, chat && !d.chat).await?;
        next.chat = chat;
    }
    next.title = f.title;
    next.location = f.location;
    next.description = f.description;
    next.starts_at = f.starts_at;
    next.ends_at = f.ends_at;
    next.starts_local = repo::local(f.starts_at, &f.time_zone);
    next.ends_local = repo::local(f.ends_at, &f.time_zone);
    next.time_zone = f.time_zone;
    next.state = state.as_str().into();
    let mut positions_changed = false;
    if let Some(list) = &patch.positions {
        let existing: HashSet<Uuid> = d.positions.iter().map(|p| p.id).collect();
        let rows = positions(&mut tx, org, list, &existing, now).await?;
        let kept: HashSet<Uuid> = rows.iter().map(|r| r.0).collect();
        let removed: Vec<Uuid> = existing.difference(&kept).copied().collect();
        let usage = repo::position_usage(&mut tx, org.id, id).await?;
        for r in &removed {
            if usage.get(r).copied().unwrap_or(0) > 0 {
                return Err(ServiceError::Conflict {
                    code: "position_in_use",
                    detail: format!(
                        "position {r} still has people assigned or asking; move or remove them first"
                    ),
                });
            }
        }
        repo::write_positions(&mut tx, org.id, id, &rows, &removed).await?;
        positions_changed = true;
    }
    let fields_same = next == *d;
    if fields_same && !positions_changed {
        return Ok(cur.duty);
    }
    next.version += 1;
    next.updated_at = now;
    if !repo::update(&mut tx, org.id, &next, if_match).await? {
        return Err(ServiceError::VersionMismatch { current: d.version });
    }
    let roster_relevant = next.starts_at != d.starts_at
        || next.ends_at != d.ends_at
        || next.state != d.state
        || next.chat != d.chat;
    if roster_relevant {
        rosters::emit(&mut tx, org.id.0, id, now.as_millisecond()).await?;
    }
    let next = repo::get(&mut tx, org.id, id).await?.ok_or(NOT_FOUND)?.duty;
    let action = if next.state != d.state && next.state == "cancelled" {
        "duty.cancel"
    } else if next.starts_at != d.starts_at || next.ends_at != d.ends_at {
        "duty.move"
    } else {
        "duty.update"
    };
    audit::record(
        &mut tx,
        org.id,
        actor,
        action,
        "duty",
        &id.to_string(),
        Some(d),
        Some(&next),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(next)
}

/// Deletes a duty that nobody is assigned to or asking for (otherwise: cancel it).
pub async fn delete(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    id: Uuid,
    if_match: Option<i64>,
    now: Timestamp,
) -> Result<(), ServiceError> {
    let mut tx = db.begin().await?;
    let cur = repo::get(&mut tx, org.id, id).await?.ok_or(NOT_FOUND)?;
    authorize(actor, org, Permission::DutiesWrite, &cur.unit_path)?;
    if if_match.is_some_and(|v| v != cur.duty.version) {
        return Err(ServiceError::VersionMismatch {
            current: cur.duty.version,
        });
    }
    if cur.duty.confirmed + cur.duty.requested > 0
        || !assignments_repo::page(&mut tx, org.id, id, None, 1)
            .await?
            .is_empty()
    {
        return Err(ServiceError::Conflict {
            code: "duty_has_assignments",
            detail: "people are assigned to or asked for this duty: cancel it instead (state: cancelled), so they are told".into(),
        });
    }
    repo::delete(&mut tx, org.id, id).await?;
    audit::record(
        &mut tx,
        org.id,
        actor,
        "duty.delete",
        "duty",
        &id.to_string(),
        Some(&cur.duty),
        None::<&Duty>,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The duty's current roster (what the latest roster event carries).
pub async fn roster(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    id: Uuid,
) -> Result<Roster, ServiceError> {
    let mut c = db.read().await?;
    let s: Stored = repo::get_bare(&mut c, org.id, id).await?.ok_or(NOT_FOUND)?;
    authorize(actor, org, Permission::DutiesRead, &s.unit_path)?;
    let d = s.duty;
    let roster = if d.state == "cancelled" {
        Vec::new()
    } else {
        assignments_repo::roster(&mut c, org.id, id).await?
    };
    Ok(Roster {
        duty_id: d.id,
        org_id: org.id.0,
        roster_version: d.roster_version,
        state: d.state,
        chat: d.chat,
        starts_at: d.starts_at,
        ends_at: d.ends_at,
        roster,
    })
}

/// The roster event feed of the organisation (for the chat role and other consumers); needs
/// `duties:read` over the whole organisation.
pub async fn events(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    q: &EventsQuery,
    limit: i64,
) -> Result<Vec<RosterEvent>, ServiceError> {
    if !actor.principal.allows(org.id, Permission::DutiesRead) {
        return Err(ServiceError::Forbidden {
            detail: "the roster feed needs 'duties:read' over the whole organisation".into(),
        });
    }
    let mut c = db.read().await?;
    let list = events::after(
        &mut c,
        org.id.0,
        rosters::TOPIC,
        q.after.unwrap_or(0),
        limit,
    )
    .await?;
    list.into_iter()
        .map(|e| {
            let roster: Roster = serde_json::from_str(&e.payload)
                .map_err(|err| carebridge_store::StoreError::Corrupt(err.to_string()))?;
            Ok(RosterEvent {
                seq: e.seq,
                at: carebridge_domain::time::from_millis(e.created_at),
                roster,
            })
        })
        .collect()
}
