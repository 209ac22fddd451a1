//! The admin console at `/console`: server-rendered pages (askama, no scripts, no external
//! assets) for organisation admins, unit admins and dispatchers.
//!
//! The console is a *client* of Carebridge, not a role with its own data: it signs people in
//! through this server's OpenID provider as the built-in first-party client
//! `carebridge-console` ([`session`]), and every page reads and writes through the HTTP API
//! in-process with the person's token ([`api`]). So each page shows and allows exactly what
//! the API allows that person — a unit admin sees their subtrees only, contact grants mask
//! fields, validation and audit are the API's. The console never touches the database.
//!
//! Rooms: `session` (sign-in, sealed session cookie, refresh, CSRF), `api` (the in-process
//! client), `web` (the page chrome, the signed-in middleware, error pages, forms), and one
//! module per area: `people`, `units`, `access`, `import`, `duties`, `portal`, `audit`, `outbox`, `settings`, `integrations`.

mod access;
pub mod api;
mod audit;
mod duties;
mod i18n;
mod import;
mod integrations;
mod outbox;
mod people;
mod portal;
pub mod session;
mod settings;
mod units;
mod web;

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};
use carebridge_web::AppState;

/// The console's state: the server's state (clock, sealing key, base URL) and the API it calls.
#[derive(Clone)]
pub struct Console(Arc<Inner>);

struct Inner {
    app: AppState,
    api: Router,
    refreshes: session::Refreshes,
    refresh_lock: tokio::sync::Mutex<()>,
}

impl Console {
    fn app(&self) -> &AppState {
        &self.0.app
    }

    fn secure(&self) -> bool {
        self.0.app.base_url().starts_with("https://")
    }
}

/// The console's routes. `api` is the server's composed router (with its authentication
/// middleware): the console calls it in-process.
pub fn router(app: AppState, api: Router) -> Router {
    let c = Console(Arc::new(Inner {
        app,
        api,
        refreshes: session::Refreshes::default(),
        refresh_lock: tokio::sync::Mutex::new(()),
    }));
    let signed = Router::new()
        .route("/console", get(web::home))
        .route("/console/logout", post(web::logout))
        .route("/console/lang", post(web::set_lang))
        .route("/console/people", get(people::list).post(people::create))
        .route("/console/people/new", get(people::new_form))
        .route(
            "/console/people/{id}",
            get(people::show).post(people::update),
        )
        .route("/console/people/{id}/edit", get(people::edit_form))
        .route("/console/people/{id}/active", post(people::set_active))
        .route("/console/people/{id}/invite", post(people::invite))
        .route("/console/people/{id}/sign-out", post(people::sign_out))
        .route("/console/people/{id}/erase", post(people::erase))
        .route(
            "/console/people/{id}/sessions/{session}/end",
            post(people::end_session),
        )
        .route(
            "/console/people/{id}/devices/{device}/remove",
            post(people::remove_device),
        )
        .route("/console/units", get(units::list).post(units::create))
        .route("/console/units/{id}", get(units::show).post(units::update))
        .route("/console/units/{id}/admins", post(units::add_admin))
        .route(
            "/console/units/{id}/admins/{role}/remove",
            post(units::remove_admin),
        )
        .route("/console/duties", get(duties::list).post(duties::create))
        .route("/console/duties/new", get(duties::new_form))
        .route("/console/duties/{id}", get(duties::show))
        .route("/console/duties/{id}/assign", post(duties::assign))
        .route(
            "/console/duties/{id}/edit",
            get(duties::edit_form).post(duties::update),
        )
        .route(
            "/console/duties/{id}/assignments/{a}/decision",
            post(duties::decide),
        )
        .route("/console/duties/{id}/chat", post(duties::chat))
        .route(
            "/console/duties/{id}/assignments/{a}/remove",
            post(duties::remove),
        )
        .route("/console/audit", get(audit::list))
        .route(
            "/console/import",
            get(import::form)
                .post(import::upload)
                .layer(axum::extract::DefaultBodyLimit::max(
                    import::MAX_FILE + 64 * 1024,
                )),
        )
        .route("/console/import/run", post(import::again))
        .route("/console/import/jobs/{id}", get(import::job))
        .route("/console/integrations", get(integrations::show))
        .route("/console/integrations/scim", post(integrations::scim))
        .route("/console/integrations/keys", post(integrations::key))
        .route(
            "/console/integrations/keys/{id}/revoke",
            post(integrations::revoke_key),
        )
        .route("/console/integrations/clients", post(integrations::client))
        .route(
            "/console/integrations/clients/{id}/revoke",
            post(integrations::revoke_client),
        )
        .route(
            "/console/integrations/upstream",
            post(integrations::upstream),
        )
        .route("/console/portal", get(portal::show))
        .route("/console/portal/requests/{id}/answer", post(portal::answer))
        .route("/console/portal/messages", post(portal::reply))
        .route("/console/outbox", get(outbox::list))
        .route("/console/outbox/{id}/retry", post(outbox::retry))
        .route("/console/settings", get(settings::show))
        .route("/console/settings/org", post(settings::org))
        .route("/console/settings/chat", post(settings::chat))
        .route("/console/settings/features", post(settings::features))
        .route("/console/settings/mfa", post(settings::mfa))
        .route("/console/settings/app", post(settings::app))
        .route("/console/access", get(access::show).post(access::create))
        .route("/console/access/{id}/delete", post(access::delete))
        .layer(middleware::from_fn_with_state(c.clone(), web::signed_in));
    Router::new()
        .route("/console/login", get(web::login))
        .route("/console/callback", get(web::callback))
        .route("/console/assets/console.css", get(web::css))
        .merge(signed)
        .layer(middleware::map_response(web::headers))
        .with_state(c)
}
