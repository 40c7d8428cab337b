//! The key layout. Every key starts with the prefix (`REDIS_KEY_PREFIX`, default `convo:`);
//! the part in braces is the hash tag, so the keys one script touches share a cluster slot.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{p}session:{<session>}` | string, TTL = idle lifetime | `{"user":..,"created":..}` |
//! | `{p}user-sessions:{<user>}` | sorted set, TTL | session ids scored by expiry (ms), for logout-all |
//! | `{p}ticket:<ticket>` | string, TTL 30 s | the grant a WebSocket ticket carries: principal, token `iat` and `exp` |
//! | `{p}rate:<key>` | string counter, TTL = window | points taken in the key's window |
//! | `{p}cache:{<room>}:meta` | hash, idle TTL | `v` version, `last` seq, `loaded`, `complete`, `n` held |
//! | `{p}cache:{<room>}:seqs` | sorted set, idle TTL | held message ids scored by seq |
//! | `{p}cache:{<room>}:msgs` | hash, idle TTL | `j:<id>` message JSON, `e:<id>` edit time (µs) |
//! | `{p}presence:{<user>}` | sorted set, TTL | instance ids scored by expiry (ms) |
//!
//! Pub/sub channels: `{p}events:room:{<room>}`, `{p}events:sessions` and `{p}events:memberships`.

use convo_domain::{RoomId, SessionId, Topic, UserId};

/// Builds keys under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn session(&self, id: SessionId) -> String {
        format!("{}session:{{{id}}}", self.prefix)
    }

    pub fn user_sessions(&self, user: UserId) -> String {
        format!("{}user-sessions:{{{user}}}", self.prefix)
    }

    pub fn ticket(&self, ticket: &str) -> String {
        format!("{}ticket:{ticket}", self.prefix)
    }

    pub fn rate(&self, key: &str) -> String {
        format!("{}rate:{key}", self.prefix)
    }

    /// The room's three cache keys: meta, seqs, msgs (one hash tag).
    pub fn cache(&self, room: RoomId) -> [String; 3] {
        let base = format!("{}cache:{{{room}}}", self.prefix);
        [format!("{base}:meta"), format!("{base}:seqs"), format!("{base}:msgs")]
    }

    pub fn presence(&self, user: UserId) -> String {
        format!("{}presence:{{{user}}}", self.prefix)
    }

    pub fn channel(&self, topic: Topic) -> String {
        match topic {
            Topic::Room(room) => format!("{}events:room:{{{room}}}", self.prefix),
            Topic::Sessions => format!("{}events:sessions", self.prefix),
            Topic::Memberships => format!("{}events:memberships", self.prefix),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keys_of_a_room_share_a_hash_slot() {
        let keys = Keys::new("convo:");
        let [meta, seqs, msgs] = keys.cache(RoomId::generate());
        let slot = |key: &str| fred::util::redis_keyslot(key.as_bytes());
        assert_eq!(slot(&meta), slot(&seqs));
        assert_eq!(slot(&meta), slot(&msgs));
        assert!(meta.starts_with("convo:cache:{"));
    }
}
