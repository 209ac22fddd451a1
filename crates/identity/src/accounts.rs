//! Accounts and passwords.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use carebridge_domain::{AccountId, Timestamp, Violations};
use carebridge_store::{Exec, StoreError, Tx, exec, run, sqlx};
use carebridge_web::ServiceError;

/// Minimum password length (NIST SP 800-63B asks for at least 8; we ask 12).
pub const MIN_PASSWORD: usize = 12;

/// Checks a new password's length (in characters) without echoing it.
pub fn check_password(pointer: &str, pw: &str) -> Result<(), Violations> {
    let n = pw.chars().count();
    if n < MIN_PASSWORD {
        return Err(Violations::single(
            pointer,
            "password_too_short",
            format!("a password needs at least {MIN_PASSWORD} characters"),
        ));
    }
    if n > 1024 {
        return Err(Violations::single(
            pointer,
            "password_too_long",
            "a password has at most 1024 characters",
        ));
    }
    Ok(())
}

/// Argon2id with OWASP parameters (m=19456 KiB, t=2, p=1), on the blocking pool.
pub async fn hash_password(pw: String) -> Result<String, ServiceError> {
    tokio::task::spawn_blocking(move || {
        let salt =
            SaltString::encode_b64(&crate::random_bytes::<16>()).map_err(|e| e.to_string())?;
        Argon2::default()
            .hash_password(pw.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| ServiceError::Store(StoreError::Corrupt(format!("hashing task failed: {e}"))))?
    .map_err(|e| ServiceError::Store(StoreError::Corrupt(format!("hashing failed: {e}"))))
}

/// Verifies a password against a stored hash, on the blocking pool.
pub async fn verify_password(pw: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .is_ok_and(|h| Argon2::default().verify_password(pw.as_bytes(), &h).is_ok())
    })
    .await
    .unwrap_or(false)
}

/// Normalises a login (an e-mail address: lower-cased).
pub fn normalise_login(login: &str) -> String {
    login.trim().to_lowercase()
}

/// Creates an account; the login must be unused.
pub async fn create_in(
    tx: &mut Tx,
    login: &str,
    password_hash: Option<&str>,
    now: Timestamp,
) -> Result<AccountId, ServiceError> {
    let login = normalise_login(login);
    if find(tx, &login).await?.is_some() {
        return Err(Violations::single(
            "/login",
            "login_taken",
            "an account with this login already exists",
        )
        .into());
    }
    let id = AccountId::generate(now);
    exec!(tx, c => sqlx::query("INSERT INTO accounts (id, login, password_hash, disabled, created_at, updated_at) VALUES ($1, $2, $3, FALSE, $4, $4)")
        .bind(id.0).bind(&login).bind(password_hash).bind(now.as_millisecond()).execute(c).await)?;
    Ok(id)
}

/// The account id and password hash of a login.
pub async fn find(
    x: &mut impl Exec,
    login: &str,
) -> Result<Option<(AccountId, Option<String>)>, StoreError> {
    let r: Option<(uuid::Uuid, Option<String>)> = run!(x, c => sqlx::query_as("SELECT id, password_hash FROM accounts WHERE login = $1")
        .bind(normalise_login(login)).fetch_optional(c).await)?;
    Ok(r.map(|(id, h)| (AccountId(id), h)))
}
