//! Fixed-window rate limits counted in Redis by one atomic script per key and attempt (or per
//! key and batch of attempts), so the budget is exact across every instance.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use convo_domain::{DomainResult, RateDecision, RateLimit, RateLimiter};
use fred::prelude::Value;
use fred::types::scripts::Script;

use crate::connection::{RedisConnection, int, malformed};
use crate::session::millis;

const WHAT: &str = "rate limiter";

/// Takes up to `ARGV[3]` points, as many as the window has left: `{granted, remaining, ms until
/// it closes}`. The window opens (the key gets its TTL) with the first point.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r"
local points, window, wanted = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local granted = math.min(wanted, math.max(0, points - used))
if granted > 0 then
  used = redis.call('INCRBY', KEYS[1], granted)
end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  redis.call('PEXPIRE', KEYS[1], window)
  left = window
end
return {granted, points - used, left}
",
    )
});

/// The answer [`ACQUIRE`] would give for one point, without taking anything.
static PEEK: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r"
local points, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local left = redis.call('PTTL', KEYS[1])
if left < 0 then left = window end
if used < points then return {1, points - used, left} end
return {0, points - used, left}
",
    )
});

/// [`RateLimiter`] on Redis. While Redis is unreachable it answers `Unavailable`; the server
/// wraps it in a [`FallbackRateLimiter`](convo_domain::FallbackRateLimiter) to count on an
/// in-process limiter meanwhile.
#[derive(Debug)]
pub struct RedisRateLimiter {
    redis: RedisConnection,
}

impl RedisRateLimiter {
    pub fn new(redis: RedisConnection) -> Self {
        Self { redis }
    }

    fn args(limit: RateLimit, wanted: u32) -> Vec<String> {
        vec![limit.points.to_string(), millis(limit.window).max(1).to_string(), wanted.to_string()]
    }

    async fn take(&self, key: &str, limit: RateLimit, wanted: u32) -> DomainResult<Grant> {
        let keys = vec![self.redis.keys().rate(key)];
        Grant::parse(self.redis.script(WHAT, &ACQUIRE, keys, Self::args(limit, wanted)).await?, limit)
    }
}

/// What one key's window granted.
#[derive(Debug, Clone, Copy)]
struct Grant {
    granted: u32,
    remaining: u32,
    retry_after: Duration,
}

impl Grant {
    fn parse(answer: Value, limit: RateLimit) -> DomainResult<Self> {
        let Value::Array(parts) = answer else { return Err(malformed("rate limit")) };
        let number = |index: usize| parts.get(index).and_then(int).ok_or_else(|| malformed("rate limit"));
        let left = Duration::from_millis(u64::try_from(number(2)?).unwrap_or(1).max(1));
        Ok(Self {
            granted: u32::try_from(number(0)?).unwrap_or(0),
            remaining: u32::try_from(number(1)?).unwrap_or(0),
            retry_after: left.min(limit.window),
        })
    }

    fn first(self) -> RateDecision {
        if self.granted > 0 {
            RateDecision::Allowed { remaining: self.remaining }
        } else {
            RateDecision::Limited { retry_after: self.retry_after }
        }
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn acquire(&self, key: &str, limit: RateLimit) -> DomainResult<RateDecision> {
        if let Some(refused) = limit.refusal_without_budget() {
            return Ok(refused);
        }
        Ok(self.take(key, limit, 1).await?.first())
    }

    /// One script per distinct key, all sent at once: one round trip's wait for a whole batch.
    async fn acquire_each(&self, keys: &[String], limit: RateLimit) -> DomainResult<Vec<RateDecision>> {
        if let Some(refused) = limit.refusal_without_budget() {
            return Ok(vec![refused; keys.len()]);
        }
        let mut wanted: Vec<(&str, u32)> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for key in keys {
            let at = *index.entry(key.as_str()).or_insert_with(|| {
                wanted.push((key.as_str(), 0));
                wanted.len() - 1
            });
            wanted[at].1 += 1;
        }

        let takes = wanted.iter().map(|(key, points)| self.take(key, limit, *points));
        let grants = futures_util::future::try_join_all(takes).await?;

        // Each key's points go to its first entries, in order.
        let mut left: Vec<u32> = grants.iter().map(|grant| grant.granted).collect();
        Ok(keys
            .iter()
            .map(|key| {
                let at = index[key.as_str()];
                if left[at] > 0 {
                    left[at] -= 1;
                    RateDecision::Allowed { remaining: grants[at].remaining }
                } else {
                    RateDecision::Limited { retry_after: grants[at].retry_after }
                }
            })
            .collect())
    }

    async fn peek(&self, key: &str, limit: RateLimit) -> DomainResult<RateDecision> {
        if let Some(refused) = limit.refusal_without_budget() {
            return Ok(refused);
        }
        let keys = vec![self.redis.keys().rate(key)];
        Ok(Grant::parse(self.redis.script(WHAT, &PEEK, keys, Self::args(limit, 1)).await?, limit)?.first())
    }
}
