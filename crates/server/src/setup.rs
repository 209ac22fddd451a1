//! First start: with an empty database the server prints a one-time set-up link. Whoever holds
//! the token creates the first organisation and its administrator (person + account with a
//! password + `org_admin` role + an organisation-admin API key shown once), all in one
//! transaction; the token is then gone.

use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carebridge_domain::auth::{Actor, Permission, Source};
use carebridge_domain::{OrgId, Timestamp, Violations};
use carebridge_proto::directory::{Contact, CreatePerson, CreateRoleAssignment};
use carebridge_proto::identity::CreateApiKey;
use carebridge_proto::org::{CreateOrg, SetupAdmin, SetupRequest, SetupResponse};
use carebridge_proto::problem::Problem;
use carebridge_store::orgs::OrgRef;
use carebridge_store::{Db, secrets};
use carebridge_web::{ApiError, AppState, Json, ServiceError};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const SECRET: &str = "setup_token_digest";

/// Creates a fresh set-up token when no organisation exists yet; returns it to be printed.
pub async fn prepare(db: &Db, now: Timestamp) -> Result<Option<String>, ServiceError> {
    let mut c = db.read().await?;
    if carebridge_backend::repo::count(&mut c).await? > 0 {
        drop(c);
        secrets::delete(db, SECRET).await?;
        return Ok(None);
    }
    drop(c);
    let token = URL_SAFE_NO_PAD.encode(carebridge_identity::random_bytes::<24>());
    secrets::put(
        db,
        SECRET,
        &Sha256::digest(token.as_bytes()),
        now.as_millisecond(),
    )
    .await?;
    Ok(Some(token))
}

async fn token_ok(db: &Db, presented: &str) -> Result<bool, ServiceError> {
    let Some(stored) = secrets::get(db, SECRET).await? else {
        return Ok(false);
    };
    Ok(bool::from(
        stored
            .as_slice()
            .ct_eq(Sha256::digest(presented.as_bytes()).as_slice()),
    ))
}

/// Runs the set-up: first organisation, its admin, an admin API key.
pub async fn run(
    db: &Db,
    req: SetupRequest,
    now: Timestamp,
) -> Result<SetupResponse, ServiceError> {
    if !token_ok(db, &req.token).await? {
        return Err(ServiceError::Forbidden {
            detail: "the set-up token is wrong or was already used".into(),
        });
    }
    let mut v = Violations::new();
    if let Err(e) =
        carebridge_identity::accounts::check_password("/admin/password", &req.admin.password)
    {
        v.0.extend(e.0);
    }
    let draft = carebridge_backend::service::draft(&req.org).map_err(|e| prefix(e, "/org"));
    let draft = match draft {
        Ok(d) => Some(d),
        Err(e) => {
            v.0.extend(e.0);
            None
        }
    };
    v.into_result()?;
    let Some(draft) = draft else {
        return Err(ServiceError::Invalid(Violations::new()));
    };
    let hash = carebridge_identity::accounts::hash_password(req.admin.password.clone()).await?;
    let actor = Actor::system("setup", Source::Setup);
    let mut tx = db.begin().await?;
    if !token_ok(db, &req.token).await? {
        return Err(ServiceError::Forbidden {
            detail: "the set-up token is wrong or was already used".into(),
        });
    }
    let org = carebridge_backend::service::create_in(&mut tx, &actor, draft, now).await?;
    let oref = OrgRef {
        id: OrgId(org.id),
        slug: org.slug.clone(),
        default_region: org.default_region.clone(),
        default_language: org.default_language.clone(),
    };
    let person = carebridge_directory::service::people::create_in(
        &mut tx,
        &actor,
        &oref,
        &CreatePerson {
            given_name: req.admin.given_name.clone(),
            family_name: req.admin.family_name.clone(),
            kind: Some("staff".into()),
            emails: vec![Contact {
                value: req.admin.email.clone(),
                kind: "work".into(),
            }],
            ..Default::default()
        },
        now,
    )
    .await
    .map_err(|e| match e {
        ServiceError::Invalid(v) => ServiceError::Invalid(prefix(v, "/admin")),
        e => e,
    })?;
    let email = person
        .emails
        .first()
        .map(|e| e.value.clone())
        .unwrap_or_default();
    let account =
        carebridge_identity::accounts::create_in(&mut tx, &email, Some(&hash), now).await?;
    carebridge_directory::repo::people::set_account(&mut tx, oref.id, person.id, account.0).await?;
    carebridge_directory::service::roles::create_in(
        &mut tx,
        &actor,
        &oref,
        &CreateRoleAssignment {
            person_id: person.id,
            role: "org_admin".into(),
            unit_id: None,
        },
        now,
    )
    .await?;
    let key = carebridge_identity::apikeys::create_in(
        &mut tx,
        &actor,
        Some(oref.id),
        &CreateApiKey {
            name: "set-up admin key".into(),
            permissions: Permission::org_admin()
                .iter()
                .map(|p| p.as_str().to_string())
                .collect(),
            expires_at: None,
            person_id: None,
        },
        now,
    )
    .await?;
    carebridge_store::exec!(&mut tx, c => carebridge_store::sqlx::query("DELETE FROM server_secrets WHERE name = $1").bind(SECRET).execute(c).await)?;
    tx.commit().await?;
    Ok(SetupResponse {
        org,
        admin_person_id: person.id,
        api_key: key,
    })
}

fn prefix(v: Violations, p: &str) -> Violations {
    Violations(
        v.0.into_iter()
            .map(|mut x| {
                x.pointer = format!("{p}{}", x.pointer);
                x
            })
            .collect(),
    )
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(setup_api))
}

/// Complete the first-start set-up with the token the server printed.
#[utoipa::path(post, path = "/api/v1/setup", tag = "setup", request_body = SetupRequest,
    responses((status = 201, body = SetupResponse), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn setup_api(
    State(s): State<AppState>,
    body: Json<SetupRequest>,
) -> Result<(axum::http::StatusCode, axum::Json<SetupResponse>), ApiError> {
    let r = run(&s.db, body.value, s.now()).await?;
    Ok((axum::http::StatusCode::CREATED, axum::Json(r)))
}

/// The browser form at `/setup`.
pub fn pages() -> Router<AppState> {
    Router::new().route("/setup", get(form_page).post(form_submit))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>Carebridge set-up</title><style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}}\
         label{{display:block;margin:.6rem 0 .2rem}}input{{width:100%;padding:.4rem}}button{{margin-top:1rem;padding:.5rem 1rem}}\
         .err{{color:#a00}}code{{word-break:break-all;background:#eee;padding:.2rem}}</style></head><body><h1>Carebridge set-up</h1>{body}</body></html>"
    ))
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn form_page(axum::extract::Query(q): axum::extract::Query<TokenQuery>) -> Html<String> {
    let token = esc(q.token.as_deref().unwrap_or(""));
    page(&format!(
        "<form method=\"post\" action=\"/setup\"><input type=\"hidden\" name=\"token\" value=\"{token}\">\
         <h2>Organisation</h2><label for=\"name\">Name</label><input id=\"name\" name=\"org_name\" required>\
         <label for=\"slug\">Short name (a-z, 0-9, -)</label><input id=\"slug\" name=\"org_slug\" required pattern=\"[a-z0-9-]+\">\
         <label for=\"region\">Country (ISO code, e.g. CH, DE, FI)</label><input id=\"region\" name=\"org_region\" value=\"CH\" required>\
         <label for=\"lang\">Language (de, fr, it, en, fi, sv)</label><input id=\"lang\" name=\"org_language\" value=\"de\" required>\
         <h2>Administrator</h2><label for=\"gn\">Given name</label><input id=\"gn\" name=\"given_name\" required>\
         <label for=\"fn\">Family name</label><input id=\"fn\" name=\"family_name\" required>\
         <label for=\"em\">E-mail</label><input id=\"em\" name=\"email\" type=\"email\" required>\
         <label for=\"pw\">Password (12+ characters)</label><input id=\"pw\" name=\"password\" type=\"password\" minlength=\"12\" required>\
         <button type=\"submit\">Create</button></form>"
    ))
}

#[derive(Deserialize)]
struct SetupForm {
    token: String,
    org_name: String,
    org_slug: String,
    org_region: String,
    org_language: String,
    given_name: String,
    family_name: String,
    email: String,
    password: String,
}

async fn form_submit(State(s): State<AppState>, Form(f): Form<SetupForm>) -> Response {
    let req = SetupRequest {
        token: f.token,
        org: CreateOrg {
            slug: f.org_slug,
            name: f.org_name,
            default_region: f.org_region,
            default_language: f.org_language,
            contact_email: None,
        },
        admin: SetupAdmin {
            given_name: f.given_name,
            family_name: f.family_name,
            email: f.email,
            password: f.password,
        },
    };
    match run(&s.db, req, s.now()).await {
        Ok(r) => page(&format!(
            "<p>Organisation <b>{}</b> is ready.</p><p>Your administrator API key (shown only now, keep it safe):</p><p><code>{}</code></p>\
             <p>Use it as <code>Authorization: Bearer &lt;key&gt;</code> against <a href=\"/api/v1/openapi.json\">the API</a>.</p>",
            esc(&r.org.name),
            esc(&r.api_key.secret)
        ))
        .into_response(),
        Err(ServiceError::Invalid(v)) => {
            (axum::http::StatusCode::UNPROCESSABLE_ENTITY, page(&format!("<p class=\"err\">{}</p><p><a href=\"javascript:history.back()\">Back</a></p>", esc(&v.to_string())))).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}
