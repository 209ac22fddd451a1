//! Assignments and sign-up flows: the dispatcher assigns directly ("save assignment", with the
//! duty's chat switch), or a member asks and the dispatcher confirms or declines. Every change
//! of the roster (confirmed assignments) emits a roster event in the same transaction.

use carebridge_domain::auth::{Actor, Permission};
use carebridge_domain::duty::{AssignmentRole, AssignmentStatus, DutyState, transition_allowed};
use carebridge_domain::validate::bounded_text;
use carebridge_domain::{AssignmentId, QualificationId, Timestamp, Violations};
use carebridge_proto::Page;
use carebridge_proto::duties::{
    Assignment, CreateAssignment, Decide, Duty, MyDutiesQuery, MyDuty, SignUp, UpdateAssignment,
};
use carebridge_store::orgs::OrgRef;
use carebridge_store::{Db, Exec, Tx, audit, rosters, run, sqlx};
use carebridge_web::idem::{self, Idem, Outcome};
use carebridge_web::{CursorKey, ServiceError};
use uuid::Uuid;

use super::duties::{NOT_FOUND as DUTY_NOT_FOUND, check_chat};
use super::{authorize, instant};
use crate::repo::assignments as repo;
use crate::repo::duties::{self as duties_repo, Stored};
use crate::repo::qualifications as quals_repo;

const NOT_FOUND: ServiceError = ServiceError::NotFound { what: "assignment" };

fn role(s: Option<&str>) -> Result<AssignmentRole, ServiceError> {
    match s {
        None => Ok(AssignmentRole::Helper),
        Some(r) => AssignmentRole::parse(r).ok_or_else(|| {
            Violations::single(
                "/role",
                "invalid_role",
                format!("must be one of {}", AssignmentRole::expected()),
            )
            .into()
        }),
    }
}

fn note(s: Option<&str>) -> Result<Option<String>, ServiceError> {
    let Some(s) = s else { return Ok(None) };
    let mut v = Violations::new();
    let n = bounded_text(&mut v, "/note", s, 0, 500);
    v.into_result()?;
    Ok((!n.is_empty()).then_some(n))
}

/// The person must be an active person of the organisation.
async fn check_person(x: &mut impl Exec, org: &OrgRef, person: Uuid) -> Result<(), ServiceError> {
    let active: Option<bool> = run!(x, c => sqlx::query_scalar("SELECT active FROM people WHERE org_id = $1 AND id = $2")
        .bind(org.id.0).bind(person).fetch_optional(c).await)?;
    match active {
        Some(true) => Ok(()),
        Some(false) => {
            Err(
                Violations::single("/person_id", "inactive_person", "the person is deactivated")
                    .into(),
            )
        }
        None => Err(Violations::single(
            "/person_id",
            "unknown_person",
            "no such person in this organisation",
        )
        .into()),
    }
}

fn planned(d: &Duty) -> Result<(), ServiceError> {
    if d.state == DutyState::Cancelled.as_str() {
        return Err(ServiceError::Conflict {
            code: "duty_cancelled",
            detail: "the duty is cancelled".into(),
        });
    }
    Ok(())
}

/// Checks that `position` belongs to the duty, has room (unless `current` already holds it) and
/// that the person fits its qualification. Returns whether an override was needed.
async fn check_position(
    tx: &mut Tx,
    org: &OrgRef,
    duty: &Duty,
    position: Option<Uuid>,
    person: Uuid,
    current: Option<Uuid>,
    override_q: bool,
    now: Timestamp,
) -> Result<bool, ServiceError> {
    let Some(pid) = position else {
        return Ok(false);
    };
    let Some(p) = duty.positions.iter().find(|p| p.id == pid) else {
        return Err(Violations::single(
            "/position_id",
            "unknown_position",
            "no such position on this duty",
        )
        .into());
    };
    if current != Some(pid) && p.filled >= p.needed {
        return Err(ServiceError::Conflict {
            code: "position_full",
            detail: format!(
                "position '{}' already has the {} people it needs",
                p.name, p.needed
            ),
        });
    }
    let Some(needed) = p.qualification_id else {
        return Ok(false);
    };
    let catalogue = quals_repo::catalogue(tx, org.id).await?;
    let held: Vec<(QualificationId, Option<Timestamp>)> = quals_repo::held(tx, org.id, person)
        .await?
        .into_iter()
        .map(|h| (QualificationId(h.qualification_id), h.valid_until))
        .collect();
    // Valid now and still valid when the duty starts.
    let at = if duty.starts_at > now {
        duty.starts_at
    } else {
        now
    };
    if catalogue.qualifies(QualificationId(needed), &held, at) {
        return Ok(false);
    }
    if override_q {
        return Ok(true);
    }
    Err(ServiceError::Conflict {
        code: "not_qualified",
        detail: format!(
            "the person has no qualification valid at {at} that includes the one position '{}' needs; set override_qualification to assign anyway (audited)",
            p.name
        ),
    })
}

/// Applies the dialog's chat switch.
async fn apply_chat(
    tx: &mut Tx,
    org: &OrgRef,
    duty: &Duty,
    chat: Option<bool>,
    now: Timestamp,
) -> Result<bool, ServiceError> {
    match chat {
        Some(on) if on != duty.chat => {
            check_chat(tx, org, on).await?;
            duties_repo::set_chat(tx, org.id, duty.id, on, now.as_millisecond()).await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

async fn load(
    tx: &mut Tx,
    actor: &Actor,
    org: &OrgRef,
    duty: Uuid,
    perm: Permission,
) -> Result<Stored, ServiceError> {
    // Roster changes of one duty are serialised on its row (PostgreSQL; SQLite has one writer),
    // so two concurrent saves cannot both take a position's last place.
    duties_repo::lock(tx, org.id, duty).await?;
    let s = duties_repo::get(tx, org.id, duty)
        .await?
        .ok_or(DUTY_NOT_FOUND)?;
    authorize(actor, org, perm, &s.unit_path)?;
    Ok(s)
}

/// "Save assignment": puts a person on the roster, with the duty's chat switch.
pub async fn assign_in(
    tx: &mut Tx,
    actor: &Actor,
    org: &OrgRef,
    duty: Uuid,
    input: &CreateAssignment,
    now: Timestamp,
) -> Result<Assignment, ServiceError> {
    let s = load(tx, actor, org, duty, Permission::DutiesWrite).await?;
    let d = &s.duty;
    planned(d)?;
    let r = role(input.role.as_deref())?;
    let note = note(input.note.as_deref())?;
    check_person(tx, org, input.person_id).await?;
    if let Some(a) = repo::of_person(tx, org.id, duty, input.person_id).await? {
        return Err(ServiceError::Conflict {
            code: "already_assigned",
            detail: format!(
                "the person is already on this duty (status {}, assignment {}); confirm or change that assignment",
                a.status, a.id
            ),
        });
    }
    let overridden = check_position(
        tx,
        org,
        d,
        input.position_id,
        input.person_id,
        None,
        input.override_qualification,
        now,
    )
    .await?;
    apply_chat(tx, org, d, input.chat, now).await?;
    let a = Assignment {
        id: AssignmentId::generate(now).0,
        duty_id: duty,
        person_id: input.person_id,
        position_id: input.position_id,
        role: r.as_str().into(),
        status: AssignmentStatus::Confirmed.as_str().into(),
        qualification_override: overridden,
        note,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    repo::insert(tx, org.id, &a, d.starts_at.as_millisecond()).await?;
    rosters::emit(tx, org.id.0, duty, now.as_millisecond()).await?;
    let action = if overridden {
        "assignment.create_override"
    } else {
        "assignment.create"
    };
    audit::record(
        tx,
        org.id,
        actor,
        action,
        "assignment",
        &a.id.to_string(),
        None::<&Assignment>,
        Some(&a),
        now,
    )
    .await?;
    Ok(a)
}

pub async fn assign(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    duty: Uuid,
    input: CreateAssignment,
    idem: Option<Idem>,
    now: Timestamp,
) -> Result<Outcome<Assignment>, ServiceError> {
    idem::create(db, idem, now.as_millisecond(), async |tx| {
        assign_in(tx, actor, org, duty, &input, now).await
    })
    .await
}

/// A member asks to be put on a duty of their units (or asks again after a decline).
pub async fn request(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    duty: Uuid,
    input: SignUp,
    idem: Option<Idem>,
    now: Timestamp,
) -> Result<Outcome<Assignment>, ServiceError> {
    let Some((own_org, person)) = actor.principal.person() else {
        return Err(ServiceError::Forbidden {
            detail: "sign-up requests are made by a person with a personal credential".into(),
        });
    };
    if own_org != org.id {
        return Err(DUTY_NOT_FOUND);
    }
    idem::create(db, idem, now.as_millisecond(), async |tx| {
        let s = load(tx, actor, org, duty, Permission::DutiesRead).await?;
        let d = &s.duty;
        planned(d)?;
        if d.ends_at <= now {
            return Err(ServiceError::Conflict {
                code: "duty_over",
                detail: "the duty has ended".into(),
            });
        }
        let note = note(input.note.as_deref())?;
        if let Some(pid) = input.position_id
            && !d.positions.iter().any(|p| p.id == pid)
        {
            return Err(Violations::single(
                "/position_id",
                "unknown_position",
                "no such position on this duty",
            )
            .into());
        }
        let existing = repo::of_person(tx, org.id, duty, person.0).await?;
        let a = match existing {
            Some(cur) => {
                let from =
                    AssignmentStatus::parse(&cur.status).unwrap_or(AssignmentStatus::Confirmed);
                if !transition_allowed(from, AssignmentStatus::Requested) {
                    return Err(ServiceError::Conflict {
                        code: "already_assigned",
                        detail: format!("you are already on this duty (status {})", cur.status),
                    });
                }
                let mut next = cur.clone();
                next.status = AssignmentStatus::Requested.as_str().into();
                next.position_id = input.position_id;
                next.note = note;
                next.version += 1;
                next.updated_at = now;
                if !repo::update(tx, org.id, &next, cur.version).await? {
                    return Err(ServiceError::VersionMismatch {
                        current: cur.version,
                    });
                }
                audit::record(
                    tx,
                    org.id,
                    actor,
                    "assignment.request",
                    "assignment",
                    &next.id.to_string(),
                    Some(&cur),
                    Some(&next),
                    now,
                )
                .await?;
                next
            }
            None => {
                let a = Assignment {
                    id: AssignmentId::generate(now).0,
                    duty_id: duty,
                    person_id: person.0,
                    position_id: input.position_id,
                    role: AssignmentRole::Helper.as_str().into(),
                    status: AssignmentStatus::Requested.as_str().into(),
                    qualification_override: false,
                    note,
                    version: 1,
                    created_at: now,
                    updated_at: now,
                };
                repo::insert(tx, org.id, &a, d.starts_at.as_millisecond()).await?;
                audit::record(
                    tx,
                    org.id,
                    actor,
                    "assignment.request",
                    "assignment",
                    &a.id.to_string(),
                    None::<&Assignment>,
                    Some(&a),
                    now,
                )
                .await?;
                a
            }
        };
        Ok(a)
    })
    .await
}

/// The dispatcher confirms (onto the roster) or declines a request.
pub async fn decide(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    duty: Uuid,
    id: Uuid,
    input: Decide,
    now: Timestamp,
) -> Result<Assignment, ServiceError> {
    let to = match input.decision.as_str() {
        "confirm" => AssignmentStatus::Confirmed,
        "decline" => AssignmentStatus::Declined,
        _ => {
            return Err(Violations::single(
                "/decision",
                "invalid_decision",
                "must be confirm or decline",
            )
            .into());
        }
    };
    let mut tx = db.begin().await?;
    let s = load(&mut tx, actor, org, duty, Permission::DutiesWrite).await?;
    let d = &s.duty;
    let cur = repo::get(&mut tx, org.id, duty, id)
        .await?
        .ok_or(NOT_FOUND)?;
    let from = AssignmentStatus::parse(&cur.status).unwrap_or(AssignmentStatus::Confirmed);
    if !transition_allowed(from, to) {
        return Err(ServiceError::Conflict {
            code: "not_a_request",
            detail: format!(
                "only open requests can be confirmed or declined; this assignment is {}",
                cur.status
            ),
        });
    }
    let mut next = cur.clone();
    next.status = to.as_str().into();
    next.version += 1;
    next.updated_at = now;
    if to == AssignmentStatus::Confirmed {
        planned(d)?;
        check_person(&mut tx, org, cur.person_id).await?;
        next.qualification_override = check_position(
            &mut tx,
            org,
            d,
            cur.position_id,
            cur.person_id,
            None,
            input.override_qualification,
            now,
        )
        .await?;
        apply_chat(&mut tx, org, d, input.chat, now).await?;
    }
    if !repo::update(&mut tx, org.id, &next, cur.version).await? {
        return Err(ServiceError::VersionMismatch {
            current: cur.version,
        });
    }
    if to == AssignmentStatus::Confirmed {
        rosters::emit(&mut tx, org.id.0, duty, now.as_millisecond()).await?;
    }
    let action = match (to, next.qualification_override) {
        (AssignmentStatus::Confirmed, true) => "assignment.confirm_override",
        (AssignmentStatus::Confirmed, false) => "assignment.confirm",
        _ => "assignment.decline",
    };
    audit::record(
        &mut tx,
        org.id,
        actor,
        action,
        "assignment",
        &id.to_string(),
        Some(&cur),
        Some(&next),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(next)
}

/// Changes role or position of an assignment (and the duty's chat switch).
pub async fn update(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    duty: Uuid,
    id: Uuid,
    if_match: i64,
    patch: UpdateAssignment,
    now: Timestamp,
) -> Result<Assignment, ServiceError> {
    let mut tx = db.begin().await?;
    let s = load(&mut tx, actor, org, duty, Permission::DutiesWrite).await?;
    let d = &s.duty;
    let cur = repo::get(&mut tx, org.id, duty, id)
        .await?
        .ok_or(NOT_FOUND)?;
    if cur.version != if_match {
        return Err(ServiceError::VersionMismatch {
            current: cur.version,
        });
    }
    planned(d)?;
    let mut next = cur.clone();
    if let Some(r) = &patch.role {
        next.role = role(Some(r))?.as_str().into();
    }
    if let Some(p) = patch.position_id {
        next.position_id = p;
    }
    let confirmed = cur.status == AssignmentStatus::Confirmed.as_str();
    if next.position_id != cur.position_id || patch.override_qualification.is_some() {
        let over = patch
            .override_qualification
            .unwrap_or(cur.qualification_override);
        let needs = if confirmed {
            check_position(
                &mut tx,
                org,
                d,
                next.position_id,
                cur.person_id,
                cur.position_id,
                over,
                now,
            )
            .await?
        } else {
            next.position_id
                .is_some_and(|p| !d.positions.iter().any(|x| x.id == p))
                .then(|| {
                    Err::<(), ServiceError>(
                        Violations::single(
                            "/position_id",
                            "unknown_position",
                            "no such position on this duty",
                        )
                        .into(),
                    )
                })
                .transpose()?;
            false
        };
        next.qualification_override = needs;
    }
    let chat_changed = apply_chat(&mut tx, org, d, patch.chat, now).await?;
    if next == cur {
        if chat_changed {
            rosters::emit(&mut tx, org.id.0, duty, now.as_millisecond()).await?;
            tx.commit().await?;
        }
        return Ok(cur);
    }
    next.version += 1;
    next.updated_at = now;
    if !repo::update(&mut tx, org.id, &next, if_match).await? {
        return Err(ServiceError::VersionMismatch {
            current: cur.version,
        });
    }
    if confirmed || chat_changed {
        rosters::emit(&mut tx, org.id.0, duty, now.as_millisecond()).await?;
    }
    let action = if next.qualification_override && !cur.qualification_override {
        "assignment.update_override"
    } else {
        "assignment.update"
    };
    audit::record(
        &mut tx,
        org.id,
        actor,
        action,
        "assignment",
        &id.to_string(),
        Some(&cur),
        Some(&next),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(next)
}

/// Takes a person off a duty (dispatcher), or withdraws one's own request or assignment.
pub async fn remove(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    duty: Uuid,
    id: Uuid,
    now: Timestamp,
) -> Result<(), ServiceError> {
    let mut tx = db.begin().await?;
    let s = duties_repo::get_bare(&mut tx, org.id, duty)
        .await?
        .ok_or(DUTY_NOT_FOUND)?;
    let cur = repo::get(&mut tx, org.id, duty, id)
        .await?
        .ok_or(NOT_FOUND)?;
    let own = actor
        .principal
        .person()
        .is_some_and(|(o, p)| o == org.id && p.0 == cur.person_id);
    if !own {
        authorize(actor, org, Permission::DutiesWrite, &s.unit_path)?;
    }
    repo::delete(&mut tx, org.id, id).await?;
    if cur.status == AssignmentStatus::Confirmed.as_str() {
        rosters::emit(&mut tx, org.id.0, duty, now.as_millisecond()).await?;
    }
    let action = if own {
        "assignment.withdraw"
    } else {
        "assignment.remove"
    };
    audit::record(
        &mut tx,
        org.id,
        actor,
        action,
        "assignment",
        &id.to_string(),
        Some(&cur),
        None::<&Assignment>,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn get(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    duty: Uuid,
    id: Uuid,
) -> Result<Assignment, ServiceError> {
    let mut c = db.read().await?;
    let s = duties_repo::get_bare(&mut c, org.id, duty)
        .await?
        .ok_or(DUTY_NOT_FOUND)?;
    let a = repo::get(&mut c, org.id, duty, id)
        .await?
        .ok_or(NOT_FOUND)?;
    let own = actor
        .principal
        .person()
        .is_some_and(|(o, p)| o == org.id && p.0 == a.person_id);
    if !own {
        authorize(actor, org, Permission::DutiesRead, &s.unit_path)?;
    }
    Ok(a)
}

pub async fn list(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    duty: Uuid,
    cursor: &CursorKey,
    after: Option<&str>,
    limit: i64,
) -> Result<Page<Assignment>, ServiceError> {
    let after: Option<Uuid> = cursor.decode_opt("assignments", after)?;
    let mut c = db.read().await?;
    let s = duties_repo::get_bare(&mut c, org.id, duty)
        .await?
        .ok_or(DUTY_NOT_FOUND)?;
    authorize(actor, org, Permission::DutiesRead, &s.unit_path)?;
    let items = repo::page(&mut c, org.id, duty, after, limit + 1).await?;
    Ok(cursor.page("assignments", items, limit, |a| a.id))
}

/// The caller's own duties (any status), upcoming by default, in start order.
pub async fn mine(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    cursor: &CursorKey,
    q: &MyDutiesQuery,
    limit: i64,
    now: Timestamp,
) -> Result<Page<MyDuty>, ServiceError> {
    let Some((_, person)) = actor.principal.person() else {
        return Err(ServiceError::Forbidden {
            detail: "'me' needs a personal credential".into(),
        });
    };
    let from = instant("from", q.from.as_deref())?.unwrap_or(now);
    let to = instant("to", q.to.as_deref())?
        .map(|t| t.as_millisecond())
        .unwrap_or(i64::MAX);
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(
            AssignmentStatus::parse(s)
                .ok_or_else(|| {
                    Violations::single(
                        "/query/status",
                        "invalid_status",
                        format!("must be one of {}", AssignmentStatus::expected()),
                    )
                })?
                .as_str(),
        ),
    };
    let after: Option<(i64, Uuid)> = cursor.decode_opt("my-duties", q.cursor.as_deref())?;
    let mut c = db.read().await?;
    let rows = repo::of_person_between(
        &mut c,
        org.id,
        person.0,
        from.as_millisecond(),
        to,
        status,
        after,
        limit + 1,
    )
    .await?;
    let ids: Vec<Uuid> = rows.iter().map(|(_, a)| a.duty_id).collect();
    let duties = duties_repo::get_many(&mut c, org.id, &ids).await?;
    let items: Vec<MyDuty> = rows
        .into_iter()
        .zip(duties)
        .map(|((_, a), s)| MyDuty {
            duty: s.duty,
            assignment: a,
        })
        .collect();
    Ok(cursor.page("my-duties", items, limit, |m| {
        (m.duty.starts_at.as_millisecond(), m.duty.id)
    }))
}
