//! The `chat` role: the MLS (RFC 9420) delivery service and membership authority of the duty
//! chats (DESIGN.md §4). The server is never a group member: it follows each group as an
//! openmls `PublicGroup`, orders the stream (one commit per epoch), checks every commit
//! against the duty's roster, proposes adds and removes itself as the group's external
//! sender, and pushes messages to devices over WebSockets.
//!
//! Rooms: [`http`] (router, thin handlers, the WebSocket) → [`service`] (rules, transactions,
//! the worker step) → [`repo`] (SQL) and [`mls`] (every openmls call); [`hub`] holds the
//! sockets of this process.
//!
//! Invariants: only ciphertext, public group state and public keys are stored; a device of a
//! person who left the roster receives nothing of that group from that moment on; a chat past
//! its retention leaves nothing in any table but a roster tombstone.

pub mod http;
pub mod hub;
pub mod mls;
pub mod repo;
pub mod service;

/// The chat role's per-process state.
pub struct Chat {
    pub hub: hub::Hub,
    /// This process among the nodes on one PostgreSQL (relayed deliveries name their origin).
    pub node: uuid::Uuid,
    /// Application messages waiting to be written together.
    pub(crate) posts: service::Batch,
    /// Roster events of the recent window (PostgreSQL) this process has applied already, so
    /// that a worker step reads again only those that committed late.
    pub(crate) late_seen: std::sync::Mutex<std::collections::BTreeSet<i64>>,
    /// Loaded group states kept between commits.
    pub(crate) states: service::StateCache,
    /// Device credentials resolved lately (the message hot path).
    pub(crate) callers: service::Callers,
}

impl Default for Chat {
    fn default() -> Self {
        Chat {
            hub: hub::Hub::default(),
            node: uuid::Uuid::new_v4(),
            posts: service::Batch::default(),
            late_seen: Default::default(),
            states: Default::default(),
            callers: Default::default(),
        }
    }
}
