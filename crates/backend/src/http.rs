//! HTTP for organisations and the audit log: thin handlers that extract, call one service
//! function and map the result.

use axum::extract::State;
use carebridge_domain::auth::{Actor, Permission, Source};
use carebridge_proto::audit::{AuditEvent, AuditQuery, AuditVerification};
use carebridge_proto::duties::{Feature, SetFeature};
use carebridge_proto::org::{CreateOrg, Org, UpdateOrg};
use carebridge_proto::problem::Problem;
use carebridge_proto::{Page, PageQuery};
use carebridge_web::idem::Idem;
use carebridge_web::{
    ApiError, AppState, Auth, Created, IdempotencyKey, IfMatch, Json, OrgPath, Path, Query, Tagged,
    page_limit, require,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::service;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_org, list_orgs))
        .routes(routes!(get_org, update_org))
        .routes(routes!(audit_log))
        .routes(routes!(outbox))
        .routes(routes!(outbox_retry))
        .routes(routes!(audit_verify))
        .routes(routes!(get_feature, set_feature))
        .merge(crate::discovery::router())
}

/// A feature switch of the organisation: `chat` (off until switched on), `directory` (the
/// members' contact directory: contact grants and the apps' contacts) or `portal` (the customer
/// portal), both on until switched off.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/features/{feature}", tag = "organisations",
    params(("org" = String, Path, description = "slug or id"), ("feature" = String, Path, description = "chat, directory or portal")),
    responses((status = 200, body = Feature), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn get_feature(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, feature)): Path<(String, String)>,
) -> Result<axum::Json<Feature>, ApiError> {
    require(&p, &o, Permission::OrgRead)?;
    Ok(axum::Json(service::feature(&s.db, &o, &feature).await?))
}

/// Switch a feature on or off; the first switch-on provisions its tenant (audited).
#[utoipa::path(put, path = "/api/v1/orgs/{org}/features/{feature}", tag = "organisations", request_body = SetFeature,
    params(("org" = String, Path, description = "slug or id"), ("feature" = String, Path, description = "chat, directory or portal")),
    responses((status = 200, body = Feature), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn set_feature(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, feature)): Path<(String, String)>,
    body: Json<SetFeature>,
) -> Result<axum::Json<Feature>, ApiError> {
    require(&p, &o, Permission::OrgWrite)?;
    Ok(axum::Json(
        service::set_feature(&s.db, &actor(p), &o, &feature, body.value, s.now()).await?,
    ))
}

fn actor(p: carebridge_domain::auth::Principal) -> Actor {
    Actor::new(p, Source::Api)
}

/// Create an organisation (platform credential).
#[utoipa::path(post, path = "/api/v1/orgs", tag = "organisations", request_body = CreateOrg,
    params(("Idempotency-Key" = Option<String>, Header, description = "makes a retried create return the first result")),
    responses((status = 201, body = Org), (status = 403, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn create_org(
    State(s): State<AppState>,
    Auth(p): Auth,
    IdempotencyKey(key): IdempotencyKey,
    body: Json<CreateOrg>,
) -> Result<Created<Org>, ApiError> {
    let idem = Idem::new(&p, "POST /orgs", key, &body.digest);
    let outcome = service::create(&s.db, &actor(p), body.value, idem, s.now()).await?;
    Ok(Created {
        outcome,
        collection: "/api/v1/orgs".into(),
    })
}

/// Organisations visible to the caller.
#[utoipa::path(get, path = "/api/v1/orgs", tag = "organisations", params(PageQuery),
    responses((status = 200, body = Page<Org>)), security(("bearer" = [])))]
async fn list_orgs(
    State(s): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<Page<Org>>, ApiError> {
    let limit = page_limit(q.limit)?;
    Ok(axum::Json(
        service::list(&s.db, &actor(p), &s.cursor, q.cursor.as_deref(), limit).await?,
    ))
}

/// One organisation.
#[utoipa::path(get, path = "/api/v1/orgs/{org}", tag = "organisations",
    params(("org" = String, Path, description = "slug or id")),
    responses((status = 200, body = Org, headers(("ETag" = String))), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn get_org(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(_org): Path<String>,
) -> Result<Tagged<Org>, ApiError> {
    require(&p, &o, Permission::OrgRead)?;
    let org = service::get(&s.db, &o).await?;
    let v = org.version;
    Ok(Tagged(org, v))
}

/// Change an organisation (`If-Match` required).
#[utoipa::path(patch, path = "/api/v1/orgs/{org}", tag = "organisations", request_body = UpdateOrg,
    params(("org" = String, Path, description = "slug or id"), ("If-Match" = String, Header, description = "ETag of the version read")),
    responses((status = 200, body = Org), (status = 412, body = Problem), (status = 428, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn update_org(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(_org): Path<String>,
    IfMatch(version): IfMatch,
    body: Json<UpdateOrg>,
) -> Result<Tagged<Org>, ApiError> {
    require(&p, &o, Permission::OrgWrite)?;
    let org = service::update(&s.db, &actor(p), &o, version, body.value, s.now()).await?;
    let v = org.version;
    Ok(Tagged(org, v))
}

/// The organisation's audit log, newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/audit", tag = "audit",
    params(("org" = String, Path, description = "slug or id"), AuditQuery),
    responses((status = 200, body = Page<AuditEvent>)), security(("bearer" = [])))]
async fn audit_log(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(_org): Path<String>,
    Query(q): Query<AuditQuery>,
) -> Result<axum::Json<Page<AuditEvent>>, ApiError> {
    let limit = page_limit(q.limit)?;
    require(&p, &o, Permission::AuditRead)?;
    let filter = carebridge_store::audit::AuditFilter {
        target: q.target,
        actor: q.actor,
        action: q.action,
    };
    Ok(axum::Json(
        service::audit_page(&s.db, &o, &s.cursor, q.cursor.as_deref(), limit, &filter).await?,
    ))
}

/// The organisation's e-mail and SMS outbox, newest first: delivery state, attempts and the
/// last error (never the body).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/outbox", tag = "organisations",
    params(("org" = String, Path, description = "slug or id"), carebridge_proto::outbox::OutboxQuery),
    responses((status = 200, body = Page<carebridge_proto::outbox::OutboxMessage>)), security(("bearer" = [])))]
async fn outbox(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(_org): Path<String>,
    Query(q): Query<carebridge_proto::outbox::OutboxQuery>,
) -> Result<axum::Json<Page<carebridge_proto::outbox::OutboxMessage>>, ApiError> {
    let limit = page_limit(q.limit)?;
    require(&p, &o, Permission::OrgWrite)?;
    Ok(axum::Json(
        service::outbox_page(&s.db, &o, &s.cursor, &q, limit).await?,
    ))
}

/// Send a given-up or waiting message again now (audited as `outbox.retry`); 409 for a message
/// already sent.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/outbox/{message}/retry", tag = "organisations",
    params(("org" = String, Path, description = "slug or id"), ("message" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)), security(("bearer" = [])))]
async fn outbox_retry(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, id)): Path<(String, uuid::Uuid)>,
) -> Result<axum::http::StatusCode, ApiError> {
    require(&p, &o, Permission::OrgWrite)?;
    let actor = Actor::new(p, Source::Api);
    service::outbox_retry(&s.db, &actor, &o, id, s.now()).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Verify the organisation's audit hash chain.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/audit/verify", tag = "audit",
    params(("org" = String, Path, description = "slug or id")),
    responses((status = 200, body = AuditVerification)), security(("bearer" = [])))]
async fn audit_verify(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(_org): Path<String>,
) -> Result<axum::Json<AuditVerification>, ApiError> {
    require(&p, &o, Permission::AuditRead)?;
    Ok(axum::Json(service::verify_chain(&s.db, o.id).await?))
}
