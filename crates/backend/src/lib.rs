//! The `backend` role: organisations (tenants), their settings and feature switches, the
//! audit log API, and discovery (the public documents apps read before sign-in).
//!
//! Rooms: [`http`] (router, thin handlers) → [`service`] (rules, transactions, audit) →
//! [`repo`] (SQL).

pub mod discovery;
pub mod http;
pub mod repo;
pub mod service;
