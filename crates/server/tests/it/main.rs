//! The one integration-test binary: every test starts the real server (testkit) on SQLite, or on
//! PostgreSQL when `TEST_DATABASE_URL` is set. Add modules here, never new files under `tests/`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod access;
mod app;
mod audit;
mod bad_input;
mod chat;
mod console;
mod directory;
mod discovery;
mod duties;
mod import;
mod isolation;
mod notify;
mod oauth;
mod oidc;
mod ops;
mod portal;
mod scim;
mod secrets;
mod seed000;
