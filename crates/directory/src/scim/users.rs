//! `/scim/v2/Users`: the directory's people as SCIM Users (core schema and the enterprise
//! extension). Reads and writes go through `service::people`; SCIM's own attributes are kept
//! in `scim_users`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use carebridge_domain::scim::parse_filter;
use carebridge_domain::{PersonId, Timestamp};
use carebridge_proto::directory::{Address, Contact, CreatePerson, Person, UpdatePerson};
use carebridge_store::{Exec, Tx, audit};
use carebridge_web::AppState;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::filter::{self, Sql};
use super::repo::{self, UserExtra};
use super::{Caller, ENTERPRISE, Scim, ScimError, USER, caller};
use crate::repo::{feed, people as people_repo};
use crate::service::people;

/// Canonical spelling of User attribute names (for PATCH keys that do not exist yet).
pub fn canon(n: &str) -> String {
    match n.to_ascii_lowercase().as_str() {
        "username" => "userName",
        "externalid" => "externalId",
        "name" => "name",
        "givenname" => "givenName",
        "familyname" => "familyName",
        "displayname" => "displayName",
        "active" => "active",
        "emails" => "emails",
        "phonenumbers" => "phoneNumbers",
        "addresses" => "addresses",
        "streetaddress" => "streetAddress",
        "postalcode" => "postalCode",
        "locality" => "locality",
        "country" => "country",
        "value" => "value",
        "type" => "type",
        "primary" => "primary",
        "employeenumber" => "employeeNumber",
        "department" => "department",
        "manager" => "manager",
        "preferredlanguage" => "preferredLanguage",
        other => return other.to_string(),
    }
    .to_string()
}

pub fn multi(n: &str) -> bool {
    matches!(
        n.to_ascii_lowercase().as_str(),
        "emails" | "phonenumbers" | "addresses" | "groups"
    )
}

/// A User as SCIM shows it. Values come back as stored; lists and the enterprise extension
/// only when not empty (a client compares what it sent with what it gets).
pub fn to_json(
    base: &str,
    p: &Person,
    extra: Option<&UserExtra>,
    groups: &[(Uuid, String)],
) -> Value {
    let user_name = extra
        .and_then(|e| e.user_name.clone())
        .or_else(|| p.emails.first().map(|e| e.value.clone()))
        .unwrap_or_else(|| p.id.to_string());
    let contacts = |list: &[Contact]| -> Vec<Value> {
        list.iter()
            .map(|c| json!({"value": c.value, "type": c.kind}))
            .collect()
    };
    let mut u = json!({
        "schemas": [USER],
        "id": p.id,
        "userName": user_name,
        "name": {
            "givenName": p.given_name,
        },
        "displayName": format!("{} {}", p.given_name, p.family_name).trim(),
        "active": p.active,
        "meta": {
            "resourceType": "User",
            "created": p.created_at.to_string(),
            "lastModified": p.updated_at.to_string(),
            "version": format!("W/\"{}\"", p.version),
            "location": format!("{base}/Users/{}", p.id),
        },
    });
    if !p.family_name.is_empty() {
        u["name"]["familyName"] = json!(p.family_name);
    }
    if !p.emails.is_empty() {
        u["emails"] = json!(contacts(&p.emails));
    }
    if !p.phones.is_empty() {
        u["phoneNumbers"] = json!(contacts(&p.phones));
    }
    if !groups.is_empty() {
        u["groups"] = json!(
            groups
                .iter()
                .map(|(id, name)| json!({
                    "value": id, "display": name, "$ref": format!("{base}/Groups/{id}")
                }))
                .collect::<Vec<_>>()
        );
    }
    let a = &p.address;
    if a.street.is_some() || a.postal_code.is_some() || a.locality.is_some() || a.country.is_some()
    {
        let mut addr = Map::new();
        addr.insert("type".into(), json!("work"));
        for (k, v) in [
            ("streetAddress", &a.street),
            ("postalCode", &a.postal_code),
            ("locality", &a.locality),
            ("country", &a.country),
        ] {
            if let Some(v) = v {
                addr.insert(k.into(), json!(v));
            }
        }
        u["addresses"] = json!([addr]);
    }
    if let Some(l) = &p.language {
        u["preferredLanguage"] = json!(l);
    }
    let mut ent = Map::new();
    if let Some(x) = &p.external_id {
        ent.insert("employeeNumber".into(), json!(x));
    }
    if let Some(e) = extra {
        if let Some(x) = &e.external_id {
            u["externalId"] = json!(x);
        }
        if let Some(d) = &e.department {
            ent.insert("department".into(), json!(d));
        }
        if let Some(m) = e.manager_id {
            ent.insert(
                "manager".into(),
                json!({"value": m, "$ref": format!("{base}/Users/{m}")}),
            );
        }
    }
    if !ent.is_empty() {
        u["schemas"] = json!([USER, ENTERPRISE]);
        u[ENTERPRISE] = Value::Object(ent);
    }
    u
}

/// What a User body says, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Draft {
    pub user_name: String,
    pub external_id: Option<String>,
    pub given_name: String,
    pub family_name: String,
    pub emails: Vec<Contact>,
    pub phones: Vec<Contact>,
    pub address: Address,
    pub active: bool,
    pub language: Option<String>,
    pub employee_number: Option<String>,
    pub department: Option<String>,
    pub manager: Option<Uuid>,
}

/// A member of `obj` by case-insensitive name.
pub fn field<'a>(obj: &'a Value, name: &str) -> Option<&'a Value> {
    obj.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

fn string(obj: &Value, name: &str, ptr: &str) -> Result<Option<String>, ScimError> {
    match field(obj, name) {
        None => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(ScimError::invalid_value(format!("{ptr} must be a string"))),
    }
}

/// `true`, `false`, or Entra's `"True"` / `"False"`.
fn boolean(v: &Value, ptr: &str) -> Result<bool, ScimError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(ScimError::invalid_value(format!(
            "{ptr} must be true or false"
        ))),
    }
}

fn contacts(obj: &Value, name: &str) -> Result<Vec<Contact>, ScimError> {
    let types = carebridge_domain::person::CONTACT_TYPES;
    let Some(v) = field(obj, name) else {
        return Ok(vec![]);
    };
    let Some(items) = v.as_array() else {
        return Err(ScimError::invalid_value(format!("{name} must be a list")));
    };
    let mut out: Vec<(bool, Contact)> = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let Some(value) = string(it, "value", &format!("{name}[{i}].value"))? else {
            continue;
        };
        // The type as sent (so that a later `[type eq "…"]` finds the element again).
        let kind = match string(it, "type", &format!("{name}[{i}].type"))? {
            None => "work".to_string(),
            Some(t) if types.contains(&t.to_ascii_lowercase().as_str()) => t.to_ascii_lowercase(),
            Some(t) => {
                return Err(ScimError::invalid_value(format!(
                    "{name}[{i}].type '{t}' is not one of {}",
                    types.join(", ")
                )));
            }
        };
        let primary = match field(it, "primary") {
            Some(p) => boolean(p, &format!("{name}[{i}].primary"))?,
            None => false,
        };
        out.push((primary, Contact { value, kind }));
    }
    // The primary one first (the directory's first contact is the primary).
    out.sort_by_key(|(p, _)| !*p);
    Ok(out.into_iter().map(|(_, c)| c).collect())
}

/// Reads a User body (POST, PUT, or a patched document).
pub fn from_json(v: &Value) -> Result<Draft, ScimError> {
    if !v.is_object() {
        return Err(ScimError::invalid_syntax("a User is a JSON object"));
    }
    let user_name = string(v, "userName", "userName")?
        .ok_or_else(|| ScimError::invalid_value("userName is required"))?;
    if user_name.chars().count() > 200 {
        return Err(ScimError::invalid_value(
            "userName has at most 200 characters",
        ));
    }
    // A `name` object says the name; only without one is `displayName` ("Ada Lovelace") split.
    let (given, family) = match field(v, "name") {
        Some(name) => (
            string(name, "givenName", "name.givenName")?,
            string(name, "familyName", "name.familyName")?,
        ),
        None => match string(v, "displayName", "displayName")? {
            Some(d) => {
                let (g, f) = d.rsplit_once(' ').unwrap_or((d.as_str(), ""));
                (
                    Some(g.trim().to_string()).filter(|g| !g.is_empty()),
                    Some(f.trim().to_string()).filter(|f| !f.is_empty()),
                )
            }
            None => (None, None),
        },
    };
    // Without any name, the userName stands in (the directory needs something to show).
    let given_name = match (given, field(v, "name")) {
        (Some(g), _) => g,
        (None, None) => user_name.clone(),
        (None, Some(_)) => {
            return Err(ScimError::invalid_value(
                "name.givenName is required when name is given",
            ));
        }
    };
    let family_name = family.unwrap_or_default();
    let active = match field(v, "active") {
        None => true,
        Some(a) => boolean(a, "active")?,
    };
    let emails = contacts(v, "emails")?;
    let phones = contacts(v, "phoneNumbers")?;
    let mut address = Address::default();
    if let Some(list) = field(v, "addresses") {
        let Some(items) = list.as_array() else {
            return Err(ScimError::invalid_value("addresses must be a list"));
        };
        let chosen = items
            .iter()
            .find(|a| field(a, "primary").is_some_and(|p| matches!(p, Value::Bool(true))))
            .or_else(|| items.first());
        if let Some(a) = chosen {
            address = Address {
                street: string(a, "streetAddress", "addresses.streetAddress")?,
                postal_code: string(a, "postalCode", "addresses.postalCode")?,
                locality: string(a, "locality", "addresses.locality")?,
                country: string(a, "country", "addresses.country")?,
            };
        }
    }
    let ent = field(v, ENTERPRISE).cloned().unwrap_or(Value::Null);
    let manager = match field(&ent, "manager") {
        None => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s.trim().to_string()),
        Some(m @ Value::Object(_)) => string(m, "value", "manager.value")?,
        Some(_) => {
            return Err(ScimError::invalid_value(
                "manager is an object with a value (or the manager's id)",
            ));
        }
    };
    let manager = manager
        .map(|m| {
            Uuid::parse_str(&m)
                .map_err(|_| ScimError::invalid_value(format!("manager '{m}' is not a User id")))
        })
        .transpose()?;
    Ok(Draft {
        user_name,
        external_id: string(v, "externalId", "externalId")?,
        given_name,
        family_name,
        emails,
        phones,
        address,
        active,
        // "en-US" → "en": the directory keeps the language, not the region.
        language: string(v, "preferredLanguage", "preferredLanguage")?.map(|l| {
            l.split(['-', '_'])
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase()
        }),
        employee_number: string(&ent, "employeeNumber", "employeeNumber")?,
        department: string(&ent, "department", "department")?,
        manager,
    })
}

fn extra_of(d: &Draft) -> UserExtra {
    UserExtra {
        user_name: Some(d.user_name.clone()),
        external_id: d.external_id.clone(),
        department: d.department.clone(),
        manager_id: d.manager,
    }
}

async fn check_unique_and_manager(
    tx: &mut Tx,
    c: &Caller,
    backend: carebridge_store::Backend,
    d: &Draft,
    me: Option<Uuid>,
) -> Result<(), ScimError> {
    if let Some(owner) = repo::user_name_owner(tx, c.org.id, backend, &d.user_name).await?
        && Some(owner) != me
    {
        return Err(ScimError::new(
            409,
            Some("uniqueness"),
            format!("userName '{}' is taken", d.user_name),
        ));
    }
    if let Some(m) = d.manager {
        if Some(m) == me {
            return Err(ScimError::invalid_value(
                "a user cannot be their own manager",
            ));
        }
        if people_repo::get(tx, c.org.id, PersonId(m)).await?.is_none() {
            return Err(ScimError::invalid_value(format!(
                "manager {m}: no such User"
            )));
        }
    }
    Ok(())
}

/// Reads one User as SCIM shows it.
pub async fn read(
    x: &mut impl Exec,
    c: &Caller,
    base: &str,
    id: Uuid,
) -> Result<Option<(Value, i64)>, ScimError> {
    let Some(p) = people_repo::get(x, c.org.id, PersonId(id)).await? else {
        return Ok(None);
    };
    let extra = repo::user_extras(x, c.org.id, &[id]).await?.remove(&id);
    let groups: Vec<(Uuid, String)> = repo::groups_of(x, c.org.id, &[id])
        .await?
        .into_iter()
        .map(|(_, g, n)| (g, n))
        .collect();
    let v = p.version;
    Ok(Some((to_json(base, &p, extra.as_ref(), &groups), v)))
}

fn not_found(id: &str) -> ScimError {
    ScimError::new(404, None, format!("no User {id}"))
}

fn parse_id(id: &str) -> Result<Uuid, ScimError> {
    Uuid::parse_str(id).map_err(|_| not_found(id))
}

fn created(v: Value, version: i64) -> Scim {
    let location = v["meta"]["location"].as_str().map(String::from);
    Scim {
        status: StatusCode::CREATED,
        body: v,
        version: Some(version),
        location,
    }
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
    check_unique_and_manager(&mut tx, &c, s.db.backend(), &d, None).await?;
    let input = CreatePerson {
        given_name: d.given_name.clone(),
        family_name: d.family_name.clone(),
        kind: None,
        external_id: d.employee_number.clone(),
        language: d.language.clone(),
        emails: d.emails.clone(),
        phones: d.phones.clone(),
        address: Some(d.address.clone()),
        unit_ids: vec![],
        groups: vec![],
        skills: vec![],
    };
    let p = people::create_in(&mut tx, &c.actor, &c.org, &input, now).await?;
    let mut p = p;
    if !d.active {
        let patch = UpdatePerson {
            active: Some(false),
            ..UpdatePerson::default()
        };
        p = people::update_in(&mut tx, &c.actor, &c.org, p.id, p.version, patch, now).await?;
    }
    repo::set_user_extra(&mut tx, c.org.id, p.id, &extra_of(&d), &d.user_name).await?;
    let base = super::base(&s);
    let (v, version) = read(&mut tx, &c, &base, p.id)
        .await?
        .ok_or_else(|| not_found(&p.id.to_string()))?;
    tx.commit().await?;
    Ok(created(v, version))
}

pub async fn get(
    State(s): State<AppState>,
    ext: Extensions,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Scim, ScimError> {
    let c = caller(&s, &ext).await?;
    let uid = parse_id(&id)?;
    let mut conn = s.db.read().await?;
    let (v, version) = read(&mut conn, &c, &super::base(&s), uid)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Scim {
        version: Some(version),
        ..Scim::ok(super::project(v, &q))
    })
}

/// Stores a checked User over person `id` (PUT, and PATCH after applying the operations).
async fn store(
    s: &AppState,
    c: &Caller,
    id: Uuid,
    version: i64,
    d: &Draft,
    now: Timestamp,
) -> Result<Scim, ScimError> {
    let mut tx = s.db.begin().await?;
    check_unique_and_manager(&mut tx, c, s.db.backend(), d, Some(id)).await?;
    let patch = UpdatePerson {
        given_name: Some(d.given_name.clone()),
        family_name: Some(d.family_name.clone()),
        external_id: Some(d.employee_number.clone()),
        language: Some(d.language.clone()),
        emails: Some(d.emails.clone()),
        phones: Some(d.phones.clone()),
        address: Some(d.address.clone()),
        active: Some(d.active),
        ..UpdatePerson::default()
    };
    let p = people::update_in(&mut tx, &c.actor, &c.org, id, version, patch, now).await?;
    let before = repo::user_extras(&mut tx, c.org.id, &[id])
        .await?
        .remove(&id);
    let after = extra_of(d);
    if before.as_ref() != Some(&after) {
        repo::set_user_extra(&mut tx, c.org.id, id, &after, &d.user_name).await?;
        if p.version == version {
            // Only SCIM's own attributes changed: the person still gets a new version.
            let seq = feed::next_seq(&mut tx, c.org.id).await?;
            repo::touch_person(&mut tx, c.org.id, id, now.as_millisecond(), seq).await?;
        }
        audit::record(
            &mut tx,
            c.org.id,
            &c.actor,
            "person.scim_update",
            "person",
            &id.to_string(),
            before.as_ref().map(extra_json).as_ref(),
            Some(&extra_json(&after)),
            now,
        )
        .await?;
    }
    let (v, version) = read(&mut tx, c, &super::base(s), id)
        .await?
        .ok_or_else(|| not_found(&id.to_string()))?;
    tx.commit().await?;
    Ok(Scim {
        version: Some(version),
        ..Scim::ok(v)
    })
}

fn extra_json(e: &UserExtra) -> Value {
    json!({"userName": e.user_name, "externalId": e.external_id, "department": e.department,
        "manager": e.manager_id})
}

/// The current version, checked against `If-Match` when given.
async fn current(
    s: &AppState,
    c: &Caller,
    id: Uuid,
    h: &HeaderMap,
) -> Result<(Value, i64), ScimError> {
    let mut conn = s.db.read().await?;
    let (v, version) = read(&mut conn, c, &super::base(s), id)
        .await?
        .ok_or_else(|| not_found(&id.to_string()))?;
    if let Some(want) = super::if_match(h)?
        && want != version
    {
        return Err(ScimError::new(
            412,
            None,
            format!("the User changed: its version is W/\"{version}\""),
        ));
    }
    Ok((v, version))
}

pub async fn replace(
    State(s): State<AppState>,
    ext: Extensions,
    Path(id): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Result<Scim, ScimError> {
    let c = caller(&s, &ext).await?;
    let uid = parse_id(&id)?;
    let d = from_json(&super::body(&body)?)?;
    let (_, version) = current(&s, &c, uid, &h).await?;
    store(&s, &c, uid, version, &d, s.now()).await
}

pub async fn patch(
    State(s): State<AppState>,
    ext: Extensions,
    Path(id): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Result<Scim, ScimError> {
    let c = caller(&s, &ext).await?;
    let uid = parse_id(&id)?;
    let ops = super::body(&body)?;
    let (mut doc, version) = current(&s, &c, uid, &h).await?;
    super::patch::apply(&mut doc, &ops, &canon, &multi)?;
    if field(&doc, "active").is_none() {
        return Err(ScimError::new(
            400,
            Some("mutability"),
            "active cannot be removed (set it to false to deactivate)",
        ));
    }
    let d = from_json(&doc)?;
    store(&s, &c, uid, version, &d, s.now()).await
}

pub async fn delete(
    State(s): State<AppState>,
    ext: Extensions,
    Path(id): Path<String>,
    h: HeaderMap,
) -> Result<StatusCode, ScimError> {
    let c = caller(&s, &ext).await?;
    let uid = parse_id(&id)?;
    let want = super::if_match(&h)?;
    people::delete(&s.db, &c.actor, &c.org, uid, want, s.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The SQL of a `sortBy` attribute of Users (lower-cased name).
fn sort_expr(b: carebridge_store::Backend, by: &str) -> Option<&'static str> {
    Some(match by {
        "username" => filter::user_name_expr(b),
        "name.familyname" => "p.family_name",
        "name.givenname" => "p.given_name",
        "displayname" | "name.formatted" => "p.sort_key",
        "meta.created" => "p.created_at",
        "meta.lastmodified" => "p.updated_at",
        "id" => "p.id",
        "externalid" => "su.external_id",
        _ => return None,
    })
}

/// `POST /Users/.search`: a `SearchRequest` body, answered as `GET /Users` with those
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
    let backend = s.db.backend();
    let mut sql = Sql::new(backend, 1);
    let mut cond = "p.org_id = $1".to_string();
    if let Some(f) = super::param(&q, "filter") {
        let f = parse_filter(f)
            .map_err(|e| ScimError::new(400, Some("invalidFilter"), format!("filter {e}")))?;
        cond = format!("{cond} AND {}", filter::users(&mut sql, &f)?);
    }
    let order = super::order_by(&q, "p.id", |by| sort_expr(backend, by))?;
    let mut conn = s.db.read().await?;
    let (total, ids) = repo::count_and_page(
        &mut conn,
        c.org.id,
        "people p LEFT JOIN scim_users su ON su.person_id = p.id",
        "p.id",
        &cond,
        &sql.args,
        &order,
        start,
        count,
    )
    .await?;
    let base = super::base(&s);
    let people = people_repo::by_ids(&mut conn, c.org.id, &ids).await?;
    let mut extras = repo::user_extras(&mut conn, c.org.id, &ids).await?;
    let mut groups: HashMap<Uuid, Vec<(Uuid, String)>> = HashMap::new();
    for (p, g, n) in repo::groups_of(&mut conn, c.org.id, &ids).await? {
        groups.entry(p).or_default().push((g, n));
    }
    let by_id: HashMap<Uuid, Person> = people.into_iter().map(|p| (p.id, p)).collect();
    let items: Vec<Value> = ids
        .iter()
        .filter_map(|id| by_id.get(id))
        .map(|p| {
            let v = to_json(
                &base,
                p,
                extras.remove(&p.id).as_ref(),
                groups.get(&p.id).map(Vec::as_slice).unwrap_or(&[]),
            );
            super::project(v, &q)
        })
        .collect();
    Ok(Scim::ok(super::list_response(total, start, items)))
}
