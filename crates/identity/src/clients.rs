//! OAuth clients: registered per organisation by an admin (API or CLI). `client_id` is
//! `cbc_<uuid>`; a confidential client's secret is 256 random bits, shown once, stored as a
//! SHA-256 digest and compared in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carebridge_domain::auth::Actor;
use carebridge_domain::oauth::check_client;
use carebridge_domain::time::from_millis;
use carebridge_domain::{OrgId, Timestamp};
use carebridge_proto::Page;
use carebridge_proto::identity::{CreateOAuthClient, CreatedOAuthClient, OAuthClient};
use carebridge_store::orgs::OrgRef;
use carebridge_store::{Db, Exec, StoreError, Tx, audit, exec, run, sqlx};
use carebridge_web::idem::{self, Idem, Outcome};
use carebridge_web::{CursorKey, ServiceError};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

type Row = (
    Uuid,
    String,
    String,
    bool,
    String,
    String,
    String,
    bool,
    String,
    i64,
    Option<i64>,
);
const COLS: &str = "id, client_id, name, public, redirect_uris, scopes, grants, first_party, created_by, created_at, revoked_at";

fn list_of(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

fn client(r: Row) -> OAuthClient {
    OAuthClient {
        id: r.0,
        client_id: r.1,
        name: r.2,
        public: r.3,
        redirect_uris: list_of(&r.4),
        scopes: list_of(&r.5),
        grants: list_of(&r.6),
        first_party: r.7,
        created_by: r.8,
        created_at: from_millis(r.9),
        revoked_at: r.10.map(from_millis),
    }
}

fn json(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// Registers a client inside `tx`.
pub async fn create_in(
    tx: &mut Tx,
    actor: &Actor,
    org: OrgId,
    input: &CreateOAuthClient,
    now: Timestamp,
) -> Result<CreatedOAuthClient, ServiceError> {
    let d = check_client(
        &input.name,
        input.public,
        &input.redirect_uris,
        &input.scopes,
        &input.grants,
        input.first_party,
    )?;
    let id = carebridge_domain::ids::new_v7(now);
    let client_id = format!("cbc_{}", id.simple());
    let secret = (!d.public).then(crate::random_bytes::<32>);
    let digest: Option<Vec<u8>> = secret.map(|s| Sha256::digest(s).to_vec());
    let created_by = actor.principal.audit_label();
    exec!(tx, c => sqlx::query(
        "INSERT INTO oauth_clients (id, org_id, client_id, name, public, secret_digest, redirect_uris, scopes, grants, first_party, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)")
        .bind(id).bind(org.0).bind(&client_id).bind(&d.name).bind(d.public).bind(&digest)
        .bind(json(&d.redirect_uris)).bind(json(&d.scopes)).bind(json(&d.grants)).bind(d.first_party)
        .bind(&created_by).bind(now.as_millisecond()).execute(c).await)?;
    let c = OAuthClient {
        id,
        client_id,
        name: d.name,
        public: d.public,
        redirect_uris: d.redirect_uris,
        scopes: d.scopes,
        grants: d.grants,
        first_party: d.first_party,
        created_by,
        created_at: now,
        revoked_at: None,
    };
    audit::record(
        tx,
        org,
        actor,
        "oauth_client.create",
        "oauth_client",
        &id.to_string(),
        None::<&OAuthClient>,
        Some(&c),
        now,
    )
    .await?;
    Ok(CreatedOAuthClient {
        client: c,
        client_secret: secret.map(|s| URL_SAFE_NO_PAD.encode(s)),
    })
}

/// `POST /orgs/{org}/oauth-clients`; an idempotent retry gets the client without its secret.
pub async fn create(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    input: CreateOAuthClient,
    idem: Option<Idem>,
    now: Timestamp,
) -> Result<Outcome<CreatedOAuthClient>, ServiceError> {
    let mut tx = db.begin().await?;
    if let Some(stored) = idem::replay(&mut tx, idem.as_ref()).await? {
        return Ok(Outcome::Replayed(stored));
    }
    let created = create_in(&mut tx, actor, org.id, &input, now).await?;
    let redacted = CreatedOAuthClient {
        client: created.client.clone(),
        client_secret: None,
    };
    idem::save(&mut tx, idem.as_ref(), &redacted, now.as_millisecond()).await?;
    tx.commit().await?;
    Ok(Outcome::Fresh(created))
}

async fn get_in(
    x: &mut impl Exec,
    org: OrgId,
    id: Uuid,
) -> Result<Option<OAuthClient>, StoreError> {
    let sql = format!("SELECT {COLS} FROM oauth_clients WHERE org_id = $1 AND id = $2");
    let r: Option<Row> =
        run!(x, c => sqlx::query_as(&sql).bind(org.0).bind(id).fetch_optional(c).await)?;
    Ok(r.map(client))
}

pub async fn get(db: &Db, org: &OrgRef, id: Uuid) -> Result<OAuthClient, ServiceError> {
    let mut c = db.read().await?;
    get_in(&mut c, org.id, id)
        .await?
        .ok_or(ServiceError::NotFound {
            what: "OAuth client",
        })
}

pub async fn list(
    db: &Db,
    org: &OrgRef,
    cursor: &CursorKey,
    after: Option<&str>,
    limit: i64,
) -> Result<Page<OAuthClient>, ServiceError> {
    let after: Option<Uuid> = cursor.decode_opt("oauth-clients", after)?;
    let mut c = db.read().await?;
    let sql = format!(
        "SELECT {COLS} FROM oauth_clients WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3"
    );
    let rows: Vec<Row> = run!(&mut c, c => sqlx::query_as(&sql).bind(org.id.0).bind(after.unwrap_or(Uuid::nil())).bind(limit + 1).fetch_all(c).await)?;
    let items: Vec<OAuthClient> = rows.into_iter().map(client).collect();
    Ok(cursor.page("oauth-clients", items, limit, |c| c.id))
}

/// Revokes a client at once (its tokens stop passing introspection); idempotent.
pub async fn revoke(
    db: &Db,
    actor: &Actor,
    org: &OrgRef,
    id: Uuid,
    now: Timestamp,
) -> Result<OAuthClient, ServiceError> {
    let mut tx = db.begin().await?;
    let before = get_in(&mut tx, org.id, id)
        .await?
        .ok_or(ServiceError::NotFound {
            what: "OAuth client",
        })?;
    if before.revoked_at.is_some() {
        return Ok(before);
    }
    exec!(&mut tx, c => sqlx::query("UPDATE oauth_clients SET revoked_at = $3 WHERE org_id = $1 AND id = $2")
        .bind(org.id.0).bind(id).bind(now.as_millisecond()).execute(c).await)?;
    let mut after = before.clone();
    after.revoked_at = Some(now);
    audit::record(
        &mut tx,
        org.id,
        actor,
        "oauth_client.revoke",
        "oauth_client",
        &id.to_string(),
        Some(&before),
        Some(&after),
        now,
    )
    .await?;
    tx.commit().await?;
    // After the commit, so a concurrent token request cannot cache the old row again.
    forget(&before.client_id);
    Ok(after)
}

/// A registered (or built-in) client as the OAuth endpoints see it.
#[derive(Clone, Debug)]
pub struct Client {
    /// The organisation the client belongs to; `None` for Carebridge's own apps, which sign in
    /// members of any organisation (the person picks one).
    pub org: Option<OrgId>,
    pub client_id: String,
    pub name: String,
    pub public: bool,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub grants: Vec<String>,
    pub first_party: bool,
}

impl Client {
    pub fn may(&self, grant: &str) -> bool {
        self.grants.iter().any(|g| g == grant)
    }
}

/// The member CLI (device flow).
pub const CLI: &str = carebridge_domain::oauth::CLI_CLIENT;
/// The member and client web app (code + PKCE, redirect to `/app/callback`).
pub const APP: &str = carebridge_domain::oauth::APP_CLIENT;
/// The admin console (code + PKCE, redirect to `/console/callback`).
pub const CONSOLE: &str = carebridge_domain::oauth::CONSOLE_CLIENT;

/// Carebridge's own apps: public, first-party clients of every organisation.
pub fn builtin(client_id: &str, base: &str) -> Option<Client> {
    let all: Vec<String> = carebridge_domain::oauth::SCOPES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let (name, grants, redirect): (&str, &[&str], Option<&str>) = match client_id {
        CLI => (
            "Carebridge CLI",
            &[
                "urn:ietf:params:oauth:grant-type:device_code",
                "refresh_token",
            ],
            None,
        ),
        APP => (
            "Carebridge",
            &["authorization_code", "refresh_token"],
            Some("/app/callback"),
        ),
        CONSOLE => (
            "Carebridge Console",
            &["authorization_code", "refresh_token"],
            Some("/console/callback"),
        ),
        _ => return None,
    };
    Some(Client {
        org: None,
        client_id: client_id.to_string(),
        name: name.to_string(),
        public: true,
        redirect_uris: redirect
            .map(|r| vec![format!("{base}{r}")])
            .unwrap_or_default(),
        scopes: if client_id == CONSOLE {
            let mut s = all;
            s.push(carebridge_domain::oauth::CONSOLE_SCOPE.to_string());
            s
        } else {
            all
        },
        grants: grants.iter().map(|g| g.to_string()).collect(),
        first_party: true,
    })
}

/// Live clients as the OAuth endpoints last read them, by `client_id` (globally unique, so one
/// cache serves every server in the process), with the secret digest of confidential ones. An
/// entry lives [`CLIENT_TTL`]; revoking through this process drops it at once, another node's
/// revocation is seen within the TTL for new tokens (introspection and API calls always check
/// the database).
static CLIENTS: LazyLock<Mutex<HashMap<String, (Option<Vec<u8>>, Client, Instant)>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
const CLIENT_TTL: Duration = Duration::from_secs(5);

fn cached(client_id: &str) -> Option<(Option<Vec<u8>>, Client)> {
    let map = CLIENTS.lock().ok()?;
    let (d, a, at) = map.get(client_id)?;
    (at.elapsed() < CLIENT_TTL).then(|| (d.clone(), a.clone()))
}

fn forget(client_id: &str) {
    if let Ok(mut map) = CLIENTS.lock() {
        map.remove(client_id);
    }
}

/// A live client and its secret digest; `None` for unknown or revoked ones.
async fn load(
    db: &Db,
    client_id: &str,
    base: &str,
) -> Result<Option<(Option<Vec<u8>>, Client)>, StoreError> {
    if let Some(c) = builtin(client_id, base) {
        return Ok(Some((None, c)));
    }
    if let Some(hit) = cached(client_id) {
        return Ok(Some(hit));
    }
    let mut c = db.read().await?;
    type Full = (
        Uuid,
        String,
        String,
        bool,
        String,
        String,
        String,
        bool,
        String,
        i64,
        Option<i64>,
        Option<Vec<u8>>,
        Uuid,
    );
    let row: Option<Full> = run!(&mut c, c => sqlx::query_as(&format!("SELECT {COLS}, secret_digest, org_id FROM oauth_clients WHERE client_id = $1"))
        .bind(client_id).fetch_optional(c).await)?;
    let Some(r) = row else {
        return Ok(None);
    };
    if r.10.is_some() {
        return Ok(None);
    }
    let (digest, org) = (r.11.clone(), r.12);
    let o = client((r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8, r.9, r.10));
    let a = Client {
        org: Some(OrgId(org)),
        client_id: o.client_id,
        name: o.name,
        public: o.public,
        redirect_uris: o.redirect_uris,
        scopes: o.scopes,
        grants: o.grants,
        first_party: o.first_party,
    };
    if let Ok(mut map) = CLIENTS.lock() {
        if map.len() > 10_000 {
            map.clear();
        }
        map.insert(
            client_id.to_string(),
            (digest.clone(), a.clone(), Instant::now()),
        );
    }
    Ok(Some((digest, a)))
}

/// A live client by id (for the authorization endpoint and public clients at the token
/// endpoint); `None` for unknown or revoked ones.
pub async fn lookup(db: &Db, client_id: &str, base: &str) -> Result<Option<Client>, StoreError> {
    Ok(load(db, client_id, base).await?.map(|(_, c)| c))
}

/// Authenticates a confidential client by id and secret; `None` for anything else (unknown,
/// revoked, public, wrong secret), without saying which.
pub async fn authenticate(
    db: &Db,
    client_id: &str,
    secret: &str,
    base: &str,
) -> Result<Option<Client>, StoreError> {
    let Ok(presented) = URL_SAFE_NO_PAD.decode(secret) else {
        return Ok(None);
    };
    let digest = Sha256::digest(&presented);
    let Some((Some(stored), client)) = load(db, client_id, base).await? else {
        return Ok(None);
    };
    if !bool::from(stored.as_slice().ct_eq(&digest[..])) {
        return Ok(None);
    }
    Ok(Some(client))
}

/// Whether a client id belongs to a live (not revoked) client.
pub async fn live(db: &Db, client_id: &str) -> Result<bool, StoreError> {
    if builtin(client_id, "").is_some() {
        return Ok(true);
    }
    let mut c = db.read().await?;
    let r: Option<Option<i64>> = run!(&mut c, c => sqlx::query_scalar(
        "SELECT revoked_at FROM oauth_clients WHERE client_id = $1")
        .bind(client_id).fetch_optional(c).await)?;
    Ok(matches!(r, Some(None)))
}

/// Whether `grant` is a grant type this server knows.
pub fn known_grant(grant: &str) -> bool {
    carebridge_domain::oauth::GRANTS.contains(&grant)
}
