//! SQL of the chat role. Every statement names the organisation or a duty/device id the caller
//! already resolved within its organisation; group rows are only changed inside a transaction
//! that first took the group's lock ([`lock_group`]).

use carebridge_domain::chat::Retention;
use carebridge_store::{Backend, Exec, StoreError, Tx, exec, run};
use uuid::Uuid;

/// A registered device.
#[derive(Clone, Debug)]
pub struct DeviceRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub person_id: Uuid,
    pub name: String,
    pub signature_key: Vec<u8>,
    pub created_at: i64,
    pub last_seen_at: Option<i64>,
}

type DeviceTuple = (Uuid, Uuid, Uuid, String, Vec<u8>, i64, Option<i64>);

fn device(t: DeviceTuple) -> DeviceRow {
    DeviceRow {
        id: t.0,
        org_id: t.1,
        person_id: t.2,
        name: t.3,
        signature_key: t.4,
        created_at: t.5,
        last_seen_at: t.6,
    }
}

const DEVICE_COLS: &str =
    "d.id, d.org_id, d.person_id, d.name, d.signature_key, d.created_at, d.last_seen_at";

// ---- server keys and settings -----------------------------------------------------------------

/// The organisation's external-sender key pair `(public, private)`, if made yet.
pub async fn server_key(
    x: &mut impl Exec,
    org: Uuid,
) -> Result<Option<(Vec<u8>, Vec<u8>)>, StoreError> {
    Ok(run!(x, c => sqlx::query_as(
        "SELECT public_key, private_key FROM chat_server_keys WHERE org_id = $1")
        .bind(org).fetch_optional(c).await)?)
}

/// Stores a key pair unless the organisation has one already (a concurrent first use).
pub async fn insert_server_key(
    x: &mut impl Exec,
    org: Uuid,
    public: &[u8],
    private: &[u8],
    now: i64,
) -> Result<(), StoreError> {
    exec!(x, c => sqlx::query(
        "INSERT INTO chat_server_keys (org_id, public_key, private_key, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (org_id) DO NOTHING")
        .bind(org).bind(public).bind(private).bind(now).execute(c).await)?;
    Ok(())
}

/// The organisation's retention periods (defaults when never set).
pub async fn retention(x: &mut impl Exec, org: Uuid) -> Result<Retention, StoreError> {
    let r: Option<(i64, i64)> = run!(x, c => sqlx::query_as(
        "SELECT writable_days, readable_days FROM chat_settings WHERE org_id = $1")
        .bind(org).fetch_optional(c).await)?;
    Ok(r.map(|(w, r)| Retention {
        writable_days: w,
        readable_days: r,
    })
    .unwrap_or_default())
}

/// The organisation's attachment size limit in bytes (the default when never set).
pub async fn attachment_max(x: &mut impl Exec, org: Uuid) -> Result<i64, StoreError> {
    let r: Option<i64> = run!(x, c => sqlx::query_scalar(
        "SELECT attachment_max_bytes FROM chat_settings WHERE org_id = $1")
        .bind(org).fetch_optional(c).await)?;
    Ok(r.unwrap_or(carebridge_proto::chat::DEFAULT_ATTACHMENT_MAX))
}

pub async fn set_settings(
    x: &mut impl Exec,
    org: Uuid,
    r: Retention,
    attachment_max: i64,
    now: i64,
) -> Result<(), StoreError> {
    exec!(x, c => sqlx::query(
        "INSERT INTO chat_settings (org_id, writable_days, readable_days, attachment_max_bytes, updated_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (org_id) DO UPDATE SET writable_days = excluded.writable_days, readable_days = excluded.readable_days, \
         attachment_max_bytes = excluded.attachment_max_bytes, updated_at = excluded.updated_at")
        .bind(org).bind(r.writable_days).bind(r.readable_days).bind(attachment_max).bind(now).execute(c).await)?;
    Ok(())
}

// ---- devices ----------------------------------------------------------------------------------

#[allow(clippy::too_many_arguments)]
pub async fn insert_device(
    x: &mut impl Exec,
    id: Uuid,
    org: Uuid,
    person: Uuid,
    name: &str,
    signature_key: &[u8],
    token_hash: &[u8],
    now: i64,
) -> Result<(), StoreError> {
    exec!(x, c => sqlx::query(
        "INSERT INTO chat_devices (id, org_id, person_id, name, signature_key, token_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(id).bind(org).bind(person).bind(name).bind(signature_key).bind(token_hash).bind(now).execute(c).await)?;
    Ok(())
}

/// The device a token hash belongs to, when its person is still active.
pub async fn device_by_token(
    x: &mut impl Exec,
    hash: &[u8],
) -> Result<Option<DeviceRow>, StoreError> {
    let sql = format!(
        "SELECT {DEVICE_COLS} FROM chat_devices d JOIN people p ON p.id = d.person_id \
         WHERE d.token_hash = $1 AND p.active"
    );
    let r: Option<DeviceTuple> =
        run!(x, c => sqlx::query_as(&sql).bind(hash).fetch_optional(c).await)?;
    Ok(r.map(device))
}

pub async fn device_by_id(
    x: &mut impl Exec,
    org: Uuid,
    id: Uuid,
) -> Result<Option<DeviceRow>, StoreError> {
    let sql = format!("SELECT {DEVICE_COLS} FROM chat_devices d WHERE d.org_id = $1 AND d.id = $2");
    let r: Option<DeviceTuple> =
        run!(x, c => sqlx::query_as(&sql).bind(org).bind(id).fetch_optional(c).await)?;
    Ok(r.map(device))
}

pub async fn devices_of(
    x: &mut impl Exec,
    org: Uuid,
    person: Uuid,
) -> Result<Vec<DeviceRow>, StoreError> {
    let sql = format!(
        "SELECT {DEVICE_COLS} FROM chat_devices d WHERE d.org_id = $1 AND d.person_id = $2 ORDER BY d.created_at, d.id"
    );
    let r: Vec<DeviceTuple> =
        run!(x, c => sqlx::query_as(&sql).bind(org).bind(person).fetch_all(c).await)?;
    Ok(r.into_iter().map(device).collect())
}

/// The unit paths of a person of `org`; `None` when there is no such person.
pub async fn person_unit_paths(
    x: &mut impl Exec,
    org: Uuid,
    person: Uuid,
) -> Result<Option<Vec<String>>, StoreError> {
    let exists: Option<Uuid> = run!(x, c => sqlx::query_scalar("SELECT id FROM people WHERE org_id = $1 AND id = $2")
        .bind(org).bind(person).fetch_optional(c).await)?;
    if exists.is_none() {
        return Ok(None);
    }
    let paths: Vec<String> = run!(x, c => sqlx::query_scalar(
        "SELECT u.path FROM person_units pu JOIN units u ON u.id = pu.unit_id \
         WHERE pu.org_id = $1 AND pu.person_id = $2")
        .bind(org).bind(person).fetch_all(c).await)?;
    Ok(Some(paths))
}

pub async fn touch_device(x: &mut impl Exec, id: Uuid, now: i64) -> Result<(), StoreError> {
    exec!(x, c => sqlx::query("UPDATE chat_devices SET last_seen_at = $1 WHERE id = $2")
        .bind(now).bind(id).execute(c).await)?;
    Ok(())
}

/// Deletes a device and its KeyPackages. Returns the duties whose groups it was in.
pub async fn delete_device(tx: &mut Tx, org: Uuid, id: Uuid) -> Result<Vec<Uuid>, StoreError> {
    let duties: Vec<Uuid> = run!(tx, c => sqlx::query_scalar(
        "SELECT duty_id FROM chat_group_devices WHERE org_id = $1 AND device_id = $2")
        .bind(org).bind(id).fetch_all(c).await)?;
    exec!(tx, c => sqlx::query("DELETE FROM chat_key_packages WHERE org_id = $1 AND device_id = $2")
        .bind(org).bind(id).execute(c).await)?;
    exec!(tx, c => sqlx::query("DELETE FROM chat_devices WHERE org_id = $1 AND id = $2")
        .bind(org).bind(id).execute(c).await)?;
    Ok(duties)
}

// ---- key packages -----------------------------------------------------------------------------

pub async fn insert_key_package(
    x: &mut impl Exec,
    org: Uuid,
    device: Uuid,
    data: &[u8],
    last_resort: bool,
    now: i64,
) -> Result<(), StoreError> {
    exec!(x, c => sqlx::query(
        "INSERT INTO chat_key_packages (device_id, org_id, data, last_resort, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(device).bind(org).bind(data).bind(last_resort).bind(now).execute(c).await)?;
    Ok(())
}

pub async fn drop_last_resort(x: &mut impl Exec, device: Uuid) -> Result<(), StoreError> {
    exec!(x, c => sqlx::query("DELETE FROM chat_key_packages WHERE device_id = $1 AND last_resort")
        .bind(device).execute(c).await)?;
    Ok(())
}

/// `(one-time KeyPackages, has a last-resort one)` of a device.
pub async fn stock(x: &mut impl Exec, device: Uuid) -> Result<(i64, bool), StoreError> {
    let (n, l): (i64, i64) = run!(x, c => sqlx::query_as(
        "SELECT COALESCE(SUM(CASE WHEN last_resort THEN 0 ELSE 1 END), 0), COALESCE(SUM(CASE WHEN last_resort THEN 1 ELSE 0 END), 0) \
         FROM chat_key_packages WHERE device_id = $1")
        .bind(device).fetch_one(c).await)?;
    Ok((n, l > 0))
}

/// Hands out a KeyPackage of `device`: the oldest one-time package (deleted now), else the
/// last-resort one (kept).
pub async fn claim_key_package(tx: &mut Tx, device: Uuid) -> Result<Option<Vec<u8>>, StoreError> {
    let row: Option<(i64, Vec<u8>, bool)> = run!(tx, c => sqlx::query_as(
        "SELECT id, data, last_resort FROM chat_key_packages WHERE device_id = $1 ORDER BY last_resort, id LIMIT 1")
        .bind(device).fetch_optional(c).await)?;
    let Some((id, data, last_resort)) = row else {
        return Ok(None);
    };
    if !last_resort {
        exec!(tx, c => sqlx::query("DELETE FROM chat_key_packages WHERE id = $1")
            .bind(id).execute(c).await)?;
    }
    Ok(Some(data))
}

// ---- rosters ----------------------------------------------------------------------------------

/// The chat's copy of a duty's roster head.
#[derive(Clone, Debug)]
pub struct RosterRow {
    pub org_id: Uuid,
    pub version: i64,
    pub chat: bool,
    pub cancelled: bool,
    pub ends_at: i64,
    pub deleted: bool,
}

pub async fn roster(x: &mut impl Exec, duty: Uuid) -> Result<Option<RosterRow>, StoreError> {
    let r: Option<(Uuid, i64, bool, bool, i64, bool)> = run!(x, c => sqlx::query_as(
        "SELECT org_id, version, chat, cancelled, ends_at, deleted FROM chat_rosters WHERE duty_id = $1")
        .bind(duty).fetch_optional(c).await)?;
    Ok(r.map(
        |(org_id, version, chat, cancelled, ends_at, deleted)| RosterRow {
            org_id,
            version,
            chat,
            cancelled,
            ends_at,
            deleted,
        },
    ))
}

/// Saves the roster head of `duty` and, when given, replaces its members with `people`.
pub async fn save_roster(
    tx: &mut Tx,
    duty: Uuid,
    r: &RosterRow,
    people: Option<&[Uuid]>,
) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query(
        "INSERT INTO chat_rosters (duty_id, org_id, version, chat, cancelled, ends_at, deleted) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (duty_id) DO UPDATE SET version = excluded.version, chat = excluded.chat, cancelled = excluded.cancelled, ends_at = excluded.ends_at")
        .bind(duty).bind(r.org_id).bind(r.version).bind(r.chat).bind(r.cancelled).bind(r.ends_at).bind(r.deleted)
        .execute(c).await)?;
    let Some(people) = people else {
        return Ok(());
    };
    // Only the differences: a 500-person roster that gains one person writes one row.
    let current: Vec<Uuid> = run!(tx, c => sqlx::query_scalar(
        "SELECT person_id FROM chat_members WHERE duty_id = $1")
        .bind(duty).fetch_all(c).await)?;
    let now: std::collections::HashSet<&Uuid> = people.iter().collect();
    let before: std::collections::HashSet<&Uuid> = current.iter().collect();
    for p in current.iter().filter(|p| !now.contains(p)) {
        exec!(tx, c => sqlx::query("DELETE FROM chat_members WHERE duty_id = $1 AND person_id = $2")
            .bind(duty).bind(p).execute(c).await)?;
    }
    for p in people.iter().filter(|p| !before.contains(p)) {
        exec!(tx, c => sqlx::query("INSERT INTO chat_members (duty_id, person_id, org_id) VALUES ($1, $2, $3)")
            .bind(duty).bind(p).bind(r.org_id).execute(c).await)?;
    }
    Ok(())
}

pub async fn is_member(x: &mut impl Exec, duty: Uuid, person: Uuid) -> Result<bool, StoreError> {
    let n: i64 = run!(x, c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM chat_members WHERE duty_id = $1 AND person_id = $2")
        .bind(duty).bind(person).fetch_one(c).await)?;
    Ok(n > 0)
}

/// The devices of the people on the roster of `duty`, with the person's name:
/// `(device, person, given name, family name)`.
pub async fn member_devices(
    x: &mut impl Exec,
    duty: Uuid,
) -> Result<Vec<(Uuid, Uuid, String, String)>, StoreError> {
    Ok(run!(x, c => sqlx::query_as(
        "SELECT d.id, d.person_id, p.given_name, p.family_name FROM chat_members m \
         JOIN chat_devices d ON d.person_id = m.person_id AND d.org_id = m.org_id \
         JOIN people p ON p.id = d.person_id WHERE m.duty_id = $1 ORDER BY p.family_name, p.given_name, d.id")
        .bind(duty).fetch_all(c).await)?)
}

/// Duties (not deleted) whose chat `person` may read: on the roster now, or with a device
/// still in the group.
pub async fn duties_of(
    x: &mut impl Exec,
    org: Uuid,
    person: Uuid,
) -> Result<Vec<Uuid>, StoreError> {
    Ok(run!(x, c => sqlx::query_scalar(
        "SELECT r.duty_id FROM chat_rosters r JOIN chat_members m ON m.duty_id = r.duty_id \
         WHERE r.org_id = $1 AND m.person_id = $2 AND r.chat AND NOT r.deleted ORDER BY r.ends_at, r.duty_id")
        .bind(org).bind(person).fetch_all(c).await)?)
}

/// Devices that should be in the group of `duty`: every device of every rostered person.
/// `(device, signature key)`.
pub async fn wanted_devices(
    x: &mut impl Exec,
    duty: Uuid,
) -> Result<Vec<(Uuid, Vec<u8>)>, StoreError> {
    Ok(run!(x, c => sqlx::query_as(
        "SELECT d.id, d.signature_key FROM chat_members m JOIN chat_devices d ON d.person_id = m.person_id AND d.org_id = m.org_id \
         JOIN people p ON p.id = d.person_id WHERE m.duty_id = $1 AND p.active ORDER BY d.id")
        .bind(duty).fetch_all(c).await)?)
}

// ---- groups -----------------------------------------------------------------------------------

/// Everything a post is checked against, in one read.
#[derive(Clone, Debug)]
pub struct PostContext {
    pub org_id: Uuid,
    pub chat: bool,
    pub cancelled: bool,
    pub ends_at: i64,
    pub deleted: bool,
    pub writable_days: i64,
    pub readable_days: i64,
    /// The group's epoch, when the group exists.
    pub epoch: Option<i64>,
    /// The person is on the roster.
    pub member: bool,
    /// The device's leaf, when it is in the group.
    pub leaf: Option<i64>,
    /// The number the next message of the group gets, when the group exists.
    pub next_seq: Option<i64>,
    /// The device is still registered and its person active (read in the transaction: a
    /// caller resolved from [`crate::service::Callers`] is only checked here).
    pub device_ok: bool,
}

/// The columns of a posting context after the key, for the keys `k(duty, person, device)`.
const CONTEXT_OF_KEYS: &str = "r.org_id, r.chat, r.cancelled, r.ends_at, r.deleted, \
    COALESCE(s.writable_days, 2), COALESCE(s.readable_days, 30), g.epoch, \
    (SELECT COUNT(*) FROM chat_members m WHERE m.duty_id = r.duty_id AND m.person_id = k.person), gd.leaf, g.next_seq, \
    (SELECT COUNT(*) FROM chat_devices d JOIN people p ON p.id = d.person_id WHERE d.id = k.device AND d.person_id = k.person AND p.active)";

/// The joins of a posting context from the keys `k`.
const CONTEXT_JOINS: &str = "JOIN chat_rosters r ON r.duty_id = k.duty \
    LEFT JOIN chat_settings s ON s.org_id = r.org_id \
    LEFT JOIN chat_groups g ON g.duty_id = r.duty_id \
    LEFT JOIN chat_group_devices gd ON gd.duty_id = r.duty_id AND gd.device_id = k.device";

/// A posting context with its key, as read.
type Keyed = (
    Uuid,
    Uuid,
    Uuid,
    Uuid,
    bool,
    bool,
    i64,
    bool,
    i64,
    i64,
    Option<i64>,
    i64,
    Option<i64>,
    Option<i64>,
    i64,
);

/// A key `(duty, person, device)`.
type Key = (Uuid, Uuid, Uuid);

/// Keys per SQLite statement of [`post_contexts`].
const SQLITE_KEYS: usize = 64;

/// The posting context of many `(duty, person, device)` at once, in one statement per batch
/// of messages: over the keys unnested on PostgreSQL (one round trip instead of one per
/// message), over a `VALUES` list on SQLite (one call to the writer's thread instead of one
/// per message).
pub async fn post_contexts(
    x: &mut impl Exec,
    keys: &[Key],
) -> Result<std::collections::HashMap<Key, PostContext>, StoreError> {
    let mut out = std::collections::HashMap::with_capacity(keys.len());
    let rows: Vec<Keyed> = match x.raw() {
        carebridge_store::Raw::Postgres(c) => {
            let sql = format!(
                "SELECT k.duty, k.person, k.device, {CONTEXT_OF_KEYS} \
                 FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[]) AS k(duty, person, device) {CONTEXT_JOINS}"
            );
            let duties: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
            let people: Vec<Uuid> = keys.iter().map(|k| k.1).collect();
            let devices: Vec<Uuid> = keys.iter().map(|k| k.2).collect();
            sqlx::query_as(&sql)
                .bind(&duties)
                .bind(&people)
                .bind(&devices)
                .fetch_all(c)
                .await?
        }
        carebridge_store::Raw::Sqlite(c) => {
            let mut rows = Vec::with_capacity(keys.len());
            for chunk in keys.chunks(SQLITE_KEYS) {
                let values = vec!["(?, ?, ?)"; chunk.len()].join(", ");
                let sql = format!(
                    "WITH k(duty, person, device) AS (VALUES {values}) \
                     SELECT k.duty, k.person, k.device, {CONTEXT_OF_KEYS} FROM k {CONTEXT_JOINS}"
                );
                let mut q = sqlx::query_as::<_, Keyed>(&sql).persistent(chunk.len() <= 16);
                for (duty, person, device) in chunk {
                    q = q.bind(*duty).bind(*person).bind(*device);
                }
                rows.extend(q.fetch_all(&mut *c).await?);
            }
            rows
        }
    };
    out.extend(rows.into_iter().map(context));
    Ok(out)
}

fn context(
    (
        duty,
        person,
        device,
        org_id,
        chat,
        cancelled,
        ends_at,
        deleted,
        writable_days,
        readable_days,
        epoch,
        member,
        leaf,
        next_seq,
        device_ok,
    ): Keyed,
) -> (Key, PostContext) {
    let c = PostContext {
        org_id,
        chat,
        cancelled,
        ends_at,
        deleted,
        writable_days,
        readable_days,
        epoch,
        member: member > 0,
        leaf,
        next_seq,
        device_ok: device_ok > 0,
    };
    ((duty, person, device), c)
}

/// The posting context of one `(duty, person, device)` ([`post_contexts`] with one key).
pub async fn post_context(
    x: &mut impl Exec,
    duty: Uuid,
    person: Uuid,
    device: Uuid,
) -> Result<Option<PostContext>, StoreError> {
    let key = (duty, person, device);
    Ok(post_contexts(x, &[key]).await?.remove(&key))
}

/// A group as the server follows it.
#[derive(Clone, Debug)]
pub struct GroupRow {
    pub org_id: Uuid,
    pub epoch: i64,
    pub state: Vec<u8>,
    pub next_seq: i64,
}

pub async fn group(x: &mut impl Exec, duty: Uuid) -> Result<Option<GroupRow>, StoreError> {
    let r: Option<(Uuid, i64, Vec<u8>, i64)> = run!(x, c => sqlx::query_as(
        "SELECT org_id, epoch, state, next_seq FROM chat_groups WHERE duty_id = $1")
        .bind(duty).fetch_optional(c).await)?;
    Ok(r.map(|(org_id, epoch, state, next_seq)| GroupRow {
        org_id,
        epoch,
        state,
        next_seq,
    }))
}

/// The group's organisation and epoch, without its state.
pub struct GroupMeta {
    pub org_id: Uuid,
    pub epoch: i64,
}

pub async fn group_meta(x: &mut impl Exec, duty: Uuid) -> Result<Option<GroupMeta>, StoreError> {
    let r: Option<(Uuid, i64)> = run!(x, c => sqlx::query_as(
        "SELECT org_id, epoch FROM chat_groups WHERE duty_id = $1")
        .bind(duty).fetch_optional(c).await)?;
    Ok(r.map(|(org_id, epoch)| GroupMeta { org_id, epoch }))
}

/// The group's epoch and next stream number, without its state: what a listing shows.
pub async fn group_head(x: &mut impl Exec, duty: Uuid) -> Result<Option<(i64, i64)>, StoreError> {
    Ok(run!(x, c => sqlx::query_as(
        "SELECT epoch, next_seq FROM chat_groups WHERE duty_id = $1")
        .bind(duty).fetch_optional(c).await)?)
}

/// Takes the lock that orders every change of the group of `duty` (its roster row: it exists
/// before the group does, so creation races are ordered too). On SQLite the single writer
/// already orders writes.
pub async fn lock_group(tx: &mut Tx, duty: Uuid) -> Result<(), StoreError> {
    if tx.backend() == Backend::Postgres {
        exec!(tx, c => sqlx::query("SELECT 1 FROM chat_rosters WHERE duty_id = $1 FOR UPDATE")
            .bind(duty).execute(c).await)?;
    }
    Ok(())
}

/// Like [`lock_group`] for many groups in one statement, but without waiting: the ones this
/// transaction now holds (PostgreSQL, in id order, skipping those another transaction holds;
/// SQLite has one writer, which the caller is: all).
pub async fn try_lock_groups(
    tx: &mut Tx,
    duties: &[Uuid],
) -> Result<std::collections::HashSet<Uuid>, StoreError> {
    if tx.backend() != Backend::Postgres {
        return Ok(duties.iter().copied().collect());
    }
    let got: Vec<Uuid> = match carebridge_store::Exec::raw(&mut *tx) {
        carebridge_store::Raw::Postgres(c) => {
            sqlx::query_scalar(
                "SELECT duty_id FROM chat_rosters WHERE duty_id = ANY($1) ORDER BY duty_id FOR UPDATE SKIP LOCKED",
            )
            .bind(duties)
            .fetch_all(c)
            .await?
        }
        carebridge_store::Raw::Sqlite(_) => duties.to_vec(),
    };
    Ok(got.into_iter().collect())
}

pub async fn insert_group(
    tx: &mut Tx,
    duty: Uuid,
    org: Uuid,
    epoch: i64,
    state: &[u8],
    now: i64,
) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query(
        "INSERT INTO chat_groups (duty_id, org_id, epoch, state, next_seq, created_at, updated_at, state_id) VALUES ($1, $2, $3, $4, 1, $5, $5, $6)")
        .bind(duty).bind(org).bind(epoch).bind(state).bind(now).bind(new_state_id()).execute(c).await)?;
    Ok(())
}

/// Saves the group's new state under a new `state_id`, which it returns.
pub async fn save_group(
    tx: &mut Tx,
    duty: Uuid,
    epoch: i64,
    state: &[u8],
    now: i64,
) -> Result<i64, StoreError> {
    let id = new_state_id();
    exec!(tx, c => sqlx::query(
        "UPDATE chat_groups SET epoch = $1, state = $2, updated_at = $3, state_id = $4 WHERE duty_id = $5")
        .bind(epoch).bind(state).bind(now).bind(id).bind(duty).execute(c).await)?;
    Ok(id)
}

/// A fresh `state_id`: random, so a group deleted and created again never repeats one.
fn new_state_id() -> i64 {
    let (hi, _) = Uuid::new_v4().as_u64_pair();
    hi as i64
}

/// The `state_id` of the group's stored state.
pub async fn state_id(x: &mut impl Exec, duty: Uuid) -> Result<Option<i64>, StoreError> {
    Ok(run!(x, c => sqlx::query_scalar(
        "SELECT state_id FROM chat_groups WHERE duty_id = $1")
        .bind(duty).fetch_optional(c).await)?)
}

/// `(device, leaf, since_seq)` of every device in the group now.
pub async fn leaves(x: &mut impl Exec, duty: Uuid) -> Result<Vec<(Uuid, i64, i64)>, StoreError> {
    Ok(run!(x, c => sqlx::query_as(
        "SELECT device_id, leaf, since_seq FROM chat_group_devices WHERE duty_id = $1 ORDER BY leaf")
        .bind(duty).fetch_all(c).await)?)
}

pub async fn leaf_of(
    x: &mut impl Exec,
    duty: Uuid,
    device: Uuid,
) -> Result<Option<(i64, i64)>, StoreError> {
    Ok(run!(x, c => sqlx::query_as(
        "SELECT leaf, since_seq FROM chat_group_devices WHERE duty_id = $1 AND device_id = $2")
        .bind(duty).bind(device).fetch_optional(c).await)?)
}

pub async fn set_leaf(
    tx: &mut Tx,
    duty: Uuid,
    org: Uuid,
    device: Uuid,
    leaf: i64,
    since_seq: i64,
) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query(
        "INSERT INTO chat_group_devices (duty_id, device_id, org_id, leaf, since_seq) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (duty_id, device_id) DO UPDATE SET leaf = excluded.leaf")
        .bind(duty).bind(device).bind(org).bind(leaf).bind(since_seq).execute(c).await)?;
    Ok(())
}

pub async fn drop_leaf(tx: &mut Tx, duty: Uuid, device: Uuid) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query("DELETE FROM chat_group_devices WHERE duty_id = $1 AND device_id = $2")
        .bind(duty).bind(device).execute(c).await)?;
    Ok(())
}

/// The server's proposals of the group's current epoch: `(device, action)`.
pub async fn proposals(
    x: &mut impl Exec,
    duty: Uuid,
    epoch: i64,
) -> Result<Vec<(Uuid, String)>, StoreError> {
    Ok(run!(x, c => sqlx::query_as(
        "SELECT device_id, action FROM chat_proposals WHERE duty_id = $1 AND epoch = $2")
        .bind(duty).bind(epoch).fetch_all(c).await)?)
}

pub async fn insert_proposal(
    tx: &mut Tx,
    duty: Uuid,
    org: Uuid,
    device: Uuid,
    action: &str,
    epoch: i64,
    seq: i64,
) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query(
        "INSERT INTO chat_proposals (duty_id, device_id, org_id, action, epoch, seq) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (duty_id, device_id) DO UPDATE SET action = excluded.action, epoch = excluded.epoch, seq = excluded.seq")
        .bind(duty).bind(device).bind(org).bind(action).bind(epoch).bind(seq).execute(c).await)?;
    Ok(())
}

/// The stream number of the server's pending Remove of `device` in `epoch`, if there is one.
pub async fn proposed_remove(
    x: &mut impl Exec,
    duty: Uuid,
    device: Uuid,
    epoch: i64,
) -> Result<Option<i64>, StoreError> {
    let r: Option<Option<i64>> = run!(x, c => sqlx::query_scalar(
        "SELECT seq FROM chat_proposals WHERE duty_id = $1 AND device_id = $2 AND epoch = $3 AND action = 'remove'")
        .bind(duty).bind(device).bind(epoch).fetch_optional(c).await)?;
    Ok(r.map(|s| s.unwrap_or(0)))
}

/// The server's proposal messages of `epoch` that the stored state does not hold yet, in the
/// order they were made (a commit may reference any of them).
pub async fn proposal_messages(
    x: &mut impl Exec,
    duty: Uuid,
    epoch: i64,
) -> Result<Vec<Vec<u8>>, StoreError> {
    Ok(run!(x, c => sqlx::query_scalar(
        "SELECT m.data FROM chat_proposals p JOIN chat_messages m ON m.duty_id = p.duty_id AND m.seq = p.seq \
         WHERE p.duty_id = $1 AND p.epoch = $2 ORDER BY p.seq")
        .bind(duty).bind(epoch).fetch_all(c).await)?)
}

pub async fn clear_proposals(tx: &mut Tx, duty: Uuid) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query("DELETE FROM chat_proposals WHERE duty_id = $1")
        .bind(duty).execute(c).await)?;
    Ok(())
}

// ---- messages ---------------------------------------------------------------------------------

/// One stored message.
#[derive(Clone, Debug)]
pub struct MessageRow {
    pub seq: i64,
    pub epoch: i64,
    pub kind: String,
    pub sender: Option<Uuid>,
    pub data: Vec<u8>,
    pub created_at: i64,
}

type MessageTuple = (i64, i64, String, Option<Uuid>, Vec<u8>, i64);

fn message_row((seq, epoch, kind, sender, data, created_at): MessageTuple) -> MessageRow {
    MessageRow {
        seq,
        epoch,
        kind,
        sender,
        data,
        created_at,
    }
}

/// Appends a message to the group's stream and returns its number. The caller holds the lock.
pub async fn append(
    tx: &mut Tx,
    duty: Uuid,
    org: Uuid,
    epoch: i64,
    kind: &str,
    sender: Option<Uuid>,
    data: &[u8],
    now: i64,
) -> Result<i64, StoreError> {
    let seq: i64 = run!(tx, c => sqlx::query_scalar(
        "UPDATE chat_groups SET next_seq = next_seq + 1 WHERE duty_id = $1 RETURNING next_seq - 1")
        .bind(duty).fetch_one(c).await)?;
    exec!(tx, c => sqlx::query(
        "INSERT INTO chat_messages (duty_id, seq, org_id, epoch, kind, sender, data, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(duty).bind(seq).bind(org).bind(epoch).bind(kind).bind(sender).bind(data).bind(now).execute(c).await)?;
    Ok(seq)
}

/// A message of a batch, numbered by the caller (which holds the groups' locks and moves
/// their `next_seq` with [`set_next_seqs`]).
pub struct NewMessage<'a> {
    pub duty: Uuid,
    pub org: Uuid,
    pub seq: i64,
    pub epoch: i64,
    pub sender: Uuid,
    pub data: &'a [u8],
    pub created_at: i64,
}

/// Inserts application messages of several groups in multi-row statements.
pub async fn insert_application_messages(
    tx: &mut Tx,
    rows: &[NewMessage<'_>],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(64) {
        let mut sql = String::from(
            "INSERT INTO chat_messages (duty_id, seq, org_id, epoch, kind, sender, data, created_at) VALUES ",
        );
        for i in 0..chunk.len() {
            let b = i * 7;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, 'application', ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7
            ));
        }
        exec!(tx, c => {
            // One statement shape per chunk size: not kept in the statement cache.
            let mut q = sqlx::query(&sql).persistent(false);
            for m in chunk {
                q = q.bind(m.duty).bind(m.seq).bind(m.org).bind(m.epoch).bind(m.sender).bind(m.data).bind(m.created_at);
            }
            q.execute(c).await
        })?;
    }
    Ok(())
}

/// Moves the `next_seq` of several groups at once: `(duty, next)`.
pub async fn set_next_seqs(tx: &mut Tx, next: &[(Uuid, i64)]) -> Result<(), StoreError> {
    for chunk in next.chunks(64) {
        let mut sql = String::from("UPDATE chat_groups SET next_seq = CASE duty_id");
        for i in 0..chunk.len() {
            sql.push_str(&format!(" WHEN ${} THEN ${}", i * 2 + 1, i * 2 + 2));
        }
        sql.push_str(" END WHERE duty_id IN (");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", i * 2 + 1));
        }
        sql.push(')');
        exec!(tx, c => {
            let mut q = sqlx::query(&sql).persistent(false);
            for (d, n) in chunk {
                q = q.bind(*d).bind(*n);
            }
            q.execute(c).await
        })?;
    }
    Ok(())
}

/// Messages of `duty` after `after` that a device which joined after `since` may read: its
/// own Welcome (`since + 1`) and everything else after it, but no other Welcome.
pub async fn messages(
    x: &mut impl Exec,
    duty: Uuid,
    after: i64,
    since: i64,
    limit: i64,
) -> Result<Vec<MessageRow>, StoreError> {
    let from = after.max(since);
    let rows: Vec<MessageTuple> = run!(x, c => sqlx::query_as(
        "SELECT seq, epoch, kind, sender, data, created_at FROM chat_messages \
         WHERE duty_id = $1 AND seq > $2 AND (kind <> 'welcome' OR seq = $3) ORDER BY seq LIMIT $4")
        .bind(duty).bind(from).bind(since + 1).bind(limit).fetch_all(c).await)?;
    Ok(rows.into_iter().map(message_row).collect())
}

/// Devices that receive new messages of the groups `duties`: in the group and still on the
/// roster. One query: `duty → [(device, since_seq)]`.
pub async fn recipients_of(
    x: &mut impl Exec,
    duties: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Vec<(Uuid, i64)>>, StoreError> {
    let mut out: std::collections::HashMap<Uuid, Vec<(Uuid, i64)>> = Default::default();
    for chunk in duties.chunks(100) {
        let list = (1..=chunk.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT g.duty_id, g.device_id, g.since_seq FROM chat_group_devices g JOIN chat_devices d ON d.id = g.device_id \
             JOIN chat_members m ON m.duty_id = g.duty_id AND m.person_id = d.person_id WHERE g.duty_id IN ({list})"
        );
        let rows: Vec<(Uuid, Uuid, i64)> = run!(x, c => {
            let mut q = sqlx::query_as(&sql).persistent(false);
            for d in chunk {
                q = q.bind(*d);
            }
            q.fetch_all(c).await
        })?;
        for (duty, device, since) in rows {
            out.entry(duty).or_default().push((device, since));
        }
    }
    Ok(out)
}

// ---- roster events and retention -------------------------------------------------------------

pub async fn consumer(x: &mut impl Exec, name: &str) -> Result<i64, StoreError> {
    let r: Option<i64> = run!(x, c => sqlx::query_scalar("SELECT seq FROM chat_consumers WHERE name = $1")
        .bind(name).fetch_optional(c).await)?;
    Ok(r.unwrap_or(0))
}

/// Moves the consumer's cursor forward (never back: two nodes may race).
pub async fn set_consumer(x: &mut impl Exec, name: &str, seq: i64) -> Result<(), StoreError> {
    exec!(x, c => sqlx::query(
        "INSERT INTO chat_consumers (name, seq) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE \
         SET seq = CASE WHEN excluded.seq > chat_consumers.seq THEN excluded.seq ELSE chat_consumers.seq END")
        .bind(name).bind(seq).execute(c).await)?;
    Ok(())
}

/// Roster events of every organisation after `after`, oldest first: `(seq, payload)`.
pub async fn roster_events(
    x: &mut impl Exec,
    after: i64,
    limit: i64,
) -> Result<Vec<(i64, String)>, StoreError> {
    Ok(run!(x, c => sqlx::query_as(
        "SELECT seq, payload FROM events WHERE topic = $1 AND seq > $2 ORDER BY seq LIMIT $3")
        .bind(carebridge_store::rosters::TOPIC).bind(after).bind(limit).fetch_all(c).await)?)
}

/// Numbers of the roster events up to `upto` written since `since_ms` (at most 2,000): on
/// PostgreSQL they may have committed after a later one was read.
pub async fn recent_roster_seqs(
    x: &mut impl Exec,
    upto: i64,
    since_ms: i64,
) -> Result<Vec<i64>, StoreError> {
    Ok(run!(x, c => sqlx::query_scalar(
        "SELECT seq FROM events WHERE topic = $1 AND created_at >= $2 AND seq <= $3 ORDER BY seq DESC LIMIT 2000")
        .bind(carebridge_store::rosters::TOPIC).bind(since_ms).bind(upto).fetch_all(c).await)?)
}

/// The roster events with these numbers: `(seq, payload)`, oldest first.
pub async fn roster_events_by_seq(
    x: &mut impl Exec,
    seqs: &[i64],
) -> Result<Vec<(i64, String)>, StoreError> {
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    let list = seqs
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    // Numbers only (formatted integers), so the list is spelled out in the statement.
    let sql = format!(
        "SELECT seq, payload FROM events WHERE topic = $1 AND seq IN ({list}) ORDER BY seq"
    );
    Ok(run!(x, c => sqlx::query_as(&sql).persistent(false)
        .bind(carebridge_store::rosters::TOPIC).fetch_all(c).await)?)
}

/// Duties whose chat is due for deletion at `now` (per organisation's retention).
pub async fn due_for_deletion(x: &mut impl Exec, now: i64) -> Result<Vec<Uuid>, StoreError> {
    Ok(run!(x, c => sqlx::query_scalar(
        "SELECT r.duty_id FROM chat_rosters r LEFT JOIN chat_settings s ON s.org_id = r.org_id \
         WHERE NOT r.deleted AND r.ends_at + (COALESCE(s.writable_days, 2) + COALESCE(s.readable_days, 30)) * 86400000 <= $1 \
         ORDER BY r.ends_at LIMIT 500")
        .bind(now).fetch_all(c).await)?)
}

/// Deletes everything of the group of `duty` (messages, proposals, leaves, group state); with
/// `tombstone` also the members, keeping only the roster row marked deleted (so that the chat
/// is not created again). Returns the devices that were in the group.
pub async fn delete_group(
    tx: &mut Tx,
    duty: Uuid,
    tombstone: bool,
) -> Result<Vec<Uuid>, StoreError> {
    let devices: Vec<Uuid> = run!(tx, c => sqlx::query_scalar(
        "SELECT device_id FROM chat_group_devices WHERE duty_id = $1")
        .bind(duty).fetch_all(c).await)?;
    for table in [
        "chat_attachments",
        "chat_messages",
        "chat_proposals",
        "chat_group_devices",
        "chat_groups",
    ] {
        let sql = format!("DELETE FROM {table} WHERE duty_id = $1");
        exec!(tx, c => sqlx::query(&sql).bind(duty).execute(c).await)?;
    }
    if tombstone {
        exec!(tx, c => sqlx::query("DELETE FROM chat_members WHERE duty_id = $1")
            .bind(duty).execute(c).await)?;
        exec!(tx, c => sqlx::query("UPDATE chat_rosters SET deleted = TRUE WHERE duty_id = $1")
            .bind(duty).execute(c).await)?;
    }
    Ok(devices)
}

/// Every message of `duty` numbered `first..=last` (Welcomes included), for delivery.
pub async fn range(
    x: &mut impl Exec,
    duty: Uuid,
    first: i64,
    last: i64,
) -> Result<Vec<MessageRow>, StoreError> {
    let rows: Vec<MessageTuple> = run!(x, c => sqlx::query_as(
        "SELECT seq, epoch, kind, sender, data, created_at FROM chat_messages WHERE duty_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq")
        .bind(duty).bind(first).bind(last).fetch_all(c).await)?;
    Ok(rows.into_iter().map(message_row).collect())
}

// ---- attachments -----------------------------------------------------------------------------

#[allow(clippy::too_many_arguments)]
pub async fn insert_attachment(
    tx: &mut Tx,
    id: Uuid,
    duty: Uuid,
    org: Uuid,
    device: Uuid,
    data: &[u8],
    now: i64,
) -> Result<(), StoreError> {
    let size = i64::try_from(data.len()).unwrap_or(i64::MAX);
    exec!(tx, c => sqlx::query(
        "INSERT INTO chat_attachments (id, duty_id, org_id, device_id, size, data, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(id).bind(duty).bind(org).bind(device).bind(size).bind(data).bind(now).execute(c).await)?;
    Ok(())
}

/// The bytes (encrypted) the attachments of `duty` take together.
pub async fn attachments_size(x: &mut impl Exec, duty: Uuid) -> Result<i64, StoreError> {
    let n: Option<i64> = run!(x, c => sqlx::query_scalar(
        "SELECT CAST(SUM(size) AS BIGINT) FROM chat_attachments WHERE duty_id = $1")
        .bind(duty).fetch_one(c).await)?;
    Ok(n.unwrap_or(0))
}

/// The encrypted blob of an attachment of `duty`.
pub async fn attachment(
    x: &mut impl Exec,
    duty: Uuid,
    id: Uuid,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(run!(x, c => sqlx::query_scalar(
        "SELECT data FROM chat_attachments WHERE duty_id = $1 AND id = $2")
        .bind(duty).bind(id).fetch_optional(c).await)?)
}
