//! HTTP for duties, assignments, qualifications, rosters, the caller's own duties and calendar
//! feeds: thin handlers. Scope checks (unit subtrees) happen in the service, which knows the
//! duty's unit.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use carebridge_domain::auth::{Actor, Principal, Source};
use carebridge_proto::duties::{
    Assignment, CalendarFeed, CreateAssignment, CreateDuty, CreateQualification,
    CreatedCalendarFeed, Decide, DutiesQuery, Duty, EventsQuery, HeldQualification,
    HoldQualification, MyDutiesQuery, MyDuty, Qualification, Roster, RosterEvent, SignUp,
    UpdateAssignment, UpdateDuty, UpdateQualification,
};
use carebridge_proto::problem::Problem;
use carebridge_proto::{Page, PageQuery};
use carebridge_web::idem::Idem;
use carebridge_web::{
    ApiError, AppState, Auth, Created, IdempotencyKey, IfMatch, IfMatchOpt, Json, Me, OrgPath,
    Path, Query, Tagged, page_limit,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::service::{assignments, duties, feeds, qualifications};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_duties, create_duty))
        .routes(routes!(get_duty, update_duty, delete_duty))
        .routes(routes!(get_roster))
        .routes(routes!(list_assignments, create_assignment))
        .routes(routes!(
            get_assignment,
            update_assignment,
            delete_assignment
        ))
        .routes(routes!(decide))
        .routes(routes!(sign_up))
        .routes(routes!(roster_events))
        .routes(routes!(list_qualifications, create_qualification))
        .routes(routes!(
            get_qualification,
            update_qualification,
            delete_qualification
        ))
        .routes(routes!(list_held))
        .routes(routes!(hold, drop_held))
        .routes(routes!(my_duties))
        .routes(routes!(list_feeds, create_feed))
        .routes(routes!(revoke_feed))
}

/// Routes outside `/api/v1` that calendar apps fetch without a credential (the URL is the secret).
pub fn public_router() -> axum::Router<AppState> {
    axum::Router::new().route("/calendar/v1/{token}", axum::routing::get(calendar))
}

fn actor(p: Principal) -> Actor {
    Actor::new(p, Source::Api)
}

fn tagged<T>(v: T, version: i64) -> Tagged<T> {
    Tagged(v, version)
}

// ---- duties ------------------------------------------------------------------------------

/// The calendar: duties overlapping `[from, to)` (default: the coming week) in the caller's
/// units, in start order.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/duties", tag = "duties",
    params(("org" = String, Path, description = "slug or id"), DutiesQuery),
    responses((status = 200, body = Page<Duty>)), security(("bearer" = [])))]
async fn list_duties(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(_org): Path<String>,
    Query(q): Query<DutiesQuery>,
) -> Result<axum::Json<Page<Duty>>, ApiError> {
    let limit = page_limit(q.limit)?;
    Ok(axum::Json(
        duties::list(&s.db, &actor(p), &o, &s.cursor, &q, limit, s.now()).await?,
    ))
}

/// Create a duty with its needed positions.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/duties", tag = "duties", request_body = CreateDuty,
    params(("org" = String, Path, description = "slug or id"), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = Duty), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn create_duty(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(org): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    body: Json<CreateDuty>,
) -> Result<Created<Duty>, ApiError> {
    let idem = Idem::new(&p, &format!("POST {}/duties", o.id), key, &body.digest);
    let outcome = duties::create(&s.db, &actor(p), &o, body.value, idem, s.now()).await?;
    Ok(Created {
        outcome,
        collection: format!("/api/v1/orgs/{org}/duties"),
    })
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/duties/{duty}", tag = "duties",
    params(("org" = String, Path, description = "slug or id"), ("duty" = Uuid, Path)),
    responses((status = 200, body = Duty), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn get_duty(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, duty)): Path<(String, Uuid)>,
) -> Result<Tagged<Duty>, ApiError> {
    let d = duties::get(&s.db, &actor(p), &o, duty).await?;
    let v = d.version;
    Ok(tagged(d, v))
}

/// Change, move (`starts_at`/`ends_at`) or cancel (`state: cancelled`) a duty, switch its
/// chat, or replace its positions.
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/duties/{duty}", tag = "duties", request_body = UpdateDuty,
    params(("org" = String, Path, description = "slug or id"), ("duty" = Uuid, Path), ("If-Match" = String, Header)),
    responses((status = 200, body = Duty), (status = 412, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn update_duty(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, duty)): Path<(String, Uuid)>,
    IfMatch(version): IfMatch,
    body: Json<UpdateDuty>,
) -> Result<Tagged<Duty>, ApiError> {
    let d = duties::update(&s.db, &actor(p), &o, duty, version, body.value, s.now()).await?;
    let v = d.version;
    Ok(tagged(d, v))
}

/// Delete a duty nobody is assigned to (otherwise cancel it).
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/duties/{duty}", tag = "duties",
    params(("org" = String, Path, description = "slug or id"), ("duty" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204), (status = 409, body = Problem)), security(("bearer" = [])))]
async fn delete_duty(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, duty)): Path<(String, Uuid)>,
    IfMatchOpt(version): IfMatchOpt,
) -> Result<StatusCode, ApiError> {
    duties::delete(&s.db, &actor(p), &o, duty, version, s.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The duty's current roster and its version.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/duties/{duty}/roster", tag = "duties",
    params(("org" = String, Path, description = "slug or id"), ("duty" = Uuid, Path)),
    responses((status = 200, body = Roster)), security(("bearer" = [])))]
async fn get_roster(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, duty)): Path<(String, Uuid)>,
) -> Result<axum::Json<Roster>, ApiError> {
    Ok(axum::Json(
        duties::roster(&s.db, &actor(p), &o, duty).await?,
    ))
}

/// Roster events in `seq` order, each with a duty's complete roster (for the chat role).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/roster-events", tag = "duties",
    params(("org" = String, Path, description = "slug or id"), EventsQuery),
    responses((status = 200, body = Vec<RosterEvent>)), security(("bearer" = [])))]
async fn roster_events(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(_org): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Result<axum::Json<Vec<RosterEvent>>, ApiError> {
    let limit = page_limit(q.limit)?;
    Ok(axum::Json(
        duties::events(&s.db, &actor(p), &o, &q, limit).await?,
    ))
}

// ---- assignments -------------------------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/orgs/{org}/duties/{duty}/assignments", tag = "duties",
    params(("org" = String, Path, description = "slug or id"), ("duty" = Uuid, Path), PageQuery),
    responses((status = 200, body = Page<Assignment>)), security(("bearer" = [])))]
async fn list_assignments(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, duty)): Path<(String, Uuid)>,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<Page<Assignment>>, ApiError> {
    let limit = page_limit(q.limit)?;
    Ok(axum::Json(
        assignments::list(
            &s.db,
            &actor(p),
            &o,
            duty,
            &s.cursor,
            q.cursor.as_deref(),
            limit,
        )
        .await?,
    ))
}

/// "Save assignment": put a person on the roster (with the duty's chat switch).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/duties/{duty}/assignments", tag = "duties", request_body = CreateAssignment,
    params(("org" = String, Path, description = "slug or id"), ("duty" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = Assignment), (status = 409, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn create_assignment(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((org, duty)): Path<(String, Uuid)>,
    IdempotencyKey(key): IdempotencyKey,
    body: Json<CreateAssignment>,
) -> Result<Created<Assignment>, ApiError> {
    let idem = Idem::new(
        &p,
        &format!("POST {}/duties/{duty}/assignments", o.id),
        key,
        &body.digest,
    );
    let outcome =
        assignments::assign(&s.db, &actor(p), &o, duty, body.value, idem, s.now()).await?;
    Ok(Created {
        outcome,
        collection: format!("/api/v1/orgs/{org}/duties/{duty}/assignments"),
    })
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/duties/{duty}/assignments/{assignment}", tag = "duties",
    params(("org" = String, Path, description = "slug or id"), ("duty" = Uuid, Path), ("assignment" = Uuid, Path)),
    responses((status = 200, body = Assignment), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn get_assignment(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, duty, id)): Path<(String, Uuid, Uuid)>,
) -> Result<Tagged<Assignment>, ApiError> {
    let a = assignments::get(&s.db, &actor(p), &o, duty, id).await?;
    let v = a.version;
    Ok(tagged(a, v))
}

/// Change role or position (and the duty's chat switch).
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/duties/{duty}/assignments/{assignment}", tag = "duties", request_body = UpdateAssignment,
    params(("org" = String, Path, description = "slug or id"), ("duty" = Uuid, Path), ("assignment" = Uuid, Path), ("If-Match" = String, Header)),
    responses((status = 200, body = Assignment), (status = 409, body = Problem), (status = 412, body = Problem)), security(("bearer" = [])))]
async fn update_assignment(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, duty, id)): Path<(String, Uuid, Uuid)>,
    IfMatch(version): IfMatch,
    body: Json<UpdateAssignment>,
) -> Result<Tagged<Assignment>, ApiError> {
    let a =
        assignments::update(&s.db, &actor(p), &o, duty, id, version, body.value, s.now()).await?;
    let v = a.version;
    Ok(tagged(a, v))
}

/// Take a person off the duty, or withdraw one's own request.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/duties/{duty}/assignments/{assignment}", tag = "duties",
    params(("org" = String, Path, description = "slug or id"), ("duty" = Uuid, Path), ("assignment" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn delete_assignment(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, duty, id)): Path<(String, Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    assignments::remove(&s.db, &actor(p), &o, duty, id, s.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Confirm or decline a sign-up request.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/duties/{duty}/assignments/{assignment}/decision", tag = "duties", request_body = Decide,
    params(("org" = String, Path, description = "slug or id"), ("duty" = Uuid, Path), ("assignment" = Uuid, Path)),
    responses((status = 200, body = Assignment), (status = 409, body = Problem)), security(("bearer" = [])))]
async fn decide(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, duty, id)): Path<(String, Uuid, Uuid)>,
    body: Json<Decide>,
) -> Result<Tagged<Assignment>, ApiError> {
    let a = assignments::decide(&s.db, &actor(p), &o, duty, id, body.value, s.now()).await?;
    let v = a.version;
    Ok(tagged(a, v))
}

/// A member asks to be put on the duty (a personal credential is needed).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/duties/{duty}/requests", tag = "duties", request_body = SignUp,
    params(("org" = String, Path, description = "slug or id"), ("duty" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = Assignment), (status = 409, body = Problem)), security(("bearer" = [])))]
async fn sign_up(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((org, duty)): Path<(String, Uuid)>,
    IdempotencyKey(key): IdempotencyKey,
    body: Json<SignUp>,
) -> Result<Created<Assignment>, ApiError> {
    let idem = Idem::new(
        &p,
        &format!("POST {}/duties/{duty}/requests", o.id),
        key,
        &body.digest,
    );
    let outcome =
        assignments::request(&s.db, &actor(p), &o, duty, body.value, idem, s.now()).await?;
    Ok(Created {
        outcome,
        collection: format!("/api/v1/orgs/{org}/duties/{duty}/assignments"),
    })
}

// ---- qualifications ----------------------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/orgs/{org}/qualifications", tag = "qualifications",
    params(("org" = String, Path, description = "slug or id"), PageQuery),
    responses((status = 200, body = Page<Qualification>)), security(("bearer" = [])))]
async fn list_qualifications(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(_org): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<Page<Qualification>>, ApiError> {
    let limit = page_limit(q.limit)?;
    Ok(axum::Json(
        qualifications::list(&s.db, &actor(p), &o, &s.cursor, q.cursor.as_deref(), limit).await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/orgs/{org}/qualifications", tag = "qualifications", request_body = CreateQualification,
    params(("org" = String, Path, description = "slug or id"), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = Qualification), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn create_qualification(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(org): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    body: Json<CreateQualification>,
) -> Result<Created<Qualification>, ApiError> {
    let idem = Idem::new(
        &p,
        &format!("POST {}/qualifications", o.id),
        key,
        &body.digest,
    );
    let outcome = qualifications::create(&s.db, &actor(p), &o, body.value, idem, s.now()).await?;
    Ok(Created {
        outcome,
        collection: format!("/api/v1/orgs/{org}/qualifications"),
    })
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/qualifications/{qualification}", tag = "qualifications",
    params(("org" = String, Path, description = "slug or id"), ("qualification" = Uuid, Path)),
    responses((status = 200, body = Qualification), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn get_qualification(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, id)): Path<(String, Uuid)>,
) -> Result<Tagged<Qualification>, ApiError> {
    let q = qualifications::get(&s.db, &actor(p), &o, id).await?;
    let v = q.version;
    Ok(tagged(q, v))
}

/// Rename, or change what it includes (cycles are refused).
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/qualifications/{qualification}", tag = "qualifications", request_body = UpdateQualification,
    params(("org" = String, Path, description = "slug or id"), ("qualification" = Uuid, Path), ("If-Match" = String, Header)),
    responses((status = 200, body = Qualification), (status = 412, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn update_qualification(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, id)): Path<(String, Uuid)>,
    IfMatch(version): IfMatch,
    body: Json<UpdateQualification>,
) -> Result<Tagged<Qualification>, ApiError> {
    let q = qualifications::update(&s.db, &actor(p), &o, id, version, body.value, s.now()).await?;
    let v = q.version;
    Ok(tagged(q, v))
}

#[utoipa::path(delete, path = "/api/v1/orgs/{org}/qualifications/{qualification}", tag = "qualifications",
    params(("org" = String, Path, description = "slug or id"), ("qualification" = Uuid, Path)),
    responses((status = 204), (status = 409, body = Problem)), security(("bearer" = [])))]
async fn delete_qualification(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, id)): Path<(String, Uuid)>,
) -> Result<StatusCode, ApiError> {
    qualifications::delete(&s.db, &actor(p), &o, id, s.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The qualifications a person holds, with expiry dates.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/people/{person}/qualifications", tag = "qualifications",
    params(("org" = String, Path, description = "slug or id"), ("person" = Uuid, Path)),
    responses((status = 200, body = Vec<HeldQualification>)), security(("bearer" = [])))]
async fn list_held(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, person)): Path<(String, Uuid)>,
) -> Result<axum::Json<Vec<HeldQualification>>, ApiError> {
    Ok(axum::Json(
        qualifications::held(&s.db, &actor(p), &o, person).await?,
    ))
}

/// Record that the person holds the qualification (optionally until `valid_until`).
#[utoipa::path(put, path = "/api/v1/orgs/{org}/people/{person}/qualifications/{qualification}", tag = "qualifications", request_body = HoldQualification,
    params(("org" = String, Path, description = "slug or id"), ("person" = Uuid, Path), ("qualification" = Uuid, Path)),
    responses((status = 200, body = Vec<HeldQualification>)), security(("bearer" = [])))]
async fn hold(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, person, q)): Path<(String, Uuid, Uuid)>,
    body: Json<HoldQualification>,
) -> Result<axum::Json<Vec<HeldQualification>>, ApiError> {
    Ok(axum::Json(
        qualifications::hold(&s.db, &actor(p), &o, person, q, body.value, s.now()).await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/orgs/{org}/people/{person}/qualifications/{qualification}", tag = "qualifications",
    params(("org" = String, Path, description = "slug or id"), ("person" = Uuid, Path), ("qualification" = Uuid, Path)),
    responses((status = 204)), security(("bearer" = [])))]
async fn drop_held(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, person, q)): Path<(String, Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    qualifications::drop_held(&s.db, &actor(p), &o, person, q, s.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- me ----------------------------------------------------------------------------------

/// The caller's own duties (requests, confirmations, declines), upcoming by default.
#[utoipa::path(get, path = "/api/v1/me/duties", tag = "me", params(MyDutiesQuery),
    responses((status = 200, body = Page<MyDuty>), (status = 403, body = Problem)), security(("bearer" = [])))]
async fn my_duties(
    State(s): State<AppState>,
    Me(p, o): Me,
    Query(q): Query<MyDutiesQuery>,
) -> Result<axum::Json<Page<MyDuty>>, ApiError> {
    let limit = page_limit(q.limit)?;
    Ok(axum::Json(
        assignments::mine(&s.db, &actor(p), &o, &s.cursor, &q, limit, s.now()).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/me/calendar-feeds", tag = "me",
    responses((status = 200, body = Vec<CalendarFeed>)), security(("bearer" = [])))]
async fn list_feeds(
    State(s): State<AppState>,
    Me(p, o): Me,
) -> Result<axum::Json<Vec<CalendarFeed>>, ApiError> {
    Ok(axum::Json(feeds::list(&s.db, &actor(p), &o).await?))
}

/// A new iCalendar feed of the caller's duties; its secret URL is shown once.
#[utoipa::path(post, path = "/api/v1/me/calendar-feeds", tag = "me",
    responses((status = 201, body = CreatedCalendarFeed)), security(("bearer" = [])))]
async fn create_feed(
    State(s): State<AppState>,
    Me(p, o): Me,
) -> Result<(StatusCode, axum::Json<CreatedCalendarFeed>), ApiError> {
    Ok((
        StatusCode::CREATED,
        axum::Json(feeds::create(&s.db, &actor(p), &o, s.now()).await?),
    ))
}

/// Revoke a feed: its URL stops working at once.
#[utoipa::path(delete, path = "/api/v1/me/calendar-feeds/{feed}", tag = "me",
    params(("feed" = Uuid, Path)), responses((status = 200, body = CalendarFeed)), security(("bearer" = [])))]
async fn revoke_feed(
    State(s): State<AppState>,
    Me(p, o): Me,
    Path(feed): Path<Uuid>,
) -> Result<axum::Json<CalendarFeed>, ApiError> {
    Ok(axum::Json(
        feeds::revoke(&s.db, &actor(p), &o, feed, s.now()).await?,
    ))
}

/// The feed itself (`text/calendar`); 404 for a revoked or unknown feed.
async fn calendar(
    State(s): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    match feeds::render(&s.db, &token, s.now()).await? {
        Some(body) => Ok((
            [
                (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
                (header::CACHE_CONTROL, "private, max-age=300"),
            ],
            body,
        )
            .into_response()),
        None => Err(carebridge_web::ServiceError::NotFound {
            what: "calendar feed",
        }
        .into()),
    }
}
