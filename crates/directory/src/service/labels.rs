//! Groups and skills as resources: list (with member counts), create, rename, delete. People
//! also get them on the fly (API, import); renaming or deleting one changes every member, so
//! their versions move on (ETags stay honest). Audited as `group.*` / `skill.*`.

use carebridge_domain::auth::Actor;
use carebridge_domain::search::fold;
use carebridge_domain::validate::bounded_text;
use carebridge_domain::{Timestamp, Violations, new_v7};
use carebridge_proto::Page;
use carebridge_proto::directory::{Label, LabelInput};
use carebridge_store::orgs::OrgRef;
use carebridge_store::{Db, Tx, audit};
use carebridge_web::{CursorKey, ServiceError};
use uuid::Uuid;

use crate::repo::{feed, labels as repo};

/// Which list: `group` or `skill`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Group,
    Skill,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Group => "group",
            Kind::Skill => "skill",
        }
    }

    fn not_found(self) -> ServiceError {
        ServiceError::NotFound {
            what: match self {
                Kind::Group => "group",
                Kind::Skill => "skill",
            },
        }
    }
}

fn checked_name(input: &LabelInput) -> Result<(String, String), ServiceError> {
    let mut v = Violations::new();
    let name = bounded_text(&mut v, "/name", &input.name, 1, 100);
    v.into_result()?;
    let key = fold(&name);
    Ok((name, key))
}

pub async fn list(
    db: &Db,
    org: &OrgRef,
    kind: Kind,
    cursor: &CursorKey,
    after: Option<&str>,
    limit: i64,
) -> Result<Page<Label>, ServiceError> {
    let tag = kind.as_str();
    let after: Option<String> = cursor.decode_opt(tag, after)?;
    let mut c = db.read().await?;
    let rows = repo::page(
        &mut c,
        org.id,
        tag,
        after.as_deref().unwrap_or(""),
        limit + 1,
    )
    .await?;
    let page = cursor.page(tag, rows, limit, |(_, key)| key.clone());
    Ok(Page {
        items: page.items.into_iter().map(|(l, _)| l).collect(),
        next_cursor: page.next_cursor,
    })
}

pub async fn get(db: &Db, org: &OrgRef, kind: Kind, id: Uuid) -> Result<Label, ServiceError> {
    let mut c = db.read().await?;
    repo::get(&mut c, org.id, kind.as_str(), id)
        .await?
        .map(|(l, _)| l)
        .ok_or_else(|| kind.not_found())
}

fn taken(kind: Kind, name: &str) -> ServiceError {
    ServiceError::Conflict {
        code: "name_taken",
        detail: format!("a {} named '{name}' exists already", kind.as_str()),
    }
}

pub async fn create(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    kind: Kind,
    input: LabelInput,
    now: Timestamp,
) -> Result<Label, ServiceError> {
    let mut tx = db.begin().await?;
    let out = create_in(&mut tx, actor, org, kind, input, now).await?;
    tx.commit().await?;
    Ok(out)
}

/// [`create`] inside `tx` (SCIM changes a group and its members in one transaction).
pub async fn create_in(
    tx: &mut Tx,
    actor: &Actor,
    org: &OrgRef,
    kind: Kind,
    input: LabelInput,
    now: Timestamp,
) -> Result<Label, ServiceError> {
    let (name, key) = checked_name(&input)?;
    if repo::by_key(tx, org.id, kind.as_str(), &key)
        .await?
        .is_some()
    {
        return Err(taken(kind, &name));
    }
    let id = new_v7(now);
    repo::insert(
        tx,
        org.id,
        kind.as_str(),
        id,
        &name,
        &key,
        now.as_millisecond(),
    )
    .await?;
    let label = Label {
        id,
        name,
        members: 0,
        created_at: now,
    };
    audit::record(
        tx,
        org.id,
        actor,
        &format!("{}.create", kind.as_str()),
        kind.as_str(),
        &id.to_string(),
        None::<&Label>,
        Some(&label),
        now,
    )
    .await?;
    Ok(label)
}

pub async fn rename(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    kind: Kind,
    id: Uuid,
    input: LabelInput,
    now: Timestamp,
) -> Result<Label, ServiceError> {
    let mut tx = db.begin().await?;
    let out = rename_in(&mut tx, actor, org, kind, id, input, now).await?;
    tx.commit().await?;
    Ok(out)
}

/// [`rename`] inside `tx` (SCIM changes a group and its members in one transaction).
pub async fn rename_in(
    tx: &mut Tx,
    actor: &Actor,
    org: &OrgRef,
    kind: Kind,
    id: Uuid,
    input: LabelInput,
    now: Timestamp,
) -> Result<Label, ServiceError> {
    let (name, key) = checked_name(&input)?;
    let (cur, _) = repo::get(tx, org.id, kind.as_str(), id)
        .await?
        .ok_or_else(|| kind.not_found())?;
    if cur.name == name {
        return Ok(cur);
    }
    if repo::by_key(tx, org.id, kind.as_str(), &key)
        .await?
        .is_some_and(|other| other != id)
    {
        return Err(taken(kind, &name));
    }
    repo::rename(tx, org.id, id, &name, &key).await?;
    // The change number before any person row (the order every people write takes locks in).
    let seq = feed::next_seq(tx, org.id).await?;
    repo::touch_members(tx, org.id, id, now.as_millisecond()).await?;
    let members = feed::label_members(tx, org.id, id).await?;
    feed::touch(tx, org.id, seq, &members, false).await?;
    let next = Label {
        name,
        ..cur.clone()
    };
    audit::record(
        tx,
        org.id,
        actor,
        &format!("{}.rename", kind.as_str()),
        kind.as_str(),
        &id.to_string(),
        Some(&cur),
        Some(&next),
        now,
    )
    .await?;
    Ok(next)
}

/// Deletes the group or skill; its members lose it.
pub async fn delete(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    kind: Kind,
    id: Uuid,
    now: Timestamp,
) -> Result<(), ServiceError> {
    let mut tx = db.begin().await?;
    delete_in(&mut tx, actor, org, kind, id, now).await?;
    tx.commit().await?;
    Ok(())
}

/// [`delete`] inside `tx` (SCIM changes a group and its members in one transaction).
pub async fn delete_in(
    tx: &mut Tx,
    actor: &Actor,
    org: &OrgRef,
    kind: Kind,
    id: Uuid,
    now: Timestamp,
) -> Result<(), ServiceError> {
    let (cur, _) = repo::get(tx, org.id, kind.as_str(), id)
        .await?
        .ok_or_else(|| kind.not_found())?;
    if kind == Kind::Group {
        crate::service::access::check_unused(tx, org, id, "group").await?;
    }
    // The change number before any person row (the order every people write takes locks in).
    let seq = feed::next_seq(tx, org.id).await?;
    // For the sync feed: the members' groups change.
    let members = feed::label_members(tx, org.id, id).await?;
    let priors = feed::priors_now(tx, org.id, &members).await?;
    feed::log_priors(tx, org.id, seq, &priors).await?;
    repo::touch_members(tx, org.id, id, now.as_millisecond()).await?;
    feed::touch(tx, org.id, seq, &members, false).await?;
    repo::delete(tx, org.id, id).await?;
    audit::record(
        tx,
        org.id,
        actor,
        &format!("{}.delete", kind.as_str()),
        kind.as_str(),
        &id.to_string(),
        Some(&cur),
        None::<&Label>,
        now,
    )
    .await?;
    Ok(())
}
