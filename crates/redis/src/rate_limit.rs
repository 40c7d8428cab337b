//! Fixed-window rate limits counted in Redis by one atomic script per attempt, so the budget is
//! exact across every instance.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use convo_domain::{DomainResult, RateDecision, RateLimit, RateLimiter};
use fred::prelude::Value;
use fred::types::scripts::Script;

use crate::connection::{RedisConnection, int, malformed};
use crate::session::millis;

const WHAT: &str = "rate limiter";

/// Takes a point if the window has one left: `{1, remaining}`, else `{0, ms until it closes}`.
/// The window opens (the key gets its TTL) with the first point.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r"
local points, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used < points then
  used = redis.call('INCR', KEYS[1])
  if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], window) end
  return {1, points - used}
end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  redis.call('PEXPIRE', KEYS[1], window)
  left = window
end
return {0, left}
",
    )
});

/// The same answer without taking anything.
static PEEK: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r"
local points = tonumber(ARGV[1])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used < points then return {1, points - used} end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then left = tonumber(ARGV[2]) end
return {0, left}
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

    async fn decide(&self, script: &Script, key: &str, limit: RateLimit) -> DomainResult<RateDecision> {
        let window = millis(limit.window).max(1);
        let args = vec![limit.points.to_string(), window.to_string()];
        let answer = self.redis.script(WHAT, script, vec![self.redis.keys().rate(key)], args).await?;
        let Value::Array(parts) = answer else { return Err(malformed("rate limit")) };
        let (Some(allowed), Some(number)) = (parts.first().and_then(int), parts.get(1).and_then(int)) else {
            return Err(malformed("rate limit"));
        };
        Ok(if allowed == 1 {
            RateDecision::Allowed { remaining: u32::try_from(number).unwrap_or(0) }
        } else {
            let left = Duration::from_millis(u64::try_from(number).unwrap_or(1).max(1));
            RateDecision::Limited { retry_after: left.min(limit.window) }
        })
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn acquire(&self, key: &str, limit: RateLimit) -> DomainResult<RateDecision> {
        if let Some(refused) = limit.refusal_without_budget() {
            return Ok(refused);
        }
        self.decide(&ACQUIRE, key, limit).await
    }

    async fn peek(&self, key: &str, limit: RateLimit) -> DomainResult<RateDecision> {
        if let Some(refused) = limit.refusal_without_budget() {
            return Ok(refused);
        }
        self.decide(&PEEK, key, limit).await
    }
}
