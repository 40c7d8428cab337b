//! Opening the store: SQLite set-up, refused URLs and error messages, and the query plans the
//! schema is meant to give.

use std::panic::AssertUnwindSafe;

use chrono::Utc;
use convo_domain::{
    DirectoryQuery, Email, NewRoom, PasswordHash, RoomId, RoomName, RoomRepository, User, UserId,
    UserRepository, Username,
};
use convo_sql::testing::TestDatabase;
use convo_sql::{SqlError, connect};
use futures_util::FutureExt;
use sea_orm::sqlx::{AssertSqlSafe, Connection, PgConnection, raw_sql};
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use uuid::Uuid;

async fn pragma(db: &sea_orm::DatabaseConnection, name: &str) -> String {
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Sqlite, format!("PRAGMA {name}")))
        .await
        .expect("pragma")
        .expect("a row");
    row.try_get_by_index::<i64>(0)
        .map(|value| value.to_string())
        .or_else(|_| row.try_get_by_index::<String>(0))
        .expect("value")
}

#[tokio::test]
async fn sqlite_file_gets_its_directory_wal_busy_timeout_and_foreign_keys() {
    let dir = std::env::temp_dir().join(format!("convo-connect-{}", Uuid::new_v4().simple()));
    let url = format!("sqlite://{}/nested/convo.db?mode=rwc", dir.display());

    let store = connect(&url).await.expect("connect");
    store.migrate().await.expect("migrate");

    assert!(dir.join("nested/convo.db").is_file());
    let db = store.connection();
    assert_eq!(pragma(db, "journal_mode").await, "wal");
    assert_eq!(pragma(db, "foreign_keys").await, "1");
    assert_eq!(pragma(db, "busy_timeout").await, "5000");
    drop(store);
    std::fs::remove_dir_all(dir).expect("clean up");
}

#[tokio::test]
async fn in_memory_sqlite_works() {
    let store = connect("sqlite::memory:").await.expect("connect");
    store.migrate().await.expect("migrate");
}

#[tokio::test]
async fn unsupported_url_is_refused_in_one_line() {
    let error = connect("mysql://root:hunter2@localhost/convo").await.expect_err("unsupported");
    assert!(matches!(error, SqlError::UnsupportedUrl { .. }), "{error:?}");
    let message = error.to_string();
    assert_eq!(
        message,
        "unsupported database URL mysql://root:***@localhost/convo: expected postgres://... or sqlite://..."
    );
}

#[tokio::test]
async fn unreachable_postgres_is_named_without_the_password() {
    // Port 1: nothing listens there, so the connection is refused at once.
    let error = connect("postgres://convo:hunter2@127.0.0.1:1/convo").await.expect_err("unreachable");
    let message = error.to_string();
    assert!(matches!(error, SqlError::Connect { .. }), "{error:?}");
    assert!(
        message.starts_with("cannot connect to the database at postgres://convo:***@127.0.0.1:1/convo: "),
        "{message}"
    );
    assert!(message.to_lowercase().contains("connection refused"), "{message}");
    assert!(!message.contains("hunter2") && !message.contains('\n'), "{message}");
}

#[tokio::test]
async fn unopenable_sqlite_file_is_named() {
    // Without `mode=rwc` a missing file is not created.
    let path = std::env::temp_dir().join(format!("convo-missing-{}.db", Uuid::new_v4().simple()));
    let error = connect(&format!("sqlite://{}", path.display())).await.expect_err("missing file");
    let message = error.to_string();
    assert!(message.starts_with("cannot connect to the database at sqlite://"), "{message}");
}

/// The directory search is an index range scan on `name_key`, not a table scan.
#[tokio::test]
async fn directory_search_uses_the_name_key_index_on_sqlite() {
    let db = TestDatabase::sqlite().await;
    let conn = db.store().connection();
    let plan = conn
        .query_all_raw(Statement::from_string(
            DbBackend::Sqlite,
            "EXPLAIN QUERY PLAN SELECT * FROM rooms WHERE name_key >= 'gen' AND name_key < 'geo' \
             ORDER BY name_key LIMIT 50",
        ))
        .await
        .expect("explain");
    let plan: Vec<String> =
        plan.iter().map(|row| row.try_get::<String>("", "detail").expect("detail")).collect();
    assert!(
        plan.iter().any(|step| step.contains("USING INDEX idx_rooms_name_key (name_key>? AND name_key<?)")),
        "{plan:?}"
    );
    assert!(!plan.iter().any(|step| step.contains("TEMP B-TREE")), "no sort needed: {plan:?}");
}

#[tokio::test]
async fn directory_search_uses_the_name_key_index_on_postgres() {
    let Some(db) = TestDatabase::postgres().await else { return };
    let tx = db.store().connection().begin().await.expect("begin");
    // An empty table is cheapest to scan: forbid that (and a bitmap scan, which loses the order)
    // to see whether the index can serve both the range and the order.
    tx.execute_unprepared("SET LOCAL enable_seqscan = off").await.expect("set");
    tx.execute_unprepared("SET LOCAL enable_bitmapscan = off").await.expect("set");
    let plan = tx
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "EXPLAIN SELECT * FROM rooms WHERE name_key >= 'gen' AND name_key < 'geo' ORDER BY name_key LIMIT 50",
        ))
        .await
        .expect("explain");
    let plan: Vec<String> =
        plan.iter().map(|row| row.try_get::<String>("", "QUERY PLAN").expect("plan")).collect();
    let text = plan.join("\n");
    assert!(text.contains("Index Scan using idx_rooms_name_key"), "{text}");
    assert!(text.contains("Index Cond: ((name_key >= 'gen'::text) AND (name_key < 'geo'::text))"), "{text}");
    assert!(!text.contains("Sort"), "{text}");
}

/// Many PostgreSQL servers default to a linguistic collation, where "éclair" sorts between "e"
/// and "f". The directory must still answer by code point: prefix "e" finds "eclair" only.
#[tokio::test]
async fn directory_prefix_is_exact_under_a_linguistic_default_collation_on_postgres() {
    let Some(test_db) = TestDatabase::postgres().await else { return };
    let icu_name = format!("convo_t_icu_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(test_db.url()).await.expect("admin connection");
    let created = raw_sql(AssertSqlSafe(format!(
        "CREATE DATABASE {icu_name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
    )))
    .execute(&mut admin)
    .await;
    if let Err(error) = created {
        eprintln!("*** SKIPPED: this PostgreSQL cannot create an ICU database: {error} ***");
        return;
    }
    let icu_url = test_db.url().replace(test_db.url().rsplit('/').next().unwrap_or_default(), &icu_name);

    let outcome = AssertUnwindSafe(async {
        let store = connect(&icu_url).await.expect("connect");
        store.migrate().await.expect("migrate");
        let owner = User {
            id: UserId::generate(),
            email: Email::parse("owner@example.com").expect("valid"),
            username: Username::parse("owner").expect("valid"),
            created_at: Utc::now(),
        };
        UserRepository::create(&store, &owner, &PasswordHash::new("x".into())).await.expect("user");
        for name in ["éclair", "eclair", "Ezra", "f"] {
            let room = NewRoom {
                id: RoomId::generate(),
                name: RoomName::parse(name).expect("valid"),
                owner_id: owner.id,
                created_at: Utc::now(),
            };
            RoomRepository::create(&store, &room).await.expect("room");
        }
        let found = |prefix: &'static str| {
            let store = store.clone();
            async move {
                let query = DirectoryQuery::parse(Some(prefix), None).expect("valid");
                let rooms = store.directory(&query).await.expect("directory");
                rooms.into_iter().map(|room| room.name.as_str().to_owned()).collect::<Vec<_>>()
            }
        };
        assert_eq!(found("e").await, ["eclair", "Ezra"]);
        assert_eq!(found("É").await, ["éclair"]);
        assert_eq!(found("").await, ["eclair", "Ezra", "f", "éclair"]);
        store.connection().clone().close().await.expect("close");
    })
    .catch_unwind()
    .await;

    raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {icu_name} WITH (FORCE)")))
        .execute(&mut admin)
        .await
        .expect("drop the ICU database");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
