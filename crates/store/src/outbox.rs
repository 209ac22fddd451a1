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
