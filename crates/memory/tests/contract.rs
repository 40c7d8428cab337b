//! Every port contract of `convo-contract`, run against the in-process adapters, each body with
//! a fresh adapter.

use std::sync::Arc;

use convo_memory::{
    InMemoryEventBus, InMemoryMessageCache, InMemoryPresence, InMemoryRateLimiter, InMemorySessionStore,
    InMemoryTicketStore,
};

mod session_store {
    use super::*;
    convo_contract::session_store_contract!(async { Arc::new(InMemorySessionStore::new()) });
}

mod ticket_store {
    use super::*;
    convo_contract::ticket_store_contract!(async { Arc::new(InMemoryTicketStore::new()) });
}

mod rate_limiter {
    use super::*;
    convo_contract::rate_limiter_contract!(async { Arc::new(InMemoryRateLimiter::new()) });
}

mod message_cache {
    use super::*;
    convo_contract::message_cache_contract!(async { Arc::new(InMemoryMessageCache::default()) });
}

mod event_bus {
    use super::*;
    convo_contract::event_bus_contract!(async { Arc::new(InMemoryEventBus::default()) });
}

mod presence {
    use super::*;
    convo_contract::presence_contract!(async { Arc::new(InMemoryPresence::new()) });
}

/// The list form, with the adapter behind `dyn Port`, as a driver without the macros uses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_cases_run_against_a_dyn_port() {
    let cases = convo_contract::presence::cases::<dyn convo_domain::Presence>();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let presence: Arc<dyn convo_domain::Presence> = Arc::new(InMemoryPresence::new());
        case.run(presence).await;
    }
}
