//! Wire types of the duty chat (the `chat` role, an MLS delivery service). MLS objects travel
//! as standard base64 of their RFC 9420 TLS encoding; the server never sees plaintext.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// `POST /api/v1/chat/devices`: a signed-in person registers an MLS device.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterDevice {
    /// A name the person recognises ("Anna's phone"), 1 to 100 characters.
    pub name: String,
    /// The device's Ed25519 MLS signature public key (32 bytes, base64).
    pub signature_key: String,
}

/// A registered device.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Device {
    pub id: Uuid,
    pub person_id: Uuid,
    pub name: String,
    /// The Ed25519 signature public key (base64).
    pub signature_key: String,
    /// The MLS credential identity the device must use: `device:<id>`.
    pub identity: String,
    /// KeyPackages waiting to be handed out (the last-resort one not counted).
    pub key_packages: i64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: jiff::Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_seen_at: Option<jiff::Timestamp>,
}

/// The answer to a registration: the device and its credential, shown once.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RegisteredDevice {
    pub device: Device,
    /// `Authorization: Bearer <token>` for every device call; stored only as a hash.
    pub token: String,
}

/// `POST /api/v1/chat/key-packages`: KeyPackages of the calling device.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadKeyPackages {
    /// One-time KeyPackages (base64 of an `MLSMessage` carrying a KeyPackage), at most 100.
    #[serde(default)]
    pub key_packages: Vec<String>,
    /// A last-resort KeyPackage, handed out when the one-time ones are used up; replaces the
    /// previous one.
    #[serde(default)]
    pub last_resort: Option<String>,
}

/// How many KeyPackages the device has on the server now.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyPackageStock {
    pub available: i64,
    pub last_resort: bool,
}

/// A duty chat as a device sees it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ChatGroup {
    pub duty_id: Uuid,
    /// `writable`, `read_only` or `deleted`.
    pub phase: String,
    /// Whether the MLS group exists yet (a rostered device creates it when it does not).
    pub created: bool,
    /// The MLS group id (base64): the duty id's 16 bytes.
    pub group_id: String,
    pub epoch: Option<i64>,
    /// The newest message number of the group's stream.
    pub last_seq: i64,
    /// Whether the calling device is a member of the MLS group now.
    pub member: bool,
    /// The server's external-sender key (Ed25519, base64) and credential identity, to put in
    /// the group context as `external_senders[0]` when creating the group.
    pub external_sender_key: String,
    pub external_sender_identity: String,
    #[schema(value_type = String, format = DateTime)]
    pub writable_until: jiff::Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub deleted_at: jiff::Timestamp,
}

/// `POST /api/v1/chat/groups/{duty}`: the first device creates the duty's group.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    /// The group's GroupInfo with the ratchet-tree extension (base64 `MLSMessage`).
    pub group_info: String,
}

/// `POST /api/v1/chat/groups/{duty}/messages`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostMessage {
    /// An `MLSMessage` (base64): a private application message, or a public commit.
    pub message: String,
    /// The Welcome (base64 `MLSMessage`) that goes with a commit adding members.
    #[serde(default)]
    pub welcome: Option<String>,
}

/// A device of a person on a duty's roster, so members can show who wrote (the stream names
/// devices, not people).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ChatMember {
    pub device_id: Uuid,
    pub person_id: Uuid,
    /// The person's given and family name.
    pub name: String,
}

/// Where an accepted message landed in the group's stream.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Posted {
    pub seq: i64,
    /// The group's epoch after the message (a commit advances it by one).
    pub epoch: i64,
}

/// One message of a group's stream.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ChatMessage {
    pub duty_id: Uuid,
    pub seq: i64,
    /// The epoch the message belongs to.
    pub epoch: i64,
    /// `application`, `proposal`, `commit` or `welcome`.
    pub kind: String,
    /// The sending device; absent for the server's own proposals.
    pub sender: Option<Uuid>,
    /// The `MLSMessage` (base64).
    pub data: String,
    #[schema(value_type = String, format = DateTime)]
    pub at: jiff::Timestamp,
}

/// `?after=&limit=` of a group's stream.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// The last `seq` seen (default 0: from the start of what the device may read).
    pub after: Option<i64>,
    /// 1 to 1000 (default 200).
    pub limit: Option<u32>,
}

/// A page of a group's stream.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Messages {
    pub items: Vec<ChatMessage>,
    /// More messages follow after the last one.
    pub more: bool,
}

/// What the WebSocket `/api/v1/chat/ws` pushes (JSON text frames).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Frame {
    /// A new message of one of the device's groups.
    Message { message: ChatMessage },
    /// The group is gone (retention or the device left it): delete local state.
    Deleted { duty_id: Uuid },
}

/// An organisation's chat retention (`/api/v1/orgs/{org}/chat/settings`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChatSettings {
    /// Days a chat stays writable after its duty ends (default 2).
    pub writable_days: i64,
    /// Days it stays readable after that, before everything is deleted (default 30).
    pub readable_days: i64,
    /// The largest attachment (file size before encryption) a device may upload, in bytes
    /// (default 10 MiB, at most 100 MiB; 0 turns attachments off).
    pub attachment_max_bytes: i64,
}

/// The default attachment size limit: 10 MiB.
pub const DEFAULT_ATTACHMENT_MAX: i64 = 10 * 1024 * 1024;
/// The highest attachment size limit an organisation may set: 100 MiB.
pub const ATTACHMENT_MAX_LIMIT: i64 = 100 * 1024 * 1024;
/// A duty chat's attachments together take at most this many times the size limit (500 MiB
/// at the 10 MiB default); more is refused with 409 `quota_exceeded` until the chat is deleted.
pub const DUTY_ATTACHMENT_FILES: i64 = 50;
/// What encryption adds to an attachment (the AES-GCM tag): the limit counts the file.
pub const ATTACHMENT_OVERHEAD: i64 = 16;

/// `POST /api/v1/chat/groups/{duty}/attachments`: an uploaded attachment. The body was
/// encrypted on the device; its key travels inside the MLS application message that refers to
/// the attachment, so the server holds an opaque blob it cannot read.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Attachment {
    pub id: Uuid,
    pub duty_id: Uuid,
    /// Size of the encrypted blob in bytes.
    pub size: i64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: jiff::Timestamp,
}
