//! The chat use cases: [`ChatUseCases`], over the outbound ports [`ChatPorts`], implements one
//! inbound port per use case, each declared and implemented in its own module: [`RoomService`]
//! (`rooms`: rooms and memberships), [`MessageService`] (`messages`: sending, reading, editing
//! and deleting) and [`LiveService`] (`live`: a live stream resuming after a seq, typing,
//! presence). The api depends on the ports it calls; this module holds what they share.
//! [`RoomStream`] (`room_stream`) puts a room's live events in the order its clients must see
//! them, whatever gateway delivers them.

mod live;
mod messages;
mod room_stream;
mod rooms;
mod sequencer;
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

#[cfg(any(test, feature = "mocks"))]
pub use live::MockLiveService;
pub use live::{LiveService, MAX_RESUMED_MESSAGES, Resumption};
pub use messages::MessageService;
#[cfg(any(test, feature = "mocks"))]
pub use messages::MockMessageService;
pub use room_stream::{GAP_WAIT, MAX_EARLY, Resume, ResumeCause, RoomStream};
#[cfg(any(test, feature = "mocks"))]
pub use rooms::MockRoomService;
pub use rooms::RoomService;
pub use sequencer::{MAX_BATCH, QueuedSend};

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

/// The chat use cases, implemented over the outbound ports: the [`RoomService`],
/// [`MessageService`] and [`LiveService`] the api calls.
pub struct ChatUseCases {
    ports: ChatPorts,
    /// Where sends queue per room, to be stored in batches.
    sequencer: Arc<sequencer::Sequencer>,
}

impl std::fmt::Debug for ChatUseCases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatUseCases")
            .field("send_limit", &self.sequencer.send_limit())
            .finish_non_exhaustive()
    }
}

impl ChatUseCases {
    /// The use cases over these ports, with this limit on sending.
    pub fn new(ports: ChatPorts, send_limit: RateLimit) -> Self {
        let sequencer = sequencer::Sequencer::new(
            sequencer::SequencerPorts {
                limiter: Arc::clone(&ports.limiter),
                send_limit,
                messages: Arc::clone(&ports.messages),
                cache: Arc::clone(&ports.cache),
                events: Arc::clone(&ports.events),
            },
            messages::retried_send,
        );
        Self { ports, sequencer }
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
