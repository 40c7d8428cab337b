//! The contract of [`EventBus`]: an event published after `subscribe` returned reaches every
//! subscriber of its topic, in the order one publisher sent it, and no subscriber of another
//! topic. Publishing never depends on anyone listening.

use std::sync::Arc;
use std::time::Duration;

use convo_domain::{Event, EventBus, RoomId, SessionId, Subscription, Topic, UserId, UserRef, Username};
use tokio::time::timeout;

use crate::fixture::{Case, message};

/// How long a published event may take to arrive.
const DELIVERY: Duration = Duration::from_secs(2);

/// Every body of this module, by name.
pub fn cases<B: EventBus + ?Sized + 'static>() -> Vec<Case<B>> {
    crate::event_bus_contract! { @bodies cases }
}

async fn subscribe<B: EventBus + ?Sized>(bus: &B, topic: Topic) -> Subscription {
    bus.subscribe(topic).await.expect("subscribe")
}

async fn publish<B: EventBus + ?Sized>(bus: &B, event: &Event) {
    bus.publish(event.clone()).await.expect("publish");
}

async fn next(receiver: &mut Subscription) -> Event {
    match timeout(DELIVERY, receiver.recv()).await {
        Ok(Ok(event)) => event,
        Ok(Err(error)) => panic!("receiving failed: {error}"),
        Err(_) => panic!("no event within {DELIVERY:?}"),
    }
}

/// Nothing more has arrived (checked after a later event came, so nothing is in flight).
fn assert_drained(receiver: &mut Subscription) {
    match receiver.try_recv() {
        Ok(None) => {}
        other => panic!("expected no further event, got {other:?}"),
    }
}

fn joined(room: RoomId) -> Event {
    let user = UserRef { id: UserId::generate(), username: Username::from_trusted("contract".to_owned()) };
    Event::MemberJoined { room_id: room, user }
}

pub async fn subscriber_receives_a_published_event<B: EventBus + ?Sized>(bus: Arc<B>) {
    let room = RoomId::generate();
    let mut receiver = subscribe(&*bus, Topic::Room(room)).await;
    let event = Event::MessageCreated(message(room, 1));
    publish(&*bus, &event).await;
    assert_eq!(next(&mut receiver).await, event);
}

pub async fn sessions_topic_delivers_session_revocations<B: EventBus + ?Sized>(bus: Arc<B>) {
    let user = UserId::generate();
    let mut receiver = subscribe(&*bus, Topic::Sessions).await;
    let event = Event::SessionsRevoked {
        user_id: user,
        sessions: vec![SessionId::generate(), SessionId::generate()],
    };
    publish(&*bus, &event).await;
    assert_eq!(next(&mut receiver).await, event);
}

pub async fn memberships_topic_delivers_ended_memberships_apart_from_the_room<B: EventBus + ?Sized>(
    bus: Arc<B>,
) {
    let room = RoomId::generate();
    let user = UserRef { id: UserId::generate(), username: Username::from_trusted("leaver".to_owned()) };
    let mut memberships = subscribe(&*bus, Topic::Memberships).await;
    let mut in_room = subscribe(&*bus, Topic::Room(room)).await;
    let ended = Event::MembershipEnded { room_id: room, user_id: user.id };
    let left = Event::MemberLeft { room_id: room, user };
    bus.publish_all(vec![ended.clone(), left.clone()]).await.expect("publish");
    assert_eq!(next(&mut memberships).await, ended);
    assert_eq!(next(&mut in_room).await, left);
    // A later event on each topic proves nothing else was on its way.
    let later = Event::MembershipEnded { room_id: RoomId::generate(), user_id: UserId::generate() };
    publish(&*bus, &later).await;
    assert_eq!(next(&mut memberships).await, later);
    let joined_later = joined(room);
    publish(&*bus, &joined_later).await;
    assert_eq!(next(&mut in_room).await, joined_later);
    assert_drained(&mut memberships);
    assert_drained(&mut in_room);
}

pub async fn other_topics_are_not_received<B: EventBus + ?Sized>(bus: Arc<B>) {
    let (room, other_room) = (RoomId::generate(), RoomId::generate());
    let user = UserId::generate();
    let mut receiver = subscribe(&*bus, Topic::Room(room)).await;
    let mut elsewhere = subscribe(&*bus, Topic::Room(other_room)).await;

    publish(&*bus, &Event::MessageCreated(message(other_room, 1))).await;
    publish(&*bus, &Event::SessionsRevoked { user_id: user, sessions: vec![SessionId::generate()] }).await;
    let deleted =
        Event::MessageDeleted { room_id: other_room, message_id: message(other_room, 1).id, seq: 1 };
    publish(&*bus, &deleted).await;
    let mine = joined(room);
    publish(&*bus, &mine).await;

    // Published last, so anything of another topic would have come first.
    assert_eq!(next(&mut receiver).await, mine);
    assert_drained(&mut receiver);
    assert!(matches!(next(&mut elsewhere).await, Event::MessageCreated(_)));
    assert_eq!(next(&mut elsewhere).await, deleted, "the deleted message's seq comes along");
    assert_drained(&mut elsewhere);
}

pub async fn every_subscriber_receives<B: EventBus + ?Sized>(bus: Arc<B>) {
    let room = RoomId::generate();
    let mut first = subscribe(&*bus, Topic::Room(room)).await;
    let mut second = subscribe(&*bus, Topic::Room(room)).await;
    let event = joined(room);
    publish(&*bus, &event).await;
    assert_eq!(next(&mut first).await, event);
    assert_eq!(next(&mut second).await, event);
}

pub async fn order_is_preserved_for_one_publisher<B: EventBus + ?Sized>(bus: Arc<B>) {
    let room = RoomId::generate();
    let mut receiver = subscribe(&*bus, Topic::Room(room)).await;
    let sent: Vec<Event> = (1..=100).map(|seq| Event::MessageCreated(message(room, seq))).collect();
    for event in &sent {
        publish(&*bus, event).await;
    }
    let mut received = Vec::with_capacity(sent.len());
    for _ in 0..sent.len() {
        received.push(next(&mut receiver).await);
    }
    assert_eq!(received, sent);
}

pub async fn a_batch_of_new_messages_reaches_each_subscriber_once_in_order<B: EventBus + ?Sized>(
    bus: Arc<B>,
) {
    let room = RoomId::generate();
    let mut first = subscribe(&*bus, Topic::Room(room)).await;
    let mut second = subscribe(&*bus, Topic::Room(room)).await;
    let batch: Vec<Event> = (1..=3).map(|seq| Event::MessageCreated(message(room, seq))).collect();
    bus.publish_all(batch.clone()).await.expect("publish");
    let marker = joined(room);
    publish(&*bus, &marker).await;
    for receiver in [&mut first, &mut second] {
        for event in &batch {
            assert_eq!(&next(receiver).await, event);
        }
        assert_eq!(next(receiver).await, marker);
        assert_drained(receiver);
    }
}

pub async fn publish_without_subscribers_is_ok<B: EventBus + ?Sized>(bus: Arc<B>) {
    let room = RoomId::generate();
    publish(&*bus, &joined(room)).await;
    publish(&*bus, &Event::SessionsRevoked { user_id: UserId::generate(), sessions: Vec::new() }).await;
    // A later subscriber gets what is published after it subscribed, not before.
    let mut receiver = subscribe(&*bus, Topic::Room(room)).await;
    let event = Event::MessageCreated(message(room, 1));
    publish(&*bus, &event).await;
    assert_eq!(next(&mut receiver).await, event);
    assert_drained(&mut receiver);
}

pub async fn publishing_after_a_subscriber_drops_still_works<B: EventBus + ?Sized>(bus: Arc<B>) {
    let room = RoomId::generate();
    let gone = subscribe(&*bus, Topic::Room(room)).await;
    let mut staying = subscribe(&*bus, Topic::Room(room)).await;
    drop(gone);
    let event = joined(room);
    publish(&*bus, &event).await;
    assert_eq!(next(&mut staying).await, event);

    // With no subscriber left, publishing still succeeds, and a new subscriber is served.
    drop(staying);
    publish(&*bus, &joined(room)).await;
    let mut back = subscribe(&*bus, Topic::Room(room)).await;
    let event = Event::MessageCreated(message(room, 1));
    publish(&*bus, &event).await;
    assert_eq!(next(&mut back).await, event);
}
