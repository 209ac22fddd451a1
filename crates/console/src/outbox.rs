//! The outbox: every e-mail and SMS of the organisation with its delivery state, attempts and
//! last error (never the body: it can hold codes and links), and "send again" for messages
//! that were given up.

use askama::Template;
use axum::Extension;
use axum::extract::{Path, Query};
use axum::http::Method;
use axum::response::Response;
use carebridge_proto::Page;
use carebridge_proto::outbox::OutboxMessage;
use serde::Deserialize;

use crate::api::with_query;
use crate::web::{Chrome, Ctx, html, id_or_404, see};

const STATES: &[&str] = &["pending", "sending", "sent", "dead", "sink"];

#[derive(Deserialize, Default)]
pub struct ListQuery {
    state: Option<String>,
    cursor: Option<String>,
}

#[derive(Template)]
#[template(path = "outbox.html")]
struct ListPage {
    c: Chrome,
    state: String,
    states: &'static [&'static str],
    messages: Vec<OutboxMessage>,
    next: Option<String>,
}

/// `GET /console/outbox`.
pub async fn list(Extension(ctx): Extension<Ctx>, Query(q): Query<ListQuery>) -> Response {
    let state = q
        .state
        .clone()
        .filter(|s| STATES.contains(&s.as_str()))
        .unwrap_or_default();
    let page = match ctx
        .api
        .get::<Page<OutboxMessage>>(&with_query(
            &ctx.s.org_path("/outbox"),
            &[
                ("state", Some(&state)),
                ("limit", Some("50")),
                ("cursor", q.cursor.as_deref()),
            ],
        ))
        .await
    {
        Ok(p) => p.value,
        Err(f) => return ctx.fail(&f),
    };
    let next = page.next_cursor.as_deref().map(|c| {
        with_query(
            "/console/outbox",
            &[("state", Some(&state)), ("cursor", Some(c))],
        )
    });
    html(
        &ListPage {
            c: ctx.chrome("outbox", ctx.t().outbox),
            state,
            states: STATES,
            messages: page.items,
            next,
        },
        200,
    )
}

/// `POST /console/outbox/{id}/retry`.
pub async fn retry(Extension(ctx): Extension<Ctx>, Path(id): Path<String>) -> Response {
    let id = match id_or_404(&ctx, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    match ctx
        .api
        .send::<serde_json::Value>(
            Method::POST,
            &ctx.s.org_path(&format!("/outbox/{id}/retry")),
            &serde_json::Value::Null,
            None,
        )
        .await
    {
        Ok(_) => see("/console/outbox"),
        Err(f) => ctx.fail(&f),
    }
}
