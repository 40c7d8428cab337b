//! Presence across instances. Each instance counts its own connections per user in process and
//! registers, per user with at least one, an entry in the user's sorted set in Redis, scored by
//! an expiry it renews with a heartbeat. A user is online while any instance's entry is alive,
//! so the users of an instance that crashed go offline when its entries expire (within
//! [`RedisPresence::DEFAULT_TTL`]).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, LazyLock, Weak};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use convo_domain::{DomainResult, OutageLog, Presence, UserId};
use fred::prelude::{KeysInterface, SortedSetsInterface};
use fred::types::scripts::Script;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::connection::{RedisConnection, int};
use crate::session::{millis, unix_ms};

const WHAT: &str = "presence";
const SHARDS: usize = 64;

/// Registers this instance for the user; 1 if no other instance had a live entry.
static CONNECT: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local others = redis.call('ZCARD', KEYS[1])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then others = others - 1 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if others == 0 then return 1 end
return 0
",
    )
});

/// Removes this instance's entry; 1 if no instance has a live one left.
static DISCONNECT: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) == 0 then return 1 end
return 0
",
    )
});

/// [`Presence`] on Redis. While Redis is unreachable it answers from this instance's own
/// connections (first and last connection here, users connected here), and the heartbeat puts
/// every local user back into Redis once it answers again.
#[derive(Debug)]
pub struct RedisPresence {
    shared: Arc<Shared>,
    heartbeat: JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    redis: RedisConnection,
    /// This adapter's entry in each user's set.
    instance: String,
    ttl: Duration,
    hasher: RandomState,
    /// Live connections per user on this instance; each shard's lock is held across its Redis
    /// call, so one instance's registrations of a user reach Redis in order.
    shards: Vec<Mutex<HashMap<UserId, u32>>>,
    outage: OutageLog,
}

impl RedisPresence {
    /// How long an instance's entries outlive its last heartbeat.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(45);

    pub fn new(redis: RedisConnection) -> Self {
        Self::with_ttl(redis, Self::DEFAULT_TTL)
    }

    /// Entries live `ttl` (at least a second) after each heartbeat, sent every third of it.
    pub fn with_ttl(redis: RedisConnection, ttl: Duration) -> Self {
        let ttl = ttl.max(Duration::from_secs(1));
        let shared = Arc::new(Shared {
            redis,
            instance: uuid::Uuid::new_v4().to_string(),
            ttl,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            outage: OutageLog::new(
                "Redis unreachable: presence shows this instance's users only",
                "Redis reachable again: presence is shared across instances",
            ),
        });
        let heartbeat = tokio::spawn(heartbeat(Arc::downgrade(&shared), ttl / 3));
        Self { shared, heartbeat }
    }
}

impl Drop for RedisPresence {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

impl Shared {
    fn shard(&self, user: &UserId) -> &Mutex<HashMap<UserId, u32>> {
        let index = (self.hasher.hash_one(user) % SHARDS as u64) as usize;
        &self.shards[index]
    }

    /// Runs a registration script; `None` (logged once per outage) if Redis did not answer.
    async fn register(&self, script: &Script, user: UserId) -> Option<bool> {
        let now = unix_ms(SystemTime::now());
        let expiry = now.saturating_add(millis(self.ttl));
        let args =
            vec![self.instance.clone(), now.to_string(), expiry.to_string(), millis(self.ttl).to_string()];
        match self.redis.script(WHAT, script, vec![self.redis.keys().presence(user)], args).await {
            Ok(answer) => {
                self.outage.recovered();
                Some(int(&answer) == Some(1))
            }
            Err(error) => {
                self.outage.failed(&error);
                None
            }
        }
    }
}

/// Renews this instance's entries for every user connected here, shard by shard.
async fn heartbeat(shared: Weak<Shared>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        for shard in &shared.shards {
            let users = shard.lock().await;
            if users.is_empty() {
                continue;
            }
            let Ok(client) = shared.redis.client(WHAT) else { break };
            let expiry = unix_ms(SystemTime::now()).saturating_add(millis(shared.ttl)) as f64;
            let ttl = i64::try_from(millis(shared.ttl)).unwrap_or(i64::MAX);
            let pipeline = client.pipeline();
            for user in users.keys() {
                let key = shared.redis.keys().presence(*user);
                let _: Result<(), _> = pipeline
                    .zadd(key.clone(), None, None, false, false, (expiry, shared.instance.clone()))
                    .await;
                let _: Result<(), _> = pipeline.pexpire(key, ttl, None).await;
            }
            if let Err(error) = shared.redis.run(WHAT, pipeline.all::<()>()).await {
                tracing::debug!(%error, "presence heartbeat failed");
                break;
            }
        }
    }
}

#[async_trait]
impl Presence for RedisPresence {
    async fn connected(&self, user: UserId) -> DomainResult<bool> {
        let mut users = self.shared.shard(&user).lock().await;
        let count = users.entry(user).or_insert(0);
        *count = count.saturating_add(1);
        if *count > 1 {
            return Ok(false);
        }
        Ok(self.shared.register(&CONNECT, user).await.unwrap_or(true))
    }

    async fn disconnected(&self, user: UserId) -> DomainResult<bool> {
        let mut users = self.shared.shard(&user).lock().await;
        let Some(count) = users.get_mut(&user) else { return Ok(false) };
        *count -= 1;
        if *count > 0 {
            return Ok(false);
        }
        users.remove(&user);
        Ok(self.shared.register(&DISCONNECT, user).await.unwrap_or(true))
    }

    async fn online_among(&self, users: &[UserId]) -> DomainResult<HashSet<UserId>> {
        let unique: Vec<UserId> = users.iter().copied().collect::<HashSet<_>>().into_iter().collect();
        if unique.is_empty() {
            return Ok(HashSet::new());
        }
        let now = unix_ms(SystemTime::now()) as f64;
        let answer = match self.shared.redis.client(WHAT) {
            Ok(client) => {
                let pipeline = client.pipeline();
                for user in &unique {
                    let _: Result<(), _> =
                        pipeline.zcount(self.shared.redis.keys().presence(*user), now, f64::INFINITY).await;
                }
                self.shared.redis.run(WHAT, pipeline.all::<Vec<i64>>()).await
            }
            Err(error) => Err(error),
        };
        match answer {
            Ok(counts) if counts.len() == unique.len() => Ok(unique
                .into_iter()
                .zip(counts)
                .filter(|(_, live)| *live > 0)
                .map(|(user, _)| user)
                .collect()),
            _ => {
                // Redis did not answer: the users connected to this instance.
                let mut online = HashSet::new();
                for user in unique {
                    if self.shared.shard(&user).lock().await.contains_key(&user) {
                        online.insert(user);
                    }
                }
                Ok(online)
            }
        }
    }
}
