//! Presence: which users have at least one live connection.

use std::collections::HashSet;

use async_trait::async_trait;

use crate::error::DomainResult;
use crate::id::UserId;

/// Counts each user's live connections.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Presence: Send + Sync {
    /// Records a new connection; `true` if it is the user's first (they just came online).
    async fn connected(&self, user: UserId) -> DomainResult<bool>;
    /// Records a closed connection; `true` if it was the user's last (they just went offline).
    async fn disconnected(&self, user: UserId) -> DomainResult<bool>;
    /// Those of `users` who are online.
    async fn online_among(&self, users: &[UserId]) -> DomainResult<HashSet<UserId>>;
}
