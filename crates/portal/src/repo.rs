//! SQL of the portal, always scoped by organisation (the `org` claim of the caller's token).
//! The one lookup not scoped by organisation is a calendar feed by its id, which the feed's
//! secret then proves.

use carebridge_store::{Exec, StoreError, Tx, exec, run, sqlx};
use uuid::Uuid;

/// The organisation's portal settings.
#[derive(Clone, Debug, PartialEq)]
pub struct OrgRow {
    pub name: String,
    pub contact_email: Option<String>,
    pub language: String,
    pub time_zone: String,
    pub show_photos: bool,
}

pub async fn org(x: &mut impl Exec, org: Uuid) -> Result<Option<OrgRow>, StoreError> {
    let r: Option<(String, Option<String>, String, String, bool)> = run!(x, c => sqlx::query_as(
        "SELECT name, contact_email, language, time_zone, show_photos FROM portal_orgs WHERE org_id = $1")
        .bind(org).fetch_optional(c).await)?;
    Ok(r.map(
        |(name, contact_email, language, time_zone, show_photos)| OrgRow {
            name,
            contact_email,
            language,
            time_zone,
            show_photos,
        },
    ))
}

pub async fn put_org(tx: &mut Tx, org: Uuid, o: &OrgRow, now: i64) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query(
        "INSERT INTO portal_orgs (org_id, name, contact_email, language, time_zone, show_photos, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (org_id) DO UPDATE SET name = excluded.name, \
         contact_email = excluded.contact_email, language = excluded.language, time_zone = excluded.time_zone, \
         show_photos = excluded.show_photos, updated_at = excluded.updated_at")
        .bind(org).bind(&o.name).bind(&o.contact_email).bind(&o.language).bind(&o.time_zone)
        .bind(o.show_photos).bind(now).execute(c).await)?;
    Ok(())
}

/// A client as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientRow {
    pub id: Uuid,
    pub erp_id: String,
    pub given_name: String,
    pub family_name: String,
    pub active: bool,
}

/// `erp_id IN (…)` placeholders from `$from` on.
fn list(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Clients of the organisation with these ERP ids (any number; looked up in chunks).
pub async fn clients_by_erp(
    x: &mut impl Exec,
    org: Uuid,
    erp_ids: &[&str],
) -> Result<Vec<ClientRow>, StoreError> {
    let mut out = Vec::new();
    for chunk in erp_ids.chunks(100) {
        let sql = format!(
            "SELECT id, erp_id, given_name, family_name, active FROM portal_clients WHERE org_id = $1 AND erp_id IN ({})",
            list(2, chunk.len())
        );
        let rows: Vec<(Uuid, String, String, String, bool)> = run!(x, c => {
            // Not prepared: PostgreSQL plans each lookup with its real values (a cached generic
            // plan made while the table was empty would scan it).
            let mut q = sqlx::query_as(&sql).persistent(false).bind(org);
            for e in chunk {
                q = q.bind(*e);
            }
            q.fetch_all(c).await
        })?;
        out.extend(
            rows.into_iter()
                .map(|(id, erp_id, given_name, family_name, active)| ClientRow {
                    id,
                    erp_id,
                    given_name,
                    family_name,
                    active,
                }),
        );
    }
    Ok(out)
}

pub async fn insert_client(
    tx: &mut Tx,
    org: Uuid,
    c: &ClientRow,
    now: i64,
) -> Result<(), StoreError> {
    exec!(tx, x => sqlx::query(
        "INSERT INTO portal_clients (id, org_id, erp_id, given_name, family_name, active, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(c.id).bind(org).bind(&c.erp_id).bind(&c.given_name).bind(&c.family_name).bind(c.active).bind(now)
        .execute(x).await)?;
    Ok(())
}

pub async fn update_client(
    tx: &mut Tx,
    org: Uuid,
    c: &ClientRow,
    now: i64,
) -> Result<(), StoreError> {
    exec!(tx, x => sqlx::query(
        "UPDATE portal_clients SET given_name = $3, family_name = $4, active = $5, updated_at = $6 WHERE org_id = $1 AND id = $2")
        .bind(org).bind(c.id).bind(&c.given_name).bind(&c.family_name).bind(c.active).bind(now)
        .execute(x).await)?;
    Ok(())
}

/// A live link of a person to a client (revoked links and inactive clients are not found).
#[derive(Clone, Debug, PartialEq)]
pub struct LinkRow {
    pub id: Uuid,
    pub client_id: Uuid,
    pub relation: String,
    pub appointments: bool,
    pub messages: bool,
    pub given_name: String,
    pub family_name: String,
}

const LINK_COLS: &str =
    "l.id, l.client_id, l.relation, l.appointments, l.messages, c.given_name, c.family_name";

type LinkTuple = (Uuid, Uuid, String, bool, bool, String, String);

fn link_row(
    (id, client_id, relation, appointments, messages, given_name, family_name): LinkTuple,
) -> LinkRow {
    LinkRow {
        id,
        client_id,
        relation,
        appointments,
        messages,
        given_name,
        family_name,
    }
}

/// Live links of the organisation (active clients), by client name, optionally only clients
/// whose given or family name starts with `prefix` (lower-case, LIKE-escaped by the caller):
/// `(link row, client ERP id, subject)`.
pub async fn office_links(
    x: &mut impl Exec,
    org: Uuid,
    prefix: Option<&str>,
    limit: i64,
) -> Result<Vec<(LinkRow, String, Uuid)>, StoreError> {
    let sql = format!(
        "SELECT {LINK_COLS}, c.erp_id, l.subject FROM portal_links l JOIN portal_clients c ON c.id = l.client_id \
         WHERE l.org_id = $1 AND l.revoked_at IS NULL AND c.active = TRUE \
         AND ($2 IS NULL OR lower(c.family_name) LIKE $2 ESCAPE '\\' OR lower(c.given_name) LIKE $2 ESCAPE '\\') \
         ORDER BY c.family_name, c.given_name, c.id, l.subject LIMIT $3"
    );
    type Row = (Uuid, Uuid, String, bool, bool, String, String, String, Uuid);
    let rows: Vec<Row> =
        run!(x, c => sqlx::query_as(&sql).bind(org).bind(prefix).bind(limit).fetch_all(c).await)?;
    Ok(rows
        .into_iter()
        .map(|(id, client_id, relation, a, m, g, f, erp, subject)| {
            (
                link_row((id, client_id, relation, a, m, g, f)),
                erp,
                subject,
            )
        })
        .collect())
}

/// The clients a person may act for, by family and given name.
pub async fn links_of(
    x: &mut impl Exec,
    org: Uuid,
    subject: Uuid,
) -> Result<Vec<LinkRow>, StoreError> {
    let sql = format!(
        "SELECT {LINK_COLS} FROM portal_links l JOIN portal_clients c ON c.id = l.client_id \
         WHERE l.org_id = $1 AND l.subject = $2 AND l.revoked_at IS NULL AND c.active = TRUE \
         ORDER BY c.family_name, c.given_name, c.id"
    );
    let rows: Vec<LinkTuple> =
        run!(x, c => sqlx::query_as(&sql).bind(org).bind(subject).fetch_all(c).await)?;
    Ok(rows.into_iter().map(link_row).collect())
}

/// The person's live link to one client.
pub async fn link(
    x: &mut impl Exec,
    org: Uuid,
    subject: Uuid,
    client: Uuid,
) -> Result<Option<LinkRow>, StoreError> {
    let sql = format!(
        "SELECT {LINK_COLS} FROM portal_links l JOIN portal_clients c ON c.id = l.client_id \
         WHERE l.org_id = $1 AND l.subject = $2 AND l.client_id = $3 AND l.revoked_at IS NULL AND c.active = TRUE"
    );
    let row: Option<LinkTuple> = run!(x, c => sqlx::query_as(&sql).bind(org).bind(subject).bind(client).fetch_optional(c).await)?;
    Ok(row.map(link_row))
}

/// A link as the ERP feed compares it: `(id, relation, appointments, messages, revoked)`.
pub async fn link_state(
    x: &mut impl Exec,
    client: Uuid,
    subject: Uuid,
) -> Result<Option<(Uuid, String, bool, bool, bool)>, StoreError> {
    Ok(run!(x, c => sqlx::query_as(
        "SELECT id, relation, appointments, messages, revoked_at IS NOT NULL FROM portal_links WHERE client_id = $1 AND subject = $2")
        .bind(client).bind(subject).fetch_optional(c).await)?)
}

pub async fn insert_link(
    tx: &mut Tx,
    org: Uuid,
    id: Uuid,
    client: Uuid,
    subject: Uuid,
    relation: &str,
    perms: (bool, bool),
    revoked_at: Option<i64>,
    now: i64,
) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query(
        "INSERT INTO portal_links (id, org_id, client_id, subject, relation, appointments, messages, revoked_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
        .bind(id).bind(org).bind(client).bind(subject).bind(relation).bind(perms.0).bind(perms.1)
        .bind(revoked_at).bind(now).execute(c).await)?;
    Ok(())
}

pub async fn update_link(
    tx: &mut Tx,
    org: Uuid,
    id: Uuid,
    relation: &str,
    perms: (bool, bool),
    revoked_at: Option<i64>,
    now: i64,
) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query(
        "UPDATE portal_links SET relation = $3, appointments = $4, messages = $5, revoked_at = $6, updated_at = $7 \
         WHERE org_id = $1 AND id = $2")
        .bind(org).bind(id).bind(relation).bind(perms.0).bind(perms.1).bind(revoked_at).bind(now)
        .execute(c).await)?;
    Ok(())
}

/// An appointment as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct AppointmentRow {
    pub id: Uuid,
    pub erp_id: String,
    pub client_id: Uuid,
    pub starts_at: i64,
    pub ends_at: i64,
    pub service: String,
    pub carer_name: Option<String>,
    pub carer_photo_url: Option<String>,
    pub status: String,
}

type AppointmentTuple = (
    Uuid,
    String,
    Uuid,
    i64,
    i64,
    String,
    Option<String>,
    Option<String>,
    String,
);

fn appointment_row(
    (id, erp_id, client_id, starts_at, ends_at, service, carer_name, carer_photo_url, status): AppointmentTuple,
) -> AppointmentRow {
    AppointmentRow {
        id,
        erp_id,
        client_id,
        starts_at,
        ends_at,
        service,
        carer_name,
        carer_photo_url,
        status,
    }
}

const APPOINTMENT_COLS: &str =
    "id, erp_id, client_id, starts_at, ends_at, service, carer_name, carer_photo_url, status";

pub async fn appointments_by_erp(
    x: &mut impl Exec,
    org: Uuid,
    erp_ids: &[&str],
) -> Result<Vec<AppointmentRow>, StoreError> {
    let mut out = Vec::new();
    for chunk in erp_ids.chunks(100) {
        let sql = format!(
            "SELECT {APPOINTMENT_COLS} FROM portal_appointments WHERE org_id = $1 AND erp_id IN ({})",
            list(2, chunk.len())
        );
        let rows: Vec<AppointmentTuple> = run!(x, c => {
            // Not prepared: PostgreSQL plans each lookup with its real values (a cached generic
            // plan made while the table was empty would scan it).
            let mut q = sqlx::query_as(&sql).persistent(false).bind(org);
            for e in chunk {
                q = q.bind(*e);
            }
            q.fetch_all(c).await
        })?;
        out.extend(rows.into_iter().map(appointment_row));
    }
    Ok(out)
}

/// Writes new and changed appointments, many rows per statement (an upsert on the ERP key).
pub async fn upsert_appointments(
    tx: &mut Tx,
    org: Uuid,
    rows: &[AppointmentRow],
    now: i64,
) -> Result<(), StoreError> {
    const COLS: usize = 11;
    // sqlx looks up every bound parameter's name among all of the statement's parameters
    // (quadratic in their number): 40 rows × 11 columns per statement is the measured sweet spot.
    for chunk in rows.chunks(40) {
        let values: Vec<String> = (0..chunk.len())
            .map(|r| {
                let b = r * COLS;
                format!(
                    "({})",
                    (1..=COLS)
                        .map(|k| format!("${}", b + k))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO portal_appointments (org_id, id, erp_id, client_id, starts_at, ends_at, service, carer_name, carer_photo_url, status, updated_at) \
             VALUES {} ON CONFLICT (org_id, erp_id) DO UPDATE SET client_id = excluded.client_id, starts_at = excluded.starts_at, \
             ends_at = excluded.ends_at, service = excluded.service, carer_name = excluded.carer_name, \
             carer_photo_url = excluded.carer_photo_url, status = excluded.status, updated_at = excluded.updated_at",
            values.join(", ")
        );
        exec!(tx, c => {
            let mut q = sqlx::query(&sql).persistent(false);
            for a in chunk {
                q = q.bind(org).bind(a.id).bind(&a.erp_id).bind(a.client_id).bind(a.starts_at).bind(a.ends_at)
                    .bind(&a.service).bind(&a.carer_name).bind(&a.carer_photo_url).bind(&a.status).bind(now);
            }
            q.execute(c).await
        })?;
    }
    Ok(())
}

/// A client's appointments overlapping `[from, to)`, in start order (at most `limit`).
pub async fn appointments(
    x: &mut impl Exec,
    org: Uuid,
    client: Uuid,
    from: i64,
    to: i64,
    limit: i64,
) -> Result<Vec<AppointmentRow>, StoreError> {
    let sql = format!(
        "SELECT {APPOINTMENT_COLS} FROM portal_appointments WHERE org_id = $1 AND client_id = $2 \
         AND starts_at < $4 AND ends_at > $3 ORDER BY starts_at, id LIMIT $5"
    );
    let rows: Vec<AppointmentTuple> = run!(x, c => sqlx::query_as(&sql)
        .bind(org).bind(client).bind(from).bind(to).bind(limit).fetch_all(c).await)?;
    Ok(rows.into_iter().map(appointment_row).collect())
}

pub async fn appointment(
    x: &mut impl Exec,
    org: Uuid,
    client: Uuid,
    id: Uuid,
) -> Result<Option<AppointmentRow>, StoreError> {
    let sql = format!(
        "SELECT {APPOINTMENT_COLS} FROM portal_appointments WHERE org_id = $1 AND client_id = $2 AND id = $3"
    );
    let row: Option<AppointmentTuple> = run!(x, c => sqlx::query_as(&sql)
        .bind(org).bind(client).bind(id).fetch_optional(c).await)?;
    Ok(row.map(appointment_row))
}

/// A request as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRow {
    pub id: Uuid,
    pub client_id: Uuid,
    pub appointment_id: Uuid,
    pub kind: String,
    pub reason: String,
    pub wished_start: Option<i64>,
    pub state: String,
    pub answer: Option<String>,
    pub created_at: i64,
    pub answered_at: Option<i64>,
    /// The ERP keys of client and appointment.
    pub client_erp_id: String,
    pub appointment_erp_id: String,
}

type RequestTuple = (
    Uuid,
    Uuid,
    Uuid,
    String,
    String,
    Option<i64>,
    String,
    Option<String>,
    i64,
    Option<i64>,
    String,
    String,
);

fn request_row(
    (
        id,
        client_id,
        appointment_id,
        kind,
        reason,
        wished_start,
        state,
        answer,
        created_at,
        answered_at,
        client_erp_id,
        appointment_erp_id,
    ): RequestTuple,
) -> RequestRow {
    RequestRow {
        id,
        client_id,
        appointment_id,
        kind,
        reason,
        wished_start,
        state,
        answer,
        created_at,
        answered_at,
        client_erp_id,
        appointment_erp_id,
    }
}

const REQUEST_SELECT: &str = "SELECT r.id, r.client_id, r.appointment_id, r.kind, r.reason, r.wished_start, r.state, r.answer, \
     r.created_at, r.answered_at, c.erp_id, a.erp_id FROM portal_requests r \
     JOIN portal_clients c ON c.id = r.client_id JOIN portal_appointments a ON a.id = r.appointment_id";

pub async fn insert_request(
    tx: &mut Tx,
    org: Uuid,
    r: &RequestRow,
    created_by: Uuid,
) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query(
        "INSERT INTO portal_requests (id, org_id, client_id, appointment_id, kind, reason, wished_start, state, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, $9)")
        .bind(r.id).bind(org).bind(r.client_id).bind(r.appointment_id).bind(&r.kind).bind(&r.reason)
        .bind(r.wished_start).bind(created_by).bind(r.created_at).execute(c).await)?;
    Ok(())
}

/// Whether an appointment has an open request.
pub async fn open_request_on(x: &mut impl Exec, appointment: Uuid) -> Result<bool, StoreError> {
    let n: i64 = run!(x, c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM portal_requests WHERE appointment_id = $1 AND state = 'open'")
        .bind(appointment).fetch_one(c).await)?;
    Ok(n > 0)
}

/// A client's requests, newest first.
pub async fn requests_of_client(
    x: &mut impl Exec,
    org: Uuid,
    client: Uuid,
    limit: i64,
) -> Result<Vec<RequestRow>, StoreError> {
    let sql = format!(
        "{REQUEST_SELECT} WHERE r.org_id = $1 AND r.client_id = $2 ORDER BY r.created_at DESC, r.id DESC LIMIT $3"
    );
    let rows: Vec<RequestTuple> =
        run!(x, c => sqlx::query_as(&sql).bind(org).bind(client).bind(limit).fetch_all(c).await)?;
    Ok(rows.into_iter().map(request_row).collect())
}

/// The newest request of each of these appointments.
pub async fn latest_requests(
    x: &mut impl Exec,
    org: Uuid,
    client: Uuid,
) -> Result<Vec<RequestRow>, StoreError> {
    let sql = format!(
        "{REQUEST_SELECT} WHERE r.org_id = $1 AND r.client_id = $2 ORDER BY r.created_at DESC, r.id DESC LIMIT 1000"
    );
    let rows: Vec<RequestTuple> =
        run!(x, c => sqlx::query_as(&sql).bind(org).bind(client).fetch_all(c).await)?;
    Ok(rows.into_iter().map(request_row).collect())
}

/// The organisation's requests created after `since` (`state`: one state or all), oldest first.
pub async fn requests_of_org(
    x: &mut impl Exec,
    org: Uuid,
    since: i64,
    state: Option<&str>,
    limit: i64,
) -> Result<Vec<RequestRow>, StoreError> {
    let sql = format!(
        "{REQUEST_SELECT} WHERE r.org_id = $1 AND r.created_at > $2 AND ($3 IS NULL OR r.state = $3) \
         ORDER BY r.created_at, r.id LIMIT $4"
    );
    let rows: Vec<RequestTuple> = run!(x, c => sqlx::query_as(&sql)
        .bind(org).bind(since).bind(state).bind(limit).fetch_all(c).await)?;
    Ok(rows.into_iter().map(request_row).collect())
}

pub async fn request(
    x: &mut impl Exec,
    org: Uuid,
    id: Uuid,
) -> Result<Option<RequestRow>, StoreError> {
    let sql = format!("{REQUEST_SELECT} WHERE r.org_id = $1 AND r.id = $2");
    let row: Option<RequestTuple> =
        run!(x, c => sqlx::query_as(&sql).bind(org).bind(id).fetch_optional(c).await)?;
    Ok(row.map(request_row))
}

/// Answers an open request; `false` when it was no longer open.
pub async fn answer_request(
    tx: &mut Tx,
    org: Uuid,
    id: Uuid,
    state: &str,
    answer: Option<&str>,
    now: i64,
) -> Result<bool, StoreError> {
    let n = exec!(tx, c => sqlx::query(
        "UPDATE portal_requests SET state = $3, answer = $4, answered_at = $5 WHERE org_id = $1 AND id = $2 AND state = 'open'")
        .bind(org).bind(id).bind(state).bind(answer).bind(now).execute(c).await)?;
    Ok(n == 1)
}

/// A message as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct MessageRow {
    pub id: Uuid,
    pub client_id: Uuid,
    pub direction: String,
    pub author: String,
    pub subject: String,
    pub body: String,
    pub created_at: i64,
    pub client_erp_id: String,
}

type MessageTuple = (Uuid, Uuid, String, String, String, String, i64, String);

fn message_row(
    (id, client_id, direction, author, subject, body, created_at, client_erp_id): MessageTuple,
) -> MessageRow {
    MessageRow {
        id,
        client_id,
        direction,
        author,
        subject,
        body,
        created_at,
        client_erp_id,
    }
}

const MESSAGE_SELECT: &str = "SELECT m.id, m.client_id, m.direction, m.author, m.subject, m.body, m.created_at, c.erp_id \
     FROM portal_messages m JOIN portal_clients c ON c.id = m.client_id";

pub async fn insert_message(tx: &mut Tx, org: Uuid, m: &MessageRow) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query(
        "INSERT INTO portal_messages (id, org_id, client_id, direction, author, subject, body, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(m.id).bind(org).bind(m.client_id).bind(&m.direction).bind(&m.author).bind(&m.subject)
        .bind(&m.body).bind(m.created_at).execute(c).await)?;
    Ok(())
}

/// A client's messages, newest first.
pub async fn messages_of_client(
    x: &mut impl Exec,
    org: Uuid,
    client: Uuid,
    limit: i64,
) -> Result<Vec<MessageRow>, StoreError> {
    let sql = format!(
        "{MESSAGE_SELECT} WHERE m.org_id = $1 AND m.client_id = $2 ORDER BY m.created_at DESC, m.id DESC LIMIT $3"
    );
    let rows: Vec<MessageTuple> =
        run!(x, c => sqlx::query_as(&sql).bind(org).bind(client).bind(limit).fetch_all(c).await)?;
    Ok(rows.into_iter().map(message_row).collect())
}

/// Messages to the organisation created after `since`, oldest first.
pub async fn inbox(
    x: &mut impl Exec,
    org: Uuid,
    since: i64,
    limit: i64,
) -> Result<Vec<MessageRow>, StoreError> {
    let sql = format!(
        "{MESSAGE_SELECT} WHERE m.org_id = $1 AND m.direction = 'to_organisation' AND m.created_at > $2 \
         ORDER BY m.created_at, m.id LIMIT $3"
    );
    let rows: Vec<MessageTuple> =
        run!(x, c => sqlx::query_as(&sql).bind(org).bind(since).bind(limit).fetch_all(c).await)?;
    Ok(rows.into_iter().map(message_row).collect())
}

pub async fn insert_feed(
    tx: &mut Tx,
    org: Uuid,
    id: Uuid,
    link: Uuid,
    digest: &[u8],
    now: i64,
) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query(
        "INSERT INTO portal_feeds (id, org_id, link_id, secret_digest, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(id).bind(org).bind(link).bind(digest).bind(now).execute(c).await)?;
    Ok(())
}

/// Revokes every live feed of a link; returns how many.
pub async fn revoke_feeds(tx: &mut Tx, org: Uuid, link: Uuid, now: i64) -> Result<u64, StoreError> {
    exec!(tx, c => sqlx::query(
        "UPDATE portal_feeds SET revoked_at = $3 WHERE org_id = $1 AND link_id = $2 AND revoked_at IS NULL")
        .bind(org).bind(link).bind(now).execute(c).await)
    .map_err(StoreError::from)
}

/// Revokes the feeds of every link of a client (the client was deactivated).
pub async fn revoke_client_feeds(
    tx: &mut Tx,
    org: Uuid,
    client: Uuid,
    now: i64,
) -> Result<u64, StoreError> {
    exec!(tx, c => sqlx::query(
        "UPDATE portal_feeds SET revoked_at = $3 WHERE org_id = $1 AND revoked_at IS NULL \
         AND link_id IN (SELECT id FROM portal_links WHERE org_id = $1 AND client_id = $2)")
        .bind(org).bind(client).bind(now).execute(c).await)
    .map_err(StoreError::from)
}

/// A live feed by id: `(org, digest, client)`, only while its link is live, allows appointments
/// and its client is active.
pub async fn feed(
    x: &mut impl Exec,
    id: Uuid,
) -> Result<Option<(Uuid, Vec<u8>, Uuid)>, StoreError> {
    Ok(run!(x, c => sqlx::query_as(
        "SELECT f.org_id, f.secret_digest, l.client_id FROM portal_feeds f \
         JOIN portal_links l ON l.id = f.link_id JOIN portal_clients c ON c.id = l.client_id \
         WHERE f.id = $1 AND f.revoked_at IS NULL AND l.revoked_at IS NULL AND l.appointments = TRUE AND c.active = TRUE")
        .bind(id).fetch_optional(c).await)?)
}
