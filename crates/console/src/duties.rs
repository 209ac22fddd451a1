//! Duties: the list from a day on, creating a duty, and the dispatcher's duty page — the roster
//! with "assign" (a person search, role, position), removal, and the chat switch, with the
//! chat's retention state (usable until, read-only until, deleted on) in the duty's zone.

use askama::Template;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::Method;
use axum::response::Response;
use carebridge_proto::Page;
use carebridge_proto::chat::ChatSettings;
use carebridge_proto::directory::Person;
use carebridge_proto::duties::{Assignment, Duty, Qualification};
use serde::Deserialize;
use uuid::Uuid;

use crate::api::{Fail, with_query};
use crate::people::field_errors;
use crate::units::{self, UnitOption};
use crate::web::{Chrome, Ctx, Fields, delete_then, html, id_or_404, ids_or_404, see};

/// Time zones offered first in the duty form (any IANA name is accepted).
const ZONES: &[&str] = &[
    "Europe/Zurich",
    "Europe/Berlin",
    "Europe/Vienna",
    "Europe/Paris",
    "Europe/Rome",
    "Europe/Helsinki",
    "Europe/Stockholm",
    "UTC",
];

/// A duty time as the API gives it (`2026-12-05T08:00:00+01:00[Europe/Zurich]`) as
/// `2026-12-05 08:00`.
pub fn local(s: &str) -> String {
    match s.parse::<jiff::Zoned>() {
        Ok(z) => z.strftime("%Y-%m-%d %H:%M").to_string(),
        Err(_) => s.replace('T', " "),
    }
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    from: Option<String>,
    cursor: Option<String>,
    /// `week`: the seven days from `from` as a calendar.
    view: Option<String>,
}

struct Row {
    id: Uuid,
    title: String,
    starts: String,
    ends: String,
    zone: String,
    unit: String,
    state: String,
    filled: String,
    chat: bool,
}

#[derive(Template)]
#[template(path = "duties.html")]
struct ListPage {
    c: Chrome,
    from: String,
    rows: Vec<Row>,
    next: Option<String>,
}

/// One day of the week view.
struct Day {
    date: String,
    label: String,
    rows: Vec<Row>,
}

#[derive(Template)]
#[template(path = "week.html")]
struct WeekPage {
    c: Chrome,
    from: String,
    days: Vec<Day>,
    prev: String,
    next: String,
    more: bool,
}

fn row(d: Duty, names: &std::collections::HashMap<Uuid, String>) -> Row {
    Row {
        id: d.id,
        starts: local(&d.starts_local),
        ends: local(&d.ends_local),
        zone: d.time_zone,
        unit: names.get(&d.unit_id).cloned().unwrap_or_default(),
        state: d.state,
        filled: format!(
            "{} / {}",
            d.confirmed,
            d.positions.iter().map(|p| p.needed).sum::<i64>()
        ),
        chat: d.chat,
        title: d.title,
    }
}

/// The week from `from` (seven days, by each duty's local start date).
async fn week(ctx: &Ctx, from: jiff::civil::Date) -> Response {
    let t = ctx.t();
    let de = ctx.lang() == crate::i18n::Lang::De;
    let end = from.saturating_add(jiff::Span::new().days(7));
    let path = with_query(
        &ctx.s.org_path("/duties"),
        &[
            ("from", Some(&format!("{from}T00:00:00Z"))),
            ("to", Some(&format!("{end}T00:00:00Z"))),
            ("limit", Some("200")),
        ],
    );
    let page = match ctx.api.get::<Page<Duty>>(&path).await {
        Ok(p) => p.value,
        Err(f) => return ctx.fail(&f),
    };
    let names = units::names(ctx).await.unwrap_or_default();
    let mut days: Vec<Day> = (0..7)
        .map(|i| {
            let d = from.saturating_add(jiff::Span::new().days(i));
            let label = if de {
                d.strftime("%a %d.%m.").to_string()
            } else {
                d.strftime("%a %d %b").to_string()
            };
            Day {
                date: d.to_string(),
                label,
                rows: Vec::new(),
            }
        })
        .collect();
    for d in page.items {
        let date = d.starts_local.get(..10).unwrap_or("").to_string();
        if let Some(day) = days.iter_mut().find(|x| x.date == date) {
            day.rows.push(row(d, &names));
        }
    }
    html(
        &WeekPage {
            c: ctx.chrome("duties", t.duties),
            from: from.to_string(),
            days,
            prev: from.saturating_sub(jiff::Span::new().days(7)).to_string(),
            next: end.to_string(),
            more: page.next_cursor.is_some(),
        },
        200,
    )
}

/// `GET /console/duties?from=YYYY-MM-DD`: duties ending after the start of that day (UTC).
pub async fn list(Extension(ctx): Extension<Ctx>, Query(q): Query<ListQuery>) -> Response {
    let t = ctx.t();
    let today = ctx.now.strftime("%Y-%m-%d").to_string();
    let from = q
        .from
        .clone()
        .filter(|f| f.parse::<jiff::civil::Date>().is_ok())
        .unwrap_or(today);
    if q.view.as_deref() == Some("week")
        && let Ok(d) = from.parse::<jiff::civil::Date>()
    {
        return week(&ctx, d).await;
    }
    let from_ts = format!("{from}T00:00:00Z");
    let path = with_query(
        &ctx.s.org_path("/duties"),
        &[
            ("from", Some(&from_ts)),
            ("limit", Some("50")),
            ("cursor", q.cursor.as_deref()),
        ],
    );
    let page = match ctx.api.get::<Page<Duty>>(&path).await {
        Ok(p) => p.value,
        Err(f) => return ctx.fail(&f),
    };
    let names = units::names(&ctx).await.unwrap_or_default();
    let rows = page.items.into_iter().map(|d| row(d, &names)).collect();
    let next = page.next_cursor.as_deref().map(|c| {
        with_query(
            "/console/duties",
            &[("from", Some(&from)), ("cursor", Some(c))],
        )
    });
    html(
        &ListPage {
            c: ctx.chrome("duties", t.duties),
            from,
            rows,
            next,
        },
        200,
    )
}

#[derive(Default)]
struct DutyValues {
    title: String,
    unit: String,
    location: String,
    starts: String,
    ends: String,
    zone: String,
    chat: bool,
}

#[derive(Template)]
#[template(path = "duty_form.html")]
struct FormPage {
    c: Chrome,
    v: DutyValues,
    units: Vec<UnitOption>,
    zones: &'static [&'static str],
    errors: Vec<String>,
}

async fn form_page(ctx: &Ctx, v: DutyValues, errors: Vec<String>, status: u16) -> Response {
    let units = match units::options(ctx).await {
        Ok(u) => u,
        Err(f) => return ctx.fail(&f),
    };
    html(
        &FormPage {
            c: ctx.chrome("duties", ctx.t().new_duty),
            v,
            units,
            zones: ZONES,
            errors,
        },
        status,
    )
}

/// `GET /console/duties/new`.
pub async fn new_form(Extension(ctx): Extension<Ctx>) -> Response {
    let v = DutyValues {
        zone: ZONES[0].into(),
        ..Default::default()
    };
    form_page(&ctx, v, Vec::new(), 200).await
}

/// `POST /console/duties`.
pub async fn create(Extension(ctx): Extension<Ctx>, body: Bytes) -> Response {
    let f = Fields::parse(&body);
    let v = DutyValues {
        title: f.get("title").unwrap_or_default(),
        unit: f.get("unit_id").unwrap_or_default(),
        location: f.get("location").unwrap_or_default(),
        starts: f.get("starts_at").unwrap_or_default(),
        ends: f.get("ends_at").unwrap_or_default(),
        zone: f.get("time_zone").unwrap_or_default(),
        chat: f.get("chat").is_some(),
    };
    let Ok(unit) = Uuid::parse_str(&v.unit) else {
        let t = ctx.t();
        let e = vec![format!("{}: {}", t.unit, t.none)];
        return form_page(&ctx, v, e, 422).await;
    };
    let body = serde_json::json!({
        "unit_id": unit,
        "title": v.title,
        "location": (!v.location.is_empty()).then_some(&v.location),
        "starts_at": v.starts,
        "ends_at": v.ends,
        "time_zone": (!v.zone.is_empty()).then_some(&v.zone),
        "chat": v.chat,
    });
    match ctx
        .api
        .send::<Duty>(Method::POST, &ctx.s.org_path("/duties"), &body, None)
        .await
    {
        Ok(d) => see(&format!("/console/duties/{}", d.value.id)),
        Err(e @ Fail::Problem(_)) if matches!(e.status(), 400 | 409 | 422) => {
            let errors = field_errors(ctx.t(), &e);
            form_page(&ctx, v, errors, 422).await
        }
        Err(e) => ctx.fail(&e),
    }
}

struct Line {
    id: Uuid,
    person: Uuid,
    name: String,
    role: String,
    position: String,
    status: String,
}

struct Candidate {
    id: Uuid,
    name: String,
    units: String,
}

#[derive(Template)]
#[template(path = "duty.html")]
struct ShowPage {
    starts: String,
    ends: String,
    c: Chrome,
    d: Duty,
    unit: String,
    lines: Vec<Line>,
    q: String,
    candidates: Vec<Candidate>,
    chat_state: Vec<(String, String)>,
    errors: Vec<String>,
}

#[derive(Deserialize, Default)]
pub struct ShowQuery {
    q: Option<String>,
}

/// What the duty's chat is now and when it changes, in the duty's zone.
fn chat_state(ctx: &Ctx, d: &Duty, settings: Option<&ChatSettings>) -> Vec<(String, String)> {
    let t = ctx.t();
    let de = ctx.lang() == crate::i18n::Lang::De;
    if !d.chat {
        return vec![(t.chat.into(), t.chat_off.into())];
    }
    let Some(s) = settings else {
        return vec![(t.chat.into(), t.chat_on.into())];
    };
    let zone = jiff::tz::TimeZone::get(&d.time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
    let at = |days: i64| -> String {
        d.ends_at
            .checked_add(jiff::SignedDuration::from_hours(days.saturating_mul(24)))
            .map(|ts| {
                ts.to_zoned(zone.clone())
                    .strftime("%Y-%m-%d %H:%M")
                    .to_string()
            })
            .unwrap_or_default()
    };
    let (usable, readable, deleted) = if de {
        ("Schreibbar bis", "Lesbar bis, dann gelöscht", "Gelöscht am")
    } else {
        (
            "Usable until",
            "Read-only until, then deleted",
            "Deleted on",
        )
    };
    if d.state == "cancelled" {
        let ro = if de {
            "nur lesbar (abgesagt)"
        } else {
            "read-only (cancelled)"
        };
        return vec![
            (t.chat.into(), ro.into()),
            (deleted.into(), at(s.writable_days + s.readable_days)),
        ];
    }
    vec![
        (t.chat.into(), t.chat_on.into()),
        (usable.into(), at(s.writable_days)),
        (readable.into(), at(s.writable_days + s.readable_days)),
    ]
}

async fn show_page(
    ctx: &Ctx,
    id: Uuid,
    q: Option<String>,
    errors: Vec<String>,
    status: u16,
) -> Response {
    let d = match ctx
        .api
        .get::<Duty>(&ctx.s.org_path(&format!("/duties/{id}")))
        .await
    {
        Ok(d) => d.value,
        Err(f) => return ctx.fail(&f),
    };
    let assignments = match ctx
        .api
        .get::<Page<Assignment>>(
            &ctx.s
                .org_path(&format!("/duties/{id}/assignments?limit=200")),
        )
        .await
    {
        Ok(a) => a.value.items,
        Err(f) => return ctx.fail(&f),
    };
    let mut lines = Vec::with_capacity(assignments.len());
    for a in assignments {
        if a.status == "declined" {
            continue;
        }
        let name = match ctx
            .api
            .get::<Person>(&ctx.s.org_path(&format!("/people/{}", a.person_id)))
            .await
        {
            Ok(p) => format!("{} {}", p.value.given_name, p.value.family_name),
            Err(_) => a.person_id.to_string(),
        };
        let position = a
            .position_id
            .and_then(|p| d.positions.iter().find(|x| x.id == p))
            .map(|p| p.name.clone())
            .unwrap_or_default();
        lines.push(Line {
            id: a.id,
            person: a.person_id,
            name,
            role: a.role,
            position,
            status: a.status,
        });
    }
    let q = q.filter(|q| !q.trim().is_empty());
    let candidates = match &q {
        Some(q) => match ctx
            .api
            .get::<Page<Person>>(&with_query(
                &ctx.s.org_path("/people"),
                &[
                    ("q", Some(q)),
                    ("active", Some("true")),
                    ("limit", Some("10")),
                ],
            ))
            .await
        {
            Ok(p) => p
                .value
                .items
                .into_iter()
                .filter(|p| !lines.iter().any(|l| l.person == p.id))
                .map(|p| Candidate {
                    id: p.id,
                    name: format!("{} {}", p.given_name, p.family_name),
                    units: p
                        .units
                        .iter()
                        .map(|u| u.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
                .collect(),
            Err(f) => return ctx.fail(&f),
        },
        None => Vec::new(),
    };
    let settings = ctx
        .api
        .get::<ChatSettings>(&ctx.s.org_path("/chat/settings"))
        .await
        .ok()
        .map(|g| g.value);
    let unit = units::names(ctx)
        .await
        .ok()
        .and_then(|n| n.get(&d.unit_id).cloned())
        .unwrap_or_default();
    html(
        &ShowPage {
            c: ctx.chrome("duties", d.title.clone()),
            starts: local(&d.starts_local),
            ends: local(&d.ends_local),
            chat_state: chat_state(ctx, &d, settings.as_ref()),
            d,
            unit,
            lines,
            q: q.unwrap_or_default(),
            candidates,
            errors,
        },
        status,
    )
}

/// `GET /console/duties/{id}?q=`: the duty, its roster, and people matching `q` to assign.
pub async fn show(
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Response {
    match id_or_404(&ctx, &id) {
        Ok(id) => show_page(&ctx, id, q.q, Vec::new(), 200).await,
        Err(r) => r,
    }
}

/// `POST /console/duties/{id}/assign`: "save assignment" (person, role, position).
pub async fn assign(
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
        return show_page(&ctx, id, None, vec![ctx.t().not_found.into()], 422).await;
    };
    let body = serde_json::json!({
        "person_id": person,
        "role": f.get("role").unwrap_or_else(|| "helper".into()),
        "position_id": f.get("position_id").and_then(|p| Uuid::parse_str(&p).ok()),
    });
    match ctx
        .api
        .send::<Assignment>(
            Method::POST,
            &ctx.s.org_path(&format!("/duties/{id}/assignments")),
            &body,
            None,
        )
        .await
    {
        Ok(_) => see(&format!("/console/duties/{id}")),
        Err(e @ Fail::Problem(_)) if matches!(e.status(), 400 | 409 | 422) => {
            let errors = field_errors(ctx.t(), &e);
            show_page(&ctx, id, f.get("q"), errors, 422).await
        }
        Err(e) => ctx.fail(&e),
    }
}

/// `POST /console/duties/{id}/chat`: the chat switch (`chat=on` or off), against the duty's
/// version.
pub async fn chat(Extension(ctx): Extension<Ctx>, Path(id): Path<String>, body: Bytes) -> Response {
    let id = match id_or_404(&ctx, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let f = Fields::parse(&body);
    let on = f.get("chat").as_deref() == Some("on");
    let if_match = f.if_match();
    match ctx
        .api
        .send::<Duty>(
            Method::PATCH,
            &ctx.s.org_path(&format!("/duties/{id}")),
            &serde_json::json!({ "chat": on }),
            Some(&if_match),
        )
        .await
    {
        Ok(_) => see(&format!("/console/duties/{id}")),
        Err(e) if e.status() == 412 => {
            show_page(&ctx, id, None, vec![ctx.t().changed_meanwhile.into()], 409).await
        }
        Err(e @ Fail::Problem(_)) if matches!(e.status(), 400 | 409 | 422) => {
            let errors = field_errors(ctx.t(), &e);
            show_page(&ctx, id, None, errors, 422).await
        }
        Err(e) => ctx.fail(&e),
    }
}

/// `POST /console/duties/{id}/assignments/{a}/remove`: takes a person off the roster (and so
/// out of the chat).
pub async fn remove(
    Extension(ctx): Extension<Ctx>,
    Path((id, a)): Path<(String, String)>,
) -> Response {
    let (id, a) = match ids_or_404(&ctx, &id, &a) {
        Ok(ids) => ids,
        Err(r) => return r,
    };
    delete_then(
        &ctx,
        &format!("/duties/{id}/assignments/{a}"),
        &format!("/console/duties/{id}"),
    )
    .await
}

/// A duty's local time as a `datetime-local` value (`2026-12-05T08:00`).
fn input_time(s: &str) -> String {
    match s.parse::<jiff::Zoned>() {
        Ok(z) => z.strftime("%Y-%m-%dT%H:%M").to_string(),
        Err(_) => s.get(..16).unwrap_or(s).to_string(),
    }
}

/// A position row of the edit form.
struct PositionRow {
    id: String,
    name: String,
    needed: String,
    qualification: String,
}

#[derive(Template)]
#[template(path = "duty_edit.html")]
struct EditPage {
    c: Chrome,
    id: Uuid,
    version: i64,
    v: DutyValues,
    state: String,
    positions: Vec<PositionRow>,
    qualifications: Vec<Qualification>,
    errors: Vec<String>,
}

async fn edit_page(
    ctx: &Ctx,
    d: &Duty,
    v: Option<(DutyValues, String, Vec<PositionRow>)>,
    errors: Vec<String>,
    status: u16,
) -> Response {
    let qualifications = ctx
        .api
        .get::<Page<Qualification>>(&ctx.s.org_path("/qualifications?limit=200"))
        .await
        .map(|q| q.value.items)
        .unwrap_or_default();
    let (v, state, mut positions) = v.unwrap_or_else(|| {
        (
            DutyValues {
                title: d.title.clone(),
                unit: d.unit_id.to_string(),
                location: d.location.clone().unwrap_or_default(),
                starts: input_time(&d.starts_local),
                ends: input_time(&d.ends_local),
                zone: d.time_zone.clone(),
                chat: d.chat,
            },
            d.state.clone(),
            d.positions
                .iter()
                .map(|p| PositionRow {
                    id: p.id.to_string(),
                    name: p.name.clone(),
                    needed: p.needed.to_string(),
                    qualification: p
                        .qualification_id
                        .map(|q| q.to_string())
                        .unwrap_or_default(),
                })
                .collect(),
        )
    });
    // One empty row to add a position.
    if positions.iter().all(|p| !p.name.is_empty()) {
        positions.push(PositionRow {
            id: String::new(),
            name: String::new(),
            needed: "1".into(),
            qualification: String::new(),
        });
    }
    html(
        &EditPage {
            c: ctx.chrome("duties", ctx.t().edit),
            id: d.id,
            version: d.version,
            v,
            state,
            positions,
            qualifications,
            errors,
        },
        status,
    )
}

/// `GET /console/duties/{id}/edit`.
pub async fn edit_form(Extension(ctx): Extension<Ctx>, Path(id): Path<String>) -> Response {
    let id = match id_or_404(&ctx, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    match ctx
        .api
        .get::<Duty>(&ctx.s.org_path(&format!("/duties/{id}")))
        .await
    {
        Ok(d) => edit_page(&ctx, &d.value, None, Vec::new(), 200).await,
        Err(f) => ctx.fail(&f),
    }
}

/// `POST /console/duties/{id}/edit`: title, place, times, state (cancel) and positions,
/// against the version the form was opened with.
pub async fn update(
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let id = match id_or_404(&ctx, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let path = ctx.s.org_path(&format!("/duties/{id}"));
    let current = match ctx.api.get::<Duty>(&path).await {
        Ok(d) => d.value,
        Err(f) => return ctx.fail(&f),
    };
    let f = Fields::parse(&body);
    let v = DutyValues {
        title: f.get("title").unwrap_or_default(),
        unit: current.unit_id.to_string(),
        location: f.get("location").unwrap_or_default(),
        starts: f.get("starts_at").unwrap_or_default(),
        ends: f.get("ends_at").unwrap_or_default(),
        zone: f.get("time_zone").unwrap_or_default(),
        chat: current.chat,
    };
    let state = f.get("state").unwrap_or_else(|| "planned".into());
    let (ids, names, needed, quals) = (
        f.list("pos_id"),
        f.list("pos_name"),
        f.list("pos_needed"),
        f.list("pos_qualification"),
    );
    let rows: Vec<PositionRow> = (0..names.len())
        .map(|i| PositionRow {
            id: ids.get(i).cloned().unwrap_or_default(),
            name: names[i].clone(),
            needed: needed.get(i).cloned().unwrap_or_else(|| "1".into()),
            qualification: quals.get(i).cloned().unwrap_or_default(),
        })
        .collect();
    let positions: Vec<serde_json::Value> = rows
        .iter()
        .filter(|p| !p.name.is_empty())
        .map(|p| {
            serde_json::json!({
                "id": Uuid::parse_str(&p.id).ok(),
                "name": p.name,
                "needed": p.needed.parse::<i64>().unwrap_or(-1),
                "qualification_id": Uuid::parse_str(&p.qualification).ok(),
            })
        })
        .collect();
    let body = serde_json::json!({
        "title": v.title,
        "location": (!v.location.is_empty()).then_some(&v.location),
        "starts_at": v.starts,
        "ends_at": v.ends,
        "time_zone": v.zone,
        "state": state,
        "positions": positions,
    });
    let if_match = f.if_match();
    match ctx
        .api
        .send::<Duty>(Method::PATCH, &path, &body, Some(&if_match))
        .await
    {
        Ok(_) => see(&format!("/console/duties/{id}")),
        Err(e) if e.status() == 412 => {
            edit_page(
                &ctx,
                &current,
                None,
                vec![ctx.t().changed_meanwhile.into()],
                409,
            )
            .await
        }
        Err(e @ Fail::Problem(_)) if matches!(e.status(), 400 | 409 | 422) => {
            let errors = field_errors(ctx.t(), &e);
            edit_page(&ctx, &current, Some((v, state, rows)), errors, 422).await
        }
        Err(e) => ctx.fail(&e),
    }
}

/// `POST /console/duties/{id}/assignments/{a}/decision`: confirm or decline a request.
pub async fn decide(
    Extension(ctx): Extension<Ctx>,
    Path((id, a)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (id, a) = match ids_or_404(&ctx, &id, &a) {
        Ok(ids) => ids,
        Err(r) => return r,
    };
    let f = Fields::parse(&body);
    let decision = f.get("decision").unwrap_or_default();
    match ctx
        .api
        .send::<Assignment>(
            Method::POST,
            &ctx.s
                .org_path(&format!("/duties/{id}/assignments/{a}/decision")),
            &serde_json::json!({ "decision": decision }),
            None,
        )
        .await
    {
        Ok(_) => see(&format!("/console/duties/{id}")),
        Err(e @ Fail::Problem(_)) if matches!(e.status(), 400 | 409 | 422) => {
            let errors = field_errors(ctx.t(), &e);
            show_page(&ctx, id, None, errors, 422).await
        }
        Err(e) => ctx.fail(&e),
    }
}
