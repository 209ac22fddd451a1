//! Role assignments: a person gets a role over the organisation or a unit subtree.

use carebridge_domain::auth::Actor;
use carebridge_domain::role::Role;
use carebridge_domain::{PersonId, RoleAssignmentId, Timestamp, UnitId, Violations};
use carebridge_proto::Page;
use carebridge_proto::directory::{CreateRoleAssignment, RoleAssignment, RolesQuery};
use carebridge_store::orgs::OrgRef;
use carebridge_store::{Db, Tx, audit};
use carebridge_web::idem::{self, Idem, Outcome};
use carebridge_web::{CursorKey, ServiceError};
use uuid::Uuid;

use crate::repo::{people as people_repo, roles as repo, units as units_repo};

/// Assigns a role inside `tx`.
pub async fn create_in(
    tx: &mut Tx,
    actor: &Actor,
    org: &OrgRef,
    input: &CreateRoleAssignment,
    now: Timestamp,
) -> Result<RoleAssignment, ServiceError> {
    let role = Role::parse(&input.role).ok_or_else(|| {
        Violations::single(
            "/role",
            "invalid_role",
            "must be one of org_admin, unit_admin, dispatcher, member, client, relative",
        )
    })?;
    role.check_scope(input.unit_id.is_some())?;
    if people_repo::get(tx, org.id, PersonId(input.person_id))
        .await?
        .is_none()
    {
        return Err(Violations::single(
            "/person_id",
            "unknown_person",
            "no such person in this organisation",
        )
        .into());
    }
    if let Some(u) = input.unit_id
        && units_repo::get(tx, org.id, UnitId(u)).await?.is_none()
    {
        return Err(Violations::single(
            "/unit_id",
            "unknown_unit",
            "no such unit in this organisation",
        )
        .into());
    }
    let existing = repo::of_person(tx, org.id, input.person_id).await?;
    if existing
        .iter()
        .any(|r| r.role == role.as_str() && r.unit_id == input.unit_id)
    {
        return Err(ServiceError::Conflict {
            code: "role_already_assigned",
            detail: "the person already has this role in this scope".into(),
        });
    }
    let r = RoleAssignment {
        id: RoleAssignmentId::generate(now).0,
        person_id: input.person_id,
        role: role.as_str().to_string(),
        unit_id: input.unit_id,
        created_at: now,
    };
    repo::insert(tx, org.id, &r).await?;
    audit::record(
        tx,
        org.id,
        actor,
        "role.assign",
        "role_assignment",
        &r.id.to_string(),
        None::<&RoleAssignment>,
        Some(&r),
        now,
    )
    .await?;
    Ok(r)
}

pub async fn create(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    input: CreateRoleAssignment,
    idem: Option<Idem>,
    now: Timestamp,
) -> Result<Outcome<RoleAssignment>, ServiceError> {
    idem::create(db, idem, now.as_millisecond(), async |tx| {
        create_in(tx, actor, org, &input, now).await
    })
    .await
}

pub async fn get(db: &Db, org: &OrgRef, id: Uuid) -> Result<RoleAssignment, ServiceError> {
    let mut c = db.read().await?;
    repo::get(&mut c, org.id, RoleAssignmentId(id))
        .await?
        .ok_or(ServiceError::NotFound {
            what: "role assignment",
        })
}

pub async fn list(
    db: &Db,
    org: &OrgRef,
    cursor: &CursorKey,
    q: &RolesQuery,
    limit: i64,
) -> Result<Page<RoleAssignment>, ServiceError> {
    // A cursor belongs to its filters.
    let kind = format!(
        "roles\u{1f}{}\u{1f}{}",
        q.person.map(|p| p.to_string()).unwrap_or_default(),
        q.unit.map(|u| u.to_string()).unwrap_or_default()
    );
    let after: Option<Uuid> = cursor.decode_opt(&kind, q.cursor.as_deref())?;
    let mut c = db.read().await?;
    let rows = repo::page(&mut c, org.id, q.person, q.unit, after, limit + 1).await?;
    Ok(cursor.page(&kind, rows, limit, |r| r.id))
}

pub async fn delete(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    id: Uuid,
    now: Timestamp,
) -> Result<(), ServiceError> {
    let mut tx = db.begin().await?;
    let cur = repo::get(&mut tx, org.id, RoleAssignmentId(id))
        .await?
        .ok_or(ServiceError::NotFound {
            what: "role assignment",
        })?;
    repo::delete(&mut tx, org.id, RoleAssignmentId(id)).await?;
    audit::record(
        &mut tx,
        org.id,
        actor,
        "role.remove",
        "role_assignment",
        &id.to_string(),
        Some(&cur),
        None::<&RoleAssignment>,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
