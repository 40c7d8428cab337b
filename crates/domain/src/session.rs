//! Sessions and the access tokens that name them. A token is accepted only while its session
//! lives in the [`SessionStore`]; a user may hold many sessions (one per device).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::DomainResult;
use crate::id::{SessionId, UserId};

/// One login of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The id the user's access token names.
    pub id: SessionId,
    /// Whose session it is.
    pub user_id: UserId,
    /// When the user logged in.
    pub created_at: DateTime<Utc>,
}

/// Who is calling: the user and the session their token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Principal {
    /// The user acting.
    pub user_id: UserId,
    /// The session they act through; logging out ends it.
    pub session_id: SessionId,
}

/// Keeps live sessions. Sessions slide: each successful `touch` extends a session to `ttl`
/// from now; a session left alone for `ttl` is gone.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session, alive for `ttl` unless touched.
    async fn create(&self, session: &Session, ttl: Duration) -> DomainResult<()>;
    /// The session if it is still alive, extended to `ttl` from now.
    async fn touch(&self, id: SessionId, ttl: Duration) -> DomainResult<Option<Session>>;
    /// Whether each session is alive, in the order asked, extending none: one round trip to the
    /// store however many are asked, for checking every live connection of an instance at once.
    async fn alive_many(&self, ids: &[SessionId]) -> DomainResult<Vec<bool>>;
    /// Ends one session; `false` if it had already ended.
    async fn revoke(&self, user: UserId, id: SessionId) -> DomainResult<bool>;
    /// Ends every session of the user, returning the ids that were alive.
    async fn revoke_all(&self, user: UserId) -> DomainResult<Vec<SessionId>>;
}

/// What an access token asserts: who holds it, since when and until when. Times are kept to the
/// whole second, as a token carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessGrant {
    /// Who holds the token.
    pub principal: Principal,
    /// When the token was signed.
    pub issued_at: DateTime<Utc>,
    /// Past this, the token is refused whatever the state of its session.
    pub expires_at: DateTime<Utc>,
}

/// Signs and checks access tokens.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait TokenCodec: Send + Sync {
    /// A signed token asserting the grant, opaque to the client.
    fn encode(&self, grant: &AccessGrant) -> DomainResult<String>;
    /// `Unauthenticated` for a token that is malformed, forged or past its expiry.
    fn decode(&self, token: &str) -> DomainResult<AccessGrant>;
}

/// Single-use tickets that let a client which cannot present its token when it connects (a
/// browser opening a WebSocket cannot set headers) open a live connection: a ticket carries the
/// grant of the token it was asked with (so the connection ends at that token's expiry) for a
/// short time and can be redeemed once, on any instance.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait TicketStore: Send + Sync {
    /// Stores the ticket for `grant`, redeemable once within `ttl`.
    async fn issue(&self, ticket: &str, grant: AccessGrant, ttl: Duration) -> DomainResult<()>;
    /// The grant the ticket was issued for, at most once and only within its ttl.
    async fn redeem(&self, ticket: &str) -> DomainResult<Option<AccessGrant>>;
}
