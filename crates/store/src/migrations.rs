//! Embedded migrations, one folder per backend (`migrations/sqlite`, `migrations/postgres`),
//! compiled into the binary so a fresh machine needs no files beside it. Both folders must
//! describe the same schema; a test compares their tables and columns.

use std::borrow::Cow;

use futures_core::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

use crate::{Backend, Db, StoreError};

/// `(version, description, sqlite sql, postgres sql)`.
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("../migrations/sqlite/0001_foundation.sql"),
        include_str!("../migrations/postgres/0001_foundation.sql"),
    ),
    (
        2,
        "duties",
        include_str!("../migrations/sqlite/0002_duties.sql"),
        include_str!("../migrations/postgres/0002_duties.sql"),
    ),
    (
        3,
        "identity",
        include_str!("../migrations/sqlite/0003_identity.sql"),
        include_str!("../migrations/postgres/0003_identity.sql"),
    ),
    (
        4,
        "signin",
        include_str!("../migrations/sqlite/0004_signin.sql"),
        include_str!("../migrations/postgres/0004_signin.sql"),
    ),
    (
        5,
        "upstream",
        include_str!("../migrations/sqlite/0005_upstream.sql"),
        include_str!("../migrations/postgres/0005_upstream.sql"),
    ),
    (
        6,
        "notify",
        include_str!("../migrations/sqlite/0006_notify.sql"),
        include_str!("../migrations/postgres/0006_notify.sql"),
    ),
    (
        7,
        "portal",
        include_str!("../migrations/sqlite/0007_portal.sql"),
        include_str!("../migrations/postgres/0007_portal.sql"),
    ),
    (
        8,
        "chat_notices",
        include_str!("../migrations/sqlite/0008_chat_notices.sql"),
        include_str!("../migrations/postgres/0008_chat_notices.sql"),
    ),
    (
        9,
        "token_index",
        include_str!("../migrations/sqlite/0009_token_index.sql"),
        include_str!("../migrations/postgres/0009_token_index.sql"),
    ),
    (
        10,
        "contact_access",
        include_str!("../migrations/sqlite/0010_contact_access.sql"),
        include_str!("../migrations/postgres/0010_contact_access.sql"),
    ),
    (
        11,
        "scim",
        include_str!("../migrations/sqlite/0011_scim.sql"),
        include_str!("../migrations/postgres/0011_scim.sql"),
    ),
    (
        12,
        "chat",
        include_str!("../migrations/sqlite/0012_chat.sql"),
        include_str!("../migrations/postgres/0012_chat.sql"),
    ),
    (
        13,
        "chat_attachments",
        include_str!("../migrations/sqlite/0013_chat_attachments.sql"),
        include_str!("../migrations/postgres/0013_chat_attachments.sql"),
    ),
    (
        14,
        "events_recent",
        include_str!("../migrations/sqlite/0014_events_recent.sql"),
        include_str!("../migrations/postgres/0014_events_recent.sql"),
    ),
    (
        15,
        "audit_filters",
        include_str!("../migrations/sqlite/0015_audit_filters.sql"),
        include_str!("../migrations/postgres/0015_audit_filters.sql"),
    ),
    (
        16,
        "import_jobs",
        include_str!("../migrations/sqlite/0016_import_jobs.sql"),
        include_str!("../migrations/postgres/0016_import_jobs.sql"),
    ),
    (
        17,
        "contact_log_floor",
        include_str!("../migrations/sqlite/0017_contact_log_floor.sql"),
        include_str!("../migrations/postgres/0017_contact_log_floor.sql"),
    ),
    (
        18,
        "chat_proposal_seq",
        include_str!("../migrations/sqlite/0018_chat_proposal_seq.sql"),
        include_str!("../migrations/postgres/0018_chat_proposal_seq.sql"),
    ),
    (
        19,
        "search_column",
        include_str!("../migrations/sqlite/0019_search_column.sql"),
        include_str!("../migrations/postgres/0019_search_column.sql"),
    ),
    (
        20,
        "people_account_index",
        include_str!("../migrations/sqlite/0020_people_account_index.sql"),
        include_str!("../migrations/postgres/0020_people_account_index.sql"),
    ),
];

/// The newest migration version this binary knows.
pub const LATEST: i64 = 20;

#[derive(Debug)]
struct Embedded(Backend);

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            Ok(MIGRATIONS
                .iter()
                .map(|(v, d, lite, pg)| {
                    let sql = if self.0 == Backend::Sqlite {
                        *lite
                    } else {
                        *pg
                    };
                    Migration::new(
                        *v,
                        Cow::Borrowed(*d),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

async fn migrator(b: Backend) -> Result<Migrator, StoreError> {
    Ok(Migrator::new(Embedded(b)).await?)
}

pub(crate) async fn run(db: &Db) -> Result<(), StoreError> {
    let m = migrator(db.backend()).await?;
    match db {
        Db::Sqlite { write, .. } => m.run(write).await?,
        Db::Postgres { pool } => m.run(pool).await?,
    }
    Ok(())
}

pub(crate) async fn current(db: &Db) -> Result<bool, StoreError> {
    let mut c = db.read().await?;
    let applied: Result<Option<i64>, sqlx::Error> = crate::run!(&mut c, c =>
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = TRUE").fetch_one(c).await);
    match applied {
        Ok(v) => Ok(v == Some(LATEST)),
        // No migrations table yet: not migrated.
        Err(sqlx::Error::Database(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
