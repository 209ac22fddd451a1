//! Units: the organisation's tree (as far as the viewer may see it), creating a unit, renaming
//! and moving one. Also the unit choices of the other pages' forms and filters.

use std::collections::HashMap;

use askama::Template;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::Method;
use axum::response::Response;
use carebridge_proto::Page;
use carebridge_proto::directory::Unit;
use uuid::Uuid;

use crate::api::{Fail, with_query};
use crate::people::field_errors;
use crate::web::{Chrome, Ctx, Fields, delete_then, html, id_or_404, ids_or_404, see};

/// Units read for one page at most (pages of 200 from the API).
const MAX_UNITS: usize = 5_000;

/// Every unit the viewer may see, in tree order (each parent before its children, siblings by
/// name).
pub async fn all(ctx: &Ctx) -> Result<Vec<Unit>, Fail> {
    let mut out: Vec<Unit> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = with_query(
            &ctx.s.org_path("/units"),
            &[("limit", Some("200")), ("cursor", cursor.as_deref())],
        );
        let page = ctx.api.get::<Page<Unit>>(&path).await?.value;
        out.extend(page.items);
        match page.next_cursor {
            Some(c) if out.len() < MAX_UNITS => cursor = Some(c),
            _ => break,
        }
    }
    let names: HashMap<Uuid, String> = out.iter().map(|u| (u.id, u.name.clone())).collect();
    // Sort by the names along the path, so the list reads as a tree.
    let key = |u: &Unit| -> Vec<String> {
        u.path
            .iter()
            .map(|id| names.get(id).cloned().unwrap_or_default().to_lowercase())
            .collect()
    };
    out.sort_by_cached_key(key);
    Ok(out)
}

/// A unit in a `<select>`: its id and its name indented by depth.
pub struct UnitOption {
    pub id: String,
    pub label: String,
}

pub async fn options(ctx: &Ctx) -> Result<Vec<UnitOption>, Fail> {
    Ok(all(ctx)
        .await?
        .into_iter()
        .map(|u| UnitOption {
            id: u.id.to_string(),
            label: format!(
                "{}{}",
                "\u{2003}".repeat(u.path.len().saturating_sub(1)),
                u.name
            ),
        })
        .collect())
}

/// Unit names by id.
pub async fn names(ctx: &Ctx) -> Result<HashMap<Uuid, String>, Fail> {
    Ok(all(ctx)
        .await?
        .into_iter()
        .map(|u| (u.id, u.name))
        .collect())
}

struct TreeRow {
    id: Uuid,
    name: String,
    depth: usize,
}

#[derive(Template)]
#[template(path = "units.html")]
struct ListPage {
    c: Chrome,
    rows: Vec<TreeRow>,
    options: Vec<UnitOption>,
    errors: Vec<String>,
    name: String,
}

async fn list_page(ctx: &Ctx, errors: Vec<String>, name: String, status: u16) -> Response {
    let t = ctx.t();
    let units = match all(ctx).await {
        Ok(u) => u,
        Err(f) => return ctx.fail(&f),
    };
    let rows = units
        .iter()
        .map(|u| TreeRow {
            id: u.id,
            name: u.name.clone(),
            depth: u.path.len().saturating_sub(1),
        })
        .collect();
    let options = units
        .into_iter()
        .map(|u| UnitOption {
            id: u.id.to_string(),
            label: format!(
                "{}{}",
                "\u{2003}".repeat(u.path.len().saturating_sub(1)),
                u.name
            ),
        })
        .collect();
    html(
        &ListPage {
            c: ctx.chrome("units", t.units),
            rows,
            options,
            errors,
            name,
        },
        status,
    )
}

/// `GET /console/units`.
pub async fn list(Extension(ctx): Extension<Ctx>) -> Response {
    list_page(&ctx, Vec::new(), String::new(), 200).await
}

/// `POST /console/units`: a new unit.
pub async fn create(Extension(ctx): Extension<Ctx>, body: Bytes) -> Response {
    let f = Fields::parse(&body);
    let name = f.get("name").unwrap_or_default();
    let parent = f.get("parent_id").and_then(|p| Uuid::parse_str(&p).ok());
    match ctx
        .api
        .send::<Unit>(
            Method::POST,
            &ctx.s.org_path("/units"),
            &serde_json::json!({ "name": name, "parent_id": parent }),
            None,
        )
        .await
    {
        Ok(_) => see("/console/units"),
        Err(e @ Fail::Problem(_)) if matches!(e.status(), 400 | 409 | 422) => {
            list_page(&ctx, field_errors(ctx.t(), &e), name, 422).await
        }
        Err(e) => ctx.fail(&e),
    }
}

/// A unit admin of the unit: the role assignment and the person.
struct Admin {
    role: Uuid,
    person: Uuid,
    name: String,
}

/// A person found to make unit admin.
struct Candidate {
    id: Uuid,
    name: String,
}

#[derive(Template)]
#[template(path = "unit.html")]
struct ShowPage {
    c: Chrome,
    u: Unit,
    options: Vec<UnitOption>,
    parent: String,
    errors: Vec<String>,
    admins: Option<Vec<Admin>>,
    q: String,
    candidates: Vec<Candidate>,
}

#[derive(serde::Deserialize, Default)]
pub struct ShowQuery {
    q: Option<String>,
}

/// The unit's admins (when the viewer may read role assignments).
async fn admins(ctx: &Ctx, unit: Uuid) -> Option<Vec<Admin>> {
    let roles = ctx
        .api
        .get::<Page<carebridge_proto::directory::RoleAssignment>>(&with_query(
            &ctx.s.org_path("/roles"),
            &[("unit", Some(&unit.to_string())), ("limit", Some("200"))],
        ))
        .await
        .ok()?
        .value
        .items;
    let mut out = Vec::new();
    for r in roles.into_iter().filter(|r| r.role == "unit_admin") {
        let name = match ctx
            .api
            .get::<carebridge_proto::directory::Person>(
                &ctx.s.org_path(&format!("/people/{}", r.person_id)),
            )
            .await
        {
            Ok(p) => format!("{} {}", p.value.given_name, p.value.family_name),
            Err(_) => r.person_id.to_string(),
        };
        out.push(Admin {
            role: r.id,
            person: r.person_id,
            name,
        });
    }
    Some(out)
}

async fn show_page(ctx: &Ctx, id: Uuid, errors: Vec<String>, status: u16) -> Response {
    show_page_q(ctx, id, None, errors, status).await
}

async fn show_page_q(
    ctx: &Ctx,
    id: Uuid,
    q: Option<String>,
    errors: Vec<String>,
    status: u16,
) -> Response {
    let u = match ctx
        .api
        .get::<Unit>(&ctx.s.org_path(&format!("/units/{id}")))
        .await
    {
        Ok(u) => u.value,
        Err(f) => return ctx.fail(&f),
    };
    // A unit cannot move below itself: its own subtree is not offered.
    let options = match all(ctx).await {
        Ok(all) => all
            .into_iter()
            .filter(|o| !o.path.contains(&id))
            .map(|o| UnitOption {
                id: o.id.to_string(),
                label: format!(
                    "{}{}",
                    "\u{2003}".repeat(o.path.len().saturating_sub(1)),
                    o.name
                ),
            })
            .collect(),
        Err(f) => return ctx.fail(&f),
    };
    let parent = u.parent_id.map(|p| p.to_string()).unwrap_or_default();
    let admins = admins(ctx, id).await;
    let q = q.filter(|q| !q.trim().is_empty());
    let candidates = match (&q, &admins) {
        (Some(q), Some(list)) => ctx
            .api
            .get::<Page<carebridge_proto::directory::Person>>(&with_query(
                &ctx.s.org_path("/people"),
                &[
                    ("q", Some(q)),
                    ("active", Some("true")),
                    ("limit", Some("10")),
                ],
            ))
            .await
            .map(|p| p.value.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| !list.iter().any(|a| a.person == p.id))
            .map(|p| Candidate {
                id: p.id,
                name: format!("{} {}", p.given_name, p.family_name),
            })
            .collect(),
        _ => Vec::new(),
    };
    html(
        &ShowPage {
            c: ctx.chrome("units", u.name.clone()),
            u,
            options,
            parent,
            errors,
            admins,
            q: q.unwrap_or_default(),
            candidates,
        },
        status,
    )
}

/// `GET /console/units/{id}?q=`: the unit, its admins, and people matching `q` to make admin.
pub async fn show(
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<ShowQuery>,
) -> Response {
    match id_or_404(&ctx, &id) {
        Ok(id) => show_page_q(&ctx, id, q.q, Vec::new(), 200).await,
        Err(r) => r,
    }
}

/// `POST /console/units/{id}/admins`: makes a person unit admin of this unit.
pub async fn add_admin(
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let id = match id_or_404(&ctx, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let f = Fields::parse(&body);
    let Some(person) = f.get("person_id").and_then(|p| Uuid::parse_str(&p).ok()) else {
        return show_page(&ctx, id, vec![ctx.t().not_found.into()], 422).await;
    };
    match ctx
        .api
        .send::<serde_json::Value>(
            Method::POST,
            &ctx.s.org_path("/roles"),
            &serde_json::json!({"person_id": person, "role": "unit_admin", "unit_id": id}),
            None,
        )
        .await
    {
        Ok(_) => see(&format!("/console/units/{id}")),
        Err(e @ Fail::Problem(_)) if matches!(e.status(), 400 | 409 | 422) => {
            show_page(&ctx, id, field_errors(ctx.t(), &e), 422).await
        }
        Err(e) => ctx.fail(&e),
    }
}

/// `POST /console/units/{id}/admins/{role}/remove`.
pub async fn remove_admin(
    Extension(ctx): Extension<Ctx>,
    Path((id, role)): Path<(String, String)>,
) -> Response {
    let (id, role) = match ids_or_404(&ctx, &id, &role) {
        Ok(ids) => ids,
        Err(r) => return r,
    };
    delete_then(
        &ctx,
        &format!("/roles/{role}"),
        &format!("/console/units/{id}"),
    )
    .await
}

/// `POST /console/units/{id}`: rename and/or move.
pub async fn update(
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let id = match id_or_404(&ctx, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let f = Fields::parse(&body);
    let parent = f.get("parent_id").and_then(|p| Uuid::parse_str(&p).ok());
    let if_match = f.if_match();
    match ctx
        .api
        .send::<Unit>(
            Method::PATCH,
            &ctx.s.org_path(&format!("/units/{id}")),
            &serde_json::json!({ "name": f.get("name").unwrap_or_default(), "parent_id": parent }),
            Some(&if_match),
        )
        .await
    {
        Ok(_) => see(&format!("/console/units/{id}")),
        Err(e) if e.status() == 412 => {
            show_page(&ctx, id, vec![ctx.t().changed_meanwhile.to_string()], 409).await
        }
        Err(e @ Fail::Problem(_)) if matches!(e.status(), 400 | 409 | 422) => {
            show_page(&ctx, id, field_errors(ctx.t(), &e), 422).await
        }
        Err(e) => ctx.fail(&e),
    }
}
