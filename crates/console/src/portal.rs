//! The customer portal as the organisation's office sees it: open requests of clients and
//! relatives to move or cancel visits (accept or decline, with an answer), their messages
//! (reply), and who may act for which client. The portal keeps its own data and checks its own
//! tokens: the page asks the identity API for a five-minute office token
//! (`POST …/portal-token`, organisation admins only) and calls the portal's office endpoints
//! with it, in-process like every other page. When the portal runs elsewhere (at the ERP
//! vendor) the page says so.

use std::collections::HashMap;

use askama::Template;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::Method;
use axum::response::Response;
use carebridge_proto::directory::Person;
use carebridge_proto::identity::OfficeToken;
use carebridge_proto::portal::{AnswerRequest, ErpMessage, ErpReply, ErpRequest, OfficeLink};
use serde::Deserialize;
use uuid::Uuid;

use crate::api::{Api, Fail, with_query};
use crate::web::{Chrome, Ctx, Fields, html, id_or_404, message, see};

#[derive(Deserialize, Default)]
pub struct PortalQuery {
    q: Option<String>,
}

/// A link with the person's name from the directory (their id when the directory does not
/// show them).
struct LinkView {
    link: OfficeLink,
    person: String,
}

#[derive(Template)]
#[template(path = "portal.html")]
struct PortalPage {
    c: Chrome,
    q: String,
    requests: Vec<ErpRequest>,
    messages: Vec<ErpMessage>,
    links: Vec<LinkView>,
}

/// The portal's office API as this admin: `None` when the portal does not run here.
async fn office(ctx: &Ctx) -> Result<Option<Api>, Fail> {
    let t = ctx
        .api
        .send::<OfficeToken>(
            Method::POST,
            &ctx.s.org_path("/portal-token"),
            &serde_json::Value::Null,
            None,
        )
        .await?;
    let api = ctx.api.with_token(t.value.access_token);
    // The requests list answers 200 wherever the portal runs: a 404 means no portal here.
    match api
        .get::<serde_json::Value>("/portal/v1/erp/requests?state=open")
        .await
    {
        Err(Fail::Problem(p)) if p.status == 404 => Ok(None),
        _ => Ok(Some(api)),
    }
}

/// `GET /console/portal`.
pub async fn show(Extension(ctx): Extension<Ctx>, Query(q): Query<PortalQuery>) -> Response {
    let t = ctx.t();
    let api = match office(&ctx).await {
        Ok(Some(api)) => api,
        Ok(None) => return message(ctx.chrome("portal", t.portal), 200, t.portal_elsewhere),
        Err(f) => return ctx.fail(&f),
    };
    let query = q.q.clone().unwrap_or_default();
    let requests = match api
        .get::<Vec<ErpRequest>>("/portal/v1/erp/requests?state=open")
        .await
    {
        Ok(r) => r.value,
        Err(f) => return ctx.fail(&f),
    };
    let messages = match api.get::<Vec<ErpMessage>>("/portal/v1/erp/messages").await {
        Ok(m) => m.value,
        Err(f) => return ctx.fail(&f),
    };
    let links = match api
        .get::<Vec<OfficeLink>>(&with_query(
            "/portal/v1/erp/links",
            &[("q", Some(query.as_str())), ("limit", Some("50"))],
        ))
        .await
    {
        Ok(l) => l.value,
        Err(f) => return ctx.fail(&f),
    };
    // The people behind the links, by name where the directory shows them to this admin;
    // asked for side by side (at most 50 small reads).
    let mut asks = tokio::task::JoinSet::new();
    let mut seen = std::collections::HashSet::new();
    for l in &links {
        if seen.insert(l.subject) {
            let (api, path, id) = (
                ctx.api.clone(),
                ctx.s.org_path(&format!("/people/{}", l.subject)),
                l.subject,
            );
            asks.spawn(async move {
                let name = match api.get::<Person>(&path).await {
                    Ok(p) => format!("{} {}", p.value.given_name, p.value.family_name),
                    Err(_) => id.to_string(),
                };
                (id, name)
            });
        }
    }
    let mut names: HashMap<Uuid, String> = HashMap::new();
    while let Some(done) = asks.join_next().await {
        if let Ok((id, name)) = done {
            names.insert(id, name);
        }
    }
    let links = links
        .into_iter()
        .map(|l| LinkView {
            person: names.get(&l.subject).cloned().unwrap_or_default(),
            link: l,
        })
        .collect();
    html(
        &PortalPage {
            c: ctx.chrome("portal", t.portal),
            q: query,
            requests,
            messages: messages
                .into_iter()
                .filter(|m| m.message.direction == "to_organisation")
                .collect(),
            links,
        },
        200,
    )
}

/// `POST /console/portal/requests/{id}/answer`: accept or decline, with an answer.
pub async fn answer(
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let f = Fields::parse(&body);
    let id = match id_or_404(&ctx, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let api = match office(&ctx).await {
        Ok(Some(api)) => api,
        Ok(None) => return see("/console/portal"),
        Err(fail) => return ctx.fail(&fail),
    };
    let body = AnswerRequest {
        state: f.get("state").unwrap_or_default(),
        answer: f.get("answer"),
    };
    match api
        .send::<ErpRequest>(
            Method::POST,
            &format!("/portal/v1/erp/requests/{id}/answer"),
            &body,
            None,
        )
        .await
    {
        Ok(_) => see("/console/portal"),
        Err(fail) => ctx.fail(&fail),
    }
}

/// `POST /console/portal/messages`: write to a client (everyone with a messages link reads it).
pub async fn reply(Extension(ctx): Extension<Ctx>, body: Bytes) -> Response {
    let f = Fields::parse(&body);
    let api = match office(&ctx).await {
        Ok(Some(api)) => api,
        Ok(None) => return see("/console/portal"),
        Err(fail) => return ctx.fail(&fail),
    };
    let body = ErpReply {
        client: f.get("client").unwrap_or_default(),
        subject: f.get("subject").unwrap_or_default(),
        body: f.get("body").unwrap_or_default(),
    };
    match api
        .send::<ErpMessage>(Method::POST, "/portal/v1/erp/messages", &body, None)
        .await
    {
        Ok(_) => see("/console/portal"),
        Err(fail) => ctx.fail(&fail),
    }
}
