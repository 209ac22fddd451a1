//! Units, people and role assignments.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A unit of the organisation's tree.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Unit {
    pub id: Uuid,
    pub parent_id: Option<Uuid>,
    pub name: String,
    /// Ids from the root down to this unit (inclusive).
    pub path: Vec<Uuid>,
    pub version: i64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: jiff::Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: jiff::Timestamp,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUnit {
    pub name: String,
    /// The parent unit; absent for a root unit.
    #[serde(default)]
    pub parent_id: Option<Uuid>,
}

/// Rename and/or move. `parent_id: null` moves the unit to the root.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUnit {
    pub name: Option<String>,
    #[serde(
        default,
        deserialize_with = "crate::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<Uuid>)]
    pub parent_id: Option<Option<Uuid>>,
}

/// An e-mail address or phone number with its type (`work`, `home`, `mobile`, `fax`, `pager`, `other`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    pub value: String,
    #[serde(rename = "type", default = "default_contact_type")]
    pub kind: String,
}

fn default_contact_type() -> String {
    "work".into()
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub street: Option<String>,
    pub postal_code: Option<String>,
    pub locality: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub country: Option<String>,
}

/// A unit a person belongs to.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct UnitRef {
    pub id: Uuid,
    pub name: String,
}

/// A person of the organisation.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Person {
    pub id: Uuid,
    /// `staff`, `volunteer`, `client` or `relative`.
    pub kind: String,
    pub given_name: String,
    pub family_name: String,
    pub external_id: Option<String>,
    pub language: Option<String>,
    pub emails: Vec<Contact>,
    /// E.164.
    pub phones: Vec<Contact>,
    pub address: Address,
    pub units: Vec<UnitRef>,
    pub groups: Vec<String>,
    pub skills: Vec<String>,
    pub active: bool,
    pub version: i64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: jiff::Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: jiff::Timestamp,
    /// Present when the caller sees this person through contact grants only: the fields shown
    /// (`name`, `phones`, `emails`, `address`, `skills`, `groups`); the others are empty, and
    /// `external_id` and `language` are hidden. Absent: the caller sees everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePerson {
    pub given_name: String,
    pub family_name: String,
    /// `staff` (default), `volunteer`, `client` or `relative`.
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub emails: Vec<Contact>,
    /// National numbers are read in the organisation's default region.
    #[serde(default)]
    pub phones: Vec<Contact>,
    #[serde(default)]
    pub address: Option<Address>,
    #[serde(default)]
    pub unit_ids: Vec<Uuid>,
    /// Group names; missing groups are created.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Skill names; missing skills are created.
    #[serde(default)]
    pub skills: Vec<String>,
}

/// Fields to change; absent fields stay, `null` clears a nullable field, lists are replaced.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePerson {
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub kind: Option<String>,
    #[serde(
        default,
        deserialize_with = "crate::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub external_id: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "crate::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub language: Option<Option<String>>,
    pub emails: Option<Vec<Contact>>,
    pub phones: Option<Vec<Contact>>,
    pub address: Option<Address>,
    pub unit_ids: Option<Vec<Uuid>>,
    pub groups: Option<Vec<String>>,
    pub skills: Option<Vec<String>>,
    /// `false` deactivates the person (kept, but can no longer sign in).
    pub active: Option<bool>,
}

/// Filters of `GET …/people`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PeopleQuery {
    /// Search by name, e-mail or phone (prefix of any word; accents ignored).
    pub q: Option<String>,
    /// Only people in this unit or any unit below it.
    pub unit: Option<Uuid>,
    /// Only people in this group (name).
    pub group: Option<String>,
    /// Only people with this skill (name).
    pub skill: Option<String>,
    /// Only active (`true`) or deactivated (`false`) people.
    pub active: Option<bool>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// A role given to a person, over the organisation or a unit subtree.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct RoleAssignment {
    pub id: Uuid,
    pub person_id: Uuid,
    /// `org_admin`, `unit_admin`, `dispatcher`, `member`, `client` or `relative`.
    pub role: String,
    /// The unit whose subtree the role covers; absent for the whole organisation.
    pub unit_id: Option<Uuid>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: jiff::Timestamp,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoleAssignment {
    pub person_id: Uuid,
    pub role: String,
    #[serde(default)]
    pub unit_id: Option<Uuid>,
}

/// Filters of `GET …/roles`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RolesQuery {
    /// Only this person's assignments.
    pub person: Option<Uuid>,
    /// Only assignments scoped to exactly this unit (e.g. its unit admins).
    pub unit: Option<Uuid>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// How an import matches rows to people who exist.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ImportMatch {
    /// By external key (employee number) when the row has one, else by e-mail.
    #[default]
    Auto,
    ExternalId,
    Email,
}

/// Options of a people import (query string of the upload; flags of `carebridge import`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportOptions {
    /// Only report what would happen; write nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Apply the good rows and report the bad ones (default: any bad row applies nothing).
    #[serde(default)]
    pub skip_bad_rows: bool,
    /// Create units named in the file that do not exist (default: a row error).
    #[serde(default)]
    pub create_units: bool,
    #[serde(default, rename = "match")]
    #[param(rename = "match")]
    pub match_by: ImportMatch,
    /// Full sync: deactivate active people in this unit path's subtree (e.g. `Region Nord`)
    /// who are not in the file.
    #[serde(default)]
    pub deactivate_missing: Option<String>,
    /// XLSX: the sheet to read (default: the first).
    #[serde(default)]
    pub sheet: Option<String>,
    /// Explicit column mapping, `Header=field` pairs separated by `;`
    /// (fields: external_id, given_name, family_name, kind, language, email, mobile, phone,
    /// street, postal_code, locality, country, unit, groups, skills, roles, ignore).
    #[serde(default)]
    pub map: Option<String>,
    /// Import jobs only: the file's name, shown with the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Import jobs only: run over the file of an earlier job (kept an hour after its upload)
    /// instead of a request body, e.g. to apply a dry run or check it with another mapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<Uuid>,
}

/// A people import run in the background (`/api/v1/orgs/{org}/import-jobs`): its file, options,
/// progress and, once finished, its report.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportJob {
    pub id: Uuid,
    /// The uploaded file; other jobs can run over it until `file_expires_at`.
    pub file_id: Uuid,
    pub file_name: String,
    pub file_size: i64,
    /// When the file is deleted; absent once it is gone.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub file_expires_at: Option<jiff::Timestamp>,
    pub options: ImportOptions,
    /// `running`; `done` (see the report: applied, or why not); `failed` (see the problem:
    /// the import could not run); `interrupted` (the server running it stopped; nothing of a
    /// non-dry run was written, as an import is one transaction).
    pub state: String,
    /// The fraction of the file read, from 0 to 1.
    pub progress: f64,
    /// Who started it (`person:<id>` or a key's label).
    pub created_by: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: jiff::Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<jiff::Timestamp>,
    pub report: Option<ImportReport>,
    pub problem: Option<crate::problem::Problem>,
}

/// One problem in an imported file. Line 1 is the header row; line 0 is the file itself.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ImportError {
    pub line: u64,
    pub column: String,
    pub value: String,
    pub reason: String,
}

/// Which field a column of the file was read into.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ImportColumn {
    pub header: String,
    pub field: String,
}

/// What an import did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ImportReport {
    pub dry_run: bool,
    /// True when the changes were committed.
    pub applied: bool,
    /// Data rows read (good and bad).
    pub rows: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub deactivated: u64,
    /// Bad rows left out (skip mode) or that stopped the import.
    pub bad_rows: u64,
    /// Role assignments added.
    pub roles_assigned: u64,
    /// Unit paths created (or to be created).
    pub units_created: Vec<String>,
    pub columns: Vec<ImportColumn>,
    /// The first 1,000 problems, in file order.
    pub errors: Vec<ImportError>,
    pub errors_total: u64,
}

/// Everything the organisation holds about one person (GDPR Art. 15 / 20), as JSON.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct PersonExport {
    #[schema(value_type = String, format = DateTime)]
    pub exported_at: jiff::Timestamp,
    /// The organisation (slug).
    pub organisation: String,
    pub person: Person,
    pub roles: Vec<RoleAssignment>,
    /// The sign-in account, when the person has one (never its password hash or secrets).
    pub account: Option<ExportedAccount>,
    /// Duties the person is or was on.
    pub duties: Vec<ExportedAssignment>,
    /// Changes recorded about the person (the audit log's entries whose target is the person).
    pub history: Vec<ExportedEvent>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ExportedAccount {
    pub login: String,
    pub phone: Option<String>,
    pub has_password: bool,
    pub authenticator_app: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: jiff::Timestamp,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ExportedAssignment {
    pub duty_id: Uuid,
    pub title: String,
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: jiff::Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub ends_at: jiff::Timestamp,
    pub role: String,
    pub status: String,
    pub note: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ExportedEvent {
    pub seq: i64,
    #[schema(value_type = String, format = DateTime)]
    pub at: jiff::Timestamp,
    pub action: String,
    /// Who made the change (`api_key:…`, `person:…`, `system:…`).
    pub actor: String,
    pub source: String,
}

/// A group or a skill of the organisation.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Label {
    pub id: Uuid,
    pub name: String,
    /// People who have it.
    pub members: i64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: jiff::Timestamp,
}

/// A group's or skill's name (create, rename).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelInput {
    pub name: String,
}

/// One side of a contact grant: a unit (with every unit below it) or a group.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GrantSide {
    /// `unit` or `group`.
    pub kind: String,
    pub id: Uuid,
}

/// "Members of `viewer` may see `fields` of people in `target`."
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ContactGrant {
    pub id: Uuid,
    pub viewer: GrantSide,
    pub target: GrantSide,
    /// Some of `name`, `phones`, `emails`, `address`, `skills`, `groups`.
    pub fields: Vec<String>,
    pub version: i64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: jiff::Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: jiff::Timestamp,
}

/// A new contact grant.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactGrantInput {
    pub viewer: GrantSide,
    pub target: GrantSide,
    pub fields: Vec<String>,
}

/// A grant's new field list.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateContactGrant {
    pub fields: Vec<String>,
}

/// Query of the contacts sync feed.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChangesQuery {
    /// The `next_cursor` of the previous answer; absent for a full snapshot.
    pub cursor: Option<String>,
    /// People considered per answer, 1 to 1000 (default 500).
    pub limit: Option<u32>,
}

/// One answer of the contacts sync feed. Apply `removals` and `upserts` (by id) to the local
/// copy; when `reset` is true, empty the local copy first. While `more` is true, call again at
/// once with `next_cursor`; afterwards, keep `next_cursor` for the next sync.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ContactChanges {
    pub reset: bool,
    pub upserts: Vec<Person>,
    pub removals: Vec<Uuid>,
    pub more: bool,
    pub next_cursor: String,
}

/// `GET …/people/{person}/seen-by/{viewer}`: what `viewer`, signed in with `directory:read`,
/// would see of the person — the preview of the access rules.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct SeenBy {
    /// Whether the person shows up for the viewer at all.
    pub visible: bool,
    /// The person as the viewer gets them (hidden fields empty; `fields` names the shown
    /// ones, absent for a full view); absent when not visible.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person: Option<Person>,
}
