//! The `duties` role: duties (events with needed positions), assignments and sign-up flows,
//! the qualification catalogue, roster events for the chat, and personal iCalendar feeds.
//!
//! Rooms: [`http`] (router, thin handlers) → [`service`] (rules, scope checks, transactions,
//! roster events, audit) → [`repo`] (SQL, always scoped by organisation). The one lookup not
//! scoped by organisation is a calendar feed by its id, which the feed's secret then proves.

pub mod http;
pub mod ical;
pub mod repo;
pub mod service;
