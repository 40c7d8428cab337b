//! # Convo's Redis adapters
//!
//! Outbound adapters of the hexagon for several instances sharing one Redis (or Redis Cluster):
//! sessions and WebSocket tickets, rate limits, the recent-message cache, room events over
//! pub/sub and presence, each behind the domain's port and each held to the same contract
//! suites (`convo-contract`) as the in-process adapters of `convo-memory`.
//!
//! Everything goes through one [`RedisConnection`]: a pool of connections with a timeout on
//! every command and reconnection with exponential backoff, plus one subscriber connection per
//! [`RedisEventBus`]. Every key starts with the configured prefix (`REDIS_KEY_PREFIX`); every
//! script touches the keys of one hash tag only, so the same code runs on a cluster. The key
//! layout is described in [`keys`]. The domain's types carry no serialisation: what is stored
//! and published is this crate's own JSON, ids as plain UUIDs.
//!
//! While Redis cannot be reached, each adapter fails in the way the README's failure policy
//! describes: sessions and tickets refuse with `Unavailable` (fail closed), the rate limiter
//! reports `Unavailable` (the server wraps it in the domain's `FallbackRateLimiter` over an
//! in-process limiter), the cache reports `Unavailable` (history reads storage), presence falls
//! back to this instance's own view, and events are delivered locally only. The crate depends on
//! the domain alone, never on another adapter.

mod cache;
mod connection;
mod events;
mod health;
pub mod keys;
mod presence;
mod rate_limit;
mod session;
mod ticket;
mod wire;

pub use cache::RedisMessageCache;
pub use connection::{RedisConnection, RedisError, RedisSettings};
pub use events::{RedisEventBus, SWEEP_EVERY};
pub use health::RedisProbe;
pub use presence::RedisPresence;
pub use rate_limit::RedisRateLimiter;
pub use session::RedisSessionStore;
pub use ticket::RedisTicketStore;
pub mod testing;
