//! The chat use cases, a module per use case: `rooms` (rooms and memberships), `messages`
//! (sending, reading, editing and deleting) and `live` (a live stream resuming after a seq,
//! typing, presence). This module holds the service they share, its ports and the helpers
//! they have in common.

mod live;
mod messages;
mod rooms;
#[cfg(test)]
mod test_support;

use std::sync::Arc;

use crate::clock::Clock;
use crate::error::{DomainError, DomainResult};
use crate::event::{Event, EventBus};
use crate::id::{MessageId, RoomId, UserId};
use crate::message::{Message, MessageCache, MessageRepository};
use crate::presence::Presence;
use crate::rate_limit::{RateLimit, RateLimiter};
use crate::room::{Membership, Room, RoomName, RoomRepository};
use crate::user::{UserRef, UserRepository};

pub use live::{MAX_RESUMED_MESSAGES, Resumption};

/// How a request names a room: by id, or by name as the original service did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomRef {
    Id(RoomId),
    Name(RoomName),
}

/// The ports the chat use cases need.
#[derive(Clone)]
pub struct ChatPorts {
    pub users: Arc<dyn UserRepository>,
    pub rooms: Arc<dyn RoomRepository>,
    pub messages: Arc<dyn MessageRepository>,
    pub cache: Arc<dyn MessageCache>,
    pub limiter: Arc<dyn RateLimiter>,
    pub events: Arc<dyn EventBus>,
    pub presence: Arc<dyn Presence>,
    pub clock: Arc<dyn Clock>,
}

/// Rooms, memberships and messages.
pub struct ChatService {
    ports: ChatPorts,
    /// Messages per user per window, REST and WebSocket together.
    send_limit: RateLimit,
}

impl std::fmt::Debug for ChatService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatService").field("send_limit", &self.send_limit).finish_non_exhaustive()
    }
}

impl ChatService {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::test_support::Mocks;
    use crate::message::HistoryQuery;
    use crate::room::Membership;

    #[tokio::test]
    async fn outsiders_and_missing_rooms_are_told_apart() {
        for (membership, code) in
            [(Membership::Outsider, "NOT_A_MEMBER"), (Membership::NoSuchRoom, "ROOM_NOT_FOUND")]
        {
            let mut mocks = Mocks::new();
            mocks.rooms.expect_membership().returning(move |_, _| Ok(membership));
            let service = mocks.service();
            let room = RoomRef::Id(RoomId::generate());
            let error =
                service.history(UserId::generate(), &room, &HistoryQuery::latest(5)).await.unwrap_err();
            assert_eq!(error.code(), code);
            let error = service.members(UserId::generate(), RoomId::generate()).await.unwrap_err();
            assert_eq!(error.code(), code);
        }
    }
}
