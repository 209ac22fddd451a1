//! One-time links by e-mail: "forgot password" (valid one hour) and the invitation that lets
//! a new person set their first password (valid seven days). Links carry 256 random bits and
//! are stored as digests; using one marks it used. Setting a password through a reset link
//! ends every session and token of the account. The "forgot" answer is the same whether or
//! not the account exists.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carebridge_domain::{AccountId, OrgId, Timestamp};
use carebridge_store::outbox::{self, Channel};
use carebridge_store::{StoreError, Tx, exec, run, sqlx};
use carebridge_web::{ApiError, AppState};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::authorize::secure;
use crate::ctx::Ctx;
use crate::i18n::Lang;
use crate::pages::{self, render};
use crate::web::{self, ClientIp};

pub const RESET_TTL_MS: i64 = 3_600_000;
pub const INVITE_TTL_MS: i64 = 7 * 86_400_000;

fn digest(b: &[u8]) -> Vec<u8> {
    Sha256::digest(b).to_vec()
}

fn lang(headers: &HeaderMap, explicit: Option<&str>) -> Lang {
    Lang::pick(
        explicit,
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    )
}

/// Creates a one-time link of `kind` (`reset` or `invite`) and queues the e-mail with it.
pub async fn send_link(
    tx: &mut Tx,
    base: &str,
    kind: &str,
    account: AccountId,
    org: Option<OrgId>,
    email: &str,
    lang: Lang,
    now: Timestamp,
) -> Result<(), StoreError> {
    let secret = crate::random_bytes::<32>();
    let ms = now.as_millisecond();
    let ttl = if kind == "invite" {
        INVITE_TTL_MS
    } else {
        RESET_TTL_MS
    };
    exec!(tx, c => sqlx::query("INSERT INTO action_links (digest, kind, account_id, org_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(digest(&secret)).bind(kind).bind(account.0).bind(org.map(|o| o.0)).bind(ms).bind(ms + ttl).execute(c).await)?;
    let t = lang.texts();
    let link = format!(
        "{base}/account/password?token={}&lang={}",
        URL_SAFE_NO_PAD.encode(secret),
        lang.code()
    );
    let (subject, intro) = if kind == "invite" {
        (t.invite_subject, t.invite_body)
    } else {
        (t.reset_subject, t.reset_body)
    };
    outbox::enqueue(
        tx,
        carebridge_domain::ids::new_v7(now),
        org.map(|o| o.0),
        Channel::Email,
        email,
        Some(subject),
        &format!("{intro}\n\n{link}\n"),
        kind,
        ms,
    )
    .await
}

#[derive(Deserialize)]
pub struct LangQuery {
    lang: Option<String>,
    token: Option<String>,
}

/// `GET /account/forgot`.
pub async fn forgot_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
) -> Response {
    let l = lang(&headers, q.lang.as_deref());
    let t = l.texts();
    let (csrf, set) = web::csrf(&headers, secure(&s));
    render(
        StatusCode::OK,
        &pages::Forgot {
            t,
            lang: l.code(),
            title: t.forgot_title,
            csrf: &csrf,
        },
        set.into_iter().collect(),
    )
}

impl crate::web::Csrf for ForgotForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

#[derive(Deserialize)]
pub struct ForgotForm {
    csrf: Option<String>,
    lang: Option<String>,
    login: Option<String>,
}

/// `POST /account/forgot`.
pub async fn forgot(
    State(s): State<AppState>,
    Extension(ctx): Extension<Arc<Ctx>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    form: Result<Form<ForgotForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let f = match web::posted(&headers, form, lang(&headers, None)) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let l = lang(&headers, f.lang.as_deref());
    let t = l.texts();
    if !ctx.attempt(ip) {
        return pages::message(StatusCode::TOO_MANY_REQUESTS, l, t.error_title, t.too_many);
    }
    let login = f.login.unwrap_or_default();
    let r: Result<(), ApiError> = async {
        if !login.contains('@') {
            return Ok(());
        }
        let Some(a) = crate::signin::find(&s.db, &login).await? else {
            return Ok(());
        };
        if a.disabled {
            return Ok(());
        }
        let email = crate::accounts::normalise_login(&login);
        let mut tx = s.db.begin().await?;
        send_link(
            &mut tx,
            s.base_url(),
            "reset",
            a.id,
            None,
            &email,
            l,
            s.now(),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
    .await;
    match r {
        Ok(()) => pages::message(StatusCode::OK, l, t.forgot_title, t.forgot_sent),
        Err(e) => e.into_response(),
    }
}

/// The live link of a token: `(digest, kind, account)`.
async fn link(s: &AppState, token: &str) -> Result<Option<(Vec<u8>, String, Uuid)>, StoreError> {
    let Ok(raw) = URL_SAFE_NO_PAD.decode(token) else {
        return Ok(None);
    };
    let d = digest(&raw);
    let mut c = s.db.read().await?;
    let r: Option<(String, Uuid)> = run!(&mut c, c => sqlx::query_as(
        "SELECT kind, account_id FROM action_links WHERE digest = $1 AND used_at IS NULL AND expires_at > $2")
        .bind(&d).bind(s.now().as_millisecond()).fetch_optional(c).await)?;
    Ok(r.map(|(k, a)| (d, k, a)))
}

fn password_page(
    s: &AppState,
    headers: &HeaderMap,
    l: Lang,
    token: &str,
    kind: &str,
    error: Option<&'static str>,
    status: StatusCode,
) -> Response {
    let t = l.texts();
    let (csrf, set) = web::csrf(headers, secure(s));
    let title = if kind == "invite" {
        t.invite_title
    } else {
        t.forgot_title
    };
    render(
        status,
        &pages::Password {
            t,
            lang: l.code(),
            title,
            error,
            csrf: &csrf,
            token,
        },
        set.into_iter().collect(),
    )
}

/// `GET /account/password?token=…`: the form to set a password from a link.
pub async fn password_form(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
) -> Response {
    let l = lang(&headers, q.lang.as_deref());
    let t = l.texts();
    let token = q.token.unwrap_or_default();
    match link(&s, &token).await {
        Ok(Some((_, kind, _))) => {
            password_page(&s, &headers, l, &token, &kind, None, StatusCode::OK)
        }
        Ok(None) => pages::message(StatusCode::BAD_REQUEST, l, t.error_title, t.link_invalid),
        Err(e) => ApiError::from(e).into_response(),
    }
}

impl crate::web::Csrf for PasswordForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

#[derive(Deserialize)]
pub struct PasswordForm {
    csrf: Option<String>,
    token: Option<String>,
    lang: Option<String>,
    password: Option<String>,
    repeat: Option<String>,
}

/// `POST /account/password`.
pub async fn set_password(
    State(s): State<AppState>,
    Extension(ctx): Extension<Arc<Ctx>>,
    headers: HeaderMap,
    form: Result<Form<PasswordForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let f = match web::posted(&headers, form, lang(&headers, None)) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let l = lang(&headers, f.lang.as_deref());
    let t = l.texts();
    let token = f.token.unwrap_or_default();
    let password = f.password.unwrap_or_default();
    let r: Result<Response, ApiError> = async {
        let Some((d, kind, account)) = link(&s, &token).await? else {
            return Ok(pages::message(StatusCode::BAD_REQUEST, l, t.error_title, t.link_invalid));
        };
        if Some(&password) != f.repeat.as_ref() {
            return Ok(password_page(&s, &headers, l, &token, &kind, Some(t.passwords_differ), StatusCode::UNPROCESSABLE_ENTITY));
        }
        if crate::accounts::check_password("/password", &password).is_err() {
            return Ok(password_page(&s, &headers, l, &token, &kind, Some(t.password_short), StatusCode::UNPROCESSABLE_ENTITY));
        }
        let hash = ctx.hash_password(password).await?;
        let now = s.now();
        let mut tx = s.db.begin().await?;
        let n = exec!(&mut tx, c => sqlx::query("UPDATE action_links SET used_at = $2 WHERE digest = $1 AND used_at IS NULL")
            .bind(&d).bind(now.as_millisecond()).execute(c).await)?;
        if n != 1 {
            return Ok(pages::message(StatusCode::BAD_REQUEST, l, t.error_title, t.link_invalid));
        }
        exec!(&mut tx, c => sqlx::query("UPDATE accounts SET password_hash = $2, failed_logins = 0, locked_until = NULL, updated_at = $3 WHERE id = $1")
            .bind(account).bind(&hash).bind(now.as_millisecond()).execute(c).await)?;
        if kind == "reset" {
            crate::sessions::revoke_all(&mut tx, AccountId(account), "password_reset", now).await?;
        }
        tx.commit().await?;
        Ok(pages::message(StatusCode::OK, l, t.set_password, t.password_set))
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}
