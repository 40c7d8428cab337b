//! Throw-away, migrated databases for tests, in this crate and in others (feature `testing`).
//!
//! ```text
//! let db = TestDatabase::sqlite().await;
//! let Some(db) = TestDatabase::postgres().await else { return }; // PostgreSQL not running
//! serve(db.url()) / use db.store()
//! ```

use std::path::PathBuf;
use std::time::Duration;

use convo_domain::testing::is_ci;
use sea_orm::sqlx::{AssertSqlSafe, Connection, PgConnection, raw_sql};
use uuid::Uuid;

use crate::store::{SqlStore, connect};

/// The server the PostgreSQL test databases are created on, unless `TEST_POSTGRES_URL` says
/// otherwise.
pub const DEFAULT_TEST_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432";

/// A fresh database with every migration applied, removed again when dropped.
pub struct TestDatabase {
    url: String,
    store: SqlStore,
    cleanup: Cleanup,
}

enum Cleanup {
    SqliteFile(PathBuf),
    Postgres { server: String, name: String },
}

impl std::fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDatabase").field("url", &self.url).finish_non_exhaustive()
    }
}

impl TestDatabase {
    /// A new SQLite file in the temporary directory.
    pub async fn sqlite() -> TestDatabase {
        let path = std::env::temp_dir().join(format!("convo-test-{}.db", Uuid::new_v4().simple()));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        // Built before migrating, so that the file is removed even if migrating panics.
        let store = connect(&url).await.unwrap_or_else(|error| panic!("test database: {error}"));
        let db = TestDatabase { url, store, cleanup: Cleanup::SqliteFile(path) };
        db.store.migrate().await.unwrap_or_else(|error| panic!("test database: {error}"));
        db
    }

    /// A new database `convo_t_<uuid>` on the PostgreSQL server of `TEST_POSTGRES_URL` (default
    /// [`DEFAULT_TEST_POSTGRES_URL`]). `None`, with a warning on stderr, when the server cannot
    /// be reached; under CI (`CI=true`) that panics instead, since a missing service there is a
    /// failure, not a reason to skip.
    pub async fn postgres() -> Option<TestDatabase> {
        let server =
            std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_TEST_POSTGRES_URL.to_owned());
        let name = format!("convo_t_{}", Uuid::new_v4().simple());
        let created = async {
            let mut admin = PgConnection::connect(&server).await?;
            raw_sql(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#))).execute(&mut admin).await?;
            admin.close().await
        };
        match tokio::time::timeout(Duration::from_secs(10), created).await {
            Ok(Ok(())) => {}
            failed => {
                let reason = match failed {
                    Ok(Err(error)) => error.to_string(),
                    _ => "no answer within 10 s".to_owned(),
                };
                let shown = convo_domain::redact_url(&server);
                if is_ci() {
                    panic!("PostgreSQL at {shown} is required under CI but unreachable: {reason}");
                }
                eprintln!(
                    "\n*** SKIPPED: PostgreSQL at {shown} is unreachable ({reason}); set TEST_POSTGRES_URL or \
                     start it to run the PostgreSQL tests ***\n"
                );
                return None;
            }
        }
        let url = database_url(&server, &name);
        let store = connect(&url).await.unwrap_or_else(|error| panic!("test database: {error}"));
        let db = TestDatabase { url, store, cleanup: Cleanup::Postgres { server, name } };
        db.store.migrate().await.unwrap_or_else(|error| panic!("test database: {error}"));
        Some(db)
    }

    /// The URL to give the server (`DATABASE_URL`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A store on the database (clone it to keep one).
    pub fn store(&self) -> &SqlStore {
        &self.store
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::SqliteFile(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
            Cleanup::Postgres { server, name } => {
                // Drop cannot await, and may run inside a runtime that must not be blocked on:
                // drop the database from a thread with a runtime of its own. FORCE ends the
                // connections still open to it (this store's pool, a server under test).
                let (server, name) = (server.clone(), name.clone());
                let outcome = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                    runtime.block_on(async {
                        let mut admin = PgConnection::connect(&server).await?;
                        raw_sql(AssertSqlSafe(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#)))
                            .execute(&mut admin)
                            .await?;
                        admin.close().await?;
                        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
                    })
                })
                .join();
                match outcome {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => eprintln!("warning: could not drop a test database: {error}"),
                    Err(_) => eprintln!("warning: dropping a test database panicked"),
                }
            }
        }
    }
}

/// `server` (a PostgreSQL URL, with or without a database) pointing at database `name`.
fn database_url(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (server, None),
    };
    let authority_start = base.find("://").map_or(0, |at| at + 3);
    let path_start = base[authority_start..].find('/').map_or(base.len(), |at| authority_start + at);
    match query {
        Some(query) => format!("{}/{name}?{query}", &base[..path_start]),
        None => format!("{}/{name}", &base[..path_start]),
    }
}

#[cfg(test)]
mod tests {
    use super::database_url;

    #[test]
    fn database_url_replaces_or_adds_the_database() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            database_url("postgres://u:p@h/postgres?sslmode=disable", "t1"),
            "postgres://u:p@h/t1?sslmode=disable"
        );
    }
}
