//! The readiness probe of Redis.

use async_trait::async_trait;
use convo_domain::{DomainResult, Probe};
use fred::prelude::ClientLike;

use crate::connection::RedisConnection;

/// Answers `/ready` for Redis, under the name `cache`.
#[derive(Debug, Clone)]
pub struct RedisProbe {
    redis: RedisConnection,
}

impl RedisProbe {
    pub fn new(redis: RedisConnection) -> Self {
        Self { redis }
    }
}

#[async_trait]
impl Probe for RedisProbe {
    fn name(&self) -> &'static str {
        "cache"
    }

    async fn check(&self) -> DomainResult<()> {
        let client = self.redis.client("cache")?;
        self.redis.run("cache", client.ping::<()>(None)).await
    }
}
