//! The `directory` role: units (a tree), people with their contact data, groups and skills, and
//! role assignments; [`import`] reads people from CSV files (the apply step, XLSX, visibility
//! grants, SCIM 2.0 and the sync feed are to come) — all through the same validation, so the
//! rules are the same whatever the source.
//!
//! Rooms: [`http`] (router, thin handlers) → [`service`] (rules, transactions, audit) →
//! [`repo`] (SQL, always scoped by organisation).

pub mod http;
pub mod import;
pub mod repo;
pub mod scim;
pub mod service;
