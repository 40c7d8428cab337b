//! Two adapters on one Redis under one prefix, as two instances see it: presence expires with a
//! crashed instance, events cross instances once each, an instance follows a room's channel
//! only while it has subscribers for it, and a page one instance read again shows what the
//! other changed since.

use std::collections::HashSet;
use std::time::Duration;

use convo_contract::fixture::{edited, message, messages};
use convo_domain::{CachedPage, Event, EventBus, HistoryPage, MessageCache, Presence, RoomId, Topic, UserId};
use convo_redis::testing::TestRedis;
use convo_redis::{RedisConnection, RedisEventBus, RedisMessageCache, RedisPresence};

/// A second connection under the same prefix: another instance.
async fn twin(redis: &TestRedis) -> RedisConnection {
    RedisConnection::connect(convo_redis::testing::settings(&redis.url, &redis.prefix))
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_of_a_crashed_instance_go_offline_when_its_entries_expire() {
    let Some(redis) = TestRedis::connect().await else { return };
    let ttl = Duration::from_secs(1);
    let here = RedisPresence::with_ttl(redis.connection.clone(), ttl);
    let crashing = RedisPresence::with_ttl(twin(&redis).await, ttl);
    let (shared, only_there) = (UserId::generate(), UserId::generate());

    assert!(here.connected(shared).await.unwrap(), "first connection anywhere");
    assert!(!crashing.connected(shared).await.unwrap(), "already online on the other instance");
    assert!(crashing.connected(only_there).await.unwrap());
    assert_eq!(here.online_among(&[shared, only_there]).await.unwrap(), HashSet::from([shared, only_there]));

    drop(crashing); // no disconnects: a crash
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        here.online_among(&[shared, only_there]).await.unwrap(),
        HashSet::from([shared]),
        "the crashed instance's users are offline; this instance's heartbeat keeps its own"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(here.online_among(&[shared]).await.unwrap(), HashSet::from([shared]));
    assert!(here.disconnected(shared).await.unwrap(), "the last connection anywhere");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_cross_instances_and_each_message_arrives_once() {
    let Some(redis) = TestRedis::connect().await else { return };
    let publisher = RedisEventBus::new(redis.connection.clone()).await.expect("bus");
    let subscriber = RedisEventBus::new(twin(&redis).await).await.expect("bus");
    let room = RoomId::generate();
    let mut receiver = subscriber.subscribe(Topic::Room(room)).await.unwrap();

    let first = Event::MessageCreated(convo_contract::fixture::message(room, 1));
    publisher.publish(first.clone()).await.unwrap();
    publisher.publish(first.clone()).await.unwrap(); // a retried publish
    let second = Event::MessageCreated(convo_contract::fixture::message(room, 2));
    publisher.publish(second.clone()).await.unwrap();
    let received = tokio::time::timeout(Duration::from_secs(2), receiver.recv()).await.unwrap().unwrap();
    assert_eq!(received, first);
    let received = tokio::time::timeout(Duration::from_secs(2), receiver.recv()).await.unwrap().unwrap();
    assert_eq!(received, second, "the duplicate of seq 1 was dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_reaches_the_other_instance_in_order_and_its_own_subscribers_once() {
    let Some(redis) = TestRedis::connect().await else { return };
    let publisher = RedisEventBus::new(redis.connection.clone()).await.expect("bus");
    let subscriber = RedisEventBus::new(twin(&redis).await).await.expect("bus");
    let room = RoomId::generate();
    let mut there = subscriber.subscribe(Topic::Room(room)).await.unwrap();
    let mut here = publisher.subscribe(Topic::Room(room)).await.unwrap();

    let batch: Vec<Event> =
        (1..=3).map(|seq| Event::MessageCreated(convo_contract::fixture::message(room, seq))).collect();
    publisher.publish_all(batch.clone()).await.unwrap();
    let last = Event::MessageCreated(convo_contract::fixture::message(room, 4));
    publisher.publish(last.clone()).await.unwrap();
    for receiver in [&mut there, &mut here] {
        for event in batch.iter().chain([&last]) {
            let received =
                tokio::time::timeout(Duration::from_secs(2), receiver.recv()).await.unwrap().unwrap();
            assert_eq!(&received, event);
        }
    }
    // Redis echoed the publisher's own messages back to it after it had delivered them: dropped.
    let late = tokio::time::timeout(Duration::from_millis(300), here.recv()).await;
    assert!(late.is_err(), "nothing more arrived, got {late:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_follows_a_room_only_while_it_has_subscribers() {
    let Some(redis) = TestRedis::connect().await else { return };
    let bus = RedisEventBus::new(redis.connection.clone()).await.expect("bus");
    assert_eq!(bus.subscribed_channels(), 0, "no traffic without subscribers");
    let first = bus.subscribe(Topic::Room(RoomId::generate())).await.unwrap();
    let second = bus.subscribe(Topic::Room(RoomId::generate())).await.unwrap();
    let again = bus.subscribe(Topic::Sessions).await.unwrap();
    assert_eq!(bus.subscribed_channels(), 3);
    drop((first, again));
    tokio::time::sleep(convo_redis::SWEEP_EVERY + Duration::from_secs(1)).await;
    assert_eq!(bus.subscribed_channels(), 1, "abandoned channels are unsubscribed");
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_read_again_shows_what_another_instance_changed_since() {
    let Some(redis) = TestRedis::connect().await else { return };
    let here = RedisMessageCache::new(redis.connection.clone());
    let there = RedisMessageCache::new(twin(&redis).await);
    let room = RoomId::generate();
    let page = |messages: &[convo_domain::Message]| HistoryPage::new(messages.to_vec(), true);
    async fn read(cache: &RedisMessageCache, room: RoomId) -> HistoryPage {
        match cache.latest(room, 3).await.expect("latest") {
            CachedPage::Hit(page) => (*page).clone(),
            CachedPage::Miss(_) => panic!("expected a hit"),
        }
    }
    let mut all = messages(room, 1, 5);
    let CachedPage::Miss(ticket) = here.latest(room, 3).await.expect("latest") else { panic!("a miss") };
    here.fill(room, &HistoryPage::new(all.clone(), true), ticket).await.expect("fill");
    assert_eq!(read(&here, room).await, page(&all[2..]));
    assert_eq!(read(&here, room).await, page(&all[2..]), "read again, unchanged");

    let next = message(room, 6);
    there.messages_stored(room, std::slice::from_ref(&next)).await.expect("stored");
    all.push(next);
    assert_eq!(read(&here, room).await, page(&all[3..]), "stored on the other instance");
    let edit = edited(&all[5], "changed there");
    there.message_edited(&edit).await.expect("edited");
    all[5] = edit;
    assert_eq!(read(&here, room).await, page(&all[3..]), "edited on the other instance");
    there.message_deleted(room, all[4].id).await.expect("deleted");
    all.remove(4);
    assert_eq!(read(&here, room).await, page(&all[2..]), "deleted on the other instance");
}
