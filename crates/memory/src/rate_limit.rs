//! Fixed-window rate limits in a process-local map, sharded by key.

use std::collections::HashMap;

use async_trait::async_trait;
use convo_domain::{DomainResult, RateDecision, RateLimit, RateLimiter};
use tokio::time::Instant;

use crate::shard::{Expiring, SHARDS, Shards, Sweep, deadline};

/// [`RateLimiter`] for a single instance: each key's window opens at its first point and closes
/// `window` later. Closed windows are swept out as the map grows, so memory follows the keys
/// active within their window.
#[derive(Debug)]
pub struct InMemoryRateLimiter {
    shards: Shards<LimitShard>,
}

impl InMemoryRateLimiter {
    pub fn new() -> Self {
        Self { shards: Shards::new(SHARDS, LimitShard::new) }
    }

    /// Windows held, closed ones not yet swept included.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.shards.each().map(|shard| shard.windows.len()).sum()
    }
}

impl Default for InMemoryRateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    closes_at: Instant,
    used: u32,
}

impl Window {
    fn is_open(&self, now: Instant) -> bool {
        self.closes_at > now
    }

    /// The answer for a key whose open window has `used` points taken.
    fn decision(&self, limit: RateLimit, now: Instant) -> RateDecision {
        if self.used < limit.points {
            RateDecision::Allowed { remaining: limit.points - self.used }
        } else {
            RateDecision::Limited { retry_after: self.closes_at - now }
        }
    }
}

#[derive(Debug)]
struct LimitShard {
    windows: HashMap<String, Window>,
    sweep: Sweep,
}

impl LimitShard {
    fn new() -> Self {
        Self { windows: HashMap::new(), sweep: Sweep::new() }
    }
}

/// A window is dead once it has closed.
impl Expiring for LimitShard {
    fn held(&self) -> usize {
        self.windows.len()
    }

    fn drop_expired(&mut self, now: Instant) {
        self.windows.retain(|_, window| window.is_open(now));
        self.windows.shrink_to(self.windows.len() * 2);
    }

    fn schedule(&mut self) -> &mut Sweep {
        &mut self.sweep
    }
}

#[async_trait]
impl RateLimiter for InMemoryRateLimiter {
    async fn acquire(&self, key: &str, limit: RateLimit) -> DomainResult<RateDecision> {
        if let Some(refused) = limit.refusal_without_budget() {
            return Ok(refused);
        }
        let now = Instant::now();
        let mut shard = self.shards.of(key);
        shard.sweep_if_due(now);
        if let Some(window) = shard.windows.get_mut(key)
            && window.is_open(now)
        {
            let decision = window.decision(limit, now);
            if let RateDecision::Allowed { .. } = decision {
                window.used += 1;
                return Ok(RateDecision::Allowed { remaining: limit.points - window.used });
            }
            return Ok(decision);
        }
        let window = Window { closes_at: deadline(now, limit.window), used: 1 };
        shard.windows.insert(key.to_owned(), window);
        Ok(RateDecision::Allowed { remaining: limit.points - 1 })
    }

    async fn peek(&self, key: &str, limit: RateLimit) -> DomainResult<RateDecision> {
        if let Some(refused) = limit.refusal_without_budget() {
            return Ok(refused);
        }
        let now = Instant::now();
        let shard = self.shards.of(key);
        Ok(match shard.windows.get(key) {
            Some(window) if window.is_open(now) => window.decision(limit, now),
            _ => RateDecision::Allowed { remaining: limit.points },
        })
    }

    async fn release(&self, key: &str) -> DomainResult<()> {
        let now = Instant::now();
        let mut shard = self.shards.of(key);
        if let Some(window) = shard.windows.get_mut(key)
            && window.is_open(now)
        {
            window.used = window.used.saturating_sub(1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::advance;

    use super::*;

    const LIMIT: RateLimit = RateLimit { points: 5, window: Duration::from_secs(10) };

    #[tokio::test(start_paused = true)]
    async fn closed_windows_are_swept_as_the_map_grows() {
        let limiter = InMemoryRateLimiter::new();
        for n in 0..5_000 {
            limiter.acquire(&format!("old:{n}"), LIMIT).await.expect("acquire");
        }
        assert_eq!(limiter.held(), 5_000);
        advance(LIMIT.window * 2).await;
        for n in 0..5_000 {
            limiter.acquire(&format!("new:{n}"), LIMIT).await.expect("acquire");
        }
        assert!(limiter.held() < 6_000, "held {} windows", limiter.held());
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_limiter_is_swept_after_a_period() {
        let limiter = InMemoryRateLimiter::new();
        for n in 0..200 {
            limiter.acquire(&format!("old:{n}"), LIMIT).await.expect("acquire");
        }
        advance(Duration::from_secs(61)).await;
        for n in 0..200 {
            limiter.acquire(&format!("new:{n}"), LIMIT).await.expect("acquire");
        }
        assert_eq!(limiter.held(), 200);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_exactly_the_time_left() {
        let limiter = InMemoryRateLimiter::new();
        let limit = RateLimit { points: 1, window: Duration::from_secs(10) };
        limiter.acquire("k", limit).await.expect("acquire");
        advance(Duration::from_secs(3)).await;
        let expected = RateDecision::Limited { retry_after: Duration::from_secs(7) };
        assert_eq!(limiter.acquire("k", limit).await.expect("acquire"), expected);
        assert_eq!(limiter.peek("k", limit).await.expect("peek"), expected);
        advance(Duration::from_secs(7)).await;
        assert_eq!(
            limiter.acquire("k", limit).await.expect("acquire"),
            RateDecision::Allowed { remaining: 0 }
        );
    }

    #[tokio::test]
    async fn no_points_means_always_limited() {
        let limiter = InMemoryRateLimiter::new();
        let limit = RateLimit { points: 0, window: Duration::from_secs(10) };
        let refused = RateDecision::Limited { retry_after: limit.window };
        assert_eq!(limiter.acquire("k", limit).await.expect("acquire"), refused);
        assert_eq!(limiter.peek("k", limit).await.expect("peek"), refused);
        assert_eq!(limiter.held(), 0);
    }
}
