//! Picks the adapters the configuration names and builds the ports the domain services need.
//! The only place that knows every adapter crate.

use std::sync::Arc;

use convo_crypto::{Argon2PasswordHasher, JwtTokenCodec};
use convo_domain::{
    EventBus, MessageCache, MessageRepository, PasswordHasher, Presence, Probe, RateLimiter, RoomRepository,
    SessionStore, TicketStore, TokenCodec, UserRepository,
};
use convo_memory::{
    InMemoryEventBus, InMemoryMessageCache, InMemoryPresence, InMemoryRateLimiter, InMemorySessionStore,
    InMemoryTicketStore,
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

/// Connects storage (applying migrations) and builds the rest: with `REDIS_URL` unset, the
/// in-process adapters of a single instance.
pub async fn build(config: &Config) -> Result<Adapters, StartError> {
    if config.redis_url.is_some() {
        return Err(StartError::RedisUnsupported);
    }
    let store = convo_sql::connect(&config.database_url).await?;
    store.migrate().await?;
    let store = Arc::new(store);
    Ok(Adapters {
        users: store.clone(),
        rooms: store.clone(),
        messages: store.clone(),
        hasher: Arc::new(Argon2PasswordHasher::new()),
        tokens: Arc::new(JwtTokenCodec::new(config.jwt_secret_bytes())),
        sessions: Arc::new(InMemorySessionStore::new()),
        tickets: Arc::new(InMemoryTicketStore::new()),
        limiter: Arc::new(InMemoryRateLimiter::new()),
        cache: Arc::new(InMemoryMessageCache::default()),
        events: Arc::new(InMemoryEventBus::default()),
        presence: Arc::new(InMemoryPresence::new()),
        probes: vec![store],
    })
}
