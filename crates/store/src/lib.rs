//! Storage: one code base over two databases. [`Db`] is chosen at run time from the URL
//! (`sqlite://…` embedded, `postgres://…` for production and scale-out). Queries are written once
//! in portable SQL (`$1` placeholders work on both) and run on either backend through the
//! [`run!`] macro; the few places where the dialects differ live in small helpers here.
//!
//! Invariants:
//! - every table that holds tenant data has an `org_id` column and every repo query filters on
//!   it (tenant isolation in the data layer);
//! - on SQLite all writes go through one writer connection (no `SQLITE_BUSY` under load), reads
//!   through a pool of reader connections (WAL);
//! - timestamps are stored as BIGINT milliseconds since the epoch, ids as UUID (BLOB on SQLite).

pub mod audit;
pub mod bulk;
mod db;
pub mod error;
pub mod events;
pub mod features;
pub mod idempotency;
mod migrations;
pub mod outbox;
pub mod secrets;

pub use db::{
    BULK_CACHE_KIB, Backend, Conn, Db, DbOptions, Exec, Raw, Tx, UNICODE_NOCASE,
    WRITER_AUTOCHECKPOINT_PAGES, WRITER_CACHE_KIB, redact_url,
};
pub use error::StoreError;
/// Re-exported so repos use the same sqlx as the store.
pub use sqlx;

/// Runs `$body` with `$c` bound to the raw connection of `$x` (a [`Exec`]: a [`Tx`] or [`Conn`]), once per
/// backend. The body is written once; it is compiled for SQLite and for PostgreSQL.
///
/// ```text
/// let n: i64 = run!(tx, c => sqlx::query_scalar("SELECT count(*) FROM units WHERE org_id = $1")
///     .bind(org.0).fetch_one(c).await)?;
/// ```
#[macro_export]
macro_rules! run {
    ($x:expr, $c:ident => $body:expr) => {
        match $crate::Exec::raw(&mut *$x) {
            $crate::Raw::Sqlite($c) => $body,
            $crate::Raw::Postgres($c) => $body,
        }
    };
}

/// Like [`run!`] for statements run with `.execute(c).await`: yields the number of rows affected.
#[macro_export]
macro_rules! exec {
    ($x:expr, $c:ident => $body:expr) => {
        $crate::run!($x, $c => $body.map(|r| r.rows_affected()))
    };
}

pub mod orgs;
pub mod roles;
pub mod rosters;

/// Escapes `\`, `%` and `_` for a `LIKE … ESCAPE '\'` pattern, so outside input matches
/// literally on both backends.
pub fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// `($from), ($from+1), …`: a `VALUES` list of `n` placeholders. Drive a lookup of many ids as
/// `FROM (VALUES …) m CROSS JOIN t WHERE t.id = m.column1 AND t.org_id = $1`: with
/// `t.id IN (…) AND t.org_id = $1` SQLite prefers an `(org_id, …)` index and walks the whole
/// organisation; the `CROSS JOIN` fixes the order (ids first, then primary-key probes) on both
/// backends.
pub fn id_values(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("(${i})"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod like_tests {
    #[test]
    fn like_wildcards_become_literal() {
        assert_eq!(super::like_escape(r"50%_a\b"), r"50\%\_a\\b");
        assert_eq!(super::like_escape("plain"), "plain");
    }
}
