//! A send whose request is cancelled right after its batch was committed: the message is still
//! put in the recent-message cache and announced to the room, on SQLite with the in-process
//! adapters and on PostgreSQL + Redis. The application runs in process over the real adapters,
//! with storage wrapped so the test learns the moment of the commit and can drop the request
//! there, before its answer is written.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use convo_domain::{
    CachedPage, DomainResult, Event, HistoryPage, HistoryQuery, Message, MessageContent, MessageId,
    MessageRepository, NewMessage, Posted, RoomId, Topic,
};
use convo_redis::testing::TestRedis;
use convo_server::{Shutdown, adapters, app_over};
use convo_sql::testing::TestDatabase;
use convo_tests::test_config;
use poem::http::StatusCode;
use poem::test::TestClient;
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};

/// Storage that, once armed, holds the next batch after its commit until released, and says
/// when it got there. Everything else passes straight through.
struct HoldAfterCommit {
    inner: Arc<dyn MessageRepository>,
    armed: AtomicBool,
    committed: Notify,
    release: Semaphore,
}

#[async_trait]
impl MessageRepository for HoldAfterCommit {
    async fn insert_batch(
        &self,
        room: RoomId,
        batch: &[NewMessage],
    ) -> DomainResult<Vec<DomainResult<Posted>>> {
        let outcomes = self.inner.insert_batch(room, batch).await;
        if self.armed.swap(false, Ordering::SeqCst) {
            self.committed.notify_one();
            let _permit = self.release.acquire().await.expect("the gate is never closed");
        }
        outcomes
    }

    async fn find(&self, id: MessageId) -> DomainResult<Option<Message>> {
        self.inner.find(id).await
    }

    async fn history(&self, room: RoomId, query: &HistoryQuery) -> DomainResult<HistoryPage> {
        self.inner.history(room, query).await
    }

    async fn edit(
        &self,
        id: MessageId,
        content: &MessageContent,
        at: DateTime<Utc>,
    ) -> DomainResult<Message> {
        self.inner.edit(id, content, at).await
    }

    async fn delete(&self, id: MessageId, at: DateTime<Utc>) -> DomainResult<bool> {
        self.inner.delete(id, at).await
    }
}

async fn json_of(response: poem::test::TestResponse, status: StatusCode) -> Value {
    let actual = response.0.status();
    let body: Value = response.0.into_body().into_json().await.expect("a JSON body");
    assert_eq!(actual, status, "unexpected status; body: {body}");
    body
}

async fn cancelled_after_commit(database: &TestDatabase, vars: &[(&str, &str)]) {
    let config = test_config(database.url(), vars);
    let mut adapters = adapters::build(&config).await.expect("adapters");
    let storage = Arc::new(HoldAfterCommit {
        inner: Arc::clone(&adapters.messages),
        armed: AtomicBool::new(false),
        committed: Notify::new(),
        release: Semaphore::new(0),
    });
    adapters.messages = storage.clone();
    let (cache, events) = (Arc::clone(&adapters.cache), Arc::clone(&adapters.events));
    let client = TestClient::new(app_over(&config, adapters, &Shutdown::new()));

    let registered = client
        .post("/auth/register")
        .body_json(
            &json!({"email": "held@example.com", "username": "held", "password": convo_tests::PASSWORD}),
        )
        .send()
        .await;
    let token = json_of(registered, StatusCode::CREATED).await["access_token"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {token}");
    let created =
        client.post("/chat/room").header("authorization", &bearer).body_json(&json!({"name": "held"})).send();
    let room_id = json_of(created.await, StatusCode::CREATED).await["id"].as_str().unwrap().to_owned();
    let room = RoomId::from_uuid(room_id.parse().expect("a room id"));
    // A first read loads the room into the cache, which from then on follows its sends.
    let history =
        client.get(format!("/chat/messages?roomId={room_id}")).header("authorization", &bearer).send();
    assert_eq!(json_of(history.await, StatusCode::OK).await["messages"], json!([]));
    let mut subscription = events.subscribe(Topic::Room(room)).await.expect("subscribed");

    storage.armed.store(true, Ordering::SeqCst);
    let send = client
        .post("/chat/message")
        .header("authorization", &bearer)
        .body_json(&json!({"roomId": room_id, "content": "sent, then abandoned"}))
        .send();
    tokio::select! {
        _ = send => panic!("the send was answered while its batch was held after the commit"),
        () = storage.committed.notified() => {}
    }
    // The request's future was dropped above, its batch committed and not yet reported.
    storage.release.add_permits(1);

    let announced = tokio::time::timeout(Duration::from_secs(5), subscription.recv())
        .await
        .expect("announced within 5 s")
        .expect("a room event");
    let Event::MessageCreated(message) = announced else { panic!("not a new message: {announced:?}") };
    assert_eq!((message.seq, message.content.as_str()), (1, "sent, then abandoned"));
    // The worker reports to the cache before it publishes, so the cache holds it by now.
    match cache.latest(room, 50).await.expect("the cache answers") {
        CachedPage::Hit(page) => {
            assert_eq!(page.messages, [message], "the cached page is the stored message");
        }
        CachedPage::Miss(_) => panic!("the room fell out of the cache instead of holding the new message"),
    }
}

#[tokio::test]
async fn a_send_cancelled_after_its_commit_is_cached_and_announced_on_sqlite() {
    cancelled_after_commit(&TestDatabase::sqlite().await, &[]).await;
}

#[tokio::test]
async fn a_send_cancelled_after_its_commit_is_cached_and_announced_on_postgres_and_redis() {
    let Some(redis) = TestRedis::connect().await else { return };
    let Some(database) = TestDatabase::postgres().await else { return };
    cancelled_after_commit(&database, &[("REDIS_URL", &redis.url), ("REDIS_KEY_PREFIX", &redis.prefix)])
        .await;
}
