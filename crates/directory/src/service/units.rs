//! Units: create, read, rename, move (no cycles, bounded depth), delete only when empty.

use carebridge_domain::auth::Actor;
use carebridge_domain::search::fold;
use carebridge_domain::unit::{MAX_DEPTH, check_move, check_name, child_path, depth};
use carebridge_domain::{Timestamp, UnitId, Violations};
use carebridge_proto::Page;
use carebridge_proto::directory::{CreateUnit, Unit, UpdateUnit};
use carebridge_store::orgs::OrgRef;
use carebridge_store::{Db, Exec, Tx, audit};
use carebridge_web::idem::{self, Idem, Outcome};
use carebridge_web::{CursorKey, ServiceError};
use uuid::Uuid;

use crate::repo::units as repo;

const NOT_FOUND: ServiceError = ServiceError::NotFound { what: "unit" };

async fn check_sibling_name(
    x: &mut impl Exec,
    org: &OrgRef,
    parent: Option<UnitId>,
    name: &str,
    except: Option<Uuid>,
) -> Result<(), ServiceError> {
    let key = fold(name);
    let clash = repo::sibling_names(x, org.id, parent)
        .await?
        .into_iter()
        .any(|(id, n)| Some(id) != except && fold(&n) == key);
    if clash {
        return Err(ServiceError::Invalid(Violations::single(
            "/name",
            "name_taken",
            format!("a unit named '{name}' already exists here"),
        )));
    }
    Ok(())
}

/// Creates a unit inside `tx` (API, CLI, demo).
pub async fn create_in(
    tx: &mut Tx,
    actor: &Actor,
    org: &OrgRef,
    input: &CreateUnit,
    now: Timestamp,
) -> Result<Unit, ServiceError> {
    let name = check_name(&input.name)?;
    let parent = match input.parent_id {
        Some(p) => Some(repo::get(tx, org.id, UnitId(p)).await?.ok_or_else(|| {
            ServiceError::Invalid(Violations::single(
                "/parent_id",
                "unknown_unit",
                "no such unit in this organisation",
            ))
        })?),
        None => None,
    };
    if parent
        .as_ref()
        .is_some_and(|p| depth(&p.path) + 1 > MAX_DEPTH)
    {
        return Err(ServiceError::Invalid(Violations::single(
            "/parent_id",
            "too_deep",
            format!("the unit tree has at most {MAX_DEPTH} levels"),
        )));
    }
    check_sibling_name(tx, org, input.parent_id.map(UnitId), &name, None).await?;
    let id = UnitId::generate(now);
    let path = child_path(parent.as_ref().map(|p| p.path.as_str()), id);
    let mut ids: Vec<Uuid> = parent
        .as_ref()
        .map(|p| p.unit.path.clone())
        .unwrap_or_default();
    ids.push(id.0);
    let u = Unit {
        id: id.0,
        parent_id: input.parent_id,
        name,
        path: ids,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    repo::insert(tx, org.id, &u, &path).await?;
    audit::record(
        tx,
        org.id,
        actor,
        "unit.create",
        "unit",
        &u.id.to_string(),
        None::<&Unit>,
        Some(&u),
        now,
    )
    .await?;
    Ok(u)
}

pub async fn create(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    input: CreateUnit,
    idem: Option<Idem>,
    now: Timestamp,
) -> Result<Outcome<Unit>, ServiceError> {
    idem::create(db, idem, now.as_millisecond(), async |tx| {
        create_in(tx, actor, org, &input, now).await
    })
    .await
}

pub async fn get(db: &Db, org: &OrgRef, id: Uuid) -> Result<Unit, ServiceError> {
    let mut c = db.read().await?;
    Ok(repo::get(&mut c, org.id, UnitId(id))
        .await?
        .ok_or(NOT_FOUND)?
        .unit)
}

/// Units in tree order.
pub async fn list(
    db: &Db,
    org: &OrgRef,
    cursor: &CursorKey,
    after: Option<&str>,
    limit: i64,
) -> Result<Page<Unit>, ServiceError> {
    let after: Option<String> = cursor.decode_opt("units", after)?;
    let mut c = db.read().await?;
    let rows = repo::page(&mut c, org.id, after.as_deref().unwrap_or(""), limit + 1).await?;
    let page = cursor.page("units", rows, limit, |u| u.path.clone());
    Ok(Page {
        items: page.items.into_iter().map(|u| u.unit).collect(),
        next_cursor: page.next_cursor,
    })
}

/// Renames and/or moves a unit.
pub async fn update(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    id: Uuid,
    if_match: i64,
    patch: UpdateUnit,
    now: Timestamp,
) -> Result<Unit, ServiceError> {
    let mut tx = db.begin().await?;
    let cur = repo::get(&mut tx, org.id, UnitId(id))
        .await?
        .ok_or(NOT_FOUND)?;
    if cur.unit.version != if_match {
        return Err(ServiceError::VersionMismatch {
            current: cur.unit.version,
        });
    }
    let mut next = cur.unit.clone();
    if let Some(n) = &patch.name {
        next.name = check_name(n)?;
    }
    let mut new_path = cur.path.clone();
    if let Some(parent) = patch.parent_id {
        let parent_unit = match parent {
            Some(p) => Some(
                repo::get(&mut tx, org.id, UnitId(p))
                    .await?
                    .ok_or_else(|| {
                        ServiceError::Invalid(Violations::single(
                            "/parent_id",
                            "unknown_unit",
                            "no such unit in this organisation",
                        ))
                    })?,
            ),
            None => None,
        };
        let subtree = repo::subtree_paths(&mut tx, org.id, &cur.path).await?;
        let height = subtree.iter().map(|p| depth(p)).max().unwrap_or(1) - depth(&cur.path) + 1;
        check_move(
            &cur.path,
            height,
            parent_unit.as_ref().map(|p| p.path.as_str()),
        )?;
        new_path = child_path(parent_unit.as_ref().map(|p| p.path.as_str()), UnitId(id));
        next.parent_id = parent;
        let mut ids: Vec<Uuid> = parent_unit.map(|p| p.unit.path).unwrap_or_default();
        ids.push(id);
        next.path = ids;
    }
    if next.name != cur.unit.name || next.parent_id != cur.unit.parent_id {
        check_sibling_name(
            &mut tx,
            org,
            next.parent_id.map(UnitId),
            &next.name,
            Some(id),
        )
        .await?;
    } else {
        return Ok(cur.unit);
    }
    next.version += 1;
    next.updated_at = now;
    if !repo::update(&mut tx, org.id, &next, if_match, &cur.path, &new_path).await? {
        return Err(ServiceError::VersionMismatch {
            current: cur.unit.version,
        });
    }
    if next.name != cur.unit.name {
        // Members show the unit's name: the sync feed sends them again.
        let seq = crate::repo::feed::next_seq(&mut tx, org.id).await?;
        crate::repo::feed::touch_unit_members(&mut tx, org.id, seq, id).await?;
    }
    let action = if next.parent_id != cur.unit.parent_id {
        "unit.move"
    } else {
        "unit.rename"
    };
    audit::record(
        &mut tx,
        org.id,
        actor,
        action,
        "unit",
        &id.to_string(),
        Some(&cur.unit),
        Some(&next),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(next)
}

/// Deletes an empty unit (no child units, people, role assignments or duties).
pub async fn delete(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    id: Uuid,
    if_match: Option<i64>,
    now: Timestamp,
) -> Result<(), ServiceError> {
    let mut tx = db.begin().await?;
    let cur = repo::get(&mut tx, org.id, UnitId(id))
        .await?
        .ok_or(NOT_FOUND)?;
    if if_match.is_some_and(|v| v != cur.unit.version) {
        return Err(ServiceError::VersionMismatch {
            current: cur.unit.version,
        });
    }
    let (children, people, roles, duties) = repo::usage(&mut tx, org.id, UnitId(id)).await?;
    if children + people + roles + duties > 0 {
        return Err(ServiceError::Conflict {
            code: "unit_not_empty",
            detail: format!(
                "the unit still has {children} child unit(s), {people} member(s), {roles} role assignment(s) and {duties} duties"
            ),
        });
    }
    crate::service::access::check_unused(&mut tx, org, id, "unit").await?;
    repo::delete(&mut tx, org.id, UnitId(id)).await?;
    audit::record(
        &mut tx,
        org.id,
        actor,
        "unit.delete",
        "unit",
        &id.to_string(),
        Some(&cur.unit),
        None::<&Unit>,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
