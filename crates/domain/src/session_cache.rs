//! A short in-process memory of sessions known to be alive, so that a busy client's requests do
//! not each cost a round trip to the [`SessionStore`](crate::SessionStore).
//!
//! It is a [`Remembered`] memory of principals (a session together with the user it belongs
//! to), so a session is trusted only while nothing can have ended it unseen:
//! - every instance announces the sessions it ends on [`Topic::Sessions`], and this cache
//!   follows that topic from the moment it is first used; an announcement (or a local logout)
//!   forgets the sessions at once;
//! - the event bus's [`EventBus::continuity`] mark must be the one the session was checked
//!   under: while the bus is cut off from the other instances nothing is trusted, and once it
//!   is back everything remembered before is dropped, since an announcement may have been
//!   missed meanwhile;
//! - a check that raced an announcement is not remembered;
//! - an entry lives [`FRESH_FOR`] at most (less for short sessions), after which the store is
//!   asked again, which also slides the session's expiry as every request would.
//!
//! The memory is bounded: past [`CAPACITY`] live entries a new session is simply not
//! remembered, and stale ones are dropped as time passes.

use std::sync::Arc;
use std::time::Duration;

use crate::event::{Event, EventBus, Topic};
pub(crate) use crate::remembered::Lookup;
use crate::remembered::Remembered;
use crate::session::Principal;

/// How long a session checked against the store is trusted without asking again.
pub(crate) const FRESH_FOR: Duration = Duration::from_secs(5);
/// Sessions remembered at most.
pub(crate) const CAPACITY: usize = 32_768;

/// The remembered sessions of one instance.
pub(crate) type SessionCache = Remembered<Principal>;

/// A cache over `events`, for sessions that end after `session_ttl` unused: an entry never
/// outlives half of that.
pub(crate) fn session_cache(events: Arc<dyn EventBus>, session_ttl: Duration) -> Arc<SessionCache> {
    Remembered::new(events, Topic::Sessions, ended_sessions, CAPACITY, FRESH_FOR.min(session_ttl / 2))
}

/// The principals a revocation ends.
fn ended_sessions(event: &Event) -> Vec<Principal> {
    match event {
        Event::SessionsRevoked { user_id, sessions } => {
            sessions.iter().map(|&session_id| Principal { user_id: *user_id, session_id }).collect()
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{SessionId, UserId};
    use crate::remembered::test_bus::Bus;

    async fn revoke(bus: &Bus, principal: &Principal) {
        bus.announce_heard(Event::SessionsRevoked {
            user_id: principal.user_id,
            sessions: vec![principal.session_id],
        })
        .await;
    }

    fn principal() -> Principal {
        Principal { user_id: UserId::generate(), session_id: SessionId::generate() }
    }

    /// Looks the principal up and, if asked to check, plays a store that finds it alive.
    async fn check(cache: &Arc<SessionCache>, principal: &Principal) -> Lookup {
        let lookup = cache.lookup(principal).await;
        if let Lookup::Ask(Some(checkpoint)) = lookup {
            cache.remember(*principal, checkpoint);
        }
        lookup
    }

    async fn following_cache() -> (Bus, Arc<SessionCache>) {
        let (bus, events) = Bus::new(Topic::Sessions);
        let cache = session_cache(events, Duration::from_secs(3600));
        assert_eq!(cache.lookup(&principal()).await, Lookup::Ask(None), "the first use starts following");
        assert_eq!(bus.subscriptions(), 1);
        (bus, cache)
    }

    #[tokio::test(start_paused = true)]
    async fn a_checked_session_is_trusted_until_it_is_no_longer_fresh() {
        let (_bus, cache) = following_cache().await;
        let ada = principal();
        assert!(matches!(check(&cache, &ada).await, Lookup::Ask(Some(_))));
        assert_eq!(check(&cache, &ada).await, Lookup::Known);

        tokio::time::advance(FRESH_FOR).await;
        assert!(matches!(check(&cache, &ada).await, Lookup::Ask(Some(_))), "the store is asked again");
        assert_eq!(check(&cache, &ada).await, Lookup::Known);
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
        revoke(&bus, &ada).await;
        assert!(matches!(cache.lookup(&ada).await, Lookup::Ask(Some(_))));
        assert_eq!(cache.lookup(&bob).await, Lookup::Known);
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_that_raced_a_revocation_is_not_remembered() {
        let (bus, cache) = following_cache().await;
        let ada = principal();
        let Lookup::Ask(Some(checkpoint)) = cache.lookup(&ada).await else { panic!("asks the store") };
        // The store answered "alive", but the session ended before the answer was remembered.
        revoke(&bus, &ada).await;
        cache.remember(ada, checkpoint);
        assert!(matches!(cache.lookup(&ada).await, Lookup::Ask(Some(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_trusted_while_the_bus_is_cut_off_nor_after_it_is_back() {
        let (bus, cache) = following_cache().await;
        let ada = principal();
        check(&cache, &ada).await;

        bus.set_mark(Bus::CUT_OFF);
        assert_eq!(cache.lookup(&ada).await, Lookup::Ask(None), "cut off: ask, and remember nothing");
        bus.set_mark(1);
        assert!(matches!(cache.lookup(&ada).await, Lookup::Ask(Some(_))), "back under a new mark: ask again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_mark_drops_what_was_checked_under_the_old_one() {
        let (bus, cache) = following_cache().await;
        let ada = principal();
        check(&cache, &ada).await;
        bus.set_mark(7);
        assert!(matches!(check(&cache, &ada).await, Lookup::Ask(Some(_))));
        assert_eq!(check(&cache, &ada).await, Lookup::Known);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lagging_listener_forgets_everything() {
        let (bus, cache) = following_cache().await;
        let ada = principal();
        check(&cache, &ada).await;
        for _ in 0..40 {
            bus.announce(Event::SessionsRevoked { user_id: UserId::generate(), sessions: Vec::new() });
        }
        crate::remembered::test_bus::yield_to_tasks().await;
        assert!(matches!(cache.lookup(&ada).await, Lookup::Ask(Some(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn when_the_topic_ends_nothing_is_trusted_until_it_is_followed_again() {
        let (bus, cache) = following_cache().await;
        let ada = principal();
        check(&cache, &ada).await;
        bus.end_topic().await;
        assert_eq!(cache.lookup(&ada).await, Lookup::Ask(None));
        assert_eq!(bus.subscriptions(), 2, "following is tried again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_ended_here_is_forgotten_at_once() {
        let (_bus, cache) = following_cache().await;
        let ada = principal();
        check(&cache, &ada).await;
        cache.forget([ada]);
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
        assert_eq!(cache.lookup(&late).await, Lookup::Known);
    }

    #[tokio::test(start_paused = true)]
    async fn short_sessions_are_trusted_for_half_their_life_at_most() {
        let (_bus, events) = Bus::new(Topic::Sessions);
        let cache = session_cache(events, Duration::from_secs(2));
        cache.lookup(&principal()).await;
        let ada = principal();
        check(&cache, &ada).await;
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(matches!(cache.lookup(&ada).await, Lookup::Ask(Some(_))));
    }
}
