//! Picks the adapters the configuration names and builds the ports the domain services need.
//! The only place that knows every adapter crate.

use std::sync::Arc;

use convo_crypto::{Argon2PasswordHasher, JwtTokenCodec};
use convo_domain::{
    EventBus, FallbackRateLimiter, MessageCache, MessageRepository, OutageLog, PasswordHasher, Presence,
    Probe, RateLimiter, RoomRepository, SessionStore, TicketStore, TokenCodec, UserRepository,
};
use convo_memory::{
    InMemoryEventBus, InMemoryMessageCache, InMemoryPresence, InMemoryRateLimiter, InMemorySessionStore,
    InMemoryTicketStore,
};
use convo_redis::{
    RedisConnection, RedisEventBus, RedisMessageCache, RedisPresence, RedisProbe, RedisRateLimiter,
    RedisSessionStore, RedisSettings, RedisTicketStore,
};

use crate::{Config, StartError};

/// Every port, implemented by the adapters the configuration chose.
pub struct Adapters {
    pub users: Arc<dyn UserRepository>,
    pub rooms: Arc<dyn RoomRepository>,
    pub messages: Arc<dyn MessageRepository>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub tokens: Arc<dyn TokenCodec>,
    pub sessions: Arc<dyn SessionStore>,
    pub tickets: Arc<dyn TicketStore>,
    pub limiter: Arc<dyn RateLimiter>,
    pub cache: Arc<dyn MessageCache>,
    pub events: Arc<dyn EventBus>,
    pub presence: Arc<dyn Presence>,
    /// What `/ready` checks.
    pub probes: Vec<Arc<dyn Probe>>,
}

/// The adapters of the stateful ports other than storage.
struct Shared {
    sessions: Arc<dyn SessionStore>,
    tickets: Arc<dyn TicketStore>,
    limiter: Arc<dyn RateLimiter>,
    cache: Arc<dyn MessageCache>,
    events: Arc<dyn EventBus>,
    presence: Arc<dyn Presence>,
    probe: Option<Arc<dyn Probe>>,
}

/// Connects storage (applying migrations) and builds the rest: with `REDIS_URL` set, the Redis
/// adapters every instance shares; unset, the in-process adapters of a single instance.
pub async fn build(config: &Config) -> Result<Adapters, StartError> {
    let shared = match &config.redis_url {
        Some(url) => redis(url, &config.redis_key_prefix).await?,
        None => in_process(),
    };
    let store = convo_sql::connect(&config.database_url).await?;
    store.migrate().await?;
    let store = Arc::new(store);
    let mut probes: Vec<Arc<dyn Probe>> = vec![store.clone()];
    probes.extend(shared.probe);
    Ok(Adapters {
        users: store.clone(),
        rooms: store.clone(),
        messages: store.clone(),
        hasher: Arc::new(Argon2PasswordHasher::new()),
        tokens: Arc::new(JwtTokenCodec::new(config.jwt_secret_bytes())),
        sessions: shared.sessions,
        tickets: shared.tickets,
        limiter: shared.limiter,
        cache: shared.cache,
        events: shared.events,
        presence: shared.presence,
        probes,
    })
}

/// One Redis for every instance: its connection pool, one subscriber connection for events,
/// and a background heartbeat for presence. While Redis is unreachable, rate limits are counted
/// by an in-process limiter, so each instance enforces the budget on its own rather than
/// letting everything through or refusing everything.
async fn redis(url: &str, prefix: &str) -> Result<Shared, StartError> {
    let redis = RedisConnection::connect(RedisSettings::new(url, prefix)).await?;
    tracing::info!(prefix, "sessions, rate limits, cache, events and presence on Redis");
    Ok(Shared {
        sessions: Arc::new(RedisSessionStore::new(redis.clone())),
        tickets: Arc::new(RedisTicketStore::new(redis.clone())),
        limiter: Arc::new(FallbackRateLimiter::new(
            Arc::new(RedisRateLimiter::new(redis.clone())),
            Arc::new(InMemoryRateLimiter::new()),
            OutageLog::new(
                "Redis unreachable: rate limits are counted per instance until it returns",
                "Redis reachable again: rate limits are shared across instances",
            ),
        )),
        cache: Arc::new(RedisMessageCache::new(redis.clone())),
        events: Arc::new(RedisEventBus::new(redis.clone()).await?),
        presence: Arc::new(RedisPresence::new(redis.clone())),
        probe: Some(Arc::new(RedisProbe::new(redis))),
    })
}

fn in_process() -> Shared {
    Shared {
        sessions: Arc::new(InMemorySessionStore::new()),
        tickets: Arc::new(InMemoryTicketStore::new()),
        limiter: Arc::new(InMemoryRateLimiter::new()),
        cache: Arc::new(InMemoryMessageCache::default()),
        events: Arc::new(InMemoryEventBus::default()),
        presence: Arc::new(InMemoryPresence::new()),
        probe: None,
    }
}
