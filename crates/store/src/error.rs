//! Storage errors. "Not found" is not an error here (queries return `Option`); an outage
//! ([`StoreError::Unavailable`]) must never look like a missing row or a bad request.

/// What can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database can't be reached (pool timed out, connection refused or closed, I/O).
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A unique constraint refused the write; `what` names the constraint or columns.
    #[error("unique constraint violated: {what}")]
    Unique { what: String },
    /// A foreign key refused the write.
    #[error("foreign key violated: {what}")]
    ForeignKey { what: String },
    /// Any other database error (a bug or a schema mismatch).
    #[error("database error: {0}")]
    Query(#[source] sqlx::Error),
    /// Migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value can't be read back (corruption or a bug).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::error::ErrorKind;
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e),
            sqlx::Error::Database(d) => {
                let what = d
                    .constraint()
                    .map(str::to_string)
                    .unwrap_or_else(|| d.message().to_string());
                match d.kind() {
                    ErrorKind::UniqueViolation => StoreError::Unique { what },
                    ErrorKind::ForeignKeyViolation => StoreError::ForeignKey { what },
                    _ => StoreError::Query(e),
                }
            }
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
                StoreError::Corrupt(e.to_string())
            }
            _ => StoreError::Query(e),
        }
    }
}
