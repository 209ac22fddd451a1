//! Duties, positions, assignments, qualifications, rosters and calendar feeds.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A needed position of a duty, with how many people it needs and how many it has.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Position {
    pub id: Uuid,
    pub name: String,
    /// The qualification a person must hold (directly or through "includes").
    pub qualification_id: Option<Uuid>,
    pub needed: i64,
    /// Confirmed assignments on this position.
    pub filled: i64,
}

/// A position as sent in a create or update: with `id` to keep an existing position.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PositionInput {
    #[serde(default)]
    pub id: Option<Uuid>,
    pub name: String,
    #[serde(default = "one")]
    pub needed: i64,
    #[serde(default)]
    pub qualification_id: Option<Uuid>,
}

fn one() -> i64 {
    1
}

/// A duty (an event with needed positions and a roster).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Duty {
    pub id: Uuid,
    pub unit_id: Uuid,
    pub title: String,
    pub location: Option<String>,
    pub description: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: jiff::Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub ends_at: jiff::Timestamp,
    /// IANA time zone the duty takes place in.
    pub time_zone: String,
    /// Start as local time with offset and zone, e.g. `2026-12-01T08:00:00+01:00[Europe/Zurich]`.
    pub starts_local: String,
    pub ends_local: String,
    /// `planned` or `cancelled`.
    pub state: String,
    /// Whether the duty has an end-to-end encrypted chat whose members follow the roster.
    pub chat: bool,
    /// Increases with every roster change (assignment, removal, role change, move, cancel).
    pub roster_version: i64,
    pub positions: Vec<Position>,
    /// People on the roster (confirmed).
    pub confirmed: i64,
    /// Open sign-up requests.
    pub requested: i64,
    pub version: i64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: jiff::Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: jiff::Timestamp,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDuty {
    pub unit_id: Uuid,
    pub title: String,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// RFC 3339 with offset, or a local date-time (`2026-12-01T08:00`) in `time_zone`.
    pub starts_at: String,
    pub ends_at: String,
    /// IANA name; default `UTC`.
    #[serde(default)]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub positions: Vec<PositionInput>,
    /// Give the duty a chat (the organisation must have the chat feature on).
    #[serde(default)]
    pub chat: bool,
}

/// Changes a duty. `positions` replaces the list: entries with an `id` keep that position,
/// entries without one are new, missing positions are removed (refused while people hold them).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDuty {
    pub title: Option<String>,
    #[serde(
        default,
        deserialize_with = "crate::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub location: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "crate::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    pub time_zone: Option<String>,
    pub unit_id: Option<Uuid>,
    /// `planned` or `cancelled`.
    pub state: Option<String>,
    pub chat: Option<bool>,
    pub positions: Option<Vec<PositionInput>>,
}

/// Filters of `GET …/duties` (the dispatcher's calendar): duties overlapping `[from, to)`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DutiesQuery {
    /// RFC 3339; duties ending after this instant.
    pub from: Option<String>,
    /// RFC 3339; duties starting before this instant.
    pub to: Option<String>,
    /// Only duties of this unit's subtree.
    pub unit_id: Option<Uuid>,
    /// `planned` or `cancelled`.
    pub state: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// A person's assignment to a duty, or their request to be assigned.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Assignment {
    pub id: Uuid,
    pub duty_id: Uuid,
    pub person_id: Uuid,
    pub position_id: Option<Uuid>,
    /// `lead` or `helper`.
    pub role: String,
    /// `requested`, `confirmed` or `declined`.
    pub status: String,
    /// Assigned although the person lacks the position's qualification (audited).
    pub qualification_override: bool,
    pub note: Option<String>,
    pub version: i64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: jiff::Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: jiff::Timestamp,
}

/// The dispatcher's "save assignment": puts a person on the roster at once.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAssignment {
    pub person_id: Uuid,
    #[serde(default)]
    pub position_id: Option<Uuid>,
    /// `lead` or `helper` (default).
    #[serde(default)]
    pub role: Option<String>,
    /// Assign although the person lacks the position's qualification.
    #[serde(default)]
    pub override_qualification: bool,
    #[serde(default)]
    pub note: Option<String>,
    /// The chat switch of the dialog: on or off for this duty (absent: unchanged).
    #[serde(default)]
    pub chat: Option<bool>,
}

/// Changes an assignment's role or position.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAssignment {
    pub role: Option<String>,
    #[serde(
        default,
        deserialize_with = "crate::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<Uuid>)]
    pub position_id: Option<Option<Uuid>>,
    pub override_qualification: Option<bool>,
    pub chat: Option<bool>,
}

/// A member asks to be put on a duty.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignUp {
    #[serde(default)]
    pub position_id: Option<Uuid>,
    #[serde(default)]
    pub note: Option<String>,
}

/// The dispatcher's answer to a request: `confirm` or `decline`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decide {
    /// `confirm` or `decline`.
    pub decision: String,
    #[serde(default)]
    pub override_qualification: bool,
    #[serde(default)]
    pub chat: Option<bool>,
}

/// One person on a roster.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq, PartialOrd, Ord)]
pub struct RosterLine {
    pub person_id: Uuid,
    pub role: String,
    pub position_id: Option<Uuid>,
}

/// A duty's complete roster at one version: what a roster event carries.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Roster {
    pub duty_id: Uuid,
    pub org_id: Uuid,
    pub roster_version: i64,
    pub state: String,
    pub chat: bool,
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: jiff::Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub ends_at: jiff::Timestamp,
    /// Empty when the duty is cancelled.
    pub roster: Vec<RosterLine>,
}

/// A roster event from the outbox, in `seq` order.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct RosterEvent {
    pub seq: i64,
    #[schema(value_type = String, format = DateTime)]
    pub at: jiff::Timestamp,
    pub roster: Roster,
}

/// `?after=&limit=` of the roster event feed.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// The last `seq` seen (default 0: from the start).
    pub after: Option<i64>,
    pub limit: Option<u32>,
}

/// A qualification of the organisation's catalogue.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Qualification {
    pub id: Uuid,
    pub name: String,
    /// Qualifications that holding this one also grants (e.g. paramedic → first aider).
    pub includes: Vec<Uuid>,
    pub version: i64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: jiff::Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: jiff::Timestamp,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateQualification {
    pub name: String,
    #[serde(default)]
    pub includes: Vec<Uuid>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateQualification {
    pub name: Option<String>,
    pub includes: Option<Vec<Uuid>>,
}

/// A qualification a person holds.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct HeldQualification {
    pub qualification_id: Uuid,
    pub name: String,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub valid_until: Option<jiff::Timestamp>,
}

/// `PUT …/people/{id}/qualifications/{qid}`: the person holds it, until `valid_until`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldQualification {
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub valid_until: Option<jiff::Timestamp>,
}

/// One of the caller's own duties with their assignment.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct MyDuty {
    pub duty: Duty,
    pub assignment: Assignment,
}

/// `GET /api/v1/me/duties`: upcoming by default.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MyDutiesQuery {
    /// RFC 3339; default: now (upcoming duties). Use an early date for past ones.
    pub from: Option<String>,
    /// RFC 3339; duties starting before this instant.
    pub to: Option<String>,
    /// `requested`, `confirmed` or `declined`.
    pub status: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// A personal iCalendar feed. Its URL holds a secret, shown once.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct CalendarFeed {
    pub id: Uuid,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: jiff::Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<jiff::Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<jiff::Timestamp>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedCalendarFeed {
    pub feed: CalendarFeed,
    /// Path of the feed (append it to the server's public URL); shown only here.
    pub url: String,
}

/// An organisation's feature switch (e.g. `chat`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Feature {
    pub feature: String,
    pub enabled: bool,
    /// The tenant provisioned when the feature was first switched on.
    pub tenant_id: Option<Uuid>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub changed_at: Option<jiff::Timestamp>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetFeature {
    pub enabled: bool,
}
