//! Access rights: the contact grants ("members of unit/group X may see fields F of people in
//! unit/group Y"), creating and deleting them, and the preview "what does person X see of
//! person Y" (the API's `seen-by`, which applies the same rules as every listing).

use std::collections::HashMap;

use askama::Template;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::Method;
use axum::response::Response;
use carebridge_proto::Page;
use carebridge_proto::directory::{ContactGrant, Label, Person, SeenBy};
use serde::Deserialize;
use uuid::Uuid;

use crate::api::{Fail, with_query};
use crate::people::field_errors;
use crate::units;
use crate::web::{Chrome, Ctx, Fields, delete_then, html, id_or_404, see};

/// The fields a grant can open, in the API's words.
const FIELDS: &[&str] = &["name", "phones", "emails", "address", "skills", "groups"];

/// A grant side in a `<select>`: `unit:<id>` or `group:<id>`.
pub struct SideOption {
    value: String,
    label: String,
}

struct GrantRow {
    id: Uuid,
    viewer: String,
    target: String,
    fields: String,
}

/// A person found for one end of the preview.
struct Found {
    id: Uuid,
    name: String,
}

/// One end of the preview: chosen, or the people the search found.
#[derive(Default)]
struct End {
    q: String,
    chosen: Option<Found>,
    candidates: Vec<Found>,
}

#[derive(Template)]
#[template(path = "access.html")]
struct AccessPage {
    c: Chrome,
    grants: Vec<GrantRow>,
    units: Vec<SideOption>,
    groups: Vec<SideOption>,
    fields: &'static [&'static str],
    errors: Vec<String>,
    viewer: End,
    person: End,
    seen: Option<SeenBy>,
}

impl AccessPage {
    /// The preview page with `id` as the viewer, the other end kept.
    fn pick_viewer(&self, id: &Uuid) -> String {
        let id = id.to_string();
        let other = self.person.chosen.as_ref().map(|p| p.id.to_string());
        with_query(
            "/console/access",
            &[
                ("viewer", Some(&id)),
                ("person", other.as_deref()),
                ("person_q", Some(&self.person.q)),
            ],
        )
    }

    /// The preview page with `id` as the person looked at, the other end kept.
    fn pick_person(&self, id: &Uuid) -> String {
        let id = id.to_string();
        let other = self.viewer.chosen.as_ref().map(|p| p.id.to_string());
        with_query(
            "/console/access",
            &[
                ("viewer", other.as_deref()),
                ("viewer_q", Some(&self.viewer.q)),
                ("person", Some(&id)),
            ],
        )
    }
}

#[derive(Deserialize, Default)]
pub struct AccessQuery {
    viewer: Option<String>,
    person: Option<String>,
    viewer_q: Option<String>,
    person_q: Option<String>,
}

async fn labels(ctx: &Ctx) -> Result<Vec<Label>, Fail> {
    Ok(ctx
        .api
        .get::<Page<Label>>(&ctx.s.org_path("/groups?limit=200"))
        .await?
        .value
        .items)
}

fn name_of(p: &Person) -> String {
    format!("{} {}", p.given_name, p.family_name)
}

/// Resolves one end: an id given, else a search that names exactly one person.
async fn end(ctx: &Ctx, id: Option<&str>, q: Option<&str>) -> End {
    let q = q.unwrap_or("").trim().to_string();
    if let Some(id) = id.and_then(|i| Uuid::parse_str(i).ok())
        && let Ok(p) = ctx
            .api
            .get::<Person>(&ctx.s.org_path(&format!("/people/{id}")))
            .await
    {
        return End {
            q,
            chosen: Some(Found {
                id,
                name: name_of(&p.value),
            }),
            candidates: Vec::new(),
        };
    }
    if q.is_empty() {
        return End::default();
    }
    let found = ctx
        .api
        .get::<Page<Person>>(&with_query(
            &ctx.s.org_path("/people"),
            &[("q", Some(&q)), ("limit", Some("10"))],
        ))
        .await
        .map(|p| p.value.items)
        .unwrap_or_default();
    let mut found: Vec<Found> = found
        .iter()
        .map(|p| Found {
            id: p.id,
            name: name_of(p),
        })
        .collect();
    if found.len() == 1 {
        return End {
            q,
            chosen: found.pop(),
            candidates: Vec::new(),
        };
    }
    End {
        q,
        chosen: None,
        candidates: found,
    }
}

async fn page(ctx: &Ctx, q: AccessQuery, errors: Vec<String>, status: u16) -> Response {
    let t = ctx.t();
    let grants = match ctx
        .api
        .get::<Page<ContactGrant>>(&ctx.s.org_path("/contact-grants?limit=200"))
        .await
    {
        Ok(g) => g.value.items,
        Err(f) => return ctx.fail(&f),
    };
    let unit_list = units::options(ctx).await.unwrap_or_default();
    let unit_names: HashMap<String, String> = units::names(ctx)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let groups = labels(ctx).await.unwrap_or_default();
    let group_names: HashMap<String, String> = groups
        .iter()
        .map(|g| (g.id.to_string(), g.name.clone()))
        .collect();
    let side = |kind: &str, id: &Uuid| -> String {
        let id = id.to_string();
        match kind {
            "unit" => format!(
                "{} {}",
                t.unit,
                unit_names.get(&id).cloned().unwrap_or(id.clone())
            ),
            _ => format!(
                "{} {}",
                t.groups,
                group_names.get(&id).cloned().unwrap_or(id.clone())
            ),
        }
    };
    let rows = grants
        .iter()
        .map(|g| GrantRow {
            id: g.id,
            viewer: side(&g.viewer.kind, &g.viewer.id),
            target: side(&g.target.kind, &g.target.id),
            fields: g.fields.join(", "),
        })
        .collect();
    let viewer = end(ctx, q.viewer.as_deref(), q.viewer_q.as_deref()).await;
    let person = end(ctx, q.person.as_deref(), q.person_q.as_deref()).await;
    let seen = match (&viewer.chosen, &person.chosen) {
        (Some(v), Some(p)) => match ctx
            .api
            .get::<SeenBy>(
                &ctx.s
                    .org_path(&format!("/people/{}/seen-by/{}", p.id, v.id)),
            )
            .await
        {
            Ok(s) => Some(s.value),
            Err(f @ Fail::SignedOut) => return ctx.fail(&f),
            Err(_) => None,
        },
        _ => None,
    };
    html(
        &AccessPage {
            c: ctx.chrome("access", t.access_rights),
            grants: rows,
            units: unit_list
                .into_iter()
                .map(|u| SideOption {
                    value: format!("unit:{}", u.id),
                    label: u.label,
                })
                .collect(),
            groups: groups
                .into_iter()
                .map(|g| SideOption {
                    value: format!("group:{}", g.id),
                    label: g.name,
                })
                .collect(),
            fields: FIELDS,
            errors,
            viewer,
            person,
            seen,
        },
        status,
    )
}

/// `GET /console/access`.
pub async fn show(Extension(ctx): Extension<Ctx>, Query(q): Query<AccessQuery>) -> Response {
    page(&ctx, q, Vec::new(), 200).await
}

fn parse_side(v: Option<String>) -> Option<serde_json::Value> {
    let v = v?;
    let (kind, id) = v.split_once(':')?;
    let id = Uuid::parse_str(id).ok()?;
    matches!(kind, "unit" | "group").then(|| serde_json::json!({"kind": kind, "id": id}))
}

/// `POST /console/access`: a new grant.
pub async fn create(Extension(ctx): Extension<Ctx>, body: Bytes) -> Response {
    let t = ctx.t();
    let f = Fields::parse(&body);
    let (Some(viewer), Some(target)) = (parse_side(f.get("viewer")), parse_side(f.get("target")))
    else {
        let e = vec![format!(
            "{} / {}: {}",
            t.grant_viewer, t.grant_target, t.none
        )];
        return page(&ctx, AccessQuery::default(), e, 422).await;
    };
    let body = serde_json::json!({"viewer": viewer, "target": target, "fields": f.all("field")});
    match ctx
        .api
        .send::<ContactGrant>(
            Method::POST,
            &ctx.s.org_path("/contact-grants"),
            &body,
            None,
        )
        .await
    {
        Ok(_) => see("/console/access"),
        Err(e @ Fail::Problem(_)) if matches!(e.status(), 400 | 409 | 422) => {
            page(&ctx, AccessQuery::default(), field_errors(t, &e), 422).await
        }
        Err(e) => ctx.fail(&e),
    }
}

/// `POST /console/access/{grant}/delete`.
pub async fn delete(Extension(ctx): Extension<Ctx>, Path(id): Path<String>) -> Response {
    let id = match id_or_404(&ctx, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    delete_then(&ctx, &format!("/contact-grants/{id}"), "/console/access").await
}
