//! # Convo's domain
//!
//! The centre of the hexagon: users, rooms and messages, the rules that make a value valid, and
//! the ports, all async traits used as `Arc<dyn Port>`:
//!
//! - the inbound ports, the use cases the api crate calls: [`AuthService`] and [`ChatService`],
//!   implemented here by [`AuthUseCases`] and [`ChatUseCases`];
//! - the outbound ports those use cases need ([`AuthPorts`], [`ChatPorts`]), which the adapter
//!   crates implement: storage, sessions, rate limits, the message cache, events, presence,
//!   password hashing and tokens.
//!
//! Nothing here knows HTTP, SQL or Redis, nor any wire format: no serde, no JWT claims, no JSON
//! field names, no transport. Validation happens once, at the edge, by parsing raw input into
//! value types (`Email::parse`, `RoomName::parse`, ...) that cannot hold a bad value; every
//! refusal is a [`DomainError`] whose variant stands for one of the API's stable error codes (the
//! api crate spells them), a failed validation naming the input as a [`Field`]. Ports speak
//! domain types: a token carries an [`AccessGrant`], events arrive through a [`Subscription`].
//!
//! Decorators that only compose ports live here too, so that any service built on the domain
//! can reuse them: [`FallbackRateLimiter`] answers from a second limiter while the first cannot.
//! So do the few pieces every side of the hexagon shares: [`OutageLog`] (an outage logged once),
//! [`lock`] (a std mutex that survives a poisoning panic) and [`redact_url`] (URLs fit for logs).
//!
//! With the `mocks` feature, every port, inbound or outbound, has a mockall mock
//! (`auth::MockAuthService`, `chat::MockChatService`, `user::MockUserRepository`, ...); with the
//! `testing` feature, `testing` holds what the adapters' test support shares.

pub mod auth;
pub mod chat;
pub mod clock;
pub mod error;
pub mod event;
pub mod health;
pub mod id;
pub mod message;
pub mod outage;
pub mod presence;
pub mod rate_limit;
pub mod redact;
pub mod room;
pub mod session;
pub mod sync;
#[cfg(feature = "testing")]
pub mod testing;
pub mod user;
mod value;

pub use auth::{
    AuthPorts, AuthService, AuthSettings, AuthUseCases, CONNECT_TICKET_TTL, ConnectTicket, IssuedToken,
};
pub use chat::{ChatPorts, ChatService, ChatUseCases, MAX_RESUMED_MESSAGES, Resumption, RoomRef};
pub use clock::{Clock, SystemClock};
pub use error::{BoxError, DomainError, DomainResult, Field, ValidationError};
pub use event::{Event, EventBus, Subscription, SubscriptionError, Topic};
pub use health::Probe;
pub use id::{MessageId, RoomId, SessionId, UserId};
pub use message::{
    CachedPage, ClientMessageId, FillTicket, HistoryPage, HistoryQuery, Message, MessageCache,
    MessageContent, MessageRepository, NewMessage, Posted, RECENT_MESSAGES,
};
pub use outage::OutageLog;
pub use presence::Presence;
pub use rate_limit::{FallbackRateLimiter, RateDecision, RateLimit, RateLimiter};
pub use redact::redact_url;
pub use room::{
    DirectoryQuery, Member, Membership, NewRoom, Room, RoomName, RoomRepository, RoomSummary, name_key,
};
pub use session::{AccessGrant, Principal, Session, SessionStore, TicketStore, TokenCodec};
pub use sync::lock;
pub use user::{
    Credentials, Email, Password, PasswordHash, PasswordHasher, User, UserRef, UserRepository, Username,
};
