//! Every openmls call of the delivery service (openmls 0.9, ciphersuite
//! MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519). The server holds no group secret: it follows
//! each group as a `PublicGroup` (public tree, group context, proposal store), checks
//! handshake messages (public messages by the group's wire-format policy) and signs its own
//! Add/Remove proposals as the group's external sender.
//!
//! A group's public state lives in an openmls `MemoryStorage`, saved as one blob per group
//! (length-prefixed, sorted key/value pairs, deflated); every function that changes it takes the
//! blob and returns the next one, so the caller decides inside its transaction whether the
//! change sticks. The server's proposals need no state (group id, epoch and the server's key);
//! they enter the state with the commit that references them.
//!
//! Outside input never panics here: every parse is `tls_deserialize_exact` with errors
//! mapped to [`MlsError`].

use std::collections::HashMap;

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::{MemoryStorage, OpenMlsRustCrypto, RustCrypto};

/// The only ciphersuite groups may use.
pub const SUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// The credential identity of the server as external sender.
pub const SERVER_IDENTITY: &[u8] = b"carebridge:delivery-service";

/// Why an MLS input was refused (the text is safe to show: no secrets, no plaintext).
#[derive(Debug, thiserror::Error)]
pub enum MlsError {
    #[error("not a valid MLS message: {0}")]
    Decode(String),
    #[error("{0}")]
    Refused(String),
    #[error("stored group state is unreadable: {0}")]
    State(String),
}

fn refused(e: impl std::fmt::Debug) -> MlsError {
    MlsError::Refused(format!("{e:?}"))
}

fn decode(bytes: &[u8]) -> Result<MlsMessageBodyIn, MlsError> {
    let m =
        MlsMessageIn::tls_deserialize_exact(bytes).map_err(|e| MlsError::Decode(e.to_string()))?;
    Ok(m.extract())
}

// ---- the server's key -------------------------------------------------------------------------

/// The organisation's external-sender signature key.
pub struct ServerKey {
    pair: SignatureKeyPair,
    public: Vec<u8>,
    private: Vec<u8>,
}

impl ServerKey {
    pub fn generate() -> Result<ServerKey, MlsError> {
        let pair = SignatureKeyPair::new(SUITE.signature_algorithm()).map_err(refused)?;
        let private = serde_json::to_vec(&pair).map_err(|e| MlsError::State(e.to_string()))?;
        Ok(ServerKey {
            public: pair.to_public_vec(),
            pair,
            private,
        })
    }

    /// From the stored public key and the stored (serialised) key pair.
    pub fn from_parts(public: Vec<u8>, private: Vec<u8>) -> Result<ServerKey, MlsError> {
        let pair: SignatureKeyPair =
            serde_json::from_slice(&private).map_err(|e| MlsError::State(e.to_string()))?;
        if pair.to_public_vec() != public {
            return Err(MlsError::State(
                "server key pair and public key differ".into(),
            ));
        }
        Ok(ServerKey {
            pair,
            public,
            private,
        })
    }

    pub fn public(&self) -> &[u8] {
        &self.public
    }

    /// The serialised key pair, for storage.
    pub fn private(&self) -> &[u8] {
        &self.private
    }

    fn external_sender(&self) -> ExternalSender {
        ExternalSender::new(
            self.public.clone().into(),
            BasicCredential::new(SERVER_IDENTITY.to_vec()).into(),
        )
    }
}

// ---- state blobs ------------------------------------------------------------------------------

/// The first bytes of a deflated state blob. Read as the entry count of the plain format they
/// would mean over four billion entries, so the two formats cannot be confused (states saved
/// before compression still load).
const DEFLATED: [u8; 4] = [0xFF, 0xFF, 0xFF, 0xFE];
/// The largest inflated state accepted (a group of 500 members is under 1 MiB).
const MAX_STATE: u64 = 64 * 1024 * 1024;

/// The state as stored: the sorted entries, deflated. openmls writes its values as JSON with
/// byte strings as number arrays, which deflate to a fraction: less to write and to log per
/// commit.
fn to_blob(s: &MemoryStorage) -> Result<Vec<u8>, MlsError> {
    use std::io::Write as _;
    let plain = encode(s)?;
    let mut out = Vec::with_capacity(plain.len() / 3 + DEFLATED.len());
    out.extend_from_slice(&DEFLATED);
    let mut z = flate2::write::DeflateEncoder::new(out, flate2::Compression::fast());
    z.write_all(&plain)
        .map_err(|e| MlsError::State(format!("deflate: {e}")))?;
    z.finish()
        .map_err(|e| MlsError::State(format!("deflate: {e}")))
}

/// The plain format: entry count, then per entry key and value lengths and bytes (big-endian
/// u32 lengths), sorted by key.
fn encode(s: &MemoryStorage) -> Result<Vec<u8>, MlsError> {
    let map = s
        .values
        .read()
        .map_err(|_| MlsError::State("storage lock poisoned".into()))?;
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::new();
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for (k, v) in entries {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(v);
    }
    Ok(out)
}

fn from_blob(b: &[u8]) -> Result<MemoryStorage, MlsError> {
    let Some(z) = b.strip_prefix(&DEFLATED) else {
        return decode_plain(b);
    };
    use std::io::Read as _;
    let mut plain = Vec::new();
    flate2::read::DeflateDecoder::new(z)
        .take(MAX_STATE + 1)
        .read_to_end(&mut plain)
        .map_err(|e| MlsError::State(format!("inflate: {e}")))?;
    if plain.len() as u64 > MAX_STATE {
        return Err(MlsError::State(
            "the state blob inflates beyond its limit".into(),
        ));
    }
    decode_plain(&plain)
}

fn decode_plain(b: &[u8]) -> Result<MemoryStorage, MlsError> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], MlsError> {
        if b.len() < n {
            return Err(MlsError::State("truncated state blob".into()));
        }
        let (h, t) = b.split_at(n);
        *b = t;
        Ok(h)
    }
    fn len(b: &mut &[u8]) -> Result<usize, MlsError> {
        let x = take(b, 4)?;
        Ok(u32::from_be_bytes([x[0], x[1], x[2], x[3]]) as usize)
    }
    let mut b = b;
    let n = len(&mut b)?;
    let mut map = HashMap::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        let kl = len(&mut b)?;
        let vl = len(&mut b)?;
        let k = take(&mut b, kl)?.to_vec();
        let v = take(&mut b, vl)?.to_vec();
        map.insert(k, v);
    }
    let s = MemoryStorage::default();
    *s.values
        .write()
        .map_err(|_| MlsError::State("storage lock poisoned".into()))? = map;
    Ok(s)
}

fn load(state: &[u8]) -> Result<(MemoryStorage, PublicGroup), MlsError> {
    let storage = from_blob(state)?;
    // The blob holds exactly one group; find its id through the stored context.
    let gid = group_id_of(&storage)?;
    let pg = PublicGroup::load(&storage, &gid)
        .map_err(|e| MlsError::State(format!("{e:?}")))?
        .ok_or_else(|| MlsError::State("no group in the state blob".into()))?;
    Ok((storage, pg))
}

/// The group id is kept under a key of our own next to openmls' entries.
const GID_KEY: &[u8] = b"carebridge/group_id";

fn group_id_of(s: &MemoryStorage) -> Result<GroupId, MlsError> {
    let map = s
        .values
        .read()
        .map_err(|_| MlsError::State("storage lock poisoned".into()))?;
    map.get(GID_KEY)
        .map(|v| GroupId::from_slice(v))
        .ok_or_else(|| MlsError::State("state blob without group id".into()))
}

fn save(storage: &MemoryStorage, gid: &GroupId) -> Result<Vec<u8>, MlsError> {
    storage
        .values
        .write()
        .map_err(|_| MlsError::State("storage lock poisoned".into()))?
        .insert(GID_KEY.to_vec(), gid.as_slice().to_vec());
    to_blob(storage)
}

// ---- members ------------------------------------------------------------------------------------

/// A leaf of the group.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MemberInfo {
    pub leaf: u32,
    /// The basic credential's identity (`device:<uuid>`).
    pub identity: Vec<u8>,
    pub signature_key: Vec<u8>,
}

fn members(pg: &PublicGroup) -> Vec<MemberInfo> {
    pg.members()
        .map(|m| MemberInfo {
            leaf: m.index.u32(),
            identity: m.credential.serialized_content().to_vec(),
            signature_key: m.signature_key.clone(),
        })
        .collect()
}

/// A group the server starts to follow.
pub struct Followed {
    pub state: Vec<u8>,
    pub epoch: i64,
    pub members: Vec<MemberInfo>,
}

/// Starts following a group from a member's GroupInfo (with the ratchet-tree extension). The
/// group must have id `group_id`, use [`SUITE`] and name this server as its first external
/// sender.
pub fn follow(group_info: &[u8], group_id: &[u8], server: &[u8]) -> Result<Followed, MlsError> {
    let MlsMessageBodyIn::GroupInfo(vgi) = decode(group_info)? else {
        return Err(MlsError::Refused("expected a GroupInfo".into()));
    };
    let tree = vgi
        .extensions()
        .ratchet_tree()
        .ok_or_else(|| MlsError::Refused("the GroupInfo lacks the ratchet_tree extension".into()))?
        .ratchet_tree()
        .clone();
    let storage = MemoryStorage::default();
    let crypto = RustCrypto::default();
    let (pg, _) = PublicGroup::from_external(&crypto, &storage, tree, vgi, ProposalStore::new())
        .map_err(refused)?;
    if pg.group_id().as_slice() != group_id {
        return Err(MlsError::Refused(
            "the group id must be the duty id's 16 bytes".into(),
        ));
    }
    if pg.ciphersuite() != SUITE {
        return Err(MlsError::Refused(
            "the group must use MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519".into(),
        ));
    }
    let me = ExternalSender::new(
        server.to_vec().into(),
        BasicCredential::new(SERVER_IDENTITY.to_vec()).into(),
    );
    let first = pg
        .group_context()
        .extensions()
        .external_senders()
        .and_then(|es| es.first().cloned());
    if first.as_ref() != Some(&me) {
        return Err(MlsError::Refused(
            "the group context must name this server as external_senders[0]".into(),
        ));
    }
    let epoch = i64::try_from(pg.group_context().epoch().as_u64()).map_err(refused)?;
    let members = members(&pg);
    let gid = pg.group_id().clone();
    Ok(Followed {
        state: save(&storage, &gid)?,
        epoch,
        members,
    })
}

// ---- incoming messages ------------------------------------------------------------------------

/// What a member sent, read from the unencrypted header only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A private (encrypted) application message of `epoch`.
    Application { epoch: u64 },
    /// A public commit of `epoch`.
    Commit { epoch: u64 },
    /// A public proposal of `epoch`.
    Proposal { epoch: u64 },
}

/// Classifies a member's message for group `group_id` without decrypting anything.
/// Handshake messages must be public (the group's wire-format policy), application messages
/// private.
pub fn classify(bytes: &[u8], group_id: &[u8]) -> Result<Incoming, MlsError> {
    match decode(bytes)? {
        MlsMessageBodyIn::PrivateMessage(pm) => {
            if pm.group_id().as_slice() != group_id {
                return Err(MlsError::Refused("the message is for another group".into()));
            }
            if pm.content_type() != ContentType::Application {
                return Err(MlsError::Refused(
                    "proposals and commits must be sent as public messages".into(),
                ));
            }
            Ok(Incoming::Application {
                epoch: pm.epoch().as_u64(),
            })
        }
        MlsMessageBodyIn::PublicMessage(pm) => {
            if pm.group_id().as_slice() != group_id {
                return Err(MlsError::Refused("the message is for another group".into()));
            }
            let epoch = pm.epoch().as_u64();
            match pm.content_type() {
                ContentType::Commit => Ok(Incoming::Commit { epoch }),
                ContentType::Proposal => Ok(Incoming::Proposal { epoch }),
                ContentType::Application => Err(MlsError::Refused(
                    "application messages must be encrypted (private messages)".into(),
                )),
            }
        }
        _ => Err(MlsError::Refused(
            "expected a private application message or a public commit".into(),
        )),
    }
}

/// A member added by a commit.
#[derive(Clone, Debug)]
pub struct Added {
    pub identity: Vec<u8>,
    pub signature_key: Vec<u8>,
    /// The added KeyPackage's reference: the Welcome must carry secrets for exactly these.
    pub key_package_ref: Vec<u8>,
}

/// A commit the server checked and applied to its copy of the group.
pub struct Applied {
    /// The committer's leaf.
    pub sender: u32,
    pub adds: Vec<Added>,
    /// Leaves removed.
    pub removes: Vec<u32>,
    /// The epoch after the commit.
    pub epoch: u64,
    /// The members before and after the commit.
    pub before: Vec<MemberInfo>,
    pub members: Vec<MemberInfo>,
    pub state: Vec<u8>,
}

/// Checks a public commit against the group's public state (signature, epoch, proposals,
/// tree) and applies it. Proposals referenced by the commit must be the server's own of this
/// epoch: `proposals`, their messages as sent (states saved before proposals were kept out of
/// them may hold some already).
pub fn apply_commit(
    state: &[u8],
    proposals: &[Vec<u8>],
    bytes: &[u8],
) -> Result<Applied, MlsError> {
    Ok(apply(Group::load(state)?, proposals, bytes)?.0)
}

/// A group's public state, loaded: what [`apply`] works on. A server keeps the one of a busy
/// group in memory between commits (after its transaction committed), so that a commit need
/// not read, inflate and parse the whole tree again.
pub struct Group {
    storage: MemoryStorage,
    pg: PublicGroup,
}

impl Group {
    /// Loads a stored state blob.
    pub fn load(state: &[u8]) -> Result<Group, MlsError> {
        let (storage, pg) = load(state)?;
        Ok(Group { storage, pg })
    }

    /// The group's epoch.
    pub fn epoch(&self) -> u64 {
        self.pg.group_context().epoch().as_u64()
    }
}

/// [`apply_commit`] on a loaded group; also returns the group after the commit (the state
/// the returned blob holds). The group is consumed: on an error it is gone, and the caller
/// loads it again from the stored blob.
pub fn apply(
    group: Group,
    proposals: &[Vec<u8>],
    bytes: &[u8],
) -> Result<(Applied, Group), MlsError> {
    let MlsMessageBodyIn::PublicMessage(msg) = decode(bytes)? else {
        return Err(MlsError::Refused(
            "a commit must be a public message".into(),
        ));
    };
    let Group { storage, mut pg } = group;
    if msg.group_id() != pg.group_id() {
        return Err(MlsError::Refused("the commit is for another group".into()));
    }
    for p in proposals {
        let MlsMessageBodyIn::PublicMessage(m) = decode(p)? else {
            return Err(MlsError::State("a stored proposal is not public".into()));
        };
        ingest(&storage, &mut pg, m)?;
    }
    let before = members(&pg);
    let crypto = RustCrypto::default();
    let processed = pg.process_message(&crypto, msg).map_err(refused)?;
    let sender = match processed.sender() {
        Sender::Member(i) => i.u32(),
        other => {
            return Err(MlsError::Refused(format!(
                "a commit must come from a member, not {other:?}"
            )));
        }
    };
    let ProcessedMessageContent::StagedCommitMessage(sc) = processed.into_content() else {
        return Err(MlsError::Refused("expected a commit".into()));
    };
    // The server is the membership authority: commits carry adds, removes and updates only
    // (no group-context, PSK or re-init changes that could drop it as external sender).
    if let Some(q) = sc.queued_proposals().find(|q| {
        !matches!(
            q.proposal(),
            Proposal::Add(_) | Proposal::Remove(_) | Proposal::Update(_)
        )
    }) {
        return Err(MlsError::Refused(format!(
            "commits may only add, remove and update members, not {:?}",
            q.proposal().proposal_type()
        )));
    }
    let adds = sc
        .add_proposals()
        .map(|a| {
            let kp = a.add_proposal().key_package();
            let leaf = kp.leaf_node();
            Ok(Added {
                identity: leaf.credential().serialized_content().to_vec(),
                signature_key: leaf.signature_key().as_slice().to_vec(),
                key_package_ref: kp.hash_ref(&crypto).map_err(refused)?.as_slice().to_vec(),
            })
        })
        .collect::<Result<Vec<_>, MlsError>>()?;
    let removes = sc
        .remove_proposals()
        .map(|r| r.remove_proposal().removed().u32())
        .collect();
    let epoch = sc.group_context().epoch().as_u64();
    pg.merge_commit(&storage, *sc).map_err(refused)?;
    // openmls_memory_storage 0.6 leaves the merged epoch's queued proposals behind (only their
    // index is cleared); the queue is empty after a merge, so drop them all.
    storage
        .values
        .write()
        .map_err(|_| MlsError::State("storage lock poisoned".into()))?
        .retain(|k, _| !k.starts_with(b"QueuedProposal"));
    let gid = pg.group_id().clone();
    let applied = Applied {
        sender,
        adds,
        removes,
        epoch,
        before,
        members: members(&pg),
        state: save(&storage, &gid)?,
    };
    Ok((applied, Group { storage, pg }))
}

/// Checks that `bytes` is a Welcome of our suite for exactly the KeyPackages the commit
/// adds (`adds`, their references): a Welcome for anyone else, or one that leaves out an added
/// member, is refused, so every joiner gets the Welcome of the winning commit.
pub fn check_welcome(bytes: &[u8], adds: &[Added]) -> Result<(), MlsError> {
    let MlsMessageBodyIn::Welcome(w) = decode(bytes)? else {
        return Err(MlsError::Refused("expected a Welcome".into()));
    };
    if w.ciphersuite() != SUITE {
        return Err(MlsError::Refused(
            "the Welcome must use MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519".into(),
        ));
    }
    let mut got: Vec<Vec<u8>> = w
        .secrets()
        .iter()
        .map(|s| s.new_member().as_slice().to_vec())
        .collect();
    let mut want: Vec<Vec<u8>> = adds.iter().map(|a| a.key_package_ref.clone()).collect();
    got.sort_unstable();
    want.sort_unstable();
    if got != want {
        return Err(MlsError::Refused(format!(
            "the Welcome is for {} KeyPackage(s) that differ from the {} the commit adds",
            got.len(),
            want.len()
        )));
    }
    Ok(())
}

/// A checked KeyPackage.
pub struct KeyPackageInfo {
    pub identity: Vec<u8>,
    pub signature_key: Vec<u8>,
    pub last_resort: bool,
    /// The `MLSMessage` bytes as uploaded.
    pub bytes: Vec<u8>,
}

fn key_package(bytes: &[u8]) -> Result<KeyPackage, MlsError> {
    let MlsMessageBodyIn::KeyPackage(kp) = decode(bytes)? else {
        return Err(MlsError::Refused(
            "expected a KeyPackage (MLSMessage)".into(),
        ));
    };
    let kp = kp
        .validate(&RustCrypto::default(), ProtocolVersion::Mls10)
        .map_err(refused)?;
    if kp.ciphersuite() != SUITE {
        return Err(MlsError::Refused(
            "the KeyPackage must use MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519".into(),
        ));
    }
    Ok(kp)
}

/// Validates a KeyPackage (signature, lifetime, suite) and reads who it names.
pub fn check_key_package(bytes: &[u8]) -> Result<KeyPackageInfo, MlsError> {
    let kp = key_package(bytes)?;
    let leaf = kp.leaf_node();
    Ok(KeyPackageInfo {
        identity: leaf.credential().serialized_content().to_vec(),
        signature_key: leaf.signature_key().as_slice().to_vec(),
        last_resort: kp.last_resort(),
        bytes: bytes.to_vec(),
    })
}

/// Puts one of the server's proposals of the current epoch into the group's proposal store,
/// so that a commit may reference it.
fn ingest(
    storage: &MemoryStorage,
    pg: &mut PublicGroup,
    m: PublicMessageIn,
) -> Result<(), MlsError> {
    let processed = pg
        .process_message(&RustCrypto::default(), m)
        .map_err(|e| MlsError::State(format!("a stored proposal no longer applies: {e:?}")))?;
    match processed.into_content() {
        ProcessedMessageContent::ProposalMessage(q) => {
            pg.add_proposal(storage, *q).map_err(refused)?;
            Ok(())
        }
        _ => Err(MlsError::State(
            "a stored proposal read back as something else".into(),
        )),
    }
}

/// The server's external proposal to add the device of KeyPackage `kp` to group `group_id`
/// in `epoch`. It needs no group state: it is signed by the server's key and names the epoch;
/// the state takes it in when a commit references it ([`apply_commit`]).
pub fn propose_add(
    key: &ServerKey,
    group_id: &[u8],
    epoch: u64,
    kp: &[u8],
) -> Result<Vec<u8>, MlsError> {
    let kp = key_package(kp)?;
    ExternalProposal::new_add::<OpenMlsRustCrypto>(
        kp,
        GroupId::from_slice(group_id),
        GroupEpoch::from(epoch),
        &key.pair,
        SenderExtensionIndex::new(0),
    )
    .map_err(refused)?
    .to_bytes()
    .map_err(refused)
}

/// The server's external proposal to remove `leaf` from group `group_id` in `epoch`.
pub fn propose_remove(
    key: &ServerKey,
    group_id: &[u8],
    epoch: u64,
    leaf: u32,
) -> Result<Vec<u8>, MlsError> {
    ExternalProposal::new_remove::<OpenMlsRustCrypto>(
        LeafNodeIndex::new(leaf),
        GroupId::from_slice(group_id),
        GroupEpoch::from(epoch),
        &key.pair,
        SenderExtensionIndex::new(0),
    )
    .map_err(refused)?
    .to_bytes()
    .map_err(refused)
}

/// The server's key as an external sender (for tests and clients that build the context).
pub fn external_sender(key: &ServerKey) -> ExternalSender {
    key.external_sender()
}

#[cfg(test)]
mod tests {
    //! Frame parsing at the server boundary, fuzzed: random bytes and mutations of valid MLS
    //! objects (a KeyPackage, a GroupInfo, a commit) never panic and are refused or accepted
    //! cleanly.

    use super::*;
    use proptest::prelude::*;

    struct Member {
        provider: OpenMlsRustCrypto,
        signer: SignatureKeyPair,
        group: MlsGroup,
    }

    /// A group as Carebridge clients create it (group id `[7; 16]`, the server `key` as
    /// external sender), with one member.
    fn new_group(
        key: &ServerKey,
        provider: &OpenMlsRustCrypto,
        signer: &SignatureKeyPair,
        cwk: CredentialWithKey,
    ) -> MlsGroup {
        let exts =
            Extensions::single(Extension::ExternalSenders(vec![key.external_sender()])).unwrap();
        let config = MlsGroupCreateConfig::builder()
            .ciphersuite(SUITE)
            .wire_format_policy(PURE_PLAINTEXT_WIRE_FORMAT_POLICY)
            .use_ratchet_tree_extension(true)
            .with_group_context_extensions(exts)
            .build();
        MlsGroup::new_with_group_id(
            provider,
            signer,
            &config,
            GroupId::from_slice(&[7u8; 16]),
            cwk,
        )
        .unwrap()
    }

    fn valid_objects() -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, ServerKey) {
        let key = ServerKey::generate().unwrap();
        let provider = OpenMlsRustCrypto::default();
        let signer = SignatureKeyPair::new(SUITE.signature_algorithm()).unwrap();
        let cwk = CredentialWithKey {
            credential: BasicCredential::new(b"device:test".to_vec()).into(),
            signature_key: signer.public().into(),
        };
        let kp = KeyPackage::builder()
            .build(SUITE, &provider, &signer, cwk.clone())
            .unwrap();
        let kp = MlsMessageOut::from(kp.key_package().clone())
            .to_bytes()
            .unwrap();
        let group = new_group(&key, &provider, &signer, cwk);
        let mut m = Member {
            provider,
            signer,
            group,
        };
        let info = m
            .group
            .export_group_info(m.provider.crypto(), &m.signer, true)
            .unwrap()
            .to_bytes()
            .unwrap();
        let followed = follow(&info, &[7u8; 16], key.public()).unwrap();
        let bundle = m
            .group
            .self_update(&m.provider, &m.signer, LeafNodeParameters::default())
            .unwrap();
        let commit = bundle.commit().to_bytes().unwrap();
        // The valid commit is accepted.
        assert!(apply_commit(&followed.state, &[], &commit).is_ok());
        (kp, info, commit, followed.state, key)
    }

    #[test]
    fn states_are_stored_deflated_and_older_plain_states_still_load() {
        let (_, _, commit, state, _) = valid_objects();
        assert!(state.starts_with(&DEFLATED), "saved deflated");
        let storage = from_blob(&state).unwrap();
        let plain = encode(&storage).unwrap();
        assert!(
            state.len() < plain.len(),
            "{} < {}",
            state.len(),
            plain.len()
        );
        // A state saved before compression (the plain format) loads and works the same.
        assert!(apply_commit(&plain, &[], &commit).is_ok());
        assert_eq!(encode(&decode_plain(&plain).unwrap()).unwrap(), plain);
        // A deflate stream that inflates beyond the limit, and a broken one, are refused.
        let mut bomb = DEFLATED.to_vec();
        let mut z = flate2::write::DeflateEncoder::new(bomb, flate2::Compression::best());
        std::io::Write::write_all(&mut z, &vec![0u8; (MAX_STATE + 1) as usize]).unwrap();
        bomb = z.finish().unwrap();
        assert!(from_blob(&bomb).is_err());
        let mut broken = state.clone();
        broken.truncate(state.len() / 2);
        assert!(from_blob(&broken).is_err());
    }

    fn credential(name: &str, s: &SignatureKeyPair) -> CredentialWithKey {
        CredentialWithKey {
            credential: BasicCredential::new(name.as_bytes().to_vec()).into(),
            signature_key: s.public().into(),
        }
    }

    /// A one-member group (`device:a`), its GroupInfo, and the server following it.
    fn followed_group() -> (ServerKey, Member, Vec<u8>, Followed) {
        let key = ServerKey::generate().unwrap();
        let provider = OpenMlsRustCrypto::default();
        let signer = SignatureKeyPair::new(SUITE.signature_algorithm()).unwrap();
        let group = new_group(&key, &provider, &signer, credential("device:a", &signer));
        let info = group
            .export_group_info(provider.crypto(), &signer, true)
            .unwrap()
            .to_bytes()
            .unwrap();
        let followed = follow(&info, &[7u8; 16], key.public()).unwrap();
        let m = Member {
            provider,
            signer,
            group,
        };
        (key, m, info, followed)
    }

    /// A KeyPackage of a new device `name`.
    fn joiner(name: &str) -> KeyPackage {
        let p = OpenMlsRustCrypto::default();
        let s = SignatureKeyPair::new(SUITE.signature_algorithm()).unwrap();
        KeyPackage::builder()
            .build(SUITE, &p, &s, credential(name, &s))
            .unwrap()
            .key_package()
            .clone()
    }

    #[test]
    fn server_proposals_enter_the_state_with_the_commit_that_references_them() {
        let (key, mut a, _, followed) = followed_group();
        let kp = MlsMessageOut::from(joiner("device:b")).to_bytes().unwrap();
        // Made from the group id and epoch alone; the member takes it in and commits it.
        let proposal = propose_add(&key, &[7u8; 16], 0, &kp).unwrap();
        let m = MlsMessageIn::tls_deserialize_exact(&proposal).unwrap();
        let processed = a
            .group
            .process_message(&a.provider, m.try_into_protocol_message().unwrap())
            .unwrap();
        let ProcessedMessageContent::ProposalMessage(q) = processed.into_content() else {
            panic!("expected a proposal");
        };
        a.group
            .store_pending_proposal(a.provider.storage(), *q)
            .unwrap();
        let (commit, _, _) = a
            .group
            .commit_to_pending_proposals(&a.provider, &a.signer)
            .unwrap();
        let commit = commit.to_bytes().unwrap();
        // Without its proposal the commit does not apply; with it, it adds the device.
        assert!(apply_commit(&followed.state, &[], &commit).is_err());
        let applied =
            apply_commit(&followed.state, std::slice::from_ref(&proposal), &commit).unwrap();
        assert_eq!(applied.adds.len(), 1);
        assert_eq!(applied.adds[0].identity, b"device:b");
        assert_eq!(applied.epoch, 1);
        // A proposal of another epoch is refused, and a state saved with the proposal already
        // inside (as servers did before) still takes the commit.
        let stale = propose_add(&key, &[7u8; 16], 1, &kp).unwrap();
        assert!(apply_commit(&followed.state, &[stale], &commit).is_err());
        let (storage, mut pg) = load(&followed.state).unwrap();
        let MlsMessageBodyIn::PublicMessage(pm) = decode(&proposal).unwrap() else {
            panic!("public");
        };
        ingest(&storage, &mut pg, pm).unwrap();
        let old_style = save(&storage, pg.group_id()).unwrap();
        assert_eq!(
            apply_commit(&old_style, &[], &commit).unwrap().members,
            applied.members
        );
    }

    #[test]
    fn a_foreign_external_sender_or_group_id_is_refused() {
        let (_, info, _, _, key) = valid_objects();
        assert!(follow(&info, &[8u8; 16], key.public()).is_err());
        let other = ServerKey::generate().unwrap();
        assert!(follow(&info, &[7u8; 16], other.public()).is_err());
    }

    #[test]
    fn a_welcome_must_be_for_exactly_the_added_key_packages() {
        let (_, mut a, info, followed) = followed_group();
        let (b, c) = (joiner("device:b"), joiner("device:c"));
        let (commit, welcome, _) = a
            .group
            .add_members(&a.provider, &a.signer, std::slice::from_ref(&b))
            .unwrap();
        let applied = apply_commit(&followed.state, &[], &commit.to_bytes().unwrap()).unwrap();
        let welcome = welcome.to_bytes().unwrap();
        assert_eq!(applied.adds.len(), 1);
        check_welcome(&welcome, &applied.adds).unwrap();
        // A Welcome for someone else, or missing someone, is refused.
        let other = Added {
            identity: b"device:c".to_vec(),
            signature_key: Vec::new(),
            key_package_ref: c.hash_ref(a.provider.crypto()).unwrap().as_slice().to_vec(),
        };
        assert!(check_welcome(&welcome, std::slice::from_ref(&other)).is_err());
        assert!(check_welcome(&welcome, &[applied.adds[0].clone(), other]).is_err());
        assert!(check_welcome(&welcome, &[]).is_err());
        // Not a Welcome at all.
        assert!(check_welcome(&info, &applied.adds).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = classify(&bytes, &[7u8; 16]);
            let _ = check_key_package(&bytes);
            let _ = check_welcome(&bytes, &[]);
            let _ = follow(&bytes, &[7u8; 16], &[0u8; 32]);
        }

        #[test]
        fn mutated_objects_never_panic(cut in 0usize..4000, flips in proptest::collection::vec((0usize..4000, 0u8..8), 0..4)) {
            thread_local! {
                static OBJECTS: (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, ServerKey) = valid_objects();
            }
            OBJECTS.with(|(kp, info, commit, state, key)| {
                for base in [kp, info, commit] {
                    let mut b = base.clone();
                    for (pos, bit) in &flips {
                        let i = pos % b.len();
                        b[i] ^= 1 << bit;
                    }
                    let truncated = &b[..cut.min(b.len())];
                    for input in [&b[..], truncated] {
                        let _ = classify(input, &[7u8; 16]);
                        let _ = check_key_package(input);
                        let _ = follow(input, &[7u8; 16], key.public());
                        let _ = apply_commit(state, &[], input);
                    }
                }
                // A corrupt state blob is an error, not a panic.
                let _ = apply_commit(&state[..cut.min(state.len())], &[], commit);
            });
        }
    }
}
