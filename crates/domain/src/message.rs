//! Messages: their content rules, per-room sequence numbers, history pages, and the ports that
//! store and cache them.

use std::any::Any;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::{DomainError, DomainResult, Field, ValidationError};
use crate::id::{MessageId, RoomId, UserId};
use crate::room::parse_limit;
use crate::user::UserRef;
use crate::value::text_value;

text_value!(
    /// Trimmed, 1-1000 Unicode scalar values, kept exactly as sent (never HTML-escaped).
    MessageContent
);

impl MessageContent {
    /// The longest value allowed, in characters.
    pub const MAX_CHARS: usize = 1000;

    /// The value, if `raw` keeps the rules above; otherwise which rule it breaks.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let value = raw.trim();
        let len = value.chars().count();
        if len == 0 {
            return Err(ValidationError::new(Field::Content, "must not be empty"));
        }
        if len > Self::MAX_CHARS {
            return Err(ValidationError::new(Field::Content, "must be at most 1000 characters"));
        }
        Ok(Self(value.to_owned()))
    }
}

text_value!(
    /// A key the client picks so that retrying a send creates nothing new: 1-100 printable chars.
    ClientMessageId
);

impl ClientMessageId {
    /// The longest value allowed, in characters.
    pub const MAX_CHARS: usize = 100;

    /// The value, if `raw` keeps the rules above; otherwise which rule it breaks.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let len = raw.chars().count();
        if len == 0 || len > Self::MAX_CHARS || raw.chars().any(char::is_control) {
            return Err(ValidationError::new(
                Field::ClientMessageId,
                "must be 1-100 characters without control characters",
            ));
        }
        Ok(Self(raw.to_owned()))
    }
}

/// A stored message. `seq` is its position in the room: the n-th message stored has seq n.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The message's own id, stable across edits.
    pub id: MessageId,
    /// The room it was posted in.
    pub room_id: RoomId,
    /// Its position in the room, from 1: the n-th message stored has seq n.
    pub seq: i64,
    /// Who wrote it.
    pub author: UserRef,
    /// The text, as last edited.
    pub content: MessageContent,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
    /// When it was last edited; `None` if never.
    pub edited_at: Option<DateTime<Utc>>,
    /// The key its author's client sent it with, if any.
    pub client_message_id: Option<ClientMessageId>,
}

/// A message about to be stored; storage assigns its `seq` and fills in the author's username.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The id the message will have, chosen before storing it.
    pub id: MessageId,
    /// The room to post in.
    pub room_id: RoomId,
    /// Who writes it; storage refuses an author who is not a member.
    pub author_id: UserId,
    /// The text.
    pub content: MessageContent,
    /// The author's key for retrying the send; a second insert with it returns the first message.
    pub client_message_id: Option<ClientMessageId>,
    /// When it was sent.
    pub created_at: DateTime<Utc>,
}

/// The outcome of storing a message: `created` is false when the (author, clientMessageId) pair
/// already named a message, which is returned instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    /// The message as stored: the new one, or the one stored earlier under the same key.
    pub message: Message,
    /// `true` if this insert stored the message, `false` if it was already there.
    pub created: bool,
}

/// Which slice of a room's history to read. Without cursors, the latest `limit` messages; with
/// `after`, the first `limit` after it (paging forward); otherwise the last `limit` before
/// `before` (paging back). Both cursors together bound the range on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only messages with a seq below this one (at least 1).
    pub before: Option<i64>,
    /// Only messages with a seq above this one (at least 0).
    pub after: Option<i64>,
    /// The most messages the page holds, 1-100.
    pub limit: u32,
}

impl HistoryQuery {
    /// The page size when the request names none.
    pub const DEFAULT_LIMIT: u32 = 50;

    /// The query, if the cursors are seqs in range (`before` at least 1, `after` at least 0) and
    /// `limit`, [`Self::DEFAULT_LIMIT`] if absent, is 1-100; otherwise which rule is broken.
    pub fn parse(
        before: Option<i64>,
        after: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Self, ValidationError> {
        if before.is_some_and(|seq| seq < 1) {
            return Err(ValidationError::new(Field::Before, "must be a seq of 1 or more"));
        }
        if after.is_some_and(|seq| seq < 0) {
            return Err(ValidationError::new(Field::After, "must be a seq of 0 or more"));
        }
        Ok(Self { before, after, limit: parse_limit(limit, Self::DEFAULT_LIMIT)? })
    }

    /// The latest `limit` messages: the page a room opens on.
    pub fn latest(limit: u32) -> Self {
        Self { before: None, after: None, limit }
    }

    /// Whether the query has no cursor, so it asks for the room's latest messages.
    pub fn is_latest(&self) -> bool {
        self.before.is_none() && self.after.is_none()
    }
}

/// Messages ascending by seq; `has_more` says whether more exist in the paging direction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistoryPage {
    /// At most the query's `limit` messages, ascending by seq.
    pub messages: Vec<Message>,
    /// Whether more messages exist beyond this page in the paging direction.
    pub has_more: bool,
    /// What the outside world made of this page, kept for the next reader of the same page.
    /// Whoever changes the page in place after that must reset it (`Rendering::default()`).
    pub rendering: Rendering,
}

impl HistoryPage {
    /// A page with nothing rendered yet.
    pub fn new(messages: Vec<Message>, has_more: bool) -> Self {
        Self { messages, has_more, rendering: Rendering::default() }
    }
}

/// Room for an adapter to keep what it made of a value (its wire encoding, say), so that a
/// value a cache hands out many times is made into that only once. The domain never looks
/// inside. A clone starts empty, so what is kept always describes the very value it sits in:
/// a cache shares its pages behind an `Arc`, where nobody changes them.
#[derive(Default)]
pub struct Rendering(OnceLock<Box<dyn Any + Send + Sync>>);

impl Rendering {
    /// What was kept, made by `make` if nothing was; `None` if something of another type was
    /// kept first.
    pub fn get_or_init<T: Any + Send + Sync>(&self, make: impl FnOnce() -> T) -> Option<&T> {
        self.0.get_or_init(|| Box::new(make())).downcast_ref()
    }
}

impl Clone for Rendering {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// Renderings never make two values differ.
impl PartialEq for Rendering {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Rendering {}

impl std::fmt::Debug for Rendering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendering").field("kept", &self.0.get().is_some()).finish()
    }
}

/// Stores messages.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait MessageRepository: Send + Sync {
    /// Stores a batch of messages to one `room` (each one's `room_id`), in one transaction,
    /// and answers each in its place: `RoomNotFound` unless the room exists, `NotAMember`
    /// unless its author belongs to it, the existing message if (author, clientMessageId) was
    /// used before (also by an earlier message of the same batch), `MessageDeleted` if the
    /// message it was used for has been deleted since, and otherwise the room's
    /// next seq, handed out in batch order: no gap and no duplicate under concurrent batches,
    /// from this instance or any other. One message's refusal never fails the others; `Err`
    /// means none was stored.
    async fn insert_batch(
        &self,
        room: RoomId,
        batch: &[NewMessage],
    ) -> DomainResult<Vec<DomainResult<Posted>>>;

    /// [`Self::insert_batch`] of one message.
    async fn insert(&self, message: &NewMessage) -> DomainResult<Posted> {
        let mut outcomes = self.insert_batch(message.room_id, std::slice::from_ref(message)).await?;
        outcomes.pop().unwrap_or_else(|| Err(DomainError::internal("a batch of one came back empty")))
    }
    /// A message that has not been deleted.
    async fn find(&self, id: MessageId) -> DomainResult<Option<Message>>;
    /// Deleted messages are left out; their seqs stay unused.
    async fn history(&self, room: RoomId, query: &HistoryQuery) -> DomainResult<HistoryPage>;
    /// Replaces the content and sets `edited_at`; `MessageNotFound` if it is gone.
    async fn edit(&self, id: MessageId, content: &MessageContent, at: DateTime<Utc>)
    -> DomainResult<Message>;
    /// Deletes the message; `false` if it was already gone.
    async fn delete(&self, id: MessageId, at: DateTime<Utc>) -> DomainResult<bool>;
}

/// Storage is consulted only when the cache cannot answer; this many of a room's latest messages
/// are kept.
pub const RECENT_MESSAGES: u32 = 100;

/// The answer of [`MessageCache::latest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CachedPage {
    /// The cache knows the room: the page, as storage would answer it, shared with the
    /// cache's other readers.
    Hit(Arc<HistoryPage>),
    /// Read storage, then offer the result to [`MessageCache::fill`] with this ticket.
    Miss(FillTicket),
}

/// What the cache knew of a room when it missed; a fill is refused if the room changed since,
/// so a slow reader can never put back a message that was edited or deleted meanwhile, and a
/// ticket fills at most once, so of readers that missed together a slower one can never replace
/// a newer page with an older one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillTicket(pub u64);

/// The latest messages of each room, so that opening a room needs no database round trip.
/// Every write to storage is reported here after it commits; reads never show a deleted message
/// or an old edit, and never miss a message whose send was acknowledged.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait MessageCache: Send + Sync {
    /// The latest `limit` (at most [`RECENT_MESSAGES`]) messages of the room, if known.
    async fn latest(&self, room: RoomId, limit: u32) -> DomainResult<CachedPage>;
    /// Offers the room's latest [`RECENT_MESSAGES`] messages read from storage after a miss;
    /// `has_more` says whether older ones exist.
    async fn fill(&self, room: RoomId, page: &HistoryPage, ticket: FillTicket) -> DomainResult<()>;
    /// Records messages of one room that storage has just committed, ascending by seq.
    async fn messages_stored(&self, room: RoomId, messages: &[Message]) -> DomainResult<()>;
    /// Replaces a message with its edited version.
    async fn message_edited(&self, message: &Message) -> DomainResult<()>;
    /// Forgets a message storage has just deleted.
    async fn message_deleted(&self, room: RoomId, id: MessageId) -> DomainResult<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_trimmed_and_bounded_in_scalar_values() {
        assert_eq!(MessageContent::parse("  hi <b>  ").expect("valid").as_str(), "hi <b>");
        assert!(MessageContent::parse(" \n\t ").is_err());
        assert!(MessageContent::parse(&"é".repeat(1000)).is_ok());
        assert!(MessageContent::parse(&"é".repeat(1001)).is_err());
    }

    #[test]
    fn client_message_id_rules() {
        assert!(ClientMessageId::parse("").is_err());
        assert!(ClientMessageId::parse("a\u{0}b").is_err());
        assert!(ClientMessageId::parse(&"x".repeat(101)).is_err());
        assert!(ClientMessageId::parse("0192-abc").is_ok());
    }

    #[test]
    fn history_query_rules() {
        let q = HistoryQuery::parse(None, None, None).expect("valid");
        assert!(q.is_latest());
        assert_eq!(q.limit, 50);
        assert!(HistoryQuery::parse(Some(0), None, None).is_err());
        assert!(HistoryQuery::parse(None, Some(-1), None).is_err());
        assert!(HistoryQuery::parse(None, None, Some(101)).is_err());
        assert!(HistoryQuery::parse(Some(10), Some(2), Some(100)).is_ok());
    }
}
