//! Second factors: SMS one-time codes and TOTP (RFC 6238) with recovery codes.
//!
//! - SMS: 6 digits, valid [`OTP_TTL_MS`], [`OTP_TRIES`] tries, stored as a SHA-256 digest with
//!   the session, sent through the outbox; a new code only after a back-off that doubles with
//!   every send (30 s, 60 s, …), at most [`OTP_SENDS`] per session.
//! - TOTP: a 160-bit seed enrolled with a QR code and confirmed with a first code; each time
//!   step is accepted once (replay guard); wrong codes count towards the account lockout.
//!   Enrolment hands out ten recovery codes (digests stored, each usable once).

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use carebridge_domain::Timestamp;
use carebridge_store::outbox::{self, Channel};
use carebridge_store::{exec, run, sqlx};
use carebridge_web::{ApiError, AppState};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Builder, Totp};

use crate::ctx::Ctx;
use crate::i18n::Lang;
use crate::pages::{self, render};
use crate::sessions::{self, Session};
use crate::signin::{self, Claims};
use crate::web::{self, ClientIp};

pub const OTP_TTL_MS: i64 = 5 * 60_000;
pub const OTP_TRIES: i64 = 5;
pub const OTP_SENDS: i64 = 5;
const RESEND_BASE_MS: i64 = 30_000;

fn digest(s: &str) -> Vec<u8> {
    Sha256::digest(s.as_bytes()).to_vec()
}

/// A uniformly random 6-digit code.
fn six_digits() -> String {
    loop {
        let n = u32::from_le_bytes(crate::random_bytes::<4>());
        // Rejection sampling: drop the top partial range so every code is equally likely.
        if n < 4_294_000_000 {
            return format!("{:06}", n % 1_000_000);
        }
    }
}

/// `+41791234567` → `+41 ••• •• 67`.
fn mask(phone: &str) -> String {
    let tail: String = phone
        .chars()
        .rev()
        .take(2)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let head: String = phone.chars().take(3).collect();
    format!("{head} ••• •• {tail}")
}

fn totp(secret: Vec<u8>, account: &str) -> Option<Totp> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret)
        .with_issuer(Some("Carebridge"))
        .with_account_name(account.replace(':', ""))
        .build()
        .ok()
}

/// The phone an SMS code goes to: the account's, else the person's mobile.
fn phone_of(account_phone: Option<&str>, claims: &Claims) -> Option<String> {
    account_phone
        .map(str::to_string)
        .or_else(|| claims.phone.clone())
        .filter(|p| p.starts_with('+'))
}

/// Sends a fresh SMS code for the session (replacing any earlier one).
async fn send_sms(
    s: &AppState,
    session: &Session,
    phone: &str,
    lang: Lang,
    sends: i64,
    now: Timestamp,
) -> Result<(), ApiError> {
    let code = six_digits();
    let ms = now.as_millisecond();
    let mut tx = s.db.begin().await?;
    exec!(&mut tx, c => sqlx::query(
        "INSERT INTO otp_challenges (session_id, code_digest, phone, tries, sends, sent_at, expires_at) VALUES ($1, $2, $3, 0, $4, $5, $6) \
         ON CONFLICT (session_id) DO UPDATE SET code_digest = excluded.code_digest, phone = excluded.phone, tries = 0, sends = excluded.sends, sent_at = excluded.sent_at, expires_at = excluded.expires_at")
        .bind(session.id).bind(digest(&code)).bind(phone).bind(sends).bind(ms).bind(ms + OTP_TTL_MS).execute(c).await)?;
    let body = format!("{} {code}", lang.texts().sms_body);
    outbox::enqueue(
        &mut tx,
        carebridge_domain::ids::new_v7(now),
        None,
        Channel::Sms,
        phone,
        None,
        &body,
        "signin_otp",
        ms,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The second-factor page for a signed-in session: TOTP when enrolled, else an SMS code (sent
/// now unless a live one exists), else TOTP enrolment.
pub async fn page(
    s: &AppState,
    headers: &HeaderMap,
    session: &Session,
    claims: &Claims,
    next: &str,
    lang: Lang,
    error: Option<&'static str>,
) -> Result<Response, ApiError> {
    let now = s.now();
    let t = lang.texts();
    let (csrf, set) = web::csrf(headers, crate::authorize::secure(s));
    let mut c = s.db.read().await?;
    let Some(account) = signin::get(&mut c, session.account).await? else {
        return Err(ApiError::Unauthorized {
            detail: "no such account".into(),
        });
    };
    if account.totp {
        return Ok(render(
            StatusCode::OK,
            &pages::Mfa {
                t,
                lang: lang.code(),
                title: t.second_factor,
                error,
                csrf: &csrf,
                next,
                sms: false,
                phone_hint: "",
            },
            set.into_iter().collect(),
        ));
    }
    if let Some(phone) = phone_of(account.phone.as_deref(), claims) {
        let live: Option<(i64, i64, i64)> = run!(&mut c, c => sqlx::query_as("SELECT expires_at, tries, sends FROM otp_challenges WHERE session_id = $1")
            .bind(session.id).fetch_optional(c).await)?;
        drop(c);
        match live {
            Some((exp, tries, _)) if exp > now.as_millisecond() && tries < OTP_TRIES => {}
            Some((_, _, sends)) if sends >= OTP_SENDS => {}
            Some(_) if error.is_some() => {}
            Some((_, _, sends)) => send_sms(s, session, &phone, lang, sends + 1, now).await?,
            None => send_sms(s, session, &phone, lang, 1, now).await?,
        }
        return Ok(render(
            StatusCode::OK,
            &pages::Mfa {
                t,
                lang: lang.code(),
                title: t.second_factor,
                error,
                csrf: &csrf,
                next,
                sms: true,
                phone_hint: &mask(&phone),
            },
            set.into_iter().collect(),
        ));
    }
    // Nothing to send a code to: enrol an authenticator app.
    let secret: Option<Vec<u8>> = run!(&mut c, c => sqlx::query_scalar("SELECT totp_secret FROM accounts WHERE id = $1")
        .bind(session.account.0).fetch_one(c).await)?;
    drop(c);
    let secret = match secret {
        Some(sec) => sec,
        None => {
            let sec = crate::random_bytes::<20>().to_vec();
            let mut tx = s.db.begin().await?;
            exec!(&mut tx, c => sqlx::query("UPDATE accounts SET totp_secret = $2 WHERE id = $1 AND totp_confirmed_at IS NULL")
                .bind(session.account.0).bind(&sec).execute(c).await)?;
            tx.commit().await?;
            sec
        }
    };
    let login: String = {
        let mut c = s.db.read().await?;
        run!(&mut c, c => sqlx::query_scalar("SELECT login FROM accounts WHERE id = $1").bind(session.account.0).fetch_one(c).await)?
    };
    let Some(tp) = totp(secret, &login) else {
        return Err(ApiError::Internal("TOTP set-up failed".into()));
    };
    let url = tp.to_url().map_err(|e| ApiError::Internal(e.to_string()))?;
    let svg = qrcode::QrCode::new(url.as_bytes())
        .map(|q| {
            q.render::<qrcode::render::svg::Color>()
                .min_dimensions(200, 200)
                .build()
        })
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let b32 = tp.secret().to_base32();
    Ok(render(
        StatusCode::OK,
        &pages::Enrol {
            t,
            lang: lang.code(),
            title: t.enrol_title,
            error,
            csrf: &csrf,
            next,
            qr_svg: &svg,
            secret: &b32,
        },
        set.into_iter().collect(),
    ))
}

impl crate::web::Csrf for CodeForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

#[derive(Deserialize)]
pub struct CodeForm {
    csrf: Option<String>,
    next: Option<String>,
    method: Option<String>,
    code: Option<String>,
}

/// The session, its claims for the continuation's organisation, and the continuation.
struct Pending {
    session: Session,
    claims: Claims,
    next: String,
    lang: Lang,
}

async fn pending(
    s: &AppState,
    headers: &HeaderMap,
    next: Option<String>,
) -> Result<Result<Pending, Response>, ApiError> {
    let lang = Lang::pick(
        None,
        headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    );
    let t = lang.texts();
    let next = next.unwrap_or_default();
    if !web::next_ok(&next) {
        return Ok(Err(pages::message(
            StatusCode::BAD_REQUEST,
            lang,
            t.error_title,
            "The form names an unknown continuation.",
        )));
    }
    let Some(session) = sessions::current(&s.db, headers, s.now()).await? else {
        return Ok(Err(Redirect::to(&next).into_response()));
    };
    // The claims only decide where an SMS goes; any active membership's mobile will do.
    let members = signin::memberships(&s.db, session.account).await?;
    let mut claims = None;
    let mut c = s.db.read().await?;
    for m in members.iter().filter(|m| m.active) {
        if let Some(cl) = signin::claims(&mut c, m.org, m.person).await?
            && (cl.phone.is_some() || claims.is_none())
        {
            claims = Some(cl);
        }
    }
    let Some(claims) = claims else {
        return Ok(Err(pages::message(
            StatusCode::FORBIDDEN,
            lang,
            t.error_title,
            t.no_membership,
        )));
    };
    Ok(Ok(Pending {
        session,
        claims,
        next,
        lang,
    }))
}

impl Pending {
    /// The second-factor page again, with `error`.
    async fn again(
        &self,
        s: &AppState,
        headers: &HeaderMap,
        error: Option<&'static str>,
    ) -> Response {
        page(
            s,
            headers,
            &self.session,
            &self.claims,
            &self.next,
            self.lang,
            error,
        )
        .await
        .unwrap_or_else(IntoResponse::into_response)
    }
}

/// Normalises a recovery code (`abcd-efgh`, any case, spaces) for its digest.
fn recovery_norm(c: &str) -> String {
    c.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_lowercase()
}

/// A posted second-factor form (parsed, CSRF checked) with its pending sign-in; or the page to
/// show instead.
#[allow(clippy::result_large_err)]
async fn posted_code(
    s: &AppState,
    headers: &HeaderMap,
    form: Result<Form<CodeForm>, axum::extract::rejection::FormRejection>,
) -> Result<(Pending, CodeForm), Response> {
    let lang = Lang::pick(
        None,
        headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    );
    let mut f = web::posted(headers, form, lang)?;
    match pending(s, headers, f.next.take()).await {
        Ok(Ok(p)) => Ok((p, f)),
        Ok(Err(r)) => Err(r),
        Err(e) => Err(e.into_response()),
    }
}

/// `POST /oauth2/mfa`: checks a TOTP, recovery or SMS code.
pub async fn verify(
    State(s): State<AppState>,
    Extension(ctx): Extension<Arc<Ctx>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    form: Result<Form<CodeForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (p, f) = match posted_code(&s, &headers, form).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let t = p.lang.texts();
    if !ctx.attempt(ip) {
        return p.again(&s, &headers, Some(t.too_many)).await;
    }
    let code: String = f
        .code
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let r = match f.method.as_deref() {
        Some("sms") => verify_sms(&s, &p, &code).await,
        _ => verify_totp(&s, &p, &code).await,
    };
    match r {
        Ok(None) => Redirect::to(&p.next).into_response(),
        Ok(Some(e)) => p.again(&s, &headers, Some(e)).await,
        Err(e) => e.into_response(),
    }
}

async fn verify_sms(
    s: &AppState,
    p: &Pending,
    code: &str,
) -> Result<Option<&'static str>, ApiError> {
    let t = p.lang.texts();
    let now = s.now();
    let mut tx = s.db.begin().await?;
    let row: Option<(Vec<u8>, i64, i64)> = run!(&mut tx, c => sqlx::query_as("SELECT code_digest, tries, expires_at FROM otp_challenges WHERE session_id = $1")
        .bind(p.session.id).fetch_optional(c).await)?;
    let Some((stored, tries, expires)) = row else {
        return Ok(Some(t.code_expired));
    };
    if tries >= OTP_TRIES || expires <= now.as_millisecond() {
        return Ok(Some(t.code_expired));
    }
    if code.len() == 6 && bool::from(stored.as_slice().ct_eq(&digest(code))) {
        exec!(&mut tx, c => sqlx::query("DELETE FROM otp_challenges WHERE session_id = $1").bind(p.session.id).execute(c).await)?;
        sessions::mark_mfa(&mut tx, &p.session, "sms", now).await?;
        tx.commit().await?;
        return Ok(None);
    }
    exec!(&mut tx, c => sqlx::query("UPDATE otp_challenges SET tries = tries + 1 WHERE session_id = $1").bind(p.session.id).execute(c).await)?;
    tx.commit().await?;
    Ok(Some(if tries + 1 >= OTP_TRIES {
        t.code_expired
    } else {
        t.wrong_code
    }))
}

async fn verify_totp(
    s: &AppState,
    p: &Pending,
    code: &str,
) -> Result<Option<&'static str>, ApiError> {
    let t = p.lang.texts();
    let now = s.now();
    let mut tx = s.db.begin().await?;
    let row: Option<(
        Option<Vec<u8>>,
        Option<i64>,
        Option<i64>,
        String,
        Option<i64>,
    )> = run!(&mut tx, c => sqlx::query_as(
        "SELECT totp_secret, totp_confirmed_at, totp_last_step, login, locked_until FROM accounts WHERE id = $1")
        .bind(p.session.account.0).fetch_optional(c).await)?;
    let Some((Some(secret), Some(_), last, login, locked)) = row else {
        return Ok(Some(t.wrong_code));
    };
    if locked.is_some_and(|l| l > now.as_millisecond()) {
        return Ok(Some(t.locked));
    }
    let step = totp(secret, &login).and_then(|tp| tp.check(code, now.as_second().max(0) as u64));
    if let Some(step) = step.map(|x| x as i64) {
        if last.is_some_and(|l| step <= l) {
            return Ok(Some(t.wrong_code));
        }
        exec!(&mut tx, c => sqlx::query("UPDATE accounts SET totp_last_step = $2, failed_logins = 0, locked_until = NULL WHERE id = $1")
            .bind(p.session.account.0).bind(step).execute(c).await)?;
        sessions::mark_mfa(&mut tx, &p.session, "otp", now).await?;
        tx.commit().await?;
        return Ok(None);
    }
    // A recovery code?
    let n = exec!(&mut tx, c => sqlx::query("UPDATE recovery_codes SET used_at = $3 WHERE account_id = $1 AND digest = $2 AND used_at IS NULL")
        .bind(p.session.account.0).bind(digest(&recovery_norm(code))).bind(now.as_millisecond()).execute(c).await)?;
    if n == 1 {
        sessions::mark_mfa(&mut tx, &p.session, "recovery", now).await?;
        tx.commit().await?;
        return Ok(None);
    }
    signin::failed(&mut tx, p.session.account, now).await?;
    tx.commit().await?;
    Ok(Some(t.wrong_code))
}

/// `POST /oauth2/mfa/resend`: a new SMS code, after the back-off.
pub async fn resend(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<CodeForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (p, _) = match posted_code(&s, &headers, form).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let t = p.lang.texts();
    let now = s.now();
    let r: Result<Option<&'static str>, ApiError> = async {
        let mut c = s.db.read().await?;
        let row: Option<(i64, i64, String)> = run!(&mut c, c => sqlx::query_as("SELECT sends, sent_at, phone FROM otp_challenges WHERE session_id = $1")
            .bind(p.session.id).fetch_optional(c).await)?;
        drop(c);
        let Some((sends, sent_at, phone)) = row else {
            return Ok(None);
        };
        let wait = RESEND_BASE_MS.saturating_mul(1 << (sends - 1).clamp(0, 16));
        if sends >= OTP_SENDS || now.as_millisecond() < sent_at + wait {
            return Ok(Some(t.resend_wait));
        }
        send_sms(&s, &p.session, &phone, p.lang, sends + 1, now).await?;
        Ok(None)
    }
    .await;
    match r {
        Ok(e) => p.again(&s, &headers, e).await,
        Err(e) => e.into_response(),
    }
}

/// `POST /oauth2/mfa/enrol`: confirms the authenticator app with a first code, passes the
/// second factor for this session and shows the recovery codes once.
pub async fn enrol(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<CodeForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (p, f) = match posted_code(&s, &headers, form).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let code: String = f
        .code
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    match enrol_inner(&s, &p, &code).await {
        Ok(Ok(codes)) => {
            let t = p.lang.texts();
            render(
                StatusCode::OK,
                &pages::Recovery {
                    t,
                    lang: p.lang.code(),
                    title: t.recovery_title,
                    codes: &codes,
                    next: &p.next,
                },
                vec![],
            )
        }
        Ok(Err(e)) => p.again(&s, &headers, Some(e)).await,
        Err(e) => e.into_response(),
    }
}

async fn enrol_inner(
    s: &AppState,
    p: &Pending,
    code: &str,
) -> Result<Result<Vec<String>, &'static str>, ApiError> {
    let t = p.lang.texts();
    let now = s.now();
    let mut tx = s.db.begin().await?;
    let row: Option<(Option<Vec<u8>>, Option<i64>, String)> = run!(&mut tx, c => sqlx::query_as(
        "SELECT totp_secret, totp_confirmed_at, login FROM accounts WHERE id = $1").bind(p.session.account.0).fetch_optional(c).await)?;
    let Some((Some(secret), None, login)) = row else {
        return Ok(Err(t.wrong_code));
    };
    let Some(step) =
        totp(secret, &login).and_then(|tp| tp.check(code, now.as_second().max(0) as u64))
    else {
        return Ok(Err(t.wrong_code));
    };
    exec!(&mut tx, c => sqlx::query("UPDATE accounts SET totp_confirmed_at = $2, totp_last_step = $3 WHERE id = $1")
        .bind(p.session.account.0).bind(now.as_millisecond()).bind(step as i64).execute(c).await)?;
    let codes = new_recovery_codes(&mut tx, p.session.account, now).await?;
    sessions::mark_mfa(&mut tx, &p.session, "otp", now).await?;
    tx.commit().await?;
    Ok(Ok(codes))
}

/// Replaces an account's recovery codes with ten new ones (returned once, stored as digests).
pub async fn new_recovery_codes(
    tx: &mut carebridge_store::Tx,
    account: carebridge_domain::AccountId,
    _now: Timestamp,
) -> Result<Vec<String>, carebridge_store::StoreError> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    exec!(tx, c => sqlx::query("DELETE FROM recovery_codes WHERE account_id = $1").bind(account.0).execute(c).await)?;
    let mut out = Vec::with_capacity(10);
    for _ in 0..10 {
        let raw: String = crate::random_bytes::<8>()
            .iter()
            .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
            .collect();
        let shown = format!("{}-{}", &raw[..4], &raw[4..]);
        exec!(tx, c => sqlx::query("INSERT INTO recovery_codes (account_id, digest) VALUES ($1, $2)")
            .bind(account.0).bind(digest(&recovery_norm(&shown))).execute(c).await)?;
        out.push(shown);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_masks_hide_the_middle() {
        for _ in 0..100 {
            let c = six_digits();
            assert_eq!(c.len(), 6);
            assert!(c.chars().all(|d| d.is_ascii_digit()));
        }
        assert_eq!(mask("+41791234567"), "+41 ••• •• 67");
        assert_eq!(recovery_norm(" AbCd-EfGh "), "abcdefgh");
    }
}
