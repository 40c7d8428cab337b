//! Every port contract of `convo-contract`, run against the Redis adapters: the same bodies as
//! the in-process adapters pass, each test with adapters of its own under a fresh key prefix.
//! Without a reachable Redis the tests are skipped loudly (and fail under `CI=true`).

use std::sync::Arc;

use convo_redis::testing::test_connection;
use convo_redis::{
    RedisEventBus, RedisMessageCache, RedisPresence, RedisRateLimiter, RedisSessionStore, RedisTicketStore,
};

mod session_store {
    use super::*;
    convo_contract::session_store_contract!(async {
        test_connection().await.map(RedisSessionStore::new).map(Arc::new)
    });
}

mod ticket_store {
    use super::*;
    convo_contract::ticket_store_contract!(async {
        test_connection().await.map(RedisTicketStore::new).map(Arc::new)
    });
}

mod rate_limiter {
    use super::*;
    convo_contract::rate_limiter_contract!(async {
        test_connection().await.map(RedisRateLimiter::new).map(Arc::new)
    });
}

mod message_cache {
    use super::*;
    convo_contract::message_cache_contract!(async {
        test_connection().await.map(RedisMessageCache::new).map(Arc::new)
    });
}

mod event_bus {
    use super::*;
    convo_contract::event_bus_contract!(async {
        let connection = test_connection().await?;
        Some(Arc::new(RedisEventBus::new(connection).await.expect("subscriber connection")))
    });
}

mod presence {
    use super::*;
    convo_contract::presence_contract!(async {
        test_connection().await.map(RedisPresence::new).map(Arc::new)
    });
}
