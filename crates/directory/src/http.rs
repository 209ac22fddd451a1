//! HTTP for units, people and role assignments: thin handlers.

use axum::extract::State;
use axum::http::StatusCode;
use carebridge_domain::auth::{Actor, Permission, Principal, Source};
use carebridge_proto::directory::{
    ChangesQuery, ContactChanges, ContactGrant, ContactGrantInput, CreatePerson,
    CreateRoleAssignment, CreateUnit, ImportJob, ImportOptions, ImportReport, Label, LabelInput,
    PeopleQuery, Person, PersonExport, RoleAssignment, RolesQuery, Unit, UpdateContactGrant,
    UpdatePerson, UpdateUnit,
};
use carebridge_proto::problem::Problem;
use carebridge_proto::{Page, PageQuery};
use carebridge_web::idem::Idem;
use carebridge_web::{
    ApiError, AppState, Auth, Created, IdempotencyKey, IfMatch, IfMatchOpt, Json, Me, OrgPath,
    Path, Query, Tagged, page_limit, require,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::service::labels::{self, Kind};
use crate::service::{access, feed, import, jobs, people, roles, units};

/// The largest import upload: 100,000 rows of a few hundred bytes, with room to spare.
pub const IMPORT_BODY_LIMIT: usize = 64 * 1024 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_units, create_unit))
        .routes(routes!(get_unit, update_unit, delete_unit))
        .routes(routes!(list_people, create_person))
        .routes(routes!(get_person, update_person, delete_person))
        .routes(routes!(export_person))
        .routes(routes!(export_me))
        .routes(routes!(erase_person))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(import_people))
                .routes(routes!(list_import_jobs, create_import_job))
                .layer(axum::extract::DefaultBodyLimit::max(IMPORT_BODY_LIMIT)),
        )
        .routes(routes!(get_import_job, delete_import_job))
        .routes(routes!(list_groups, create_group))
        .routes(routes!(get_group, rename_group, delete_group))
        .routes(routes!(list_skills, create_skill))
        .routes(routes!(get_skill, rename_skill, delete_skill))
        .routes(routes!(list_grants, create_grant))
        .routes(routes!(get_grant, update_grant, delete_grant))
        .routes(routes!(seen_by))
        .routes(routes!(contact_changes))
        .routes(routes!(list_roles, create_role))
        .routes(routes!(get_role, delete_role))
}

fn actor(p: Principal) -> Actor {
    Actor::new(p, Source::Api)
}

fn collection(org: &str, what: &str) -> String {
    format!("/api/v1/orgs/{org}/{what}")
}

// ---- units -------------------------------------------------------------------------------

/// Units of the organisation in tree order (parents before children).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/units", tag = "units",
    params(("org" = String, Path, description = "slug or id"), PageQuery),
    responses((status = 200, body = Page<Unit>)), security(("bearer" = [])))]
async fn list_units(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(_org): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<Page<Unit>>, ApiError> {
    let limit = page_limit(q.limit)?;
    require(&p, &o, Permission::DirectoryRead)?;
    Ok(axum::Json(
        units::list(&s.db, &o, &s.cursor, q.cursor.as_deref(), limit).await?,
    ))
}

/// Create a unit (a root unit without `parent_id`).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/units", tag = "units", request_body = CreateUnit,
    params(("org" = String, Path, description = "slug or id"), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = Unit), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn create_unit(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(org): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    body: Json<CreateUnit>,
) -> Result<Created<Unit>, ApiError> {
    require(&p, &o, Permission::DirectoryWrite)?;
    let idem = Idem::new(&p, &format!("POST {}/units", o.id), key, &body.digest);
    let outcome = units::create(&s.db, &actor(p), &o, body.value, idem, s.now()).await?;
    Ok(Created {
        outcome,
        collection: collection(&org, "units"),
    })
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/units/{unit}", tag = "units",
    params(("org" = String, Path, description = "slug or id"), ("unit" = Uuid, Path)),
    responses((status = 200, body = Unit), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn get_unit(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, unit)): Path<(String, Uuid)>,
) -> Result<Tagged<Unit>, ApiError> {
    require(&p, &o, Permission::DirectoryRead)?;
    let u = units::get(&s.db, &o, unit).await?;
    let v = u.version;
    Ok(Tagged(u, v))
}

/// Rename and/or move a unit (`parent_id: null` makes it a root).
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/units/{unit}", tag = "units", request_body = UpdateUnit,
    params(("org" = String, Path, description = "slug or id"), ("unit" = Uuid, Path), ("If-Match" = String, Header)),
    responses((status = 200, body = Unit), (status = 412, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn update_unit(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, unit)): Path<(String, Uuid)>,
    IfMatch(version): IfMatch,
    body: Json<UpdateUnit>,
) -> Result<Tagged<Unit>, ApiError> {
    require(&p, &o, Permission::DirectoryWrite)?;
    let u = units::update(&s.db, &actor(p), &o, unit, version, body.value, s.now()).await?;
    let v = u.version;
    Ok(Tagged(u, v))
}

/// Delete an empty unit.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/units/{unit}", tag = "units",
    params(("org" = String, Path, description = "slug or id"), ("unit" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204), (status = 409, body = Problem)), security(("bearer" = [])))]
async fn delete_unit(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, unit)): Path<(String, Uuid)>,
    IfMatchOpt(version): IfMatchOpt,
) -> Result<StatusCode, ApiError> {
    require(&p, &o, Permission::DirectoryWrite)?;
    units::delete(&s.db, &actor(p), &o, unit, version, s.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- groups and skills ---------------------------------------------------------------------

/// Handlers of one label kind (groups, skills): the same five, on their own paths.
macro_rules! label_api {
    ($kind:expr, $tag:literal, $coll:literal, $item:literal, $param:literal,
     $list:ident, $create:ident, $get:ident, $rename:ident, $delete:ident) => {
        /// The organisation's list, in name order, with member counts.
        #[utoipa::path(get, path = $coll, tag = $tag,
            params(("org" = String, Path, description = "slug or id"), PageQuery),
            responses((status = 200, body = Page<Label>)), security(("bearer" = [])))]
        async fn $list(
            State(s): State<AppState>,
            Auth(p): Auth,
            OrgPath(o): OrgPath,
            Path(_org): Path<String>,
            Query(q): Query<PageQuery>,
        ) -> Result<axum::Json<Page<Label>>, ApiError> {
            let limit = page_limit(q.limit)?;
            require(&p, &o, Permission::DirectoryRead)?;
            Ok(axum::Json(
                labels::list(&s.db, &o, $kind, &s.cursor, q.cursor.as_deref(), limit).await?,
            ))
        }

        /// Create one (409 `name_taken` when the name exists, ignoring case and accents).
        #[utoipa::path(post, path = $coll, tag = $tag, request_body = LabelInput,
            params(("org" = String, Path, description = "slug or id")),
            responses((status = 201, body = Label), (status = 409, body = Problem), (status = 422, body = Problem)),
            security(("bearer" = [])))]
        async fn $create(
            State(s): State<AppState>,
            Auth(p): Auth,
            OrgPath(o): OrgPath,
            Path(_org): Path<String>,
            body: Json<LabelInput>,
        ) -> Result<(StatusCode, axum::Json<Label>), ApiError> {
            require(&p, &o, Permission::DirectoryWrite)?;
            let l = labels::create(&s.db, &actor(p), &o, $kind, body.value, s.now()).await?;
            Ok((StatusCode::CREATED, axum::Json(l)))
        }

        #[utoipa::path(get, path = $item, tag = $tag,
            params(("org" = String, Path, description = "slug or id"), ($param = Uuid, Path)),
            responses((status = 200, body = Label), (status = 404, body = Problem)), security(("bearer" = [])))]
        async fn $get(
            State(s): State<AppState>,
            Auth(p): Auth,
            OrgPath(o): OrgPath,
            Path((_org, id)): Path<(String, Uuid)>,
        ) -> Result<axum::Json<Label>, ApiError> {
            require(&p, &o, Permission::DirectoryRead)?;
            Ok(axum::Json(labels::get(&s.db, &o, $kind, id).await?))
        }

        /// Rename; every member shows the new name (and gets a new version).
        #[utoipa::path(patch, path = $item, tag = $tag, request_body = LabelInput,
            params(("org" = String, Path, description = "slug or id"), ($param = Uuid, Path)),
            responses((status = 200, body = Label), (status = 404, body = Problem), (status = 409, body = Problem)),
            security(("bearer" = [])))]
        async fn $rename(
            State(s): State<AppState>,
            Auth(p): Auth,
            OrgPath(o): OrgPath,
            Path((_org, id)): Path<(String, Uuid)>,
            body: Json<LabelInput>,
        ) -> Result<axum::Json<Label>, ApiError> {
            require(&p, &o, Permission::DirectoryWrite)?;
            Ok(axum::Json(
                labels::rename(&s.db, &actor(p), &o, $kind, id, body.value, s.now()).await?,
            ))
        }

        /// Delete; members lose it.
        #[utoipa::path(delete, path = $item, tag = $tag,
            params(("org" = String, Path, description = "slug or id"), ($param = Uuid, Path)),
            responses((status = 204), (status = 404, body = Problem)), security(("bearer" = [])))]
        async fn $delete(
            State(s): State<AppState>,
            Auth(p): Auth,
            OrgPath(o): OrgPath,
            Path((_org, id)): Path<(String, Uuid)>,
        ) -> Result<StatusCode, ApiError> {
            require(&p, &o, Permission::DirectoryWrite)?;
            labels::delete(&s.db, &actor(p), &o, $kind, id, s.now()).await?;
            Ok(StatusCode::NO_CONTENT)
        }
    };
}

label_api!(
    Kind::Group,
    "groups",
    "/api/v1/orgs/{org}/groups",
    "/api/v1/orgs/{org}/groups/{group}",
    "group",
    list_groups,
    create_group,
    get_group,
    rename_group,
    delete_group
);
label_api!(
    Kind::Skill,
    "skills",
    "/api/v1/orgs/{org}/skills",
    "/api/v1/orgs/{org}/skills/{skill}",
    "skill",
    list_skills,
    create_skill,
    get_skill,
    rename_skill,
    delete_skill
);

// ---- people ------------------------------------------------------------------------------

/// Import people from a CSV or XLSX file (the request body, detected by content). A dry run
/// reports what would happen; otherwise the changes are applied in one transaction: all or
/// nothing, or with `skip_bad_rows` the good rows. The report lists every bad row (line,
/// column, value, reason). A `roles` column needs `roles:write` as well.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/people/import", tag = "people",
    params(("org" = String, Path, description = "slug or id"), ImportOptions),
    request_body(content = Vec<u8>, content_type = "text/csv", description = "CSV (UTF-8, UTF-16 with BOM or Windows-1252; `,` `;` or tab) or XLSX"),
    responses((status = 200, body = ImportReport, description = "dry run, or applied"),
        (status = 422, body = ImportReport, description = "not applied: the file has errors")),
    security(("bearer" = [])))]
async fn import_people(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(_org): Path<String>,
    Query(q): Query<ImportOptions>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, axum::Json<ImportReport>), ApiError> {
    require(&p, &o, Permission::DirectoryWrite)?;
    let req = import::Request {
        bytes: body.to_vec(),
        options: q,
        may_assign_roles: require(&p, &o, Permission::RolesWrite).is_ok(),
    };
    let report = import::run(&s.db, &actor(p), &o, req, s.now(), &|_| {}).await?;
    let status = if report.dry_run || report.applied {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((status, axum::Json(report)))
}

/// The longest `Prefer: wait=` honoured, in seconds.
const MAX_WAIT_SECS: u64 = 30;

/// `Prefer: wait=N` (RFC 7240): how long to wait for the job before answering.
fn preferred_wait(headers: &axum::http::HeaderMap) -> std::time::Duration {
    let secs = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .filter_map(|p| p.trim().strip_prefix("wait="))
        .find_map(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    std::time::Duration::from_secs(secs.min(MAX_WAIT_SECS))
}

/// Start a people import in the background over the file in the body (CSV or XLSX, as
/// `…/people/import`), or with `file=` over the file of an earlier job (files are kept an hour:
/// apply a dry run, or check it again with another `map`). Answers at once with the running
/// job, or, with `Prefer: wait=N` (at most 30 s), when it finished within N seconds. One import
/// per organisation at a time (409 `import_running`).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/import-jobs", tag = "people",
    params(("org" = String, Path, description = "slug or id"), ImportOptions,
        ("Prefer" = Option<String>, Header, description = "wait=N: answer when the job has finished, at most N seconds (30 at most)")),
    request_body(content = Vec<u8>, content_type = "text/csv", description = "the file; empty with `file=`"),
    responses((status = 201, body = ImportJob, description = "the job (running, or finished within the wait)"),
        (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn create_import_job(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(org): Path<String>,
    Query(q): Query<ImportOptions>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Created<ImportJob>, ApiError> {
    require(&p, &o, Permission::DirectoryWrite)?;
    let source = match q.file {
        Some(id) if body.is_empty() => jobs::Source::File(id),
        Some(_) => {
            return Err(ApiError::bad_request_at(
                "body_with_file",
                "send either a file in the body or `file=` naming an uploaded one, not both",
                "/query/file",
            ));
        }
        None => jobs::Source::Upload {
            name: q.name.clone().unwrap_or_default(),
            bytes: body.to_vec(),
        },
    };
    let runner = jobs::Runner {
        db: s.db.clone(),
        clock: s.clock.clone(),
    };
    let may_assign_roles = require(&p, &o, Permission::RolesWrite).is_ok();
    let by = access::viewer_key(&p);
    let (job, handle) = jobs::start(
        runner,
        actor(p),
        by,
        &o,
        source,
        q,
        may_assign_roles,
        s.now(),
    )
    .await?;
    let wait = preferred_wait(&headers);
    let job = if !wait.is_zero() && tokio::time::timeout(wait, handle).await.is_ok() {
        jobs::get(&s.db, &o, job.id, s.now()).await?
    } else {
        job
    };
    Ok(Created {
        outcome: carebridge_web::idem::Outcome::Fresh(job),
        collection: collection(&org, "import-jobs"),
    })
}

/// Import jobs of the organisation, newest first (finished ones are kept a week).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/import-jobs", tag = "people",
    params(("org" = String, Path, description = "slug or id"), PageQuery),
    responses((status = 200, body = Page<ImportJob>)), security(("bearer" = [])))]
async fn list_import_jobs(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(_org): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<Page<ImportJob>>, ApiError> {
    require(&p, &o, Permission::DirectoryWrite)?;
    let limit = page_limit(q.limit)?;
    Ok(axum::Json(
        jobs::list(&s.db, &o, &s.cursor, q.cursor.as_deref(), limit, s.now()).await?,
    ))
}

/// An import job: its progress while it runs, then its report (or why it failed).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/import-jobs/{job}", tag = "people",
    params(("org" = String, Path, description = "slug or id"), ("job" = Uuid, Path)),
    responses((status = 200, body = ImportJob), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn get_import_job(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, id)): Path<(String, Uuid)>,
) -> Result<axum::Json<ImportJob>, ApiError> {
    require(&p, &o, Permission::DirectoryWrite)?;
    Ok(axum::Json(jobs::get(&s.db, &o, id, s.now()).await?))
}

/// Delete a finished import job with its report (and its file, unless another job uses it).
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/import-jobs/{job}", tag = "people",
    params(("org" = String, Path, description = "slug or id"), ("job" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)), security(("bearer" = [])))]
async fn delete_import_job(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, id)): Path<(String, Uuid)>,
) -> Result<StatusCode, ApiError> {
    require(&p, &o, Permission::DirectoryWrite)?;
    jobs::delete(&s.db, &o, id, s.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Search and filter people, in name order: only the people the caller may see (everyone
/// for organisation-wide readers; else themselves, their units' people as unit admin, and what
/// contact grants open, with `fields` naming what is shown).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/people", tag = "people",
    params(("org" = String, Path, description = "slug or id"), PeopleQuery),
    responses((status = 200, body = Page<Person>)), security(("bearer" = [])))]
async fn list_people(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(_org): Path<String>,
    Query(q): Query<PeopleQuery>,
) -> Result<axum::Json<Page<Person>>, ApiError> {
    let limit = page_limit(q.limit)?;
    Ok(axum::Json(
        people::list(&s.db, &p, &o, &s.cursor, &q, limit).await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/orgs/{org}/people", tag = "people", request_body = CreatePerson,
    params(("org" = String, Path, description = "slug or id"), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = Person), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn create_person(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(org): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    body: Json<CreatePerson>,
) -> Result<Created<Person>, ApiError> {
    // Who may create where (organisation-wide, or unit admins in their subtrees) is the
    // service's check.
    let idem = Idem::new(&p, &format!("POST {}/people", o.id), key, &body.digest);
    let outcome = people::create(&s.db, &actor(p), &o, body.value, idem, s.now()).await?;
    Ok(Created {
        outcome,
        collection: collection(&org, "people"),
    })
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/people/{person}", tag = "people",
    params(("org" = String, Path, description = "slug or id"), ("person" = Uuid, Path)),
    responses((status = 200, body = Person), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn get_person(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, person)): Path<(String, Uuid)>,
) -> Result<Tagged<Person>, ApiError> {
    let x = people::get(&s.db, &p, &o, person).await?;
    let v = x.version;
    Ok(Tagged(x, v))
}

/// Everything the organisation holds about a person, as one JSON document (GDPR access and
/// portability): contact data, units, groups, skills, roles, sign-in account (without
/// secrets), duties and the history of changes. The export is itself audited.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/people/{person}/export", tag = "people",
    params(("org" = String, Path, description = "slug or id"), ("person" = Uuid, Path)),
    responses((status = 200, body = PersonExport), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn export_person(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, person)): Path<(String, Uuid)>,
) -> Result<axum::Json<PersonExport>, ApiError> {
    require(&p, &o, Permission::DirectoryWrite)?;
    require(&p, &o, Permission::AuditRead)?;
    Ok(axum::Json(
        people::export(&s.db, &actor(p), &o, person, s.now()).await?,
    ))
}

/// Everything the organisation holds about the signed-in person (their own GDPR access
/// request, without going through an administrator). Audited like an admin's export.
#[utoipa::path(get, path = "/api/v1/me/export", tag = "me",
    responses((status = 200, body = PersonExport), (status = 403, body = Problem)), security(("bearer" = [])))]
async fn export_me(
    State(s): State<AppState>,
    Me(p, o): Me,
) -> Result<axum::Json<PersonExport>, ApiError> {
    let Some((_, carebridge_domain::PersonId(person))) = p.person() else {
        return Err(carebridge_web::ServiceError::Forbidden {
            detail: "a personal credential is needed".into(),
        }
        .into());
    };
    Ok(axum::Json(
        people::export(&s.db, &actor(p), &o, person, s.now()).await?,
    ))
}

/// Erase a person (GDPR): the person, their memberships, roles, duty assignments, sign-in
/// grants and consents, their account when no other organisation uses it, and messages sent to
/// them. The audit log keeps only a tombstone (id, who, when).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/people/{person}/erase", tag = "people",
    params(("org" = String, Path, description = "slug or id"), ("person" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn erase_person(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, person)): Path<(String, Uuid)>,
) -> Result<StatusCode, ApiError> {
    require(&p, &o, Permission::DirectoryWrite)?;
    people::erase(&s.db, &actor(p), &o, person, s.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change a person; `active: false` deactivates. Organisation-wide writers change anyone, unit
/// admins the people of their subtrees (adding or removing units inside them only), and a
/// person with the `directory:write` scope their own phones, e-mails, address and language.
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/people/{person}", tag = "people", request_body = UpdatePerson,
    params(("org" = String, Path, description = "slug or id"), ("person" = Uuid, Path), ("If-Match" = String, Header)),
    responses((status = 200, body = Person), (status = 412, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn update_person(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, person)): Path<(String, Uuid)>,
    IfMatch(version): IfMatch,
    body: Json<UpdatePerson>,
) -> Result<Tagged<Person>, ApiError> {
    let x = people::update(&s.db, &actor(p), &o, person, version, body.value, s.now()).await?;
    let v = x.version;
    Ok(Tagged(x, v))
}

#[utoipa::path(delete, path = "/api/v1/orgs/{org}/people/{person}", tag = "people",
    params(("org" = String, Path, description = "slug or id"), ("person" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn delete_person(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, person)): Path<(String, Uuid)>,
    IfMatchOpt(version): IfMatchOpt,
) -> Result<StatusCode, ApiError> {
    require(&p, &o, Permission::DirectoryWrite)?;
    people::delete(&s.db, &actor(p), &o, person, version, s.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- contact grants and the sync feed ------------------------------------------------------

/// Contact grants ("members of unit/group X may see fields F of people in unit/group Y").
#[utoipa::path(get, path = "/api/v1/orgs/{org}/contact-grants", tag = "contact grants",
    params(("org" = String, Path, description = "slug or id"), PageQuery),
    responses((status = 200, body = Page<ContactGrant>)), security(("bearer" = [])))]
async fn list_grants(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(_org): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<Page<ContactGrant>>, ApiError> {
    let limit = page_limit(q.limit)?;
    require(&p, &o, Permission::DirectoryRead)?;
    Ok(axum::Json(
        access::list(&s.db, &o, &s.cursor, q.cursor.as_deref(), limit).await?,
    ))
}

/// The access preview: person `person` as person `viewer` would see them with
/// `directory:read` (their roles, units and the grants now). For organisation-wide directory
/// writers.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/people/{person}/seen-by/{viewer}", tag = "contact grants",
    params(("org" = String, Path, description = "slug or id"), ("person" = Uuid, Path), ("viewer" = Uuid, Path)),
    responses((status = 200, body = carebridge_proto::directory::SeenBy), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn seen_by(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, person, viewer)): Path<(String, Uuid, Uuid)>,
) -> Result<axum::Json<carebridge_proto::directory::SeenBy>, ApiError> {
    Ok(axum::Json(
        access::seen_by(&s.db, &p, &o, person, viewer).await?,
    ))
}

/// Create a contact grant (audited). Both sides must exist: a unit (with its subtree) or a
/// group.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/contact-grants", tag = "contact grants", request_body = ContactGrantInput,
    params(("org" = String, Path, description = "slug or id")),
    responses((status = 201, body = ContactGrant), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn create_grant(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(_org): Path<String>,
    body: Json<ContactGrantInput>,
) -> Result<(StatusCode, Tagged<ContactGrant>), ApiError> {
    require(&p, &o, Permission::DirectoryWrite)?;
    let g = access::create(&s.db, &actor(p), &o, body.value, s.now()).await?;
    let v = g.version;
    Ok((StatusCode::CREATED, Tagged(g, v)))
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/contact-grants/{grant}", tag = "contact grants",
    params(("org" = String, Path, description = "slug or id"), ("grant" = Uuid, Path)),
    responses((status = 200, body = ContactGrant), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn get_grant(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, id)): Path<(String, Uuid)>,
) -> Result<Tagged<ContactGrant>, ApiError> {
    require(&p, &o, Permission::DirectoryRead)?;
    let g = access::get(&s.db, &o, id).await?;
    let v = g.version;
    Ok(Tagged(g, v))
}

/// Change which fields a grant opens (audited).
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/contact-grants/{grant}", tag = "contact grants", request_body = UpdateContactGrant,
    params(("org" = String, Path, description = "slug or id"), ("grant" = Uuid, Path), ("If-Match" = String, Header)),
    responses((status = 200, body = ContactGrant), (status = 412, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn update_grant(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, id)): Path<(String, Uuid)>,
    IfMatch(version): IfMatch,
    body: Json<UpdateContactGrant>,
) -> Result<Tagged<ContactGrant>, ApiError> {
    require(&p, &o, Permission::DirectoryWrite)?;
    let g = access::update(&s.db, &actor(p), &o, id, version, body.value, s.now()).await?;
    let v = g.version;
    Ok(Tagged(g, v))
}

/// Withdraw a contact grant (audited); the people it opened leave the viewers' lists and sync
/// feeds.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/contact-grants/{grant}", tag = "contact grants",
    params(("org" = String, Path, description = "slug or id"), ("grant" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn delete_grant(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, id)): Path<(String, Uuid)>,
    IfMatchOpt(version): IfMatchOpt,
) -> Result<StatusCode, ApiError> {
    require(&p, &o, Permission::DirectoryWrite)?;
    access::delete(&s.db, &actor(p), &o, id, version, s.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The offline sync feed: the caller's upserts and removals of contacts they may see since
/// `cursor` (a snapshot without one). Deactivated people, people who left the caller's view
/// (a grant withdrawn, a move) and deleted people come as removals. Call again while `more`;
/// start afresh when `reset`.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/contacts/changes", tag = "people",
    params(("org" = String, Path, description = "slug or id"), ChangesQuery),
    responses((status = 200, body = ContactChanges), (status = 400, body = Problem)), security(("bearer" = [])))]
async fn contact_changes(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(_org): Path<String>,
    Query(q): Query<ChangesQuery>,
) -> Result<axum::Json<ContactChanges>, ApiError> {
    if let Some(n) = q.limit
        && !(1..=1000).contains(&n)
    {
        return Err(ApiError::bad_request_at(
            "invalid_limit",
            format!("limit must be 1 to 1000, got {n}"),
            "/query/limit",
        ));
    }
    Ok(axum::Json(
        feed::changes(&s.db, &p, &o, &s.cursor, &q, s.now()).await?,
    ))
}

// ---- role assignments --------------------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/orgs/{org}/roles", tag = "roles",
    params(("org" = String, Path, description = "slug or id"), RolesQuery),
    responses((status = 200, body = Page<RoleAssignment>)), security(("bearer" = [])))]
async fn list_roles(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(_org): Path<String>,
    Query(q): Query<RolesQuery>,
) -> Result<axum::Json<Page<RoleAssignment>>, ApiError> {
    let limit = page_limit(q.limit)?;
    require(&p, &o, Permission::DirectoryRead)?;
    Ok(axum::Json(
        roles::list(&s.db, &o, &s.cursor, &q, limit).await?,
    ))
}

/// Give a person a role (org-wide, or over a unit subtree).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/roles", tag = "roles", request_body = CreateRoleAssignment,
    params(("org" = String, Path, description = "slug or id"), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = RoleAssignment), (status = 409, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn create_role(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(org): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    body: Json<CreateRoleAssignment>,
) -> Result<Created<RoleAssignment>, ApiError> {
    require(&p, &o, Permission::RolesWrite)?;
    let idem = Idem::new(&p, &format!("POST {}/roles", o.id), key, &body.digest);
    let outcome = roles::create(&s.db, &actor(p), &o, body.value, idem, s.now()).await?;
    Ok(Created {
        outcome,
        collection: collection(&org, "roles"),
    })
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/roles/{assignment}", tag = "roles",
    params(("org" = String, Path, description = "slug or id"), ("assignment" = Uuid, Path)),
    responses((status = 200, body = RoleAssignment), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn get_role(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, id)): Path<(String, Uuid)>,
) -> Result<axum::Json<RoleAssignment>, ApiError> {
    require(&p, &o, Permission::DirectoryRead)?;
    Ok(axum::Json(roles::get(&s.db, &o, id).await?))
}

#[utoipa::path(delete, path = "/api/v1/orgs/{org}/roles/{assignment}", tag = "roles",
    params(("org" = String, Path, description = "slug or id"), ("assignment" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn delete_role(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, id)): Path<(String, Uuid)>,
) -> Result<StatusCode, ApiError> {
    require(&p, &o, Permission::RolesWrite)?;
    roles::delete(&s.db, &actor(p), &o, id, s.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}
