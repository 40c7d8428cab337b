//! Room and user events delivered within the process: a tokio broadcast channel per topic.

use std::collections::HashMap;

use async_trait::async_trait;
use convo_domain::{DomainResult, Event, EventBus, Subscription, Topic};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::shard::{Expiring, SHARDS, Shards, Sweep};

/// [`EventBus`] for a single instance. A topic's channel exists while someone listens: it is
/// removed when a publish finds no receiver left, and swept out as the map of topics grows.
#[derive(Debug)]
pub struct InMemoryEventBus {
    shards: Shards<TopicShard>,
    capacity: usize,
}

impl InMemoryEventBus {
    /// Events a subscriber may fall behind by before it gets `Lagged`. A channel allocates
    /// its whole ring up front, about 190 bytes a slot, and there is one per live topic (each
    /// online user, each watched room): 256 costs about 48 KB a topic and still far exceeds
    /// what a forwarding task lets pile up, since each event follows a database write.
    pub const DEFAULT_CAPACITY: usize = 256;
    /// Every channel allocates its capacity up front; beyond this it is a mistake.
    const MAX_CAPACITY: usize = 1 << 16;
    /// The sessions topic carries only the rare end of sessions; a receiver that lags there
    /// rechecks what it trusted instead.
    pub const SESSIONS_TOPIC_CAPACITY: usize = 64;

    /// A bus whose subscribers may each fall `capacity` events behind (clamped to 1..=65536).
    pub fn new(capacity: usize) -> Self {
        Self { shards: Shards::new(SHARDS, TopicShard::new), capacity: capacity.clamp(1, Self::MAX_CAPACITY) }
    }

    #[cfg(test)]
    fn topics(&self) -> usize {
        self.shards.each().map(|shard| shard.channels.len()).sum()
    }
}

impl Default for InMemoryEventBus {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

#[derive(Debug)]
struct TopicShard {
    channels: HashMap<Topic, broadcast::Sender<Event>>,
    sweep: Sweep,
}

impl TopicShard {
    fn new() -> Self {
        Self { channels: HashMap::new(), sweep: Sweep::new() }
    }
}

/// A channel is dead once every receiver is gone.
impl Expiring for TopicShard {
    fn held(&self) -> usize {
        self.channels.len()
    }

    fn drop_expired(&mut self, _now: Instant) {
        self.channels.retain(|_, sender| sender.receiver_count() > 0);
        self.channels.shrink_to(self.channels.len() * 2);
    }

    fn schedule(&mut self) -> &mut Sweep {
        &mut self.sweep
    }
}

#[async_trait]
impl EventBus for InMemoryEventBus {
    async fn publish(&self, event: Event) -> DomainResult<()> {
        let topic = event.topic();
        let mut shard = self.shards.of(&topic);
        // Sending never waits: a full channel drops its oldest event for the laggards.
        if let Some(sender) = shard.channels.get(&topic)
            && sender.send(event).is_err()
        {
            // Every receiver is gone: nobody listens to this topic any more.
            shard.channels.remove(&topic);
        }
        Ok(())
    }

    async fn subscribe(&self, topic: Topic) -> DomainResult<Subscription> {
        let mut shard = self.shards.of(&topic);
        shard.sweep_if_due(Instant::now());
        let capacity = match topic {
            // Ends of memberships come as often as leaves: a room topic's room for them.
            Topic::Room(_) | Topic::Memberships => self.capacity,
            Topic::Sessions => Self::SESSIONS_TOPIC_CAPACITY.min(self.capacity),
        };
        let sender = shard.channels.entry(topic).or_insert_with(|| broadcast::channel(capacity).0);
        Ok(Subscription::new(sender.subscribe()))
    }
}

#[cfg(test)]
mod tests {
    use convo_domain::{RoomId, UserId};

    use super::*;

    fn revoked(user: UserId) -> Event {
        Event::SessionsRevoked { user_id: user, sessions: Vec::new() }
    }

    #[tokio::test]
    async fn a_publish_to_a_topic_nobody_listens_to_removes_its_channel() {
        let bus = InMemoryEventBus::default();
        let user = UserId::generate();
        let receiver = bus.subscribe(Topic::Sessions).await.expect("subscribe");
        assert_eq!(bus.topics(), 1);
        drop(receiver);
        bus.publish(revoked(user)).await.expect("publish");
        assert_eq!(bus.topics(), 0);
    }

    #[tokio::test]
    async fn publishing_creates_no_channel() {
        let bus = InMemoryEventBus::default();
        for _ in 0..100 {
            bus.publish(revoked(UserId::generate())).await.expect("publish");
        }
        assert_eq!(bus.topics(), 0);
    }

    #[tokio::test]
    async fn abandoned_channels_are_swept_as_topics_grow() {
        let bus = InMemoryEventBus::new(4);
        for _ in 0..5_000 {
            drop(bus.subscribe(Topic::Room(RoomId::generate())).await.expect("subscribe"));
        }
        assert!(bus.topics() < 5_000 / 2, "{} abandoned channels held", bus.topics());

        let rooms: Vec<RoomId> = (0..100).map(|_| RoomId::generate()).collect();
        let mut live = Vec::new();
        for room in &rooms {
            live.push(bus.subscribe(Topic::Room(*room)).await.expect("subscribe"));
        }
        for _ in 0..5_000 {
            drop(bus.subscribe(Topic::Room(RoomId::generate())).await.expect("subscribe"));
        }
        for (room, receiver) in rooms.iter().zip(&mut live) {
            let event = Event::MessageDeleted {
                room_id: *room,
                message_id: convo_domain::MessageId::generate(),
                seq: 1,
            };
            bus.publish(event.clone()).await.expect("publish");
            assert_eq!(receiver.try_recv().expect("channels with receivers survive sweeps"), Some(event));
        }
    }

    #[tokio::test]
    async fn a_slow_subscriber_lags_instead_of_blocking_the_publisher() {
        let bus = InMemoryEventBus::new(4);
        let user = UserId::generate();
        let mut receiver = bus.subscribe(Topic::Sessions).await.expect("subscribe");
        for _ in 0..10 {
            bus.publish(revoked(user)).await.expect("publish");
        }
        assert_eq!(receiver.recv().await, Err(convo_domain::SubscriptionError::Lagged(6)));
    }
}
