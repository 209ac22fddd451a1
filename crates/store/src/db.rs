//! The database handle: which backend, its pools, transactions and connections.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::pool::{MaybePoolConnection, PoolConnection};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool, Transaction};

use crate::error::StoreError;
use crate::migrations;

/// An SQLite collation comparing text case-insensitively by Unicode lower case (registered on
/// every SQLite connection): `expr = $1 COLLATE unicode_nocase` matches `Élodie` for
/// `élodie`.
pub const UNICODE_NOCASE: &str = "unicode_nocase";

/// Which SQL dialect is behind a [`Db`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How to open the database.
#[derive(Clone, Debug)]
pub struct DbOptions {
    /// `sqlite://path/to/file.db` or `postgres://user@host/db`.
    pub url: String,
    /// Pool size (PostgreSQL) or reader pool size (SQLite).
    pub max_connections: u32,
    /// PostgreSQL only: put every table in this schema (tests use one schema per test).
    pub pg_schema: Option<String>,
}

impl DbOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 8,
            pg_schema: None,
        }
    }
}

/// A handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite {
        write: SqlitePool,
        read: SqlitePool,
        /// The writer connection is in bulk mode ([`Db::begin_bulk`]): it is closed when it is
        /// released, instead of going back to the pool with the bulk settings.
        bulk: Arc<AtomicBool>,
    },
    Postgres {
        pool: PgPool,
    },
}

/// A write transaction. Dropped without [`Tx::commit`] it rolls back.
#[derive(Debug)]
pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// A pooled connection for reads.
#[derive(Debug)]
pub enum Conn {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

/// A borrowed raw connection of either backend; see [`crate::run!`].
pub enum Raw<'a> {
    Sqlite(&'a mut SqliteConnection),
    Postgres(&'a mut PgConnection),
}

/// Anything queries can run on: a transaction or a pooled connection.
pub trait Exec: Send {
    fn raw(&mut self) -> Raw<'_>;
}

impl Exec for Tx {
    fn raw(&mut self) -> Raw<'_> {
        match self {
            Tx::Sqlite(t) => Raw::Sqlite(t),
            Tx::Postgres(t) => Raw::Postgres(t),
        }
    }
}

impl Exec for Conn {
    fn raw(&mut self) -> Raw<'_> {
        match self {
            Conn::Sqlite(c) => Raw::Sqlite(c),
            Conn::Postgres(c) => Raw::Postgres(c),
        }
    }
}

impl Tx {
    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(t) => {
                t.commit().await?;
                crate::events::committed();
            }
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        match self {
            Tx::Sqlite(_) => Backend::Sqlite,
            Tx::Postgres(_) => Backend::Postgres,
        }
    }
}

/// How often the log of a SQLite database is copied into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Copies the write-ahead log of a SQLite database into the database file at a steady pace,
/// on a reader connection: a passive checkpoint waits for nobody, and writers go on appending
/// meanwhile. Ends when the pool is closed.
async fn checkpoints(pool: SqlitePool) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            if pool.is_closed() {
                return;
            }
            tracing::debug!(error = %e, "a background checkpoint failed; the next one tries again");
        }
    }
}

/// Log pages after which SQLite's writer checkpoints by itself at a commit, outside bulk
/// transactions (a fallback for when [`checkpoints`] falls behind): 64 MiB with 16 KiB pages.
pub const WRITER_AUTOCHECKPOINT_PAGES: i64 = 4_096;

/// The page size of a new SQLite database (an existing one keeps its own: a database in WAL
/// mode cannot change it). 16 KiB rather than SQLite's 4 KiB: a fifth fewer B-tree pages to
/// split and balance per inserted row, and a quarter of the log frames (and `write` calls)
/// per commit: SQLite wrote a 100k-person import's rows about 15% faster and committed them in
/// 0.18 s instead of 0.3 s. Small writes and reads measured no slower (refresh-token and people
/// benches).
const PAGE_SIZE: u32 = 16_384;

/// The SQLite writer's page cache (KiB) outside bulk transactions.
pub const WRITER_CACHE_KIB: i64 = 65_536;
/// The SQLite writer's page cache (KiB) during a bulk transaction ([`Db::begin_bulk`]); SQLite
/// allocates pages only as the transaction needs them.
pub const BULK_CACHE_KIB: i64 = 1_048_576;

impl Db {
    /// Opens (and for SQLite creates) the database. Does not migrate; see [`Db::migrate`].
    pub async fn connect(opts: &DbOptions) -> Result<Db, StoreError> {
        let url = opts.url.as_str();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut o = PgConnectOptions::from_str(url).map_err(StoreError::Unavailable)?;
            if let Some(schema) = &opts.pg_schema {
                o = o.options([("search_path", schema.as_str())]);
            }
            let pool = PgPoolOptions::new()
                .max_connections(opts.max_connections.max(2))
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(o)
                .await
                .map_err(StoreError::Unavailable)?;
            Ok(Db::Postgres { pool })
        } else if url.starts_with("sqlite:") {
            let o = SqliteConnectOptions::from_str(url)
                .map_err(StoreError::Unavailable)?
                .create_if_missing(true)
                .page_size(PAGE_SIZE)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
                .pragma("temp_store", "memory")
                // Reads through a memory map (up to 256 MiB of the file) instead of a `pread`
                // copy into each connection's small page cache: the readers walk large ranges
                // (sync snapshots, listings) and were spending a third of their time copying.
                .pragma("mmap_size", "268435456")
                // A large result (an import loading 100k people, a sync snapshot) is handed from
                // the connection's worker thread in batches of up to 1,024 rows rather than
                // sqlx's 50: fewer thread hand-offs per row (the import's load of 100k people
                // spent much of its time in them).
                .row_buffer_size(1024)
                // SQLite's own case folding (`LOWER`, `NOCASE`) is ASCII-only.
                .collation(UNICODE_NOCASE, |a: &str, b: &str| {
                    a.chars()
                        .flat_map(char::to_lowercase)
                        .cmp(b.chars().flat_map(char::to_lowercase))
                });
            if let Some(dir) = o
                .get_filename()
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))?;
            }
            // The writer gets a larger page cache (64 MiB, used only as needed): a bulk
            // transaction (a 100k-row import) that outgrows SQLite's 2 MiB default spills dirty
            // pages to the WAL mid-transaction and reads them back, several times slower.
            // No ping before handing out a connection (sqlx's default): a SQLite connection
            // is a local file handle that cannot go stale, and the ping is one more round trip
            // to the connection's worker thread on every acquire (three per chat message).
            // Checkpoints run off the write path (see `checkpoints`): the writer checkpoints
            // by itself only when the log passes 4,096 pages (if that task is not keeping up),
            // and never at the end of a bulk transaction (`begin_bulk`);
            // SQLite's default, 4 MiB, made every tenth large write (a chat commit of a big
            // group is ~0.5 MiB) copy and fsync the log before answering.
            let bulk = Arc::new(AtomicBool::new(false));
            let in_bulk = bulk.clone();
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .test_before_acquire(false)
                // A connection used for a bulk transaction is closed when released: the next
                // one opens with the usual settings (foreign keys on above all). This runs
                // before anyone else can have the connection, on every path: commit, error,
                // or a dropped transaction. There is one writer connection, so the flag is its.
                .after_release(move |_, _| {
                    let keep = !in_bulk.swap(false, Ordering::SeqCst);
                    Box::pin(async move { Ok(keep) })
                })
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(
                    o.clone()
                        .pragma("cache_size", format!("-{WRITER_CACHE_KIB}"))
                        .pragma(
                            "wal_autocheckpoint",
                            WRITER_AUTOCHECKPOINT_PAGES.to_string(),
                        ),
                )
                .await
                .map_err(StoreError::Unavailable)?;
            let read = SqlitePoolOptions::new()
                .max_connections(opts.max_connections.max(1))
                .min_connections(0)
                .test_before_acquire(false)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(o)
                .await
                .map_err(StoreError::Unavailable)?;
            tokio::spawn(checkpoints(read.clone()));
            Ok(Db::Sqlite { write, read, bulk })
        } else {
            Err(StoreError::Unavailable(sqlx::Error::Configuration(
                format!(
                    "unsupported database URL (want sqlite:// or postgres://): {}",
                    redact_url(url)
                )
                .into(),
            )))
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite { .. } => Backend::Sqlite,
            Db::Postgres { .. } => Backend::Postgres,
        }
    }

    /// Applies every pending migration of this backend.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrations::run(self).await
    }

    /// Whether every migration this binary knows has been applied.
    pub async fn migrations_current(&self) -> Result<bool, StoreError> {
        migrations::current(self).await
    }

    /// Begins a write transaction.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            // IMMEDIATE: take the write lock up front. A deferred transaction that reads first
            // and writes later fails at once with SQLITE_BUSY_SNAPSHOT when another process
            // (the CLI, a second role process on the same file) committed in between; waiting
            // for the lock (busy_timeout) is what we want instead.
            Db::Sqlite { write, .. } => Tx::Sqlite(write.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres { pool } => Tx::Postgres(pool.begin().await?),
        })
    }

    /// Begins a write transaction for a bulk change (an import of many thousand rows). On
    /// SQLite its connection is set up for it, and closed when the transaction is over
    /// (committed, failed or dropped; see the writer pool's `after_release`), so the next
    /// writer opens with the usual settings again:
    /// - the page cache may grow to [`BULK_CACHE_KIB`]: a 100k-row import dirties about
    ///   200 MiB of pages, and with the usual 64 MiB cache SQLite spills them to the log
    ///   mid-transaction and reads them back, which made such an import twice as slow per row
    ///   as one a third its size;
    /// - its commit does not checkpoint: such a commit always passes the writer's automatic
    ///   checkpoint threshold, and copying and syncing the whole log into the database file
    ///   added about a second to a 100k-row import; the background task ([`checkpoints`]) does
    ///   it within half a second instead;
    /// - **foreign keys are not enforced** (`PRAGMA foreign_keys` can only change outside a
    ///   transaction). Their lookups, and the statement journal SQLite keeps for any insert
    ///   into a table with foreign keys, were a third of the database's work in an import.
    ///   Whoever writes in such a transaction must only name rows it has checked in it
    ///   (the writer holds the database's write lock, so they stay): see
    ///   [`crate::bulk::lock_parents`] and [`crate::bulk::check_foreign_keys`].
    ///
    /// On PostgreSQL it is a plain transaction.
    pub async fn begin_bulk(&self) -> Result<Tx, StoreError> {
        let Db::Sqlite { write, bulk, .. } = self else {
            return self.begin().await;
        };
        let mut c = write.acquire().await?;
        // From here on, however this ends, the connection is closed when released.
        bulk.store(true, Ordering::SeqCst);
        for pragma in [
            "PRAGMA foreign_keys = OFF".to_string(),
            format!("PRAGMA cache_size = -{BULK_CACHE_KIB}"),
            "PRAGMA wal_autocheckpoint = 0".to_string(),
        ] {
            sqlx::query(&pragma).execute(&mut *c).await?;
        }
        // `Transaction::begin` on a connection already taken is what `Pool::begin_with` does;
        // sqlx has no other way to begin a transaction on a pool connection one set up first.
        let tx = Transaction::begin(
            MaybePoolConnection::PoolConnection(c),
            Some("BEGIN IMMEDIATE".into()),
        )
        .await?;
        Ok(Tx::Sqlite(tx))
    }

    /// The writer connection without a transaction, for one self-contained statement (autocommit):
    /// on SQLite one round trip instead of three (`BEGIN`, the statement, `COMMIT`). Use it only
    /// where a single statement is the whole change.
    pub async fn write(&self) -> Result<Conn, StoreError> {
        Ok(match self {
            Db::Sqlite { write, .. } => Conn::Sqlite(write.acquire().await?),
            Db::Postgres { pool } => Conn::Postgres(pool.acquire().await?),
        })
    }

    /// A connection for reads.
    pub async fn read(&self) -> Result<Conn, StoreError> {
        Ok(match self {
            Db::Sqlite { read, .. } => Conn::Sqlite(read.acquire().await?),
            Db::Postgres { pool } => Conn::Postgres(pool.acquire().await?),
        })
    }

    /// A trivial round trip: is the database there?
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.read().await?;
        let _: i32 = crate::run!(&mut c, c => sqlx::query_scalar("SELECT 1").fetch_one(c).await)?;
        Ok(())
    }

    pub fn sqlite_pool(&self) -> Option<&SqlitePool> {
        match self {
            Db::Sqlite { write, .. } => Some(write),
            Db::Postgres { .. } => None,
        }
    }

    pub fn pg_pool(&self) -> Option<&PgPool> {
        match self {
            Db::Postgres { pool } => Some(pool),
            Db::Sqlite { .. } => None,
        }
    }

    /// Closes every pool (graceful shutdown).
    pub async fn close(&self) {
        match self {
            Db::Sqlite { write, read, .. } => {
                read.close().await;
                write.close().await;
            }
            Db::Postgres { pool } => pool.close().await,
        }
    }

    /// SQLite only: writes a consistent copy of the live database to `dest` (`VACUUM INTO`),
    /// safe while the server runs.
    pub async fn backup_sqlite(&self, dest: &std::path::Path) -> Result<(), StoreError> {
        let Db::Sqlite { write, .. } = self else {
            return Err(StoreError::Query(sqlx::Error::Configuration(
                "backup is for the embedded SQLite database; use pg_dump for PostgreSQL".into(),
            )));
        };
        let dest = dest
            .to_str()
            .ok_or_else(|| StoreError::Corrupt("backup path is not UTF-8".into()))?;
        sqlx::query("VACUUM INTO $1")
            .bind(dest)
            .execute(write)
            .await?;
        Ok(())
    }
}

/// The URL with any password replaced, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            super::redact_url("sqlite://data/x.db"),
            "sqlite://data/x.db"
        );
    }
}
