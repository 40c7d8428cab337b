//! Fixed-window rate limits counted in Redis by one atomic script per attempt (or per batch of
//! attempts, whatever their keys), so the budget is exact across every instance.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use convo_domain::{DomainResult, RateDecision, RateLimit, RateLimiter};
use fred::prelude::{ClientLike, Value};
use fred::types::scripts::Script;

use crate::connection::{RedisConnection, int, malformed};
use crate::session::millis;

const WHAT: &str = "rate limiter";

/// For each key `KEYS[i]`, takes up to `ARGV[2 + i]` points, as many as its window has left,
/// answering `{granted, remaining, ms until it closes}` per key, one after the other. A window
/// opens (the key gets its TTL) with its first point. One call serves a whole batch of sends,
/// so Redis runs one script, not one per author.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r"
local points, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local answer = {}
for i, key in ipairs(KEYS) do
  local wanted = tonumber(ARGV[2 + i])
  local used = tonumber(redis.call('GET', key) or '0')
  local granted = math.min(wanted, math.max(0, points - used))
  if granted > 0 then
    used = redis.call('INCRBY', key, granted)
  end
  local left = redis.call('PTTL', key)
  if left < 0 then
    redis.call('PEXPIRE', key, window)
    left = window
  end
  answer[#answer + 1] = granted
  answer[#answer + 1] = points - used
  answer[#answer + 1] = left
end
return answer
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

/// Gives back one point of an open window; the key keeps its TTL, and a key with no point taken
/// (or none at all) is left alone.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r"
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used > 0 then redis.call('DECR', KEYS[1]) end
return 0
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
        let answer = self.redis.script(WHAT, &ACQUIRE, keys, Self::args(limit, wanted)).await?;
        Grant::parse_all(answer, limit, 1)?.pop().ok_or_else(|| malformed("rate limit"))
    }

    /// Takes `wanted` points of each key, in one script call per cluster slot (one call in all
    /// on a single Redis), all sent at once. Grants come back in the order of `wanted`.
    async fn take_many(&self, wanted: &[(&str, u32)], limit: RateLimit) -> DomainResult<Vec<Grant>> {
        let keys: Vec<String> = wanted.iter().map(|(key, _)| self.redis.keys().rate(key)).collect();
        let clustered = self.redis.client(WHAT)?.is_clustered();
        let mut groups: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        for (at, key) in keys.iter().enumerate() {
            let slot = if clustered { fred::util::redis_keyslot(key.as_bytes()) } else { 0 };
            groups.entry(slot).or_default().push(at);
        }
        let calls = groups.values().map(|members| {
            let group_keys = members.iter().map(|&at| keys[at].clone()).collect();
            let mut args = vec![limit.points.to_string(), millis(limit.window).max(1).to_string()];
            args.extend(members.iter().map(|&at| wanted[at].1.to_string()));
            async move {
                let answer = self.redis.script(WHAT, &ACQUIRE, group_keys, args).await?;
                Grant::parse_all(answer, limit, members.len())
            }
        });
        let answers = futures_util::future::try_join_all(calls).await?;
        let mut grants = vec![None; keys.len()];
        for (members, answer) in groups.values().zip(answers) {
            for (&at, grant) in members.iter().zip(answer) {
                grants[at] = Some(grant);
            }
        }
        grants.into_iter().map(|grant| grant.ok_or_else(|| malformed("rate limit"))).collect()
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
    /// One grant from a `{granted, remaining, ms left}` answer.
    fn parse(answer: Value, limit: RateLimit) -> DomainResult<Self> {
        let Value::Array(parts) = answer else { return Err(malformed("rate limit")) };
        Self::from_parts(&parts, limit)
    }

    /// `count` grants from answers laid end to end.
    fn parse_all(answer: Value, limit: RateLimit, count: usize) -> DomainResult<Vec<Self>> {
        let Value::Array(parts) = answer else { return Err(malformed("rate limit")) };
        if parts.len() != count * 3 {
            return Err(malformed("rate limit"));
        }
        parts.chunks_exact(3).map(|triple| Self::from_parts(triple, limit)).collect()
    }

    fn from_parts(parts: &[Value], limit: RateLimit) -> DomainResult<Self> {
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

    /// One script call for the whole batch (per cluster slot): one round trip, one script run.
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

        let grants = self.take_many(&wanted, limit).await?;

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

    async fn release(&self, key: &str) -> DomainResult<()> {
        let keys = vec![self.redis.keys().rate(key)];
        self.redis.script(WHAT, &RELEASE, keys, Vec::new()).await?;
        Ok(())
    }
}
