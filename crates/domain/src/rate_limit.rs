//! Rate limits: a budget of points per fixed window, counted per key across every instance.

use std::time::Duration;

use async_trait::async_trait;

use crate::error::DomainResult;

/// `points` per `window`; the window opens at the first point taken and closes `window` later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub points: u32,
    pub window: Duration,
}

/// Whether an action may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed { remaining: u32 },
    Limited { retry_after: Duration },
}

/// Counts points per key.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Takes one point from the key's budget, or says how long until the window closes.
    async fn acquire(&self, key: &str, limit: RateLimit) -> DomainResult<RateDecision>;
    /// Says whether a point could be taken, without taking it.
    async fn peek(&self, key: &str, limit: RateLimit) -> DomainResult<RateDecision>;
}
