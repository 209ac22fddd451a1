//! People: create, read, search and filter, update (with optimistic concurrency), deactivate,
//! delete. Contact data is validated and normalised by `domain::person` for every path.

use carebridge_domain::auth::{Actor, Permission, Principal, Reach};
use carebridge_domain::person::{Contact as DContact, PersonDraft, PersonInput};
use carebridge_domain::search::{fold, person_tokens, query_words_in, sort_key};
use carebridge_domain::{PersonId, Timestamp, UnitId, Violations, new_v7};
use carebridge_proto::Page;
use carebridge_proto::directory::{
    Address, Contact, CreatePerson, PeopleQuery, Person, UpdatePerson,
};
use carebridge_store::orgs::OrgRef;
use carebridge_store::{Db, Tx, audit, rosters};
use carebridge_web::idem::{self, Idem, Outcome};
use carebridge_web::{CursorKey, ServiceError};
use uuid::Uuid;

use crate::repo::{feed, people as repo, units as units_repo};
use crate::service::access::{self, Edit};

const NOT_FOUND: ServiceError = ServiceError::NotFound { what: "person" };

/// For the sync feed, before people change: a new change number, and their state before
/// (`repo::feed`). Mark them with [`feed::touch`] after writing.
async fn feed_before(tx: &mut Tx, org: &OrgRef, ids: &[Uuid]) -> Result<i64, ServiceError> {
    let seq = feed::next_seq(tx, org.id).await?;
    let priors = feed::priors_now(tx, org.id, ids).await?;
    feed::log_priors(tx, org.id, seq, &priors).await?;
    Ok(seq)
}

/// Unit paths by id (for unit admins' rights).
async fn unit_paths(
    x: &mut impl carebridge_store::Exec,
    org: &OrgRef,
) -> Result<std::collections::HashMap<Uuid, String>, ServiceError> {
    Ok(crate::repo::access::tree(x, org.id)
        .await?
        .into_iter()
        .map(|u| (u.id, u.path))
        .collect())
}

fn contacts_in(c: &[Contact]) -> Vec<DContact> {
    c.iter()
        .map(|c| DContact {
            value: c.value.clone(),
            kind: c.kind.clone(),
        })
        .collect()
}

fn contacts_out(c: &[DContact]) -> Vec<Contact> {
    c.iter()
        .map(|c| Contact {
            value: c.value.clone(),
            kind: c.kind.clone(),
        })
        .collect()
}

fn address_in(a: &Address) -> carebridge_domain::person::Address {
    carebridge_domain::person::Address {
        street: a.street.clone(),
        postal_code: a.postal_code.clone(),
        locality: a.locality.clone(),
        country: a.country.clone(),
    }
}

/// The person as it will be stored, from a validated draft.
fn apply(p: &mut Person, d: &PersonDraft) {
    p.kind = d.kind.as_str().to_string();
    p.given_name = d.given_name.clone();
    p.family_name = d.family_name.clone();
    p.external_id = d.external_id.clone();
    p.language = d.language.clone();
    p.emails = contacts_out(&d.emails);
    p.phones = contacts_out(&d.phones);
    p.address = Address {
        street: d.address.street.clone(),
        postal_code: d.address.postal_code.clone(),
        locality: d.address.locality.clone(),
        country: d.address.country.clone(),
    };
    p.groups = d.groups.clone();
    p.skills = d.skills.clone();
}

/// Checks that every unit id belongs to the organisation; names the failing index.
async fn check_units(
    tx: &mut Tx,
    org: &OrgRef,
    ids: &[Uuid],
    pointer: &str,
) -> Result<Vec<Uuid>, ServiceError> {
    let mut unique: Vec<Uuid> = Vec::new();
    for id in ids {
        if !unique.contains(id) {
            unique.push(*id);
        }
    }
    let found = units_repo::existing(tx, org.id, &unique).await?;
    let mut v = Violations::new();
    for (i, id) in ids.iter().enumerate() {
        if !found.contains(id) {
            v.push(
                format!("{pointer}/{i}"),
                "unknown_unit",
                format!("no unit {id} in this organisation"),
            );
        }
    }
    v.into_result()?;
    Ok(unique)
}

/// Writes tokens, unit memberships, groups and skills of `p`.
async fn write_links(
    tx: &mut Tx,
    org: &OrgRef,
    p: &mut Person,
    unit_ids: &[Uuid],
    now: Timestamp,
) -> Result<(), ServiceError> {
    let emails: Vec<String> = p.emails.iter().map(|e| e.value.clone()).collect();
    let phones: Vec<String> = p.phones.iter().map(|e| e.value.clone()).collect();
    let tokens = person_tokens(&p.given_name, &p.family_name, &emails, &phones);
    let mut labels =
        repo::ensure_labels(tx, org.id, "group", &p.groups, now.as_millisecond(), || {
            new_v7(now)
        })
        .await?;
    labels.extend(
        repo::ensure_labels(tx, org.id, "skill", &p.skills, now.as_millisecond(), || {
            new_v7(now)
        })
        .await?,
    );
    // "Sanitäter" and "Sanitater" are one label (folded key): link it once.
    let mut seen = std::collections::HashSet::new();
    labels.retain(|l| seen.insert(*l));
    repo::set_links(
        tx,
        org.id,
        p.id,
        &sort_key(&p.given_name, &p.family_name),
        &tokens,
        unit_ids,
        &labels,
    )
    .await?;
    Ok(())
}

fn input_of(c: &CreatePerson) -> PersonInput {
    PersonInput {
        given_name: c.given_name.clone(),
        family_name: c.family_name.clone(),
        kind: c.kind.clone().unwrap_or_else(|| "staff".into()),
        external_id: c.external_id.clone(),
        language: c.language.clone(),
        emails: contacts_in(&c.emails),
        phones: contacts_in(&c.phones),
        address: c.address.as_ref().map(address_in),
        groups: c.groups.clone(),
        skills: c.skills.clone(),
    }
}

/// A new, active person with no data yet (version 1), for the create paths to fill.
pub(crate) fn blank(id: PersonId, now: Timestamp) -> Person {
    Person {
        id: id.0,
        kind: "staff".into(),
        given_name: String::new(),
        family_name: String::new(),
        external_id: None,
        language: None,
        emails: vec![],
        phones: vec![],
        address: Address::default(),
        units: vec![],
        groups: vec![],
        skills: vec![],
        active: true,
        version: 1,
        created_at: now,
        updated_at: now,
        fields: None,
    }
}

/// Creates a person inside `tx` (API, set-up, CLI, demo).
pub async fn create_in(
    tx: &mut Tx,
    actor: &Actor,
    org: &OrgRef,
    input: &CreatePerson,
    now: Timestamp,
) -> Result<Person, ServiceError> {
    let d = input_of(input).validate(&org.default_region)?;
    let units = check_units(tx, org, &input.unit_ids, "/unit_ids").await?;
    // Unit admins create people inside their subtrees only.
    match actor.principal.reach(org.id, Permission::DirectoryWrite) {
        Reach::All => {}
        Reach::Units(roots) => {
            let paths = unit_paths(tx, org).await?;
            let inside = !units.is_empty()
                && units.iter().all(|u| {
                    paths
                        .get(u)
                        .is_some_and(|p| roots.iter().any(|r| p.starts_with(r.as_str())))
                });
            if !inside {
                return Err(ServiceError::Forbidden {
                    detail:
                        "a unit admin creates people in units of their subtrees only (unit_ids)"
                            .into(),
                });
            }
        }
        Reach::Nothing => {
            return Err(ServiceError::Forbidden {
                detail: "this credential lacks the 'directory:write' permission".into(),
            });
        }
    }
    if let Some(x) = &d.external_id
        && repo::external_id_taken(tx, org.id, x, None).await?
    {
        return Err(ServiceError::Invalid(Violations::single(
            "/external_id",
            "external_id_taken",
            "another person has this external id",
        )));
    }
    let id = PersonId::generate(now);
    let mut p = blank(id, now);
    apply(&mut p, &d);
    repo::insert(tx, org.id, &p, &sort_key(&p.given_name, &p.family_name)).await?;
    write_links(tx, org, &mut p, &units, now).await?;
    let seq = feed::next_seq(tx, org.id).await?;
    feed::touch(tx, org.id, seq, &[id.0], true).await?;
    let p = repo::get(tx, org.id, id).await?.ok_or(NOT_FOUND)?;
    audit::record(
        tx,
        org.id,
        actor,
        "person.create",
        "person",
        &p.id.to_string(),
        None::<&Person>,
        Some(&p),
        now,
    )
    .await?;
    Ok(p)
}

pub async fn create(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    input: CreatePerson,
    idem: Option<Idem>,
    now: Timestamp,
) -> Result<Outcome<Person>, ServiceError> {
    idem::create(db, idem, now.as_millisecond(), async |tx| {
        create_in(tx, actor, org, &input, now).await
    })
    .await
}

/// One person as the caller may see them (404 when they may not see them at all).
pub async fn get(
    db: &Db,
    principal: &Principal,
    org: &OrgRef,
    id: Uuid,
) -> Result<Person, ServiceError> {
    let mut c = db.read().await?;
    let v = access::viewer(&mut c, principal, org).await?;
    let p = repo::get(&mut c, org.id, PersonId(id))
        .await?
        .ok_or(NOT_FOUND)?;
    access::mask_all(&mut c, org, &v, vec![p])
        .await?
        .pop()
        .ok_or(NOT_FOUND)
}

/// Search and filter, in name order.
pub async fn list(
    db: &Db,
    principal: &Principal,
    org: &OrgRef,
    cursor: &CursorKey,
    q: &PeopleQuery,
    limit: i64,
) -> Result<Page<Person>, ServiceError> {
    let after: Option<(String, Uuid)> = cursor.decode_opt("people", q.cursor.as_deref())?;
    let mut c = db.read().await?;
    let viewer = access::viewer(&mut c, principal, org).await?;
    let unit_path = match q.unit {
        Some(u) => match units_repo::get(&mut c, org.id, UnitId(u)).await? {
            Some(u) => Some(u.path),
            None => {
                return Ok(Page {
                    items: vec![],
                    next_cursor: None,
                });
            }
        },
        None => None,
    };
    if q.q.as_ref().is_some_and(|s| s.chars().count() > 200) {
        return Err(ServiceError::Invalid(Violations::single(
            "/query/q",
            "too_long",
            "a search has at most 200 characters",
        )));
    }
    let filter = repo::Filter {
        words: q
            .q
            .as_deref()
            .map(|q| query_words_in(q, &org.default_region))
            .unwrap_or_default(),
        unit_path,
        group_key: q.group.as_deref().map(fold),
        skill_key: q.skill.as_deref().map(fold),
        active: q.active,
        visible: (!viewer.all).then(|| repo::Visible {
            own: viewer.own,
            units: viewer.unit_ids(),
            groups: viewer.group_ids(),
        }),
    };
    let rows = repo::page(&mut c, org.id, &filter, after.as_ref(), limit + 1).await?;
    let page = cursor.page("people", rows, limit, |(p, key)| (key.clone(), p.id));
    let items = page.items.into_iter().map(|(p, _)| p).collect();
    let mut items = access::mask_all(&mut c, org, &viewer, items).await?;
    // A search or filter must not find people by what the caller may not see of them: a
    // person shown through a grant matches only on the fields shown (the page may come out
    // shorter; the cursor still moves on).
    items.retain(|p| {
        if p.fields.is_none() {
            return true;
        }
        let emails: Vec<String> = p.emails.iter().map(|e| e.value.clone()).collect();
        let phones: Vec<String> = p.phones.iter().map(|e| e.value.clone()).collect();
        let tokens = person_tokens(&p.given_name, &p.family_name, &emails, &phones);
        filter
            .words
            .iter()
            .all(|w| tokens.iter().any(|t| t.starts_with(w.as_str())))
            && (filter.unit_path.is_none() || !p.units.is_empty())
            && filter
                .group_key
                .as_ref()
                .is_none_or(|k| p.groups.iter().any(|g| fold(g) == *k))
            && filter
                .skill_key
                .as_ref()
                .is_none_or(|k| p.skills.iter().any(|g| fold(g) == *k))
    });
    Ok(Page {
        items,
        next_cursor: page.next_cursor,
    })
}

/// Applies a PATCH; lists are replaced, `null` clears.
pub async fn update(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    id: Uuid,
    if_match: i64,
    patch: UpdatePerson,
    now: Timestamp,
) -> Result<Person, ServiceError> {
    let mut tx = db.begin().await?;
    let p = update_in(&mut tx, actor, org, id, if_match, patch, now).await?;
    tx.commit().await?;
    Ok(p)
}

/// [`update`] inside `tx` (SCIM changes a person and its own attributes in one transaction).
pub async fn update_in(
    tx: &mut Tx,
    actor: &Actor,
    org: &OrgRef,
    id: Uuid,
    if_match: i64,
    patch: UpdatePerson,
    now: Timestamp,
) -> Result<Person, ServiceError> {
    let cur = repo::get(tx, org.id, PersonId(id))
        .await?
        .ok_or(NOT_FOUND)?;
    let paths = unit_paths(tx, org).await?;
    let path_of = |ids: &mut dyn Iterator<Item = Uuid>| -> Vec<String> {
        ids.filter_map(|u| paths.get(&u).cloned()).collect()
    };
    let before_paths = path_of(&mut cur.units.iter().map(|u| u.id));
    let right = match access::edit_right(&actor.principal, org, id, &before_paths) {
        Ok(r) => r,
        Err(e) => {
            // Someone the caller may not even see is not found, not forbidden.
            let v = access::viewer(tx, &actor.principal, org).await?;
            let m = feed::memberships(tx, org.id, &[id]).await?;
            return Err(
                if v.fields(id, m.get(&id).unwrap_or(&Default::default()))
                    .is_empty()
                {
                    NOT_FOUND
                } else {
                    e
                },
            );
        }
    };
    if let Edit::OwnContact = right {
        access::check_own_patch(&patch)?;
    }
    if cur.version != if_match {
        return Err(ServiceError::VersionMismatch {
            current: cur.version,
        });
    }
    let input = PersonInput {
        given_name: patch
            .given_name
            .clone()
            .unwrap_or_else(|| cur.given_name.clone()),
        family_name: patch
            .family_name
            .clone()
            .unwrap_or_else(|| cur.family_name.clone()),
        kind: patch.kind.clone().unwrap_or_else(|| cur.kind.clone()),
        external_id: patch
            .external_id
            .clone()
            .unwrap_or_else(|| cur.external_id.clone()),
        language: patch
            .language
            .clone()
            .unwrap_or_else(|| cur.language.clone()),
        emails: contacts_in(patch.emails.as_ref().unwrap_or(&cur.emails)),
        phones: contacts_in(patch.phones.as_ref().unwrap_or(&cur.phones)),
        address: Some(address_in(patch.address.as_ref().unwrap_or(&cur.address))),
        groups: patch.groups.clone().unwrap_or_else(|| cur.groups.clone()),
        skills: patch.skills.clone().unwrap_or_else(|| cur.skills.clone()),
    };
    let d = input.validate(&org.default_region)?;
    let unit_ids = match &patch.unit_ids {
        Some(ids) => check_units(tx, org, ids, "/unit_ids").await?,
        None => cur.units.iter().map(|u| u.id).collect(),
    };
    if let Edit::Units(roots) = &right {
        // A unit admin's edit must not reach beyond their subtrees: not people holding roles
        // elsewhere (an organisation admin in their unit), not the external key (federated
        // sign-in links accounts by it), not groups that contact grants open views to.
        let roles = crate::repo::roles::of_person(tx, org.id, id).await?;
        let covered = |u: &Option<Uuid>| {
            u.and_then(|u| paths.get(&u))
                .is_some_and(|p| roots.iter().any(|r| p.starts_with(r.as_str())))
        };
        if roles.iter().any(|r| !covered(&r.unit_id)) {
            return Err(ServiceError::Forbidden {
                detail: "this person holds a role outside your subtrees; an organisation admin changes them".into(),
            });
        }
        if patch
            .external_id
            .as_ref()
            .is_some_and(|x| *x != cur.external_id)
        {
            return Err(ServiceError::Forbidden {
                detail: "/external_id: only organisation admins change the external key".into(),
            });
        }
        if let Some(groups) = &patch.groups {
            let guarded = access::grant_viewer_groups(tx, org).await?;
            let before: std::collections::HashSet<String> =
                cur.groups.iter().map(|g| fold(g)).collect();
            let after: std::collections::HashSet<String> = groups.iter().map(|g| fold(g)).collect();
            if before
                .symmetric_difference(&after)
                .any(|g| guarded.contains(g))
            {
                return Err(ServiceError::Forbidden {
                    detail: "/groups: a contact grant opens views to this group; only organisation admins change its members".into(),
                });
            }
        }
        access::check_units_within(
            roots,
            &before_paths,
            &path_of(&mut unit_ids.iter().copied()),
        )?;
    }
    if let Some(x) = &d.external_id
        && repo::external_id_taken(tx, org.id, x, Some(id)).await?
    {
        return Err(ServiceError::Invalid(Violations::single(
            "/external_id",
            "external_id_taken",
            "another person has this external id",
        )));
    }
    let mut next = cur.clone();
    apply(&mut next, &d);
    if let Some(a) = patch.active {
        next.active = a;
    }
    let units_changed = {
        let mut a: Vec<Uuid> = cur.units.iter().map(|u| u.id).collect();
        let mut b = unit_ids.clone();
        a.sort();
        b.sort();
        a != b
    };
    if next == cur && !units_changed {
        return Ok(cur);
    }
    next.version += 1;
    next.updated_at = now;
    let seq = feed_before(tx, org, &[id]).await?;
    if !repo::update(
        tx,
        org.id,
        &next,
        &sort_key(&next.given_name, &next.family_name),
        if_match,
    )
    .await?
    {
        return Err(ServiceError::VersionMismatch {
            current: cur.version,
        });
    }
    write_links(tx, org, &mut next, &unit_ids, now).await?;
    feed::touch(tx, org.id, seq, &[id], false).await?;
    let next = repo::get(tx, org.id, PersonId(id))
        .await?
        .ok_or(NOT_FOUND)?;
    if cur.active && !next.active {
        // A deactivated person leaves every roster that has not ended yet (and so every duty
        // chat); their past duties stay as history.
        rosters::remove_person(tx, org.id.0, id, now.as_millisecond(), now.as_millisecond())
            .await?;
    }
    let action = match (cur.active, next.active) {
        (true, false) => "person.deactivate",
        (false, true) => "person.reactivate",
        _ => "person.update",
    };
    audit::record(
        tx,
        org.id,
        actor,
        action,
        "person",
        &id.to_string(),
        Some(&cur),
        Some(&next),
        now,
    )
    .await?;
    Ok(next)
}

/// Deletes a person; the audit log keeps a tombstone (ids and digests, no personal data).
pub async fn delete(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    id: Uuid,
    if_match: Option<i64>,
    now: Timestamp,
) -> Result<(), ServiceError> {
    let mut tx = db.begin().await?;
    delete_in(&mut tx, actor, org, id, if_match, now).await?;
    tx.commit().await?;
    Ok(())
}

/// [`delete`] inside `tx`.
pub async fn delete_in(
    tx: &mut Tx,
    actor: &Actor,
    org: &OrgRef,
    id: Uuid,
    if_match: Option<i64>,
    now: Timestamp,
) -> Result<(), ServiceError> {
    let cur = repo::get(tx, org.id, PersonId(id))
        .await?
        .ok_or(NOT_FOUND)?;
    if if_match.is_some_and(|v| v != cur.version) {
        return Err(ServiceError::VersionMismatch {
            current: cur.version,
        });
    }
    rosters::remove_person(tx, org.id.0, id, i64::MIN, now.as_millisecond()).await?;
    repo::detach_identity(tx, org.id, id).await?;
    feed_before(tx, org, &[id]).await?;
    repo::delete(tx, org.id, PersonId(id)).await?;
    audit::record(
        tx,
        org.id,
        actor,
        "person.delete",
        "person",
        &id.to_string(),
        Some(&cur),
        None::<&Person>,
        now,
    )
    .await?;
    Ok(())
}

/// Everything held about one person, for the person (GDPR access and portability). The export
/// itself is audited (`person.export`): who took whose data, when.
pub async fn export(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    id: Uuid,
    now: Timestamp,
) -> Result<carebridge_proto::directory::PersonExport, ServiceError> {
    use carebridge_domain::time::from_millis;
    use carebridge_proto::directory::{
        ExportedAccount, ExportedAssignment, ExportedEvent, PersonExport,
    };
    let mut tx = db.begin().await?;
    let person = repo::get(&mut tx, org.id, PersonId(id))
        .await?
        .ok_or(NOT_FOUND)?;
    let roles = crate::repo::roles::of_person(&mut tx, org.id, id).await?;
    let account = repo::account_of(&mut tx, org.id, id).await?.map(
        |(login, phone, has_password, authenticator_app, created)| ExportedAccount {
            login,
            phone,
            has_password,
            authenticator_app,
            created_at: from_millis(created),
        },
    );
    let duties = repo::assignments_of(&mut tx, org.id, id)
        .await?
        .into_iter()
        .map(
            |(duty_id, title, starts, ends, role, status, note)| ExportedAssignment {
                duty_id,
                title,
                starts_at: from_millis(starts),
                ends_at: from_millis(ends),
                role,
                status,
                note,
            },
        )
        .collect();
    let history = repo::history_of(&mut tx, org.id, id)
        .await?
        .into_iter()
        .map(|(seq, at, action, actor, source)| ExportedEvent {
            seq,
            at: from_millis(at),
            action,
            actor,
            source,
        })
        .collect();
    audit::record(
        &mut tx,
        org.id,
        actor,
        "person.export",
        "person",
        &id.to_string(),
        None::<&Person>,
        None::<&Person>,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(PersonExport {
        exported_at: now,
        organisation: org.slug.clone(),
        person,
        roles,
        account,
        duties,
        history,
    })
}

/// Erases a person (GDPR): what `delete` removes, and also their sign-in account when no other
/// organisation's person uses it (sessions, recovery codes, links), and the messages sent to
/// their addresses. The audit log keeps a tombstone without digests: the person's id, who
/// erased them and when — nothing derived from their data.
pub async fn erase(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    id: Uuid,
    now: Timestamp,
) -> Result<(), ServiceError> {
    let mut tx = db.begin().await?;
    let cur = repo::get(&mut tx, org.id, PersonId(id))
        .await?
        .ok_or(NOT_FOUND)?;
    let account = repo::account_id(&mut tx, org.id, id).await?;
    let mut addresses: Vec<String> = cur
        .emails
        .iter()
        .chain(&cur.phones)
        .map(|c| c.value.clone())
        .collect();
    if let Some(a) = account {
        addresses.extend(repo::account_addresses(&mut tx, a).await?);
    }
    addresses.sort();
    addresses.dedup();
    rosters::remove_person(&mut tx, org.id.0, id, i64::MIN, now.as_millisecond()).await?;
    repo::detach_identity(&mut tx, org.id, id).await?;
    feed_before(&mut tx, org, &[id]).await?;
    repo::delete(&mut tx, org.id, PersonId(id)).await?;
    if let Some(a) = account {
        repo::erase_account_if_unused(&mut tx, a).await?;
    }
    repo::erase_messages(&mut tx, org.id, &addresses).await?;
    audit::record(
        &mut tx,
        org.id,
        actor,
        "person.erase",
        "person",
        &id.to_string(),
        None::<&Person>,
        None::<&Person>,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
