//! Contact access: who sees which fields of whom (`domain::visibility` holds the rules), who
//! may change a person, and contact grants as a resource (list, create, change fields, delete;
//! audited as `grant.*`).
//!
//! - Organisation-wide readers (`directory:read` over the whole organisation) see everyone.
//! - A person signed in with the `directory:read` scope sees themselves, the people of the
//!   units their roles cover (unit admins, dispatchers), and what grants open to them (grants
//!   open nothing while the organisation has the `directory` feature off).
//! - Changes: organisation-wide writers change anyone; unit admins change people of their
//!   subtrees (and may only add or remove units inside it); a person with the
//!   `directory:write` scope changes their own phones, e-mails, address and language.

use carebridge_domain::auth::{Actor, Permission, Principal, Reach};
use carebridge_domain::visibility::{Fields, Memberships, Side, Viewer};
use carebridge_domain::{Timestamp, Violations, new_v7};
use carebridge_proto::Page;
use carebridge_proto::directory::{
    Address, ContactGrant, ContactGrantInput, GrantSide, Person, UpdateContactGrant, UpdatePerson,
};
use carebridge_store::orgs::OrgRef;
use carebridge_store::{Db, Exec, audit};
use carebridge_web::{CursorKey, ServiceError};
use uuid::Uuid;

use crate::repo::{access as repo, feed};

const NOT_FOUND: ServiceError = ServiceError::NotFound {
    what: "contact grant",
};

fn forbidden(detail: &str) -> ServiceError {
    ServiceError::Forbidden {
        detail: detail.into(),
    }
}

/// The caller's visibility in `org`, resolved now. Refuses (403) callers who may not read the
/// directory at all.
pub async fn viewer(
    x: &mut impl Exec,
    principal: &Principal,
    org: &OrgRef,
) -> Result<Viewer, ServiceError> {
    let reach = principal.reach(org.id, Permission::DirectoryRead);
    if reach == Reach::All {
        return Ok(Viewer::everyone());
    }
    let Principal::Person {
        org: own_org,
        person,
        scopes,
        ..
    } = principal
    else {
        return Err(forbidden(
            "this credential lacks the 'directory:read' permission",
        ));
    };
    if *own_org != org.id || !scopes.contains(&Permission::DirectoryRead) {
        return Err(forbidden(
            "this credential lacks the 'directory:read' permission",
        ));
    }
    let roots = match reach {
        Reach::Units(r) => r,
        Reach::All | Reach::Nothing => Vec::new(),
    };
    let tree = repo::tree(x, org.id).await?;
    // With the `directory` feature off, grants open nothing: people see themselves and what
    // their roles cover (unit admins keep maintaining their units).
    let grants: Vec<_> = if carebridge_store::features::enabled(x, org.id.0, "directory").await? {
        repo::all(x, org.id)
            .await?
            .into_iter()
            .map(|(_, g)| g)
            .collect()
    } else {
        Vec::new()
    };
    let me = feed::memberships(x, org.id, &[person.0])
        .await?
        .remove(&person.0)
        .unwrap_or_default();
    Ok(Viewer::resolve(&tree, person.0, &roots, &me, &grants))
}

/// Person `id` as person `viewer` would see them with a credential carrying `directory:read`
/// (their roles, unit memberships and the grants as they are now). Only organisation-wide
/// directory writers may ask (they keep the grants); an unknown viewer or person is 404.
pub async fn seen_by(
    db: &Db,
    principal: &Principal,
    org: &OrgRef,
    id: Uuid,
    viewer_id: Uuid,
) -> Result<carebridge_proto::directory::SeenBy, ServiceError> {
    if principal.reach(org.id, Permission::DirectoryWrite) != Reach::All {
        return Err(forbidden(
            "the access preview needs directory:write over the whole organisation",
        ));
    }
    let mut c = db.read().await?;
    let person = crate::repo::people::get(&mut c, org.id, carebridge_domain::PersonId(id))
        .await?
        .ok_or(ServiceError::NotFound { what: "person" })?;
    crate::repo::people::get(&mut c, org.id, carebridge_domain::PersonId(viewer_id))
        .await?
        .ok_or(ServiceError::NotFound { what: "viewer" })?;
    // The viewer as their own app would be: a person's credential with `directory:read`
    // (the nil key id names no stored key; nothing is authenticated with it).
    let roles =
        carebridge_store::roles::grants(&mut c, org.id, carebridge_domain::PersonId(viewer_id))
            .await?;
    let as_viewer = Principal::Person {
        via: carebridge_domain::auth::Via::ApiKey(carebridge_domain::ApiKeyId(Uuid::nil())),
        org: org.id,
        person: carebridge_domain::PersonId(viewer_id),
        scopes: vec![Permission::DirectoryRead],
        roles,
    };
    let v = viewer(&mut c, &as_viewer, org).await?;
    let shown = mask_all(&mut c, org, &v, vec![person]).await?.pop();
    Ok(carebridge_proto::directory::SeenBy {
        visible: shown.is_some(),
        person: shown,
    })
}

/// A stable name of the caller, so that a sync cursor only serves the caller it was made for.
pub fn viewer_key(p: &Principal) -> String {
    match p {
        Principal::Person { person, .. } => format!("person:{person}"),
        other => other.audit_label(),
    }
}

/// Hides what `f` does not open (nothing for a full view).
pub fn mask(p: &mut Person, f: Fields) {
    if f.contains(Fields::FULL) {
        p.fields = None;
        return;
    }
    if !f.contains(Fields::NAME) {
        p.given_name.clear();
        p.family_name.clear();
        p.units.clear();
    }
    if !f.contains(Fields::PHONES) {
        p.phones.clear();
    }
    if !f.contains(Fields::EMAILS) {
        p.emails.clear();
    }
    if !f.contains(Fields::ADDRESS) {
        p.address = Address::default();
    }
    if !f.contains(Fields::SKILLS) {
        p.skills.clear();
    }
    if !f.contains(Fields::GROUPS) {
        p.groups.clear();
    }
    p.external_id = None;
    p.language = None;
    p.fields = Some(f.names());
}

/// Masks a page of people for `v`, dropping any the viewer may not see (the query already
/// left them out; this is the second line).
pub async fn mask_all(
    x: &mut impl Exec,
    org: &OrgRef,
    v: &Viewer,
    people: Vec<Person>,
) -> Result<Vec<Person>, ServiceError> {
    if v.all {
        return Ok(people);
    }
    let ids: Vec<Uuid> = people.iter().map(|p| p.id).collect();
    let ms = feed::memberships(x, org.id, &ids).await?;
    let none = Memberships::default();
    let mut out = Vec::with_capacity(people.len());
    for mut p in people {
        let f = v.fields(p.id, ms.get(&p.id).unwrap_or(&none));
        if !f.is_empty() {
            mask(&mut p, f);
            out.push(p);
        }
    }
    Ok(out)
}

/// How far the caller may change people.
#[derive(Debug)]
pub enum Edit {
    /// Anyone, anything.
    All,
    /// People of these unit subtrees; units added or removed must lie inside them.
    Units(Vec<String>),
    /// Only their own contact data.
    OwnContact,
}

/// The caller's right to change person `id` who is in the units at `paths`.
pub fn edit_right(
    principal: &Principal,
    org: &OrgRef,
    id: Uuid,
    paths: &[String],
) -> Result<Edit, ServiceError> {
    match principal.reach(org.id, Permission::DirectoryWrite) {
        Reach::All => return Ok(Edit::All),
        Reach::Units(roots) => {
            if paths
                .iter()
                .any(|p| roots.iter().any(|r| p.starts_with(r.as_str())))
            {
                return Ok(Edit::Units(roots));
            }
        }
        Reach::Nothing => {}
    }
    if let Principal::Person {
        org: o,
        person,
        scopes,
        ..
    } = principal
        && *o == org.id
        && person.0 == id
        && scopes.contains(&Permission::DirectoryWrite)
    {
        return Ok(Edit::OwnContact);
    }
    Err(forbidden(
        "this credential may not change this person (directory:write over one of their units, or their own contact data)",
    ))
}

/// Refuses a self-service patch that touches more than contact data.
pub fn check_own_patch(patch: &UpdatePerson) -> Result<(), ServiceError> {
    let mut v = Violations::new();
    let others = [
        ("/given_name", patch.given_name.is_some()),
        ("/family_name", patch.family_name.is_some()),
        ("/kind", patch.kind.is_some()),
        ("/external_id", patch.external_id.is_some()),
        ("/unit_ids", patch.unit_ids.is_some()),
        ("/groups", patch.groups.is_some()),
        ("/skills", patch.skills.is_some()),
        ("/active", patch.active.is_some()),
    ];
    for (ptr, set) in others {
        if set {
            v.push(
                ptr,
                "not_self_service",
                "a person may change only their own phones, e-mails, address and language",
            );
        }
    }
    if v.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::Forbidden {
            detail: v
                .0
                .iter()
                .map(|x| format!("{}: {}", x.pointer, x.message))
                .collect::<Vec<_>>()
                .join("; "),
        })
    }
}

/// Refuses unit changes outside a unit admin's subtrees.
pub fn check_units_within(
    roots: &[String],
    before: &[String],
    after: &[String],
) -> Result<(), ServiceError> {
    let inside = |p: &String| roots.iter().any(|r| p.starts_with(r.as_str()));
    let added = after.iter().filter(|p| !before.contains(p));
    let removed = before.iter().filter(|p| !after.contains(p));
    if added.chain(removed).all(inside) {
        Ok(())
    } else {
        Err(forbidden(
            "units outside your subtrees cannot be added to or removed from a person",
        ))
    }
}

// ---- grants as a resource -----------------------------------------------------------------

fn fields_of(names: &[String]) -> Result<Fields, ServiceError> {
    let mut v = Violations::new();
    if names.is_empty() {
        v.push(
            "/fields",
            "required",
            "name at least one of name, phones, emails, address, skills, groups",
        );
    }
    for (i, n) in names.iter().enumerate() {
        if Fields::parse([n.as_str()]).is_err() {
            v.push(
                format!("/fields/{i}"),
                "unknown_field",
                format!("'{n}' is not one of name, phones, emails, address, skills, groups"),
            );
        }
    }
    v.into_result()?;
    Fields::parse(names.iter().map(String::as_str))
        .map_err(|_| ServiceError::Invalid(Violations::single("/fields", "unknown_field", "")))
}

async fn check_side(
    x: &mut impl Exec,
    org: &OrgRef,
    v: &mut Violations,
    ptr: &str,
    s: &GrantSide,
) -> Result<(), ServiceError> {
    match Side::parse(&s.kind) {
        None => v.push(
            format!("{ptr}/kind"),
            "invalid_kind",
            "must be 'unit' or 'group'",
        ),
        Some(Side::Unit) => {
            if crate::repo::units::existing(x, org.id, &[s.id])
                .await?
                .is_empty()
            {
                v.push(
                    format!("{ptr}/id"),
                    "unknown_unit",
                    format!("no unit {} in this organisation", s.id),
                );
            }
        }
        Some(Side::Group) => {
            if !repo::group_exists(x, org.id, s.id).await? {
                v.push(
                    format!("{ptr}/id"),
                    "unknown_group",
                    format!("no group {} in this organisation", s.id),
                );
            }
        }
    }
    Ok(())
}

pub async fn list(
    db: &Db,
    org: &OrgRef,
    cursor: &CursorKey,
    after: Option<&str>,
    limit: i64,
) -> Result<Page<ContactGrant>, ServiceError> {
    let after: Option<Uuid> = cursor.decode_opt("grants", after)?;
    let mut c = db.read().await?;
    let rows = repo::page(&mut c, org.id, after.unwrap_or(Uuid::nil()), limit + 1).await?;
    Ok(cursor.page("grants", rows, limit, |g| g.id))
}

pub async fn get(db: &Db, org: &OrgRef, id: Uuid) -> Result<ContactGrant, ServiceError> {
    let mut c = db.read().await?;
    repo::get(&mut c, org.id, id).await?.ok_or(NOT_FOUND)
}

pub async fn create(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    input: ContactGrantInput,
    now: Timestamp,
) -> Result<ContactGrant, ServiceError> {
    let mut v = Violations::new();
    let fields = match fields_of(&input.fields) {
        Ok(f) => f,
        Err(ServiceError::Invalid(e)) => {
            v.0.extend(e.0);
            Fields::NONE
        }
        Err(e) => return Err(e),
    };
    let mut tx = db.begin().await?;
    check_side(&mut tx, org, &mut v, "/viewer", &input.viewer).await?;
    check_side(&mut tx, org, &mut v, "/target", &input.target).await?;
    v.into_result()?;
    let g = ContactGrant {
        id: new_v7(now),
        viewer: input.viewer,
        target: input.target,
        fields: fields.names(),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    repo::insert(&mut tx, org.id, &g, fields).await?;
    audit::record(
        &mut tx,
        org.id,
        actor,
        "grant.create",
        "grant",
        &g.id.to_string(),
        None::<&ContactGrant>,
        Some(&g),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(g)
}

pub async fn update(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    id: Uuid,
    if_match: i64,
    input: UpdateContactGrant,
    now: Timestamp,
) -> Result<ContactGrant, ServiceError> {
    let fields = fields_of(&input.fields)?;
    let mut tx = db.begin().await?;
    let cur = repo::get(&mut tx, org.id, id).await?.ok_or(NOT_FOUND)?;
    if cur.version != if_match {
        return Err(ServiceError::VersionMismatch {
            current: cur.version,
        });
    }
    if cur.fields == fields.names() {
        return Ok(cur);
    }
    if !repo::set_fields(&mut tx, org.id, id, fields, if_match, now.as_millisecond()).await? {
        return Err(ServiceError::VersionMismatch {
            current: cur.version,
        });
    }
    let next = repo::get(&mut tx, org.id, id).await?.ok_or(NOT_FOUND)?;
    audit::record(
        &mut tx,
        org.id,
        actor,
        "grant.update",
        "grant",
        &id.to_string(),
        Some(&cur),
        Some(&next),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(next)
}

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
    if if_match.is_some_and(|v| v != cur.version) {
        return Err(ServiceError::VersionMismatch {
            current: cur.version,
        });
    }
    repo::delete(&mut tx, org.id, id).await?;
    audit::record(
        &mut tx,
        org.id,
        actor,
        "grant.delete",
        "grant",
        &id.to_string(),
        Some(&cur),
        None::<&ContactGrant>,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Folded names of the groups on the viewer side of a grant (their members gain views).
pub async fn grant_viewer_groups(
    x: &mut impl Exec,
    org: &OrgRef,
) -> Result<std::collections::HashSet<String>, ServiceError> {
    let ids: Vec<Uuid> = repo::all(x, org.id)
        .await?
        .into_iter()
        .filter_map(|(_, g)| match g.viewer {
            (Side::Group, id) => Some(id),
            _ => None,
        })
        .collect();
    let mut out = std::collections::HashSet::new();
    for id in ids {
        if let Some((_, key)) = crate::repo::labels::get(x, org.id, "group", id).await? {
            out.insert(key);
        }
    }
    Ok(out)
}

/// Refuses to delete a unit or group that grants still name.
pub async fn check_unused(
    x: &mut impl Exec,
    org: &OrgRef,
    id: Uuid,
    what: &str,
) -> Result<(), ServiceError> {
    let n = repo::uses(x, org.id, id).await?;
    if n > 0 {
        return Err(ServiceError::Conflict {
            code: "in_use",
            detail: format!("{n} contact grant(s) name this {what}: delete them first"),
        });
    }
    Ok(())
}
