//! The `portal` role: the customer-portal API `portal/v1` for clients and their relatives
//! (appointments with who is coming, requests to move or cancel a visit, messages to the
//! organisation, an iCalendar subscription), and the ERP feed that fills it.
//!
//! It is built to run apart from the rest (`carebridge serve --roles portal --identity-issuer
//! https://id.example`), typically at the ERP vendor, with a database of its own: it touches only
//! its own `portal_*` tables and the outbox, and trusts nothing of the identity provider but the
//! keys it publishes.
//!
//! Rooms: [`http`] (routes, contract) → [`service`] (rules) → [`repo`] (SQL scoped by
//! organisation); [`auth`] and [`jwks`] check tokens; [`import`] reads the ERP's CSV exports.

pub mod auth;
pub mod http;
pub mod ical;
pub mod import;
pub mod jwks;
pub mod repo;
pub mod service;
pub mod texts;
