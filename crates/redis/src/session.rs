//! Sessions in Redis: a key per session that expires after its idle lifetime, and an index of
//! each user's sessions for logout-all. A touch extends a session only when it has aged by more
//! than a few seconds, so a busy session costs one read per request, not one write. Checking
//! many sessions at once (every live connection of an instance) is one pipeline of `EXISTS`,
//! one round trip: each session key has a hash tag of its own, so on a cluster the keys are
//! spread over slots and one multi-key command could not hold them, while a pipeline sends
//! each command to the node of its key.

use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use convo_domain::{DomainError, DomainResult, Session, SessionId, SessionStore, UserId};
use fred::prelude::{KeysInterface, SortedSetsInterface, Value};
use fred::types::Expiration;
use fred::types::scripts::Script;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::connection::{RedisConnection, int, malformed};

const WHAT: &str = "sessions";

/// A session's expiry is pushed out at most this often (or each tenth of its lifetime, if less).
const EXTEND_EVERY: Duration = Duration::from_secs(5);
/// Index entries are pruned this long after the expiry they were last given, so that an
/// instance whose clock runs behind never prunes a live session.
const INDEX_GRACE: Duration = Duration::from_secs(300);

/// The session if it lives, as `{value, extended}`; extends it when it has aged enough.
static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r"
local value = redis.call('GET', KEYS[1])
if not value then return false end
local left = redis.call('PTTL', KEYS[1])
if left >= 0 and tonumber(ARGV[1]) - left >= tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  return {value, 1}
end
return {value, 0}
",
    )
});

/// Records a session in its user's index (score: expiry in ms), prunes long-dead entries and
/// keeps the index alive as long as its latest session.
static INDEX: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r"
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local now, grace = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - grace)
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] then
  redis.call('PEXPIRE', KEYS[1], math.max(1, tonumber(top[2]) - now + grace))
end
return 1
",
    )
});

/// Deletes the session if it belongs to the user: 1 if it was alive.
static REVOKE: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r"
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local ok, session = pcall(cjson.decode, value)
if not ok or session.user ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
",
    )
});

#[derive(Debug, Serialize, Deserialize)]
struct StoredSession {
    user: Uuid,
    created: DateTime<Utc>,
}

/// [`SessionStore`] on Redis, shared by every instance. Fails closed: while Redis cannot be
/// reached every call answers `Unavailable { what: "sessions" }`, never a guess.
#[derive(Debug, Clone)]
pub struct RedisSessionStore {
    redis: RedisConnection,
}

impl RedisSessionStore {
    pub fn new(redis: RedisConnection) -> Self {
        Self { redis }
    }

    async fn index(&self, user: UserId, id: SessionId, ttl: Duration) -> DomainResult<()> {
        let now = unix_ms(SystemTime::now());
        let expiry = now.saturating_add(millis(ttl));
        let args = vec![id.to_string(), expiry.to_string(), now.to_string(), millis(INDEX_GRACE).to_string()];
        self.redis.script(WHAT, &INDEX, vec![self.redis.keys().user_sessions(user)], args).await?;
        Ok(())
    }

    async fn revoke_one(&self, user: UserId, id: SessionId) -> DomainResult<bool> {
        let answer = self
            .redis
            .script(WHAT, &REVOKE, vec![self.redis.keys().session(id)], vec![user.to_string()])
            .await?;
        Ok(int(&answer) == Some(1))
    }
}

#[async_trait]
impl SessionStore for RedisSessionStore {
    async fn create(&self, session: &Session, ttl: Duration) -> DomainResult<()> {
        let value = serde_json::to_string(&StoredSession {
            user: session.user_id.as_uuid(),
            created: session.created_at,
        })
        .map_err(DomainError::internal)?;
        let key = self.redis.keys().session(session.id);
        let client = self.redis.client(WHAT)?;
        let expiry = Expiration::PX(i64::try_from(millis(ttl)).unwrap_or(i64::MAX).max(1));
        self.redis.run(WHAT, client.set::<(), _, _>(key, value, Some(expiry), None, false)).await?;
        self.index(session.user_id, session.id, ttl).await
    }

    async fn touch(&self, id: SessionId, ttl: Duration) -> DomainResult<Option<Session>> {
        let every = EXTEND_EVERY.min(ttl / 10);
        let args = vec![millis(ttl).to_string(), millis(every).to_string()];
        let answer = self.redis.script(WHAT, &TOUCH, vec![self.redis.keys().session(id)], args).await?;
        let Value::Array(parts) = answer else { return Ok(None) };
        let (Some(value), Some(extended)) = (parts.first().and_then(Value::as_string), parts.get(1)) else {
            return Err(malformed("session touch"));
        };
        let stored: StoredSession = serde_json::from_str(&value).map_err(DomainError::internal)?;
        let user_id = UserId::from(stored.user);
        if int(extended) == Some(1)
            && let Err(error) = self.index(user_id, id, ttl).await
        {
            // The session itself was extended; only logout-all's index lags behind.
            tracing::warn!(%error, "could not extend a session's index entry");
        }
        Ok(Some(Session { id, user_id, created_at: stored.created }))
    }

    async fn alive_many(&self, ids: &[SessionId]) -> DomainResult<Vec<bool>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.redis.client(WHAT)?;
        let pipeline = client.pipeline();
        for id in ids {
            // Queued, not sent: the pipeline answers for all of them below.
            let _: Result<(), _> = pipeline.exists(self.redis.keys().session(*id)).await;
        }
        let counts: Vec<i64> = self.redis.run(WHAT, pipeline.all()).await?;
        if counts.len() != ids.len() {
            return Err(malformed("session check"));
        }
        Ok(counts.into_iter().map(|count| count > 0).collect())
    }

    async fn revoke(&self, user: UserId, id: SessionId) -> DomainResult<bool> {
        let ended = self.revoke_one(user, id).await?;
        let client = self.redis.client(WHAT)?;
        self.redis
            .run(WHAT, client.zrem::<(), _, _>(self.redis.keys().user_sessions(user), id.to_string()))
            .await?;
        Ok(ended)
    }

    async fn revoke_all(&self, user: UserId) -> DomainResult<Vec<SessionId>> {
        let index = self.redis.keys().user_sessions(user);
        let client = self.redis.client(WHAT)?;
        let listed: Vec<String> =
            self.redis.run(WHAT, client.zrange(index.clone(), 0, -1, None, false, None, false)).await?;
        let mut ended = Vec::new();
        for raw in &listed {
            let Ok(uuid) = uuid::Uuid::parse_str(raw) else { continue };
            let id = SessionId::from_uuid(uuid);
            if self.revoke_one(user, id).await? {
                ended.push(id);
            }
        }
        if !listed.is_empty() {
            let client = self.redis.client(WHAT)?;
            self.redis.run(WHAT, client.zrem::<(), _, _>(index, listed)).await?;
        }
        Ok(ended)
    }
}

pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map(millis).unwrap_or(0)
}
