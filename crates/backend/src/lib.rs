//! The `backend` role: organisations (tenants), their settings, and the audit log API.
//! Discovery documents and tenant provisioning join here in later issues.
//!
//! Rooms: [`http`] (router, thin handlers) → [`service`] (rules, transactions, audit) →
//! [`repo`] (SQL).

pub mod http;
pub mod repo;
pub mod service;
