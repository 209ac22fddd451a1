//! The customer-portal contract `portal/v1`: what a client or relative's app reads and sends,
//! and the ERP feed that fills it. An ERP vendor can implement this contract; Carebridge's
//! `portal` role is the reference implementation.
//!
//! Ids: `id` fields are the portal's own UUIDs; the ERP's keys travel as `erp_id` (answers) and
//! `id` / `client` (ERP feed items), unique per organisation.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// The caller as the portal sees them.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct PortalMe {
    /// The `sub` of the access token: the person's id at the identity provider.
    pub subject: Uuid,
    /// The organisation the token names.
    pub org: Uuid,
    /// The organisation's display name, once the ERP has set it.
    pub organisation_name: Option<String>,
    /// How many clients the caller may act for.
    pub clients: i64,
}

/// What a link lets its holder do for the client.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct LinkPermissions {
    /// See appointments, ask to move or cancel them, subscribe to the calendar feed.
    pub appointments: bool,
    /// Write to and read messages from the organisation.
    pub messages: bool,
}

/// A client the caller may act for.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct PortalClient {
    pub id: Uuid,
    pub given_name: String,
    pub family_name: String,
    /// `self` (the caller is the client) or `relative`.
    pub relation: String,
    pub permissions: LinkPermissions,
}

/// Who is coming to a visit.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Carer {
    pub first_name: String,
    /// Only where the organisation allows photos.
    pub photo_url: Option<String>,
}

/// The newest request on an appointment.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct RequestState {
    pub id: Uuid,
    /// `move` or `cancel`.
    pub kind: String,
    /// `open`, `accepted` or `declined`.
    pub state: String,
}

/// A visit.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Appointment {
    pub id: Uuid,
    pub client_id: Uuid,
    /// Local date, `YYYY-MM-DD`, in the organisation's time zone.
    pub date: String,
    /// Local start and end time, `HH:MM`.
    pub from: String,
    pub to: String,
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub ends_at: Timestamp,
    pub time_zone: String,
    /// The kind of service, e.g. "Grundpflege".
    pub service: String,
    pub carer: Option<Carer>,
    /// `planned`, `changed` (time or carer changed since first planned) or `cancelled`.
    pub status: String,
    pub request: Option<RequestState>,
}

/// `?from=&to=`: dates (`YYYY-MM-DD`, in the organisation's zone) or RFC 3339 instants.
/// Default: from today for 31 days; at most 366 days.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AppointmentsQuery {
    pub from: Option<String>,
    pub to: Option<String>,
}

/// Ask to move or cancel a visit.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// `move` or `cancel`.
    pub kind: String,
    /// Why (1 to 2,000 characters).
    pub reason: String,
    /// For `move`: the wished new start.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub wished_start: Option<Timestamp>,
}

/// A request on an appointment.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Request {
    pub id: Uuid,
    pub client_id: Uuid,
    pub appointment_id: Uuid,
    pub kind: String,
    pub reason: String,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub wished_start: Option<Timestamp>,
    /// `open`, `accepted` or `declined`.
    pub state: String,
    /// The organisation's answer.
    pub answer: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub answered_at: Option<Timestamp>,
}

/// A request as the organisation sees it: with the ERP's keys.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ErpRequest {
    #[serde(flatten)]
    pub request: Request,
    pub client_erp_id: String,
    pub appointment_erp_id: String,
}

/// The organisation's answer to a request.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequest {
    /// `accepted` or `declined`.
    pub state: String,
    #[serde(default)]
    pub answer: Option<String>,
}

/// A message to the organisation.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMessage {
    /// 1 to 200 characters.
    pub subject: String,
    /// 1 to 10,000 characters.
    pub body: String,
}

/// A message between a client's side and the organisation.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Message {
    pub id: Uuid,
    pub client_id: Uuid,
    /// `to_organisation` or `from_organisation`.
    pub direction: String,
    /// `client`, `relative` or `organisation`.
    pub author: String,
    pub subject: String,
    pub body: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// A message as the organisation sees it: with the client's ERP key.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ErpMessage {
    #[serde(flatten)]
    pub message: Message,
    pub client_erp_id: String,
}

/// The organisation's reply to a client.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErpReply {
    /// The client's ERP key.
    pub client: String,
    pub subject: String,
    pub body: String,
}

/// `?since=` for the organisation's inboxes: items created after this instant, oldest first.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SinceQuery {
    /// RFC 3339; default: the last 30 days.
    pub since: Option<String>,
    /// Requests only: `open` (default), `accepted`, `declined` or `all`.
    pub state: Option<String>,
}

/// The created calendar subscription; the URL holds its secret and is shown only here.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct CreatedFeed {
    pub id: Uuid,
    /// Absolute `…/portal/v1/calendar/<id>_<secret>.ics`.
    pub url: String,
}

/// The organisation's portal settings (set by the ERP side).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PortalSettings {
    pub name: String,
    /// Where messages from clients are e-mailed; none: stored only.
    #[serde(default)]
    pub contact_email: Option<String>,
    /// Language of those e-mails: de, en, fr, it, fi or sv.
    pub language: String,
    /// IANA zone of appointment dates and times, e.g. `Europe/Zurich`.
    pub time_zone: String,
    /// Whether carers' photo URLs are shown to clients.
    #[serde(default)]
    pub show_photos: bool,
}

/// ERP feed: a client, keyed by the ERP's id.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ErpClient {
    pub id: String,
    pub given_name: String,
    pub family_name: String,
    /// `false` hides the client from every link (default `true`).
    #[serde(default = "yes")]
    pub active: bool,
}

/// ERP feed: an appointment, keyed by the ERP's id.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ErpAppointment {
    pub id: String,
    /// The client's ERP id (sent before or in the same feed).
    pub client: String,
    #[schema(value_type = String, format = DateTime)]
    pub start: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub end: Timestamp,
    pub service: String,
    #[serde(default)]
    pub carer_first_name: Option<String>,
    #[serde(default)]
    pub carer_photo_url: Option<String>,
    /// `true` cancels the visit (default `false`).
    #[serde(default)]
    pub cancelled: bool,
}

/// ERP feed: who may act for a client.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ErpLink {
    /// The client's ERP id.
    pub client: String,
    /// The person's `sub` at the identity provider.
    pub subject: Uuid,
    /// `self` or `relative`.
    pub relation: String,
    #[serde(default = "yes")]
    pub appointments: bool,
    #[serde(default = "yes")]
    pub messages: bool,
    /// `false` revokes the link (takes effect on the holder's next request).
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

/// A live link as the organisation's office sees it: who may act for which client, and what
/// the link allows.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct OfficeLink {
    pub client_erp_id: String,
    pub client_given_name: String,
    pub client_family_name: String,
    /// The person's `sub` at the identity provider (their directory id).
    pub subject: Uuid,
    /// `self` or `relative`.
    pub relation: String,
    pub permissions: LinkPermissions,
}

/// `GET /portal/v1/erp/links`: live links, by client name.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LinksQuery {
    /// Only clients whose given or family name starts with this (case-insensitive).
    pub q: Option<String>,
    /// 1 to 200 (default 50).
    pub limit: Option<u32>,
}

/// What a bulk upsert did.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct UpsertReport {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
}
