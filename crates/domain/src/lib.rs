//! Pure types and rules of Carebridge: ids, organisations, units, people, roles, permissions,
//! validation and normalisation, the audit hash chain and the clock abstraction.
//!
//! Invariant: this crate does no I/O and never reads the system clock or a random source on its
//! own; time and randomness come in as parameters so every rule is testable.

pub mod audit;
pub mod auth;
pub mod chat;
pub mod duty;
pub mod ids;
pub mod notices;
pub mod oauth;
pub mod org;
pub mod person;
pub mod role;
pub mod scim;
pub mod search;
pub mod time;
pub mod unit;
pub mod validate;
pub mod visibility;

pub use ids::*;
pub use time::{Clock, ManualClock, SystemClock, Timestamp};
pub use validate::{Violation, Violations};
