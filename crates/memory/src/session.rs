//! Sessions in a process-local map, sharded by session id.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use convo_domain::{DomainResult, Session, SessionId, SessionStore, UserId};
use tokio::time::Instant;

use crate::shard::{Expiring, SHARDS, Shards, Sweep, deadline};

/// [`SessionStore`] for a single instance. Expired sessions are dropped when next looked at and
/// swept out as the store grows, so memory follows the live sessions.
#[derive(Debug)]
pub struct InMemorySessionStore {
    shards: Shards<SessionShard>,
}

impl InMemorySessionStore {
    pub fn new() -> Self {
        Self { shards: Shards::new(SHARDS, SessionShard::new) }
    }

    /// Sessions held, expired ones not yet swept included.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.shards.each().map(|shard| shard.sessions.len()).sum()
    }
}

impl Default for InMemorySessionStore {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug)]
struct Live {
    session: Session,
    expires_at: Instant,
}

/// The sessions whose ids fall in this shard, and an index of them by user for `revoke_all`.
#[derive(Debug)]
struct SessionShard {
    sessions: HashMap<SessionId, Live>,
    by_user: HashMap<UserId, HashSet<SessionId>>,
    sweep: Sweep,
}

impl SessionShard {
    fn new() -> Self {
        Self { sessions: HashMap::new(), by_user: HashMap::new(), sweep: Sweep::new() }
    }

    fn insert(&mut self, session: Session, expires_at: Instant) {
        // A re-created id replaces the old entry, and its place in the index.
        self.remove(session.id);
        self.by_user.entry(session.user_id).or_default().insert(session.id);
        self.sessions.insert(session.id, Live { session, expires_at });
    }

    fn remove(&mut self, id: SessionId) -> Option<Live> {
        let live = self.sessions.remove(&id)?;
        self.unindex(live.session.user_id, id);
        Some(live)
    }

    fn unindex(&mut self, user: UserId, id: SessionId) {
        if let Some(ids) = self.by_user.get_mut(&user) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_user.remove(&user);
            }
        }
    }
}

/// A session is dead once it has expired; it leaves the index by user with it.
impl Expiring for SessionShard {
    fn held(&self) -> usize {
        self.sessions.len()
    }

    fn drop_expired(&mut self, now: Instant) {
        let expired: Vec<SessionId> =
            self.sessions.iter().filter(|(_, live)| live.expires_at <= now).map(|(id, _)| *id).collect();
        for id in expired {
            self.remove(id);
        }
        self.sessions.shrink_to(self.sessions.len() * 2);
        self.by_user.shrink_to(self.by_user.len() * 2);
    }

    fn schedule(&mut self) -> &mut Sweep {
        &mut self.sweep
    }
}

#[async_trait]
impl SessionStore for InMemorySessionStore {
    async fn create(&self, session: &Session, ttl: Duration) -> DomainResult<()> {
        let now = Instant::now();
        let mut shard = self.shards.of(&session.id);
        shard.sweep_if_due(now);
        shard.insert(session.clone(), deadline(now, ttl));
        Ok(())
    }

    async fn touch(&self, id: SessionId, ttl: Duration) -> DomainResult<Option<Session>> {
        let now = Instant::now();
        let mut shard = self.shards.of(&id);
        match shard.sessions.get_mut(&id) {
            Some(live) if live.expires_at > now => {
                live.expires_at = deadline(now, ttl);
                Ok(Some(live.session.clone()))
            }
            Some(_) => {
                shard.remove(id);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn alive_many(&self, ids: &[SessionId]) -> DomainResult<Vec<bool>> {
        let now = Instant::now();
        // Read only: an expired entry is left for the sweep, as a check is not activity.
        Ok(ids
            .iter()
            .map(|id| self.shards.of(id).sessions.get(id).is_some_and(|live| live.expires_at > now))
            .collect())
    }

    async fn revoke(&self, user: UserId, id: SessionId) -> DomainResult<bool> {
        let now = Instant::now();
        let mut shard = self.shards.of(&id);
        // A user ends only their own sessions.
        if shard.sessions.get(&id).is_none_or(|live| live.session.user_id != user) {
            return Ok(false);
        }
        Ok(shard.remove(id).is_some_and(|live| live.expires_at > now))
    }

    async fn revoke_all(&self, user: UserId) -> DomainResult<Vec<SessionId>> {
        let now = Instant::now();
        let mut ended = Vec::new();
        for mut shard in self.shards.each() {
            let Some(ids) = shard.by_user.remove(&user) else { continue };
            for id in ids {
                if let Some(live) = shard.sessions.remove(&id)
                    && live.expires_at > now
                {
                    ended.push(id);
                }
            }
        }
        Ok(ended)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use tokio::time::advance;

    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    fn session(user: UserId) -> Session {
        Session { id: SessionId::generate(), user_id: user, created_at: Utc::now() }
    }

    #[tokio::test(start_paused = true)]
    async fn expired_sessions_are_swept_as_the_store_grows() {
        let store = InMemorySessionStore::new();
        let short = Duration::from_secs(10);
        for _ in 0..5_000 {
            store.create(&session(UserId::generate()), short).await.expect("create");
        }
        assert_eq!(store.held(), 5_000);
        // Expired, but well within the sweep period: only growth can trigger the sweeps.
        advance(short * 2).await;
        for _ in 0..5_000 {
            store.create(&session(UserId::generate()), TTL).await.expect("create");
        }
        // Each shard swept its dead on the way; only the second batch (and a few sessions
        // created after a shard's last sweep) can still be held.
        assert!(store.held() < 6_000, "held {} sessions", store.held());
        let index: usize = store.shards.each().map(|shard| shard.by_user.len()).sum();
        assert_eq!(index, store.held(), "the user index follows the sessions");
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_store_is_swept_after_a_period() {
        let store = InMemorySessionStore::new();
        let user = UserId::generate();
        for _ in 0..200 {
            store.create(&session(user), Duration::from_secs(1)).await.expect("create");
        }
        advance(Duration::from_secs(61)).await;
        // One write per shard finds its sweep due by time.
        for _ in 0..200 {
            store.create(&session(UserId::generate()), TTL).await.expect("create");
        }
        assert_eq!(store.held(), 200);
    }

    #[tokio::test(start_paused = true)]
    async fn touching_an_expired_session_forgets_it() {
        let store = InMemorySessionStore::new();
        let user = UserId::generate();
        let gone = session(user);
        store.create(&gone, Duration::from_secs(1)).await.expect("create");
        advance(Duration::from_secs(2)).await;
        assert_eq!(store.touch(gone.id, TTL).await.expect("touch"), None);
        assert_eq!(store.held(), 0);
        assert!(store.shards.each().all(|shard| shard.by_user.is_empty()));
    }

    #[tokio::test]
    async fn a_user_cannot_revoke_another_users_session() {
        let store = InMemorySessionStore::new();
        let owned = session(UserId::generate());
        store.create(&owned, TTL).await.expect("create");
        assert!(!store.revoke(UserId::generate(), owned.id).await.expect("revoke"));
        assert_eq!(store.touch(owned.id, TTL).await.expect("touch"), Some(owned));
    }

    #[tokio::test]
    async fn revoke_all_forgets_the_users_index() {
        let store = InMemorySessionStore::new();
        let user = UserId::generate();
        for _ in 0..40 {
            store.create(&session(user), TTL).await.expect("create");
        }
        assert_eq!(store.revoke_all(user).await.expect("revoke all").len(), 40);
        assert_eq!(store.held(), 0);
        assert!(store.shards.each().all(|shard| shard.by_user.is_empty()));
    }
}
