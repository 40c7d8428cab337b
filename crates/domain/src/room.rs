//! Rooms and their memberships.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::{DomainResult, Field, ValidationError};
use crate::id::{RoomId, UserId};
use crate::user::Username;
use crate::value::text_value;

text_value!(
    /// Trimmed, 1-50 chars of letters, digits, space, `_` and `-`; unique ignoring case.
    RoomName
);

impl RoomName {
    /// The longest value allowed, in characters.
    pub const MAX_LEN: usize = 50;

    /// The value, if `raw` keeps the rules above; otherwise which rule it breaks.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let value = raw.trim();
        let len = value.chars().count();
        if !(1..=Self::MAX_LEN).contains(&len) {
            return Err(ValidationError::new(Field::RoomName, "must be 1-50 characters"));
        }
        if !value.chars().all(|c| c.is_alphanumeric() || c == ' ' || c == '_' || c == '-') {
            return Err(ValidationError::new(
                Field::RoomName,
                "may contain only letters, digits, spaces, underscores and hyphens",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    /// The form uniqueness and prefix search are checked on (full Unicode lower case, so that the
    /// rule holds the same on every database).
    pub fn key(&self) -> String {
        name_key(&self.0)
    }
}

/// The case-folded form of a room name or a prefix of one.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

/// A search of the room directory: rooms whose name starts with `prefix`, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryQuery {
    /// Already case-folded with [`name_key`]; empty lists every room.
    pub prefix_key: String,
    /// The most rooms to return, 1-100.
    pub limit: u32,
}

impl DirectoryQuery {
    /// The page size when the request names none.
    pub const DEFAULT_LIMIT: u32 = 50;
    /// The largest page size allowed.
    pub const MAX_LIMIT: u32 = 100;

    /// The query, if the prefix (leading spaces dropped; none lists every room) is at most
    /// [`RoomName::MAX_LEN`] characters and `limit`, [`Self::DEFAULT_LIMIT`] if absent, is
    /// 1-100; otherwise which rule is broken.
    pub fn parse(prefix: Option<&str>, limit: Option<u32>) -> Result<Self, ValidationError> {
        let prefix = prefix.unwrap_or("").trim_start();
        if prefix.chars().count() > RoomName::MAX_LEN {
            return Err(ValidationError::new(Field::SearchPrefix, "must be at most 50 characters"));
        }
        Ok(Self { prefix_key: name_key(prefix), limit: parse_limit(limit, Self::DEFAULT_LIMIT)? })
    }
}

/// Checks a page size against the 1..=100 range every listing shares.
pub(crate) fn parse_limit(limit: Option<u32>, default: u32) -> Result<u32, ValidationError> {
    match limit {
        None => Ok(default),
        Some(n @ 1..=100) => Ok(n),
        Some(_) => Err(ValidationError::new(Field::Limit, "must be between 1 and 100")),
    }
}

/// A room as every caller may see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    /// The room's id.
    pub id: RoomId,
    /// Its name, in the case its owner gave it.
    pub name: RoomName,
    /// Who created it; the owner may delete any message in it.
    pub owner_id: UserId,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// How many users belong to it now.
    pub member_count: u64,
    /// The seq of the latest message stored in the room; 0 before the first.
    pub last_seq: i64,
}

/// One of the caller's rooms, with what their room list sorts and shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSummary {
    /// The room itself.
    pub room: Room,
    /// When the caller joined it.
    pub joined_at: DateTime<Utc>,
    /// When its latest message was sent; `None` before the first.
    pub last_message_at: Option<DateTime<Utc>>,
}

/// A member of a room; `online` comes from presence, not from storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's id.
    pub user_id: UserId,
    /// The member's name.
    pub username: Username,
    /// When they joined the room.
    pub joined_at: DateTime<Utc>,
    /// Whether they have a live connection right now.
    pub online: bool,
}

/// Whether a user belongs to a room, answered in one look-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// No room has this id.
    NoSuchRoom,
    /// The room exists but the user has not joined it.
    Outsider,
    /// The user belongs to the room.
    Member,
}

/// A room about to be created by `owner_id`, who becomes its first member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRoom {
    /// The id the room will have, chosen before storing it.
    pub id: RoomId,
    /// Its name; storage refuses one already in use in any case.
    pub name: RoomName,
    /// Who creates and owns it.
    pub owner_id: UserId,
    /// When it is created; also the owner's join time.
    pub created_at: DateTime<Utc>,
}

/// Stores rooms and memberships.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait RoomRepository: Send + Sync {
    /// Creates the room and the owner's membership in one transaction; `RoomNameTaken` when the
    /// name is in use in any case.
    async fn create(&self, room: &NewRoom) -> DomainResult<Room>;
    /// The room with this id, if any.
    async fn find(&self, id: RoomId) -> DomainResult<Option<Room>>;
    /// The room with this name compared ignoring case ([`RoomName::key`]), if any.
    async fn find_by_name(&self, name: &RoomName) -> DomainResult<Option<Room>>;
    /// The first `limit` rooms whose name key starts with the query's prefix, by name.
    async fn directory(&self, query: &DirectoryQuery) -> DomainResult<Vec<Room>>;
    /// The user's rooms, most recently active (last message, else creation) first.
    async fn rooms_of(&self, user: UserId) -> DomainResult<Vec<RoomSummary>>;
    /// Whether the room exists and, if so, whether the user belongs to it.
    async fn membership(&self, room: RoomId, user: UserId) -> DomainResult<Membership>;
    /// Adds the membership; `false` if it already existed, `RoomNotFound` if the room does not.
    async fn join(&self, room: RoomId, user: UserId, at: DateTime<Utc>) -> DomainResult<bool>;
    /// Removes the membership; `false` if there was none.
    async fn leave(&self, room: RoomId, user: UserId) -> DomainResult<bool>;
    /// Members by join time, all with `online: false` (the caller fills in presence).
    async fn members(&self, room: RoomId) -> DomainResult<Vec<Member>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_name_is_trimmed_and_checked() {
        assert_eq!(RoomName::parse("  general chat ").expect("valid").as_str(), "general chat");
        assert!(RoomName::parse("   ").is_err());
        assert!(RoomName::parse(&"x".repeat(51)).is_err());
        assert!(RoomName::parse(&"x".repeat(50)).is_ok());
        assert!(RoomName::parse("no/slashes").is_err());
        assert!(RoomName::parse("café_au-lait 2").is_ok());
        assert_eq!(RoomName::parse("Café").expect("valid").key(), "café");
    }

    #[test]
    fn directory_limit_is_bounded() {
        assert_eq!(DirectoryQuery::parse(None, None).expect("valid").limit, 50);
        assert!(DirectoryQuery::parse(Some("a"), Some(0)).is_err());
        assert!(DirectoryQuery::parse(Some("a"), Some(101)).is_err());
        assert_eq!(DirectoryQuery::parse(Some("GEN"), Some(100)).expect("valid").prefix_key, "gen");
    }
}
