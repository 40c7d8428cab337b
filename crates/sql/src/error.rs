//! The adapter's start-up error, and how database failures become domain errors at the boundary.

use std::path::PathBuf;

use convo_domain::DomainError;
use sea_orm::sqlx::postgres::PgDatabaseError;
use sea_orm::sqlx::sqlite::SqliteError;
use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr, SqlErr, SqlxError};

/// Why the store could not be opened or migrated. Each message is one line that names the
/// problem; URLs in it never show a password.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("unsupported database URL {url}: expected postgres://... or sqlite://...")]
    UnsupportedUrl { url: String },
    #[error("cannot create the directory {} for the SQLite database: {reason}", path.display())]
    CreateDirectory { path: PathBuf, reason: String },
    #[error("cannot connect to the database at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("cannot apply the database migrations: {reason}")]
    Migrate { reason: String },
}

/// A failure of a repository call: `Unavailable` when the database cannot be reached or is too
/// busy (the caller may retry), `Internal` for everything else.
pub(crate) fn db_error(error: DbErr) -> DomainError {
    if is_unreachable(&error) {
        DomainError::unavailable("database", error)
    } else {
        DomainError::internal(error)
    }
}

fn is_unreachable(error: &DbErr) -> bool {
    match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(error)) | DbErr::Query(RuntimeErr::SqlxError(error)) => {
            match &**error {
                SqlxError::Io(_)
                | SqlxError::Tls(_)
                | SqlxError::Protocol(_)
                | SqlxError::PoolTimedOut
                | SqlxError::PoolClosed
                | SqlxError::WorkerCrashed => true,
                SqlxError::Database(error) => {
                    let code = error.code().unwrap_or_default();
                    if error.try_downcast_ref::<PgDatabaseError>().is_some() {
                        // 08: connection exception; 57P01-57P03: shutting down or starting up;
                        // 53300: too many connections.
                        code.starts_with("08") || code.starts_with("57P0") || code == "53300"
                    } else if error.try_downcast_ref::<SqliteError>().is_some() {
                        // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes:
                        // another process held the write lock past the busy timeout.
                        code.parse::<i32>().is_ok_and(|code| matches!(code & 0xff, 5 | 6))
                    } else {
                        false
                    }
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// The database's message if `error` is a unique-constraint violation. It names the index on
/// PostgreSQL (`idx_users_email`) and the columns on SQLite (`users.email`); the index names of
/// `convo-migrations` contain their column names, so matching on a column name works on both.
pub(crate) fn unique_violation(error: &DbErr) -> Option<String> {
    match error.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(message)) => Some(message),
        _ => None,
    }
}

/// A one-line reason for a start-up failure, without SeaORM's "Connection Error:" prefixes.
pub(crate) fn describe(error: &DbErr) -> String {
    match error {
        DbErr::Conn(RuntimeErr::SqlxError(error))
        | DbErr::Exec(RuntimeErr::SqlxError(error))
        | DbErr::Query(RuntimeErr::SqlxError(error)) => describe_sqlx(error),
        DbErr::Conn(inner) | DbErr::Exec(inner) | DbErr::Query(inner) => one_line(&inner.to_string()),
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => "no connection within the timeout".to_owned(),
        other => one_line(&other.to_string()),
    }
}

pub(crate) fn describe_sqlx(error: &SqlxError) -> String {
    match error {
        SqlxError::Io(io) => one_line(&io.to_string()),
        SqlxError::PoolTimedOut => "no connection within the timeout".to_owned(),
        other => one_line(&other.to_string()),
    }
}

/// Whether the pool gave up waiting for a connection (it retries refused connections silently).
pub(crate) fn is_pool_timeout(error: &DbErr) -> bool {
    match error {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => true,
        DbErr::Conn(RuntimeErr::SqlxError(error)) => matches!(**error, SqlxError::PoolTimedOut),
        _ => false,
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
