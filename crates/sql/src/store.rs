//! The connection pool, start-up (connect, migrate), write transactions and the readiness probe.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use convo_domain::{DomainError, DomainResult, Probe, redact_url};
use convo_migrations::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sea_orm::sqlx::{Connection, PgConnection};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::error::{SqlError, describe, describe_sqlx, is_pool_timeout};

/// How long a statement waits for another process's write lock on a SQLite file.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request waits for a pooled connection (or a new one) before the database counts as
/// unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// A pooled connection idle this long is pinged before use; busier ones are trusted.
const STALE_CONNECTION_IDLE: Duration = Duration::from_secs(30);
/// PostgreSQL: enough for concurrent requests of one instance, few enough that several instances
/// stay well under the server's default `max_connections` of 100.
const POSTGRES_MAX_CONNECTIONS: u32 = 10;
/// SQLite: one writer at a time anyway; the others read concurrently thanks to WAL.
const SQLITE_MAX_CONNECTIONS: u32 = 4;
/// An arbitrary, fixed key: instances starting together take turns to migrate.
const MIGRATION_LOCK_KEY: i64 = 0x636f_6e76_6f5f_6d67; // "convo_mg"

/// A timestamp as stored: PostgreSQL keeps microseconds, SQLite (text) would keep nanoseconds.
/// Every timestamp is cut to microseconds before it is written, so that both databases hold the
/// same value and what a call returns equals what a later read returns.
pub(crate) fn stored(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

/// Convo's storage: users, rooms, memberships and messages in PostgreSQL or SQLite.
///
/// Cheap to clone (the pool is shared). Implements the domain's `UserRepository`,
/// `RoomRepository`, `MessageRepository` and `Probe` (named `database`).
#[derive(Clone)]
pub struct SqlStore {
    pub(crate) db: DatabaseConnection,
    /// SQLite only: the write lock of the file, taken in the process first. Writers then queue
    /// in order on this mutex instead of polling SQLite's busy handler against each other.
    write_gate: Option<Arc<Mutex<()>>>,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore").field("backend", &self.db.get_database_backend()).finish_non_exhaustive()
    }
}

/// Opens a pool on `url` (`postgres://...` or `sqlite://path?mode=rwc`) and checks that the
/// database answers. SQLite files get WAL journaling, a busy timeout and foreign keys, and the
/// directory of the file is created when missing.
pub async fn connect(url: &str) -> Result<SqlStore, SqlError> {
    let shown = redact_url(url);
    let connect_error = |error: DbErr| SqlError::Connect { url: shown.clone(), reason: describe(&error) };
    let mut options = ConnectOptions::new(url);
    // sqlx pings every connection it hands out, a round trip before each query. Only a
    // connection idle long enough to have been dropped (a database restart, a proxy's idle cut)
    // is pinged; a broken one in use fails its query as a dependency failure, as before.
    options
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire_if_idle_for(STALE_CONNECTION_IDLE)
        .sqlx_logging(false);

    let db = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        options.max_connections(POSTGRES_MAX_CONNECTIONS);
        match Database::connect(options).await {
            Ok(db) => db,
            Err(error) => {
                return Err(SqlError::Connect { url: shown, reason: postgres_failure(url, &error).await });
            }
        }
    } else if url.starts_with("sqlite:") {
        let parsed = SqliteConnectOptions::from_str(url)
            .map_err(|error| SqlError::Connect { url: shown.clone(), reason: error.to_string() })?;
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !in_memory {
            create_parent_directory(parsed.get_filename())?;
        }
        // An in-memory database lives in SQLite's shared cache, whose table locks are not
        // covered by the busy timeout: give it a single connection.
        options.max_connections(if in_memory { 1 } else { SQLITE_MAX_CONNECTIONS });
        options.map_sqlx_sqlite_opts(|sqlite| {
            // WAL: readers never block the writer nor each other. `synchronous` stays FULL (the
            // default) so that an acknowledged message survives a power cut.
            sqlite.journal_mode(SqliteJournalMode::Wal).busy_timeout(SQLITE_BUSY_TIMEOUT).foreign_keys(true)
        });
        Database::connect(options).await.map_err(connect_error)?
    } else {
        return Err(SqlError::UnsupportedUrl { url: shown });
    };
    Ok(SqlStore::new(db))
}

/// Why PostgreSQL could not be reached. The pool retries a refused connection until its timeout
/// and then only says that it timed out; one direct attempt tells why.
async fn postgres_failure(url: &str, error: &DbErr) -> String {
    if is_pool_timeout(error)
        && let Ok(Err(direct)) = tokio::time::timeout(ACQUIRE_TIMEOUT, PgConnection::connect(url)).await
    {
        return describe_sqlx(&direct);
    }
    describe(error)
}

fn create_parent_directory(file: &Path) -> Result<(), SqlError> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.exists() => std::fs::create_dir_all(dir)
            .map_err(|error| SqlError::CreateDirectory { path: dir.to_owned(), reason: error.to_string() }),
        _ => Ok(()),
    }
}

impl SqlStore {
    /// Wraps a connection opened elsewhere (for example with custom pool settings).
    pub fn new(db: DatabaseConnection) -> Self {
        let write_gate = (db.get_database_backend() == DbBackend::Sqlite).then(|| Arc::new(Mutex::new(())));
        Self { db, write_gate }
    }

    /// The SeaORM connection, for tools and tests that need raw access.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Applies every pending migration, in one transaction. On PostgreSQL an advisory lock makes
    /// instances that start together migrate one after the other.
    pub async fn migrate(&self) -> Result<(), SqlError> {
        let failed = |error: DbErr| SqlError::Migrate { reason: describe(&error) };
        let tx = self.write().await.map_err(failed)?;
        if self.db.get_database_backend() == DbBackend::Postgres {
            tx.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_advisory_xact_lock($1)",
                [MIGRATION_LOCK_KEY.into()],
            ))
            .await
            .map_err(failed)?;
        }
        Migrator::up(&*tx, None).await.map_err(failed)?;
        tx.commit().await.map_err(failed)
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`): a deferred transaction that read first could fail to upgrade to a
    /// writer with `SQLITE_BUSY` at once, without waiting. On PostgreSQL it is a plain `BEGIN`
    /// (read committed); the statements lock what they change.
    pub(crate) async fn write(&self) -> Result<WriteTx, DbErr> {
        let gate = match &self.write_gate {
            Some(gate) => Some(Arc::clone(gate).lock_owned().await),
            None => None,
        };
        let tx = self
            .db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await?;
        Ok(WriteTx { tx, _gate: gate })
    }
}

/// A write transaction, holding the in-process SQLite write gate until it ends. Dropping it
/// without `commit` rolls back.
pub(crate) struct WriteTx {
    // Declared first, so dropped (rolled back) before the gate opens.
    tx: DatabaseTransaction,
    _gate: Option<OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub(crate) async fn commit(self) -> Result<(), DbErr> {
        self.tx.commit().await
    }

    pub(crate) async fn rollback(self) -> Result<(), DbErr> {
        self.tx.rollback().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        &self.tx
    }
}

#[async_trait]
impl Probe for SqlStore {
    fn name(&self) -> &'static str {
        "database"
    }

    async fn check(&self) -> DomainResult<()> {
        let backend = self.db.get_database_backend();
        match self.db.query_one_raw(Statement::from_string(backend, "SELECT 1")).await {
            Ok(_) => Ok(()),
            // Whatever the cause, readiness only asks whether the database answers.
            Err(error) => Err(DomainError::unavailable("database", error)),
        }
    }
}
