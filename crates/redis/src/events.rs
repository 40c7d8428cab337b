//! Room and user events over Redis pub/sub. Each instance holds one subscriber connection and,
//! per topic with local subscribers, one tokio broadcast channel fed from the topic's Redis
//! channel: it subscribes the channel when the topic gets its first local subscriber and
//! unsubscribes it (within [`SWEEP_EVERY`]) once the last one is gone, so an instance receives
//! only the traffic of the rooms and users it serves.
//!
//! A new local channel starts disarmed: after subscribing, the adapter publishes a fence (a
//! random token) on the Redis channel and arms the local channel when the fence comes back.
//! Redis delivers a channel's messages in the order they were published, so an event published
//! before `subscribe` was called can never reach the new subscriber, and every event published
//! after `subscribe` returned does. `MessageCreated` events are de-duplicated per topic by
//! (room, seq), so a publish retried after a timeout is seen once. That also lets an instance
//! hand its own new messages to its local subscribers as it publishes them, without waiting for
//! Redis to echo them back (the echo is then dropped): the room's stream puts messages in seq
//! order whichever way they came, and an edit or a deletion of a message, published through
//! Redis, can only follow the message's own delivery.
//!
//! Pub/sub is fire-and-forget: what is published while the subscriber connection is down is
//! lost to this instance. [`EventBus::continuity`] says so: `None` from the moment the
//! connection fails until it is back and every channel is subscribed again, then a new mark.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use convo_domain::{DomainError, DomainResult, Event, EventBus, OutageLog, Subscription, Topic, lock};
use fred::clients::SubscriberClient;
use fred::prelude::{ClientLike, EventInterface, PubsubInterface};
use fred::types::Message as RedisMessage;
use fred::types::config::Server;
use fred::types::scripts::Script;
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::JoinHandle;

use crate::connection::{RedisConnection, RedisError};
use crate::wire::WireEvent;

const WHAT: &str = "events";
/// How often channels without local subscribers are unsubscribed.
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Events a local subscriber may fall behind by before it gets `Lagged`.
const CAPACITY: usize = 256;
/// Pub/sub messages the subscriber connection may buffer for the dispatcher.
const INBOX: usize = 16_384;
/// How long a subscription waits for its fence before publishing it again.
const FENCE_RETRY: Duration = Duration::from_millis(50);
/// `MessageCreated` seqs remembered per topic for de-duplication.
const SEEN: usize = 1024;

/// Publishes each (channel, payload) pair of its arguments, in order. fred writes every command
/// of a pipeline with a system call of its own (about one per message sent, measured at 8,800
/// messages/s); a batch in one script is one command.
static PUBLISH_ALL: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r"
for i = 1, #ARGV, 2 do
  redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
end
",
    )
});

/// [`EventBus`] on Redis pub/sub, one subscriber connection per adapter.
#[derive(Debug)]
pub struct RedisEventBus {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

struct Shared {
    redis: RedisConnection,
    subscriber: SubscriberClient,
    topics: Mutex<HashMap<String, TopicState>>,
    /// Held around every SUBSCRIBE and UNSUBSCRIBE, so that they reach Redis in the order the
    /// map changed.
    subscriptions: tokio::sync::Mutex<()>,
    outage: OutageLog,
    link: Link,
}

/// Whether the subscriber connection has heard everything published since `mark` last changed.
struct Link {
    /// Cleared when the connection fails; set once it is back and its channels are subscribed.
    whole: AtomicBool,
    /// Changes at every return of the connection and whenever the dispatcher dropped messages.
    mark: AtomicU64,
    /// Changes at the same moments as `mark`, once the loss is over: every subscription then
    /// gets `Lagged` and reads what it missed (nothing else would tell a room that fell quiet).
    resync: watch::Sender<u64>,
}

impl Default for Link {
    fn default() -> Self {
        Self { whole: AtomicBool::default(), mark: AtomicU64::default(), resync: watch::Sender::new(0) }
    }
}

impl Link {
    fn broken(&self) {
        self.whole.store(false, Ordering::SeqCst);
        self.mark.fetch_add(1, Ordering::SeqCst);
    }

    fn restored(&self) {
        self.mark.fetch_add(1, Ordering::SeqCst);
        self.whole.store(true, Ordering::SeqCst);
        self.resync.send_modify(|generation| *generation += 1);
    }

    /// Messages were dropped on their way to the subscriptions.
    fn missed(&self) {
        self.mark.fetch_add(1, Ordering::SeqCst);
        self.resync.send_modify(|generation| *generation += 1);
    }

    fn subscription(&self, events: broadcast::Receiver<Event>) -> Subscription {
        Subscription::resyncing(events, self.resync.subscribe())
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

struct TopicState {
    sender: broadcast::Sender<Event>,
    armed: bool,
    fence: u64,
    waiters: Vec<oneshot::Sender<()>>,
    seen: Seen,
}

/// The last [`SEEN`] message seqs delivered on a topic.
#[derive(Default)]
struct Seen {
    set: HashSet<i64>,
    order: VecDeque<i64>,
}

impl Seen {
    /// `false` if the seq was delivered already.
    fn first_time(&mut self, seq: i64) -> bool {
        if !self.set.insert(seq) {
            return false;
        }
        self.order.push_back(seq);
        if self.order.len() > SEEN
            && let Some(oldest) = self.order.pop_front()
        {
            self.set.remove(&oldest);
        }
        true
    }
}

impl TopicState {
    /// Hands an event to the local subscribers, once per (room, seq) for new messages.
    fn deliver(&mut self, event: Event) {
        if let Event::MessageCreated(message) = &event
            && !self.seen.first_time(message.seq)
        {
            return;
        }
        let _ = self.sender.send(event);
    }
}

impl RedisEventBus {
    /// Opens the subscriber connection and starts the dispatcher and the sweeper.
    pub async fn new(redis: RedisConnection) -> Result<Self, RedisError> {
        let mut builder = redis.builder().clone();
        builder.with_performance_config(|perf| perf.broadcast_channel_capacity = INBOX);
        let subscriber =
            builder.build_subscriber_client().map_err(|error| RedisError::Url(error.to_string()))?;
        // Taken before anything is subscribed: messages sent earlier would be lost.
        let inbox = subscriber.message_rx();
        let timeout = redis.settings().connect_timeout;
        match tokio::time::timeout(timeout, subscriber.init()).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(RedisError::Connect(error.to_string())),
            Err(_) => return Err(RedisError::Connect(format!("no answer within {timeout:?}"))),
        }
        let (reconnects, errors) = (subscriber.reconnect_rx(), subscriber.error_rx());
        let shared = Arc::new(Shared {
            redis,
            subscriber,
            topics: Mutex::new(HashMap::new()),
            subscriptions: tokio::sync::Mutex::new(()),
            outage: OutageLog::new(
                "Redis unreachable: events reach this instance's subscribers only",
                "Redis reachable again: events reach every instance",
            ),
            link: Link::default(),
        });
        shared.link.restored();
        let follower = tokio::spawn(follow_link(Arc::downgrade(&shared), reconnects, errors));
        let dispatcher = tokio::spawn(dispatch(Arc::downgrade(&shared), inbox));
        let sweeper = tokio::spawn(sweep(Arc::downgrade(&shared)));
        Ok(Self { shared, tasks: vec![follower, dispatcher, sweeper] })
    }

    /// Redis channels this instance is subscribed to (topics with local subscribers, and
    /// abandoned ones not swept yet).
    pub fn subscribed_channels(&self) -> usize {
        self.shared.subscriber.tracked_channels().len()
    }
}

impl Drop for RedisEventBus {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        let subscriber = self.shared.subscriber.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = subscriber.quit().await;
            });
        }
    }
}

impl Shared {
    fn topics(&self) -> MutexGuard<'_, HashMap<String, TopicState>> {
        lock(&self.topics)
    }

    /// Drops the channel's state if it is still the one the fence was made for.
    fn forget(&self, channel: &str, fence: u64) {
        let mut topics = self.topics();
        if topics.get(channel).is_some_and(|state| state.fence == fence && !state.armed) {
            topics.remove(channel);
        }
    }

    fn receive(&self, message: RedisMessage) {
        let Some(payload) = message.value.as_string() else { return };
        let Ok(wire) = serde_json::from_str::<WireEvent>(&payload) else {
            tracing::warn!(channel = %message.channel, "ignoring an undecodable event");
            return;
        };
        let mut topics = self.topics();
        let Some(state) = topics.get_mut(&*message.channel) else { return };
        match wire {
            WireEvent::Fence { token } => {
                if !state.armed && token == state.fence {
                    state.armed = true;
                    for waiter in state.waiters.drain(..) {
                        let _ = waiter.send(());
                    }
                }
            }
            wire => {
                if state.armed
                    && let Some(event) = wire.into_event()
                {
                    state.deliver(event);
                }
            }
        }
    }

    /// Hands a new message of this instance to the local subscribers of its (armed) channel at
    /// once; the copy Redis echoes back is then a duplicate and dropped.
    fn deliver_own_message(&self, channel: &str, event: &Event) {
        if !matches!(event, Event::MessageCreated(_)) {
            return;
        }
        if let Some(state) = self.topics().get_mut(channel)
            && state.armed
        {
            state.deliver(event.clone());
        }
    }

    fn note(&self, failed: Option<&DomainError>) {
        match failed {
            Some(error) => self.outage.failed(error),
            None => self.outage.recovered(),
        };
    }
}

async fn dispatch(shared: Weak<Shared>, mut inbox: broadcast::Receiver<RedisMessage>) {
    loop {
        match inbox.recv().await {
            Ok(message) => {
                let Some(shared) = shared.upgrade() else { return };
                shared.receive(message);
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::error!(missed, "the event dispatcher fell behind; events were lost");
                let Some(shared) = shared.upgrade() else { return };
                shared.link.missed();
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Tracks the subscriber connection: a failure breaks the link; a reconnection subscribes
/// every channel again and only then restores it, under a new mark.
async fn follow_link(
    shared: Weak<Shared>,
    mut reconnects: broadcast::Receiver<Server>,
    mut errors: broadcast::Receiver<(fred::error::Error, Option<Server>)>,
) {
    loop {
        let reconnected = tokio::select! {
            reconnect = reconnects.recv() => match reconnect {
                Err(broadcast::error::RecvError::Closed) => return,
                _ => true,
            },
            error = errors.recv() => match error {
                Err(broadcast::error::RecvError::Closed) => return,
                _ => false,
            },
        };
        let Some(shared) = shared.upgrade() else { return };
        shared.link.broken();
        // Retried while the connection stays up, since no further reconnection may come.
        while reconnected && shared.subscriber.is_connected() {
            let resubscribed = {
                let _order = shared.subscriptions.lock().await;
                shared.subscriber.resubscribe_all().await
            };
            match resubscribed {
                Ok(()) => {
                    shared.link.restored();
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "could not subscribe the event channels again");
                    tokio::time::sleep(FENCE_RETRY * 10).await;
                }
            }
        }
    }
}

/// Unsubscribes channels whose local subscribers are all gone.
async fn sweep(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        let _order = shared.subscriptions.lock().await;
        let abandoned: Vec<String> = {
            let mut topics = shared.topics();
            let abandoned: Vec<String> = topics
                .iter()
                .filter(|(_, state)| state.sender.receiver_count() == 0)
                .map(|(channel, _)| channel.clone())
                .collect();
            for channel in &abandoned {
                topics.remove(channel);
            }
            abandoned
        };
        if abandoned.is_empty() || !shared.subscriber.is_connected() {
            continue;
        }
        if let Err(error) = shared.redis.run(WHAT, shared.subscriber.unsubscribe(abandoned)).await {
            tracing::debug!(%error, "could not unsubscribe abandoned channels");
        }
    }
}

#[async_trait]
impl EventBus for RedisEventBus {
    async fn publish(&self, event: Event) -> DomainResult<()> {
        let shared = &self.shared;
        let channel = shared.redis.keys().channel(event.topic());
        shared.deliver_own_message(&channel, &event);
        let payload = serde_json::to_string(&WireEvent::from(&event)).map_err(DomainError::internal)?;
        let published = match shared.redis.client(WHAT) {
            Ok(client) => shared.redis.run(WHAT, client.publish::<i64, _, _>(channel.clone(), payload)).await,
            Err(error) => Err(error),
        };
        shared.note(published.as_ref().err());
        if published.is_err() {
            // Redis is unreachable: this instance's subscribers still hear of it.
            if let Some(state) = shared.topics().get_mut(&channel)
                && state.armed
            {
                state.deliver(event);
            }
        }
        Ok(())
    }

    /// One command for the whole batch ([`PUBLISH_ALL`]): one round trip and one write however
    /// many messages a commit stored.
    async fn publish_all(&self, events: Vec<Event>) -> DomainResult<()> {
        let shared = &self.shared;
        let channels: Vec<String> =
            events.iter().map(|event| shared.redis.keys().channel(event.topic())).collect();
        let mut args = Vec::with_capacity(2 * events.len());
        for (channel, event) in channels.iter().zip(&events) {
            shared.deliver_own_message(channel, event);
            args.push(channel.clone());
            args.push(serde_json::to_string(&WireEvent::from(event)).map_err(DomainError::internal)?);
        }
        let published = shared.redis.script(WHAT, &PUBLISH_ALL, Vec::new(), args).await;
        shared.note(published.as_ref().err());
        if published.is_err() {
            // Redis is unreachable: this instance's subscribers still hear of them.
            let mut topics = shared.topics();
            for (channel, event) in channels.iter().zip(events) {
                if let Some(state) = topics.get_mut(channel)
                    && state.armed
                {
                    state.deliver(event);
                }
            }
        }
        Ok(())
    }

    async fn subscribe(&self, topic: Topic) -> DomainResult<Subscription> {
        let shared = &self.shared;
        let channel = shared.redis.keys().channel(topic);
        let (receiver, armed, fence, created) = {
            let mut topics = shared.topics();
            match topics.get_mut(&channel) {
                Some(state) if state.sender.receiver_count() > 0 => {
                    let receiver = state.sender.subscribe();
                    if state.armed {
                        return Ok(shared.link.subscription(receiver));
                    }
                    let (waiter, armed) = oneshot::channel();
                    state.waiters.push(waiter);
                    (receiver, armed, state.fence, false)
                }
                _ => {
                    let (sender, receiver) = broadcast::channel(CAPACITY);
                    let (waiter, armed) = oneshot::channel();
                    let fence = rand::random::<u64>();
                    let state = TopicState {
                        sender,
                        armed: false,
                        fence,
                        waiters: vec![waiter],
                        seen: Seen::default(),
                    };
                    topics.insert(channel.clone(), state);
                    (receiver, armed, fence, true)
                }
            }
        };
        let mut armed = armed;
        let deadline = tokio::time::Instant::now() + shared.redis.settings().command_timeout * 3;
        if created {
            if let Err(error) = self.open(&channel).await {
                shared.forget(&channel, fence);
                shared.note(Some(&error));
                return Err(error);
            }
            // The subscription may take effect after SUBSCRIBE was answered to the client, so
            // the fence is published again until it comes back.
            let payload =
                serde_json::to_string(&WireEvent::Fence { token: fence }).map_err(DomainError::internal)?;
            loop {
                let published = match shared.redis.client(WHAT) {
                    Ok(client) => {
                        shared
                            .redis
                            .run(WHAT, client.publish::<i64, _, _>(channel.clone(), payload.clone()))
                            .await
                    }
                    Err(error) => Err(error),
                };
                if let Err(error) = published {
                    shared.forget(&channel, fence);
                    shared.note(Some(&error));
                    return Err(error);
                }
                let retry = (tokio::time::Instant::now() + FENCE_RETRY).min(deadline);
                match tokio::time::timeout_at(retry, &mut armed).await {
                    Ok(Ok(())) => return Ok(shared.link.subscription(receiver)),
                    Ok(Err(_)) => break,
                    Err(_) if tokio::time::Instant::now() >= deadline => break,
                    Err(_) => {}
                }
            }
        } else if let Ok(Ok(())) = tokio::time::timeout_at(deadline, armed).await {
            return Ok(shared.link.subscription(receiver));
        }
        shared.forget(&channel, fence);
        Err(DomainError::unavailable(WHAT, "the subscription was not confirmed in time"))
    }

    fn continuity(&self) -> Option<u64> {
        let link = &self.shared.link;
        let mark = link.mark.load(Ordering::SeqCst);
        (link.whole.load(Ordering::SeqCst) && self.shared.subscriber.is_connected()).then_some(mark)
    }
}

impl RedisEventBus {
    /// Subscribes the Redis channel.
    async fn open(&self, channel: &str) -> DomainResult<()> {
        let shared = &self.shared;
        {
            let _order = shared.subscriptions.lock().await;
            if !shared.subscriber.is_connected() {
                return Err(DomainError::unavailable(WHAT, "the subscriber connection is down"));
            }
            shared.redis.run(WHAT, shared.subscriber.subscribe(channel.to_owned())).await
        }
    }
}
