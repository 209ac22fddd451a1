//! Directory rules: every path (API, CLI, set-up, demo, import, later SCIM) calls these
//! functions, so validation and audit are the same whatever the source.

pub mod access;
pub mod feed;
pub mod import;
pub mod jobs;
pub mod labels;
pub mod people;
pub mod roles;
pub mod units;
