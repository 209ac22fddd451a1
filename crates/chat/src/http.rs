//! HTTP and WebSocket of the chat: thin handlers. Device calls authenticate with the device
//! token (`Authorization: Bearer cbd_…`), which the server's authentication middleware leaves
//! to this role; registering and listing devices needs the person's own credential.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use carebridge_domain::auth::{Actor, Permission, Principal, Source};
use carebridge_proto::chat::{
    Attachment, ChatGroup, ChatMember, ChatSettings, CreateGroup, Device, KeyPackageStock,
    Messages, MessagesQuery, PostMessage, Posted, RegisterDevice, RegisteredDevice,
    UploadKeyPackages,
};
use carebridge_proto::problem::Problem;
use carebridge_web::{ApiError, AppState, Auth, Json, Me, OrgPath, Path, Query, require};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::Chat;
use crate::hub::Push;
use crate::service::{self, Caller};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register_device, list_devices))
        .routes(routes!(remove_device))
        .routes(routes!(person_devices))
        .routes(routes!(remove_person_device))
        .routes(routes!(upload_key_packages))
        .routes(routes!(list_groups))
        .routes(routes!(get_group, create_group))
        .routes(routes!(group_members))
        .routes(routes!(rejoin_group))
        .routes(routes!(list_messages, post_message))
        .routes(routes!(socket))
        .routes(routes!(upload_attachment))
        .routes(routes!(download_attachment))
        .routes(routes!(get_settings, put_settings))
}

/// The calling device, from its token.
pub struct DeviceAuth(pub Caller);

impl FromRequestParts<AppState> for DeviceAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Self::Rejection> {
        device(&parts.headers, s).await.map(DeviceAuth)
    }
}

/// The calling device for posting a message: the credential is resolved through the
/// process's [`service::Callers`]; the message's transaction checks the device again.
pub struct PostingDevice(pub Caller);

impl FromRequestParts<AppState> for PostingDevice {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Self::Rejection> {
        let Some(chat) = parts.extensions.get::<Arc<Chat>>().cloned() else {
            return device(&parts.headers, s).await.map(PostingDevice);
        };
        let token = bearer(&parts.headers)?;
        match service::authenticate_posting(&s.db, &chat.callers, token, s.now().as_millisecond())
            .await?
        {
            Some(c) => Ok(PostingDevice(c)),
            None => Err(invalid_device()),
        }
    }
}

fn invalid_device() -> ApiError {
    ApiError::Unauthorized {
        detail: "the device token is invalid or the device was removed".into(),
    }
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| ApiError::Unauthorized {
            detail: "send the device token as Authorization: Bearer cbd_…".into(),
        })
}

async fn device(headers: &HeaderMap, s: &AppState) -> Result<Caller, ApiError> {
    device_of(bearer(headers)?, s).await
}

async fn device_of(token: &str, s: &AppState) -> Result<Caller, ApiError> {
    match service::authenticate(&s.db, token, s.now().as_millisecond()).await? {
        Some(c) => Ok(c),
        None => Err(invalid_device()),
    }
}

/// Registers an MLS device of the signed-in person; the device token is shown once.
#[utoipa::path(post, path = "/api/v1/chat/devices", tag = "chat", request_body = RegisterDevice,
    responses((status = 201, body = RegisteredDevice), (status = 422, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
async fn register_device(
    State(s): State<AppState>,
    Me(p, org): Me,
    Json { value: input, .. }: Json<RegisterDevice>,
) -> Result<(StatusCode, axum::Json<RegisteredDevice>), ApiError> {
    let (_, person) = p.person().ok_or(ApiError::Unauthorized {
        detail: "a person's credential is needed".into(),
    })?;
    if !service::may_register(&p) {
        return Err(carebridge_web::ServiceError::Forbidden {
            detail: "chat devices are registered with a personal key or through Carebridge's own apps with the `chat` scope; a third-party app may not add devices to a person's encrypted chats".into(),
        }
        .into());
    }
    let d = service::register(&s.db, org.id.0, person.0, input, s.now()).await?;
    Ok((StatusCode::CREATED, axum::Json(d)))
}

/// The signed-in person's devices.
#[utoipa::path(get, path = "/api/v1/chat/devices", tag = "chat",
    responses((status = 200, body = Vec<Device>)), security(("bearer" = [])))]
async fn list_devices(
    State(s): State<AppState>,
    Me(p, org): Me,
) -> Result<axum::Json<Vec<Device>>, ApiError> {
    let (_, person) = p.person().ok_or(ApiError::Unauthorized {
        detail: "a person's credential is needed".into(),
    })?;
    Ok(axum::Json(
        service::devices(&s.db, org.id.0, person.0).await?,
    ))
}

/// Removes a device (by its person, or by the device itself): it leaves every group and its
/// sockets close.
#[utoipa::path(delete, path = "/api/v1/chat/devices/{device}", tag = "chat",
    params(("device" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn remove_device(
    State(s): State<AppState>,
    Extension(chat): Extension<Arc<Chat>>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let (org, person) = match principal.as_ref().and_then(|Extension(p)| p.person()) {
        Some((o, p)) => (o.0, p.0),
        None => {
            let c = device(&headers, &s).await?;
            (c.org, c.person)
        }
    };
    service::remove_device(&s.db, &chat, org, person, id, None, s.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A person's chat devices, for administrators (directory write over the person).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/people/{person}/chat-devices", tag = "chat",
    params(("org" = String, Path, description = "slug or id"), ("person" = Uuid, Path)),
    responses((status = 200, body = Vec<Device>), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn person_devices(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, person)): Path<(String, Uuid)>,
) -> Result<axum::Json<Vec<Device>>, ApiError> {
    service::may_manage_devices_of(&s.db, &p, o.id, person).await?;
    Ok(axum::Json(service::devices(&s.db, o.id.0, person).await?))
}

/// Removes a person's chat device (a lost phone): it leaves every group and its sockets close;
/// audited as `chat.device.remove`.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/people/{person}/chat-devices/{device}", tag = "chat",
    params(("org" = String, Path, description = "slug or id"), ("person" = Uuid, Path), ("device" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn remove_person_device(
    State(s): State<AppState>,
    Extension(chat): Extension<Arc<Chat>>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path((_org, person, device)): Path<(String, Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    service::may_manage_devices_of(&s.db, &p, o.id, person).await?;
    let actor = Actor::new(p, Source::Api);
    service::remove_device(&s.db, &chat, o.id.0, person, device, Some(&actor), s.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Uploads KeyPackages of the calling device (each handed out once; the last-resort one is
/// kept).
#[utoipa::path(post, path = "/api/v1/chat/key-packages", tag = "chat", request_body = UploadKeyPackages,
    responses((status = 200, body = KeyPackageStock), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn upload_key_packages(
    State(s): State<AppState>,
    Extension(chat): Extension<Arc<Chat>>,
    DeviceAuth(c): DeviceAuth,
    Json { value: input, .. }: Json<UploadKeyPackages>,
) -> Result<axum::Json<KeyPackageStock>, ApiError> {
    Ok(axum::Json(
        service::upload_key_packages(&s.db, &chat, &c, input, s.now()).await?,
    ))
}

/// The chats of the calling device's person.
#[utoipa::path(get, path = "/api/v1/chat/groups", tag = "chat",
    responses((status = 200, body = Vec<ChatGroup>)), security(("bearer" = [])))]
async fn list_groups(
    State(s): State<AppState>,
    DeviceAuth(c): DeviceAuth,
) -> Result<axum::Json<Vec<ChatGroup>>, ApiError> {
    Ok(axum::Json(service::groups(&s.db, &c, s.now()).await?))
}

/// One duty's chat.
#[utoipa::path(get, path = "/api/v1/chat/groups/{duty}", tag = "chat",
    params(("duty" = Uuid, Path)),
    responses((status = 200, body = ChatGroup), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn get_group(
    State(s): State<AppState>,
    DeviceAuth(c): DeviceAuth,
    Path(duty): Path<Uuid>,
) -> Result<axum::Json<ChatGroup>, ApiError> {
    Ok(axum::Json(service::group(&s.db, &c, duty, s.now()).await?))
}

/// Who is in the duty's chat: the devices of the rostered people, with their names (the
/// stream's `sender` is a device id).
#[utoipa::path(get, path = "/api/v1/chat/groups/{duty}/members", tag = "chat",
    params(("duty" = Uuid, Path)),
    responses((status = 200, body = Vec<ChatMember>), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn group_members(
    State(s): State<AppState>,
    DeviceAuth(c): DeviceAuth,
    Path(duty): Path<Uuid>,
) -> Result<axum::Json<Vec<ChatMember>>, ApiError> {
    Ok(axum::Json(
        service::members(&s.db, &c, duty, s.now()).await?,
    ))
}

/// Creates the duty's MLS group from its first member device's GroupInfo.
#[utoipa::path(post, path = "/api/v1/chat/groups/{duty}", tag = "chat", request_body = CreateGroup,
    params(("duty" = Uuid, Path)),
    responses((status = 201, body = ChatGroup), (status = 422, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
async fn create_group(
    State(s): State<AppState>,
    Extension(chat): Extension<Arc<Chat>>,
    DeviceAuth(c): DeviceAuth,
    Path(duty): Path<Uuid>,
    Json { value: input, .. }: Json<CreateGroup>,
) -> Result<(StatusCode, axum::Json<ChatGroup>), ApiError> {
    let g = service::create_group(&s.db, &chat, &c, duty, input, s.now()).await?;
    Ok((StatusCode::CREATED, axum::Json(g)))
}

/// For a device that lost or broke its copy of the group: the server proposes its removal,
/// and the roster adds it again (a new Welcome) once a member committed that. Answers the
/// stream number of the proposal: Welcomes at or below it are the device's old ones.
#[utoipa::path(post, path = "/api/v1/chat/groups/{duty}/rejoin", tag = "chat",
    params(("duty" = Uuid, Path)),
    responses((status = 202, body = Posted), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
async fn rejoin_group(
    State(s): State<AppState>,
    Extension(chat): Extension<Arc<Chat>>,
    DeviceAuth(c): DeviceAuth,
    Path(duty): Path<Uuid>,
) -> Result<(StatusCode, axum::Json<Posted>), ApiError> {
    let p = service::rejoin(&s.db, &chat, &c, duty, s.now()).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(p)))
}

/// The group's stream after `after`, for a device that was offline.
#[utoipa::path(get, path = "/api/v1/chat/groups/{duty}/messages", tag = "chat",
    params(("duty" = Uuid, Path), MessagesQuery),
    responses((status = 200, body = Messages), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn list_messages(
    State(s): State<AppState>,
    DeviceAuth(c): DeviceAuth,
    Path(duty): Path<Uuid>,
    Query(q): Query<MessagesQuery>,
) -> Result<axum::Json<Messages>, ApiError> {
    let limit = match q.limit {
        None => 200,
        Some(l @ 1..=1000) => i64::from(l),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_limit",
                "limit must be 1 to 1000",
            ));
        }
    };
    let after = q.after.unwrap_or(0).max(0);
    Ok(axum::Json(
        service::messages(&s.db, &c, duty, after, limit, s.now()).await?,
    ))
}

/// Sends an application message or a commit (409 `stale_epoch` when another commit won the
/// epoch: process the stream and retry).
#[utoipa::path(post, path = "/api/v1/chat/groups/{duty}/messages", tag = "chat", request_body = PostMessage,
    params(("duty" = Uuid, Path)),
    responses((status = 201, body = Posted), (status = 422, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
async fn post_message(
    State(s): State<AppState>,
    Extension(chat): Extension<Arc<Chat>>,
    PostingDevice(c): PostingDevice,
    Path(duty): Path<Uuid>,
    Json { value: input, .. }: Json<PostMessage>,
) -> Result<(StatusCode, axum::Json<Posted>), ApiError> {
    let p = service::post(&s.db, &chat, &c, duty, input, s.now()).await?;
    Ok((StatusCode::CREATED, axum::Json(p)))
}

/// Uploads an attachment: the raw body is the file as the device encrypted it (the key goes
/// inside the MLS message that refers to it). Only a device in the group, while the chat is
/// writable, up to the organisation's size limit (default 10 MiB).
#[utoipa::path(post, path = "/api/v1/chat/groups/{duty}/attachments", tag = "chat",
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    params(("duty" = Uuid, Path)),
    responses((status = 201, body = Attachment), (status = 422, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
async fn upload_attachment(
    State(s): State<AppState>,
    DeviceAuth(c): DeviceAuth,
    Path(duty): Path<Uuid>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<(StatusCode, axum::Json<Attachment>), ApiError> {
    // Who may upload, and how much, before a byte of the body is read.
    let cap = service::attachment_limit(&s.db, &c, duty, s.now()).await?;
    let max = || service::too_large(cap as i64 - carebridge_proto::chat::ATTACHMENT_OVERHEAD);
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > cap as u64) {
        return Err(max().into());
    }
    let body = axum::body::to_bytes(body, cap)
        .await
        .map_err(|_| ApiError::from(max()))?;
    let a = service::upload_attachment(&s.db, &c, duty, &body, s.now()).await?;
    Ok((StatusCode::CREATED, axum::Json(a)))
}

/// Downloads an attachment's encrypted blob (a device in the group, until the chat is
/// deleted).
#[utoipa::path(get, path = "/api/v1/chat/groups/{duty}/attachments/{attachment}", tag = "chat",
    params(("duty" = Uuid, Path), ("attachment" = Uuid, Path)),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 404, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
async fn download_attachment(
    State(s): State<AppState>,
    DeviceAuth(c): DeviceAuth,
    Path((duty, attachment)): Path<(Uuid, Uuid)>,
) -> Result<Response, ApiError> {
    let data = service::download_attachment(&s.db, &c, duty, attachment, s.now()).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "private, no-store"),
        ],
        data,
    )
        .into_response())
}

/// The WebSocket subprotocol a browser names, beside its device token, because a browser's
/// `WebSocket` cannot send an `Authorization` header.
pub const WS_PROTOCOL: &str = "carebridge.chat.v1";

/// The device token of a WebSocket upgrade: `Authorization: Bearer cbd_…`, or (browsers)
/// `Sec-WebSocket-Protocol: carebridge.chat.v1, cbd_…`.
fn socket_token(headers: &HeaderMap) -> Option<(&str, bool)> {
    if let Some(t) = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
    {
        return Some((t.trim(), false));
    }
    let offered: Vec<&str> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .collect();
    if !offered.contains(&WS_PROTOCOL) {
        return None;
    }
    offered
        .into_iter()
        .find(|p| p.starts_with("cbd_"))
        .map(|t| (t, true))
}

/// The device's live stream: JSON text frames (`Frame`) for every new message of its groups.
/// Frames can arrive out of order across concurrent senders; a device that sees a gap fetches
/// it by cursor. The device token goes in `Authorization`, or — from a browser, which cannot
/// set that header — as a second WebSocket subprotocol beside `carebridge.chat.v1` (the answer
/// selects `carebridge.chat.v1`).
#[utoipa::path(get, path = "/api/v1/chat/ws", tag = "chat",
    responses((status = 101, description = "WebSocket"), (status = 401, body = Problem)), security(("bearer" = [])))]
async fn socket(
    State(s): State<AppState>,
    headers: HeaderMap,
    Extension(chat): Extension<Arc<Chat>>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Some((token, browser)) = socket_token(&headers) else {
        return Err(ApiError::Unauthorized {
            detail: "send the device token as Authorization: Bearer cbd_…, or as the WebSocket subprotocol cbd_… beside carebridge.chat.v1".into(),
        });
    };
    let c = device_of(token, &s).await?;
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(e) => return Ok(e.into_response()),
    };
    let upgrade = if browser {
        upgrade.protocols([WS_PROTOCOL])
    } else {
        upgrade
    };
    // Small buffers: an idle socket costs ~12 KiB instead of ~140 KiB (FACTS.md).
    Ok(upgrade
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .max_message_size(64 * 1024)
        .on_upgrade(move |ws| run_socket(ws, chat, c.device))
        .into_response())
}

async fn run_socket(mut ws: WebSocket, chat: Arc<Chat>, device: Uuid) {
    let (id, mut rx) = chat.hub.connect(device);
    loop {
        tokio::select! {
            push = rx.recv() => match push {
                Some(Push::Frame(f)) => {
                    // A device that stops reading must not hold its task (or the shutdown).
                    match tokio::time::timeout(Duration::from_secs(10), ws.send(Message::Text(f))).await {
                        Ok(Ok(())) => {}
                        _ => break,
                    }
                }
                Some(Push::Close) | None => {
                    let _ = ws.send(Message::Close(None)).await;
                    break;
                }
            },
            incoming = ws.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                // Devices send nothing but pings (answered by the protocol layer).
                Some(Ok(_)) => {}
            },
        }
    }
    chat.hub.disconnect(device, id);
}

/// The organisation's chat retention (readable with `org:read`, and with `duties:read`: whoever
/// plans or works duties may know when their chats close).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/chat/settings", tag = "chat",
    params(("org" = String, Path, description = "slug or id")),
    responses((status = 200, body = ChatSettings)), security(("bearer" = [])))]
async fn get_settings(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(_org): Path<String>,
) -> Result<axum::Json<ChatSettings>, ApiError> {
    if require(&p, &o, Permission::OrgRead).is_err() {
        require(&p, &o, Permission::DutiesRead)?;
    }
    Ok(axum::Json(service::settings(&s.db, o.id.0).await?))
}

/// Sets the organisation's chat retention (audited as `chat.settings`).
#[utoipa::path(put, path = "/api/v1/orgs/{org}/chat/settings", tag = "chat", request_body = ChatSettings,
    params(("org" = String, Path, description = "slug or id")),
    responses((status = 200, body = ChatSettings), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn put_settings(
    State(s): State<AppState>,
    Auth(p): Auth,
    OrgPath(o): OrgPath,
    Path(_org): Path<String>,
    Json { value: input, .. }: Json<ChatSettings>,
) -> Result<axum::Json<ChatSettings>, ApiError> {
    require(&p, &o, Permission::OrgWrite)?;
    let actor = Actor::new(p, Source::Api);
    Ok(axum::Json(
        service::set_settings(&s.db, &actor, o.id, input, s.now()).await?,
    ))
}
