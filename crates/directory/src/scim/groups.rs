//! `/scim/v2/Groups`: the directory's groups. Creating, renaming and deleting go through
//! `service::labels`; membership changes change each member's group list through
//! `service::people` (so members' versions, audit and sync feed follow).

use std::collections::{BTreeSet, HashMap};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use carebridge_domain::PersonId;
use carebridge_domain::scim::parse_filter;
use carebridge_proto::directory::{LabelInput, UpdatePerson};
use carebridge_store::{Exec, Tx};
use carebridge_web::AppState;
use serde_json::{Value, json};
use uuid::Uuid;

use super::filter::{self, Sql};
use super::repo;
use super::{Caller, GROUP, Scim, ScimError, caller};
use crate::repo::{labels as labels_repo, people as people_repo};
use crate::service::labels::{self, Kind};
use crate::service::people;

pub fn canon(n: &str) -> String {
    match n.to_ascii_lowercase().as_str() {
        "displayname" => "displayName".into(),
        "externalid" => "externalId".into(),
        "members" => "members".into(),
        "value" => "value".into(),
        "display" => "display".into(),
        other => other.to_string(),
    }
}

fn multi(n: &str) -> bool {
    n.eq_ignore_ascii_case("members")
}

fn not_found(id: &str) -> ScimError {
    ScimError::new(404, None, format!("no Group {id}"))
}

/// A Group as SCIM shows it.
async fn read(
    x: &mut impl Exec,
    c: &Caller,
    base: &str,
    id: Uuid,
    with_members: bool,
) -> Result<Option<Value>, ScimError> {
    let Some((label, _)) = labels_repo::get(x, c.org.id, "group", id).await? else {
        return Ok(None);
    };
    let ext = repo::group_external_ids(x, c.org.id, &[id])
        .await?
        .remove(&id)
        .flatten();
    let mut g = json!({
        "schemas": [GROUP],
        "id": id,
        "displayName": label.name,
        "meta": {
            "resourceType": "Group",
            "created": label.created_at.to_string(),
            "lastModified": label.created_at.to_string(),
            "location": format!("{base}/Groups/{id}"),
        },
    });
    if let Some(e) = ext {
        g["externalId"] = json!(e);
    }
    if with_members {
        let members = repo::members(x, c.org.id, id).await?;
        let version = version_of(
            &label.name,
            g["externalId"].as_str(),
            members.iter().map(|(pid, _, _)| *pid),
        );
        g["meta"]["version"] = json!(format!("W/\"{version}\""));
        g["members"] = json!(
            members
                .into_iter()
                .map(|(pid, _, _)| json!({
                    "value": pid, "$ref": format!("{base}/Users/{pid}"), "type": "User"
                }))
                .collect::<Vec<_>>()
        );
    }
    Ok(Some(g))
}

/// A Group's version: a digest of what it says (name, externalId, members in id order), so
/// that it changes with every change of the group without a counter to keep. Shown (and sent
/// as `ETag`) when the members are read; a listing that leaves them out shows none.
fn version_of(name: &str, external_id: Option<&str>, members: impl Iterator<Item = Uuid>) -> i64 {
    use sha2::{Digest, Sha256};
    let mut ids: Vec<Uuid> = members.collect();
    ids.sort();
    let mut h = Sha256::new();
    for part in [name.as_bytes(), external_id.unwrap_or("").as_bytes()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.update([u8::from(external_id.is_some())]);
    for id in ids {
        h.update(id.as_bytes());
    }
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    i64::from_be_bytes(first) & i64::MAX
}

/// The version shown in a Group read with its members.
fn shown_version(v: &Value) -> Option<i64> {
    v["meta"]["version"]
        .as_str()?
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .ok()
}

/// Refuses with 412 when `If-Match` names another version than the group's `current` one.
fn check_if_match(h: &HeaderMap, current: &Value) -> Result<(), ScimError> {
    if let Some(want) = super::if_match(h)?
        && Some(want) != shown_version(current)
    {
        return Err(ScimError::new(
            412,
            None,
            format!(
                "the Group changed: its version is {}",
                current["meta"]["version"].as_str().unwrap_or("unknown")
            ),
        ));
    }
    Ok(())
}

/// A Group response with its version as `ETag`.
fn with_version(status: StatusCode, v: Value) -> Scim {
    let version = shown_version(&v);
    let location = (status == StatusCode::CREATED)
        .then(|| v["meta"]["location"].as_str().map(String::from))
        .flatten();
    Scim {
        status,
        body: v,
        version,
        location,
    }
}

/// What a Group body says.
struct Draft {
    name: String,
    external_id: Option<String>,
    members: BTreeSet<Uuid>,
}

fn from_json(v: &Value) -> Result<Draft, ScimError> {
    if !v.is_object() {
        return Err(ScimError::invalid_syntax("a Group is a JSON object"));
    }
    let name = super::users::field(v, "displayName")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ScimError::invalid_value("displayName is required"))?
        .to_string();
    let external_id = match super::users::field(v, "externalId") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ScimError::invalid_value("externalId must be a string")),
    };
    let mut members = BTreeSet::new();
    if let Some(m) = super::users::field(v, "members") {
        let Some(items) = m.as_array() else {
            return Err(ScimError::invalid_value("members must be a list"));
        };
        for (i, it) in items.iter().enumerate() {
            let id = super::users::field(it, "value")
                .and_then(Value::as_str)
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| {
                    ScimError::invalid_value(format!("members[{i}].value is not a User id"))
                })?;
            members.insert(id);
        }
    }
    Ok(Draft {
        name,
        external_id,
        members,
    })
}

/// Makes the group's members exactly `want` (adding and removing the group on each person).
async fn set_members(
    tx: &mut Tx,
    c: &Caller,
    group: Uuid,
    want: &BTreeSet<Uuid>,
    now: carebridge_domain::Timestamp,
) -> Result<(), ScimError> {
    let have: BTreeSet<Uuid> = repo::members(tx, c.org.id, group)
        .await?
        .into_iter()
        .map(|m| m.0)
        .collect();
    let Some((label, _)) = labels_repo::get(tx, c.org.id, "group", group).await? else {
        return Err(not_found(&group.to_string()));
    };
    for id in want.symmetric_difference(&have) {
        let Some(p) = people_repo::get(tx, c.org.id, PersonId(*id)).await? else {
            return Err(ScimError::invalid_value(format!(
                "member {id}: no such User"
            )));
        };
        let mut groups: Vec<String> = p
            .groups
            .iter()
            .filter(|g| !g.eq_ignore_ascii_case(&label.name))
            .cloned()
            .collect();
        if want.contains(id) {
            groups.push(label.name.clone());
        }
        let patch = UpdatePerson {
            groups: Some(groups),
            ..UpdatePerson::default()
        };
        people::update_in(tx, &c.actor, &c.org, *id, p.version, patch, now).await?;
    }
    Ok(())
}

pub async fn create(
    State(s): State<AppState>,
    ext: Extensions,
    body: Bytes,
) -> Result<Scim, ScimError> {
    let c = caller(&s, &ext).await?;
    let d = from_json(&super::body(&body)?)?;
    let now = s.now();
    let mut tx = s.db.begin().await?;
    let label = labels::create_in(
        &mut tx,
        &c.actor,
        &c.org,
        Kind::Group,
        LabelInput {
            name: d.name.clone(),
        },
        now,
    )
    .await?;
    repo::set_group_external_id(&mut tx, c.org.id, label.id, d.external_id.as_deref()).await?;
    set_members(&mut tx, &c, label.id, &d.members, now).await?;
    let v = read(&mut tx, &c, &super::base(&s), label.id, true)
        .await?
        .ok_or_else(|| not_found(&label.id.to_string()))?;
    tx.commit().await?;
    Ok(with_version(StatusCode::CREATED, v))
}

fn parse_id(id: &str) -> Result<Uuid, ScimError> {
    Uuid::parse_str(id).map_err(|_| not_found(id))
}

fn wants_members(q: &HashMap<String, String>) -> bool {
    let named = |k: &str| {
        super::param(q, k).is_some_and(|a| {
            a.split(',')
                .any(|x| x.trim().to_ascii_lowercase().ends_with("members"))
        })
    };
    !named("excludedAttributes")
        && super::param(q, "attributes").is_none_or(|_| named("attributes"))
}

pub async fn get(
    State(s): State<AppState>,
    ext: Extensions,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Scim, ScimError> {
    let c = caller(&s, &ext).await?;
    let gid = parse_id(&id)?;
    let mut conn = s.db.read().await?;
    let v = read(&mut conn, &c, &super::base(&s), gid, wants_members(&q))
        .await?
        .ok_or_else(|| not_found(&id))?;
    let version = shown_version(&v);
    Ok(Scim {
        version,
        ..Scim::ok(super::project(v, &q))
    })
}

/// Starts a write on group `id`: a transaction that holds the group's row, so that what is
/// read next (its members) stays true until the commit.
async fn lock(s: &AppState, c: &Caller, id: Uuid) -> Result<Tx, ScimError> {
    let mut tx = s.db.begin().await?;
    // The change number first, like every people write (one lock order).
    crate::repo::feed::next_seq(&mut tx, c.org.id).await?;
    if !repo::lock_group(&mut tx, c.org.id, id).await? {
        return Err(not_found(&id.to_string()));
    }
    Ok(tx)
}

async fn store(
    s: &AppState,
    mut tx: Tx,
    c: &Caller,
    id: Uuid,
    d: Draft,
) -> Result<Scim, ScimError> {
    let now = s.now();
    labels::rename_in(
        &mut tx,
        &c.actor,
        &c.org,
        Kind::Group,
        id,
        LabelInput { name: d.name },
        now,
    )
    .await?;
    repo::set_group_external_id(&mut tx, c.org.id, id, d.external_id.as_deref()).await?;
    set_members(&mut tx, c, id, &d.members, now).await?;
    let v = read(&mut tx, c, &super::base(s), id, true)
        .await?
        .ok_or_else(|| not_found(&id.to_string()))?;
    tx.commit().await?;
    Ok(with_version(StatusCode::OK, v))
}

pub async fn replace(
    State(s): State<AppState>,
    ext: Extensions,
    Path(id): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Result<Scim, ScimError> {
    let c = caller(&s, &ext).await?;
    let gid = parse_id(&id)?;
    let d = from_json(&super::body(&body)?)?;
    let mut tx = lock(&s, &c, gid).await?;
    if h.contains_key(axum::http::header::IF_MATCH) {
        let current = read(&mut tx, &c, &super::base(&s), gid, true)
            .await?
            .ok_or_else(|| not_found(&id))?;
        check_if_match(&h, &current)?;
    }
    store(&s, tx, &c, gid, d).await
}

pub async fn patch(
    State(s): State<AppState>,
    ext: Extensions,
    Path(id): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Result<Scim, ScimError> {
    let c = caller(&s, &ext).await?;
    let gid = parse_id(&id)?;
    let ops = super::body(&body)?;
    // Read and write in one transaction holding the group: members added meanwhile by
    // someone else are not dropped by a PATCH that does not name them.
    let mut tx = lock(&s, &c, gid).await?;
    let mut doc = read(&mut tx, &c, &super::base(&s), gid, true)
        .await?
        .ok_or_else(|| not_found(&id))?;
    check_if_match(&h, &doc)?;
    super::patch::apply(&mut doc, &ops, &canon, &multi)?;
    let d = from_json(&doc)?;
    store(&s, tx, &c, gid, d).await
}

pub async fn delete(
    State(s): State<AppState>,
    ext: Extensions,
    Path(id): Path<String>,
    h: HeaderMap,
) -> Result<StatusCode, ScimError> {
    let c = caller(&s, &ext).await?;
    let gid = parse_id(&id)?;
    if !h.contains_key(axum::http::header::IF_MATCH) {
        labels::delete(&s.db, &c.actor, &c.org, Kind::Group, gid, s.now()).await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    let mut tx = lock(&s, &c, gid).await?;
    let current = read(&mut tx, &c, &super::base(&s), gid, true)
        .await?
        .ok_or_else(|| not_found(&id))?;
    check_if_match(&h, &current)?;
    labels::delete_in(&mut tx, &c.actor, &c.org, Kind::Group, gid, s.now()).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /Groups/.search`: a `SearchRequest` body, answered as `GET /Groups` with those
/// parameters.
pub async fn search(
    State(s): State<AppState>,
    ext: Extensions,
    body: axum::body::Bytes,
) -> Result<Scim, ScimError> {
    caller(&s, &ext).await?;
    let q = super::discovery::search_query(&body)?;
    list(State(s), ext, Query(q)).await
}

pub async fn list(
    State(s): State<AppState>,
    ext: Extensions,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Scim, ScimError> {
    let c = caller(&s, &ext).await?;
    let (start, count) = super::paging(&q)?;
    let mut sql = Sql::new(s.db.backend(), 1);
    let mut cond = "l.org_id = $1 AND l.kind = 'group'".to_string();
    if let Some(f) = super::param(&q, "filter") {
        let f = parse_filter(f)
            .map_err(|e| ScimError::new(400, Some("invalidFilter"), format!("filter {e}")))?;
        cond = format!("{cond} AND {}", filter::groups(&mut sql, &f)?);
    }
    let order = super::order_by(&q, "l.id", |by| match by {
        "id" => Some("l.id"),
        "displayname" => Some("l.name_key"),
        "meta.created" => Some("l.created_at"),
        _ => None,
    })?;
    let mut conn = s.db.read().await?;
    let (total, ids) = repo::count_and_page(
        &mut conn,
        c.org.id,
        "labels l LEFT JOIN scim_groups sg ON sg.label_id = l.id",
        "l.id",
        &cond,
        &sql.args,
        &order,
        start,
        count,
    )
    .await?;
    let base = super::base(&s);
    let with_members = wants_members(&q);
    let mut items = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(v) = read(&mut conn, &c, &base, id, with_members).await? {
            items.push(super::project(v, &q));
        }
    }
    Ok(Scim::ok(super::list_response(total, start, items)))
}
