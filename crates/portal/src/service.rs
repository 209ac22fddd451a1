//! The portal's rules: what a client or relative may see and do through their link, the
//! requests and messages they send, and the ERP feed's idempotent bulk upserts.
//!
//! Invariants:
//! - Every client-scoped call re-reads the caller's link, so a revoked link (or a deactivated
//!   client) takes effect on the very next request; another client's id is "not found".
//! - A bulk upsert checks every item first and writes nothing when one is wrong; the same feed
//!   sent twice changes nothing the second time.
//! - A message to the organisation and its e-mail to the organisation's address are written in
//!   one transaction (the outbox delivers it).

use std::collections::{HashMap, HashSet};

use carebridge_domain::Timestamp;
use carebridge_domain::validate::{Violations, bounded_text};
use carebridge_proto::portal::{
    AnswerRequest, Appointment, AppointmentsQuery, Carer, CreateMessage, CreateRequest,
    ErpAppointment, ErpClient, ErpLink, ErpMessage, ErpReply, ErpRequest, LinkPermissions, Message,
    PortalClient, PortalMe, PortalSettings, Request, RequestState, UpsertReport,
};
use carebridge_store::{Db, StoreError, outbox};
use carebridge_web::ServiceError;
use jiff::tz::TimeZone;
use uuid::Uuid;

use crate::auth::{Caller, Erp};
use crate::repo::{self, AppointmentRow, ClientRow, LinkRow, MessageRow, RequestRow};
use crate::texts;

/// Time zone of organisations whose ERP has not sent settings yet.
pub const DEFAULT_ZONE: &str = "Europe/Zurich";
/// Largest ERP feed in one call.
pub const MAX_FEED_ITEMS: usize = 10_000;
/// Longest appointment window one call may ask for.
const MAX_WINDOW_DAYS: i64 = 366;
const DAY_MS: i64 = 86_400_000;

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn new_id(now: Timestamp) -> Uuid {
    carebridge_domain::ids::new_v7(now)
}

fn zone(org: &Option<repo::OrgRow>) -> TimeZone {
    let name = org.as_ref().map_or(DEFAULT_ZONE, |o| o.time_zone.as_str());
    TimeZone::get(name).unwrap_or(TimeZone::UTC)
}

fn not_found(what: &'static str) -> ServiceError {
    ServiceError::NotFound { what }
}

/// The caller's live link to `client`, or "client not found" (also for other people's clients).
async fn link_of(db: &Db, caller: &Caller, client: Uuid) -> Result<LinkRow, ServiceError> {
    let mut c = db.read().await?;
    repo::link(&mut c, caller.org, caller.subject, client)
        .await?
        .ok_or(not_found("client"))
}

fn need(ok: bool, what: &str) -> Result<(), ServiceError> {
    if ok {
        Ok(())
    } else {
        Err(ServiceError::Forbidden {
            detail: format!("your link to this client does not include {what}"),
        })
    }
}

pub async fn me(db: &Db, caller: &Caller) -> Result<PortalMe, ServiceError> {
    let mut c = db.read().await?;
    let org = repo::org(&mut c, caller.org).await?;
    let links = repo::links_of(&mut c, caller.org, caller.subject).await?;
    Ok(PortalMe {
        subject: caller.subject,
        org: caller.org,
        organisation_name: org.map(|o| o.name),
        clients: links.len() as i64,
    })
}

pub async fn clients(db: &Db, caller: &Caller) -> Result<Vec<PortalClient>, ServiceError> {
    let mut c = db.read().await?;
    Ok(repo::links_of(&mut c, caller.org, caller.subject)
        .await?
        .into_iter()
        .map(|l| PortalClient {
            id: l.client_id,
            given_name: l.given_name,
            family_name: l.family_name,
            relation: l.relation,
            permissions: LinkPermissions {
                appointments: l.appointments,
                messages: l.messages,
            },
        })
        .collect())
}

/// Parses a window bound: a date (start of that day in `tz`) or an RFC 3339 instant.
fn bound(v: &mut Violations, pointer: &str, s: &str, tz: &TimeZone, end: bool) -> Option<i64> {
    if let Ok(d) = s.parse::<jiff::civil::Date>()
        && s.len() == 10
    {
        let day = if end { d.tomorrow().ok() } else { Some(d) };
        let at = day
            .and_then(|d| d.to_zoned(tz.clone()).ok())
            .map(|z| z.timestamp().as_millisecond());
        if at.is_none() {
            v.push(pointer, "invalid_date", "the date is out of range");
        }
        return at;
    }
    match s.parse::<Timestamp>() {
        Ok(t) => Some(t.as_millisecond()),
        Err(_) => {
            v.push(
                pointer,
                "invalid_date",
                "a date (YYYY-MM-DD) or an RFC 3339 date-time",
            );
            None
        }
    }
}

fn appointment(
    a: AppointmentRow,
    tz: &TimeZone,
    photos: bool,
    request: Option<&RequestRow>,
) -> Appointment {
    let start = ts(a.starts_at).to_zoned(tz.clone());
    let end = ts(a.ends_at).to_zoned(tz.clone());
    Appointment {
        id: a.id,
        client_id: a.client_id,
        date: start.date().to_string(),
        from: start.strftime("%H:%M").to_string(),
        to: end.strftime("%H:%M").to_string(),
        starts_at: ts(a.starts_at),
        ends_at: ts(a.ends_at),
        time_zone: tz.iana_name().unwrap_or("UTC").to_string(),
        service: a.service,
        carer: a.carer_name.map(|first_name| Carer {
            first_name,
            photo_url: a.carer_photo_url.filter(|_| photos),
        }),
        status: a.status,
        request: request.map(|r| RequestState {
            id: r.id,
            kind: r.kind.clone(),
            state: r.state.clone(),
        }),
    }
}

/// A client's appointments in a window (default: today and the next 30 days).
pub async fn appointments(
    db: &Db,
    caller: &Caller,
    client: Uuid,
    q: &AppointmentsQuery,
    now: Timestamp,
) -> Result<Vec<Appointment>, ServiceError> {
    let link = link_of(db, caller, client).await?;
    need(link.appointments, "appointments")?;
    let mut c = db.read().await?;
    let org = repo::org(&mut c, caller.org).await?;
    let tz = zone(&org);
    let mut v = Violations::new();
    let today = now.to_zoned(tz.clone()).date();
    let default_from = today
        .to_zoned(tz.clone())
        .map(|z| z.timestamp().as_millisecond())
        .unwrap_or(now.as_millisecond());
    let from = match &q.from {
        Some(s) => bound(&mut v, "/query/from", s, &tz, false),
        None => Some(default_from),
    };
    let to = match &q.to {
        Some(s) => bound(&mut v, "/query/to", s, &tz, true),
        None => from.map(|f| f + 31 * DAY_MS),
    };
    if let (Some(f), Some(t)) = (from, to) {
        if t <= f {
            v.push("/query/to", "invalid_window", "`to` must be after `from`");
        } else if t - f > MAX_WINDOW_DAYS * DAY_MS {
            v.push(
                "/query/to",
                "window_too_long",
                format!("at most {MAX_WINDOW_DAYS} days at once"),
            );
        }
    }
    v.into_result()?;
    let (from, to) = (from.unwrap_or_default(), to.unwrap_or_default());
    let rows = repo::appointments(&mut c, caller.org, client, from, to, 2_000).await?;
    let requests = repo::latest_requests(&mut c, caller.org, client).await?;
    let mut newest: HashMap<Uuid, &RequestRow> = HashMap::new();
    for r in &requests {
        newest.entry(r.appointment_id).or_insert(r);
    }
    let photos = org.as_ref().is_some_and(|o| o.show_photos);
    Ok(rows
        .into_iter()
        .map(|a| {
            let r = newest.get(&a.id).copied();
            appointment(a, &tz, photos, r)
        })
        .collect())
}

fn request_out(r: RequestRow) -> Request {
    Request {
        id: r.id,
        client_id: r.client_id,
        appointment_id: r.appointment_id,
        kind: r.kind,
        reason: r.reason,
        wished_start: r.wished_start.map(ts),
        state: r.state,
        answer: r.answer,
        created_at: ts(r.created_at),
        answered_at: r.answered_at.map(ts),
    }
}

/// Asks to move or cancel a future, not cancelled visit (one open request per visit).
pub async fn create_request(
    db: &Db,
    caller: &Caller,
    client: Uuid,
    appointment: Uuid,
    input: CreateRequest,
    now: Timestamp,
) -> Result<Request, ServiceError> {
    let link = link_of(db, caller, client).await?;
    need(link.appointments, "appointments")?;
    let mut v = Violations::new();
    if !matches!(input.kind.as_str(), "move" | "cancel") {
        v.push("/kind", "invalid_kind", "`move` or `cancel`");
    }
    let reason = bounded_text(&mut v, "/reason", &input.reason, 1, 2_000);
    match (input.kind.as_str(), input.wished_start) {
        ("move", None) => v.push(
            "/wished_start",
            "required",
            "a move needs the wished new start",
        ),
        ("move", Some(w)) if w <= now => v.push(
            "/wished_start",
            "in_the_past",
            "the wished start must be in the future",
        ),
        ("cancel", Some(_)) => v.push(
            "/wished_start",
            "not_allowed",
            "only a move has a wished start",
        ),
        _ => {}
    }
    v.into_result()?;
    let mut tx = db.begin().await?;
    let a = repo::appointment(&mut tx, caller.org, client, appointment)
        .await?
        .ok_or(not_found("appointment"))?;
    if a.status == "cancelled" {
        return Err(ServiceError::Conflict {
            code: "appointment_cancelled",
            detail: "this visit is cancelled already".into(),
        });
    }
    if a.starts_at <= now.as_millisecond() {
        return Err(ServiceError::Conflict {
            code: "appointment_started",
            detail: "this visit has begun or is over: call the organisation".into(),
        });
    }
    if repo::open_request_on(&mut tx, a.id).await? {
        return Err(ServiceError::Conflict {
            code: "request_open",
            detail: "there is an open request for this visit already; wait for the answer".into(),
        });
    }
    let r = RequestRow {
        id: new_id(now),
        client_id: client,
        appointment_id: a.id,
        kind: input.kind,
        reason,
        wished_start: input.wished_start.map(|w| w.as_millisecond()),
        state: "open".into(),
        answer: None,
        created_at: now.as_millisecond(),
        answered_at: None,
        client_erp_id: String::new(),
        appointment_erp_id: a.erp_id,
    };
    match repo::insert_request(&mut tx, caller.org, &r, caller.subject).await {
        Err(StoreError::Unique { .. }) => {
            return Err(ServiceError::Conflict {
                code: "request_open",
                detail: "there is an open request for this visit already; wait for the answer"
                    .into(),
            });
        }
        r => r?,
    }
    tx.commit().await?;
    Ok(request_out(r))
}

pub async fn requests(
    db: &Db,
    caller: &Caller,
    client: Uuid,
) -> Result<Vec<Request>, ServiceError> {
    let link = link_of(db, caller, client).await?;
    need(link.appointments, "appointments")?;
    let mut c = db.read().await?;
    Ok(repo::requests_of_client(&mut c, caller.org, client, 500)
        .await?
        .into_iter()
        .map(request_out)
        .collect())
}

fn message_out(m: MessageRow) -> Message {
    Message {
        id: m.id,
        client_id: m.client_id,
        direction: m.direction,
        author: m.author,
        subject: m.subject,
        body: m.body,
        created_at: ts(m.created_at),
    }
}

pub async fn messages(
    db: &Db,
    caller: &Caller,
    client: Uuid,
) -> Result<Vec<Message>, ServiceError> {
    let link = link_of(db, caller, client).await?;
    need(link.messages, "messages")?;
    let mut c = db.read().await?;
    Ok(repo::messages_of_client(&mut c, caller.org, client, 500)
        .await?
        .into_iter()
        .map(message_out)
        .collect())
}

fn message_text(v: &mut Violations, subject: &str, body: &str) -> (String, String) {
    (bounded_text(v, "/subject", subject, 1, 200), {
        let b = body.trim();
        let n = b.chars().count();
        if b.chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            v.push(
                "/body",
                "control_characters",
                "must not contain control characters other than line breaks and tabs",
            );
        } else if n == 0 {
            v.push("/body", "required", "must not be empty");
        } else if n > 10_000 {
            v.push(
                "/body",
                "too_long",
                format!("must have at most 10000 characters, has {n}"),
            );
        }
        b.to_string()
    })
}

/// A message to the organisation: stored, and e-mailed to the organisation's contact address
/// (in the organisation's language) in the same transaction.
pub async fn send_message(
    db: &Db,
    caller: &Caller,
    client: Uuid,
    input: CreateMessage,
    now: Timestamp,
) -> Result<Message, ServiceError> {
    let link = link_of(db, caller, client).await?;
    need(link.messages, "messages")?;
    let mut v = Violations::new();
    let (subject, body) = message_text(&mut v, &input.subject, &input.body);
    v.into_result()?;
    let m = MessageRow {
        id: new_id(now),
        client_id: client,
        direction: "to_organisation".into(),
        author: if link.relation == "self" {
            "client".into()
        } else {
            "relative".into()
        },
        subject,
        body,
        created_at: now.as_millisecond(),
        client_erp_id: String::new(),
    };
    let mut tx = db.begin().await?;
    let org = repo::org(&mut tx, caller.org).await?;
    repo::insert_message(&mut tx, caller.org, &m).await?;
    if let Some(o) = &org
        && let Some(to) = &o.contact_email
    {
        let t = texts::for_language(&o.language);
        let client_name = format!("{} {}", link.given_name, link.family_name);
        let (mail_subject, mail_body) = t.new_message(&client_name, &m.author, &m.subject, &m.body);
        outbox::enqueue(
            &mut tx,
            new_id(now),
            Some(caller.org),
            outbox::Channel::Email,
            to,
            Some(&mail_subject),
            &mail_body,
            "portal_message",
            now.as_millisecond(),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(message_out(m))
}

// ---- calendar feeds -------------------------------------------------------------------------

/// A new calendar subscription for the caller's link to `client` (earlier ones of that link
/// stop working): `(feed id, secret)`.
pub async fn create_feed(
    db: &Db,
    caller: &Caller,
    client: Uuid,
    now: Timestamp,
) -> Result<(Uuid, [u8; 32]), ServiceError> {
    use sha2::Digest;
    let link = link_of(db, caller, client).await?;
    need(link.appointments, "appointments")?;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)
        .map_err(|e| ServiceError::Store(StoreError::Corrupt(format!("no randomness: {e}"))))?;
    let digest = sha2::Sha256::digest(secret);
    let id = new_id(now);
    let mut tx = db.begin().await?;
    repo::revoke_feeds(&mut tx, caller.org, link.id, now.as_millisecond()).await?;
    repo::insert_feed(
        &mut tx,
        caller.org,
        id,
        link.id,
        &digest,
        now.as_millisecond(),
    )
    .await?;
    tx.commit().await?;
    Ok((id, secret))
}

/// Revokes the caller's calendar subscriptions for `client`.
pub async fn revoke_feeds(
    db: &Db,
    caller: &Caller,
    client: Uuid,
    now: Timestamp,
) -> Result<(), ServiceError> {
    let link = link_of(db, caller, client).await?;
    let mut tx = db.begin().await?;
    let n = repo::revoke_feeds(&mut tx, caller.org, link.id, now.as_millisecond()).await?;
    tx.commit().await?;
    if n == 0 {
        return Err(not_found("calendar feed"));
    }
    Ok(())
}

/// The iCalendar document of a feed, or `None` for an unknown, revoked or forged one.
pub async fn calendar(
    db: &Db,
    id: Uuid,
    secret: &[u8],
    now: Timestamp,
) -> Result<Option<String>, ServiceError> {
    use sha2::Digest;
    use subtle::ConstantTimeEq;
    let mut c = db.read().await?;
    let Some((org, digest, client)) = repo::feed(&mut c, id).await? else {
        return Ok(None);
    };
    let given = sha2::Sha256::digest(secret);
    if !bool::from(given.as_slice().ct_eq(&digest)) {
        return Ok(None);
    }
    let o = repo::org(&mut c, org).await?;
    let tz = zone(&o);
    let from = now.as_millisecond() - 90 * DAY_MS;
    let rows = repo::appointments(&mut c, org, client, from, from + 455 * DAY_MS, 2_000).await?;
    let photos = o.as_ref().is_some_and(|x| x.show_photos);
    let items: Vec<Appointment> = rows
        .into_iter()
        .map(|a| appointment(a, &tz, photos, None))
        .collect();
    let name = o.map_or_else(|| "Appointments".to_string(), |x| x.name);
    Ok(Some(crate::ical::calendar(&name, &items, now)))
}

// ---- ERP side ---------------------------------------------------------------------------------

pub async fn settings(db: &Db, erp: &Erp) -> Result<PortalSettings, ServiceError> {
    let mut c = db.read().await?;
    let o = repo::org(&mut c, erp.org)
        .await?
        .ok_or(not_found("portal settings"))?;
    Ok(PortalSettings {
        name: o.name,
        contact_email: o.contact_email,
        language: o.language,
        time_zone: o.time_zone,
        show_photos: o.show_photos,
    })
}

pub async fn put_settings(
    db: &Db,
    erp: &Erp,
    s: PortalSettings,
    now: Timestamp,
) -> Result<PortalSettings, ServiceError> {
    let mut v = Violations::new();
    let name = bounded_text(&mut v, "/name", &s.name, 1, 200);
    let contact_email = s.contact_email.map(|e| e.trim().to_string());
    if let Some(e) = &contact_email
        && !email_address::EmailAddress::is_valid(e)
    {
        v.push("/contact_email", "invalid_email", "an e-mail address");
    }
    if !texts::LANGUAGES.contains(&s.language.as_str()) {
        v.push(
            "/language",
            "invalid_language",
            format!("one of {}", texts::LANGUAGES.join(", ")),
        );
    }
    if TimeZone::get(&s.time_zone).is_err() {
        v.push(
            "/time_zone",
            "invalid_time_zone",
            "an IANA time zone such as Europe/Zurich",
        );
    }
    v.into_result()?;
    let row = repo::OrgRow {
        name,
        contact_email,
        language: s.language,
        time_zone: s.time_zone,
        show_photos: s.show_photos,
    };
    let mut tx = db.begin().await?;
    repo::put_org(&mut tx, erp.org, &row, now.as_millisecond()).await?;
    tx.commit().await?;
    settings(db, erp).await
}

fn erp_key(v: &mut Violations, pointer: &str, s: &str) -> String {
    bounded_text(v, pointer, s, 1, 100)
}

/// Refuses feeds over [`MAX_FEED_ITEMS`] items (the HTTP feed; the CSV import has no limit).
pub fn too_many(n: usize) -> Result<(), ServiceError> {
    if n > MAX_FEED_ITEMS {
        return Err(Violations::single(
            "",
            "too_many_items",
            format!("at most {MAX_FEED_ITEMS} items per call, got {n}: send several calls"),
        )
        .into());
    }
    Ok(())
}

/// Checks that no ERP id appears twice.
fn no_duplicates<'a>(
    v: &mut Violations,
    ids: impl Iterator<Item = &'a str>,
    field: &str,
) -> HashSet<&'a str> {
    let mut seen = HashSet::new();
    for (i, id) in ids.enumerate() {
        if !seen.insert(id) {
            v.push(
                format!("/{i}/{field}"),
                "duplicate",
                format!("`{id}` appears more than once in this feed"),
            );
        }
    }
    seen
}

/// Upserts clients by the ERP's id; all or nothing.
pub async fn upsert_clients(
    db: &Db,
    erp: &Erp,
    items: Vec<ErpClient>,
    now: Timestamp,
) -> Result<UpsertReport, ServiceError> {
    let mut v = Violations::new();
    let checked: Vec<ClientRow> = items
        .iter()
        .enumerate()
        .map(|(i, c)| ClientRow {
            id: Uuid::nil(),
            erp_id: erp_key(&mut v, &format!("/{i}/id"), &c.id),
            given_name: bounded_text(&mut v, &format!("/{i}/given_name"), &c.given_name, 1, 100),
            family_name: bounded_text(&mut v, &format!("/{i}/family_name"), &c.family_name, 1, 100),
            active: c.active,
        })
        .collect();
    no_duplicates(&mut v, checked.iter().map(|c| c.erp_id.as_str()), "id");
    v.into_result()?;
    let mut report = UpsertReport::default();
    let ms = now.as_millisecond();
    let mut tx = db.begin().await?;
    let keys: Vec<&str> = checked.iter().map(|c| c.erp_id.as_str()).collect();
    let existing: HashMap<String, ClientRow> = repo::clients_by_erp(&mut tx, erp.org, &keys)
        .await?
        .into_iter()
        .map(|c| (c.erp_id.clone(), c))
        .collect();
    for mut c in checked {
        match existing.get(&c.erp_id) {
            Some(old) => {
                c.id = old.id;
                if *old == c {
                    report.unchanged += 1;
                } else {
                    repo::update_client(&mut tx, erp.org, &c, ms).await?;
                    if old.active && !c.active {
                        // Calendar URLs die with the client; reactivating it does not revive them.
                        repo::revoke_client_feeds(&mut tx, erp.org, c.id, ms).await?;
                    }
                    report.updated += 1;
                }
            }
            None => {
                c.id = new_id(now);
                repo::insert_client(&mut tx, erp.org, &c, ms).await?;
                report.created += 1;
            }
        }
    }
    tx.commit().await?;
    Ok(report)
}

fn optional_text(
    v: &mut Violations,
    pointer: &str,
    s: &Option<String>,
    max: usize,
) -> Option<String> {
    s.as_deref().map(|x| bounded_text(v, pointer, x, 1, max))
}

/// Upserts appointments by the ERP's id; all or nothing. A visit whose time or carer changes
/// becomes `changed`; `cancelled: true` cancels it.
pub async fn upsert_appointments(
    db: &Db,
    erp: &Erp,
    items: Vec<ErpAppointment>,
    now: Timestamp,
) -> Result<UpsertReport, ServiceError> {
    let mut v = Violations::new();
    struct Checked {
        erp_id: String,
        client: String,
        starts_at: i64,
        ends_at: i64,
        service: String,
        carer: Option<String>,
        photo: Option<String>,
        cancelled: bool,
    }
    let checked: Vec<Checked> = items
        .iter()
        .enumerate()
        .map(|(i, a)| {
            if a.end <= a.start {
                v.push(format!("/{i}/end"), "invalid_window", "must be after start");
            } else if a.end.as_millisecond() - a.start.as_millisecond() > DAY_MS {
                v.push(
                    format!("/{i}/end"),
                    "too_long",
                    "a visit lasts at most 24 hours",
                );
            }
            if let Some(u) = &a.carer_photo_url {
                carebridge_domain::org::check_https_url(
                    &mut v,
                    &format!("/{i}/carer_photo_url"),
                    u,
                );
            }
            Checked {
                erp_id: erp_key(&mut v, &format!("/{i}/id"), &a.id),
                client: erp_key(&mut v, &format!("/{i}/client"), &a.client),
                starts_at: a.start.as_millisecond(),
                ends_at: a.end.as_millisecond(),
                service: bounded_text(&mut v, &format!("/{i}/service"), &a.service, 1, 200),
                carer: optional_text(
                    &mut v,
                    &format!("/{i}/carer_first_name"),
                    &a.carer_first_name,
                    100,
                ),
                photo: a.carer_photo_url.clone(),
                cancelled: a.cancelled,
            }
        })
        .collect();
    no_duplicates(&mut v, checked.iter().map(|a| a.erp_id.as_str()), "id");
    let mut tx = db.begin().await?;
    let mut client_keys: Vec<&str> = checked.iter().map(|a| a.client.as_str()).collect();
    client_keys.sort_unstable();
    client_keys.dedup();
    let clients: HashMap<String, Uuid> = repo::clients_by_erp(&mut tx, erp.org, &client_keys)
        .await?
        .into_iter()
        .map(|c| (c.erp_id, c.id))
        .collect();
    for (i, a) in checked.iter().enumerate() {
        if !a.client.is_empty() && !clients.contains_key(&a.client) {
            v.push(
                format!("/{i}/client"),
                "unknown_client",
                format!(
                    "no client with ERP id `{}`: send it to /erp/clients first",
                    a.client
                ),
            );
        }
    }
    v.into_result()?;
    let keys: Vec<&str> = checked.iter().map(|a| a.erp_id.as_str()).collect();
    let existing: HashMap<String, AppointmentRow> =
        repo::appointments_by_erp(&mut tx, erp.org, &keys)
            .await?
            .into_iter()
            .map(|a| (a.erp_id.clone(), a))
            .collect();
    let mut report = UpsertReport::default();
    let ms = now.as_millisecond();
    let mut writes = Vec::new();
    let mut moved_clients: Vec<String> = Vec::new();
    let positions: HashMap<String, usize> = checked
        .iter()
        .enumerate()
        .map(|(i, a)| (a.erp_id.clone(), i))
        .collect();
    for a in checked {
        let client_id = clients.get(&a.client).copied().unwrap_or_default();
        let mut row = AppointmentRow {
            id: Uuid::nil(),
            erp_id: a.erp_id,
            client_id,
            starts_at: a.starts_at,
            ends_at: a.ends_at,
            service: a.service,
            carer_name: a.carer,
            carer_photo_url: a.photo,
            status: String::new(),
        };
        match existing.get(&row.erp_id) {
            Some(old) if old.client_id != row.client_id => {
                moved_clients.push(row.erp_id.clone());
            }
            Some(old) => {
                row.id = old.id;
                let moved = old.starts_at != row.starts_at
                    || old.ends_at != row.ends_at
                    || old.carer_name != row.carer_name;
                row.status = if a.cancelled {
                    "cancelled".into()
                } else if moved || old.status == "cancelled" {
                    "changed".into()
                } else {
                    old.status.clone()
                };
                if *old == row {
                    report.unchanged += 1;
                } else {
                    writes.push(row);
                    report.updated += 1;
                }
            }
            None => {
                row.id = new_id(now);
                row.status = if a.cancelled { "cancelled" } else { "planned" }.into();
                writes.push(row);
                report.created += 1;
            }
        }
    }
    if !moved_clients.is_empty() {
        let mut v = Violations::new();
        for id in moved_clients {
            v.push(
                format!(
                    "/{}/client",
                    positions.get(&id).copied().unwrap_or_default()
                ),
                "client_changed",
                format!(
                    "visit `{id}` belongs to another client: cancel it and send a new visit instead"
                ),
            );
        }
        return Err(v.into());
    }
    repo::upsert_appointments(&mut tx, erp.org, &writes, ms).await?;
    tx.commit().await?;
    Ok(report)
}

/// Upserts who may act for which client; `active: false` revokes. All or nothing.
pub async fn upsert_links(
    db: &Db,
    erp: &Erp,
    items: Vec<ErpLink>,
    now: Timestamp,
) -> Result<UpsertReport, ServiceError> {
    let mut v = Violations::new();
    let mut seen = HashSet::new();
    for (i, l) in items.iter().enumerate() {
        if !matches!(l.relation.as_str(), "self" | "relative") {
            v.push(
                format!("/{i}/relation"),
                "invalid_relation",
                "`self` or `relative`",
            );
        }
        if !seen.insert((l.client.as_str(), l.subject)) {
            v.push(
                format!("/{i}/subject"),
                "duplicate",
                "this client and subject appear more than once in this feed",
            );
        }
    }
    let mut tx = db.begin().await?;
    let mut client_keys: Vec<&str> = items.iter().map(|l| l.client.as_str()).collect();
    client_keys.sort_unstable();
    client_keys.dedup();
    let clients: HashMap<String, Uuid> = repo::clients_by_erp(&mut tx, erp.org, &client_keys)
        .await?
        .into_iter()
        .map(|c| (c.erp_id, c.id))
        .collect();
    for (i, l) in items.iter().enumerate() {
        if !clients.contains_key(&l.client) {
            v.push(
                format!("/{i}/client"),
                "unknown_client",
                format!("no client with ERP id `{}`", l.client),
            );
        }
    }
    v.into_result()?;
    let mut report = UpsertReport::default();
    let ms = now.as_millisecond();
    for l in items {
        let client = clients.get(&l.client).copied().unwrap_or_default();
        let perms = (l.appointments, l.messages);
        match repo::link_state(&mut tx, client, l.subject).await? {
            Some((id, relation, a, m, revoked)) => {
                if relation == l.relation && (a, m) == perms && revoked != l.active {
                    report.unchanged += 1;
                } else {
                    let revoked_at = if l.active { None } else { Some(ms) };
                    repo::update_link(&mut tx, erp.org, id, &l.relation, perms, revoked_at, ms)
                        .await?;
                    if !l.active || !l.appointments {
                        // Calendar URLs die with the link (or its appointments permission);
                        // granting it again later does not revive them.
                        repo::revoke_feeds(&mut tx, erp.org, id, ms).await?;
                    }
                    report.updated += 1;
                }
            }
            None => {
                let revoked_at = if l.active { None } else { Some(ms) };
                repo::insert_link(
                    &mut tx,
                    erp.org,
                    new_id(now),
                    client,
                    l.subject,
                    &l.relation,
                    perms,
                    revoked_at,
                    ms,
                )
                .await?;
                report.created += 1;
            }
        }
    }
    tx.commit().await?;
    Ok(report)
}

fn since(v: &mut Violations, s: &Option<String>, now: Timestamp) -> i64 {
    match s {
        None => now.as_millisecond() - 30 * DAY_MS,
        Some(s) => match s.parse::<Timestamp>() {
            Ok(t) => t.as_millisecond(),
            Err(_) => {
                v.push("/query/since", "invalid_date", "an RFC 3339 date-time");
                0
            }
        },
    }
}

/// The organisation's requests (default: open ones of the last 30 days), oldest first.
pub async fn erp_requests(
    db: &Db,
    erp: &Erp,
    since_q: &Option<String>,
    state: &Option<String>,
    now: Timestamp,
) -> Result<Vec<ErpRequest>, ServiceError> {
    let mut v = Violations::new();
    let since = since(&mut v, since_q, now);
    let state = match state.as_deref() {
        None | Some("open") => Some("open"),
        Some("all") => None,
        Some(s @ ("accepted" | "declined")) => Some(s),
        Some(_) => {
            v.push(
                "/query/state",
                "invalid_state",
                "open, accepted, declined or all",
            );
            None
        }
    };
    v.into_result()?;
    let mut c = db.read().await?;
    Ok(repo::requests_of_org(&mut c, erp.org, since, state, 1_000)
        .await?
        .into_iter()
        .map(|r| {
            let (client_erp_id, appointment_erp_id) =
                (r.client_erp_id.clone(), r.appointment_erp_id.clone());
            ErpRequest {
                request: request_out(r),
                client_erp_id,
                appointment_erp_id,
            }
        })
        .collect())
}

/// The organisation answers an open request.
pub async fn answer(
    db: &Db,
    erp: &Erp,
    id: Uuid,
    input: AnswerRequest,
    now: Timestamp,
) -> Result<ErpRequest, ServiceError> {
    let mut v = Violations::new();
    if !matches!(input.state.as_str(), "accepted" | "declined") {
        v.push("/state", "invalid_state", "`accepted` or `declined`");
    }
    let answer = optional_text(&mut v, "/answer", &input.answer, 2_000);
    v.into_result()?;
    let mut tx = db.begin().await?;
    let r = repo::request(&mut tx, erp.org, id)
        .await?
        .ok_or(not_found("request"))?;
    if !repo::answer_request(
        &mut tx,
        erp.org,
        id,
        &input.state,
        answer.as_deref(),
        now.as_millisecond(),
    )
    .await?
    {
        return Err(ServiceError::Conflict {
            code: "request_answered",
            detail: format!("this request was {} already", r.state),
        });
    }
    let r = repo::request(&mut tx, erp.org, id)
        .await?
        .ok_or(not_found("request"))?;
    tx.commit().await?;
    let (client_erp_id, appointment_erp_id) =
        (r.client_erp_id.clone(), r.appointment_erp_id.clone());
    Ok(ErpRequest {
        request: request_out(r),
        client_erp_id,
        appointment_erp_id,
    })
}

/// Messages to the organisation (default: the last 30 days), oldest first.
/// Live links for the office (`?q=` a name prefix, `limit` 1 to 200, default 50).
pub async fn office_links(
    db: &Db,
    erp: &Erp,
    q: &carebridge_proto::portal::LinksQuery,
) -> Result<Vec<carebridge_proto::portal::OfficeLink>, ServiceError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(Violations::single(
            "/query/limit",
            "invalid_limit",
            format!("limit must be 1 to 200, got {limit}"),
        )
        .into());
    }
    let prefix =
        q.q.as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| format!("{}%", carebridge_store::like_escape(&p.to_lowercase())));
    let mut c = db.read().await?;
    Ok(
        repo::office_links(&mut c, erp.org, prefix.as_deref(), i64::from(limit))
            .await?
            .into_iter()
            .map(
                |(l, erp_id, subject)| carebridge_proto::portal::OfficeLink {
                    client_erp_id: erp_id,
                    client_given_name: l.given_name,
                    client_family_name: l.family_name,
                    subject,
                    relation: l.relation,
                    permissions: LinkPermissions {
                        appointments: l.appointments,
                        messages: l.messages,
                    },
                },
            )
            .collect(),
    )
}

pub async fn inbox(
    db: &Db,
    erp: &Erp,
    since_q: &Option<String>,
    now: Timestamp,
) -> Result<Vec<ErpMessage>, ServiceError> {
    let mut v = Violations::new();
    let since = since(&mut v, since_q, now);
    v.into_result()?;
    let mut c = db.read().await?;
    Ok(repo::inbox(&mut c, erp.org, since, 1_000)
        .await?
        .into_iter()
        .map(|m| {
            let client_erp_id = m.client_erp_id.clone();
            ErpMessage {
                message: message_out(m),
                client_erp_id,
            }
        })
        .collect())
}

/// The organisation writes to a client (everyone with a messages link sees it).
pub async fn reply(
    db: &Db,
    erp: &Erp,
    input: ErpReply,
    now: Timestamp,
) -> Result<ErpMessage, ServiceError> {
    let mut v = Violations::new();
    let (subject, body) = message_text(&mut v, &input.subject, &input.body);
    v.into_result()?;
    let mut tx = db.begin().await?;
    let client = repo::clients_by_erp(&mut tx, erp.org, &[input.client.as_str()])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| {
            ServiceError::from(Violations::single(
                "/client",
                "unknown_client",
                format!("no client with ERP id `{}`", input.client),
            ))
        })?;
    let m = MessageRow {
        id: new_id(now),
        client_id: client.id,
        direction: "from_organisation".into(),
        author: "organisation".into(),
        subject,
        body,
        created_at: now.as_millisecond(),
        client_erp_id: client.erp_id.clone(),
    };
    repo::insert_message(&mut tx, erp.org, &m).await?;
    tx.commit().await?;
    Ok(ErpMessage {
        message: message_out(m),
        client_erp_id: client.erp_id,
    })
}
