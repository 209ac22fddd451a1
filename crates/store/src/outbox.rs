//! The outbox that e-mail and SMS leave through: a message is written in the same transaction
//! as the change that causes it (an invitation, a one-time code), so it is sent exactly when
//! that change committed. Delivery workers (SMTP, SMS gateway) claim `pending` rows; until they
//! exist for a deployment the rows stay `pending`, which is the development sink: an operator
//! (or a test) reads them from the table.
//!
//! Bodies can hold secrets (a sign-in code, a link): they are never logged.

use uuid::Uuid;

use crate::{Exec, StoreError, Tx, exec, run};

/// Delivery channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Email,
    Sms,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }
}

/// A message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub id: Uuid,
    pub org: Option<Uuid>,
    pub channel: String,
    pub recipient: String,
    pub subject: Option<String>,
    pub body: String,
    pub purpose: String,
    pub state: String,
    pub created_at: i64,
}

/// Queues a message inside the transaction of the change that causes it.
pub async fn enqueue(
    tx: &mut Tx,
    id: Uuid,
    org: Option<Uuid>,
    channel: Channel,
    recipient: &str,
    subject: Option<&str>,
    body: &str,
    purpose: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query(
        "INSERT INTO outbox (id, org_id, channel, recipient, subject, body, purpose, state, attempts, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8)")
        .bind(id).bind(org).bind(channel.as_str()).bind(recipient).bind(subject).bind(body)
        .bind(purpose).bind(now_ms).execute(c).await)?;
    Ok(())
}

/// Messages to one recipient, newest first (the development sink's reader).
pub async fn to_recipient(
    x: &mut impl Exec,
    recipient: &str,
    limit: i64,
) -> Result<Vec<Message>, StoreError> {
    let rows: Vec<(
        Uuid,
        Option<Uuid>,
        String,
        String,
        Option<String>,
        String,
        String,
        String,
        i64,
    )> = run!(x, c => sqlx::query_as(
            "SELECT id, org_id, channel, recipient, subject, body, purpose, state, created_at FROM outbox \
             WHERE recipient = $1 ORDER BY seq DESC LIMIT $2")
            .bind(recipient).bind(limit).fetch_all(c).await)?;
    Ok(rows
        .into_iter()
        .map(
            |(id, org, channel, recipient, subject, body, purpose, state, created_at)| Message {
                id,
                org,
                channel,
                recipient,
                subject,
                body,
                purpose,
                state,
                created_at,
            },
        )
        .collect())
}

/// One row as the administrators' listing shows it (no body).
pub struct Row {
    pub seq: i64,
    pub id: Uuid,
    pub channel: String,
    pub recipient: String,
    pub subject: Option<String>,
    pub purpose: String,
    pub state: String,
    pub attempts: i64,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    pub next_attempt_at: Option<i64>,
    pub last_error: Option<String>,
}

/// An organisation's messages before `before` (a `seq`), newest first, optionally in one
/// state.
pub async fn page(
    x: &mut impl Exec,
    org: Uuid,
    state: Option<&str>,
    before: i64,
    limit: i64,
) -> Result<Vec<Row>, StoreError> {
    type T = (
        i64,
        Uuid,
        String,
        String,
        Option<String>,
        String,
        String,
        i64,
        i64,
        Option<i64>,
        Option<i64>,
        Option<String>,
    );
    const COLS: &str = "seq, id, channel, recipient, subject, purpose, state, attempts, created_at, sent_at, next_attempt_at, last_error";
    let rows: Vec<T> = match state {
        Some(st) => run!(x, c => sqlx::query_as(&format!(
            "SELECT {COLS} FROM outbox WHERE org_id = $1 AND state = $2 AND seq < $3 ORDER BY seq DESC LIMIT $4"))
            .bind(org).bind(st).bind(before).bind(limit).fetch_all(c).await)?,
        None => run!(x, c => sqlx::query_as(&format!(
            "SELECT {COLS} FROM outbox WHERE org_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"))
            .bind(org).bind(before).bind(limit).fetch_all(c).await)?,
    };
    Ok(rows
        .into_iter()
        .map(|r| Row {
            seq: r.0,
            id: r.1,
            channel: r.2,
            recipient: r.3,
            subject: r.4,
            purpose: r.5,
            state: r.6,
            attempts: r.7,
            created_at: r.8,
            sent_at: r.9,
            next_attempt_at: r.10,
            last_error: r.11,
        })
        .collect())
}

/// The state of message `id` of `org`, if there is one.
pub async fn state_of(
    x: &mut impl Exec,
    org: Uuid,
    id: Uuid,
) -> Result<Option<String>, StoreError> {
    Ok(
        run!(x, c => sqlx::query_scalar("SELECT state FROM outbox WHERE org_id = $1 AND id = $2")
        .bind(org).bind(id).fetch_optional(c).await)?,
    )
}

/// Sends a given-up or waiting message again at the next worker run, with a fresh count of
/// attempts. False when it is not `dead` or `pending` (anymore).
pub async fn retry(tx: &mut Tx, org: Uuid, id: Uuid) -> Result<bool, StoreError> {
    let n = exec!(tx, c => sqlx::query(
        "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = NULL \
         WHERE org_id = $1 AND id = $2 AND (state = 'dead' OR state = 'pending')")
        .bind(org).bind(id).execute(c).await)?;
    Ok(n == 1)
}
