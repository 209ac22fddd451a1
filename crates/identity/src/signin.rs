//! Who is signing in: finding the account of a login (e-mail, or a mobile number in
//! international form), checking the password with an exponential lockout, the account's
//! memberships (persons in organisations), a person's claims, and the organisation's
//! second-factor policy.

use carebridge_domain::role::Role;
use carebridge_domain::{AccountId, OrgId, PersonId, Timestamp};
use carebridge_store::{Db, Exec, StoreError, Tx, exec, run, sqlx};
use serde::Deserialize;
use uuid::Uuid;

/// Failures before the first lockout.
pub const LOCK_AFTER: i64 = 5;
/// First lockout; each further failure doubles it …
pub const LOCK_BASE_MS: i64 = 30_000;
/// … up to one hour.
pub const LOCK_MAX_MS: i64 = 3_600_000;

/// Who must use a second factor when the organisation set nothing: administrators, clients
/// and relatives (names are roles or person kinds).
pub const DEFAULT_MFA: &[&str] = &["org_admin", "unit_admin", "client", "relative"];

/// An account found by its login.
#[derive(Clone, Debug)]
pub struct Account {
    pub id: AccountId,
    pub password_hash: Option<String>,
    pub disabled: bool,
    pub failed: i64,
    pub locked_until: Option<i64>,
    pub phone: Option<String>,
    pub totp: bool,
}

/// A mobile number in international form (`+41 79 …`, `0041 79 …`) as E.164; `None` otherwise.
pub fn phone_login(login: &str) -> Option<String> {
    let t: String = login
        .chars()
        .filter(|c| !c.is_whitespace() && !"-()./".contains(*c))
        .collect();
    let t = match t.strip_prefix("00") {
        Some(rest) => format!("+{rest}"),
        None => t,
    };
    if !t.starts_with('+') || t.len() < 8 || !t[1..].chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let n = rlibphonenumber::PHONE_NUMBER_UTIL.parse(&t, None).ok()?;
    n.is_valid().then(|| {
        n.format_as(rlibphonenumber::PhoneNumberFormat::E164)
            .into_owned()
    })
}

/// The account of a login (an e-mail address or an international mobile number).
pub async fn find(db: &Db, login: &str) -> Result<Option<Account>, StoreError> {
    let mut c = db.read().await?;
    let (sql, key) = match phone_login(login) {
        Some(p) if !login.contains('@') => (
            "SELECT id, password_hash, disabled, failed_logins, locked_until, phone, totp_confirmed_at FROM accounts WHERE phone = $1",
            p,
        ),
        _ => (
            "SELECT id, password_hash, disabled, failed_logins, locked_until, phone, totp_confirmed_at FROM accounts WHERE login = $1",
            crate::accounts::normalise_login(login),
        ),
    };
    let r: Option<(
        Uuid,
        Option<String>,
        bool,
        i64,
        Option<i64>,
        Option<String>,
        Option<i64>,
    )> = run!(&mut c, c => sqlx::query_as(sql).bind(&key).fetch_optional(c).await)?;
    Ok(r.map(
        |(id, password_hash, disabled, failed, locked_until, phone, totp)| Account {
            id: AccountId(id),
            password_hash,
            disabled,
            failed,
            locked_until,
            phone,
            totp: totp.is_some(),
        },
    ))
}

/// The account by id.
pub async fn get(x: &mut impl Exec, id: AccountId) -> Result<Option<Account>, StoreError> {
    let r: Option<(
        Uuid,
        Option<String>,
        bool,
        i64,
        Option<i64>,
        Option<String>,
        Option<i64>,
    )> = run!(x, c => sqlx::query_as(
        "SELECT id, password_hash, disabled, failed_logins, locked_until, phone, totp_confirmed_at FROM accounts WHERE id = $1")
        .bind(id.0).fetch_optional(c).await)?;
    Ok(r.map(
        |(id, password_hash, disabled, failed, locked_until, phone, totp)| Account {
            id: AccountId(id),
            password_hash,
            disabled,
            failed,
            locked_until,
            phone,
            totp: totp.is_some(),
        },
    ))
}

/// How long the account stays locked after `failed` consecutive failures.
pub fn lock_for(failed: i64) -> Option<i64> {
    (failed >= LOCK_AFTER).then(|| {
        let doublings = (failed - LOCK_AFTER).min(20) as u32;
        LOCK_BASE_MS
            .saturating_mul(1_i64 << doublings)
            .min(LOCK_MAX_MS)
    })
}

/// Records a failed password: counts it and locks the account when due.
pub async fn failed(tx: &mut Tx, id: AccountId, now: Timestamp) -> Result<(), StoreError> {
    let n: i64 = run!(tx, c => sqlx::query_scalar("UPDATE accounts SET failed_logins = failed_logins + 1 WHERE id = $1 RETURNING failed_logins")
        .bind(id.0).fetch_one(c).await)?;
    if let Some(ms) = lock_for(n) {
        exec!(tx, c => sqlx::query("UPDATE accounts SET locked_until = $2 WHERE id = $1")
            .bind(id.0).bind(now.as_millisecond() + ms).execute(c).await)?;
    }
    Ok(())
}

/// Clears the failure count after a successful sign-in.
pub async fn succeeded(tx: &mut Tx, a: &Account) -> Result<(), StoreError> {
    if a.failed > 0 || a.locked_until.is_some() {
        exec!(tx, c => sqlx::query("UPDATE accounts SET failed_logins = 0, locked_until = NULL WHERE id = $1")
            .bind(a.id.0).execute(c).await)?;
    }
    Ok(())
}

/// A person of the account in one organisation.
#[derive(Clone, Debug)]
pub struct Membership {
    pub person: PersonId,
    pub org: OrgId,
    pub slug: String,
    pub org_name: String,
    pub active: bool,
}

/// Every person of the account, by organisation name.
pub async fn memberships(db: &Db, account: AccountId) -> Result<Vec<Membership>, StoreError> {
    let mut c = db.read().await?;
    let rows: Vec<(Uuid, Uuid, String, String, bool)> = run!(&mut c, c => sqlx::query_as(
        "SELECT p.id, p.org_id, o.slug, o.name, p.active FROM people p JOIN organisations o ON o.id = p.org_id \
         WHERE p.account_id = $1 ORDER BY o.name, o.slug")
        .bind(account.0).fetch_all(c).await)?;
    Ok(rows
        .into_iter()
        .map(|(person, org, slug, org_name, active)| Membership {
            person: PersonId(person),
            org: OrgId(org),
            slug,
            org_name,
            active,
        })
        .collect())
}

#[derive(Deserialize)]
struct Contact {
    value: String,
    #[serde(rename = "type", default)]
    kind: String,
}

/// What the ID token and userinfo may say about a person.
#[derive(Clone, Debug)]
pub struct Claims {
    pub given_name: String,
    pub family_name: String,
    pub language: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub kind: String,
    pub active: bool,
    pub roles: Vec<Role>,
}

/// A person's claims (`None` when the person is not of that organisation).
pub async fn claims(
    x: &mut impl Exec,
    org: OrgId,
    person: PersonId,
) -> Result<Option<Claims>, StoreError> {
    let r: Option<(String, String, Option<String>, String, String, String, bool)> = run!(x, c => sqlx::query_as(
        "SELECT given_name, family_name, language, emails, phones, kind, active FROM people WHERE id = $1 AND org_id = $2")
        .bind(person.0).bind(org.0).fetch_optional(c).await)?;
    let Some((given_name, family_name, language, emails, phones, kind, active)) = r else {
        return Ok(None);
    };
    let roles: Vec<String> = run!(x, c => sqlx::query_scalar("SELECT role FROM role_assignments WHERE org_id = $1 AND person_id = $2")
        .bind(org.0).bind(person.0).fetch_all(c).await)?;
    let emails: Vec<Contact> = serde_json::from_str(&emails).unwrap_or_default();
    let phones: Vec<Contact> = serde_json::from_str(&phones).unwrap_or_default();
    let phone = phones
        .iter()
        .find(|p| p.kind == "mobile")
        .or(phones.first())
        .map(|p| p.value.clone());
    Ok(Some(Claims {
        given_name,
        family_name,
        language,
        email: emails.first().map(|e| e.value.clone()),
        phone,
        kind,
        active,
        roles: roles.iter().filter_map(|r| Role::parse(r)).collect(),
    }))
}

/// A person's role grants (role and the unit path it covers; `None` = organisation-wide), as
/// personal credentials carry them.
pub async fn role_grants(
    x: &mut impl Exec,
    org: OrgId,
    person: PersonId,
) -> Result<Vec<carebridge_domain::auth::RoleGrant>, StoreError> {
    carebridge_store::roles::grants(x, org, person).await
}

/// The organisation's second-factor policy: role or person-kind names.
pub async fn mfa_policy(x: &mut impl Exec, org: OrgId) -> Result<Vec<String>, StoreError> {
    let r: Option<String> = run!(x, c => sqlx::query_scalar("SELECT mfa_roles FROM identity_policies WHERE org_id = $1")
        .bind(org.0).fetch_optional(c).await)?;
    Ok(match r {
        Some(j) => serde_json::from_str(&j).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        None => DEFAULT_MFA.iter().map(|s| s.to_string()).collect(),
    })
}

/// Sets the policy (inside the caller's audited transaction).
pub async fn set_mfa_policy(
    tx: &mut Tx,
    org: OrgId,
    names: &[String],
    now: Timestamp,
) -> Result<(), StoreError> {
    let j = serde_json::to_string(names).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    exec!(tx, c => sqlx::query(
        "INSERT INTO identity_policies (org_id, mfa_roles, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (org_id) DO UPDATE SET mfa_roles = excluded.mfa_roles, updated_at = excluded.updated_at")
        .bind(org.0).bind(&j).bind(now.as_millisecond()).execute(c).await)?;
    Ok(())
}

/// Whether the policy asks this person for a second factor.
pub fn mfa_required(policy: &[String], claims: &Claims) -> bool {
    policy
        .iter()
        .any(|n| *n == claims.kind || claims.roles.iter().any(|r| r.as_str() == n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockout_doubles_from_the_fifth_failure_up_to_an_hour() {
        assert_eq!(lock_for(4), None);
        assert_eq!(lock_for(5), Some(30_000));
        assert_eq!(lock_for(6), Some(60_000));
        assert_eq!(lock_for(8), Some(240_000));
        assert_eq!(lock_for(40), Some(LOCK_MAX_MS));
    }

    #[test]
    fn phone_logins_need_the_international_form() {
        assert_eq!(
            phone_login("+41 79 123 45 67").as_deref(),
            Some("+41791234567")
        );
        assert_eq!(
            phone_login("0041 79 123 45 67").as_deref(),
            Some("+41791234567")
        );
        assert_eq!(phone_login("079 123 45 67"), None);
        assert_eq!(phone_login("anna@example.org"), None);
        assert_eq!(phone_login("+1"), None);
    }

    #[test]
    fn policy_matches_roles_and_kinds() {
        let c = |kind: &str, roles: Vec<Role>| Claims {
            given_name: "A".into(),
            family_name: "B".into(),
            language: None,
            email: None,
            phone: None,
            kind: kind.into(),
            active: true,
            roles,
        };
        let p: Vec<String> = DEFAULT_MFA.iter().map(|s| s.to_string()).collect();
        assert!(mfa_required(&p, &c("staff", vec![Role::OrgAdmin])));
        assert!(mfa_required(&p, &c("client", vec![])));
        assert!(!mfa_required(&p, &c("volunteer", vec![Role::Member])));
        assert!(!mfa_required(&[], &c("client", vec![Role::OrgAdmin])));
    }
}
