//! Short, bounded in-process memories of facts checked against storage (a session is alive, a
//! user belongs to a room), so that a busy client's requests do not each cost a round trip.
//!
//! A remembered fact is trusted only while nothing can have ended it unseen:
//! - whatever ends such a fact is announced on one [`Topic`] that every instance hears, and the
//!   memory follows that topic from the moment it is first used; an announcement (or a local
//!   change, told with [`Remembered::forget`]) forgets the facts it ends at once;
//! - the event bus's [`EventBus::continuity`] mark must be the one the fact was checked under:
//!   while the bus is cut off from the other instances nothing is trusted, and once it is back
//!   everything remembered before is dropped, since an announcement may have been missed
//!   meanwhile;
//! - a check that raced an announcement is not remembered (a counter of changes taken before
//!   storage is asked must be unchanged after);
//! - a fact lives a bounded time at most, after which storage is asked again.
//!
//! The memory is bounded ([`ExpiringMap`]): past its capacity of live entries a new fact is
//! simply not remembered, and expired ones are swept out as time passes, so what nobody asks
//! about any more leaves it.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::event::{Event, EventBus, SubscriptionError, Topic};
use crate::sync::lock;

/// How long to wait before following a topic again after it could not be followed.
const RETRY_FOLLOWING: Duration = Duration::from_secs(1);

/// A map of at most `capacity` entries, each kept `lifetime` after it was inserted. Expired
/// entries are never returned, and are swept out at most once per `lifetime`, when an insert
/// finds a sweep due; a full map refuses new keys until then.
#[derive(Debug)]
pub(crate) struct ExpiringMap<K, V> {
    entries: HashMap<K, (V, Instant)>,
    capacity: usize,
    lifetime: Duration,
    sweep_at: Option<Instant>,
}

impl<K: Eq + Hash, V> ExpiringMap<K, V> {
    pub(crate) fn new(capacity: usize, lifetime: Duration) -> Self {
        Self { entries: HashMap::new(), capacity, lifetime, sweep_at: None }
    }

    /// The value, if it was inserted less than `lifetime` before `now`.
    pub(crate) fn get<Q>(&self, key: &Q, now: Instant) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.entries.get(key).filter(|(_, until)| *until > now).map(|(value, _)| value)
    }

    /// Keeps `value` for `lifetime` from `now`; `false` if the map is full of live entries.
    pub(crate) fn insert(&mut self, key: K, value: V, now: Instant) -> bool {
        if self.sweep_at.is_none_or(|at| now >= at) {
            self.entries.retain(|_, (_, until)| *until > now);
            self.entries.shrink_to(self.capacity.min(self.entries.len() * 2));
            self.sweep_at = Some(now + self.lifetime);
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            return false;
        }
        self.entries.insert(key, (value, now + self.lifetime));
        true
    }

    pub(crate) fn remove(&mut self, key: &K) {
        self.entries.remove(key);
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries held, expired ones not swept yet included.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// What a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The fact was checked recently and nothing has ended it since.
    Known,
    /// Ask storage; if it confirms the fact, [`Remembered::remember`] it with this, which holds
    /// what the memory looked like before storage was asked (`None` when it cannot remember now).
    Ask(Option<Checkpoint>),
}

/// The state a storage check started from: a check is remembered only if neither the bus's
/// mark nor the count of changes heard moved while it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    mark: u64,
    changes: u64,
}

#[derive(Debug)]
struct State<K> {
    known: ExpiringMap<K, ()>,
    /// The bus's mark while the topic is followed; `None` while it is not.
    following: Option<u64>,
    /// Bumped by whatever may end a fact unseen by a check in flight.
    changes: u64,
    /// When following may next be tried, after a failure.
    retry_at: Option<Instant>,
    starting: bool,
    listener: Option<AbortHandle>,
}

impl<K: Eq + Hash> State<K> {
    fn forget_all(&mut self) {
        self.known.clear();
        self.changes += 1;
    }
}

/// Facts of one kind (`K` names one), remembered by one instance while the events that end
/// them are heard.
pub(crate) struct Remembered<K> {
    events: Arc<dyn EventBus>,
    topic: Topic,
    /// The facts an event heard on the topic ends.
    ended_by: fn(&Event) -> Vec<K>,
    state: Mutex<State<K>>,
}

impl<K> std::fmt::Debug for Remembered<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remembered").field("topic", &self.topic).finish_non_exhaustive()
    }
}

impl<K> Drop for Remembered<K> {
    fn drop(&mut self) {
        if let Some(listener) = lock(&self.state).listener.take() {
            listener.abort();
        }
    }
}

impl<K: Copy + Eq + Hash + Send + 'static> Remembered<K> {
    /// A memory of at most `capacity` facts, each trusted `fresh_for` at most, kept correct by
    /// what is heard on `topic`: each event there ends the facts `ended_by` names.
    pub(crate) fn new(
        events: Arc<dyn EventBus>,
        topic: Topic,
        ended_by: fn(&Event) -> Vec<K>,
        capacity: usize,
        fresh_for: Duration,
    ) -> Arc<Self> {
        let state = State {
            known: ExpiringMap::new(capacity, fresh_for),
            following: None,
            changes: 0,
            retry_at: None,
            starting: false,
            listener: None,
        };
        Arc::new(Self { events, topic, ended_by, state: Mutex::new(state) })
    }

    /// Whether the fact may be trusted without asking storage.
    pub(crate) async fn lookup(self: &Arc<Self>, fact: &K) -> Lookup {
        let Some(mark) = self.events.continuity() else {
            let mut state = lock(&self.state);
            if !state.known.is_empty() {
                state.forget_all();
            }
            return Lookup::Ask(None);
        };
        let start = {
            let mut state = lock(&self.state);
            match state.following {
                Some(followed) => {
                    if followed != mark {
                        state.forget_all();
                        state.following = Some(mark);
                    }
                    if state.known.get(fact, Instant::now()).is_some() {
                        return Lookup::Known;
                    }
                    return Lookup::Ask(Some(Checkpoint { mark, changes: state.changes }));
                }
                None => {
                    let due = state.retry_at.is_none_or(|at| Instant::now() >= at);
                    let start = due && !state.starting;
                    state.starting |= start;
                    start
                }
            }
        };
        if start {
            self.follow(mark).await;
        }
        Lookup::Ask(None)
    }

    /// Remembers a fact storage just confirmed, unless something that could have ended it
    /// happened since `checkpoint` was taken.
    pub(crate) fn remember(&self, fact: K, checkpoint: Checkpoint) {
        let mut state = lock(&self.state);
        if state.following != Some(checkpoint.mark)
            || state.changes != checkpoint.changes
            || self.events.continuity() != Some(checkpoint.mark)
        {
            return;
        }
        state.known.insert(fact, (), Instant::now());
    }

    /// Forgets these facts at once (they just ended).
    pub(crate) fn forget(&self, facts: impl IntoIterator<Item = K>) {
        let mut state = lock(&self.state);
        for fact in facts {
            state.known.remove(&fact);
        }
        state.changes += 1;
    }

    /// How many facts are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.state).known.len()
    }

    /// Subscribes to the topic and starts the task that forgets what is announced there.
    async fn follow(self: &Arc<Self>, mark: u64) {
        let subscribed = self.events.subscribe(self.topic).await;
        let mut state = lock(&self.state);
        state.starting = false;
        match subscribed {
            Ok(mut events) => {
                let memory = Arc::downgrade(self);
                let listener = tokio::spawn(async move {
                    loop {
                        let received = events.recv().await;
                        let Some(memory) = Weak::upgrade(&memory) else { return };
                        match received {
                            Ok(event) => memory.forget((memory.ended_by)(&event)),
                            Err(SubscriptionError::Lagged(_)) => lock(&memory.state).forget_all(),
                            Err(SubscriptionError::Closed) => {
                                let mut state = lock(&memory.state);
                                state.forget_all();
                                state.following = None;
                                state.listener = None;
                                return;
                            }
                        }
                    }
                });
                state.forget_all();
                state.following = Some(mark);
                state.listener = Some(listener.abort_handle());
            }
            Err(error) => {
                tracing::warn!(%error, topic = ?self.topic, "cannot follow what ends remembered facts; every check asks storage");
                state.retry_at = Some(Instant::now() + RETRY_FOLLOWING);
            }
        }
    }
}

/// A mock event bus for the memories' tests: its continuity mark and one topic, both driven by
/// the test.
#[cfg(test)]
pub(crate) mod test_bus {
    use std::sync::atomic::{AtomicU64, Ordering};

    use tokio::sync::broadcast;

    use super::*;
    use crate::event::{MockEventBus, Subscription};

    /// The bus's mark as a test sets it ([`Bus::CUT_OFF`] stands for "cut off"), and the topic
    /// the memory follows (`None` once a test ended it).
    pub(crate) struct Bus {
        pub(crate) mark: Arc<AtomicU64>,
        pub(crate) announcements: Arc<Mutex<Option<broadcast::Sender<Event>>>>,
        pub(crate) subscriptions: Arc<AtomicU64>,
    }

    impl Bus {
        pub(crate) const CUT_OFF: u64 = u64::MAX;

        /// A bus whose only topic is `topic`.
        pub(crate) fn new(topic: Topic) -> (Self, Arc<dyn EventBus>) {
            let mark = Arc::new(AtomicU64::new(0));
            let subscriptions = Arc::new(AtomicU64::new(0));
            let announcements = Arc::new(Mutex::new(Some(broadcast::channel(16).0)));
            let mut bus = MockEventBus::new();
            let seen = mark.clone();
            bus.expect_continuity().returning(move || {
                let mark = seen.load(Ordering::SeqCst);
                (mark != Self::CUT_OFF).then_some(mark)
            });
            let open = announcements.clone();
            let count = subscriptions.clone();
            bus.expect_subscribe().withf(move |asked| *asked == topic).returning(move |_| {
                count.fetch_add(1, Ordering::SeqCst);
                // An ended topic gives a feed that is closed at once.
                let receiver = match &*lock(&open) {
                    Some(sender) => sender.subscribe(),
                    None => broadcast::channel(1).1,
                };
                Ok(Subscription::new(receiver))
            });
            (Self { mark, announcements, subscriptions }, Arc::new(bus))
        }

        pub(crate) fn set_mark(&self, mark: u64) {
            self.mark.store(mark, Ordering::SeqCst);
        }

        pub(crate) fn subscriptions(&self) -> u64 {
            self.subscriptions.load(Ordering::SeqCst)
        }

        pub(crate) fn announce(&self, event: Event) {
            lock(&self.announcements).as_ref().expect("topic open").send(event).expect("the memory listens");
        }

        /// Announces the event and lets the memory's listener hear it.
        pub(crate) async fn announce_heard(&self, event: Event) {
            self.announce(event);
            yield_to_tasks().await;
        }

        /// Ends the topic: its feed closes.
        pub(crate) async fn end_topic(&self) {
            drop(lock(&self.announcements).take());
            yield_to_tasks().await;
        }
    }

    pub(crate) async fn yield_to_tasks() {
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expiring_map_forgets_after_its_lifetime_and_sweeps_when_due() {
        let start = Instant::now();
        let lifetime = Duration::from_secs(10);
        let mut map = ExpiringMap::new(2, lifetime);
        assert!(map.insert("a", 1, start));
        assert!(map.insert("b", 2, start));
        assert!(!map.insert("c", 3, start), "full of live entries");
        assert!(map.insert("a", 4, start), "a key held may be replaced");
        assert_eq!(map.get(&"a", start + lifetime / 2), Some(&4));
        assert_eq!(map.get(&"a", start + lifetime), None, "expired");
        assert_eq!(map.len(), 2, "not swept before a sweep is due");
        assert!(map.insert("c", 3, start + lifetime));
        assert_eq!(map.len(), 1, "the expired ones were swept out");
    }
}
