//! The device authorization grant (RFC 8628) for the member CLI and other input-constrained
//! devices: the device asks for a code pair, the person approves the short `user_code` on
//! `/oauth2/device` in a browser (signed in, organisation chosen, second factor done), the
//! device polls the token endpoint. Device codes are stored as digests; user codes use an
//! alphabet without vowels or look-alikes (`BCDF-GHJK`), valid ten minutes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carebridge_domain::oauth::{audience, grant_scopes};
use carebridge_domain::{OrgId, PersonId, Timestamp};
use carebridge_store::{Db, StoreError, exec, run, sqlx};
use carebridge_web::{ApiError, AppState};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::authorize::{Gate, gate, secure};
use crate::clients::Client;
use crate::ctx::Ctx;
use crate::grants::{self, Issued};
use crate::i18n::Lang;
use crate::pages::{self, render};
use crate::web::{self, ClientIp};

pub const DEVICE_TTL_S: i64 = 600;
pub const INTERVAL_S: i64 = 5;
const USER_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
pub const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

fn digest(b: &[u8]) -> Vec<u8> {
    Sha256::digest(b).to_vec()
}

fn user_code() -> String {
    let b = crate::random_bytes::<8>();
    let c: String = b
        .iter()
        .map(|x| USER_ALPHABET[(*x as usize) % USER_ALPHABET.len()] as char)
        .collect();
    format!("{}-{}", &c[..4], &c[4..])
}

/// A typed user code in canonical form (`bcdf ghjk` → `BCDF-GHJK`).
fn normalise(code: &str) -> String {
    let c: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_uppercase();
    if c.len() == 8 {
        format!("{}-{}", &c[..4], &c[4..])
    } else {
        c
    }
}

/// What an OAuth error code of the device grant means.
pub fn describe(code: &str) -> &'static str {
    match code {
        "authorization_pending" => "the person has not approved the device yet",
        "slow_down" => "polling too fast: wait the interval (now 5 seconds longer)",
        "access_denied" => "the person denied the request",
        "expired_token" => "the device code has expired: start again",
        _ => "unknown device code",
    }
}

/// `POST /oauth2/device_authorization`.
pub async fn authorize(
    State(s): State<AppState>,
    Extension(ctx): Extension<Arc<Ctx>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let err = |status: StatusCode, code: &str, d: &str| {
        (
            status,
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(json!({"error": code, "error_description": d})),
        )
            .into_response()
    };
    let (c, form) = match crate::token::client_request(&s, &ctx, ip, &headers, form).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if !c.may(GRANT) {
        return err(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "this client may not use the device flow",
        );
    }
    let requested = form.get("scope").map(String::as_str).unwrap_or("openid");
    let Some(scopes) = grant_scopes(requested, &c.scopes, true) else {
        return err(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "a requested scope is not allowed for this client",
        );
    };
    if let Err(why) = audience(&scopes) {
        return err(StatusCode::BAD_REQUEST, "invalid_scope", why);
    }
    let now = s.now();
    let device = crate::random_bytes::<32>();
    let ms = now.as_millisecond();
    let r: Result<String, StoreError> = async {
        for _ in 0..5 {
            let uc = user_code();
            let mut tx = s.db.begin().await?;
            let taken: Option<Vec<u8>> = run!(&mut tx, c => sqlx::query_scalar("SELECT digest FROM device_codes WHERE user_code = $1").bind(&uc).fetch_optional(c).await)?;
            if taken.is_some() {
                continue;
            }
            exec!(&mut tx, x => sqlx::query(
                "INSERT INTO device_codes (digest, user_code, client_id, scopes, org_hint, state, interval_s, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8)")
                .bind(digest(&device)).bind(&uc).bind(&c.client_id).bind(scopes.join(" ")).bind(form.get("org")).bind(INTERVAL_S).bind(ms).bind(ms + DEVICE_TTL_S * 1000).execute(x).await)?;
            tx.commit().await?;
            return Ok(uc);
        }
        Err(StoreError::Corrupt("could not find a free user code".into()))
    }
    .await;
    let uc = match r {
        Ok(uc) => uc,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let base = s.base_url();
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({
            "device_code": format!("cbd_{}", URL_SAFE_NO_PAD.encode(device)),
            "user_code": uc,
            "verification_uri": format!("{base}/oauth2/device"),
            "verification_uri_complete": format!("{base}/oauth2/device?user_code={uc}"),
            "expires_in": DEVICE_TTL_S,
            "interval": INTERVAL_S,
        })),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct DeviceQuery {
    user_code: Option<String>,
    org: Option<String>,
}

fn lang(headers: &HeaderMap) -> Lang {
    Lang::pick(
        None,
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    )
}

fn next_of(user_code: &str, org: Option<&str>) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("user_code", user_code);
    if let Some(o) = org {
        q.append_pair("org", o);
    }
    format!("/oauth2/device?{}", q.finish())
}

/// The client a pending user code belongs to.
async fn pending_client(s: &AppState, uc: &str) -> Result<Option<Client>, ApiError> {
    let mut c = s.db.read().await?;
    let r: Option<String> = run!(&mut c, c => sqlx::query_scalar(
        "SELECT client_id FROM device_codes WHERE user_code = $1 AND state = 'pending' AND expires_at > $2")
        .bind(uc).bind(s.now().as_millisecond()).fetch_optional(c).await)?;
    drop(c);
    match r {
        Some(id) => Ok(crate::clients::lookup(&s.db, &id, s.base_url()).await?),
        None => Ok(None),
    }
}

/// `GET /oauth2/device`: the approval page (after sign-in).
pub async fn page(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<DeviceQuery>,
) -> Response {
    let l = lang(&headers);
    let t = l.texts();
    let (csrf, set) = web::csrf(&headers, secure(&s));
    let uc = normalise(q.user_code.as_deref().unwrap_or(""));
    let r: Result<Response, ApiError> = async {
        let client = if uc.is_empty() {
            None
        } else {
            pending_client(&s, &uc).await?
        };
        let next = next_of(&uc, q.org.as_deref());
        match gate(
            &s,
            &headers,
            l,
            &next,
            client.as_ref().and_then(|c| c.org),
            q.org.as_deref(),
            "",
            false,
            None,
            false,
        )
        .await?
        {
            Gate::Through { member, .. } => {
                let error = (!uc.is_empty() && client.is_none()).then_some(t.device_unknown);
                Ok(render(
                    StatusCode::OK,
                    &pages::Device {
                        t,
                        lang: l.code(),
                        title: t.device_title,
                        error,
                        csrf: &csrf,
                        user_code: &uc,
                        org: &member.slug,
                    },
                    set.into_iter().collect(),
                ))
            }
            Gate::Page(p) => Ok(p),
            Gate::Passive(_) => Ok(pages::message(
                StatusCode::FORBIDDEN,
                l,
                t.error_title,
                t.no_membership,
            )),
        }
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}

impl crate::web::Csrf for DeviceForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

#[derive(Deserialize)]
pub struct DeviceForm {
    csrf: Option<String>,
    user_code: Option<String>,
    org: Option<String>,
    decision: Option<String>,
}

/// `POST /oauth2/device`: approves or denies a user code.
pub async fn decide(
    State(s): State<AppState>,
    Extension(ctx): Extension<Arc<Ctx>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    form: Result<Form<DeviceForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let l = lang(&headers);
    let t = l.texts();
    let f = match web::posted(&headers, form, l) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if !ctx.attempt(ip) {
        return pages::message(StatusCode::TOO_MANY_REQUESTS, l, t.error_title, t.too_many);
    }
    let uc = normalise(f.user_code.as_deref().unwrap_or(""));
    let org = f.org.filter(|o| !o.is_empty());
    let r: Result<Response, ApiError> = async {
        let Some(client) = pending_client(&s, &uc).await? else {
            let (csrf, set) = web::csrf(&headers, secure(&s));
            return Ok(render(
                StatusCode::BAD_REQUEST,
                &pages::Device { t, lang: l.code(), title: t.device_title, error: Some(t.device_unknown), csrf: &csrf, user_code: &uc, org: org.as_deref().unwrap_or("") },
                set.into_iter().collect(),
            ));
        };
        let next = next_of(&uc, org.as_deref());
        let (session, member) = match gate(&s, &headers, l, &next, client.org, org.as_deref(), "", false, None, false).await? {
            Gate::Through { session, member, .. } => (session, member),
            Gate::Page(p) => return Ok(p),
            Gate::Passive(_) => return Ok(pages::message(StatusCode::FORBIDDEN, l, t.error_title, t.no_membership)),
        };
        let allow = f.decision.as_deref() == Some("allow");
        let amr = serde_json::to_string(&session.amr).unwrap_or_else(|_| "[]".into());
        let mut tx = s.db.begin().await?;
        exec!(&mut tx, c => sqlx::query(
            "UPDATE device_codes SET state = $2, org_id = $3, person_id = $4, session_id = $5, auth_time = $6, amr = $7 \
             WHERE user_code = $1 AND state = 'pending' AND expires_at > $8")
            .bind(&uc).bind(if allow { "approved" } else { "denied" }).bind(member.org.0).bind(member.person.0).bind(session.id)
            .bind(session.auth_time).bind(&amr).bind(s.now().as_millisecond()).execute(c).await)?;
        tx.commit().await?;
        Ok(pages::message(StatusCode::OK, l, t.device_title, if allow { t.device_done } else { t.device_denied }))
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}

type DeviceRow = (
    String,
    String,
    String,
    Option<Uuid>,
    Option<Uuid>,
    Option<Uuid>,
    Option<i64>,
    Option<String>,
    i64,
    Option<i64>,
    i64,
);

/// The token endpoint's part: `Ok(Err(code))` is an OAuth error (`authorization_pending`,
/// `slow_down`, `access_denied`, `expired_token`, `invalid_grant`).
pub async fn redeem(
    db: &Db,
    device_code: &str,
    c: &Client,
    now: Timestamp,
) -> Result<Result<Issued, &'static str>, StoreError> {
    let Some(raw) = device_code
        .strip_prefix("cbd_")
        .and_then(|d| URL_SAFE_NO_PAD.decode(d).ok())
    else {
        return Ok(Err("invalid_grant"));
    };
    let d = digest(&raw);
    let ms = now.as_millisecond();
    let mut tx = db.begin().await?;
    let row: Option<DeviceRow> = run!(&mut tx, x => sqlx::query_as(
        "SELECT client_id, state, scopes, org_id, person_id, session_id, auth_time, amr, interval_s, last_poll_at, expires_at FROM device_codes WHERE digest = $1")
        .bind(&d).fetch_optional(x).await)?;
    let Some((
        owner,
        state,
        scopes,
        org,
        person,
        session,
        auth_time,
        amr,
        interval,
        last_poll,
        expires,
    )) = row
    else {
        return Ok(Err("invalid_grant"));
    };
    if owner != c.client_id {
        return Ok(Err("invalid_grant"));
    }
    if expires <= ms {
        return Ok(Err("expired_token"));
    }
    match state.as_str() {
        "pending" => {
            let too_fast = last_poll.is_some_and(|p| ms - p < interval * 1000);
            let new_interval = if too_fast { interval + 5 } else { interval };
            exec!(&mut tx, x => sqlx::query("UPDATE device_codes SET last_poll_at = $2, interval_s = $3 WHERE digest = $1")
                .bind(&d).bind(ms).bind(new_interval).execute(x).await)?;
            tx.commit().await?;
            Ok(Err(if too_fast {
                "slow_down"
            } else {
                "authorization_pending"
            }))
        }
        "denied" => Ok(Err("access_denied")),
        "approved" => {
            let (Some(org), Some(person), Some(auth_time)) = (org, person, auth_time) else {
                return Ok(Err("invalid_grant"));
            };
            let n = exec!(&mut tx, x => sqlx::query("UPDATE device_codes SET state = 'used' WHERE digest = $1 AND state = 'approved'")
                .bind(&d).execute(x).await)?;
            if n != 1 {
                return Ok(Err("invalid_grant"));
            }
            let scopes: Vec<String> = scopes
                .split(' ')
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect();
            let amr: Vec<String> = amr
                .and_then(|a| serde_json::from_str(&a).ok())
                .unwrap_or_default();
            let with_refresh =
                c.may("refresh_token") && scopes.iter().any(|x| x == "offline_access");
            let (grant, refresh) = grants::create(
                &mut tx,
                OrgId(org),
                PersonId(person),
                &c.client_id,
                session,
                &scopes,
                auth_time,
                &amr,
                with_refresh,
                now,
            )
            .await?;
            tx.commit().await?;
            Ok(Ok(Issued {
                grant,
                org: OrgId(org),
                person: PersonId(person),
                client_id: c.client_id.clone(),
                scopes,
                auth_time,
                amr,
                session,
                nonce: None,
                refresh,
            }))
        }
        _ => Ok(Err("invalid_grant")),
    }
}
