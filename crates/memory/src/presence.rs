//! Live connection counts per user, in process memory.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use convo_domain::{DomainResult, Presence, UserId};

use crate::shard::{SHARDS, Shards};

/// [`Presence`] for a single instance. Only users with a live connection are held.
#[derive(Debug)]
pub struct InMemoryPresence {
    shards: Shards<HashMap<UserId, u32>>,
}

impl InMemoryPresence {
    pub fn new() -> Self {
        Self { shards: Shards::new(SHARDS, HashMap::new) }
    }

    #[cfg(test)]
    fn users(&self) -> usize {
        self.shards.each().map(|shard| shard.len()).sum()
    }
}

impl Default for InMemoryPresence {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Presence for InMemoryPresence {
    async fn connected(&self, user: UserId) -> DomainResult<bool> {
        let mut shard = self.shards.of(&user);
        let connections = shard.entry(user).or_insert(0);
        *connections = connections.saturating_add(1);
        Ok(*connections == 1)
    }

    async fn disconnected(&self, user: UserId) -> DomainResult<bool> {
        let mut shard = self.shards.of(&user);
        let Some(connections) = shard.get_mut(&user) else {
            return Ok(false); // never connected, or already gone: nothing to close
        };
        *connections -= 1;
        if *connections > 0 {
            return Ok(false);
        }
        shard.remove(&user);
        Ok(true)
    }

    async fn online_among(&self, users: &[UserId]) -> DomainResult<HashSet<UserId>> {
        Ok(users.iter().copied().filter(|user| self.shards.of(user).contains_key(user)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn users_who_went_offline_are_forgotten() {
        let presence = InMemoryPresence::new();
        let users: Vec<UserId> = (0..100).map(|_| UserId::generate()).collect();
        for user in &users {
            presence.connected(*user).await.expect("connected");
            presence.connected(*user).await.expect("connected");
        }
        assert_eq!(presence.users(), 100);
        for user in &users {
            presence.disconnected(*user).await.expect("disconnected");
            presence.disconnected(*user).await.expect("disconnected");
        }
        assert_eq!(presence.users(), 0);
    }
}
