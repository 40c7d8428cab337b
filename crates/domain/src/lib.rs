//! # Convo's domain
//!
//! The centre of Convo's hexagon: users, rooms and messages, the rules that make a value valid,
//! the use cases, and the ports (async traits, used as `Arc<dyn Port>`) through which the use
//! cases reach the outside world. Nothing here knows HTTP, SQL or Redis, so another service can
//! embed the same rules over storage of its own: `examples/moderation_bot.rs` does exactly that
//! (`cargo run -p convo-domain --example moderation_bot`).
//!
//! ## The use cases (inbound ports)
//!
//! - [`AuthService`]: register, log in, check a token or a session, issue and redeem the
//!   single-use tickets that open a live connection, follow the session of a live connection
//!   until it ends or its token expires ([`SessionFollow`]), log out (one session or all).
//! - [`RoomService`]: create, find, join and leave rooms and list their members.
//! - [`MessageService`]: send, page, edit and delete messages. Sends to a room queue in its
//!   sequencer and are stored a batch per transaction (group commit); the sequencer, not the
//!   caller, caches and announces what it stored.
//! - [`LiveService`]: the live side of a room: resume a stream after a seq, fill a gap,
//!   subscribe to its events, typing and presence. A [`RoomStream`] over it gives a room's
//!   events in the order clients must see them (messages by seq, each edit or deletion after
//!   its message), or where to resume when that order cannot be kept.
//!
//! [`AuthUseCases`] implements the first over the outbound ports gathered in [`AuthPorts`];
//! [`ChatUseCases`] implements the other three over [`ChatPorts`]. Callers (Convo's REST and
//! WebSocket api, or your own service) depend on the traits they call, so a test of a caller
//! needs one mock per service it uses.
//!
//! ## The ports to implement (outbound ports)
//!
//! | port | what it keeps or does |
//! |---|---|
//! | [`UserRepository`], [`RoomRepository`], [`MessageRepository`] | durable storage of users, rooms with memberships, and messages |
//! | [`MessageCache`] | the latest [`RECENT_MESSAGES`] of busy rooms, so opening a room skips storage |
//! | [`SessionStore`], [`TicketStore`] | server-side sessions that slide, and single-use connect tickets |
//! | [`TokenCodec`], [`PasswordHasher`] | signed access tokens and slow password hashes |
//! | [`RateLimiter`] | fixed-window budgets per key (sends, failed logins, registrations) |
//! | [`EventBus`], [`Presence`] | live events for every instance, and who has a live connection |
//! | [`Clock`], [`Probe`] | the time, and readiness of each dependency |
//!
//! ## Invariants an adapter must keep
//!
//! - **Seqs are gap-free and unique per room.** [`MessageRepository::insert_batch`] gives the
//!   n-th message stored in a room seq n, in batch order, also under concurrent batches on
//!   several instances; a refused message of a batch uses no seq and fails alone; a deleted
//!   message is left out of every read and its seq is never reused.
//! - **Sends are idempotent.** A second insert with the same (author, [`ClientMessageId`])
//!   stores nothing and returns the first message with `created: false`, also when the two race
//!   or share a batch.
//! - **Names are unique ignoring case**: emails, usernames ([`Username::key`]) and room names
//!   ([`RoomName::key`]); a clash is [`DomainError::EmailTaken`], `UsernameTaken` or
//!   `RoomNameTaken`, never a generic failure.
//! - **The cache never lies.** A read never shows a deleted message or an old edit, and never
//!   misses a message whose send was acknowledged; a fill offered with a stale [`FillTicket`] is
//!   refused. Readers of an unchanged room share one page (`Arc<HistoryPage>`), so what an
//!   adapter keeps in its [`Rendering`] (the API keeps the encoded response) is made once.
//! - **Sessions slide and tickets are spent once**: a touch extends a session to its ttl, a
//!   check of many ([`SessionStore::alive_many`]) extends none; a ticket redeems at most once
//!   and only within its ttl.
//! - **Failures are domain errors.** An unreachable dependency is [`DomainError::Unavailable`]
//!   (the caller may retry), anything unexpected [`DomainError::Internal`]; an adapter never
//!   panics on what a client or the environment controls.
//!
//! ## Proving a new adapter
//!
//! The crate `convo-contract` holds each port's contract as test bodies written once, and a
//! macro per port that runs every body as its own test against a fresh adapter, the same
//! assertions Convo's own SQL, in-process and Redis adapters pass. In a test file of your
//! adapter's crate (with `convo-contract` and tokio as dev-dependencies):
//!
//! ```text
//! mod session_store {
//!     convo_contract::session_store_contract!(async { std::sync::Arc::new(MySessionStore::new()) });
//! }
//! mod storage {
//!     // one type implementing the three storage ports (`convo_contract::Storage`)
//!     convo_contract::storage_contract!(async { std::sync::Arc::new(MyStore::connect().await) });
//! }
//! ```
//!
//! ## Shared pieces
//!
//! No wire format lives here: no serde, no JWT claims, no JSON field names, no transport. Ports
//! speak domain types (a token carries an [`AccessGrant`], events arrive through a
//! [`Subscription`]). Validation happens once, at the edge, by parsing raw input into value
//! types ([`Email::parse`], [`RoomName::parse`], ...) that cannot hold a bad value; every
//! refusal is a [`DomainError`] whose variant stands for one of the API's stable error codes
//! (the api crate spells them), a failed validation naming the input as a [`Field`]. Decorators that only
//! compose ports live here too, so any service built on the domain can reuse them:
//! [`FallbackRateLimiter`] answers from a second limiter while the first cannot. So do the few
//! pieces every side of the hexagon shares: [`OutageLog`] (an outage logged once), [`lock`] (a
//! std mutex that survives a poisoning panic) and [`redact_url`] (URLs fit for logs).
//!
//! With the `mocks` feature, every port, inbound or outbound, has a mockall mock
//! (`auth::MockAuthService`, `chat::MockRoomService`, `user::MockUserRepository`, ...); with the
//! `testing` feature, `testing` holds what the adapters' test support shares.

#![warn(missing_docs)]

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
mod remembered;
pub mod room;
pub mod session;
mod session_cache;
pub mod session_watch;
pub mod sync;
#[cfg(feature = "testing")]
pub mod testing;
pub mod user;
mod value;

pub use auth::{
    AuthPorts, AuthService, AuthSettings, AuthUseCases, CONNECT_TICKET_TTL, ConnectTicket, IssuedToken,
};
pub use chat::{
    ChatPorts, ChatUseCases, LiveService, MAX_RESUMED_MESSAGES, MessageService, Resume, ResumeCause,
    Resumption, RoomRef, RoomService, RoomStream,
};
pub use clock::{Clock, SystemClock};
pub use error::{BoxError, DomainError, DomainResult, Field, ValidationError};
pub use event::{Event, EventBus, Subscription, SubscriptionError, Topic};
pub use health::Probe;
pub use id::{MessageId, RoomId, SessionId, UserId};
pub use message::{
    CachedPage, ClientMessageId, FillTicket, HistoryPage, HistoryQuery, Message, MessageCache,
    MessageContent, MessageRepository, NewMessage, Posted, RECENT_MESSAGES, Rendering,
};
pub use outage::OutageLog;
pub use presence::Presence;
pub use rate_limit::{FallbackRateLimiter, RateDecision, RateLimit, RateLimiter};
pub use redact::redact_url;
pub use room::{
    DirectoryQuery, Member, Membership, NewRoom, Room, RoomName, RoomRepository, RoomSummary, name_key,
};
pub use session::{AccessGrant, Principal, Session, SessionStore, TicketStore, TokenCodec};
pub use session_watch::{SessionEnd, SessionFollow};
pub use sync::lock;
pub use user::{
    Credentials, Email, Password, PasswordHash, PasswordHasher, User, UserRef, UserRepository, Username,
};
