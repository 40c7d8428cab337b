//! The storage ports' contract, run on SQLite and on PostgreSQL: every body of
//! `convo-contract`'s storage suites (users, rooms, messages), and the SQL-only tests below, run
//! once per backend (`sqlite::name` and `postgres::name`), each time on a fresh migrated
//! database. The PostgreSQL runs are skipped with a warning when the server is unreachable,
//! except under CI.

use std::sync::Arc;

use convo_contract::messages::senders_through_two_handles_on_one_store_get_seqs_without_gaps;
use convo_contract::storage::{history, room_with_messages, user};
use convo_domain::{Probe, UserId, UserRepository};
use convo_migrations::{Migrator, MigratorTrait};
use convo_sql::connect;
use convo_sql::testing::TestDatabase;

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            use std::sync::Arc;

            use convo_sql::testing::TestDatabase;

            convo_contract::storage_contract!(async {
                let db = TestDatabase::sqlite().await;
                (Arc::new(db.store().clone()), db)
            });
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let db = TestDatabase::sqlite().await;
                    super::$name(&db).await;
                }
            )*
        }

        mod postgres {
            use std::sync::Arc;

            use convo_sql::testing::TestDatabase;

            convo_contract::storage_contract!(async {
                let db = TestDatabase::postgres().await?;
                Some((Arc::new(db.store().clone()), db))
            });
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(db) = TestDatabase::postgres().await else { return };
                    super::$name(&db).await;
                }
            )*
        }
    };
}

on_both_backends!(
    senders_through_two_connection_pools_get_seqs_without_gaps,
    probe_reports_the_database_as_reachable,
    migrating_again_changes_nothing,
    migrations_roll_back_and_apply_again,
);

/// Like two server instances on one database: nothing in the process serialises them.
async fn senders_through_two_connection_pools_get_seqs_without_gaps(db: &TestDatabase) {
    let second = connect(db.url()).await.expect("second pool");
    senders_through_two_handles_on_one_store_get_seqs_without_gaps(
        Arc::new(db.store().clone()),
        Arc::new(second),
    )
    .await;
}

async fn probe_reports_the_database_as_reachable(db: &TestDatabase) {
    let store = db.store();
    assert_eq!(store.name(), "database");
    store.check().await.expect("reachable");
}

async fn migrating_again_changes_nothing(db: &TestDatabase) {
    let store = db.store();
    let ada = user(store, "ada").await;
    store.migrate().await.expect("second migration");
    assert_eq!(store.find_by_id(ada.id).await.expect("find"), Some(ada));
}

async fn migrations_roll_back_and_apply_again(db: &TestDatabase) {
    let store = db.store();
    user(store, "ada").await;
    Migrator::down(store.connection(), None).await.expect("roll back");
    store.migrate().await.expect("apply again");
    assert_eq!(store.find_by_id(UserId::generate()).await.expect("find"), None);
    let (_, general, _) = room_with_messages(store, 2).await;
    assert_eq!(history(store, general.id, None, None, 50).await, (vec![1, 2], false));
}
