//! The e-mail and SMS outbox as administrators see it: what was sent, what waits, what
//! failed and why. Message bodies are never shown (they can hold codes and links).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// One message of the outbox.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct OutboxMessage {
    pub id: Uuid,
    /// `email` or `sms`.
    pub channel: String,
    pub recipient: String,
    pub subject: Option<String>,
    /// Why it was sent, e.g. `invitation`, `sms_code`, `chat_opened`.
    pub purpose: String,
    /// `pending` (waiting or between attempts), `sending`, `sent`, `dead` (given up), `sink`
    /// (no transport configured: kept for the operator).
    pub state: String,
    pub attempts: i64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: jiff::Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub sent_at: Option<jiff::Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<jiff::Timestamp>,
    pub last_error: Option<String>,
}

/// `?state=&limit=&cursor=` of the outbox listing.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OutboxQuery {
    /// Only messages in this state.
    pub state: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}
