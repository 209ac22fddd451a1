//! The qualification catalogue (with "includes") and the qualifications people hold.

use carebridge_domain::auth::{Actor, Permission};
use carebridge_domain::duty::check_qualification_name;
use carebridge_domain::search::fold;
use carebridge_domain::{QualificationId, Timestamp, Violations};
use carebridge_proto::Page;
use carebridge_proto::duties::{
    CreateQualification, HeldQualification, HoldQualification, Qualification, UpdateQualification,
};
use carebridge_store::orgs::OrgRef;
use carebridge_store::{Db, Exec, Tx, audit, run, sqlx};
use carebridge_web::idem::{self, Idem, Outcome};
use carebridge_web::{CursorKey, ServiceError};
use uuid::Uuid;

use super::reach;
use crate::repo::qualifications as repo;

const NOT_FOUND: ServiceError = ServiceError::NotFound {
    what: "qualification",
};

/// Catalogue changes need `duties:write` over the whole organisation.
fn catalogue_admin(actor: &Actor, org: &OrgRef) -> Result<(), ServiceError> {
    if actor.principal.allows(org.id, Permission::DutiesWrite) {
        Ok(())
    } else {
        Err(ServiceError::Forbidden {
            detail: "the qualification catalogue needs 'duties:write' over the whole organisation"
                .into(),
        })
    }
}

/// Recording what people hold needs `directory:write` or `duties:write` org-wide.
fn holder_admin(actor: &Actor, org: &OrgRef) -> Result<(), ServiceError> {
    if actor.principal.allows(org.id, Permission::DirectoryWrite)
        || actor.principal.allows(org.id, Permission::DutiesWrite)
    {
        Ok(())
    } else {
        Err(ServiceError::Forbidden { detail: "recording qualifications needs 'directory:write' or 'duties:write' over the whole organisation".into() })
    }
}

async fn check_includes(
    tx: &mut Tx,
    org: &OrgRef,
    id: Uuid,
    includes: &[Uuid],
) -> Result<Vec<Uuid>, ServiceError> {
    let mut list = includes.to_vec();
    list.sort();
    list.dedup();
    let known = repo::existing(tx, org.id, &list).await?;
    let mut v = Violations::new();
    for (i, q) in includes.iter().enumerate() {
        if !known.contains(q) {
            v.push(
                format!("/includes/{i}"),
                "unknown_qualification",
                "no such qualification in this organisation",
            );
        }
    }
    v.into_result()?;
    let cat = repo::catalogue(tx, org.id).await?;
    let ids: Vec<QualificationId> = list.iter().map(|q| QualificationId(*q)).collect();
    if cat.would_cycle(QualificationId(id), &ids) {
        return Err(Violations::single(
            "/includes",
            "cycle",
            "a qualification cannot include itself, directly or through others",
        )
        .into());
    }
    Ok(list)
}

/// Adds a qualification to the catalogue inside `tx`.
pub async fn create_in(
    tx: &mut Tx,
    actor: &Actor,
    org: &OrgRef,
    input: &CreateQualification,
    now: Timestamp,
) -> Result<Qualification, ServiceError> {
    catalogue_admin(actor, org)?;
    let name = check_qualification_name(&input.name)?;
    if repo::name_taken(tx, org.id, &fold(&name), None).await? {
        return Err(ServiceError::Conflict {
            code: "name_taken",
            detail: "the catalogue already has a qualification of this name".into(),
        });
    }
    let id = QualificationId::generate(now).0;
    let includes = check_includes(tx, org, id, &input.includes).await?;
    let q = Qualification {
        id,
        name: name.clone(),
        includes,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    repo::insert(tx, org.id, &q, &fold(&name)).await?;
    audit::record(
        tx,
        org.id,
        actor,
        "qualification.create",
        "qualification",
        &id.to_string(),
        None::<&Qualification>,
        Some(&q),
        now,
    )
    .await?;
    Ok(q)
}

pub async fn create(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    input: CreateQualification,
    idem: Option<Idem>,
    now: Timestamp,
) -> Result<Outcome<Qualification>, ServiceError> {
    idem::create(db, idem, now.as_millisecond(), async |tx| {
        create_in(tx, actor, org, &input, now).await
    })
    .await
}

pub async fn get(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    id: Uuid,
) -> Result<Qualification, ServiceError> {
    reach(actor, org, Permission::DutiesRead)?;
    let mut c = db.read().await?;
    repo::get(&mut c, org.id, id).await?.ok_or(NOT_FOUND)
}

pub async fn list(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    cursor: &CursorKey,
    after: Option<&str>,
    limit: i64,
) -> Result<Page<Qualification>, ServiceError> {
    reach(actor, org, Permission::DutiesRead)?;
    let after: Option<Uuid> = cursor.decode_opt("qualifications", after)?;
    let mut c = db.read().await?;
    let items = repo::page(&mut c, org.id, after, limit + 1).await?;
    Ok(cursor.page("qualifications", items, limit, |q| q.id))
}

pub async fn update(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    id: Uuid,
    if_match: i64,
    patch: UpdateQualification,
    now: Timestamp,
) -> Result<Qualification, ServiceError> {
    catalogue_admin(actor, org)?;
    let mut tx = db.begin().await?;
    let cur = repo::get(&mut tx, org.id, id).await?.ok_or(NOT_FOUND)?;
    if cur.version != if_match {
        return Err(ServiceError::VersionMismatch {
            current: cur.version,
        });
    }
    let mut next = cur.clone();
    if let Some(n) = &patch.name {
        next.name = check_qualification_name(n)?;
        if repo::name_taken(&mut tx, org.id, &fold(&next.name), Some(id)).await? {
            return Err(ServiceError::Conflict {
                code: "name_taken",
                detail: "the catalogue already has a qualification of this name".into(),
            });
        }
    }
    if let Some(inc) = &patch.includes {
        next.includes = check_includes(&mut tx, org, id, inc).await?;
    }
    if next == cur {
        return Ok(cur);
    }
    next.version += 1;
    next.updated_at = now;
    if !repo::update(&mut tx, org.id, &next, &fold(&next.name), if_match).await? {
        return Err(ServiceError::VersionMismatch {
            current: cur.version,
        });
    }
    audit::record(
        &mut tx,
        org.id,
        actor,
        "qualification.update",
        "qualification",
        &id.to_string(),
        Some(&cur),
        Some(&next),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(next)
}

/// Deletes a qualification nobody holds, no position needs and no other includes.
pub async fn delete(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    id: Uuid,
    now: Timestamp,
) -> Result<(), ServiceError> {
    catalogue_admin(actor, org)?;
    let mut tx = db.begin().await?;
    let cur = repo::get(&mut tx, org.id, id).await?.ok_or(NOT_FOUND)?;
    let (held, needed, included) = repo::usage(&mut tx, org.id, id).await?;
    if held + needed + included > 0 {
        return Err(ServiceError::Conflict {
            code: "qualification_in_use",
            detail: format!(
                "{held} people hold it, {needed} positions need it, {included} qualifications include it"
            ),
        });
    }
    repo::delete(&mut tx, org.id, id).await?;
    audit::record(
        &mut tx,
        org.id,
        actor,
        "qualification.delete",
        "qualification",
        &id.to_string(),
        Some(&cur),
        None::<&Qualification>,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn person_exists(x: &mut impl Exec, org: &OrgRef, person: Uuid) -> Result<(), ServiceError> {
    let found: Option<Uuid> = run!(x, c => sqlx::query_scalar("SELECT id FROM people WHERE org_id = $1 AND id = $2")
        .bind(org.id.0).bind(person).fetch_optional(c).await)?;
    found
        .map(|_| ())
        .ok_or(ServiceError::NotFound { what: "person" })
}

/// What a person holds (the person themself, or whoever may read duties).
pub async fn held(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    person: Uuid,
) -> Result<Vec<HeldQualification>, ServiceError> {
    let own = actor
        .principal
        .person()
        .is_some_and(|(o, p)| o == org.id && p.0 == person);
    if !own {
        reach(actor, org, Permission::DutiesRead)?;
    }
    let mut c = db.read().await?;
    person_exists(&mut c, org, person).await?;
    Ok(repo::held(&mut c, org.id, person).await?)
}

/// Records inside `tx` that a person holds a qualification (until `valid_until`, if given).
pub async fn hold_in(
    tx: &mut Tx,
    actor: &Actor,
    org: &OrgRef,
    person: Uuid,
    q: Uuid,
    input: &HoldQualification,
    now: Timestamp,
) -> Result<Vec<HeldQualification>, ServiceError> {
    holder_admin(actor, org)?;
    person_exists(tx, org, person).await?;
    if repo::get(tx, org.id, q).await?.is_none() {
        return Err(NOT_FOUND);
    }
    let before = repo::held(tx, org.id, person).await?;
    repo::hold(
        tx,
        org.id,
        person,
        q,
        input.valid_until.map(|t| t.as_millisecond()),
    )
    .await?;
    let after = repo::held(tx, org.id, person).await?;
    audit::record(
        tx,
        org.id,
        actor,
        "person.qualification.hold",
        "person",
        &person.to_string(),
        Some(&before),
        Some(&after),
        now,
    )
    .await?;
    Ok(after)
}

/// Records that a person holds a qualification (until `valid_until`, if given).
pub async fn hold(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    person: Uuid,
    q: Uuid,
    input: HoldQualification,
    now: Timestamp,
) -> Result<Vec<HeldQualification>, ServiceError> {
    let mut tx = db.begin().await?;
    let after = hold_in(&mut tx, actor, org, person, q, &input, now).await?;
    tx.commit().await?;
    Ok(after)
}

pub async fn drop_held(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    person: Uuid,
    q: Uuid,
    now: Timestamp,
) -> Result<(), ServiceError> {
    holder_admin(actor, org)?;
    let mut tx = db.begin().await?;
    person_exists(&mut tx, org, person).await?;
    let before = repo::held(&mut tx, org.id, person).await?;
    if !repo::drop_held(&mut tx, org.id, person, q).await? {
        return Err(NOT_FOUND);
    }
    let after = repo::held(&mut tx, org.id, person).await?;
    audit::record(
        &mut tx,
        org.id,
        actor,
        "person.qualification.drop",
        "person",
        &person.to_string(),
        Some(&before),
        Some(&after),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
