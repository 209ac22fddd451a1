//! Role composition: builds the router of the roles this process runs, the OpenAPI document,
//! operational endpoints and the middleware every request passes through.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use carebridge_web::{ApiError, AppState, REQUEST_ID};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

use crate::config::Config;

/// The roles a process can run.
pub const ROLES: &[&str] = &[
    "identity",
    "backend",
    "directory",
    "duties",
    "chat",
    "portal",
    "notify",
    "console",
    "app",
];

const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Everything the middleware needs besides the role state.
#[derive(Clone)]
struct Ops {
    state: AppState,
    /// `(METHOD, path template)` of every documented API route.
    documented: Arc<BTreeSet<(String, String)>>,
    /// Reverse proxies whose `X-Forwarded-For` is believed.
    trusted_proxies: Arc<Vec<std::net::IpAddr>>,
}

/// The routers and OpenAPI document of the configured roles.
pub fn api(config: &Config) -> (Router<AppState>, OpenApi) {
    let mut r: OpenApiRouter<AppState> = OpenApiRouter::new();
    for role in &config.roles {
        r = match role.as_str() {
            "identity" => r
                .merge(carebridge_identity::http::router())
                .merge(crate::setup::router()),
            "backend" => r.merge(carebridge_backend::http::router()),
            "directory" => r.merge(carebridge_directory::http::router()),
            "duties" => r.merge(carebridge_duties::http::router()),
            "chat" => r.merge(carebridge_chat::http::router()),
            _ => r,
        };
    }
    let (router, mut doc) = r.split_for_parts();
    doc.info.title = "Carebridge API".into();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.info.description = Some(
        "Errors are RFC 9457 problem documents; lists use cursor pagination (`limit`, `cursor`); reads carry an ETag and \
         updates require If-Match; creates accept an Idempotency-Key."
            .into(),
    );
    let comps = doc.components.get_or_insert_with(Default::default);
    comps.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    (router, doc)
}

fn documented(doc: &OpenApi) -> BTreeSet<(String, String)> {
    let mut set = BTreeSet::new();
    for (path, item) in &doc.paths.paths {
        for (m, op) in [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("PATCH", &item.patch),
            ("DELETE", &item.delete),
        ] {
            if op.is_some() {
                set.insert((m.to_string(), path.clone()));
            }
        }
    }
    set
}

/// The whole HTTP application.
pub fn router(config: &Config, state: AppState, chat: Arc<carebridge_chat::Chat>) -> Router {
    let (api, doc) = api(config);
    let doc = Arc::new(doc);
    let ops = Ops {
        state: state.clone(),
        documented: Arc::new(documented(&doc)),
        trusted_proxies: Arc::new(config.trusted_proxies.clone()),
    };
    let openapi_doc = doc.clone();
    let tls = config.tls();
    let mut app = Router::new()
        .merge(api)
        .route(
            "/api/v1/openapi.json",
            get(move || async move { axum::Json(openapi_doc.as_ref().clone()) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(crate::setup::pages())
        .merge(if config.roles.iter().any(|r| r == "directory") {
            carebridge_directory::scim::router()
        } else {
            Router::new()
        })
        .merge(if config.roles.iter().any(|r| r == "identity") {
            carebridge_identity::http::public_router(&carebridge_identity::ctx::Options {
                signin_per_minute: config.signin_per_minute,
                provision: Some(provisioner()),
            })
        } else {
            Router::new()
        })
        .merge(if config.roles.iter().any(|r| r == "backend") {
            carebridge_backend::discovery::public_router(
                carebridge_backend::discovery::Deployment {
                    issuer: config
                        .identity_issuer
                        .as_ref()
                        .filter(|_| !config.roles.iter().any(|r| r == "identity"))
                        .map(|i| i.trim_end_matches('/').to_string()),
                    portal_here: config.roles.iter().any(|r| r == "portal"),
                },
            )
        } else {
            Router::new()
        })
        .merge(if config.roles.iter().any(|r| r == "duties") {
            carebridge_duties::http::public_router()
        } else {
            Router::new()
        })
        .merge(if config.roles.iter().any(|r| r == "portal") {
            carebridge_portal::http::router(
                config
                    .identity_issuer
                    .as_ref()
                    .filter(|_| !config.roles.iter().any(|r| r == "identity"))
                    .map(|i| i.trim_end_matches('/').to_string()),
            )
        } else {
            Router::new()
        })
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state.clone())
        .layer(axum::Extension(chat))
        .layer(middleware::from_fn_with_state(ops.clone(), authenticate));
    // The console calls the API in-process through `app` as it is now (authentication
    // included); its own pages are merged beside it and share the layers below.
    if config.roles.iter().any(|r| r == "console") {
        app = app.clone().merge(carebridge_console::router(state, app));
    }
    if config.roles.iter().any(|r| r == "app") {
        app = app.merge(carebridge_app::router());
    }
    app = app
        .layer(middleware::from_fn_with_state(ops.clone(), observe))
        .layer(middleware::from_fn_with_state(ops.clone(), client_addr))
        .layer(axum::extract::DefaultBodyLimit::max(config.body_limit))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("handler panicked".into()).into_response()
        }))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
            // Browsers' chat sockets carry the device token here.
            header::SEC_WEBSOCKET_PROTOCOL,
        ]))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID_HEADER))
        .layer(SetRequestIdLayer::new(REQUEST_ID_HEADER, MakeRequestUuid));
    if tls {
        app = app.layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        ));
    }
    app
}

/// Just-in-time creation of people for federated sign-ins, through the directory's service (so
/// validation, search tokens and the audit event are the directory's, actor
/// `system:federation`).
fn provisioner() -> carebridge_identity::upstream::Provisioner {
    std::sync::Arc::new(|db, org, new, now| {
        Box::pin(async move {
            use carebridge_domain::auth::{Actor, Source};
            let input = carebridge_proto::directory::CreatePerson {
                given_name: new.given_name,
                family_name: new.family_name,
                kind: Some("staff".into()),
                external_id: Some(new.external_id),
                emails: new
                    .email
                    .into_iter()
                    .map(|e| carebridge_proto::directory::Contact {
                        value: e,
                        kind: "work".into(),
                    })
                    .collect(),
                ..Default::default()
            };
            let mut tx = db.begin().await?;
            let p = carebridge_directory::service::people::create_in(
                &mut tx,
                &Actor::system("federation", Source::Federation),
                &org,
                &input,
                now,
            )
            .await?;
            tx.commit().await?;
            Ok(p.id)
        })
    })
}

/// Ready when the database answers and its migrations are current.
async fn readyz(State(s): State<AppState>) -> Response {
    match s.db.migrations_current().await {
        Ok(true) => (StatusCode::OK, "ready").into_response(),
        Ok(false) => (StatusCode::SERVICE_UNAVAILABLE, "migrations pending").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

async fn metrics() -> Response {
    match crate::telemetry::prometheus() {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable",
        )
            .into_response(),
    }
}

/// Request id for problem documents and logs; per-route counts and latencies; a structured log
/// line per request (no headers, no bodies); the guard that every API route is documented.
async fn observe(State(ops): State<Ops>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let id = req
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    if let Some(r) = route.as_deref() {
        let documented = ops
            .documented
            .contains(&(method.as_str().to_string(), r.to_string()));
        if r.starts_with("/api/v1/")
            && r != "/api/v1/openapi.json"
            && !documented
            && method != Method::OPTIONS
        {
            // A route that is not in the OpenAPI document is a bug: fail loudly so tests catch it.
            return REQUEST_ID
                .scope(id, async {
                    ApiError::Internal(format!(
                        "route {method} {r} is missing from the OpenAPI document"
                    ))
                    .into_response()
                })
                .await;
        }
    }
    let res = REQUEST_ID.scope(id.clone(), next.run(req)).await;
    let elapsed = start.elapsed();
    let route_label = route.unwrap_or_else(|| "unmatched".into());
    let status = res.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method.to_string(), "route" => route_label.clone(), "status" => status.clone())
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method.to_string(), "route" => route_label.clone())
        .record(elapsed.as_secs_f64());
    tracing::info!(request_id = %id, method = %method, route = %route_label, status = %status, micros = elapsed.as_micros() as u64, "request");
    res
}

/// The caller's address ([`carebridge_web::ClientAddr`]: the TCP peer, or the right-most
/// untrusted `X-Forwarded-For` hop behind a trusted proxy) in the request's extensions. Requests
/// the console makes in-process carry the browser's address already.
async fn client_addr(State(ops): State<Ops>, mut req: Request<Body>, next: Next) -> Response {
    if let Some(peer) = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
    {
        let forwarded = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        let addr = carebridge_web::client_addr(peer, forwarded, &ops.trusted_proxies);
        req.extensions_mut()
            .insert(carebridge_web::ClientAddr(addr));
    }
    next.run(req).await
}

/// Turns `Authorization: Bearer <key>` into a principal in the request's extensions. A header
/// that is present but wrong is a 401 at once; no header means anonymous (handlers that need a
/// principal say 401 themselves).
async fn authenticate(State(ops): State<Ops>, mut req: Request<Body>, next: Next) -> Response {
    // The OAuth endpoints authenticate their clients themselves (HTTP Basic, form fields);
    // discovery refuses any credential itself (apps must never send their token there); the
    // portal checks its tokens itself against the identity provider's published keys.
    let path = req.uri().path();
    if path.starts_with("/oauth2/")
        || path.starts_with("/discovery")
        || path.starts_with("/portal/")
    {
        return next.run(req).await;
    }
    let Some(h) = req.headers().get(header::AUTHORIZATION) else {
        return next.run(req).await;
    };
    let token = h
        .to_str()
        .ok()
        .and_then(|s| {
            s.strip_prefix("Bearer ")
                .or_else(|| s.strip_prefix("bearer "))
        })
        .map(str::trim);
    // SCIM answers a missing or bad credential itself, in SCIM's error format.
    let scim = path.starts_with("/scim/");
    let Some(token) = token else {
        if scim {
            return next.run(req).await;
        }
        return ApiError::Unauthorized {
            detail: "use Authorization: Bearer <key>".into(),
        }
        .into_response();
    };
    // Device tokens (`cbd_…`) are the chat role's own credential: its handlers check them.
    if token.starts_with("cbd_") && path.starts_with("/api/v1/chat/") {
        return next.run(req).await;
    }
    // API keys (`cbk_…`) or OAuth access tokens (JWTs) from this server's token endpoint.
    let found = if token.starts_with("cbk_") {
        carebridge_identity::apikeys::authenticate(&ops.state.db, token, ops.state.now()).await
    } else {
        carebridge_identity::token::authenticate_bearer(
            &ops.state.db,
            token,
            ops.state.base_url(),
            ops.state.now(),
        )
        .await
    };
    match found {
        Ok(Some(p)) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Ok(None) if scim => next.run(req).await,
        Ok(None) => ApiError::Unauthorized {
            detail: "the credential is invalid, expired or revoked".into(),
        }
        .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
