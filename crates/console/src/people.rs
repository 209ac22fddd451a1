//! People: the searchable, filterable list (a page at a time, through the API's cursor), a
//! person's page (contact data, units, groups, skills, roles, history), and the forms to
//! create, edit, deactivate and reactivate. What a viewer cannot see comes back masked from the
//! API and is shown as hidden; what they cannot change is refused by the API and shown as such.

use askama::Template;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::Method;
use axum::response::Response;
use carebridge_proto::Page;
use carebridge_proto::audit::AuditEvent;
use carebridge_proto::chat::Device;
use carebridge_proto::directory::{Address, Contact, Person, RoleAssignment};
use carebridge_proto::identity::SignInSession;
use serde::Deserialize;
use uuid::Uuid;

use crate::api::{Fail, with_query};
use crate::i18n::Texts;
use crate::units::{self, UnitOption};
use crate::web::{Chrome, Ctx, Fields, delete_then, html, id_or_404, ids_or_404, message, see};

#[derive(Deserialize, Default)]
pub struct ListQuery {
    q: Option<String>,
    unit: Option<String>,
    group: Option<String>,
    skill: Option<String>,
    active: Option<String>,
    cursor: Option<String>,
    /// What was just done (`erased`), for the confirmation line.
    done: Option<String>,
}

#[derive(Template)]
#[template(path = "people.html")]
struct ListPage {
    c: Chrome,
    q: String,
    unit: String,
    group: String,
    skill: String,
    active: String,
    units: Vec<UnitOption>,
    people: Vec<Row>,
    next: Option<String>,
    first: Option<String>,
}

struct Row {
    id: Uuid,
    name: String,
    kind: String,
    units: String,
    email: String,
    phone: String,
    active: bool,
}

fn kind_name(t: &Texts, k: &str) -> String {
    match k {
        "staff" => t.kind_staff,
        "volunteer" => t.kind_volunteer,
        "client" => t.kind_client,
        "relative" => t.kind_relative,
        other => other,
    }
    .to_string()
}

/// `GET /console/people`.
pub async fn list(Extension(ctx): Extension<Ctx>, Query(q): Query<ListQuery>) -> Response {
    let t = ctx.t();
    let active = q.active.clone().unwrap_or_default();
    let path = with_query(
        &ctx.s.org_path("/people"),
        &[
            ("q", q.q.as_deref()),
            ("unit", q.unit.as_deref()),
            ("group", q.group.as_deref()),
            ("skill", q.skill.as_deref()),
            (
                "active",
                match active.as_str() {
                    "true" | "false" => Some(active.as_str()),
                    _ => None,
                },
            ),
            ("limit", Some("50")),
            ("cursor", q.cursor.as_deref()),
        ],
    );
    let page = match ctx.api.get::<Page<Person>>(&path).await {
        Ok(p) => p.value,
        Err(f) => return ctx.fail(&f),
    };
    let units = units::options(&ctx).await.unwrap_or_default();
    let filters = |cursor: Option<&str>| {
        with_query(
            "/console/people",
            &[
                ("q", q.q.as_deref()),
                ("unit", q.unit.as_deref()),
                ("group", q.group.as_deref()),
                ("skill", q.skill.as_deref()),
                ("active", q.active.as_deref()),
                ("cursor", cursor),
            ],
        )
    };
    let next = page.next_cursor.as_deref().map(|c| filters(Some(c)));
    let first = q.cursor.as_ref().map(|_| filters(None));
    let people = page
        .items
        .into_iter()
        .map(|p| Row {
            id: p.id,
            name: format!("{}, {}", p.family_name, p.given_name),
            kind: kind_name(t, &p.kind),
            units: p
                .units
                .iter()
                .map(|u| u.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            email: p
                .emails
                .first()
                .map(|e| e.value.clone())
                .unwrap_or_default(),
            phone: p
                .phones
                .first()
                .map(|e| e.value.clone())
                .unwrap_or_default(),
            active: p.active,
        })
        .collect();
    let mut c = ctx.chrome("people", t.people);
    if q.done.as_deref() == Some("erased") {
        c.notice = Some(t.erased.to_string());
    }
    html(
        &ListPage {
            c,
            q: q.q.clone().unwrap_or_default(),
            unit: q.unit.clone().unwrap_or_default(),
            group: q.group.clone().unwrap_or_default(),
            skill: q.skill.clone().unwrap_or_default(),
            active,
            units,
            people,
            next,
            first,
        },
        200,
    )
}

#[derive(Template)]
#[template(path = "person.html")]
struct ShowPage {
    c: Chrome,
    p: Person,
    devices: Option<Vec<Device>>,
    sessions: Option<Vec<SignInSession>>,
    kind: String,
    roles: Vec<(String, String)>,
    history: Vec<AuditEvent>,
    hidden: bool,
}

#[derive(Deserialize, Default)]
pub struct ShowQuery {
    /// What was just done, for the confirmation line.
    done: Option<String>,
}

/// `GET /console/people/{id}`.
pub async fn show(
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Response {
    let t = ctx.t();
    let id = match id_or_404(&ctx, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let p = match ctx
        .api
        .get::<Person>(&ctx.s.org_path(&format!("/people/{id}")))
        .await
    {
        Ok(p) => p.value,
        Err(f) => return ctx.fail(&f),
    };
    // Roles and history are shown to those who may read them; others simply do not see them.
    let unit_names = units::names(&ctx).await.unwrap_or_default();
    let roles = match ctx
        .api
        .get::<Page<RoleAssignment>>(&with_query(
            &ctx.s.org_path("/roles"),
            &[("person", Some(&id.to_string())), ("limit", Some("200"))],
        ))
        .await
    {
        Ok(r) => r
            .value
            .items
            .into_iter()
            .map(|r| {
                let scope = r
                    .unit_id
                    .map(|u| unit_names.get(&u).cloned().unwrap_or_else(|| u.to_string()))
                    .unwrap_or_else(|| t.whole_org.to_string());
                (r.role, scope)
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let history = match ctx
        .api
        .get::<Page<AuditEvent>>(&with_query(
            &ctx.s.org_path("/audit"),
            &[("target", Some(&id.to_string())), ("limit", Some("20"))],
        ))
        .await
    {
        Ok(h) => h.value.items,
        Err(_) => Vec::new(),
    };
    // Only those who may manage the person's devices see them.
    let devices = ctx
        .api
        .get::<Vec<Device>>(&ctx.s.org_path(&format!("/people/{id}/chat-devices")))
        .await
        .ok()
        .map(|d| d.value);
    // The person's sign-ins, for those who may sign them out.
    let sessions = ctx
        .api
        .get::<Vec<SignInSession>>(&ctx.s.org_path(&format!("/people/{id}/sessions")))
        .await
        .ok()
        .map(|d| d.value);
    let hidden = p.fields.is_some();
    let title = format!("{} {}", p.given_name, p.family_name);
    let mut c = ctx.chrome("people", title);
    c.notice = match q.done.as_deref() {
        Some("invited") => Some(t.invitation_sent.to_string()),
        Some("signed-out") => Some(t.signed_out_everywhere.to_string()),
        Some("device-removed") => Some(t.device_removed.to_string()),
        Some("session-ended") => Some(t.session_ended.to_string()),
        _ => None,
    };
    html(
        &ShowPage {
            c,
            devices,
            sessions,
            kind: kind_name(t, &p.kind),
            p,
            roles,
            history,
            hidden,
        },
        200,
    )
}

/// The person form's values, as typed (kept when the API refuses them).
#[derive(Default)]
struct FormValues {
    given_name: String,
    family_name: String,
    kind: String,
    external_id: String,
    emails: String,
    phones: String,
    street: String,
    postal_code: String,
    locality: String,
    country: String,
    units: Vec<String>,
    groups: String,
    skills: String,
    version: Option<i64>,
}

impl FormValues {
    fn of(p: &Person) -> FormValues {
        FormValues {
            given_name: p.given_name.clone(),
            family_name: p.family_name.clone(),
            kind: p.kind.clone(),
            external_id: p.external_id.clone().unwrap_or_default(),
            emails: lines(&p.emails),
            phones: lines(&p.phones),
            street: p.address.street.clone().unwrap_or_default(),
            postal_code: p.address.postal_code.clone().unwrap_or_default(),
            locality: p.address.locality.clone().unwrap_or_default(),
            country: p.address.country.clone().unwrap_or_default(),
            units: p.units.iter().map(|u| u.id.to_string()).collect(),
            groups: p.groups.join(", "),
            skills: p.skills.join(", "),
            version: Some(p.version),
        }
    }

    fn from(f: &Fields) -> FormValues {
        FormValues {
            given_name: f.get("given_name").unwrap_or_default(),
            family_name: f.get("family_name").unwrap_or_default(),
            kind: f.get("kind").unwrap_or_else(|| "staff".into()),
            external_id: f.get("external_id").unwrap_or_default(),
            emails: f.get("emails").unwrap_or_default(),
            phones: f.get("phones").unwrap_or_default(),
            street: f.get("street").unwrap_or_default(),
            postal_code: f.get("postal_code").unwrap_or_default(),
            locality: f.get("locality").unwrap_or_default(),
            country: f.get("country").unwrap_or_default(),
            units: f.all("unit"),
            groups: f.get("groups").unwrap_or_default(),
            skills: f.get("skills").unwrap_or_default(),
            version: f.get("version").and_then(|v| v.parse().ok()),
        }
    }

    /// The request body: the API's create and update share these fields (an update replaces
    /// each of them).
    fn body(&self, old: Option<&Person>) -> serde_json::Value {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let contacts = |text: &str, old: &[Contact], default: &str| -> Vec<Contact> {
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|v| Contact {
                    value: v.to_string(),
                    kind: old
                        .iter()
                        .find(|c| c.value == v)
                        .map(|c| c.kind.clone())
                        .unwrap_or_else(|| default.to_string()),
                })
                .collect()
        };
        let list = |text: &str| -> Vec<String> {
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        let units: Vec<Uuid> = self
            .units
            .iter()
            .filter_map(|u| Uuid::parse_str(u).ok())
            .collect();
        let mut b = serde_json::json!({
            "given_name": self.given_name,
            "family_name": self.family_name,
            "kind": self.kind,
            "emails": contacts(&self.emails, old.map(|p| p.emails.as_slice()).unwrap_or(&[]), "work"),
            "phones": contacts(&self.phones, old.map(|p| p.phones.as_slice()).unwrap_or(&[]), "mobile"),
            "address": Address {
                street: opt(&self.street),
                postal_code: opt(&self.postal_code),
                locality: opt(&self.locality),
                country: opt(&self.country),
            },
            "unit_ids": units,
            "groups": list(&self.groups),
            "skills": list(&self.skills),
        });
        // The external key is left alone unless it changed (unit admins may not set it).
        let old_ext = old.and_then(|p| p.external_id.clone()).unwrap_or_default();
        if self.external_id != old_ext {
            b["external_id"] = match opt(&self.external_id) {
                Some(e) => serde_json::Value::String(e),
                None => serde_json::Value::Null,
            };
        }
        b
    }
}

fn lines(c: &[Contact]) -> String {
    c.iter()
        .map(|c| c.value.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Template)]
#[template(path = "person_form.html")]
struct FormPage {
    c: Chrome,
    v: FormValues,
    action: String,
    units: Vec<UnitOption>,
    errors: Vec<String>,
}

impl FormPage {
    fn unit_selected(&self, id: &str) -> bool {
        self.v.units.iter().any(|u| u == id)
    }

    fn kinds(&self) -> [(&'static str, &'static str); 4] {
        let t = self.c.t;
        [
            ("staff", t.kind_staff),
            ("volunteer", t.kind_volunteer),
            ("client", t.kind_client),
            ("relative", t.kind_relative),
        ]
    }
}

/// The validation errors of a refused form, each named by the field's label.
pub fn field_errors(t: &Texts, f: &Fail) -> Vec<String> {
    let label = |pointer: &str| -> String {
        let mut parts = pointer.trim_start_matches('/').split('/');
        let head = parts.next().unwrap_or("");
        let index = parts.next().and_then(|i| i.parse::<usize>().ok());
        let name = match head {
            "given_name" => t.given_name,
            "family_name" => t.family_name,
            "kind" => t.kind,
            "external_id" => t.external_id,
            "emails" => t.emails,
            "phones" => t.phones,
            "address" => t.address,
            "unit_ids" => t.units,
            "groups" => t.groups,
            "skills" => t.skills,
            "name" => t.name,
            "parent_id" => t.parent,
            "title" => t.title,
            "unit_id" => t.unit,
            "starts_at" => t.starts,
            "ends_at" => t.ends,
            "time_zone" => t.time_zone,
            "location" => t.location,
            "chat" => t.chat,
            other => other,
        };
        match index {
            Some(i) => format!("{name} ({})", i + 1),
            None => name.to_string(),
        }
    };
    let fields = f.fields();
    if fields.is_empty() {
        return vec![f.message()];
    }
    fields
        .iter()
        .map(|e| format!("{}: {}", label(&e.pointer), e.detail))
        .collect()
}

async fn form_page(
    ctx: &Ctx,
    title: &str,
    v: FormValues,
    action: String,
    errors: Vec<String>,
    status: u16,
) -> Response {
    let units = units::options(ctx).await.unwrap_or_default();
    html(
        &FormPage {
            c: ctx.chrome("people", title),
            v,
            action,
            units,
            errors,
        },
        status,
    )
}

/// `GET /console/people/new`.
pub async fn new_form(Extension(ctx): Extension<Ctx>) -> Response {
    let t = ctx.t();
    let v = FormValues {
        kind: "staff".into(),
        ..Default::default()
    };
    form_page(
        &ctx,
        t.new_person,
        v,
        "/console/people".into(),
        Vec::new(),
        200,
    )
    .await
}

/// `POST /console/people`.
pub async fn create(Extension(ctx): Extension<Ctx>, body: Bytes) -> Response {
    let t = ctx.t();
    let v = FormValues::from(&Fields::parse(&body));
    match ctx
        .api
        .send::<Person>(
            Method::POST,
            &ctx.s.org_path("/people"),
            &v.body(None),
            None,
        )
        .await
    {
        Ok(p) => see(&format!("/console/people/{}", p.value.id)),
        Err(f @ Fail::Problem(_)) if matches!(f.status(), 400 | 409 | 422) => {
            let errors = field_errors(t, &f);
            form_page(&ctx, t.new_person, v, "/console/people".into(), errors, 422).await
        }
        Err(f) => ctx.fail(&f),
    }
}

/// `GET /console/people/{id}/edit`.
pub async fn edit_form(Extension(ctx): Extension<Ctx>, Path(id): Path<String>) -> Response {
    let t = ctx.t();
    let id = match id_or_404(&ctx, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    match ctx
        .api
        .get::<Person>(&ctx.s.org_path(&format!("/people/{id}")))
        .await
    {
        Ok(p) => {
            form_page(
                &ctx,
                t.edit,
                FormValues::of(&p.value),
                format!("/console/people/{id}"),
                Vec::new(),
                200,
            )
            .await
        }
        Err(f) => ctx.fail(&f),
    }
}

/// `POST /console/people/{id}`: saves the edit form (only if nobody changed the person since
/// the form was opened: the form's version is the `If-Match`).
pub async fn update(
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let t = ctx.t();
    let id = match id_or_404(&ctx, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let v = FormValues::from(&Fields::parse(&body));
    let path = ctx.s.org_path(&format!("/people/{id}"));
    let old = match ctx.api.get::<Person>(&path).await {
        Ok(p) => p.value,
        Err(f) => return ctx.fail(&f),
    };
    let if_match = format!("\"{}\"", v.version.unwrap_or(-1));
    match ctx
        .api
        .send::<Person>(Method::PATCH, &path, &v.body(Some(&old)), Some(&if_match))
        .await
    {
        Ok(_) => see(&format!("/console/people/{id}")),
        Err(f) if f.status() == 412 => {
            form_page(
                &ctx,
                t.edit,
                FormValues::of(&old),
                format!("/console/people/{id}"),
                vec![t.changed_meanwhile.to_string()],
                409,
            )
            .await
        }
        Err(f @ Fail::Problem(_)) if matches!(f.status(), 400 | 409 | 422) => {
            let errors = field_errors(t, &f);
            form_page(
                &ctx,
                t.edit,
                v,
                format!("/console/people/{id}"),
                errors,
                422,
            )
            .await
        }
        Err(f) => ctx.fail(&f),
    }
}

/// `POST /console/people/{id}/active`: deactivate (`active=false`) or reactivate.
pub async fn set_active(
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let id = match id_or_404(&ctx, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let f = Fields::parse(&body);
    let active = f.get("active").as_deref() == Some("true");
    let if_match = f.if_match();
    match ctx
        .api
        .send::<Person>(
            Method::PATCH,
            &ctx.s.org_path(&format!("/people/{id}")),
            &serde_json::json!({ "active": active }),
            Some(&if_match),
        )
        .await
    {
        Ok(_) => see(&format!("/console/people/{id}")),
        Err(f) if f.status() == 412 => see(&format!("/console/people/{id}")),
        Err(f) => ctx.fail(&f),
    }
}

/// `POST /console/people/{id}/erase`: erases the person for good (their data, account when
/// no other organisation uses it, grants; the audit log keeps a tombstone). The form must
/// carry the confirmation box.
pub async fn erase(
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let id = match id_or_404(&ctx, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    if Fields::parse(&body).get("confirm").as_deref() != Some("on") {
        return message(
            ctx.chrome("people", ctx.t().erase),
            422,
            ctx.t().erase_confirm_missing,
        );
    }
    match ctx
        .api
        .send::<serde_json::Value>(
            Method::POST,
            &ctx.s.org_path(&format!("/people/{id}/erase")),
            &serde_json::Value::Null,
            None,
        )
        .await
    {
        Ok(_) => see("/console/people?done=erased"),
        Err(f) => ctx.fail(&f),
    }
}

/// `POST /console/people/{id}/invite`: e-mails the person a link to set their password.
pub async fn invite(Extension(ctx): Extension<Ctx>, Path(id): Path<String>) -> Response {
    person_action(&ctx, &id, "invitation", "invited").await
}

/// `POST /console/people/{id}/sign-out`: ends every session and token of the person.
pub async fn sign_out(Extension(ctx): Extension<Ctx>, Path(id): Path<String>) -> Response {
    person_action(&ctx, &id, "sign-out-everywhere", "signed-out").await
}

async fn person_action(ctx: &Ctx, id: &str, action: &str, done: &str) -> Response {
    let id = match id_or_404(ctx, id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    match ctx
        .api
        .send::<serde_json::Value>(
            Method::POST,
            &ctx.s.org_path(&format!("/people/{id}/{action}")),
            &serde_json::Value::Null,
            None,
        )
        .await
    {
        Ok(_) => see(&format!("/console/people/{id}?done={done}")),
        Err(f) => ctx.fail(&f),
    }
}

/// `POST /console/people/{id}/sessions/{session}/end`: ends one sign-in (and its tokens).
pub async fn end_session(
    Extension(ctx): Extension<Ctx>,
    Path((id, session)): Path<(String, String)>,
) -> Response {
    let (id, session) = match ids_or_404(&ctx, &id, &session) {
        Ok(ids) => ids,
        Err(r) => return r,
    };
    delete_then(
        &ctx,
        &format!("/people/{id}/sessions/{session}"),
        &format!("/console/people/{id}?done=session-ended"),
    )
    .await
}

/// `POST /console/people/{id}/devices/{device}/remove`: a lost or replaced chat device leaves
/// every chat at once.
pub async fn remove_device(
    Extension(ctx): Extension<Ctx>,
    Path((id, device)): Path<(String, String)>,
) -> Response {
    let (id, device) = match ids_or_404(&ctx, &id, &device) {
        Ok(ids) => ids,
        Err(r) => return r,
    };
    delete_then(
        &ctx,
        &format!("/people/{id}/chat-devices/{device}"),
        &format!("/console/people/{id}?done=device-removed"),
    )
    .await
}
