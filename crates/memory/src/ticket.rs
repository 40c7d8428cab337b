//! WebSocket tickets in a process-local map, sharded by ticket.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use convo_domain::{AccessGrant, DomainResult, TicketStore};
use tokio::time::Instant;

use crate::shard::{Expiring, SHARDS, Shards, Sweep, deadline};

/// [`TicketStore`] for a single instance: a redeemed ticket is removed at once; unredeemed
/// ones are swept out after they expire.
#[derive(Debug)]
pub struct InMemoryTicketStore {
    shards: Shards<TicketShard>,
}

#[derive(Debug)]
struct TicketShard {
    tickets: HashMap<String, (AccessGrant, Instant)>,
    sweep: Sweep,
}

/// A ticket is dead once it has expired.
impl Expiring for TicketShard {
    fn held(&self) -> usize {
        self.tickets.len()
    }

    fn drop_expired(&mut self, now: Instant) {
        self.tickets.retain(|_, (_, expires_at)| *expires_at > now);
        self.tickets.shrink_to(self.tickets.len() * 2);
    }

    fn schedule(&mut self) -> &mut Sweep {
        &mut self.sweep
    }
}

impl InMemoryTicketStore {
    pub fn new() -> Self {
        Self { shards: Shards::new(SHARDS, || TicketShard { tickets: HashMap::new(), sweep: Sweep::new() }) }
    }
}

impl Default for InMemoryTicketStore {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl TicketStore for InMemoryTicketStore {
    async fn issue(&self, ticket: &str, grant: AccessGrant, ttl: Duration) -> DomainResult<()> {
        let now = Instant::now();
        let mut shard = self.shards.of(ticket);
        shard.sweep_if_due(now);
        shard.tickets.insert(ticket.to_owned(), (grant, deadline(now, ttl)));
        Ok(())
    }

    async fn redeem(&self, ticket: &str) -> DomainResult<Option<AccessGrant>> {
        let now = Instant::now();
        let redeemed = self.shards.of(ticket).tickets.remove(ticket);
        Ok(redeemed.filter(|(_, expires_at)| *expires_at > now).map(|(grant, _)| grant))
    }
}
