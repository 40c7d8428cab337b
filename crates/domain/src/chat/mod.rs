//! The chat use cases: the inbound port [`ChatService`] the api calls, and [`ChatUseCases`],
//! which implements it over the outbound ports [`ChatPorts`]. The use cases are written a
//! module per use case: `rooms` (rooms and memberships), `messages` (sending, reading, editing
//! and deleting) and `live` (a live stream resuming after a seq, typing, presence); this module
//! holds what they share.

mod live;
mod messages;
mod rooms;
#[cfg(test)]
mod test_support;

use std::sync::Arc;

use async_trait::async_trait;

use crate::clock::Clock;
use crate::error::{DomainError, DomainResult};
use crate::event::{Event, EventBus, Subscription, Topic};
use crate::id::{MessageId, RoomId, UserId};
use crate::message::{
    ClientMessageId, HistoryPage, HistoryQuery, Message, MessageCache, MessageContent, MessageRepository,
    Posted,
};
use crate::presence::Presence;
use crate::rate_limit::{RateLimit, RateLimiter};
use crate::room::{DirectoryQuery, Member, Membership, Room, RoomName, RoomRepository, RoomSummary};
use crate::user::{UserRef, UserRepository};

pub use live::{MAX_RESUMED_MESSAGES, Resumption};

/// How a request names a room: by id, or by name as the original service did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomRef {
    /// The room with this id.
    Id(RoomId),
    /// The room with this name, compared ignoring case.
    Name(RoomName),
}

/// The ports the chat use cases need.
#[derive(Clone)]
pub struct ChatPorts {
    /// Where authors and members are looked up.
    pub users: Arc<dyn UserRepository>,
    /// Rooms and their memberships.
    pub rooms: Arc<dyn RoomRepository>,
    /// The durable record of every message, and where seqs are assigned.
    pub messages: Arc<dyn MessageRepository>,
    /// The latest messages of busy rooms, so opening a room skips storage.
    pub cache: Arc<dyn MessageCache>,
    /// Each author's budget of sends.
    pub limiter: Arc<dyn RateLimiter>,
    /// Carries room events to the live connections on every instance.
    pub events: Arc<dyn EventBus>,
    /// Who has a live connection right now, for the members' online flags.
    pub presence: Arc<dyn Presence>,
    /// The time messages and rooms are stamped with.
    pub clock: Arc<dyn Clock>,
}

/// The chat use cases, as the api's REST handlers and WebSocket gateway call them: the inbound
/// port that [`ChatUseCases`] implements.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ChatService: Send + Sync {
    // Rooms and memberships (`rooms.rs`).

    /// Creates a room owned by `owner`, who becomes its first member.
    async fn create_room(&self, owner: UserId, name: RoomName) -> DomainResult<Room>;

    /// The user's rooms, most recently active first.
    async fn rooms_of(&self, user: UserId) -> DomainResult<Vec<RoomSummary>>;

    /// Every room whose name starts with the prefix, by name.
    async fn directory(&self, query: &DirectoryQuery) -> DomainResult<Vec<Room>>;

    /// A room the user belongs to.
    async fn room(&self, user: UserId, room: RoomId) -> DomainResult<Room>;

    /// Adds the user to the room; joining twice changes nothing.
    async fn join(&self, user: UserId, room: RoomId) -> DomainResult<Room>;

    /// Removes the user from the room; leaving twice changes nothing.
    async fn leave(&self, user: UserId, room: RoomId) -> DomainResult<()>;

    /// The room's members with their online flags, for a member.
    async fn members(&self, user: UserId, room: RoomId) -> DomainResult<Vec<Member>>;

    // Messages (`messages.rs`).

    /// Stores a message and tells the room. A retry with the same `client_message_id` returns
    /// the original message (`created: false`) without storing or counting anything.
    async fn send(
        &self,
        author: UserId,
        room: &RoomRef,
        content: MessageContent,
        client_message_id: Option<ClientMessageId>,
    ) -> DomainResult<Posted>;

    /// A page of the room's history, for a member. The latest page comes from the cache when
    /// it can answer.
    async fn history(&self, user: UserId, room: &RoomRef, query: &HistoryQuery) -> DomainResult<HistoryPage>;

    /// Replaces the content of the caller's own message.
    async fn edit(&self, user: UserId, id: MessageId, content: MessageContent) -> DomainResult<Message>;

    /// Deletes a message: the author may delete their own, the room's owner any. Returns the
    /// room it was in.
    async fn delete(&self, user: UserId, id: MessageId) -> DomainResult<RoomId>;

    // The live side of a room (`live.rs`).

    /// For a member opening a room's live stream: the room's latest seq, and with `since` the
    /// messages after it (unless more than [`MAX_RESUMED_MESSAGES`] were missed).
    async fn resume(&self, user: UserId, room: RoomId, since: Option<i64>) -> DomainResult<Resumption>;

    /// The messages of a room with a seq in `after+1 .. before`, for a live stream filling a gap
    /// it noticed (no membership check: the stream is already authorised).
    async fn messages_between(&self, room: RoomId, after: i64, before: i64) -> DomainResult<Vec<Message>>;

    /// The live events of a room or of a user, for a gateway that has already checked the
    /// caller may see them.
    async fn subscribe(&self, topic: Topic) -> DomainResult<Subscription>;

    /// The seq of the room's latest message (0 before the first).
    async fn last_seq(&self, room: RoomId) -> DomainResult<i64>;

    /// Tells the room's other subscribers that `user` is typing; nothing is stored.
    async fn typing(&self, user: &UserRef, room: RoomId) -> DomainResult<()>;

    /// Records a new live connection of `user`; the first one tells every room of theirs.
    async fn connected(&self, user: &UserRef) -> DomainResult<()>;

    /// Records a closed connection of `user`; the last one tells every room of theirs.
    async fn disconnected(&self, user: &UserRef) -> DomainResult<()>;
}

/// The chat use cases, implemented over the outbound ports.
pub struct ChatUseCases {
    ports: ChatPorts,
    /// Messages per user per window, REST and WebSocket together.
    send_limit: RateLimit,
}

impl std::fmt::Debug for ChatUseCases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatUseCases").field("send_limit", &self.send_limit).finish_non_exhaustive()
    }
}

impl ChatUseCases {
    /// The use cases over these ports, with this limit on sending.
    pub fn new(ports: ChatPorts, send_limit: RateLimit) -> Self {
        Self { ports, send_limit }
    }

    async fn resolve(&self, room: &RoomRef) -> DomainResult<RoomId> {
        match room {
            RoomRef::Id(id) => Ok(*id),
            RoomRef::Name(name) => {
                Ok(self.ports.rooms.find_by_name(name).await?.ok_or(DomainError::RoomNotFound)?.id)
            }
        }
    }

    async fn require_member(&self, room: RoomId, user: UserId) -> DomainResult<()> {
        match self.ports.rooms.membership(room, user).await? {
            Membership::Member => Ok(()),
            Membership::Outsider => Err(DomainError::NotAMember),
            Membership::NoSuchRoom => Err(DomainError::RoomNotFound),
        }
    }

    async fn find_room(&self, room: RoomId) -> DomainResult<Room> {
        self.ports.rooms.find(room).await?.ok_or(DomainError::RoomNotFound)
    }

    async fn find_message(&self, id: MessageId) -> DomainResult<Message> {
        self.ports.messages.find(id).await?.ok_or(DomainError::MessageNotFound)
    }

    async fn user_ref(&self, user: UserId) -> DomainResult<UserRef> {
        let user = self.ports.users.find_by_id(user).await?.ok_or(DomainError::Unauthenticated)?;
        Ok(UserRef::from(&user))
    }

    /// Events follow a change that is already stored, so a failure to deliver one is logged
    /// rather than reported as a failure of the change.
    async fn announce(&self, event: Event) {
        if let Err(error) = self.ports.events.publish(event).await {
            tracing::warn!(%error, "could not publish a room event");
        }
    }
}

// Each use case is written in its own module (`rooms.rs`, `messages.rs`, `live.rs`) as an
// inherent method of the same name; inherent methods take precedence over trait methods, so each
// call below runs that method.
#[async_trait]
impl ChatService for ChatUseCases {
    async fn create_room(&self, owner: UserId, name: RoomName) -> DomainResult<Room> {
        ChatUseCases::create_room(self, owner, name).await
    }

    async fn rooms_of(&self, user: UserId) -> DomainResult<Vec<RoomSummary>> {
        ChatUseCases::rooms_of(self, user).await
    }

    async fn directory(&self, query: &DirectoryQuery) -> DomainResult<Vec<Room>> {
        ChatUseCases::directory(self, query).await
    }

    async fn room(&self, user: UserId, room: RoomId) -> DomainResult<Room> {
        ChatUseCases::room(self, user, room).await
    }

    async fn join(&self, user: UserId, room: RoomId) -> DomainResult<Room> {
        ChatUseCases::join(self, user, room).await
    }

    async fn leave(&self, user: UserId, room: RoomId) -> DomainResult<()> {
        ChatUseCases::leave(self, user, room).await
    }

    async fn members(&self, user: UserId, room: RoomId) -> DomainResult<Vec<Member>> {
        ChatUseCases::members(self, user, room).await
    }

    async fn send(
        &self,
        author: UserId,
        room: &RoomRef,
        content: MessageContent,
        client_message_id: Option<ClientMessageId>,
    ) -> DomainResult<Posted> {
        ChatUseCases::send(self, author, room, content, client_message_id).await
    }

    async fn history(&self, user: UserId, room: &RoomRef, query: &HistoryQuery) -> DomainResult<HistoryPage> {
        ChatUseCases::history(self, user, room, query).await
    }

    async fn edit(&self, user: UserId, id: MessageId, content: MessageContent) -> DomainResult<Message> {
        ChatUseCases::edit(self, user, id, content).await
    }

    async fn delete(&self, user: UserId, id: MessageId) -> DomainResult<RoomId> {
        ChatUseCases::delete(self, user, id).await
    }

    async fn resume(&self, user: UserId, room: RoomId, since: Option<i64>) -> DomainResult<Resumption> {
        ChatUseCases::resume(self, user, room, since).await
    }

    async fn messages_between(&self, room: RoomId, after: i64, before: i64) -> DomainResult<Vec<Message>> {
        ChatUseCases::messages_between(self, room, after, before).await
    }

    async fn subscribe(&self, topic: Topic) -> DomainResult<Subscription> {
        ChatUseCases::subscribe(self, topic).await
    }

    async fn last_seq(&self, room: RoomId) -> DomainResult<i64> {
        ChatUseCases::last_seq(self, room).await
    }

    async fn typing(&self, user: &UserRef, room: RoomId) -> DomainResult<()> {
        ChatUseCases::typing(self, user, room).await
    }

    async fn connected(&self, user: &UserRef) -> DomainResult<()> {
        ChatUseCases::connected(self, user).await
    }

    async fn disconnected(&self, user: &UserRef) -> DomainResult<()> {
        ChatUseCases::disconnected(self, user).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::test_support::Mocks;
    use crate::message::HistoryQuery;
    use crate::room::Membership;

    #[tokio::test]
    async fn outsiders_and_missing_rooms_are_told_apart() {
        let outsider: fn(&DomainError) -> bool = |error| matches!(error, DomainError::NotAMember);
        let missing: fn(&DomainError) -> bool = |error| matches!(error, DomainError::RoomNotFound);
        for (membership, expected) in [(Membership::Outsider, outsider), (Membership::NoSuchRoom, missing)] {
            let mut mocks = Mocks::new();
            mocks.rooms.expect_membership().returning(move |_, _| Ok(membership));
            let service = mocks.service();
            let room = RoomRef::Id(RoomId::generate());
            let error =
                service.history(UserId::generate(), &room, &HistoryQuery::latest(5)).await.unwrap_err();
            assert!(expected(&error), "{error:?}");
            let error = service.members(UserId::generate(), RoomId::generate()).await.unwrap_err();
            assert!(expected(&error), "{error:?}");
        }
    }
}
