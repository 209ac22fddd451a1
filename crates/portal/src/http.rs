//! HTTP of the customer portal, `portal/v1`: thin handlers over [`crate::service`], and the
//! contract as an OpenAPI document at `/portal/v1/openapi.json` (generated from these handlers,
//! so it cannot drift from them; a test keeps the copy in `docs/portal-v1.openapi.json` equal).
//!
//! Tokens are checked here by the portal itself ([`crate::auth`]), not by the server's
//! middleware: the portal may run at the ERP vendor, apart from the identity provider.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carebridge_proto::portal::{
    AnswerRequest, Appointment, AppointmentsQuery, CreateMessage, CreateRequest, CreatedFeed,
    ErpAppointment, ErpClient, ErpLink, ErpMessage, ErpReply, ErpRequest, LinksQuery, Message,
    OfficeLink, PortalClient, PortalMe, PortalSettings, Request, SinceQuery, UpsertReport,
};
use carebridge_proto::problem::Problem;
use carebridge_web::{ApiError, AppState, Json, Path, Query};
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Caller, Erp, Office, Portal};
use crate::service;

/// The version of the contract.
pub const VERSION: &str = "1.0.0";

fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(clients))
        .routes(routes!(appointments))
        .routes(routes!(create_request))
        .routes(routes!(requests))
        .routes(routes!(messages, send_message))
        .routes(routes!(create_feed, revoke_feed))
        .merge(erp_api())
}

/// The largest ERP feed body: [`service::MAX_FEED_ITEMS`] items of a few hundred bytes each.
pub const ERP_BODY_LIMIT: usize = 16 * 1024 * 1024;

fn erp_api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_settings, put_settings))
        .routes(routes!(erp_clients))
        .routes(routes!(erp_appointments))
        .routes(routes!(erp_links, office_links))
        .routes(routes!(erp_requests))
        .routes(routes!(erp_answer))
        .routes(routes!(erp_inbox, erp_reply))
        .layer(axum::extract::DefaultBodyLimit::max(ERP_BODY_LIMIT))
}

/// The `portal/v1` contract.
pub fn openapi() -> OpenApi {
    let (_, mut doc) = api().split_for_parts();
    doc.info.title = "Carebridge customer portal (portal/v1)".into();
    doc.info.version = VERSION.into();
    doc.info.description = Some(
        "The interface a client's or relative's app uses to read appointments and write to the care organisation, \
         and the feed through which the organisation's ERP fills it. An ERP vendor may implement it; Carebridge's \
         `portal` role is the reference implementation.\n\n\
         Authentication: OAuth 2 access tokens (JWT, EdDSA) from the organisation's identity provider with audience \
         `portal`. Apps use a person's token with scope `portal`; the ERP uses a client-credentials token with scope \
         `portal:erp`. The portal validates them against the provider's JWKS (from its OpenID discovery document). \
         Apps never send these tokens to the Carebridge backend.\n\n\
         Errors are RFC 9457 problem documents. ERP feeds are idempotent upserts keyed by the ERP's own ids; a feed \
         with one bad item writes nothing and names every bad item by JSON pointer."
            .into(),
    );
    let comps = doc.components.get_or_insert_with(Default::default);
    comps.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .build(),
        ),
    );
    doc
}

/// The portal's routes. `issuer` is the identity provider whose tokens are accepted; `None`
/// means this server's own public URL (identity runs in the same process).
pub fn router(issuer: Option<String>) -> axum::Router<AppState> {
    let (r, _) = api().split_for_parts();
    let doc = Arc::new(openapi());
    r.route(
        "/portal/v1/openapi.json",
        get(move || async move { axum::Json(doc.as_ref().clone()) }),
    )
    .route("/portal/v1/calendar/{token}", get(calendar))
    .layer(Extension(Arc::new(Portal::new(issuer))))
}

// ---- the caller's world ---------------------------------------------------------------------

/// Who the token belongs to, and how many clients they may act for.
#[utoipa::path(get, path = "/portal/v1/me", tag = "portal",
    responses((status = 200, body = PortalMe), (status = 401, body = Problem)), security(("bearer" = [])))]
async fn me(State(s): State<AppState>, caller: Caller) -> Result<axum::Json<PortalMe>, ApiError> {
    Ok(axum::Json(service::me(&s.db, &caller).await?))
}

/// The clients the caller may act for: themself as client, or as a relative with a link.
#[utoipa::path(get, path = "/portal/v1/clients", tag = "portal",
    responses((status = 200, body = Vec<PortalClient>), (status = 401, body = Problem)), security(("bearer" = [])))]
async fn clients(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<Vec<PortalClient>>, ApiError> {
    Ok(axum::Json(service::clients(&s.db, &caller).await?))
}

/// A client's visits in a window, with who is coming and the state of any request.
#[utoipa::path(get, path = "/portal/v1/clients/{client}/appointments", tag = "portal",
    params(("client" = Uuid, Path), AppointmentsQuery),
    responses((status = 200, body = Vec<Appointment>), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn appointments(
    State(s): State<AppState>,
    caller: Caller,
    Path(client): Path<Uuid>,
    Query(q): Query<AppointmentsQuery>,
) -> Result<axum::Json<Vec<Appointment>>, ApiError> {
    Ok(axum::Json(
        service::appointments(&s.db, &caller, client, &q, s.now()).await?,
    ))
}

/// Ask to move or cancel a visit.
#[utoipa::path(post, path = "/portal/v1/clients/{client}/appointments/{appointment}/requests", tag = "portal",
    params(("client" = Uuid, Path), ("appointment" = Uuid, Path)), request_body = CreateRequest,
    responses((status = 201, body = Request), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn create_request(
    State(s): State<AppState>,
    caller: Caller,
    Path((client, appointment)): Path<(Uuid, Uuid)>,
    body: Json<CreateRequest>,
) -> Result<Response, ApiError> {
    let r =
        service::create_request(&s.db, &caller, client, appointment, body.value, s.now()).await?;
    Ok((StatusCode::CREATED, axum::Json(r)).into_response())
}

/// A client's requests and their state (open, accepted, declined), newest first.
#[utoipa::path(get, path = "/portal/v1/clients/{client}/requests", tag = "portal",
    params(("client" = Uuid, Path)),
    responses((status = 200, body = Vec<Request>), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn requests(
    State(s): State<AppState>,
    caller: Caller,
    Path(client): Path<Uuid>,
) -> Result<axum::Json<Vec<Request>>, ApiError> {
    Ok(axum::Json(service::requests(&s.db, &caller, client).await?))
}

/// Messages between the client's side and the organisation, newest first.
#[utoipa::path(get, path = "/portal/v1/clients/{client}/messages", tag = "portal",
    params(("client" = Uuid, Path)),
    responses((status = 200, body = Vec<Message>), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn messages(
    State(s): State<AppState>,
    caller: Caller,
    Path(client): Path<Uuid>,
) -> Result<axum::Json<Vec<Message>>, ApiError> {
    Ok(axum::Json(service::messages(&s.db, &caller, client).await?))
}

/// Write to the organisation: stored for it and e-mailed to its contact address.
#[utoipa::path(post, path = "/portal/v1/clients/{client}/messages", tag = "portal",
    params(("client" = Uuid, Path)), request_body = CreateMessage,
    responses((status = 201, body = Message), (status = 403, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn send_message(
    State(s): State<AppState>,
    caller: Caller,
    Path(client): Path<Uuid>,
    body: Json<CreateMessage>,
) -> Result<Response, ApiError> {
    let m = service::send_message(&s.db, &caller, client, body.value, s.now()).await?;
    Ok((StatusCode::CREATED, axum::Json(m)).into_response())
}

/// A secret calendar URL (iCalendar) of the client's visits; earlier URLs of this link stop.
#[utoipa::path(post, path = "/portal/v1/clients/{client}/calendar-feed", tag = "portal",
    params(("client" = Uuid, Path)),
    responses((status = 201, body = CreatedFeed), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn create_feed(
    State(s): State<AppState>,
    caller: Caller,
    Path(client): Path<Uuid>,
) -> Result<Response, ApiError> {
    let (id, secret) = service::create_feed(&s.db, &caller, client, s.now()).await?;
    let url = format!(
        "{}/portal/v1/calendar/{}_{}.ics",
        s.base_url(),
        id.simple(),
        URL_SAFE_NO_PAD.encode(secret)
    );
    Ok((StatusCode::CREATED, axum::Json(CreatedFeed { id, url })).into_response())
}

/// Revoke the calendar URL of this link.
#[utoipa::path(delete, path = "/portal/v1/clients/{client}/calendar-feed", tag = "portal",
    params(("client" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn revoke_feed(
    State(s): State<AppState>,
    caller: Caller,
    Path(client): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    service::revoke_feeds(&s.db, &caller, client, s.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /portal/v1/calendar/<id>_<secret>.ics`: the URL is the credential.
async fn calendar(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    let parsed = token
        .strip_suffix(".ics")
        .and_then(|t| t.split_once('_'))
        .and_then(|(id, secret)| {
            Some((
                Uuid::parse_str(id).ok()?,
                URL_SAFE_NO_PAD.decode(secret).ok()?,
            ))
        });
    let Some((id, secret)) = parsed else {
        return ApiError::RouteNotFound.into_response();
    };
    match service::calendar(&s.db, id, &secret, s.now()).await {
        Ok(Some(ics)) => (
            [
                (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
                (header::CACHE_CONTROL, "private, max-age=300"),
            ],
            ics,
        )
            .into_response(),
        Ok(None) => ApiError::RouteNotFound.into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

// ---- the organisation's side ----------------------------------------------------------------

/// The organisation's portal settings.
#[utoipa::path(get, path = "/portal/v1/erp/settings", tag = "erp",
    responses((status = 200, body = PortalSettings), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn get_settings(
    State(s): State<AppState>,
    Office(erp): Office,
) -> Result<axum::Json<PortalSettings>, ApiError> {
    Ok(axum::Json(service::settings(&s.db, &erp).await?))
}

/// Set the organisation's name, contact e-mail, language, time zone and photo rule.
#[utoipa::path(put, path = "/portal/v1/erp/settings", tag = "erp", request_body = PortalSettings,
    responses((status = 200, body = PortalSettings), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn put_settings(
    State(s): State<AppState>,
    erp: Erp,
    body: Json<PortalSettings>,
) -> Result<axum::Json<PortalSettings>, ApiError> {
    Ok(axum::Json(
        service::put_settings(&s.db, &erp, body.value, s.now()).await?,
    ))
}

/// Bulk upsert of clients by the ERP's id (idempotent; all or nothing).
#[utoipa::path(put, path = "/portal/v1/erp/clients", tag = "erp", request_body = Vec<ErpClient>,
    responses((status = 200, body = UpsertReport), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn erp_clients(
    State(s): State<AppState>,
    erp: Erp,
    body: Json<Vec<ErpClient>>,
) -> Result<axum::Json<UpsertReport>, ApiError> {
    service::too_many(body.value.len())?;
    Ok(axum::Json(
        service::upsert_clients(&s.db, &erp, body.value, s.now()).await?,
    ))
}

/// Bulk upsert of appointments by the ERP's id (idempotent; all or nothing).
#[utoipa::path(put, path = "/portal/v1/erp/appointments", tag = "erp", request_body = Vec<ErpAppointment>,
    responses((status = 200, body = UpsertReport), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn erp_appointments(
    State(s): State<AppState>,
    erp: Erp,
    body: Json<Vec<ErpAppointment>>,
) -> Result<axum::Json<UpsertReport>, ApiError> {
    service::too_many(body.value.len())?;
    Ok(axum::Json(
        service::upsert_appointments(&s.db, &erp, body.value, s.now()).await?,
    ))
}

/// Bulk upsert of who may act for which client (`active: false` revokes at once).
#[utoipa::path(put, path = "/portal/v1/erp/links", tag = "erp", request_body = Vec<ErpLink>,
    responses((status = 200, body = UpsertReport), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn erp_links(
    State(s): State<AppState>,
    erp: Erp,
    body: Json<Vec<ErpLink>>,
) -> Result<axum::Json<UpsertReport>, ApiError> {
    service::too_many(body.value.len())?;
    Ok(axum::Json(
        service::upsert_links(&s.db, &erp, body.value, s.now()).await?,
    ))
}

/// Live links (who may act for which client, and what for), by client name; for the ERP and
/// the organisation's office (an admin's office token).
#[utoipa::path(get, path = "/portal/v1/erp/links", tag = "erp", params(LinksQuery),
    responses((status = 200, body = Vec<OfficeLink>), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn office_links(
    State(s): State<AppState>,
    Office(erp): Office,
    Query(q): Query<LinksQuery>,
) -> Result<axum::Json<Vec<OfficeLink>>, ApiError> {
    Ok(axum::Json(service::office_links(&s.db, &erp, &q).await?))
}

/// Requests to move or cancel visits (default: open ones of the last 30 days), oldest first.
#[utoipa::path(get, path = "/portal/v1/erp/requests", tag = "erp", params(SinceQuery),
    responses((status = 200, body = Vec<ErpRequest>)), security(("bearer" = [])))]
async fn erp_requests(
    State(s): State<AppState>,
    Office(erp): Office,
    Query(q): Query<SinceQuery>,
) -> Result<axum::Json<Vec<ErpRequest>>, ApiError> {
    Ok(axum::Json(
        service::erp_requests(&s.db, &erp, &q.since, &q.state, s.now()).await?,
    ))
}

/// Accept or decline an open request.
#[utoipa::path(post, path = "/portal/v1/erp/requests/{request}/answer", tag = "erp",
    params(("request" = Uuid, Path)), request_body = AnswerRequest,
    responses((status = 200, body = ErpRequest), (status = 409, body = Problem)), security(("bearer" = [])))]
async fn erp_answer(
    State(s): State<AppState>,
    Office(erp): Office,
    Path(id): Path<Uuid>,
    body: Json<AnswerRequest>,
) -> Result<axum::Json<ErpRequest>, ApiError> {
    Ok(axum::Json(
        service::answer(&s.db, &erp, id, body.value, s.now()).await?,
    ))
}

/// Messages from clients and relatives (default: the last 30 days), oldest first.
#[utoipa::path(get, path = "/portal/v1/erp/messages", tag = "erp", params(SinceQuery),
    responses((status = 200, body = Vec<ErpMessage>)), security(("bearer" = [])))]
async fn erp_inbox(
    State(s): State<AppState>,
    Office(erp): Office,
    Query(q): Query<SinceQuery>,
) -> Result<axum::Json<Vec<ErpMessage>>, ApiError> {
    Ok(axum::Json(
        service::inbox(&s.db, &erp, &q.since, s.now()).await?,
    ))
}

/// Write to a client (everyone with a messages link reads it).
#[utoipa::path(post, path = "/portal/v1/erp/messages", tag = "erp", request_body = ErpReply,
    responses((status = 201, body = ErpMessage), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn erp_reply(
    State(s): State<AppState>,
    Office(erp): Office,
    body: Json<ErpReply>,
) -> Result<Response, ApiError> {
    let m = service::reply(&s.db, &erp, body.value, s.now()).await?;
    Ok((StatusCode::CREATED, axum::Json(m)).into_response())
}
