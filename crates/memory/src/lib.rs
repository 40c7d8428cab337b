//! # Convo's in-process adapters
//!
//! Outbound adapters of the hexagon for a single instance without Redis: sessions, rate limits,
//! the message cache, room events and presence, each kept in process memory behind the domain's
//! port. They are faithful, not toys: the same contract suites (`convo-contract`) that the Redis
//! adapters must pass run against them, and every map is bounded, because expired sessions,
//! closed rate windows, idle rooms and abandoned event channels are dropped as they pile up.
//!
//! Events fan out on a tokio broadcast channel per topic, handed to subscribers as the domain's
//! `Subscription`.
//!
//! State is split into shards, each behind a std `Mutex` that is held for a few map operations
//! and never across an await, and each swept of its dead entries on one shared schedule.

mod cache;
mod events;
mod presence;
mod rate_limit;
mod session;
mod shard;
mod ticket;

pub use cache::InMemoryMessageCache;
pub use events::InMemoryEventBus;
pub use presence::InMemoryPresence;
pub use rate_limit::InMemoryRateLimiter;
pub use session::InMemorySessionStore;
pub use ticket::InMemoryTicketStore;
