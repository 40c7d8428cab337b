//! The contract of [`RateLimiter`]: a fixed window per key that opens at the first point taken
//! and closes `window` later, whatever happens meanwhile. `acquire` answers the points left
//! after taking one; `peek` answers the points left now, taking none; `release` gives one back
//! to the open window, never beyond its points. A refusal's `retry_after` is the time until the
//! window closes: more than zero, at most `window`.

use std::sync::Arc;
use std::time::Duration;

use convo_domain::{RateDecision, RateLimit, RateLimiter, UserId};
use tokio::time::{Instant, sleep};

use crate::fixture::Case;

/// A window no body outlives.
const LONG: Duration = Duration::from_secs(60);
/// A window bodies wait out.
const SHORT: Duration = Duration::from_secs(1);
/// What a remote store may round a `retry_after` by.
const ROUNDING: Duration = Duration::from_millis(20);

/// Every body of this module, by name.
pub fn cases<L: RateLimiter + ?Sized + 'static>() -> Vec<Case<L>> {
    crate::rate_limiter_contract! { @bodies cases }
}

/// A key no other body or run uses.
fn fresh_key() -> String {
    format!("contract:{}", UserId::generate())
}

async fn acquire<L: RateLimiter + ?Sized>(limiter: &L, key: &str, limit: RateLimit) -> RateDecision {
    limiter.acquire(key, limit).await.expect("acquire")
}

async fn peek<L: RateLimiter + ?Sized>(limiter: &L, key: &str, limit: RateLimit) -> RateDecision {
    limiter.peek(key, limit).await.expect("peek")
}

/// The `retry_after` of a refusal, checked to lie in (0, window].
fn retry_after(decision: RateDecision, limit: RateLimit) -> Duration {
    match decision {
        RateDecision::Limited { retry_after } => {
            assert!(retry_after > Duration::ZERO, "retry_after {retry_after:?} must be positive");
            assert!(retry_after <= limit.window, "retry_after {retry_after:?} must not exceed the window");
            retry_after
        }
        allowed @ RateDecision::Allowed { .. } => panic!("expected Limited, got {allowed:?}"),
    }
}

pub async fn points_are_allowed_then_limited<L: RateLimiter + ?Sized>(limiter: Arc<L>) {
    let key = fresh_key();
    let limit = RateLimit { points: 3, window: LONG };
    for remaining in [2, 1, 0] {
        assert_eq!(acquire(&*limiter, &key, limit).await, RateDecision::Allowed { remaining });
    }
    for _ in 0..3 {
        retry_after(acquire(&*limiter, &key, limit).await, limit);
    }
}

pub async fn acquire_each_takes_a_point_per_entry_first_come_first_served<L: RateLimiter + ?Sized>(
    limiter: Arc<L>,
) {
    let (busy, quiet, spent) = (fresh_key(), fresh_key(), fresh_key());
    let limit = RateLimit { points: 2, window: LONG };
    acquire(&*limiter, &spent, limit).await;
    acquire(&*limiter, &spent, limit).await;

    let keys = [&busy, &quiet, &busy, &spent, &busy].map(|key| key.to_owned());
    let decisions = limiter.acquire_each(&keys, limit).await.expect("acquire_each");
    let allowed: Vec<bool> =
        decisions.iter().map(|decision| matches!(decision, RateDecision::Allowed { .. })).collect();
    assert_eq!(allowed, [true, true, true, false, false], "{decisions:?}");
    retry_after(decisions[3], limit);
    retry_after(decisions[4], limit);
    retry_after(acquire(&*limiter, &busy, limit).await, limit);
    assert_eq!(acquire(&*limiter, &quiet, limit).await, RateDecision::Allowed { remaining: 0 });
    assert_eq!(limiter.acquire_each(&[], limit).await.expect("nothing to acquire"), []);
}

pub async fn keys_are_independent<L: RateLimiter + ?Sized>(limiter: Arc<L>) {
    let (spent, fresh) = (fresh_key(), fresh_key());
    let limit = RateLimit { points: 2, window: LONG };
    acquire(&*limiter, &spent, limit).await;
    acquire(&*limiter, &spent, limit).await;
    retry_after(acquire(&*limiter, &spent, limit).await, limit);
    assert_eq!(acquire(&*limiter, &fresh, limit).await, RateDecision::Allowed { remaining: 1 });
    retry_after(acquire(&*limiter, &spent, limit).await, limit);
}

pub async fn peek_never_consumes<L: RateLimiter + ?Sized>(limiter: Arc<L>) {
    let key = fresh_key();
    let limit = RateLimit { points: 2, window: LONG };
    for _ in 0..5 {
        assert_eq!(
            peek(&*limiter, &key, limit).await,
            RateDecision::Allowed { remaining: 2 },
            "nothing taken yet"
        );
    }
    assert_eq!(acquire(&*limiter, &key, limit).await, RateDecision::Allowed { remaining: 1 });
    for _ in 0..5 {
        assert_eq!(peek(&*limiter, &key, limit).await, RateDecision::Allowed { remaining: 1 });
    }
    assert_eq!(acquire(&*limiter, &key, limit).await, RateDecision::Allowed { remaining: 0 });
    retry_after(peek(&*limiter, &key, limit).await, limit);
    retry_after(acquire(&*limiter, &key, limit).await, limit);
}

pub async fn retry_after_counts_down_to_the_window_end<L: RateLimiter + ?Sized>(limiter: Arc<L>) {
    let key = fresh_key();
    let limit = RateLimit { points: 1, window: SHORT };
    acquire(&*limiter, &key, limit).await;
    // The window opened no later than this, so it closes no later than `opened + window`.
    let opened = Instant::now();
    sleep(Duration::from_millis(400)).await;
    let asked = Instant::now();
    let wait = retry_after(acquire(&*limiter, &key, limit).await, limit);
    let bound = limit.window.saturating_sub(asked.duration_since(opened)) + ROUNDING;
    assert!(wait <= bound, "retry_after {wait:?} must be the time left in the window (at most {bound:?})");
    let peeked = retry_after(peek(&*limiter, &key, limit).await, limit);
    assert!(peeked <= bound, "peek's retry_after {peeked:?} must be the time left too (at most {bound:?})");
}

pub async fn limited_attempts_do_not_extend_the_window<L: RateLimiter + ?Sized>(limiter: Arc<L>) {
    let key = fresh_key();
    let limit = RateLimit { points: 1, window: SHORT };
    acquire(&*limiter, &key, limit).await;
    for _ in 0..5 {
        sleep(Duration::from_millis(100)).await;
        retry_after(acquire(&*limiter, &key, limit).await, limit);
    }
    // 1.2 s after the first point: the window opened then has closed.
    sleep(Duration::from_millis(700)).await;
    assert_eq!(acquire(&*limiter, &key, limit).await, RateDecision::Allowed { remaining: 0 });
}

pub async fn window_reopens_after_it_elapses<L: RateLimiter + ?Sized>(limiter: Arc<L>) {
    let key = fresh_key();
    let limit = RateLimit { points: 2, window: SHORT };
    acquire(&*limiter, &key, limit).await;
    acquire(&*limiter, &key, limit).await;
    let wait = retry_after(acquire(&*limiter, &key, limit).await, limit);
    sleep(wait + Duration::from_millis(100)).await;
    assert_eq!(peek(&*limiter, &key, limit).await, RateDecision::Allowed { remaining: 2 }, "a new budget");
    assert_eq!(acquire(&*limiter, &key, limit).await, RateDecision::Allowed { remaining: 1 });
    assert_eq!(acquire(&*limiter, &key, limit).await, RateDecision::Allowed { remaining: 0 });
    retry_after(acquire(&*limiter, &key, limit).await, limit);
}

pub async fn concurrent_acquires_allow_exactly_the_points<L: RateLimiter + ?Sized + 'static>(
    limiter: Arc<L>,
) {
    let key = fresh_key();
    let limit = RateLimit { points: 5, window: LONG };
    let attempts: Vec<_> = (0..20)
        .map(|_| {
            let (limiter, key) = (Arc::clone(&limiter), key.clone());
            tokio::spawn(async move { acquire(&*limiter, &key, limit).await })
        })
        .collect();
    let mut remaining = Vec::new();
    let mut limited = 0;
    for attempt in attempts {
        match attempt.await.expect("an acquire task panicked") {
            RateDecision::Allowed { remaining: left } => remaining.push(left),
            refusal => {
                retry_after(refusal, limit);
                limited += 1;
            }
        }
    }
    remaining.sort_unstable();
    assert_eq!(remaining, vec![0, 1, 2, 3, 4], "exactly 5 allowed, each with its own count");
    assert_eq!(limited, 15);
}

pub async fn release_gives_back_a_point_of_the_open_window<L: RateLimiter + ?Sized>(limiter: Arc<L>) {
    let key = fresh_key();
    let limit = RateLimit { points: 2, window: LONG };
    acquire(&*limiter, &key, limit).await;
    acquire(&*limiter, &key, limit).await;
    let before = retry_after(acquire(&*limiter, &key, limit).await, limit);
    limiter.release(&key).await.expect("release");
    assert_eq!(peek(&*limiter, &key, limit).await, RateDecision::Allowed { remaining: 1 });
    assert_eq!(acquire(&*limiter, &key, limit).await, RateDecision::Allowed { remaining: 0 });
    let after = retry_after(acquire(&*limiter, &key, limit).await, limit);
    assert!(after <= before + ROUNDING, "a release keeps the window's end: {after:?} after {before:?}");

    for _ in 0..4 {
        limiter.release(&key).await.expect("release");
    }
    assert_eq!(
        peek(&*limiter, &key, limit).await,
        RateDecision::Allowed { remaining: 2 },
        "releasing more than was taken never grows the budget"
    );
    let untouched = fresh_key();
    limiter.release(&untouched).await.expect("release of a key never taken");
    assert_eq!(peek(&*limiter, &untouched, limit).await, RateDecision::Allowed { remaining: 2 });
}
