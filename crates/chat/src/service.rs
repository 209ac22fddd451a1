//! Chat rules: devices and their KeyPackages, the group of a duty, the ordered stream of each
//! group, membership that follows the roster, and retention. Every path (HTTP, WebSocket,
//! worker) goes through here.
//!
//! Ordering: every change of a group happens in one transaction that first takes the group's
//! lock ([`repo::lock_group`]); the epoch check, the commit's validation against the roster,
//! the new public state, the appended messages and the server's follow-up proposals commit
//! together. Delivery to sockets happens after the commit.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use carebridge_domain::Violations;
use carebridge_domain::auth::{Principal, Via};
use carebridge_domain::chat::{MAX_DAYS, Phase, Retention};
use carebridge_domain::oauth::{APP_CLIENT, CLI_CLIENT};
use carebridge_proto::chat as wire;
use carebridge_store::{Db, StoreError, Tx};
use carebridge_web::ServiceError;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::Chat;
use crate::mls::{self, Incoming};
use crate::repo::{self, DeviceRow, MessageRow};

/// Most chat devices a person may have.
pub const MAX_DEVICES: usize = 20;
/// Most one-time KeyPackages a device may keep on the server.
pub const MAX_KEY_PACKAGES: i64 = 200;
/// Largest MLS message accepted (application messages carry text; attachments travel apart).
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Largest Welcome or GroupInfo accepted (a Welcome with the tree of a 500-member group is
/// ~170 KB; base64 in a JSON body must stay under the 1 MiB body limit).
pub const MAX_HANDSHAKE: usize = 700 * 1024;

/// What a transaction produced for the sockets: appended messages `(duty, seq)` to read back,
/// appended messages whose rows are in hand, and groups that are gone for some devices
/// `(duty, devices)`.
#[derive(Default)]
pub(crate) struct Out {
    msgs: Vec<(Uuid, i64)>,
    /// Messages whose rows are in hand (no need to read them back).
    rows: Vec<(Uuid, MessageRow)>,
    gone: Vec<(Uuid, Vec<Uuid>)>,
}

impl Out {
    fn extend(&mut self, o: Out) {
        self.msgs.extend(o.msgs);
        self.rows.extend(o.rows);
        self.gone.extend(o.gone);
    }
}

/// The device behind a request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub device: Uuid,
    pub org: Uuid,
    pub person: Uuid,
}

/// The credential identity a device must use in MLS.
pub fn identity_of(device: Uuid) -> String {
    format!("device:{device}")
}

fn ms(t: jiff::Timestamp) -> i64 {
    t.as_millisecond()
}

fn ts(ms: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

fn invalid(pointer: &str, code: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid(Violations::single(pointer, code, message))
}

fn conflict(code: &'static str, detail: impl Into<String>) -> ServiceError {
    ServiceError::Conflict {
        code,
        detail: detail.into(),
    }
}

fn forbidden(detail: impl Into<String>) -> ServiceError {
    ServiceError::Forbidden {
        detail: detail.into(),
    }
}

fn b64(pointer: &str, s: &str, max: usize) -> Result<Vec<u8>, ServiceError> {
    if s.len() > max.div_ceil(3) * 4 + 4 {
        return Err(invalid(
            pointer,
            "too_large",
            format!("at most {max} bytes are accepted here"),
        ));
    }
    STANDARD.decode(s.trim()).map_err(|e| {
        invalid(
            pointer,
            "invalid_base64",
            format!("not standard base64: {e}"),
        )
    })
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

// ---- devices ----------------------------------------------------------------------------------

/// Resolves a device credential (`cbd_…`). `None` when unknown, removed, or its person is no
/// longer active.
pub async fn authenticate(db: &Db, token: &str, now: i64) -> Result<Option<Caller>, ServiceError> {
    if !token.starts_with("cbd_") || token.len() > 100 {
        return Ok(None);
    }
    let mut c = db.read().await?;
    let Some(d) = repo::device_by_token(&mut c, &token_hash(token)).await? else {
        return Ok(None);
    };
    drop(c);
    // Remember when the device was last seen, at most once a minute (a write per request
    // would cost the single SQLite writer).
    if d.last_seen_at.is_none_or(|t| now - t > 60_000) {
        let mut w = db.write().await?;
        repo::touch_device(&mut w, d.id, now).await?;
    }
    Ok(Some(Caller {
        device: d.id,
        org: d.org_id,
        person: d.person_id,
    }))
}

/// Device credentials this process resolved lately, for the message hot path: token digest →
/// the caller and when the credential was last checked in full ([`authenticate`]). A token
/// always names the same device, so the entry cannot name a wrong one; whether the device is
/// still registered and its person active is checked again inside every message's
/// transaction (`PostContext::device_ok`), so a removal takes effect at once on every node.
#[derive(Default)]
pub struct Callers(std::sync::Mutex<std::collections::HashMap<Vec<u8>, (Caller, i64)>>);

/// How long a cached credential is used before the next full check (which also records the
/// device as seen).
const CALLER_RECHECK_MS: i64 = 60_000;
/// Credentials kept at most (the map is emptied when full).
const CALLERS_MAX: usize = 50_000;

impl Callers {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Vec<u8>, (Caller, i64)>> {
        // Entries are whole values: a poisoned map is still consistent.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets a device's credential (it was removed through this process).
    pub fn forget(&self, device: Uuid) {
        self.lock().retain(|_, (c, _)| c.device != device);
    }
}

/// [`authenticate`] through [`Callers`]: only for calls whose transaction checks the device
/// again (posting messages).
pub async fn authenticate_posting(
    db: &Db,
    callers: &Callers,
    token: &str,
    now: i64,
) -> Result<Option<Caller>, ServiceError> {
    if !token.starts_with("cbd_") || token.len() > 100 {
        return Ok(None);
    }
    let key = token_hash(token);
    if let Some((c, at)) = callers.lock().get(&key)
        && (0..CALLER_RECHECK_MS).contains(&(now - at))
    {
        return Ok(Some(c.clone()));
    }
    let found = authenticate(db, token, now).await?;
    let mut map = callers.lock();
    match &found {
        Some(c) => {
            if map.len() >= CALLERS_MAX {
                map.clear();
            }
            map.insert(key, (c.clone(), now));
        }
        None => {
            map.remove(&key);
        }
    }
    Ok(found)
}

async fn device_view(db: &Db, d: DeviceRow) -> Result<wire::Device, ServiceError> {
    let mut c = db.read().await?;
    let (n, _) = repo::stock(&mut c, d.id).await?;
    Ok(wire::Device {
        id: d.id,
        person_id: d.person_id,
        name: d.name,
        signature_key: STANDARD.encode(&d.signature_key),
        identity: identity_of(d.id),
        key_packages: n,
        created_at: ts(d.created_at),
        last_seen_at: d.last_seen_at.map(ts),
    })
}

/// Who may add a device to a person's end-to-end encrypted chats: the person with a personal
/// key, or signed in through Carebridge's own apps (CLI, app) with the `chat` scope. A
/// third-party app's token, with whatever scopes, may not: a device it registered would read
/// every chat of the person.
pub fn may_register(p: &Principal) -> bool {
    match p {
        Principal::Person {
            via: Via::ApiKey(_),
            ..
        } => true,
        Principal::Person {
            via:
                Via::Token {
                    client_id,
                    oauth_scopes,
                    ..
                },
            ..
        } => {
            (client_id == CLI_CLIENT || client_id == APP_CLIENT)
                && oauth_scopes.iter().any(|s| s == "chat")
        }
        _ => false,
    }
}

/// A signed-in person registers a device. The token is returned once.
pub async fn register(
    db: &Db,
    org: Uuid,
    person: Uuid,
    input: wire::RegisterDevice,
    now: jiff::Timestamp,
) -> Result<wire::RegisteredDevice, ServiceError> {
    let mut v = Violations::new();
    let name = input.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 100 {
        v.push("/name", "invalid_length", "1 to 100 characters");
    }
    let key = match STANDARD.decode(input.signature_key.trim()) {
        Ok(k) if k.len() == 32 => k,
        Ok(_) => {
            v.push(
                "/signature_key",
                "invalid_key",
                "an Ed25519 public key is 32 bytes",
            );
            Vec::new()
        }
        Err(e) => {
            v.push(
                "/signature_key",
                "invalid_base64",
                format!("not standard base64: {e}"),
            );
            Vec::new()
        }
    };
    if !v.is_empty() {
        return Err(ServiceError::Invalid(v));
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)
        .map_err(|e| ServiceError::Store(StoreError::Corrupt(format!("no randomness: {e}"))))?;
    let token = format!("cbd_{}", URL_SAFE_NO_PAD.encode(secret));
    let id = carebridge_domain::ids::new_v7(now);
    let mut tx = db.begin().await?;
    // Every device is added to every chat of the person: keep the number sane.
    if repo::devices_of(&mut tx, org, person).await?.len() >= MAX_DEVICES {
        return Err(conflict(
            "too_many_devices",
            format!("a person has at most {MAX_DEVICES} chat devices; remove one first"),
        ));
    }
    match repo::insert_device(
        &mut tx,
        id,
        org,
        person,
        &name,
        &key,
        &token_hash(&token),
        ms(now),
    )
    .await
    {
        Err(StoreError::Unique { .. }) => {
            return Err(conflict(
                "key_in_use",
                "this signature key belongs to another device; make a new key for each device",
            ));
        }
        r => r?,
    }
    tx.commit().await?;
    let mut c = db.read().await?;
    let d = repo::device_by_id(&mut c, org, id)
        .await?
        .ok_or(ServiceError::NotFound { what: "device" })?;
    drop(c);
    Ok(wire::RegisteredDevice {
        device: device_view(db, d).await?,
        token,
    })
}

/// The devices of a person.
pub async fn devices(db: &Db, org: Uuid, person: Uuid) -> Result<Vec<wire::Device>, ServiceError> {
    let mut c = db.read().await?;
    let rows = repo::devices_of(&mut c, org, person).await?;
    drop(c);
    let mut out = Vec::with_capacity(rows.len());
    for d in rows {
        out.push(device_view(db, d).await?);
    }
    Ok(out)
}

/// Whether `actor` may see and remove the chat devices of `person`: directory write over the
/// whole organisation or over a unit the person belongs to. A person out of reach, or none,
/// is 404.
pub async fn may_manage_devices_of(
    db: &Db,
    actor: &Principal,
    org: carebridge_domain::OrgId,
    person: Uuid,
) -> Result<(), ServiceError> {
    let not_found = ServiceError::NotFound { what: "person" };
    let mut c = db.read().await?;
    let Some(paths) = repo::person_unit_paths(&mut c, org.0, person).await? else {
        return Err(not_found);
    };
    match actor.reach(org, carebridge_domain::auth::Permission::DirectoryWrite) {
        carebridge_domain::auth::Reach::All => Ok(()),
        r @ carebridge_domain::auth::Reach::Units(_) if paths.iter().any(|p| r.covers(p)) => Ok(()),
        carebridge_domain::auth::Reach::Units(_) => Err(not_found),
        carebridge_domain::auth::Reach::Nothing => Err(ServiceError::Forbidden {
            detail: "managing a person's chat devices needs directory:write over them".into(),
        }),
    }
}

/// Removes a device of `person`: its KeyPackages go, and the server proposes its removal from
/// every group it was in; its sockets are closed at once. An administrator's removal (`by`)
/// is audited as `chat.device.remove` in the same transaction.
pub async fn remove_device(
    db: &Db,
    chat: &Chat,
    org: Uuid,
    person: Uuid,
    device: Uuid,
    by: Option<&carebridge_domain::auth::Actor>,
    now: jiff::Timestamp,
) -> Result<(), ServiceError> {
    let mut tx = db.begin().await?;
    let d = repo::device_by_id(&mut tx, org, device)
        .await?
        .filter(|d| d.person_id == person)
        .ok_or(ServiceError::NotFound { what: "device" })?;
    if let Some(actor) = by {
        carebridge_store::audit::record(
            &mut tx,
            carebridge_domain::OrgId(org),
            actor,
            "chat.device.remove",
            "person",
            &person.to_string(),
            Some(&serde_json::json!({"device": d.id, "name": d.name})),
            None::<&serde_json::Value>,
            now,
        )
        .await?;
    }
    let mut duties = repo::delete_device(&mut tx, org, d.id).await?;
    // Locks in one order everywhere (PostgreSQL deadlocks otherwise).
    duties.sort();
    let mut out = Out::default();
    for duty in duties {
        repo::lock_group(&mut tx, duty).await?;
        out.extend(reconcile(&mut tx, duty, ms(now)).await?);
    }
    tx.commit().await?;
    chat.callers.forget(device);
    chat.hub.close(device);
    deliver(db, chat, out).await;
    Ok(())
}

/// Stores KeyPackages of the calling device after checking that each is valid, for suite 1,
/// and names this device with its registered key.
pub async fn upload_key_packages(
    db: &Db,
    chat: &Chat,
    caller: &Caller,
    input: wire::UploadKeyPackages,
    now: jiff::Timestamp,
) -> Result<wire::KeyPackageStock, ServiceError> {
    if input.key_packages.len() > 100 {
        return Err(invalid(
            "/key_packages",
            "too_many",
            "at most 100 KeyPackages per request",
        ));
    }
    let mut c = db.read().await?;
    let d = repo::device_by_id(&mut c, caller.org, caller.device)
        .await?
        .ok_or(ServiceError::NotFound { what: "device" })?;
    drop(c);
    let ident = identity_of(d.id);
    let check = |pointer: String, s: &str| -> Result<Vec<u8>, ServiceError> {
        let bytes = b64(&pointer, s, 16 * 1024)?;
        let kp = mls::check_key_package(&bytes)
            .map_err(|e| invalid(&pointer, "invalid_key_package", e.to_string()))?;
        if kp.identity != ident.as_bytes() {
            return Err(invalid(
                &pointer,
                "foreign_identity",
                format!("the KeyPackage's credential must be the identity '{ident}'"),
            ));
        }
        if kp.signature_key != d.signature_key {
            return Err(invalid(
                &pointer,
                "foreign_key",
                "the KeyPackage is signed with another key than this device's registered one",
            ));
        }
        Ok(kp.bytes)
    };
    let mut one_time = Vec::with_capacity(input.key_packages.len());
    for (i, s) in input.key_packages.iter().enumerate() {
        one_time.push(check(format!("/key_packages/{i}"), s)?);
    }
    let last = match &input.last_resort {
        Some(s) => Some(check("/last_resort".into(), s)?),
        None => None,
    };
    let mut tx = db.begin().await?;
    let (have, _) = repo::stock(&mut tx, d.id).await?;
    if have + one_time.len() as i64 > MAX_KEY_PACKAGES {
        return Err(conflict(
            "too_many_key_packages",
            format!(
                "the server keeps at most {MAX_KEY_PACKAGES} KeyPackages per device ({have} stored)"
            ),
        ));
    }
    for kp in &one_time {
        repo::insert_key_package(&mut tx, caller.org, d.id, kp, false, ms(now)).await?;
    }
    if let Some(kp) = &last {
        repo::drop_last_resort(&mut tx, d.id).await?;
        repo::insert_key_package(&mut tx, caller.org, d.id, kp, true, ms(now)).await?;
    }
    // A device of a rostered person that was waiting for KeyPackages can be added now.
    let mut out = Out::default();
    let mut duties = repo::duties_of(&mut tx, caller.org, caller.person).await?;
    duties.sort();
    for duty in duties {
        repo::lock_group(&mut tx, duty).await?;
        out.extend(reconcile(&mut tx, duty, ms(now)).await?);
    }
    let (available, last_resort) = repo::stock(&mut tx, d.id).await?;
    tx.commit().await?;
    deliver(db, chat, out).await;
    Ok(wire::KeyPackageStock {
        available,
        last_resort,
    })
}

// ---- server key -------------------------------------------------------------------------------

/// The organisation's external-sender key, made on first use.
async fn server_key(x: &mut Tx, org: Uuid, now: i64) -> Result<mls::ServerKey, ServiceError> {
    if let Some((public, private)) = repo::server_key(x, org).await? {
        return mls::ServerKey::from_parts(public, private).map_err(corrupt);
    }
    let k = mls::ServerKey::generate().map_err(corrupt)?;
    repo::insert_server_key(x, org, k.public(), k.private(), now).await?;
    let (public, private) = repo::server_key(x, org)
        .await?
        .ok_or_else(|| corrupt("server key vanished"))?;
    mls::ServerKey::from_parts(public, private).map_err(corrupt)
}

fn corrupt(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Store(StoreError::Corrupt(e.to_string()))
}

// ---- groups -----------------------------------------------------------------------------------

struct Standing {
    roster: repo::RosterRow,
    retention: Retention,
    phase: Phase,
}

async fn standing(
    x: &mut impl carebridge_store::Exec,
    duty: Uuid,
    org: Uuid,
    now: i64,
) -> Result<Standing, ServiceError> {
    let roster = repo::roster(x, duty)
        .await?
        .filter(|r| r.org_id == org && r.chat)
        .ok_or(ServiceError::NotFound { what: "chat" })?;
    let retention = repo::retention(x, org).await?;
    let phase = if roster.deleted {
        Phase::Deleted
    } else {
        retention.phase(roster.ends_at, roster.cancelled, now)
    };
    if phase == Phase::Deleted {
        return Err(ServiceError::NotFound { what: "chat" });
    }
    Ok(Standing {
        roster,
        retention,
        phase,
    })
}

/// The chats of the caller's person: duties with the chat on that they are rostered on.
/// Reading only: the group heads come without their state, on a read connection.
pub async fn groups(
    db: &Db,
    caller: &Caller,
    now: jiff::Timestamp,
) -> Result<Vec<wire::ChatGroup>, ServiceError> {
    let key = server_public(db, caller.org, ms(now)).await?;
    let mut c = db.read().await?;
    let duties = repo::duties_of(&mut c, caller.org, caller.person).await?;
    let mut out = Vec::with_capacity(duties.len());
    for duty in duties {
        match view(&mut c, caller, duty, &key, ms(now)).await {
            Ok(g) => out.push(g),
            Err(ServiceError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// One chat as the caller's device sees it.
pub async fn group(
    db: &Db,
    caller: &Caller,
    duty: Uuid,
    now: jiff::Timestamp,
) -> Result<wire::ChatGroup, ServiceError> {
    let key = server_public(db, caller.org, ms(now)).await?;
    let mut c = db.read().await?;
    view(&mut c, caller, duty, &key, ms(now)).await
}

/// Who is in the chat: the devices of the people on the duty's roster, with their names (for
/// a rostered caller only, like the chat itself).
pub async fn members(
    db: &Db,
    caller: &Caller,
    duty: Uuid,
    now: jiff::Timestamp,
) -> Result<Vec<wire::ChatMember>, ServiceError> {
    let mut c = db.read().await?;
    standing(&mut c, duty, caller.org, ms(now)).await?;
    if !repo::is_member(&mut c, duty, caller.person).await? {
        return Err(ServiceError::NotFound { what: "chat" });
    }
    Ok(repo::member_devices(&mut c, duty)
        .await?
        .into_iter()
        .map(|(device_id, person_id, given, family)| wire::ChatMember {
            device_id,
            person_id,
            name: format!("{given} {family}").trim().to_string(),
        })
        .collect())
}

/// The organisation's external-sender public key, made on first use (only then is anything
/// written).
async fn server_public(db: &Db, org: Uuid, now: i64) -> Result<Vec<u8>, ServiceError> {
    {
        let mut c = db.read().await?;
        if let Some((public, _)) = repo::server_key(&mut c, org).await? {
            return Ok(public);
        }
    }
    let mut tx = db.begin().await?;
    let k = server_key(&mut tx, org, now).await?;
    tx.commit().await?;
    Ok(k.public().to_vec())
}

async fn view(
    x: &mut impl carebridge_store::Exec,
    caller: &Caller,
    duty: Uuid,
    key: &[u8],
    now: i64,
) -> Result<wire::ChatGroup, ServiceError> {
    let s = standing(x, duty, caller.org, now).await?;
    if !repo::is_member(x, duty, caller.person).await? {
        return Err(ServiceError::NotFound { what: "chat" });
    }
    let g = repo::group_head(x, duty).await?;
    let member = repo::leaf_of(x, duty, caller.device).await?.is_some();
    Ok(wire::ChatGroup {
        duty_id: duty,
        phase: s.phase.as_str().into(),
        created: g.is_some(),
        group_id: STANDARD.encode(duty.as_bytes()),
        epoch: g.map(|(epoch, _)| epoch),
        last_seq: g.map(|(_, next)| next - 1).unwrap_or(0),
        member,
        external_sender_key: STANDARD.encode(key),
        external_sender_identity: String::from_utf8_lossy(mls::SERVER_IDENTITY).into_owned(),
        writable_until: ts(s.retention.writable_until(s.roster.ends_at)),
        deleted_at: ts(s.retention.deleted_at(s.roster.ends_at)),
    })
}

/// The first device of a rostered person creates the duty's group: a one-member group at its
/// first epoch with the server as external sender. The server then proposes everyone else.
pub async fn create_group(
    db: &Db,
    chat: &Chat,
    caller: &Caller,
    duty: Uuid,
    input: wire::CreateGroup,
    now: jiff::Timestamp,
) -> Result<wire::ChatGroup, ServiceError> {
    let info = b64("/group_info", &input.group_info, MAX_HANDSHAKE)?;
    let now_ms = ms(now);
    let mut tx = db.begin().await?;
    repo::lock_group(&mut tx, duty).await?;
    let s = standing(&mut tx, duty, caller.org, now_ms).await?;
    if !repo::is_member(&mut tx, duty, caller.person).await? {
        return Err(ServiceError::NotFound { what: "chat" });
    }
    if s.phase != Phase::Writable {
        return Err(conflict(
            "read_only",
            "the chat is read-only: its duty ended or was cancelled",
        ));
    }
    if repo::group(&mut tx, duty).await?.is_some() {
        return Err(conflict(
            "group_exists",
            "the group exists already; wait for the Welcome",
        ));
    }
    let key = server_key(&mut tx, caller.org, now_ms).await?;
    let device = repo::device_by_id(&mut tx, caller.org, caller.device)
        .await?
        .ok_or(ServiceError::NotFound { what: "device" })?;
    let followed = mls::follow(&info, duty.as_bytes(), key.public())
        .map_err(|e| invalid("/group_info", "invalid_group_info", e.to_string()))?;
    let ident = identity_of(caller.device);
    match followed.members.as_slice() {
        [m] if m.identity == ident.as_bytes() && m.signature_key == device.signature_key => {}
        _ => {
            return Err(invalid(
                "/group_info",
                "invalid_members",
                format!(
                    "a new group has exactly one member: this device, with identity '{ident}' and its registered key"
                ),
            ));
        }
    }
    repo::insert_group(
        &mut tx,
        duty,
        caller.org,
        followed.epoch,
        &followed.state,
        now_ms,
    )
    .await?;
    repo::set_leaf(
        &mut tx,
        duty,
        caller.org,
        caller.device,
        i64::from(followed.members[0].leaf),
        0,
    )
    .await?;
    let out = reconcile(&mut tx, duty, now_ms).await?;
    let g = view(&mut tx, caller, duty, key.public(), now_ms).await?;
    tx.commit().await?;
    deliver(db, chat, out).await;
    Ok(g)
}

/// Accepts an application message or a commit into the group's stream.
pub async fn post(
    db: &Db,
    chat: &Arc<Chat>,
    caller: &Caller,
    duty: Uuid,
    input: wire::PostMessage,
    now: jiff::Timestamp,
) -> Result<wire::Posted, ServiceError> {
    let msg = b64("/message", &input.message, MAX_HANDSHAKE)?;
    let welcome = match &input.welcome {
        Some(w) => Some(b64("/welcome", w, MAX_HANDSHAKE)?),
        None => None,
    };
    let incoming = mls::classify(&msg, duty.as_bytes())
        .map_err(|e| invalid("/message", "invalid_message", e.to_string()))?;
    if let Incoming::Application { epoch } = incoming {
        if msg.len() > MAX_MESSAGE {
            return Err(invalid(
                "/message",
                "too_large",
                format!("application messages are at most {MAX_MESSAGE} bytes"),
            ));
        }
        if welcome.is_some() {
            return Err(invalid(
                "/welcome",
                "unexpected",
                "only a commit that adds members carries a Welcome",
            ));
        }
        return post_application(db, chat, caller, duty, epoch, msg, ms(now)).await;
    }
    let now_ms = ms(now);
    let mut tx = db.begin().await?;
    repo::lock_group(&mut tx, duty).await?;
    // One read for every check of the hot path (roster, retention, group head, membership).
    let ctx = repo::post_context(&mut tx, duty, caller.person, caller.device).await?;
    let (ctx, phase) = standing_of(ctx, caller, now_ms)?;
    let Some(epoch_now) = ctx.epoch else {
        return Err(conflict("no_group", "the group has not been created yet"));
    };
    let Some(my_leaf) = ctx.leaf else {
        return Err(forbidden(
            "this device is not a member of the group (yet): wait for its Welcome",
        ));
    };
    let mut out = Out::default();
    let kept;
    let posted = match incoming {
        // Handled above, without this transaction.
        Incoming::Application { .. } => {
            return Err(corrupt("an application message reached the commit path"));
        }
        Incoming::Commit { epoch } => {
            if i64::try_from(epoch).ok() != Some(epoch_now) {
                return Err(stale(epoch, epoch_now));
            }
            let state_id = repo::state_id(&mut tx, duty)
                .await?
                .ok_or_else(|| corrupt("group vanished under its lock"))?;
            let group = match chat.states.take(duty, state_id) {
                Some(g) => g,
                None => {
                    let state = repo::group(&mut tx, duty)
                        .await?
                        .ok_or_else(|| corrupt("group vanished under its lock"))?
                        .state;
                    mls::Group::load(&state).map_err(corrupt)?
                }
            };
            let proposals = repo::proposal_messages(&mut tx, duty, epoch_now).await?;
            let (applied, group) = mls::apply(group, &proposals, &msg)
                .map_err(|e| invalid("/message", "invalid_commit", e.to_string()))?;
            if i64::from(applied.sender) != my_leaf {
                return Err(forbidden(
                    "the commit is signed by another member than the calling device",
                ));
            }
            // Adds: devices of people on the roster, or the server's own pending Adds (so a
            // proposal that went stale cannot stall the group; the server removes such a
            // device again in the next epoch). Removes: devices no longer wanted, or the
            // server's pending Removes.
            let wanted = repo::wanted_devices(&mut tx, duty).await?;
            let pending = repo::proposals(&mut tx, duty, epoch_now).await?;
            let server_proposed = |device: Uuid, action: &str| {
                pending.iter().any(|(d, a)| *d == device && a == action)
            };
            for a in &applied.adds {
                let device = device_of_identity(&a.identity);
                let rostered = wanted
                    .iter()
                    .any(|(d, key)| Some(*d) == device && *key == a.signature_key);
                let proposed = device.is_some_and(|d| server_proposed(d, "add"));
                let ok = if phase == Phase::Writable {
                    rostered || proposed
                } else {
                    proposed
                };
                if !ok {
                    return Err(forbidden(format!(
                        "the commit adds '{}', which is not a registered device of anyone on the duty's roster",
                        String::from_utf8_lossy(&a.identity)
                    )));
                }
            }
            for leaf in &applied.removes {
                let device = applied
                    .before
                    .iter()
                    .find(|m| m.leaf == *leaf)
                    .and_then(|m| device_of_identity(&m.identity));
                let still_wanted = device.is_some_and(|d| wanted.iter().any(|(w, _)| *w == d));
                if still_wanted && !device.is_some_and(|d| server_proposed(d, "remove")) {
                    return Err(forbidden(format!(
                        "the commit removes leaf {leaf}, a device of someone still on the roster"
                    )));
                }
            }
            if phase != Phase::Writable && applied.removes.is_empty() && applied.adds.is_empty() {
                return Err(conflict(
                    "read_only",
                    "the chat is read-only: only commits that remove members are accepted",
                ));
            }
            // A leaf that is new or changed must be a registered device of this organisation
            // with its registered key: nobody takes another device's identity or swaps keys.
            let unchanged: std::collections::HashSet<&mls::MemberInfo> =
                applied.before.iter().collect();
            for m in &applied.members {
                if unchanged.contains(m) {
                    continue;
                }
                let ok = match device_of_identity(&m.identity) {
                    Some(d) => repo::device_by_id(&mut tx, caller.org, d)
                        .await?
                        .is_some_and(|r| r.signature_key == m.signature_key),
                    None => false,
                };
                if !ok {
                    return Err(forbidden(format!(
                        "after the commit leaf {} would be '{}', which is not a registered device with its registered key",
                        m.leaf,
                        String::from_utf8_lossy(&m.identity)
                    )));
                }
            }
            let welcome = match (applied.adds.is_empty(), welcome) {
                (true, None) => None,
                (true, Some(_)) => {
                    return Err(invalid(
                        "/welcome",
                        "unexpected",
                        "only a commit that adds members carries a Welcome",
                    ));
                }
                (false, None) => {
                    return Err(invalid(
                        "/welcome",
                        "required",
                        "a commit that adds members needs its Welcome",
                    ));
                }
                (false, Some(w)) => {
                    mls::check_welcome(&w, &applied.adds)
                        .map_err(|e| invalid("/welcome", "invalid_welcome", e.to_string()))?;
                    Some(w)
                }
            };
            let seq = repo::append(
                &mut tx,
                duty,
                caller.org,
                epoch_now,
                "commit",
                Some(caller.device),
                &msg,
                now_ms,
            )
            .await?;
            // The rows are in hand: delivery need not read them back (a Welcome with the
            // ratchet tree of a large group is hundreds of KiB).
            out.rows.push((
                duty,
                MessageRow {
                    seq,
                    epoch: epoch_now,
                    kind: "commit".into(),
                    sender: Some(caller.device),
                    data: msg,
                    created_at: now_ms,
                },
            ));
            let new_epoch = i64::try_from(applied.epoch).map_err(corrupt)?;
            let since = match welcome {
                Some(w) => {
                    let wseq = repo::append(
                        &mut tx,
                        duty,
                        caller.org,
                        new_epoch,
                        "welcome",
                        Some(caller.device),
                        &w,
                        now_ms,
                    )
                    .await?;
                    out.rows.push((
                        duty,
                        MessageRow {
                            seq: wseq,
                            epoch: new_epoch,
                            kind: "welcome".into(),
                            sender: Some(caller.device),
                            data: w,
                            created_at: now_ms,
                        },
                    ));
                    wseq - 1
                }
                None => seq,
            };
            // The leaves after the commit: drop the removed, add the joiners, move nobody
            // else (only the differences are written).
            let known: std::collections::HashMap<Uuid, i64> = repo::leaves(&mut tx, duty)
                .await?
                .into_iter()
                .map(|(d, leaf, _)| (d, leaf))
                .collect();
            let after: std::collections::HashMap<Uuid, i64> = applied
                .members
                .iter()
                .filter_map(|m| device_of_identity(&m.identity).map(|d| (d, i64::from(m.leaf))))
                .collect();
            for device in known.keys() {
                if !after.contains_key(device) {
                    repo::drop_leaf(&mut tx, duty, *device).await?;
                }
            }
            for (device, leaf) in &after {
                match known.get(device) {
                    Some(l) if l == leaf => {}
                    Some(_) => repo::set_leaf(&mut tx, duty, caller.org, *device, *leaf, 0).await?,
                    None => {
                        repo::set_leaf(&mut tx, duty, caller.org, *device, *leaf, since).await?
                    }
                }
            }
            let new_state =
                repo::save_group(&mut tx, duty, new_epoch, &applied.state, now_ms).await?;
            repo::clear_proposals(&mut tx, duty).await?;
            out.extend(reconcile(&mut tx, duty, now_ms).await?);
            kept = Some((new_state, group));
            wire::Posted {
                seq,
                epoch: new_epoch,
            }
        }
        Incoming::Proposal { .. } => {
            return Err(invalid(
                "/message",
                "unsupported",
                "members send commits and application messages; membership proposals come from the server",
            ));
        }
    };
    tx.commit().await?;
    if let Some((state_id, group)) = kept {
        chat.states.put(duty, state_id, group);
    }
    deliver(db, chat, out).await;
    Ok(posted)
}

/// Loaded public states of recently committed groups, by duty, each with the `state_id` it
/// was stored under: a commit takes its group's state out (used only while the stored state
/// is still that one — another node may have committed meanwhile) and puts the next one back
/// once its transaction committed. A commit that fails leaves nothing behind; the next one
/// loads the stored blob. At most [`StateCache::MAX`] groups (the least recently used go).
#[derive(Default)]
pub(crate) struct StateCache {
    groups: std::sync::Mutex<std::collections::HashMap<Uuid, (i64, u64, mls::Group)>>,
    uses: std::sync::atomic::AtomicU64,
}

impl StateCache {
    const MAX: usize = 64;

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<Uuid, (i64, u64, mls::Group)>> {
        self.groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn take(&self, duty: Uuid, state_id: i64) -> Option<mls::Group> {
        let (id, _, g) = self.lock().remove(&duty)?;
        (id == state_id).then_some(g)
    }

    pub(crate) fn put(&self, duty: Uuid, state_id: i64, group: mls::Group) {
        let used = self.uses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut groups = self.lock();
        if groups.len() >= Self::MAX && !groups.contains_key(&duty) {
            let oldest = groups
                .iter()
                .min_by_key(|(_, (_, u, _))| *u)
                .map(|(d, _)| *d);
            if let Some(d) = oldest {
                groups.remove(&d);
            }
        }
        groups.insert(duty, (state_id, used, group));
    }

    /// Forgets a group (deleted).
    pub(crate) fn forget(&self, duty: Uuid) {
        self.lock().remove(&duty);
    }
}

/// A device whose copy of a group is lost or broken (a commit it could not process, an app
/// reinstalled with the same device) asks to be taken out and added again. The server
/// proposes the removal of its leaf; once another member commits it, the roster brings the
/// device back with an Add (a fresh KeyPackage) and a Welcome, as for a new device. A device
/// that is the group's only member cannot wait for anyone: the group is deleted, and the
/// device creates it again. Answers the stream number of the proposal (0 when the group was
/// deleted): the device's older Welcomes are at or below it.
pub async fn rejoin(
    db: &Db,
    chat: &Chat,
    caller: &Caller,
    duty: Uuid,
    now: jiff::Timestamp,
) -> Result<wire::Posted, ServiceError> {
    let now_ms = ms(now);
    let mut tx = db.begin().await?;
    repo::lock_group(&mut tx, duty).await?;
    let ctx = repo::post_context(&mut tx, duty, caller.person, caller.device).await?;
    let (ctx, phase) = standing_of(ctx, caller, now_ms)?;
    let Some(epoch) = ctx.epoch else {
        return Err(conflict("no_group", "the group has not been created yet"));
    };
    if phase != Phase::Writable {
        return Err(conflict(
            "read_only",
            "the chat is read-only: a device that lost it cannot be added again",
        ));
    }
    let Some(leaf) = ctx.leaf else {
        return Err(conflict(
            "not_in_group",
            "this device is not in the group: its Welcome follows the next commit",
        ));
    };
    let mut out = Out::default();
    let leaves = repo::leaves(&mut tx, duty).await?;
    let seq = if leaves.len() <= 1 {
        let devices = repo::delete_group(&mut tx, duty, false).await?;
        out.gone.push((duty, devices));
        0
    } else if let Some(seq) = repo::proposed_remove(&mut tx, duty, caller.device, epoch).await? {
        seq
    } else {
        let key = server_key(&mut tx, caller.org, now_ms).await?;
        let e = u64::try_from(epoch).map_err(corrupt)?;
        let l = u32::try_from(leaf).map_err(corrupt)?;
        let msg = mls::propose_remove(&key, duty.as_bytes(), e, l).map_err(corrupt)?;
        let seq = repo::append(
            &mut tx, duty, caller.org, epoch, "proposal", None, &msg, now_ms,
        )
        .await?;
        repo::insert_proposal(
            &mut tx,
            duty,
            caller.org,
            caller.device,
            "remove",
            epoch,
            seq,
        )
        .await?;
        out.msgs.push((duty, seq));
        seq
    };
    tx.commit().await?;
    deliver(db, chat, out).await;
    Ok(wire::Posted { seq, epoch })
}

/// The refusal of a message for another epoch than the group's.
fn stale(epoch: u64, epoch_now: i64) -> ServiceError {
    if i64::try_from(epoch).is_ok_and(|e| e > epoch_now) {
        invalid(
            "/message",
            "future_epoch",
            format!("the message is for epoch {epoch} but the group is only at epoch {epoch_now}"),
        )
    } else {
        conflict(
            "stale_epoch",
            format!(
                "the message is for epoch {epoch} but the group is at epoch {epoch_now}: process the newer messages and retry"
            ),
        )
    }
}

// ---- application messages, written in batches -------------------------------------------------
//
// Application messages are the hot path (DESIGN.md: 20,000 deliveries a second on one node).
// Concurrent posts are written as one transaction ("group commit"): each post queues itself,
// then waits for the writer; whoever holds the writer takes everything queued and writes it,
// so under load a transaction carries many messages and at rest one, without waiting. Every
// message is still checked on its own (roster, retention, epoch, membership) inside that
// transaction, under its group's lock.

/// Application messages waiting to be written.
#[derive(Default)]
pub(crate) struct Batch {
    queue: std::sync::Mutex<Vec<Pending>>,
    writer: Arc<tokio::sync::Mutex<()>>,
    next_id: std::sync::atomic::AtomicU64,
    largest: std::sync::atomic::AtomicUsize,
    failed: std::sync::atomic::AtomicUsize,
}

/// The most messages one transaction carries (the rest wait for the next one).
const MAX_BATCH: usize = 256;

/// How the batched writing of application messages went in this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchStats {
    /// The most messages one transaction carried.
    pub largest: usize,
    /// Batches whose shared transaction failed (their messages were then tried one by one).
    pub failed: usize,
}

/// The batch statistics of this process (tests and operators).
pub fn batch_stats(chat: &Chat) -> BatchStats {
    use std::sync::atomic::Ordering::Relaxed;
    BatchStats {
        largest: chat.posts.largest.load(Relaxed),
        failed: chat.posts.failed.load(Relaxed),
    }
}

pub(crate) struct Pending {
    id: u64,
    caller: Caller,
    duty: Uuid,
    epoch: u64,
    msg: Vec<u8>,
    now_ms: i64,
    reply: tokio::sync::oneshot::Sender<Result<wire::Posted, ServiceError>>,
}

/// Where the calling device stands with a chat, from its context row: a chat of its
/// organisation, switched on, not deleted, with its person on the roster, and the retention
/// phase now. Anything else is "not found" (existence does not leak).
fn standing_of(
    ctx: Option<repo::PostContext>,
    caller: &Caller,
    now_ms: i64,
) -> Result<(repo::PostContext, Phase), ServiceError> {
    let ctx = ctx
        .filter(|c| c.org_id == caller.org && c.chat && !c.deleted && c.member)
        .ok_or(ServiceError::NotFound { what: "chat" })?;
    if !ctx.device_ok {
        return Err(ServiceError::Forbidden {
            detail: "this device was removed, or its person is no longer active".into(),
        });
    }
    let retention = Retention {
        writable_days: ctx.writable_days,
        readable_days: ctx.readable_days,
    };
    let phase = retention.phase(ctx.ends_at, ctx.cancelled, now_ms);
    if phase == Phase::Deleted {
        return Err(ServiceError::NotFound { what: "chat" });
    }
    Ok((ctx, phase))
}

/// The checks of an application message against its group, as read in the transaction:
/// `(epoch, next seq)`.
fn check_application(
    ctx: Option<repo::PostContext>,
    caller: &Caller,
    epoch: u64,
    now_ms: i64,
) -> Result<(i64, i64), ServiceError> {
    let (ctx, phase) = standing_of(ctx, caller, now_ms)?;
    let (Some(epoch_now), Some(next_seq)) = (ctx.epoch, ctx.next_seq) else {
        return Err(conflict("no_group", "the group has not been created yet"));
    };
    if ctx.leaf.is_none() {
        return Err(forbidden(
            "this device is not a member of the group (yet): wait for its Welcome",
        ));
    }
    if phase != Phase::Writable {
        return Err(conflict(
            "read_only",
            "the chat is read-only: reading works, sending does not",
        ));
    }
    if i64::try_from(epoch).ok() != Some(epoch_now) {
        return Err(stale(epoch, epoch_now));
    }
    Ok((epoch_now, next_seq))
}

async fn post_application(
    db: &Db,
    chat: &Arc<Chat>,
    caller: &Caller,
    duty: Uuid,
    epoch: u64,
    msg: Vec<u8>,
    now_ms: i64,
) -> Result<wire::Posted, ServiceError> {
    use std::sync::atomic::Ordering::Relaxed;
    let (reply, mut answer) = tokio::sync::oneshot::channel();
    let id = chat.posts.next_id.fetch_add(1, Relaxed);
    lock_queue(&chat.posts).push(Pending {
        id,
        caller: caller.clone(),
        duty,
        epoch,
        msg,
        now_ms,
        reply,
    });
    // A request that goes away before a writer took its message takes it out again: nothing
    // is written later on its behalf.
    let _queued = Queued {
        batch: &chat.posts,
        id,
    };
    let writer = chat.posts.writer.clone().lock_owned().await;
    // A writer before us may have taken this message along.
    if let Ok(r) = answer.try_recv() {
        return r;
    }
    // The batch is written by a task of its own: a request that goes away (the client hung
    // up) must not take the other senders' messages with it. The writer is held through the
    // delivery, so batches reach the sockets and the other nodes in the order they were
    // written (one sender's consecutive messages stay in order).
    let (db2, chat2) = (db.clone(), chat.clone());
    let task = tokio::spawn(async move {
        let out = write_queued(&db2, &chat2).await;
        let relay = relay_of(&db2, &chat2, &out);
        deliver_here(&db2, &chat2, out).await;
        drop(writer);
        // Other nodes: after the writer is free (a NOTIFY is a commit of its own); a node that
        // sees two batches swapped fetches the gap by cursor.
        relay_to_nodes(&db2, &relay).await;
    });
    let _ = task.await;
    answer
        .await
        .unwrap_or_else(|_| Err(corrupt("the message's batch ended without an answer")))
}

/// Takes a queued message out again when its request is dropped before a writer took it.
struct Queued<'a> {
    batch: &'a Batch,
    id: u64,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        lock_queue(self.batch).retain(|p| p.id != self.id);
    }
}

fn lock_queue(b: &Batch) -> std::sync::MutexGuard<'_, Vec<Pending>> {
    // Pushing and taking cannot leave the queue half-changed: a poisoned lock is usable.
    b.queue.lock().unwrap_or_else(|e| e.into_inner())
}

/// The same failure for each of several senders (a `ServiceError` is not `Clone`): "try
/// again later" (503), never a claim about their message.
fn unavailable(e: &ServiceError) -> ServiceError {
    ServiceError::Store(StoreError::Unavailable(
        carebridge_store::sqlx::Error::Protocol(format!("writing the messages failed: {e}")),
    ))
}

/// Writes what is queued (up to [`MAX_BATCH`]) in one transaction and answers every sender.
/// On PostgreSQL a message whose group another transaction holds is written alone, so that
/// one busy group does not hold up the others.
async fn write_queued(db: &Db, chat: &Arc<Chat>) -> Out {
    use std::sync::atomic::Ordering::Relaxed;
    let stats = &chat.posts;
    let tx = db.begin().await;
    // Taken once the writer connection is ours: what arrived meanwhile goes along.
    let batch: Vec<Pending> = {
        let mut q = lock_queue(stats);
        let n = q.len().min(MAX_BATCH);
        q.drain(..n).collect()
    };
    if batch.is_empty() {
        return Out::default();
    }
    let tx = match tx {
        Ok(t) => t,
        Err(e) => {
            let e = ServiceError::from(e);
            for p in batch {
                let _ = p.reply.send(Err(unavailable(&e)));
            }
            return Out::default();
        }
    };
    metrics::histogram!("carebridge_chat_batch_size").record(batch.len() as f64);
    stats.largest.fetch_max(batch.len(), Relaxed);
    match try_batch(tx, &batch, true).await {
        Ok((outcomes, out)) => {
            for (p, o) in batch.into_iter().zip(outcomes) {
                match o {
                    Some(r) => {
                        let _ = p.reply.send(r);
                    }
                    None => {
                        let (db, chat) = (db.clone(), chat.clone());
                        tokio::spawn(async move {
                            let out = write_alone(&db, p).await;
                            deliver(&db, &chat, out).await;
                        });
                    }
                }
            }
            out
        }
        // Refused before the commit for a reason other than the database being away (e.g. a
        // constraint): each message alone, so that every sender gets its own answer.
        Err((e, false))
            if batch.len() > 1 && !matches!(e, ServiceError::Store(StoreError::Unavailable(_))) =>
        {
            stats.failed.fetch_add(1, Relaxed);
            tracing::warn!(error = %e, messages = batch.len(), "a batch of chat messages failed; writing them one by one");
            let mut out = Out::default();
            for p in batch {
                out.extend(write_alone(db, p).await);
            }
            out
        }
        // The database is away, or the commit itself failed (it may have happened: writing
        // again could store messages twice). The senders retry.
        Err((e, _)) => {
            if batch.len() == 1 {
                if let Some(p) = batch.into_iter().next() {
                    let _ = p.reply.send(Err(e));
                }
            } else {
                for p in batch {
                    let _ = p.reply.send(Err(unavailable(&e)));
                }
            }
            Out::default()
        }
    }
}

/// Writes one message in a transaction of its own (waiting for its group's lock) and answers
/// its sender.
async fn write_alone(db: &Db, p: Pending) -> Out {
    let r = match db.begin().await {
        Err(e) => Err(ServiceError::from(e)),
        Ok(tx) => match try_batch(tx, std::slice::from_ref(&p), false).await {
            Ok((mut outcomes, out)) => {
                let r = outcomes
                    .pop()
                    .flatten()
                    .unwrap_or_else(|| Err(corrupt("no result for a message")));
                let _ = p.reply.send(r);
                return out;
            }
            Err((e, _)) => Err(e),
        },
    };
    let _ = p.reply.send(r);
    Out::default()
}

/// Per message: its answer, or `None` when its group was busy (`skip_busy`, PostgreSQL).
type BatchResult = (Vec<Option<Result<wire::Posted, ServiceError>>>, Out);

/// Checks and writes `batch` in `tx`. The error says whether it came from the commit.
async fn try_batch(
    mut tx: Tx,
    batch: &[Pending],
    skip_busy: bool,
) -> Result<BatchResult, (ServiceError, bool)> {
    let before = |e: StoreError| (ServiceError::from(e), false);
    // Groups are locked in id order (no deadlock between two nodes' batches on PostgreSQL).
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by_key(|&i| batch[i].duty);
    let mut results: Vec<Option<Result<wire::Posted, ServiceError>>> =
        batch.iter().map(|_| None).collect();
    let mut next: Vec<(Uuid, i64)> = Vec::new();
    let mut rows: Vec<repo::NewMessage<'_>> = Vec::with_capacity(batch.len());
    // The groups this transaction holds, and every message's context: one statement each
    // for the whole batch (the writer is serialised, so its round trips are the throughput).
    let mut duties: Vec<Uuid> = batch.iter().map(|p| p.duty).collect();
    duties.sort();
    duties.dedup();
    let held = if skip_busy {
        repo::try_lock_groups(&mut tx, &duties)
            .await
            .map_err(before)?
    } else {
        for d in &duties {
            repo::lock_group(&mut tx, *d).await.map_err(before)?;
        }
        duties.iter().copied().collect()
    };
    let mut keys: Vec<(Uuid, Uuid, Uuid)> = batch
        .iter()
        .filter(|p| held.contains(&p.duty))
        .map(|p| (p.duty, p.caller.person, p.caller.device))
        .collect();
    keys.sort();
    keys.dedup();
    let contexts = repo::post_contexts(&mut tx, &keys).await.map_err(before)?;
    for i in order {
        let p = &batch[i];
        if !held.contains(&p.duty) {
            continue;
        }
        let ctx = contexts
            .get(&(p.duty, p.caller.person, p.caller.device))
            .cloned();
        results[i] = Some(match check_application(ctx, &p.caller, p.epoch, p.now_ms) {
            Err(e) => Err(e),
            Ok((epoch, stored_next)) => {
                // The stored counter moves once, at the end: later messages of the same group
                // in this batch count on from the earlier ones.
                let seq = match next.last_mut() {
                    Some((d, n)) if *d == p.duty => {
                        *n += 1;
                        *n - 1
                    }
                    _ => {
                        next.push((p.duty, stored_next + 1));
                        stored_next
                    }
                };
                rows.push(repo::NewMessage {
                    duty: p.duty,
                    org: p.caller.org,
                    seq,
                    epoch,
                    sender: p.caller.device,
                    data: &p.msg,
                    created_at: p.now_ms,
                });
                Ok(wire::Posted { seq, epoch })
            }
        });
    }
    if !rows.is_empty() {
        repo::insert_application_messages(&mut tx, &rows)
            .await
            .map_err(before)?;
        repo::set_next_seqs(&mut tx, &next).await.map_err(before)?;
    }
    tx.commit()
        .await
        .map_err(|e| (ServiceError::from(e), true))?;
    let out = Out {
        rows: rows
            .iter()
            .map(|m| {
                (
                    m.duty,
                    MessageRow {
                        seq: m.seq,
                        epoch: m.epoch,
                        kind: "application".into(),
                        sender: Some(m.sender),
                        data: m.data.to_vec(),
                        created_at: m.created_at,
                    },
                )
            })
            .collect(),
        ..Out::default()
    };
    Ok((results, out))
}

fn device_of_identity(identity: &[u8]) -> Option<Uuid> {
    std::str::from_utf8(identity)
        .ok()?
        .strip_prefix("device:")?
        .parse()
        .ok()
}

/// Messages of a group after `after` that the calling device may read.
pub async fn messages(
    db: &Db,
    caller: &Caller,
    duty: Uuid,
    after: i64,
    limit: i64,
    now: jiff::Timestamp,
) -> Result<wire::Messages, ServiceError> {
    // Reads only: a read connection (on SQLite the single writer stays free).
    let mut c = db.read().await?;
    standing(&mut c, duty, caller.org, ms(now)).await?;
    if !repo::is_member(&mut c, duty, caller.person).await? {
        return Err(ServiceError::NotFound { what: "chat" });
    }
    let Some((_, since)) = repo::leaf_of(&mut c, duty, caller.device).await? else {
        return Ok(wire::Messages {
            items: Vec::new(),
            more: false,
        });
    };
    let mut rows = repo::messages(&mut c, duty, after, since, limit + 1).await?;
    drop(c);
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    Ok(wire::Messages {
        items: rows.into_iter().map(|m| message_view(duty, m)).collect(),
        more,
    })
}

fn message_view(duty: Uuid, m: MessageRow) -> wire::ChatMessage {
    wire::ChatMessage {
        duty_id: duty,
        seq: m.seq,
        epoch: m.epoch,
        kind: m.kind,
        sender: m.sender,
        data: STANDARD.encode(&m.data),
        at: ts(m.created_at),
    }
}

// ---- membership follows the roster ------------------------------------------------------------

/// Makes the server's proposals match the roster: an Add for every device of a rostered
/// person that is not in the group and not yet proposed (while the chat is writable), a Remove
/// for every device in the group that is no longer wanted. A group none of whose leaves is
/// wanted any more (nobody left could commit) is dropped, so that the next rostered device
/// creates it afresh. The caller holds the group's lock.
pub(crate) async fn reconcile(tx: &mut Tx, duty: Uuid, now: i64) -> Result<Out, ServiceError> {
    let mut out = Out::default();
    let Some(g) = repo::group_meta(tx, duty).await? else {
        return Ok(out);
    };
    let Some(roster) = repo::roster(tx, duty).await? else {
        return Ok(out);
    };
    let retention = repo::retention(tx, g.org_id).await?;
    let phase = retention.phase(roster.ends_at, roster.cancelled, now);
    if phase == Phase::Deleted || roster.deleted {
        return Ok(out);
    }
    let wanted = if roster.chat {
        repo::wanted_devices(tx, duty).await?
    } else {
        Vec::new()
    };
    let leaves = repo::leaves(tx, duty).await?;
    let is_wanted = |d: &Uuid| wanted.iter().any(|(w, _)| w == d);
    if phase == Phase::Writable && !leaves.iter().any(|(d, _, _)| is_wanted(d)) {
        let devices = repo::delete_group(tx, duty, false).await?;
        out.gone.push((duty, devices));
        return Ok(out);
    }
    let pending = repo::proposals(tx, duty, g.epoch).await?;
    let proposed = |d: Uuid| pending.iter().any(|(p, _)| *p == d);
    let key = server_key(tx, g.org_id, now).await?;
    // Proposals name the group and the epoch only: the stored state is neither read nor
    // rewritten here; the commit that references them reads them back from the stream.
    let epoch = u64::try_from(g.epoch).map_err(corrupt)?;
    for (device, leaf, _) in &leaves {
        if is_wanted(device) || proposed(*device) {
            continue;
        }
        let leaf = u32::try_from(*leaf).map_err(corrupt)?;
        let msg = mls::propose_remove(&key, duty.as_bytes(), epoch, leaf).map_err(corrupt)?;
        let seq = repo::append(tx, duty, g.org_id, g.epoch, "proposal", None, &msg, now).await?;
        repo::insert_proposal(tx, duty, g.org_id, *device, "remove", g.epoch, seq).await?;
        out.msgs.push((duty, seq));
    }
    if phase == Phase::Writable {
        for (device, _) in &wanted {
            if leaves.iter().any(|(d, _, _)| d == device) || proposed(*device) {
                continue;
            }
            let Some(kp) = repo::claim_key_package(tx, *device).await? else {
                continue;
            };
            let msg = match mls::propose_add(&key, duty.as_bytes(), epoch, &kp) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(device = %device, error = %e, "a stored KeyPackage could not be proposed");
                    continue;
                }
            };
            let seq =
                repo::append(tx, duty, g.org_id, g.epoch, "proposal", None, &msg, now).await?;
            repo::insert_proposal(tx, duty, g.org_id, *device, "add", g.epoch, seq).await?;
            out.msgs.push((duty, seq));
        }
    }
    Ok(out)
}

/// Pushes committed messages to the sockets of their recipients on this node. Runs after the
/// commit: a failure here is logged (the devices fetch what they missed), never reported as a
/// failure of the change itself.
pub(crate) async fn deliver(db: &Db, chat: &Chat, out: Out) {
    let relay = relay_of(db, chat, &out);
    deliver_here(db, chat, out).await;
    relay_to_nodes(db, &relay).await;
}

/// What other nodes on the same PostgreSQL must be told about `out` (nothing on SQLite).
fn relay_of(db: &Db, chat: &Chat, out: &Out) -> Vec<String> {
    if db.backend() == carebridge_store::Backend::Postgres {
        relay_payloads(chat.node, out)
    } else {
        Vec::new()
    }
}

/// Pushes to the sockets of this process.
async fn deliver_here(db: &Db, chat: &Chat, out: Out) {
    if let Err(e) = try_deliver(db, chat, out).await {
        tracing::warn!(error = %e, "live delivery failed; devices will fetch by cursor");
    }
}

/// Other nodes on the same PostgreSQL deliver to the sockets they hold.
async fn relay_to_nodes(db: &Db, relay: &[String]) {
    if !relay.is_empty()
        && let Err(e) = publish(db, relay).await
    {
        tracing::warn!(error = %e, "relaying to other nodes failed; their devices fetch by cursor");
    }
}

/// The PostgreSQL channel of deliveries between nodes.
pub const RELAY_CHANNEL: &str = "carebridge_chat";

/// Deliveries relayed to the other nodes: one NOTIFY carries many groups' deliveries (a batch
/// of messages to fifty groups is one or two notifications, not fifty), each payload below
/// [`RELAY_PAYLOAD_MAX`] bytes (PostgreSQL's limit is 8,000).
#[derive(serde::Serialize, serde::Deserialize)]
struct Relay {
    /// The node that delivered locally already.
    n: Uuid,
    r: Vec<RelayItem>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct RelayItem {
    d: Uuid,
    /// Messages `first..=last`, or
    #[serde(default, skip_serializing_if = "Option::is_none")]
    m: Option<(i64, i64)>,
    /// devices told that the group is gone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    g: Vec<Uuid>,
}

const RELAY_PAYLOAD_MAX: usize = 7_000;

fn relay_payloads(node: Uuid, out: &Out) -> Vec<String> {
    let mut items = Vec::new();
    let mut ranges: std::collections::BTreeMap<Uuid, (i64, i64)> = Default::default();
    let all = out
        .msgs
        .iter()
        .copied()
        .chain(out.rows.iter().map(|(d, m)| (*d, m.seq)));
    for (d, seq) in all {
        let e = ranges.entry(d).or_insert((seq, seq));
        e.0 = e.0.min(seq);
        e.1 = e.1.max(seq);
    }
    for (d, m) in ranges {
        items.push(RelayItem {
            d,
            m: Some(m),
            g: Vec::new(),
        });
    }
    for (d, devices) in &out.gone {
        for chunk in devices.chunks(100) {
            items.push(RelayItem {
                d: *d,
                m: None,
                g: chunk.to_vec(),
            });
        }
    }
    // Packed greedily: an item is at most ~3.8 KB (100 device ids), so each payload holds at
    // least one and stays under the limit.
    let mut payloads = Vec::new();
    let mut current: Vec<RelayItem> = Vec::new();
    let mut size = 0;
    for item in items {
        let len = serde_json::to_string(&item).map_or(0, |s| s.len()) + 1;
        if !current.is_empty() && size + len > RELAY_PAYLOAD_MAX - 64 {
            let r = Relay {
                n: node,
                r: std::mem::take(&mut current),
            };
            payloads.extend(serde_json::to_string(&r).ok());
            size = 0;
        }
        size += len;
        current.push(item);
    }
    if !current.is_empty() {
        let r = Relay {
            n: node,
            r: current,
        };
        payloads.extend(serde_json::to_string(&r).ok());
    }
    payloads
}

/// Sends the payloads in one statement.
async fn publish(db: &Db, payloads: &[String]) -> Result<(), ServiceError> {
    let mut c = db.write().await?;
    if let carebridge_store::Raw::Postgres(c) = carebridge_store::Exec::raw(&mut c) {
        sqlx::query("SELECT pg_notify($1, p) FROM UNNEST($2::text[]) AS p")
            .bind(RELAY_CHANNEL)
            .bind(payloads)
            .execute(c)
            .await
            .map_err(StoreError::from)?;
    }
    Ok(())
}

/// Delivers what other nodes relay (PostgreSQL only): runs for the life of the process.
pub async fn relay(db: Db, chat: Arc<Chat>) {
    let Some(pool) = db.pg_pool().cloned() else {
        return;
    };
    loop {
        let mut l = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "chat relay: no listener connection; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = l.listen(RELAY_CHANNEL).await {
            tracing::warn!(error = %e, "chat relay: LISTEN failed; retrying");
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            continue;
        }
        while let Ok(n) = l.recv().await {
            let Ok(r) = serde_json::from_str::<Relay>(n.payload()) else {
                continue;
            };
            if r.n == chat.node {
                continue;
            }
            let mut out = Out::default();
            for item in r.r {
                if let Some((a, b)) = item.m {
                    out.msgs.extend((a..=b).map(|s| (item.d, s)));
                }
                if !item.g.is_empty() {
                    out.gone.push((item.d, item.g));
                }
            }
            if let Err(e) = try_deliver(&db, &chat, out).await {
                tracing::warn!(error = %e, "chat relay: delivery failed");
            }
        }
    }
}

async fn try_deliver(db: &Db, chat: &Chat, out: Out) -> Result<(), ServiceError> {
    for (duty, devices) in out.gone {
        chat.states.forget(duty);
        let frame: Utf8Bytes = serde_json::to_string(&wire::Frame::Deleted { duty_id: duty })
            .map_err(corrupt)?
            .into();
        chat.hub.deliver(&devices, &frame);
    }
    let msgs = out.msgs;
    if msgs.is_empty() && out.rows.is_empty() {
        return Ok(());
    }
    let mut c = db.read().await?;
    let mut duties: Vec<Uuid> = out
        .rows
        .iter()
        .map(|(d, _)| *d)
        .chain(msgs.iter().map(|(d, _)| *d))
        .collect();
    duties.sort_unstable();
    duties.dedup();
    let all = repo::recipients_of(&mut c, &duties).await?;
    let none = Vec::new();
    for (duty, m) in out.rows {
        push(chat, duty, all.get(&duty).unwrap_or(&none), m)?;
    }
    let mut i = 0;
    while i < msgs.len() {
        let duty = msgs[i].0;
        let recipients = all.get(&duty).unwrap_or(&none);
        let first = msgs[i].1;
        let mut last = first;
        while i < msgs.len() && msgs[i].0 == duty {
            last = last.max(msgs[i].1);
            i += 1;
        }
        let rows = repo::range(&mut c, duty, first, last).await?;
        for m in rows {
            push(chat, duty, recipients, m)?;
        }
    }
    Ok(())
}

/// Sends one message to the sockets of its recipients here: everyone in the group after its
/// number but the sender; a Welcome only to the devices it adds.
fn push(
    chat: &Chat,
    duty: Uuid,
    recipients: &[(Uuid, i64)],
    m: MessageRow,
) -> Result<(), ServiceError> {
    let seq = m.seq;
    let kind_welcome = m.kind == "welcome";
    let sender = m.sender;
    let to: Vec<Uuid> = recipients
        .iter()
        .filter(|(d, since)| {
            Some(*d) != sender
                && if kind_welcome {
                    *since == seq - 1
                } else {
                    *since < seq
                }
        })
        .map(|(d, _)| *d)
        .collect();
    // Serialised only when one of the recipients is connected here.
    if !chat.hub.any_connected(&to) {
        return Ok(());
    }
    let frame: Utf8Bytes = serde_json::to_string(&wire::Frame::Message {
        message: message_view(duty, m),
    })
    .map_err(corrupt)?
    .into();
    chat.hub.deliver(&to, &frame);
    Ok(())
}

// ---- worker: roster events and retention -----------------------------------------------------

const CONSUMER: &str = "chat.roster";
const EVENTS_PAGE: i64 = 500;
/// On PostgreSQL a transaction can commit an event with a lower number after a higher one was
/// read: events this recent are read again (their versions make that harmless).
const LATE_COMMIT_MS: i64 = 30_000;

/// What one worker step did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Step {
    pub rosters: usize,
    pub deleted: usize,
}

/// One step of the chat worker: applies new roster events (membership follows the roster;
/// removed people's devices get nothing more at once) and deletes chats past retention. Each
/// duty is its own transaction: a failing group is logged and skipped, never blocks others.
pub async fn step(db: &Db, chat: &Chat, now: jiff::Timestamp) -> Result<Step, ServiceError> {
    let now_ms = ms(now);
    let mut done = Step::default();
    let mut c = db.read().await?;
    let mut cursor = repo::consumer(&mut c, CONSUMER).await?;
    let postgres = db.backend() == carebridge_store::Backend::Postgres;
    let late = if postgres {
        // Only the numbers of the window are read; payloads only of those not applied yet.
        let window = repo::recent_roster_seqs(&mut c, cursor, now_ms - LATE_COMMIT_MS).await?;
        let unseen: Vec<i64> = {
            let mut seen = chat
                .late_seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let inside: std::collections::BTreeSet<i64> = window.iter().copied().collect();
            seen.retain(|s| inside.contains(s));
            window.into_iter().filter(|s| !seen.contains(s)).collect()
        };
        repo::roster_events_by_seq(&mut c, &unseen).await?
    } else {
        Vec::new()
    };
    drop(c);
    apply_rosters(db, chat, &late, now_ms, &mut done).await;
    let remember = |events: &[(i64, String)]| {
        if postgres {
            let mut seen = chat
                .late_seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            seen.extend(events.iter().map(|(seq, _)| *seq));
        }
    };
    remember(&late);
    loop {
        let mut c = db.read().await?;
        let events = repo::roster_events(&mut c, cursor, EVENTS_PAGE).await?;
        drop(c);
        let Some((last, _)) = events.last() else {
            break;
        };
        let last = *last;
        apply_rosters(db, chat, &events, now_ms, &mut done).await;
        remember(&events);
        cursor = last;
        let mut w = db.write().await?;
        repo::set_consumer(&mut w, CONSUMER, cursor).await?;
        drop(w);
        if (events.len() as i64) < EVENTS_PAGE {
            break;
        }
    }
    // Retention: delete what is past its time.
    let mut c = db.read().await?;
    let due = repo::due_for_deletion(&mut c, now_ms).await?;
    drop(c);
    for duty in due {
        let mut tx = db.begin().await?;
        repo::lock_group(&mut tx, duty).await?;
        let devices = repo::delete_group(&mut tx, duty, true).await?;
        tx.commit().await?;
        deliver(
            db,
            chat,
            Out {
                msgs: Vec::new(),
                rows: Vec::new(),
                gone: vec![(duty, devices)],
            },
        )
        .await;
        done.deleted += 1;
    }
    Ok(done)
}

/// Applies the newest roster of each duty in `events` (skipping versions already applied).
async fn apply_rosters(
    db: &Db,
    chat: &Chat,
    events: &[(i64, String)],
    now_ms: i64,
    done: &mut Step,
) {
    let mut newest: std::collections::BTreeMap<Uuid, carebridge_proto::duties::Roster> =
        std::collections::BTreeMap::new();
    for (seq, payload) in events {
        let Ok(r) = serde_json::from_str::<carebridge_proto::duties::Roster>(payload) else {
            tracing::warn!(seq, "a roster event could not be read; skipped");
            continue;
        };
        if newest
            .get(&r.duty_id)
            .is_none_or(|n| n.roster_version < r.roster_version)
        {
            newest.insert(r.duty_id, r);
        }
    }
    for (duty, r) in newest {
        match apply_roster(db, &r, now_ms).await {
            Ok(Some(out)) => {
                done.rosters += 1;
                deliver(db, chat, out).await;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(duty = %duty, error = %e, "applying a roster to the chat failed; skipped");
            }
        }
    }
}

async fn apply_roster(
    db: &Db,
    r: &carebridge_proto::duties::Roster,
    now_ms: i64,
) -> Result<Option<Out>, ServiceError> {
    // Cheap check first, without a lock.
    let mut c = db.read().await?;
    if repo::roster(&mut c, r.duty_id)
        .await?
        .is_some_and(|c| c.version >= r.roster_version)
    {
        return Ok(None);
    }
    drop(c);
    let mut tx = db.begin().await?;
    repo::lock_group(&mut tx, r.duty_id).await?;
    let current = repo::roster(&mut tx, r.duty_id).await?;
    if current
        .as_ref()
        .is_some_and(|c| c.version >= r.roster_version)
    {
        return Ok(None);
    }
    let deleted = current.is_some_and(|c| c.deleted);
    let cancelled = r.state == "cancelled";
    let row = repo::RosterRow {
        org_id: r.org_id,
        version: r.roster_version,
        chat: r.chat,
        cancelled,
        ends_at: ms(r.ends_at),
        deleted,
    };
    // A cancelled duty's roster event is empty; its chat stays readable (read-only) for the
    // people who were on it, so the members are kept.
    let people: Option<Vec<Uuid>> = if deleted {
        Some(Vec::new())
    } else if cancelled {
        None
    } else {
        let mut p: Vec<Uuid> = r.roster.iter().map(|l| l.person_id).collect();
        p.sort();
        p.dedup();
        Some(p)
    };
    repo::save_roster(&mut tx, r.duty_id, &row, people.as_deref()).await?;
    let out = reconcile(&mut tx, r.duty_id, now_ms).await?;
    tx.commit().await?;
    Ok(Some(out))
}

/// The chat worker of a process: a [`step`] after every commit that appended events (woken
/// by `NOTIFY` on PostgreSQL, which reaches every node, or in-process on SQLite) and at least
/// every `every` (retention, and events missed while a wake-up was lost).
pub async fn run(state: carebridge_web::AppState, chat: Arc<Chat>, every: std::time::Duration) {
    let mut listener = match state.db.pg_pool() {
        Some(pool) => match sqlx::postgres::PgListener::connect_with(pool).await {
            Ok(mut l) => match l.listen(carebridge_store::events::CHANNEL).await {
                Ok(()) => Some(l),
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN failed; the chat worker polls only");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "no listener connection; the chat worker polls only");
                None
            }
        },
        None => None,
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut committed = carebridge_store::events::committed_events();
    loop {
        let woken = async {
            match listener.as_mut() {
                Some(l) => {
                    if l.recv().await.is_err() {
                        // The listener reconnects by itself on the next call; do not spin.
                        tokio::time::sleep(every).await;
                    }
                }
                None => {
                    if committed.changed().await.is_err() {
                        tokio::time::sleep(every).await;
                    }
                }
            }
        };
        tokio::select! {
            _ = tick.tick() => {}
            () = woken => {}
        }
        if let Err(e) = step(&state.db, &chat, state.now()).await {
            tracing::warn!(error = %e, "chat worker step failed; retrying");
        }
    }
}

// ---- settings ---------------------------------------------------------------------------------

pub async fn settings(db: &Db, org: Uuid) -> Result<wire::ChatSettings, ServiceError> {
    let mut c = db.read().await?;
    let r = repo::retention(&mut c, org).await?;
    Ok(wire::ChatSettings {
        writable_days: r.writable_days,
        readable_days: r.readable_days,
        attachment_max_bytes: repo::attachment_max(&mut c, org).await?,
    })
}

pub async fn set_settings(
    db: &Db,
    actor: &carebridge_domain::auth::Actor,
    org: carebridge_domain::OrgId,
    input: wire::ChatSettings,
    now: jiff::Timestamp,
) -> Result<wire::ChatSettings, ServiceError> {
    let mut v = Violations::new();
    for (p, d) in [
        ("/writable_days", input.writable_days),
        ("/readable_days", input.readable_days),
    ] {
        if !(0..=MAX_DAYS).contains(&d) {
            v.push(p, "out_of_range", format!("0 to {MAX_DAYS} days"));
        }
    }
    if !(0..=wire::ATTACHMENT_MAX_LIMIT).contains(&input.attachment_max_bytes) {
        v.push(
            "/attachment_max_bytes",
            "out_of_range",
            format!(
                "0 (attachments off) to {} bytes",
                wire::ATTACHMENT_MAX_LIMIT
            ),
        );
    }
    if !v.is_empty() {
        return Err(ServiceError::Invalid(v));
    }
    let mut tx = db.begin().await?;
    let before = repo::retention(&mut tx, org.0).await?;
    let max_before = repo::attachment_max(&mut tx, org.0).await?;
    let after = Retention {
        writable_days: input.writable_days,
        readable_days: input.readable_days,
    };
    if (before, max_before) != (after, input.attachment_max_bytes) {
        repo::set_settings(&mut tx, org.0, after, input.attachment_max_bytes, ms(now)).await?;
        let view = |r: Retention, max: i64| serde_json::json!({"writable_days": r.writable_days, "readable_days": r.readable_days, "attachment_max_bytes": max});
        carebridge_store::audit::record(
            &mut tx,
            org,
            actor,
            "chat.settings",
            "organisation",
            &org.0.to_string(),
            Some(&view(before, max_before)),
            Some(&view(after, input.attachment_max_bytes)),
            now,
        )
        .await?;
    }
    tx.commit().await?;
    settings(db, org.0).await
}

// ---- attachments ------------------------------------------------------------------------------

/// Checks that the calling device may use the attachments of `duty` now: its person is on
/// the roster, the device is in the group, the chat is not deleted; uploads also need the
/// chat to be writable. Returns the organisation's size limit.
async fn attachment_access(
    x: &mut impl carebridge_store::Exec,
    caller: &Caller,
    duty: Uuid,
    upload: bool,
    now_ms: i64,
) -> Result<i64, ServiceError> {
    let ctx = repo::post_context(x, duty, caller.person, caller.device).await?;
    let (ctx, phase) = standing_of(ctx, caller, now_ms)?;
    if ctx.leaf.is_none() {
        return Err(forbidden(
            "this device is not a member of the group (yet): wait for its Welcome",
        ));
    }
    if upload && phase != Phase::Writable {
        return Err(conflict(
            "read_only",
            "the chat is read-only: reading works, sending does not",
        ));
    }
    Ok(repo::attachment_max(x, caller.org).await?)
}

/// The refusal of an attachment over the organisation's limit.
pub fn too_large(max: i64) -> ServiceError {
    invalid(
        "",
        "too_large",
        format!("attachments are at most {max} bytes here (before encryption)"),
    )
}

/// How many bytes (encrypted) the calling device may upload to the chat of `duty` now: checked
/// before the body is read, so a refused upload costs no memory.
pub async fn attachment_limit(
    db: &Db,
    caller: &Caller,
    duty: Uuid,
    now: jiff::Timestamp,
) -> Result<usize, ServiceError> {
    let mut c = db.read().await?;
    let max = attachment_access(&mut c, caller, duty, true, ms(now)).await?;
    if max == 0 {
        return Err(forbidden(
            "attachments are turned off for this organisation",
        ));
    }
    Ok(usize::try_from(max + wire::ATTACHMENT_OVERHEAD).unwrap_or(usize::MAX))
}

/// Stores an attachment the device encrypted (an opaque blob) for the members of `duty`.
pub async fn upload_attachment(
    db: &Db,
    caller: &Caller,
    duty: Uuid,
    body: &[u8],
    now: jiff::Timestamp,
) -> Result<wire::Attachment, ServiceError> {
    let now_ms = ms(now);
    let size = i64::try_from(body.len()).unwrap_or(i64::MAX);
    let mut tx = db.begin().await?;
    let max = attachment_access(&mut tx, caller, duty, true, now_ms).await?;
    if max == 0 {
        return Err(forbidden(
            "attachments are turned off for this organisation",
        ));
    }
    if size <= wire::ATTACHMENT_OVERHEAD {
        return Err(invalid(
            "",
            "empty",
            "the attachment is empty (or not encrypted)",
        ));
    }
    if size > max + wire::ATTACHMENT_OVERHEAD {
        return Err(too_large(max));
    }
    // The chat's share of the server: a fixed number of files at the limit. Counted in the
    // upload's transaction: SQLite serialises uploads; on PostgreSQL uploads to one chat at
    // the same moment may each pass and exceed it by their own size.
    let quota = (max + wire::ATTACHMENT_OVERHEAD).saturating_mul(wire::DUTY_ATTACHMENT_FILES);
    let used = repo::attachments_size(&mut tx, duty).await?;
    if used.saturating_add(size) > quota {
        return Err(conflict(
            "quota_exceeded",
            format!(
                "this chat's attachments may take {quota} bytes in all ({} files at the size limit); {used} are taken",
                wire::DUTY_ATTACHMENT_FILES
            ),
        ));
    }
    let id = Uuid::new_v4();
    repo::insert_attachment(&mut tx, id, duty, caller.org, caller.device, body, now_ms).await?;
    tx.commit().await?;
    metrics::counter!("carebridge_chat_attachments_total").increment(1);
    Ok(wire::Attachment {
        id,
        duty_id: duty,
        size,
        created_at: ts(now_ms),
    })
}

/// The encrypted blob of an attachment, for a device in the group.
pub async fn download_attachment(
    db: &Db,
    caller: &Caller,
    duty: Uuid,
    id: Uuid,
    now: jiff::Timestamp,
) -> Result<Vec<u8>, ServiceError> {
    let mut c = db.read().await?;
    attachment_access(&mut c, caller, duty, false, ms(now)).await?;
    repo::attachment(&mut c, duty, id)
        .await?
        .ok_or(ServiceError::NotFound { what: "attachment" })
}

#[cfg(test)]
mod tests {

    #[test]
    fn relayed_deliveries_are_packed_below_the_notify_limit_and_all_arrive() {
        use super::{Out, Relay, relay_payloads};
        let node = Uuid::from_u128(1);
        let out = Out {
            msgs: (0..300u128).map(|d| (Uuid::from_u128(d + 10), 5)).collect(),
            rows: Vec::new(),
            gone: vec![(
                Uuid::from_u128(9),
                (0..250u128).map(|d| Uuid::from_u128(d + 1000)).collect(),
            )],
        };
        let payloads = relay_payloads(node, &out);
        assert!(
            payloads.len() > 1 && payloads.len() < 20,
            "{}",
            payloads.len()
        );
        let (mut groups, mut gone) = (0, 0);
        for p in &payloads {
            assert!(p.len() < 8_000, "{}", p.len());
            let r: Relay = serde_json::from_str(p).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(r.n, node);
            for item in r.r {
                groups += usize::from(item.m.is_some());
                gone += item.g.len();
            }
        }
        assert_eq!((groups, gone), (300, 250));
    }

    use carebridge_domain::auth::{Principal, Via};
    use carebridge_domain::{ApiKeyId, OrgId, PersonId};
    use uuid::Uuid;

    fn person(via: Via) -> Principal {
        Principal::Person {
            via,
            org: OrgId(Uuid::nil()),
            person: PersonId(Uuid::nil()),
            scopes: Vec::new(),
            roles: Vec::new(),
        }
    }

    #[test]
    fn only_personal_keys_and_carebridge_apps_register_devices() {
        let token = |c: &str, scopes: &[&str]| Via::Token {
            client_id: c.into(),
            grant: Uuid::nil(),
            oauth_scopes: scopes.iter().map(|s| s.to_string()).collect(),
        };
        assert!(super::may_register(&person(Via::ApiKey(ApiKeyId(
            Uuid::nil()
        )))));
        assert!(super::may_register(&person(token(
            "carebridge-cli",
            &["openid", "chat"]
        ))));
        assert!(super::may_register(&person(token(
            "carebridge-app",
            &["chat"]
        ))));
        // Carebridge's own app without the chat scope, and a third-party app with it: no.
        assert!(!super::may_register(&person(token(
            "carebridge-cli",
            &["openid", "duties:read"]
        ))));
        assert!(!super::may_register(&person(token(
            "cbc_0190a1b2-third-party",
            &["chat"]
        ))));
        assert!(!super::may_register(&Principal::System { name: "cli" }));
    }
}
