//! The `directory` role: units (a tree), people with their contact data, groups and skills, and
//! role assignments. Later: visibility grants, CSV/XLSX import, SCIM 2.0 and the sync feed — all
//! through the same service functions, so validation and audit are the same whatever the source.
//!
//! Rooms: [`http`] (router, thin handlers) → [`service`] (rules, transactions, audit) →
//! [`repo`] (SQL, always scoped by organisation).

pub mod http;
pub mod repo;
pub mod service;
