//! A short in-process memory of sessions known to be alive, so that a busy client's requests do
//! not each cost a round trip to the [`SessionStore`](crate::SessionStore).
//!
//! A remembered session is trusted only while nothing can have ended it unseen:
//! - every instance announces the sessions it ends on [`Topic::Sessions`], and this cache
//!   follows that topic from the moment it is first used; an announcement (or a local logout)
//!   forgets the sessions at once;
//! - the event bus's [`EventBus::continuity`] mark must be the one the session was checked
//!   under: while the bus is cut off from the other instances nothing is trusted, and once it
//!   is back everything remembered before is dropped, since an announcement may have been
//!   missed meanwhile;
//! - a check that raced an announcement is not remembered (a revocation counter taken before
//!   the store is asked must be unchanged after);
//! - an entry lives [`FRESH_FOR`] at most (less for short sessions), after which the store is
//!   asked again, which also slides the session's expiry as every request would.
//!
//! The memory is bounded: past [`CAPACITY`] live entries a new session is simply not
//! remembered, and stale ones are dropped as the map fills.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::event::{Event, EventBus, SubscriptionError, Topic};
use crate::id::{SessionId, UserId};
use crate::session::Principal;
use crate::sync::lock;

/// How long a session checked against the store is trusted without asking again.
pub(crate) const FRESH_FOR: Duration = Duration::from_secs(5);
/// Sessions remembered at most.
pub(crate) const CAPACITY: usize = 32_768;
/// How long to wait before following the sessions topic again after it could not be followed.
const RETRY_FOLLOWING: Duration = Duration::from_secs(1);

/// What a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The session was checked recently and nothing has ended it since.
    Alive,
    /// Ask the store; if it says alive, [`SessionCache::remember`] this, which holds what the
    /// cache looked like before the store was asked (`None` when it cannot remember now).
    Ask(Option<Checkpoint>),
}

/// The state a store check started from: a check is remembered only if neither the bus's mark
/// nor the count of revocations heard moved while it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    mark: u64,
    changes: u64,
}

#[derive(Debug)]
struct Known {
    user_id: UserId,
    until: Instant,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<SessionId, Known>,
    /// The bus's mark while the sessions topic is followed; `None` while it is not.
    following: Option<u64>,
    /// Bumped by whatever may end a session unseen by a check in flight.
    changes: u64,
    /// When following may next be tried, after a failure.
    retry_at: Option<Instant>,
    starting: bool,
    listener: Option<AbortHandle>,
}

impl State {
    fn forget_all(&mut self) {
        self.entries.clear();
        self.changes += 1;
    }
}

/// The remembered sessions of one instance.
pub(crate) struct SessionCache {
    events: Arc<dyn EventBus>,
    fresh_for: Duration,
    state: Mutex<State>,
}

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCache").field("fresh_for", &self.fresh_for).finish_non_exhaustive()
    }
}

impl Drop for SessionCache {
    fn drop(&mut self) {
        if let Some(listener) = lock(&self.state).listener.take() {
            listener.abort();
        }
    }
}

impl SessionCache {
    /// A cache over `events`, for sessions that end after `session_ttl` unused: an entry never
    /// outlives half of that.
    pub(crate) fn new(events: Arc<dyn EventBus>, session_ttl: Duration) -> Arc<Self> {
        Arc::new(Self { events, fresh_for: FRESH_FOR.min(session_ttl / 2), state: Mutex::default() })
    }

    /// Whether the principal's session may be trusted without asking the store.
    pub(crate) async fn lookup(self: &Arc<Self>, principal: &Principal) -> Lookup {
        let Some(mark) = self.events.continuity() else {
            let mut state = lock(&self.state);
            if !state.entries.is_empty() {
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
                    let now = Instant::now();
                    if let Some(known) = state.entries.get(&principal.session_id)
                        && known.user_id == principal.user_id
                        && known.until > now
                    {
                        return Lookup::Alive;
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

    /// Remembers a session the store just found alive for `principal`, unless something that
    /// could have ended it happened since `checkpoint` was taken.
    pub(crate) fn remember(&self, principal: &Principal, checkpoint: Checkpoint) {
        let now = Instant::now();
        let mut state = lock(&self.state);
        if state.following != Some(checkpoint.mark)
            || state.changes != checkpoint.changes
            || self.events.continuity() != Some(checkpoint.mark)
        {
            return;
        }
        if state.entries.len() >= CAPACITY {
            state.entries.retain(|_, known| known.until > now);
            if state.entries.len() >= CAPACITY {
                return;
            }
        }
        state
            .entries
            .insert(principal.session_id, Known { user_id: principal.user_id, until: now + self.fresh_for });
    }

    /// Forgets these sessions at once (they just ended).
    pub(crate) fn forget(&self, sessions: &[SessionId]) {
        let mut state = lock(&self.state);
        for session in sessions {
            state.entries.remove(session);
        }
        state.changes += 1;
    }

    /// How many sessions are remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.state).entries.len()
    }

    /// Subscribes to the sessions topic and starts the task that forgets what is announced.
    async fn follow(self: &Arc<Self>, mark: u64) {
        let subscribed = self.events.subscribe(Topic::Sessions).await;
        let mut state = lock(&self.state);
        state.starting = false;
        match subscribed {
            Ok(mut events) => {
                let cache = Arc::downgrade(self);
                let listener = tokio::spawn(async move {
                    loop {
                        let received = events.recv().await;
                        let Some(cache) = Weak::upgrade(&cache) else { return };
                        match received {
                            Ok(Event::SessionsRevoked { sessions, .. }) => cache.forget(&sessions),
                            Ok(_) => {}
                            Err(SubscriptionError::Lagged(_)) => lock(&cache.state).forget_all(),
                            Err(SubscriptionError::Closed) => {
                                let mut state = lock(&cache.state);
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
                tracing::warn!(%error, "cannot follow ended sessions; every request asks the session store");
                state.retry_at = Some(Instant::now() + RETRY_FOLLOWING);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use tokio::sync::broadcast;

    use super::*;
    use crate::event::{MockEventBus, Subscription};

    /// The bus's mark as a test sets it (`u64::MAX` stands for "cut off"), and the sessions
    /// topic the cache follows (`None` once a test ended it).
    struct Bus {
        mark: Arc<AtomicU64>,
        revocations: Arc<Mutex<Option<broadcast::Sender<Event>>>>,
        subscriptions: Arc<AtomicU64>,
    }

    impl Bus {
        fn new() -> (Self, Arc<dyn EventBus>) {
            let mark = Arc::new(AtomicU64::new(0));
            let subscriptions = Arc::new(AtomicU64::new(0));
            let revocations = Arc::new(Mutex::new(Some(broadcast::channel(16).0)));
            let mut bus = MockEventBus::new();
            let seen = mark.clone();
            bus.expect_continuity().returning(move || {
                let mark = seen.load(Ordering::SeqCst);
                (mark != u64::MAX).then_some(mark)
            });
            let topic = revocations.clone();
            let count = subscriptions.clone();
            bus.expect_subscribe().withf(|topic| *topic == Topic::Sessions).returning(move |_| {
                count.fetch_add(1, Ordering::SeqCst);
                // An ended topic gives a feed that is closed at once.
                let receiver = match &*lock(&topic) {
                    Some(sender) => sender.subscribe(),
                    None => broadcast::channel(1).1,
                };
                Ok(Subscription::new(receiver))
            });
            (Self { mark, revocations, subscriptions }, Arc::new(bus))
        }

        fn announce(&self, event: Event) {
            lock(&self.revocations).as_ref().expect("topic open").send(event).expect("the cache listens");
        }

        async fn revoke(&self, principal: &Principal) {
            self.announce(Event::SessionsRevoked {
                user_id: principal.user_id,
                sessions: vec![principal.session_id],
            });
            yield_to_tasks().await;
        }
    }

    async fn yield_to_tasks() {
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
    }

    fn principal() -> Principal {
        Principal { user_id: UserId::generate(), session_id: SessionId::generate() }
    }

    /// Looks the principal up and, if asked to check, plays a store that finds it alive.
    async fn check(cache: &Arc<SessionCache>, principal: &Principal) -> Lookup {
        let lookup = cache.lookup(principal).await;
        if let Lookup::Ask(Some(checkpoint)) = lookup {
            cache.remember(principal, checkpoint);
        }
        lookup
    }

    async fn following_cache() -> (Bus, Arc<SessionCache>) {
        let (bus, events) = Bus::new();
        let cache = SessionCache::new(events, Duration::from_secs(3600));
        assert_eq!(cache.lookup(&principal()).await, Lookup::Ask(None), "the first use starts following");
        assert_eq!(bus.subscriptions.load(Ordering::SeqCst), 1);
        (bus, cache)
    }

    #[tokio::test(start_paused = true)]
    async fn a_checked_session_is_trusted_until_it_is_no_longer_fresh() {
        let (_bus, cache) = following_cache().await;
        let ada = principal();
        assert!(matches!(check(&cache, &ada).await, Lookup::Ask(Some(_))));
        assert_eq!(check(&cache, &ada).await, Lookup::Alive);

        tokio::time::advance(FRESH_FOR).await;
        assert!(matches!(check(&cache, &ada).await, Lookup::Ask(Some(_))), "the store is asked again");
        assert_eq!(check(&cache, &ada).await, Lookup::Alive);
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_is_trusted_only_for_the_user_it_was_checked_for() {
        let (_bus, cache) = following_cache().await;
        let ada = principal();
        check(&cache, &ada).await;
        let impostor = Principal { user_id: UserId::generate(), session_id: ada.session_id };
        assert!(matches!(cache.lookup(&impostor).await, Lookup::Ask(Some(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn an_announced_revocation_is_forgotten_at_once() {
        let (bus, cache) = following_cache().await;
        let (ada, bob) = (principal(), principal());
        check(&cache, &ada).await;
        check(&cache, &bob).await;
        bus.revoke(&ada).await;
        assert!(matches!(cache.lookup(&ada).await, Lookup::Ask(Some(_))));
        assert_eq!(cache.lookup(&bob).await, Lookup::Alive);
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_that_raced_a_revocation_is_not_remembered() {
        let (bus, cache) = following_cache().await;
        let ada = principal();
        let Lookup::Ask(Some(checkpoint)) = cache.lookup(&ada).await else { panic!("asks the store") };
        // The store answered "alive", but the session ended before the answer was remembered.
        bus.revoke(&ada).await;
        cache.remember(&ada, checkpoint);
        assert!(matches!(cache.lookup(&ada).await, Lookup::Ask(Some(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_trusted_while_the_bus_is_cut_off_nor_after_it_is_back() {
        let (bus, cache) = following_cache().await;
        let ada = principal();
        check(&cache, &ada).await;

        bus.mark.store(u64::MAX, Ordering::SeqCst);
        assert_eq!(cache.lookup(&ada).await, Lookup::Ask(None), "cut off: ask, and remember nothing");
        bus.mark.store(1, Ordering::SeqCst);
        assert!(matches!(cache.lookup(&ada).await, Lookup::Ask(Some(_))), "back under a new mark: ask again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_mark_drops_what_was_checked_under_the_old_one() {
        let (bus, cache) = following_cache().await;
        let ada = principal();
        check(&cache, &ada).await;
        bus.mark.store(7, Ordering::SeqCst);
        assert!(matches!(check(&cache, &ada).await, Lookup::Ask(Some(_))));
        assert_eq!(check(&cache, &ada).await, Lookup::Alive);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lagging_listener_forgets_everything() {
        let (bus, cache) = following_cache().await;
        let ada = principal();
        check(&cache, &ada).await;
        for _ in 0..40 {
            bus.announce(Event::SessionsRevoked { user_id: UserId::generate(), sessions: Vec::new() });
        }
        yield_to_tasks().await;
        assert!(matches!(cache.lookup(&ada).await, Lookup::Ask(Some(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn when_the_topic_ends_nothing_is_trusted_until_it_is_followed_again() {
        let (bus, cache) = following_cache().await;
        let ada = principal();
        check(&cache, &ada).await;
        drop(lock(&bus.revocations).take());
        yield_to_tasks().await;
        assert_eq!(cache.lookup(&ada).await, Lookup::Ask(None));
        assert_eq!(bus.subscriptions.load(Ordering::SeqCst), 2, "following is tried again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_ended_here_is_forgotten_at_once() {
        let (_bus, cache) = following_cache().await;
        let ada = principal();
        check(&cache, &ada).await;
        cache.forget(&[ada.session_id]);
        assert!(matches!(cache.lookup(&ada).await, Lookup::Ask(Some(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn the_memory_stays_within_its_bound() {
        let (_bus, cache) = following_cache().await;
        for _ in 0..CAPACITY + 100 {
            check(&cache, &principal()).await;
        }
        assert_eq!(cache.len(), CAPACITY);
        tokio::time::advance(FRESH_FOR).await;
        let late = principal();
        check(&cache, &late).await;
        assert_eq!(cache.len(), 1, "stale entries make room");
        assert_eq!(cache.lookup(&late).await, Lookup::Alive);
    }

    #[tokio::test(start_paused = true)]
    async fn short_sessions_are_trusted_for_half_their_life_at_most() {
        let (_bus, events) = Bus::new();
        let cache = SessionCache::new(events, Duration::from_secs(2));
        cache.lookup(&principal()).await;
        let ada = principal();
        check(&cache, &ada).await;
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(matches!(cache.lookup(&ada).await, Lookup::Ask(Some(_))));
    }
}
