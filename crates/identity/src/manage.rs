//! The identity API under `/api/v1`: the organisation's second-factor policy, invitations,
//! an admin's "sign out everywhere" for a person (lost phone), the person's own sessions and
//! consents, and an admin's view of a person's consents. Every admin change is audited.

use axum::extract::State;
use carebridge_domain::auth::{Actor, Permission, Source};
use carebridge_domain::role::Role;
use carebridge_domain::time::from_millis;
use carebridge_domain::{AccountId, PersonId, Violations};
use carebridge_proto::identity::{Consent, Invitation, MfaPolicy, OfficeToken, SignInSession};
use carebridge_proto::problem::Problem;
use carebridge_store::orgs::OrgRef;
use carebridge_store::{audit, exec, run, sqlx};
use carebridge_web::{ApiError, AppState, Auth, Json, Me, OrgPath, Path, ServiceError, require};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::i18n::Lang;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_policy, put_policy))
        .routes(routes!(
            crate::upstream::get_provider,
            crate::upstream::put_provider
        ))
        .routes(routes!(invite))
        .routes(routes!(sign_out_everywhere))
        .routes(routes!(person_sessions))
        .routes(routes!(end_person_session))
        .routes(routes!(person_consents))
        .routes(routes!(revoke_person_consent))
        .routes(routes!(my_sessions))
        .routes(routes!(end_my_session))
        .routes(routes!(my_consents))
        .routes(routes!(portal_token))
        .routes(routes!(revoke_my_consent))
}

/// How long an office token for the portal lives.
const OFFICE_TOKEN_TTL_S: i64 = 300;

/// A five-minute token for the customer portal's office endpoints (open requests, messages
/// from clients, links), for a person who administers the whole organisation — the admin
/// console asks for one per page. The portal cannot see roles (it may run elsewhere, with only
/// this provider's keys), so the role is checked here, when the token is made; the token
/// names the person and the organisation, with audience `portal` and scope `portal:office`.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/portal-token", tag = "identity",
    params(("org" = String, Path, description = "slug or id")),
    responses((status = 200, body = OfficeToken), (status = 403, body = Problem)), security(("bearer" = [])))]
async fn portal_token(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(_org): Path<String>,
) -> Result<axum::Json<OfficeToken>, ApiError> {
    require(&p, &o, Permission::OrgWrite)?;
    let Some((org, person)) = p.person() else {
        return Err(ServiceError::Forbidden {
            detail: "office tokens are for people (organisation admins), not for keys or clients"
                .into(),
        }
        .into());
    };
    let now = s.now();
    let key = crate::keys::active(&s.db).await?;
    let token = key.sign(&serde_json::json!({
        "iss": s.base_url(),
        "sub": person.0.to_string(),
        "aud": carebridge_domain::oauth::PORTAL_AUDIENCE,
        "exp": now.as_second() + OFFICE_TOKEN_TTL_S,
        "iat": now.as_second(),
        "jti": carebridge_domain::ids::new_v7(now).to_string(),
        "org": org.0.to_string(),
        "scope": carebridge_domain::oauth::PORTAL_OFFICE_SCOPE,
        "client_id": "office",
    }))?;
    Ok(axum::Json(OfficeToken {
        access_token: token,
        token_type: "Bearer".into(),
        expires_in: OFFICE_TOKEN_TTL_S,
    }))
}

/// Who must use a second factor in this organisation.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/mfa-policy", tag = "identity",
    params(("org" = String, Path, description = "slug or id")),
    responses((status = 200, body = MfaPolicy)), security(("bearer" = [])))]
async fn get_policy(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(_org): Path<String>,
) -> Result<axum::Json<MfaPolicy>, ApiError> {
    require(&p, &o, Permission::OrgRead)?;
    let mut c = s.db.read().await?;
    Ok(axum::Json(MfaPolicy {
        required_for: crate::signin::mfa_policy(&mut c, o.id).await?,
    }))
}

/// Set who must use a second factor (roles or person kinds).
#[utoipa::path(put, path = "/api/v1/orgs/{org}/mfa-policy", tag = "identity", request_body = MfaPolicy,
    params(("org" = String, Path, description = "slug or id")),
    responses((status = 200, body = MfaPolicy), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn put_policy(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(_org): Path<String>,
    body: Json<MfaPolicy>,
) -> Result<axum::Json<MfaPolicy>, ApiError> {
    require(&p, &o, Permission::OrgWrite)?;
    let mut v = Violations::new();
    let mut names: Vec<String> = Vec::new();
    for (i, n) in body.value.required_for.iter().enumerate() {
        let n = n.trim().to_string();
        let known =
            Role::parse(&n).is_some() || carebridge_domain::person::PersonKind::parse(&n).is_some();
        if !known {
            v.push(format!("/required_for/{i}"), "unknown_name", "a role (org_admin, unit_admin, dispatcher, member, client, relative) or person kind (staff, volunteer, client, relative)");
        } else if !names.contains(&n) {
            names.push(n);
        }
    }
    v.into_result().map_err(ServiceError::from)?;
    let now = s.now();
    let mut tx = s.db.begin().await?;
    let before = MfaPolicy {
        required_for: crate::signin::mfa_policy(&mut tx, o.id).await?,
    };
    let after = MfaPolicy {
        required_for: names,
    };
    crate::signin::set_mfa_policy(&mut tx, o.id, &after.required_for, now).await?;
    audit::record(
        &mut tx,
        o.id,
        &Actor::new(p, Source::Api),
        "identity.mfa_policy",
        "organisation",
        &o.id.0.to_string(),
        Some(&before),
        Some(&after),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(after))
}

/// The person's e-mail, kind and account of a person of `o`.
async fn person_row(
    s: &AppState,
    o: &OrgRef,
    person: Uuid,
) -> Result<(String, String, Option<Uuid>, Option<String>), ApiError> {
    let mut c = s.db.read().await?;
    let r: Option<(String, String, Option<Uuid>, Option<String>)> = run!(&mut c, c => sqlx::query_as(
        "SELECT emails, phones, account_id, language FROM people WHERE id = $1 AND org_id = $2")
        .bind(person).bind(o.id.0).fetch_optional(c).await)?;
    r.ok_or(ApiError::Service(ServiceError::NotFound { what: "person" }))
}

#[derive(serde::Deserialize)]
struct Contact {
    value: String,
    #[serde(rename = "type", default)]
    kind: String,
}

/// Invite a person: creates their account when they have none (login: their first e-mail;
/// their mobile number, if any, as a second login) and e-mails a link to set a password.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/people/{person}/invitation", tag = "identity",
    params(("org" = String, Path, description = "slug or id"), ("person" = Uuid, Path)),
    responses((status = 201, body = Invitation), (status = 404, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn invite(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, person)): Path<(String, Uuid)>,
) -> Result<(axum::http::StatusCode, axum::Json<Invitation>), ApiError> {
    require(&p, &o, Permission::DirectoryWrite)?;
    let (emails, phones, account, language) = person_row(&s, &o, person).await?;
    let emails: Vec<Contact> = serde_json::from_str(&emails).unwrap_or_default();
    let phones: Vec<Contact> = serde_json::from_str(&phones).unwrap_or_default();
    let Some(email) = emails
        .first()
        .map(|e| crate::accounts::normalise_login(&e.value))
    else {
        return Err(ServiceError::from(Violations::single(
            "/emails",
            "email_required",
            "the person needs an e-mail address to be invited",
        ))
        .into());
    };
    let now = s.now();
    let mut tx = s.db.begin().await?;
    let account = match account {
        Some(a) => AccountId(a),
        None => {
            let existing = crate::accounts::find(&mut tx, &email).await?;
            let a = match existing {
                Some((a, _)) => a,
                None => crate::accounts::create_in(&mut tx, &email, None, now).await?,
            };
            let mobile = phones
                .iter()
                .find(|x| x.kind == "mobile")
                .map(|x| x.value.clone());
            if let Some(m) = mobile.and_then(|m| crate::signin::phone_login(&m)) {
                let taken: Option<Uuid> = run!(&mut tx, c => sqlx::query_scalar("SELECT id FROM accounts WHERE phone = $1").bind(&m).fetch_optional(c).await)?;
                if taken.is_none() {
                    exec!(&mut tx, c => sqlx::query("UPDATE accounts SET phone = $2 WHERE id = $1 AND phone IS NULL").bind(a.0).bind(&m).execute(c).await)?;
                }
            }
            exec!(&mut tx, c => sqlx::query("UPDATE people SET account_id = $3 WHERE id = $1 AND org_id = $2").bind(person).bind(o.id.0).bind(a.0).execute(c).await)?;
            a
        }
    };
    let lang = Lang::pick(language.as_deref(), None);
    crate::account::send_link(
        &mut tx,
        s.base_url(),
        "invite",
        account,
        Some(o.id),
        &email,
        lang,
        now,
    )
    .await?;
    let out = Invitation {
        person_id: person,
        account_id: account.0,
        email,
        expires_at: from_millis(now.as_millisecond() + crate::account::INVITE_TTL_MS),
    };
    audit::record(
        &mut tx,
        o.id,
        &Actor::new(p, Source::Api),
        "person.invite",
        "person",
        &person.to_string(),
        None::<&Invitation>,
        Some(&out),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok((axum::http::StatusCode::CREATED, axum::Json(out)))
}

/// Sign a person out everywhere: ends every session of their account and revokes every token
/// grant (for a lost phone). Returns 204.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/people/{person}/sign-out-everywhere", tag = "identity",
    params(("org" = String, Path, description = "slug or id"), ("person" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn sign_out_everywhere(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, person)): Path<(String, Uuid)>,
) -> Result<axum::http::StatusCode, ApiError> {
    require(&p, &o, Permission::DirectoryWrite)?;
    let (_, _, account, _) = person_row(&s, &o, person).await?;
    let now = s.now();
    let mut tx = s.db.begin().await?;
    match account {
        Some(a) => {
            crate::sessions::revoke_all(&mut tx, AccountId(a), "admin_sign_out", now).await?
        }
        None => {
            exec!(&mut tx, c => sqlx::query("UPDATE token_grants SET revoked_at = $2, revoked_reason = 'admin_sign_out' WHERE person_id = $1 AND revoked_at IS NULL")
                .bind(person).bind(now.as_millisecond()).execute(c).await)?;
        }
    }
    audit::record(
        &mut tx,
        o.id,
        &Actor::new(p, Source::Api),
        "person.sign_out_everywhere",
        "person",
        &person.to_string(),
        None::<&()>,
        None::<&()>,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

fn session_view(l: crate::sessions::Listed) -> SignInSession {
    SignInSession {
        id: l.id,
        user_agent: l.user_agent,
        amr: l.amr,
        created_at: from_millis(l.created_at),
        last_seen_at: from_millis(l.last_seen_at),
        expires_at: from_millis(l.expires_at),
    }
}

/// A person's live sign-in sessions (browser sign-ins of their account), for those who may
/// sign them out everywhere.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/people/{person}/sessions", tag = "identity",
    params(("org" = String, Path, description = "slug or id"), ("person" = Uuid, Path)),
    responses((status = 200, body = Vec<SignInSession>), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn person_sessions(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, person)): Path<(String, Uuid)>,
) -> Result<axum::Json<Vec<SignInSession>>, ApiError> {
    require(&p, &o, Permission::DirectoryWrite)?;
    let (_, _, account, _) = person_row(&s, &o, person).await?;
    let Some(account) = account else {
        return Ok(axum::Json(vec![]));
    };
    let mut c = s.db.read().await?;
    let list = crate::sessions::list(&mut c, AccountId(account), s.now()).await?;
    Ok(axum::Json(list.into_iter().map(session_view).collect()))
}

/// End one sign-in session of a person (and revoke the tokens issued through it); audited.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/people/{person}/sessions/{session}", tag = "identity",
    params(("org" = String, Path, description = "slug or id"), ("person" = Uuid, Path), ("session" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn end_person_session(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, person, session)): Path<(String, Uuid, Uuid)>,
) -> Result<axum::http::StatusCode, ApiError> {
    require(&p, &o, Permission::DirectoryWrite)?;
    let (_, _, account, _) = person_row(&s, &o, person).await?;
    let Some(account) = account else {
        return Err(ServiceError::NotFound { what: "session" }.into());
    };
    let now = s.now();
    let mut tx = s.db.begin().await?;
    if !crate::sessions::revoke(&mut tx, AccountId(account), session, "admin_sign_out", now).await?
    {
        return Err(ServiceError::NotFound { what: "session" }.into());
    }
    audit::record(
        &mut tx,
        o.id,
        &Actor::new(p, Source::Api),
        "person.session.end",
        "person",
        &person.to_string(),
        None::<&()>,
        Some(&serde_json::json!({"session": session})),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

async fn consents_of(s: &AppState, person: PersonId) -> Result<Vec<Consent>, ApiError> {
    let mut c = s.db.read().await?;
    let rows: Vec<(String, String, i64, Option<String>)> = run!(&mut c, c => sqlx::query_as(
        "SELECT c.client_id, c.scopes, c.granted_at, o.name FROM consents c LEFT JOIN oauth_clients o ON o.client_id = c.client_id \
         WHERE c.person_id = $1 ORDER BY c.granted_at DESC")
        .bind(person.0).fetch_all(c).await)?;
    Ok(rows
        .into_iter()
        .map(|(client_id, scopes, at, name)| Consent {
            client_name: name.unwrap_or_else(|| client_id.clone()),
            client_id,
            scopes: scopes
                .split(' ')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect(),
            granted_at: from_millis(at),
        })
        .collect())
}

/// Withdraws a consent and revokes the tokens the app holds for the person.
async fn withdraw(
    s: &AppState,
    actor: &Actor,
    o: &OrgRef,
    person: PersonId,
    client_id: &str,
) -> Result<(), ApiError> {
    let now = s.now();
    let mut tx = s.db.begin().await?;
    let n = exec!(&mut tx, c => sqlx::query("DELETE FROM consents WHERE person_id = $1 AND client_id = $2 AND org_id = $3")
        .bind(person.0).bind(client_id).bind(o.id.0).execute(c).await)?;
    if n == 0 {
        return Err(ServiceError::NotFound { what: "consent" }.into());
    }
    exec!(&mut tx, c => sqlx::query("UPDATE token_grants SET revoked_at = $3, revoked_reason = 'consent_withdrawn' WHERE person_id = $1 AND client_id = $2 AND revoked_at IS NULL")
        .bind(person.0).bind(client_id).bind(now.as_millisecond()).execute(c).await)?;
    audit::record(
        &mut tx,
        o.id,
        actor,
        "consent.withdraw",
        "person",
        &person.0.to_string(),
        Some(&client_id),
        None::<&()>,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The apps a person allowed.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/people/{person}/consents", tag = "identity",
    params(("org" = String, Path, description = "slug or id"), ("person" = Uuid, Path)),
    responses((status = 200, body = Vec<Consent>)), security(("bearer" = [])))]
async fn person_consents(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, person)): Path<(String, Uuid)>,
) -> Result<axum::Json<Vec<Consent>>, ApiError> {
    require(&p, &o, Permission::DirectoryWrite)?;
    person_row(&s, &o, person).await?;
    Ok(axum::Json(consents_of(&s, PersonId(person)).await?))
}

/// Withdraw a person's consent for an app (its tokens for the person are revoked).
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/people/{person}/consents/{client_id}", tag = "identity",
    params(("org" = String, Path, description = "slug or id"), ("person" = Uuid, Path), ("client_id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn revoke_person_consent(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, person, client_id)): Path<(String, Uuid, String)>,
) -> Result<axum::http::StatusCode, ApiError> {
    require(&p, &o, Permission::DirectoryWrite)?;
    person_row(&s, &o, person).await?;
    withdraw(
        &s,
        &Actor::new(p, Source::Api),
        &o,
        PersonId(person),
        &client_id,
    )
    .await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

async fn my_account(
    s: &AppState,
    p: &carebridge_domain::auth::Principal,
    o: &OrgRef,
) -> Result<(PersonId, Option<AccountId>), ApiError> {
    let Some((_, person)) = p.person() else {
        return Err(ServiceError::Forbidden {
            detail: "needs a personal credential".into(),
        }
        .into());
    };
    let (_, _, account, _) = person_row(s, o, person.0).await?;
    Ok((person, account.map(AccountId)))
}

/// My live sign-in sessions.
#[utoipa::path(get, path = "/api/v1/me/sessions", tag = "identity",
    responses((status = 200, body = Vec<SignInSession>)), security(("bearer" = [])))]
async fn my_sessions(
    State(s): State<AppState>,
    Me(p, o): Me,
) -> Result<axum::Json<Vec<SignInSession>>, ApiError> {
    let (_, account) = my_account(&s, &p, &o).await?;
    let Some(account) = account else {
        return Ok(axum::Json(vec![]));
    };
    let mut c = s.db.read().await?;
    let list = crate::sessions::list(&mut c, account, s.now()).await?;
    Ok(axum::Json(list.into_iter().map(session_view).collect()))
}

/// End one of my sessions (and revoke the tokens issued through it).
#[utoipa::path(delete, path = "/api/v1/me/sessions/{session}", tag = "identity",
    params(("session" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn end_my_session(
    State(s): State<AppState>,
    Me(p, o): Me,
    Path(session): Path<Uuid>,
) -> Result<axum::http::StatusCode, ApiError> {
    let (_, account) = my_account(&s, &p, &o).await?;
    let Some(account) = account else {
        return Err(ServiceError::NotFound { what: "session" }.into());
    };
    let mut tx = s.db.begin().await?;
    let found =
        crate::sessions::revoke(&mut tx, account, session, "signed_out_by_person", s.now()).await?;
    if !found {
        return Err(ServiceError::NotFound { what: "session" }.into());
    }
    tx.commit().await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// The apps I allowed.
#[utoipa::path(get, path = "/api/v1/me/consents", tag = "identity",
    responses((status = 200, body = Vec<Consent>)), security(("bearer" = [])))]
async fn my_consents(
    State(s): State<AppState>,
    Me(p, o): Me,
) -> Result<axum::Json<Vec<Consent>>, ApiError> {
    let (person, _) = my_account(&s, &p, &o).await?;
    Ok(axum::Json(consents_of(&s, person).await?))
}

/// Withdraw my consent for an app.
#[utoipa::path(delete, path = "/api/v1/me/consents/{client_id}", tag = "identity",
    params(("client_id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn revoke_my_consent(
    State(s): State<AppState>,
    Me(p, o): Me,
    Path(client_id): Path<String>,
) -> Result<axum::http::StatusCode, ApiError> {
    let (person, _) = my_account(&s, &p, &o).await?;
    withdraw(&s, &Actor::new(p, Source::Api), &o, person, &client_id).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
