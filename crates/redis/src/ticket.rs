//! Single-use WebSocket tickets in Redis: issued with a TTL, redeemed with GETDEL so exactly one
//! redemption wins, on whichever instance it happens.

use std::time::Duration;

use async_trait::async_trait;
use chrono::DateTime;
use convo_domain::{AccessGrant, DomainError, DomainResult, Principal, SessionId, TicketStore, UserId};
use fred::prelude::KeysInterface;
use fred::types::Expiration;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::connection::RedisConnection;
use crate::session::millis;

const WHAT: &str = "sessions";

#[derive(Debug, Serialize, Deserialize)]
struct StoredTicket {
    user: Uuid,
    session: Uuid,
    /// The token's `iat` and `exp`, in Unix seconds. Missing from a ticket an older version
    /// issued, which then opens nothing (the client asks for another).
    #[serde(default)]
    issued: Option<i64>,
    #[serde(default)]
    expires: Option<i64>,
}

/// [`TicketStore`] on Redis. Fails closed, like sessions.
#[derive(Debug, Clone)]
pub struct RedisTicketStore {
    redis: RedisConnection,
}

impl RedisTicketStore {
    pub fn new(redis: RedisConnection) -> Self {
        Self { redis }
    }
}

#[async_trait]
impl TicketStore for RedisTicketStore {
    async fn issue(&self, ticket: &str, grant: AccessGrant, ttl: Duration) -> DomainResult<()> {
        let value = serde_json::to_string(&StoredTicket {
            user: grant.principal.user_id.as_uuid(),
            session: grant.principal.session_id.as_uuid(),
            issued: Some(grant.issued_at.timestamp()),
            expires: Some(grant.expires_at.timestamp()),
        })
        .map_err(DomainError::internal)?;
        let client = self.redis.client(WHAT)?;
        let expiry = Expiration::PX(i64::try_from(millis(ttl)).unwrap_or(i64::MAX).max(1));
        self.redis
            .run(
                WHAT,
                client.set::<(), _, _>(self.redis.keys().ticket(ticket), value, Some(expiry), None, false),
            )
            .await
    }

    async fn redeem(&self, ticket: &str) -> DomainResult<Option<AccessGrant>> {
        let client = self.redis.client(WHAT)?;
        let value: Option<String> =
            self.redis.run(WHAT, client.getdel(self.redis.keys().ticket(ticket))).await?;
        let Some(value) = value else { return Ok(None) };
        let stored: StoredTicket = serde_json::from_str(&value).map_err(DomainError::internal)?;
        let at = |seconds: Option<i64>| seconds.and_then(|seconds| DateTime::from_timestamp(seconds, 0));
        let (Some(issued_at), Some(expires_at)) = (at(stored.issued), at(stored.expires)) else {
            return Ok(None);
        };
        Ok(Some(AccessGrant {
            principal: Principal {
                user_id: UserId::from(stored.user),
                session_id: SessionId::from(stored.session),
            },
            issued_at,
            expires_at,
        }))
    }
}
