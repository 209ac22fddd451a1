//! The member SDK of the duty chat: an MLS device (openmls, ciphersuite 1) that talks to the
//! Carebridge chat API. It registers itself for a signed-in person, keeps KeyPackages on the
//! server, creates a duty's group when it is the first device there, joins from Welcomes,
//! commits the server's membership proposals on its own (so the chat never stalls on a
//! pending proposal), and recovers from a lost commit race (`409 stale_epoch`) by processing
//! the winner and retrying.
//!
//! Group configuration follows RFC 9420 strictly (public handshake messages, private
//! application messages, ratchet-tree extension, the server as `external_senders[0]`), so
//! other MLS implementations can be members of the same groups.
//!
//! State is kept in memory; [`Device::save`] writes all of it (device token, MLS signature
//! key, every group's state and stream cursor) as one JSON document and [`Device::restore`]
//! brings the device back, e.g. after the app restarts. The document holds the device's
//! private keys: store it like a password (the CLI writes it with mode 0600).

use std::collections::HashMap;

pub mod content;
pub mod member;
pub use content::{AttachmentRef, Content};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use carebridge_proto::chat as wire;
use futures_util::StreamExt;
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use uuid::Uuid;

/// The ciphersuite of every Carebridge group.
pub const SUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// Past epochs whose application messages a device can still decrypt (messages sent just
/// before a commit arrive after it).
const PAST_EPOCHS: usize = 5;

/// What can go wrong on the client side.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the server answered {status}: {body}")]
    Api { status: u16, body: String },
    #[error("MLS: {0}")]
    Mls(String),
    #[error("WebSocket: {0}")]
    Ws(String),
    #[error("{0}")]
    State(String),
}

fn mls(e: impl std::fmt::Debug) -> ClientError {
    ClientError::Mls(format!("{e:?}"))
}

/// A decrypted application message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub seq: i64,
    pub sender: Option<Uuid>,
    pub plaintext: Vec<u8>,
}

struct Joined {
    group: MlsGroup,
    /// The last stream message processed.
    cursor: i64,
}

/// One MLS device of a person.
pub struct Device {
    http: reqwest::Client,
    base: String,
    token: String,
    pub id: Uuid,
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
    groups: HashMap<Uuid, Joined>,
    /// Groups this device was removed from (or that were deleted).
    pub gone: Vec<Uuid>,
    /// Application messages read while sending (catching up before a retry): MLS decrypts a
    /// message once, so they wait here for [`Device::take_read`].
    read_meanwhile: Vec<(Uuid, Received)>,
    /// Groups this device asked to rejoin ([`Device::rejoin`]): Welcomes at or below the
    /// stream number are its old ones.
    rejoining: HashMap<Uuid, i64>,
    /// Groups this device rejoined on its own, for [`Device::take_rejoined`].
    rejoined: Vec<Uuid>,
}

async fn check(r: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    if r.status().is_success() {
        Ok(r)
    } else {
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        Err(ClientError::Api { status, body })
    }
}

fn bytes(m: &MlsMessageOut) -> Result<Vec<u8>, ClientError> {
    m.to_bytes().map_err(mls)
}

impl Device {
    /// Registers a new device for the person behind `person_token` at `base`
    /// (`http://host:port`) and uploads `key_packages` one-time KeyPackages and a last-resort
    /// one.
    pub async fn register(
        base: &str,
        person_token: &str,
        name: &str,
        key_packages: usize,
    ) -> Result<Device, ClientError> {
        let http = reqwest::Client::new();
        let signer = SignatureKeyPair::new(SUITE.signature_algorithm()).map_err(mls)?;
        let r = check(
            http.post(format!("{base}/api/v1/chat/devices"))
                .bearer_auth(person_token)
                .json(&wire::RegisterDevice {
                    name: name.into(),
                    signature_key: STANDARD.encode(signer.to_public_vec()),
                })
                .send()
                .await?,
        )
        .await?;
        let reg: wire::RegisteredDevice = r.json().await?;
        let provider = OpenMlsRustCrypto::default();
        signer.store(provider.storage()).map_err(mls)?;
        let credential = CredentialWithKey {
            credential: BasicCredential::new(reg.device.identity.clone().into_bytes()).into(),
            signature_key: signer.public().into(),
        };
        let d = Device {
            http,
            base: base.trim_end_matches('/').to_string(),
            token: reg.token,
            id: reg.device.id,
            provider,
            signer,
            credential,
            groups: HashMap::new(),
            gone: Vec::new(),
            read_meanwhile: Vec::new(),
            rejoining: HashMap::new(),
            rejoined: Vec::new(),
        };
        d.upload_key_packages(key_packages, true).await?;
        Ok(d)
    }

    /// The device token (for raw API calls in tests and tools).
    pub fn token(&self) -> &str {
        &self.token
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Makes a KeyPackage of this device (`MLSMessage` bytes).
    pub fn key_package(&self, last_resort: bool) -> Result<Vec<u8>, ClientError> {
        let mut b = KeyPackage::builder();
        if last_resort {
            b = b
                .mark_as_last_resort()
                .leaf_node_capabilities(Capabilities::new(
                    None,
                    None,
                    Some(&[ExtensionType::LastResort]),
                    None,
                    None,
                ));
        }
        let bundle = b
            .build(SUITE, &self.provider, &self.signer, self.credential.clone())
            .map_err(mls)?;
        bytes(&MlsMessageOut::from(bundle.key_package().clone()))
    }

    /// Uploads `n` one-time KeyPackages (and a last-resort one when asked).
    pub async fn upload_key_packages(
        &self,
        n: usize,
        last_resort: bool,
    ) -> Result<wire::KeyPackageStock, ClientError> {
        let mut kps = Vec::with_capacity(n);
        for _ in 0..n {
            kps.push(STANDARD.encode(self.key_package(false)?));
        }
        let last = if last_resort {
            Some(STANDARD.encode(self.key_package(true)?))
        } else {
            None
        };
        let r = check(
            self.http
                .post(self.url("/api/v1/chat/key-packages"))
                .bearer_auth(&self.token)
                .json(&wire::UploadKeyPackages {
                    key_packages: kps,
                    last_resort: last,
                })
                .send()
                .await?,
        )
        .await?;
        Ok(r.json().await?)
    }

    /// The chats of this device's person.
    pub async fn chats(&self) -> Result<Vec<wire::ChatGroup>, ClientError> {
        let r = check(
            self.http
                .get(self.url("/api/v1/chat/groups"))
                .bearer_auth(&self.token)
                .send()
                .await?,
        )
        .await?;
        Ok(r.json().await?)
    }

    /// One chat.
    pub async fn chat(&self, duty: Uuid) -> Result<wire::ChatGroup, ClientError> {
        let r = check(
            self.http
                .get(self.url(&format!("/api/v1/chat/groups/{duty}")))
                .bearer_auth(&self.token)
                .send()
                .await?,
        )
        .await?;
        Ok(r.json().await?)
    }

    /// Who is in the chat of `duty`: the devices of the rostered people with their names.
    pub async fn members(&self, duty: Uuid) -> Result<Vec<wire::ChatMember>, ClientError> {
        let r = check(
            self.http
                .get(self.url(&format!("/api/v1/chat/groups/{duty}/members")))
                .bearer_auth(&self.token)
                .send()
                .await?,
        )
        .await?;
        Ok(r.json().await?)
    }

    /// Whether this device is in the group of `duty` (locally).
    pub fn joined(&self, duty: Uuid) -> bool {
        self.groups.contains_key(&duty)
    }

    /// The local epoch of the group of `duty`.
    pub fn epoch(&self, duty: Uuid) -> Option<u64> {
        self.groups.get(&duty).map(|j| j.group.epoch().as_u64())
    }

    /// A value every member of the group at the same epoch shares (to prove no fork).
    pub fn epoch_authenticator(&self, duty: Uuid) -> Option<Vec<u8>> {
        self.groups
            .get(&duty)
            .map(|j| j.group.epoch_authenticator().as_slice().to_vec())
    }

    /// Opens the chat of `duty`: creates the group when nobody has yet, else catches up (and
    /// joins when a Welcome is waiting). Returns the messages read.
    pub async fn open(&mut self, duty: Uuid) -> Result<Vec<Received>, ClientError> {
        if !self.groups.contains_key(&duty) {
            let g = self.chat(duty).await?;
            if !g.created && g.phase == "writable" {
                match self.create(duty, &g).await {
                    Ok(()) => {}
                    // Another device was faster: wait for the Welcome like everyone else.
                    Err(ClientError::Api { status: 409, .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.sync(duty).await
    }

    async fn create(&mut self, duty: Uuid, g: &wire::ChatGroup) -> Result<(), ClientError> {
        let key = STANDARD
            .decode(&g.external_sender_key)
            .map_err(|e| ClientError::State(e.to_string()))?;
        let sender = ExternalSender::new(
            key.into(),
            BasicCredential::new(g.external_sender_identity.clone().into_bytes()).into(),
        );
        let exts = Extensions::single(Extension::ExternalSenders(vec![sender])).map_err(mls)?;
        let config = MlsGroupCreateConfig::builder()
            .ciphersuite(SUITE)
            .wire_format_policy(PURE_PLAINTEXT_WIRE_FORMAT_POLICY)
            .use_ratchet_tree_extension(true)
            .max_past_epochs(PAST_EPOCHS)
            .with_group_context_extensions(exts)
            .build();
        let group = MlsGroup::new_with_group_id(
            &self.provider,
            &self.signer,
            &config,
            GroupId::from_slice(duty.as_bytes()),
            self.credential.clone(),
        )
        .map_err(mls)?;
        let info = group
            .export_group_info(self.provider.crypto(), &self.signer, true)
            .map_err(mls)?;
        let body = wire::CreateGroup {
            group_info: STANDARD.encode(bytes(&info)?),
        };
        check(
            self.http
                .post(self.url(&format!("/api/v1/chat/groups/{duty}")))
                .bearer_auth(&self.token)
                .json(&body)
                .send()
                .await?,
        )
        .await?;
        self.groups.insert(duty, Joined { group, cursor: 0 });
        Ok(())
    }

    /// Fetches one page of the stream after `after`.
    pub async fn fetch(&self, duty: Uuid, after: i64) -> Result<wire::Messages, ClientError> {
        let r = check(
            self.http
                .get(self.url(&format!(
                    "/api/v1/chat/groups/{duty}/messages?after={after}&limit=500"
                )))
                .bearer_auth(&self.token)
                .send()
                .await?,
        )
        .await?;
        Ok(r.json().await?)
    }

    /// Catches up with the stream of `duty`, then commits pending server proposals (retrying
    /// after a lost race). Returns the application messages read.
    pub async fn sync(&mut self, duty: Uuid) -> Result<Vec<Received>, ClientError> {
        let mut out = Vec::new();
        for _ in 0..20 {
            self.catch_up(duty, &mut out).await?;
            match self.commit_pending(duty).await? {
                Commit::Nothing => return Ok(out),
                // The server may have proposed more in the same transaction: read on.
                Commit::Done | Commit::Lost => continue,
            }
        }
        Err(ClientError::State(
            "lost the commit race 20 times in a row".into(),
        ))
    }

    async fn catch_up(&mut self, duty: Uuid, out: &mut Vec<Received>) -> Result<(), ClientError> {
        loop {
            let after = self.groups.get(&duty).map(|j| j.cursor).unwrap_or(0);
            let page = match self.fetch(duty, after).await {
                Ok(p) => p,
                Err(ClientError::Api { status: 404, .. }) => {
                    self.forget(duty);
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            for m in &page.items {
                if let Some(r) = self.follow(duty, m).await? {
                    out.push(r);
                }
            }
            if !page.more {
                return Ok(());
            }
        }
    }

    /// Starts over in the group of `duty` after this device's copy of it was lost or broke
    /// (a commit it could not process): drops the local copy and asks the server to take the
    /// device out and add it again. The next member online commits that; the device then
    /// gets a new Welcome (through [`Device::sync`] or its socket) and reads from there on.
    /// When it was the only member the group is deleted, and [`Device::open`] creates it anew.
    pub async fn rejoin(&mut self, duty: Uuid) -> Result<(), ClientError> {
        let r = check(
            self.http
                .post(self.url(&format!("/api/v1/chat/groups/{duty}/rejoin")))
                .bearer_auth(&self.token)
                .send()
                .await?,
        )
        .await?;
        let posted: wire::Posted = r.json().await?;
        self.groups.remove(&duty);
        self.delete_stored(duty);
        self.rejoining.insert(duty, posted.seq.max(0));
        Ok(())
    }

    /// Drops the local state of the group of `duty` (the server said it is gone).
    pub fn forget(&mut self, duty: Uuid) {
        if self.groups.remove(&duty).is_some() {
            self.gone.push(duty);
        }
        self.delete_stored(duty);
    }

    /// Deletes what the MLS storage holds of the group of `duty` (a later Welcome to the same
    /// group id would be refused as "already exists").
    fn delete_stored(&self, duty: Uuid) {
        let gid = GroupId::from_slice(duty.as_bytes());
        if let Ok(Some(mut g)) = MlsGroup::load(self.provider.storage(), &gid) {
            let _ = g.delete(self.provider.storage());
        }
    }

    /// Handles a live frame of the socket: in order it is processed at once (and pending
    /// server proposals are committed); after a gap (a frame overtaken or dropped) the device
    /// catches up by cursor first. Returns the application messages read.
    pub async fn receive(&mut self, m: &wire::ChatMessage) -> Result<Vec<Received>, ClientError> {
        let duty = m.duty_id;
        let cursor = self.groups.get(&duty).map(|j| j.cursor);
        let in_order = match cursor {
            Some(c) => m.seq <= c + 1,
            None => m.kind == "welcome",
        };
        let mut out = Vec::new();
        if in_order {
            if let Some(r) = self.follow(duty, m).await? {
                out.push(r);
            }
            if self.has_pending(duty) {
                out.extend(self.sync(duty).await?);
            }
        } else {
            out.extend(self.sync(duty).await?);
        }
        Ok(out)
    }

    /// [`Device::process`], read in stream order: when this device's copy of the group can no
    /// longer follow the stream — a commit of its epoch that it cannot process, or a message
    /// of a later epoch although every earlier message was read (a commit it never merged,
    /// e.g. its state was restored from before its own commit) — it asks to rejoin
    /// ([`Device::rejoin`]) instead of failing on every later message. The chat then goes on
    /// once a member online commits the server's proposals.
    async fn follow(
        &mut self,
        duty: Uuid,
        m: &wire::ChatMessage,
    ) -> Result<Option<Received>, ClientError> {
        let Some(j) = self.groups.get(&duty) else {
            return self.process(duty, m);
        };
        let fresh = m.seq > j.cursor && m.kind != "welcome" && m.sender != Some(self.id);
        let current = j.group.epoch().as_u64();
        let epoch = u64::try_from(m.epoch).unwrap_or(0);
        if fresh && epoch > current {
            self.rejoin_lost(duty).await?;
            return Ok(None);
        }
        match self.process(duty, m) {
            Err(_) if fresh && m.kind == "commit" && epoch == current => {
                self.rejoin_lost(duty).await?;
                Ok(None)
            }
            r => r,
        }
    }

    /// Rejoins after the copy of the group broke, and notes it ([`Device::take_rejoined`]).
    /// A 404 means the chat is no longer this person's (off the roster, or deleted): the
    /// copy is dropped as when the server says so.
    async fn rejoin_lost(&mut self, duty: Uuid) -> Result<(), ClientError> {
        match self.rejoin(duty).await {
            Ok(()) => {
                self.rejoined.push(duty);
                Ok(())
            }
            Err(ClientError::Api { status: 404, .. }) => {
                self.forget(duty);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Groups this device had to rejoin on its own since the last call (its copy could no
    /// longer follow the stream); it reads again from its next Welcome on.
    pub fn take_rejoined(&mut self) -> Vec<Uuid> {
        std::mem::take(&mut self.rejoined)
    }

    /// Processes one stream message (a frame from the socket or a fetched one). Messages at
    /// or before the cursor are ignored.
    pub fn process(
        &mut self,
        duty: Uuid,
        m: &wire::ChatMessage,
    ) -> Result<Option<Received>, ClientError> {
        let data = STANDARD
            .decode(&m.data)
            .map_err(|e| ClientError::State(e.to_string()))?;
        if m.kind == "welcome" {
            if self
                .rejoining
                .get(&duty)
                .is_some_and(|floor| m.seq <= *floor)
            {
                return Ok(None);
            }
            // A device removed and added again gets a new Welcome: it replaces the old state.
            if self.groups.get(&duty).is_some_and(|j| {
                j.group.is_active()
                    && j.group.epoch().as_u64() >= u64::try_from(m.epoch).unwrap_or(0)
            }) {
                return Ok(None);
            }
            let msg = MlsMessageIn::tls_deserialize_exact(&data).map_err(mls)?;
            let MlsMessageBodyIn::Welcome(w) = msg.extract() else {
                return Err(ClientError::Mls("expected a Welcome".into()));
            };
            let config = MlsGroupJoinConfig::builder()
                .wire_format_policy(PURE_PLAINTEXT_WIRE_FORMAT_POLICY)
                .use_ratchet_tree_extension(true)
                .max_past_epochs(PAST_EPOCHS)
                .build();
            let staged =
                StagedWelcome::new_from_welcome(&self.provider, &config, w, None).map_err(mls)?;
            let group = staged.into_group(&self.provider).map_err(mls)?;
            if group.group_id().as_slice() != duty.as_bytes() {
                return Err(ClientError::Mls("the Welcome is for another group".into()));
            }
            self.rejoining.remove(&duty);
            self.groups.insert(
                duty,
                Joined {
                    group,
                    cursor: m.seq,
                },
            );
            return Ok(None);
        }
        let Some(j) = self.groups.get_mut(&duty) else {
            return Ok(None);
        };
        if m.seq <= j.cursor {
            return Ok(None);
        }
        j.cursor = m.seq;
        let own = m.sender == Some(self.id);
        let current = j.group.epoch().as_u64();
        let epoch = u64::try_from(m.epoch).unwrap_or(0);
        match m.kind.as_str() {
            // Handshakes of an older epoch were overtaken by a commit (e.g. our own).
            "proposal" | "commit" if epoch < current || own => Ok(None),
            "application" if own => Ok(None),
            _ => {
                let msg = MlsMessageIn::tls_deserialize_exact(&data).map_err(mls)?;
                let pm = msg.try_into_protocol_message().map_err(mls)?;
                let processed = j.group.process_message(&self.provider, pm).map_err(mls)?;
                let sender = m.sender;
                match processed.into_content() {
                    ProcessedMessageContent::ApplicationMessage(a) => Ok(Some(Received {
                        seq: m.seq,
                        sender,
                        plaintext: a.into_bytes(),
                    })),
                    ProcessedMessageContent::ProposalMessage(p) => {
                        j.group
                            .store_pending_proposal(self.provider.storage(), *p)
                            .map_err(mls)?;
                        Ok(None)
                    }
                    ProcessedMessageContent::ExternalJoinProposalMessage(_)
                    | ProcessedMessageContent::OwnPrivateMessage => Ok(None),
                    ProcessedMessageContent::OwnPendingCommit => {
                        j.group.merge_pending_commit(&self.provider).map_err(mls)?;
                        Ok(None)
                    }
                    ProcessedMessageContent::StagedCommitMessage(sc) => {
                        j.group
                            .merge_staged_commit(&self.provider, *sc)
                            .map_err(mls)?;
                        if !j.group.is_active() {
                            self.forget(duty);
                        }
                        Ok(None)
                    }
                }
            }
        }
    }

    async fn commit_pending(&mut self, duty: Uuid) -> Result<Commit, ClientError> {
        let Some(j) = self.groups.get_mut(&duty) else {
            return Ok(Commit::Nothing);
        };
        if j.group.pending_proposals().next().is_none() {
            return Ok(Commit::Nothing);
        }
        let (commit, welcome, _) = j
            .group
            .commit_to_pending_proposals(&self.provider, &self.signer)
            .map_err(mls)?;
        let body = wire::PostMessage {
            message: STANDARD.encode(bytes(&commit)?),
            welcome: match welcome {
                Some(w) => Some(STANDARD.encode(bytes(&w)?)),
                None => None,
            },
        };
        match self.post(duty, &body).await {
            Ok(_) => {
                let j = self
                    .groups
                    .get_mut(&duty)
                    .ok_or_else(|| ClientError::State("group vanished".into()))?;
                j.group.merge_pending_commit(&self.provider).map_err(mls)?;
                Ok(Commit::Done)
            }
            Err(ClientError::Api { status: 409, body }) if body.contains("stale_epoch") => {
                let j = self
                    .groups
                    .get_mut(&duty)
                    .ok_or_else(|| ClientError::State("group vanished".into()))?;
                j.group
                    .clear_pending_commit(self.provider.storage())
                    .map_err(mls)?;
                Ok(Commit::Lost)
            }
            Err(e) => {
                if let Some(j) = self.groups.get_mut(&duty) {
                    let _ = j.group.clear_pending_commit(self.provider.storage());
                }
                Err(e)
            }
        }
    }

    async fn post(
        &self,
        duty: Uuid,
        body: &wire::PostMessage,
    ) -> Result<wire::Posted, ClientError> {
        let r = check(
            self.http
                .post(self.url(&format!("/api/v1/chat/groups/{duty}/messages")))
                .bearer_auth(&self.token)
                .json(body)
                .send()
                .await?,
        )
        .await?;
        Ok(r.json().await?)
    }

    /// Stages a self-update commit (pending until merged or cleared) and returns its bytes.
    fn stage_self_update(&mut self, duty: Uuid) -> Result<Vec<u8>, ClientError> {
        let j = self
            .groups
            .get_mut(&duty)
            .ok_or_else(|| ClientError::State("not in this group".into()))?;
        let bundle = j
            .group
            .self_update(&self.provider, &self.signer, LeafNodeParameters::default())
            .map_err(mls)?;
        bytes(bundle.commit())
    }

    /// Commits a fresh key for this device (a self-update), without catching up first.
    /// Returns the server's answer; the caller handles a lost race.
    pub async fn self_update(&mut self, duty: Uuid) -> Result<wire::Posted, ClientError> {
        let body = wire::PostMessage {
            message: STANDARD.encode(self.stage_self_update(duty)?),
            welcome: None,
        };
        let posted = self.post(duty, &body).await;
        let j = self
            .groups
            .get_mut(&duty)
            .ok_or_else(|| ClientError::State("group vanished".into()))?;
        match posted {
            Ok(p) => {
                j.group.merge_pending_commit(&self.provider).map_err(mls)?;
                Ok(p)
            }
            Err(e) => {
                let _ = j.group.clear_pending_commit(self.provider.storage());
                Err(e)
            }
        }
    }

    /// A self-update commit of this device, not sent and not kept (for measuring the
    /// server's validation cost).
    pub fn prepare_self_update(&mut self, duty: Uuid) -> Result<Vec<u8>, ClientError> {
        let out = self.stage_self_update(duty);
        if let Some(j) = self.groups.get_mut(&duty) {
            j.group
                .clear_pending_commit(self.provider.storage())
                .map_err(mls)?;
        }
        out
    }

    /// Whether server proposals wait for a commit in the group of `duty`.
    pub fn has_pending(&self, duty: Uuid) -> bool {
        self.groups
            .get(&duty)
            .is_some_and(|j| j.group.pending_proposals().next().is_some())
    }

    /// Encrypts and sends `text` to the chat of `duty`; catches up and retries when a commit
    /// came first. Returns the message's number.
    pub async fn send(&mut self, duty: Uuid, text: &[u8]) -> Result<i64, ClientError> {
        for _ in 0..20 {
            let j = self
                .groups
                .get_mut(&duty)
                .ok_or_else(|| ClientError::State("not in this group".into()))?;
            if j.group.pending_proposals().next().is_some() {
                let got = self.sync(duty).await?;
                self.read_meanwhile
                    .extend(got.into_iter().map(|r| (duty, r)));
                continue;
            }
            let msg = j
                .group
                .create_message(&self.provider, &self.signer, text)
                .map_err(mls)?;
            let body = wire::PostMessage {
                message: STANDARD.encode(bytes(&msg)?),
                welcome: None,
            };
            match self.post(duty, &body).await {
                Ok(p) => return Ok(p.seq),
                Err(ClientError::Api { status: 409, body }) if body.contains("stale_epoch") => {
                    let got = self.sync(duty).await?;
                    self.read_meanwhile
                        .extend(got.into_iter().map(|r| (duty, r)));
                }
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::State("could not send after 20 tries".into()))
    }

    /// Application messages that [`Device::send`] read while catching up before a retry
    /// (they are not returned by any later read).
    pub fn take_read(&mut self) -> Vec<(Uuid, Received)> {
        std::mem::take(&mut self.read_meanwhile)
    }

    /// Sends a text message (a [`Content::Text`] document).
    pub async fn send_text(&mut self, duty: Uuid, text: &str) -> Result<i64, ClientError> {
        self.send(duty, &Content::text(text).encode()).await
    }

    /// Encrypts `data` with a fresh key, uploads the ciphertext and sends a message naming it
    /// (with the key) to the chat of `duty`. Returns the message's number and what it says.
    pub async fn send_attachment(
        &mut self,
        duty: Uuid,
        name: &str,
        mime: &str,
        data: &[u8],
    ) -> Result<(i64, AttachmentRef), ClientError> {
        use openmls::prelude::OpenMlsRand as _;
        let rand = self.provider.rand();
        let key: [u8; 32] = rand
            .random_array()
            .map_err(|e| ClientError::State(format!("no randomness: {e:?}")))?;
        let nonce: [u8; 12] = rand
            .random_array()
            .map_err(|e| ClientError::State(format!("no randomness: {e:?}")))?;
        let blob = content::seal(data, &key, &nonce)?;
        let r = check(
            self.http
                .post(self.url(&format!("/api/v1/chat/groups/{duty}/attachments")))
                .bearer_auth(&self.token)
                .header("content-type", "application/octet-stream")
                .body(blob)
                .send()
                .await?,
        )
        .await?;
        let uploaded: wire::Attachment = r.json().await?;
        let a = AttachmentRef {
            id: uploaded.id,
            name: name.to_string(),
            mime: mime.to_string(),
            size: data.len() as u64,
            key: STANDARD.encode(key),
            nonce: STANDARD.encode(nonce),
        };
        let seq = self
            .send(duty, &Content::Attachment(a.clone()).encode())
            .await?;
        Ok((seq, a))
    }

    /// Downloads and decrypts the attachment a message of `duty` named.
    pub async fn download(&self, duty: Uuid, a: &AttachmentRef) -> Result<Vec<u8>, ClientError> {
        let r = check(
            self.http
                .get(self.url(&format!("/api/v1/chat/groups/{duty}/attachments/{}", a.id)))
                .bearer_auth(&self.token)
                .send()
                .await?,
        )
        .await?;
        let blob = r.bytes().await?;
        content::open(a, &blob)
    }

    /// Sends an arbitrary body (raw MLS bytes, base64) to the group: for tests of bad input.
    pub async fn post_raw(&self, duty: Uuid, message: &[u8]) -> Result<wire::Posted, ClientError> {
        self.post(
            duty,
            &wire::PostMessage {
                message: STANDARD.encode(message),
                welcome: None,
            },
        )
        .await
    }

    /// Opens the device's WebSocket.
    pub async fn connect(&self) -> Result<Socket, ClientError> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!(
            "{}/api/v1/chat/ws",
            self.base
                .replacen("http://", "ws://", 1)
                .replacen("https://", "wss://", 1)
        );
        let mut req = url
            .into_client_request()
            .map_err(|e| ClientError::Ws(e.to_string()))?;
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {}", self.token)
                .parse()
                .map_err(|_| ClientError::Ws("bad token".into()))?,
        );
        // tungstenite zero-fills its whole read buffer before each read: at the default 128 KiB
        // that was most of a busy device's CPU. Chat frames are small; 8 KiB is plenty (larger
        // frames still arrive whole).
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(8 * 1024);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(req, Some(config), false)
            .await
            .map_err(|e| ClientError::Ws(e.to_string()))?;
        Ok(Socket { ws })
    }
}

/// Everything a device needs to come back: see [`Device::save`].
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    base: String,
    token: String,
    id: Uuid,
    signature_key: String,
    /// openmls storage: `(key, value)` in base64.
    storage: Vec<(String, String)>,
    /// `(duty, cursor)` of every joined group.
    groups: Vec<(Uuid, i64)>,
    gone: Vec<Uuid>,
    /// `(duty, stream number)` of groups being rejoined.
    #[serde(default)]
    rejoining: Vec<(Uuid, i64)>,
}

impl Device {
    /// The whole device state as JSON (contains private keys).
    pub fn save(&self) -> Result<String, ClientError> {
        let values = self
            .provider
            .storage()
            .values
            .read()
            .map_err(|_| ClientError::State("storage lock poisoned".into()))?;
        let mut storage: Vec<(String, String)> = values
            .iter()
            .map(|(k, v)| (STANDARD.encode(k), STANDARD.encode(v)))
            .collect();
        storage.sort();
        let saved = Saved {
            base: self.base.clone(),
            token: self.token.clone(),
            id: self.id,
            signature_key: STANDARD.encode(self.signer.to_public_vec()),
            storage,
            groups: self.groups.iter().map(|(d, j)| (*d, j.cursor)).collect(),
            gone: self.gone.clone(),
            rejoining: self.rejoining.iter().map(|(d, s)| (*d, *s)).collect(),
        };
        serde_json::to_string(&saved).map_err(|e| ClientError::State(e.to_string()))
    }

    /// A device from [`Device::save`]'s document.
    pub fn restore(json: &str) -> Result<Device, ClientError> {
        let bad = |e: &dyn std::fmt::Display| ClientError::State(format!("saved state: {e}"));
        let saved: Saved = serde_json::from_str(json).map_err(|e| bad(&e))?;
        let provider = OpenMlsRustCrypto::default();
        {
            let mut values = provider
                .storage()
                .values
                .write()
                .map_err(|_| ClientError::State("storage lock poisoned".into()))?;
            for (k, v) in &saved.storage {
                values.insert(
                    STANDARD.decode(k).map_err(|e| bad(&e))?,
                    STANDARD.decode(v).map_err(|e| bad(&e))?,
                );
            }
        }
        let public = STANDARD.decode(&saved.signature_key).map_err(|e| bad(&e))?;
        let signer =
            SignatureKeyPair::read(provider.storage(), &public, SUITE.signature_algorithm())
                .ok_or_else(|| ClientError::State("saved state: no signature key".into()))?;
        let credential = CredentialWithKey {
            credential: BasicCredential::new(format!("device:{}", saved.id).into_bytes()).into(),
            signature_key: signer.public().into(),
        };
        let mut groups = HashMap::new();
        for (duty, cursor) in saved.groups {
            let group = MlsGroup::load(provider.storage(), &GroupId::from_slice(duty.as_bytes()))
                .map_err(mls)?
                .ok_or_else(|| ClientError::State(format!("saved state: group {duty} missing")))?;
            groups.insert(duty, Joined { group, cursor });
        }
        Ok(Device {
            http: reqwest::Client::new(),
            base: saved.base,
            token: saved.token,
            id: saved.id,
            provider,
            signer,
            credential,
            groups,
            gone: saved.gone,
            read_meanwhile: Vec::new(),
            rejoining: saved.rejoining.into_iter().collect(),
            rejoined: Vec::new(),
        })
    }
}

enum Commit {
    Nothing,
    Done,
    Lost,
}

/// A device's live stream.
pub struct Socket {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Socket {
    /// The next frame; `None` when the server closed the socket.
    pub async fn next(&mut self) -> Result<Option<wire::Frame>, ClientError> {
        use tokio_tungstenite::tungstenite::Message;
        while let Some(m) = self.ws.next().await {
            match m.map_err(|e| ClientError::Ws(e.to_string()))? {
                Message::Text(t) => {
                    return serde_json::from_str(t.as_str())
                        .map(Some)
                        .map_err(|e| ClientError::Ws(e.to_string()));
                }
                Message::Close(_) => return Ok(None),
                _ => {}
            }
        }
        Ok(None)
    }
}
