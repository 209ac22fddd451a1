//! The member CLI's logic (`carebridge-member`): sign in with the OAuth device flow as
//! Carebridge's own CLI client, register this computer as an MLS device, list my duties, and
//! read and write duty chats end to end encrypted, with attachments.
//!
//! Everything the CLI keeps lives in one state file ([`Session`]): the server, the person's
//! access and refresh tokens, the device (its token, private MLS keys and group states) and
//! the decrypted history of each chat (MLS deletes a message key after use, so a message can
//! be decrypted only once: the history is the only place it can be read again). The file is
//! written atomically with mode 0600; treat it like a password.
//!
//! Waiting is a parameter (`wait`) so that tests drive the device flow with their clock.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use carebridge_proto::Page;
use carebridge_proto::chat as wire;
use carebridge_proto::duties::MyDuty;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{AttachmentRef, ClientError, Content, Device, Received};

/// The OAuth client of the CLI (public, device flow), the same in every organisation.
pub const CLIENT_ID: &str = "carebridge-cli";
/// What the CLI asks for: the person's duties and chat, kept signed in.
pub const SCOPES: &str = "openid profile offline_access duties:read chat";

/// One message of a chat as this device read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub seq: i64,
    /// The sending device (`None` never happens for member messages; kept for safety).
    pub sender: Option<Uuid>,
    pub content: Content,
}

/// What the person must do to approve the sign-in.
#[derive(Clone, Deserialize)]
pub struct DeviceCode {
    pub user_code: String,
    pub verification_uri: String,
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    #[serde(default = "five")]
    pub interval: u64,
    device_code: String,
}

impl std::fmt::Debug for DeviceCode {
    // The device code is a secret (whoever holds it gets the tokens): never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCode")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

fn five() -> u64 {
    5
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// The CLI's state file.
#[derive(Serialize, Deserialize)]
pub struct Session {
    pub server: String,
    access_token: String,
    refresh_token: Option<String>,
    /// [`Device::save`] output.
    device: String,
    /// Decrypted messages per duty chat, in stream order.
    pub history: BTreeMap<Uuid, Vec<Line>>,
    #[serde(skip)]
    http: reqwest::Client,
}

fn state(e: impl std::fmt::Display) -> ClientError {
    ClientError::State(e.to_string())
}

/// Signs in with the device flow at `server` (`https://host`): `show` tells the person where
/// to approve; `wait` sleeps between polls. Then registers this computer as an MLS device
/// named `device_name`.
pub async fn login<W, F>(
    server: &str,
    device_name: &str,
    show: impl FnOnce(&DeviceCode),
    mut wait: W,
) -> Result<Session, ClientError>
where
    W: FnMut(Duration) -> F,
    F: std::future::Future<Output = ()>,
{
    let server = server.trim_end_matches('/').to_string();
    check_server(&server)?;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{server}/oauth2/device_authorization"))
        .form(&[("client_id", CLIENT_ID), ("scope", SCOPES)])
        .send()
        .await?;
    let code: DeviceCode = crate::check(r).await?.json().await?;
    show(&code);
    let mut interval = code.interval.max(1);
    let tokens = loop {
        wait(Duration::from_secs(interval)).await;
        let r = http
            .post(format!("{server}/oauth2/token"))
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("client_id", CLIENT_ID),
                ("device_code", &code.device_code),
            ])
            .send()
            .await?;
        if r.status().is_success() {
            break r.json::<TokenResponse>().await?;
        }
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        let Ok(e) = serde_json::from_str::<OAuthError>(&body) else {
            return Err(ClientError::Api { status, body });
        };
        match e.error.as_str() {
            "authorization_pending" => {}
            // RFC 8628 §3.5: poll 5 seconds slower from now on.
            "slow_down" => interval += 5,
            "access_denied" => return Err(state("the sign-in was denied")),
            "expired_token" => {
                return Err(state(
                    "the code expired before it was approved: log in again",
                ));
            }
            _ => {
                return Err(state(format!(
                    "sign-in failed: {} {}",
                    e.error,
                    e.error_description.unwrap_or_default()
                )));
            }
        }
    };
    let device = Device::register(&server, &tokens.access_token, device_name, 20).await?;
    Ok(Session {
        server,
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        device: device.save()?,
        history: BTreeMap::new(),
        http,
    })
}

/// Tokens travel only over HTTPS, or plain HTTP to this computer (a local test server).
fn check_server(server: &str) -> Result<(), ClientError> {
    let local = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| {
            server
                .strip_prefix(p)
                .is_some_and(|r| r.is_empty() || r.starts_with([':', '/']))
        });
    if server.starts_with("https://") || local {
        Ok(())
    } else {
        Err(state(format!(
            "{server}: use an https:// address (plain http only to this computer)"
        )))
    }
}

/// Holds the state file for one command: another `carebridge-member` on the same file waits
/// its turn rather than both changing the device's MLS state (which would make them reuse
/// keys). Dropping the guard releases it.
pub struct Lock(#[allow(dead_code)] std::fs::File);

impl Lock {
    /// Takes the lock of the state file `path`, waiting for another process to let go.
    pub fn take(path: &Path) -> Result<Lock, ClientError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let mut b = std::fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                b.mode(0o700);
            }
            b.create(dir).map_err(state)?;
        }
        let mut name = path.as_os_str().to_owned();
        name.push(".lock");
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&name)
            .map_err(state)?;
        f.lock().map_err(state)?;
        Ok(Lock(f))
    }
}

impl Session {
    /// Reads the state file.
    pub fn load(path: &Path) -> Result<Session, ClientError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            state(format!(
                "cannot read {}: {e} (log in first: carebridge-member login --server URL)",
                path.display()
            ))
        })?;
        serde_json::from_str(&text)
            .map_err(|e| state(format!("{} is not a state file: {e}", path.display())))
    }

    /// Writes the state file atomically (a temporary file beside it, then a rename), readable
    /// by the owner only.
    pub fn save(&self, path: &Path) -> Result<(), ClientError> {
        let text = serde_json::to_string(self).map_err(state)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(state)?;
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = std::path::PathBuf::from(tmp);
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let mut f = o.open(&tmp).map_err(state)?;
        #[cfg(unix)]
        {
            // An older file keeps its mode on open: tighten it explicitly.
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(state)?;
        }
        std::io::Write::write_all(&mut f, text.as_bytes()).map_err(state)?;
        f.sync_all().map_err(state)?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(state)
    }

    fn device(&self) -> Result<Device, ClientError> {
        Device::restore(&self.device)
    }

    fn keep(&mut self, d: &Device) -> Result<(), ClientError> {
        self.device = d.save()?;
        Ok(())
    }

    /// The names of the devices in the chat of `duty` (device id → person's name).
    pub async fn names(
        &self,
        duty: Uuid,
    ) -> Result<std::collections::HashMap<Uuid, String>, ClientError> {
        let d = self.device()?;
        Ok(d.members(duty)
            .await?
            .into_iter()
            .map(|m| (m.device_id, m.name))
            .collect())
    }

    /// This device's id.
    pub fn device_id(&self) -> Result<Uuid, ClientError> {
        Ok(self.device()?.id)
    }

    /// A call with the person's token, refreshed once when the server says it expired.
    async fn person_call(
        &mut self,
        make: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let r = make(&self.http, &self.access_token).send().await?;
        if r.status() != reqwest::StatusCode::UNAUTHORIZED {
            return crate::check(r).await;
        }
        self.refresh().await?;
        crate::check(make(&self.http, &self.access_token).send().await?).await
    }

    async fn refresh(&mut self) -> Result<(), ClientError> {
        let Some(rt) = self.refresh_token.clone() else {
            return Err(state("the sign-in expired: log in again"));
        };
        let r = self
            .http
            .post(format!("{}/oauth2/token", self.server))
            .form(&[
                ("grant_type", "refresh_token"),
                ("client_id", CLIENT_ID),
                ("refresh_token", &rt),
            ])
            .send()
            .await?;
        if !r.status().is_success() {
            return Err(state("the sign-in expired or was revoked: log in again"));
        }
        let t: TokenResponse = r.json().await?;
        self.access_token = t.access_token;
        if let Some(rt) = t.refresh_token {
            self.refresh_token = Some(rt);
        }
        Ok(())
    }

    /// My duties from `from` (RFC 3339; default now: upcoming ones), every page.
    pub async fn duties(&mut self, from: Option<&str>) -> Result<Vec<MyDuty>, ClientError> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q: Vec<(&str, String)> = vec![("limit", "200".into())];
            if let Some(f) = from {
                q.push(("from", f.to_string()));
            }
            if let Some(c) = &cursor {
                q.push(("cursor", c.clone()));
            }
            let url = format!("{}/api/v1/me/duties", self.server);
            let page: Page<MyDuty> = self
                .person_call(|h, t| h.get(&url).query(&q).bearer_auth(t))
                .await?
                .json()
                .await?;
            out.extend(page.items);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// The chats this device can take part in.
    pub async fn chats(&self) -> Result<Vec<wire::ChatGroup>, ClientError> {
        self.device()?.chats().await
    }

    /// Opens the chat of `duty` (creating or joining the group as needed), reads what is
    /// new, and returns the whole history this device has of it. A chat that was deleted
    /// (retention) or left is forgotten here too.
    pub async fn read(&mut self, duty: Uuid) -> Result<Vec<Line>, ClientError> {
        let mut d = self.device()?;
        let got = d.open(duty).await;
        self.absorb(&mut d, duty, got)
    }

    fn absorb(
        &mut self,
        d: &mut Device,
        duty: Uuid,
        got: Result<Vec<Received>, ClientError>,
    ) -> Result<Vec<Line>, ClientError> {
        let gone = !d.joined(duty) && d.gone.contains(&duty);
        for (chat, r) in d.take_read() {
            self.remember(chat, r.seq, r.sender, Content::decode(&r.plaintext));
        }
        let got = match got {
            Ok(g) => g,
            Err(ClientError::Api { status: 404, .. }) => {
                self.history.remove(&duty);
                self.keep(d)?;
                return Err(state(format!("there is no chat of duty {duty} for you")));
            }
            Err(e) => {
                self.keep(d)?;
                return Err(e);
            }
        };
        for r in got {
            self.remember(duty, r.seq, r.sender, Content::decode(&r.plaintext));
        }
        let out = self.history.get(&duty).cloned().unwrap_or_default();
        if gone {
            self.history.remove(&duty);
        }
        self.keep(d)?;
        Ok(out)
    }

    /// Adds a message to the history in stream order (once).
    fn remember(&mut self, duty: Uuid, seq: i64, sender: Option<Uuid>, content: Content) {
        let lines = self.history.entry(duty).or_default();
        if let Err(at) = lines.binary_search_by_key(&seq, |l| l.seq) {
            lines.insert(
                at,
                Line {
                    seq,
                    sender,
                    content,
                },
            );
        }
    }

    /// Starts over in the chat of `duty` after this device's copy of it broke
    /// ([`Device::rejoin`]). The history read so far stays; new messages are readable once a
    /// member online has committed the device's removal and its new Add.
    pub async fn rejoin(&mut self, duty: Uuid) -> Result<(), ClientError> {
        let mut d = self.device()?;
        let r = d.rejoin(duty).await;
        self.keep(&d)?;
        r
    }

    /// Sends a text message to the chat of `duty`.
    pub async fn send_text(&mut self, duty: Uuid, text: &str) -> Result<i64, ClientError> {
        let mut d = self.device()?;
        let before = d.open(duty).await;
        self.absorb(&mut d, duty, before)?;
        let sent = d.send_text(duty, text).await;
        self.absorb(&mut d, duty, Ok(Vec::new()))?;
        let seq = sent?;
        self.remember(duty, seq, Some(d.id), Content::text(text));
        Ok(seq)
    }

    /// Encrypts a file, uploads it and sends a message naming it.
    pub async fn send_file(
        &mut self,
        duty: Uuid,
        name: &str,
        mime: &str,
        data: &[u8],
    ) -> Result<AttachmentRef, ClientError> {
        let mut d = self.device()?;
        let before = d.open(duty).await;
        self.absorb(&mut d, duty, before)?;
        let sent = d.send_attachment(duty, name, mime, data).await;
        self.absorb(&mut d, duty, Ok(Vec::new()))?;
        let (seq, a) = sent?;
        self.remember(duty, seq, Some(d.id), Content::Attachment(a.clone()));
        Ok(a)
    }

    /// Downloads and decrypts an attachment named in the history of `duty`.
    pub async fn download(
        &self,
        duty: Uuid,
        attachment: Uuid,
    ) -> Result<(AttachmentRef, Vec<u8>), ClientError> {
        let a = self
            .history
            .get(&duty)
            .into_iter()
            .flatten()
            .find_map(|l| match &l.content {
                Content::Attachment(a) if a.id == attachment => Some(a.clone()),
                _ => None,
            })
            .ok_or_else(|| {
                state(format!(
                    "no attachment {attachment} in the history of {duty}: read the chat first"
                ))
            })?;
        let data = self.device()?.download(duty, &a).await?;
        Ok((a, data))
    }

    /// Follows every chat of this device live: catches up first, then calls `on` with each
    /// new message, until the socket closes. The state file at `path` is locked, re-read and
    /// saved around each step (not while waiting), so other commands can run meanwhile.
    pub async fn follow(
        &mut self,
        path: &Path,
        mut on: impl FnMut(Uuid, &Line),
    ) -> Result<(), ClientError> {
        let socket = {
            let _lock = Lock::take(path)?;
            *self = Session::load(path)?;
            let mut d = self.device()?;
            let socket = d.connect().await;
            // Catch up on every chat, after the socket is open so that nothing falls between.
            let mut result = Ok(());
            if socket.is_ok() {
                match d.chats().await {
                    Ok(chats) => {
                        for g in chats
                            .into_iter()
                            .filter(|g| g.member && g.phase != "deleted")
                        {
                            let known: Vec<i64> = self.seqs(g.duty_id);
                            let got = d.open(g.duty_id).await;
                            match self.absorb(&mut d, g.duty_id, got) {
                                Ok(lines) => {
                                    for l in lines.iter().filter(|l| !known.contains(&l.seq)) {
                                        on(g.duty_id, l);
                                    }
                                }
                                // A chat that went away meanwhile: follow the others.
                                Err(ClientError::State(_)) => {}
                                Err(e) => {
                                    result = Err(e);
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => result = Err(e),
                }
            }
            self.keep(&d)?;
            self.save(path)?;
            result?;
            socket?
        };
        let mut socket = socket;
        while let Some(frame) = socket.next().await? {
            let _lock = Lock::take(path)?;
            *self = Session::load(path)?;
            let mut d = self.device()?;
            let duty = match &frame {
                wire::Frame::Message { message } => message.duty_id,
                wire::Frame::Deleted { duty_id } => *duty_id,
            };
            let got = match frame {
                wire::Frame::Message { message } => d.receive(&message).await,
                wire::Frame::Deleted { .. } => {
                    d.forget(duty);
                    Ok(Vec::new())
                }
            };
            let known = self.seqs(duty);
            let lines = self.absorb(&mut d, duty, got);
            // Whatever happened, the device's state is saved: a commit it made must not be
            // forgotten.
            self.save(path)?;
            for l in lines?.iter().filter(|l| !known.contains(&l.seq)) {
                on(duty, l);
            }
        }
        Ok(())
    }

    fn seqs(&self, duty: Uuid) -> Vec<i64> {
        self.history
            .get(&duty)
            .map(|v| v.iter().map(|l| l.seq).collect())
            .unwrap_or_default()
    }

    /// Removes this device on the server (it leaves every chat), revokes the sign-in and
    /// deletes the state file.
    pub async fn logout(self, path: &Path) -> Result<(), ClientError> {
        let d = self.device()?;
        // The device removes itself with its own token (works when the sign-in expired).
        let r = self
            .http
            .delete(format!("{}/api/v1/chat/devices/{}", self.server, d.id))
            .bearer_auth(d.token())
            .send()
            .await?;
        match crate::check(r).await {
            Ok(_)
            | Err(ClientError::Api {
                status: 401 | 404, ..
            }) => {}
            Err(e) => return Err(e),
        }
        if let Some(rt) = &self.refresh_token {
            // Best effort: the device is gone already; a failed revocation only leaves a
            // refresh token that the file below no longer holds.
            let _ = self
                .http
                .post(format!("{}/oauth2/revoke", self.server))
                .form(&[("token", rt.as_str()), ("client_id", CLIENT_ID)])
                .send()
                .await;
        }
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(state(e)),
        }
    }
}
