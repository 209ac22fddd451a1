//! The audit log: newest first, a page at a time, filtered by action prefix, actor or target,
//! with the result of the hash-chain verification on top.

use askama::Template;
use axum::Extension;
use axum::extract::Query;
use axum::response::Response;
use carebridge_proto::Page;
use carebridge_proto::audit::{AuditEvent, AuditVerification};
use serde::Deserialize;

use crate::api::with_query;
use crate::web::{Chrome, Ctx, html};

#[derive(Deserialize, Default)]
pub struct ListQuery {
    action: Option<String>,
    actor: Option<String>,
    target: Option<String>,
    cursor: Option<String>,
    /// Verify the hash chain (it walks the whole chain, so only when asked).
    verify: Option<String>,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct ListPage {
    c: Chrome,
    action: String,
    actor: String,
    target: String,
    events: Vec<AuditEvent>,
    verification: Option<AuditVerification>,
    next: Option<String>,
    verify_link: String,
}

/// `GET /console/audit`.
pub async fn list(Extension(ctx): Extension<Ctx>, Query(q): Query<ListQuery>) -> Response {
    let t = ctx.t();
    let filters = [
        ("action", q.action.as_deref()),
        ("actor", q.actor.as_deref()),
        ("target", q.target.as_deref()),
    ];
    let mut api_q = filters.to_vec();
    api_q.push(("limit", Some("50")));
    api_q.push(("cursor", q.cursor.as_deref()));
    let page = match ctx
        .api
        .get::<Page<AuditEvent>>(&with_query(&ctx.s.org_path("/audit"), &api_q))
        .await
    {
        Ok(p) => p.value,
        Err(f) => return ctx.fail(&f),
    };
    let verification = if q.verify.is_some() {
        ctx.api
            .get::<AuditVerification>(&ctx.s.org_path("/audit/verify"))
            .await
            .ok()
            .map(|v| v.value)
    } else {
        None
    };
    let next = page.next_cursor.as_deref().map(|c| {
        let mut p = filters.to_vec();
        p.push(("cursor", Some(c)));
        with_query("/console/audit", &p)
    });
    html(
        &ListPage {
            c: ctx.chrome("audit", t.audit),
            action: q.action.clone().unwrap_or_default(),
            actor: q.actor.clone().unwrap_or_default(),
            target: q.target.clone().unwrap_or_default(),
            events: page.items,
            verification,
            next,
            verify_link: {
                let mut p = filters.to_vec();
                p.push(("verify", Some("1")));
                with_query("/console/audit", &p)
            },
        },
        200,
    )
}
