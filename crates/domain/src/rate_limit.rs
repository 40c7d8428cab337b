//! Rate limits: a budget of points per fixed window, counted per key across every instance,
//! and a limiter that falls back on another while the first cannot answer.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::DomainResult;
use crate::outage::OutageLog;

/// `points` per `window`; the window opens at the first point taken and closes `window` later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// How many actions one window allows; 0 refuses every one.
    pub points: u32,
    /// How long a window lasts.
    pub window: Duration,
}

impl RateLimit {
    /// The answer to every request when the budget has no points at all: refused for a whole
    /// window, without counting anything. `None` when there is a budget to count.
    pub fn refusal_without_budget(self) -> Option<RateDecision> {
        (self.points == 0).then_some(RateDecision::Limited { retry_after: self.window })
    }
}

/// Whether an action may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// The action may go ahead.
    Allowed {
        /// How many more points the current window allows.
        remaining: u32,
    },
    /// The budget is spent; the action must wait.
    Limited {
        /// How long until the window closes and the budget is whole again.
        retry_after: Duration,
    },
}

/// Counts points per key.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Takes one point from the key's budget, or says how long until the window closes.
    async fn acquire(&self, key: &str, limit: RateLimit) -> DomainResult<RateDecision>;
    /// Says whether a point could be taken, without taking it.
    async fn peek(&self, key: &str, limit: RateLimit) -> DomainResult<RateDecision>;
    /// Gives back one point taken from the key's open window, for an action reserved before it
    /// could be judged that turned out not to count. The window keeps its end; a key with no
    /// open window or no point taken is left as it is, so the budget never grows past its points.
    async fn release(&self, key: &str) -> DomainResult<()>;
    /// One [`Self::acquire`] per entry, in order: a key that repeats takes a point per entry, so
    /// its first entries are allowed while the window has points. Answered together; an adapter
    /// may make it one round trip.
    async fn acquire_each(&self, keys: &[String], limit: RateLimit) -> DomainResult<Vec<RateDecision>> {
        let mut decisions = Vec::with_capacity(keys.len());
        for key in keys {
            decisions.push(self.acquire(key, limit).await?);
        }
        Ok(decisions)
    }
}

/// A [`RateLimiter`] that asks `primary` and, while it fails, answers from `fallback` instead
/// (a shared limiter backed by a local one: each instance then enforces the budget on its own,
/// rather than letting everything through or refusing everything). It goes back to `primary`
/// as soon as that answers again. Every error of a limiter is a failure to answer, so every
/// error falls back.
pub struct FallbackRateLimiter {
    primary: Arc<dyn RateLimiter>,
    fallback: Arc<dyn RateLimiter>,
    outage: OutageLog,
}

impl FallbackRateLimiter {
    /// `outage` says what logs when `primary` starts and stops failing.
    pub fn new(primary: Arc<dyn RateLimiter>, fallback: Arc<dyn RateLimiter>, outage: OutageLog) -> Self {
        Self { primary, fallback, outage }
    }

    /// Whether the last decision came from the fallback.
    pub fn is_degraded(&self) -> bool {
        self.outage.is_out()
    }

    /// Notes how the primary's call went; `None` if it failed.
    fn answered<T>(&self, outcome: DomainResult<T>) -> Option<T> {
        match outcome {
            Ok(decision) => {
                self.outage.recovered();
                Some(decision)
            }
            Err(error) => {
                self.outage.failed(&error);
                tracing::debug!(%error, "rate limit from the fallback");
                None
            }
        }
    }
}

impl std::fmt::Debug for FallbackRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackRateLimiter").field("outage", &self.outage).finish_non_exhaustive()
    }
}

#[async_trait]
impl RateLimiter for FallbackRateLimiter {
    async fn acquire(&self, key: &str, limit: RateLimit) -> DomainResult<RateDecision> {
        match self.answered(self.primary.acquire(key, limit).await) {
            Some(decision) => Ok(decision),
            None => self.fallback.acquire(key, limit).await,
        }
    }

    async fn acquire_each(&self, keys: &[String], limit: RateLimit) -> DomainResult<Vec<RateDecision>> {
        match self.answered(self.primary.acquire_each(keys, limit).await) {
            Some(decisions) => Ok(decisions),
            None => self.fallback.acquire_each(keys, limit).await,
        }
    }

    async fn peek(&self, key: &str, limit: RateLimit) -> DomainResult<RateDecision> {
        match self.answered(self.primary.peek(key, limit).await) {
            Some(decision) => Ok(decision),
            None => self.fallback.peek(key, limit).await,
        }
    }

    async fn release(&self, key: &str) -> DomainResult<()> {
        match self.answered(self.primary.release(key).await) {
            Some(()) => Ok(()),
            None => self.fallback.release(key).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use mockall::predicate::eq;

    use super::*;
    use crate::error::DomainError;

    const LIMIT: RateLimit = RateLimit { points: 5, window: Duration::from_secs(10) };
    const ALLOWED: RateDecision = RateDecision::Allowed { remaining: 4 };
    const LIMITED: RateDecision = RateDecision::Limited { retry_after: Duration::from_secs(3) };

    fn unreachable() -> DomainError {
        DomainError::unavailable("rate limiter", "connection refused")
    }

    fn limiter(primary: MockRateLimiter, fallback: MockRateLimiter) -> FallbackRateLimiter {
        FallbackRateLimiter::new(Arc::new(primary), Arc::new(fallback), OutageLog::new("down", "back"))
    }

    #[test]
    fn only_a_budget_of_no_points_is_refused_without_counting() {
        let none = RateLimit { points: 0, ..LIMIT };
        assert_eq!(none.refusal_without_budget(), Some(RateDecision::Limited { retry_after: LIMIT.window }));
        assert_eq!(LIMIT.refusal_without_budget(), None);
    }

    #[tokio::test]
    async fn the_primary_answers_while_it_can_and_the_fallback_is_left_alone() {
        let mut primary = MockRateLimiter::new();
        primary.expect_acquire().with(eq("k"), eq(LIMIT)).times(1).returning(|_, _| Ok(ALLOWED));
        primary.expect_peek().with(eq("k"), eq(LIMIT)).times(1).returning(|_, _| Ok(LIMITED));
        let mut fallback = MockRateLimiter::new();
        fallback.expect_acquire().never();
        fallback.expect_peek().never();
        let limiter = limiter(primary, fallback);

        assert_eq!(limiter.acquire("k", LIMIT).await.unwrap(), ALLOWED);
        assert_eq!(limiter.peek("k", LIMIT).await.unwrap(), LIMITED);
        assert!(!limiter.is_degraded());
    }

    #[tokio::test]
    async fn a_batch_is_counted_by_the_primary_or_else_wholly_by_the_fallback() {
        let keys = vec!["a".to_owned(), "b".to_owned()];
        let mut primary = MockRateLimiter::new();
        let mut answers = vec![Ok(vec![ALLOWED, LIMITED]), Err(unreachable())].into_iter();
        primary.expect_acquire_each().times(2).returning(move |_, _| answers.next().unwrap());
        let mut fallback = MockRateLimiter::new();
        fallback.expect_acquire_each().times(1).returning(|_, _| Ok(vec![LIMITED, ALLOWED]));
        let limiter = limiter(primary, fallback);

        assert_eq!(limiter.acquire_each(&keys, LIMIT).await.unwrap(), [ALLOWED, LIMITED]);
        assert!(!limiter.is_degraded());
        assert_eq!(limiter.acquire_each(&keys, LIMIT).await.unwrap(), [LIMITED, ALLOWED]);
        assert!(limiter.is_degraded());
    }

    #[tokio::test]
    async fn a_failing_primary_is_answered_for_by_the_fallback() {
        let mut primary = MockRateLimiter::new();
        primary.expect_acquire().returning(|_, _| Err(unreachable()));
        primary.expect_peek().returning(|_, _| Err(DomainError::internal("unexpected answer")));
        let mut fallback = MockRateLimiter::new();
        fallback.expect_acquire().with(eq("k"), eq(LIMIT)).times(1).returning(|_, _| Ok(LIMITED));
        fallback.expect_peek().with(eq("k"), eq(LIMIT)).times(1).returning(|_, _| Ok(ALLOWED));
        let limiter = limiter(primary, fallback);

        assert_eq!(limiter.acquire("k", LIMIT).await.unwrap(), LIMITED);
        assert_eq!(limiter.peek("k", LIMIT).await.unwrap(), ALLOWED);
        assert!(limiter.is_degraded());
    }

    #[tokio::test]
    async fn the_primary_is_used_again_as_soon_as_it_recovers() {
        let mut primary = MockRateLimiter::new();
        let mut calls = 0;
        primary.expect_acquire().times(4).returning(move |_, _| {
            calls += 1;
            if calls <= 2 { Err(unreachable()) } else { Ok(ALLOWED) }
        });
        let mut fallback = MockRateLimiter::new();
        fallback.expect_acquire().times(2).returning(|_, _| Ok(LIMITED));
        let limiter = limiter(primary, fallback);

        assert_eq!(limiter.acquire("k", LIMIT).await.unwrap(), LIMITED);
        assert!(limiter.is_degraded());
        assert_eq!(limiter.acquire("k", LIMIT).await.unwrap(), LIMITED);
        assert_eq!(limiter.acquire("k", LIMIT).await.unwrap(), ALLOWED);
        assert!(!limiter.is_degraded(), "the outage ended with the first answer");
        assert_eq!(limiter.acquire("k", LIMIT).await.unwrap(), ALLOWED);
    }

    #[tokio::test]
    async fn an_error_of_the_fallback_reaches_the_caller() {
        let mut primary = MockRateLimiter::new();
        primary.expect_acquire().returning(|_, _| Err(unreachable()));
        let mut fallback = MockRateLimiter::new();
        fallback.expect_acquire().returning(|_, _| Err(unreachable()));
        let limiter = limiter(primary, fallback);

        let error = limiter.acquire("k", LIMIT).await.unwrap_err();
        assert!(matches!(error, DomainError::Unavailable { .. }), "{error:?}");
    }
}
