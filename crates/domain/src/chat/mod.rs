//! The chat use cases: [`ChatUseCases`], over the outbound ports [`ChatPorts`], implements one
//! inbound port per use case, each declared and implemented in its own module: [`RoomService`]
//! (`rooms`: rooms and memberships), [`MessageService`] (`messages`: sending, reading, editing
//! and deleting) and [`LiveService`] (`live`: a live stream resuming after a seq, typing,
//! presence). The api depends on the ports it calls; this module holds what they share.
//! [`RoomStream`] (`room_stream`) puts a room's live events in the order its clients must see
//! them, whatever gateway delivers them. `room_memory` lets a member's reads skip storage: it
//! remembers the rooms names stand for and the memberships storage confirmed, kept correct by
//! the announcements of ended memberships every instance hears.

mod live;
mod messages;
mod room_memory;
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
use crate::remembered::Lookup;
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
    /// Room names and memberships, remembered so that a member's reads skip storage.
    memory: room_memory::RoomMemory,
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
                rooms: Arc::clone(&ports.rooms),
            },
            messages::retried_send,
        );
        let memory = room_memory::RoomMemory::new(Arc::clone(&ports.events));
        Self { ports, sequencer, memory }
    }

    /// The room's id; a name is looked up in storage only the first time in a while.
    async fn resolve(&self, room: &RoomRef) -> DomainResult<RoomId> {
        match room {
            RoomRef::Id(id) => Ok(*id),
            RoomRef::Name(name) => {
                let key = name.key();
                if let Some(id) = self.memory.room_named(&key) {
                    return Ok(id);
                }
                let id = self.ports.rooms.find_by_name(name).await?.ok_or(DomainError::RoomNotFound)?.id;
                self.memory.name_found(key, id);
                Ok(id)
            }
        }
    }

    /// Refuses a user who does not belong to the room. A membership confirmed recently is
    /// trusted from memory; anything else asks storage.
    async fn require_member(&self, room: RoomId, user: UserId) -> DomainResult<()> {
        let Lookup::Ask(checkpoint) = self.memory.membership(room, user).await else { return Ok(()) };
        match self.ports.rooms.membership(room, user).await? {
            Membership::Member => {
                if let Some(checkpoint) = checkpoint {
                    self.memory.member_found(room, user, checkpoint);
                }
                Ok(())
            }
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

    /// [`Self::announce`] for several events, sent together.
    async fn announce_all(&self, events: Vec<Event>) {
        if let Err(error) = self.ports.events.publish_all(events).await {
            tracing::warn!(%error, "could not publish room events");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use chrono::Utc;

    use super::*;
    use crate::chat::test_support::Mocks;
    use crate::message::{CachedPage, HistoryQuery};
    use crate::room::Membership;
    use crate::user::{Email, User, Username};

    fn room(id: RoomId, name: &str) -> Room {
        let name = RoomName::parse(name).unwrap();
        Room { id, name, owner_id: UserId::generate(), created_at: Utc::now(), member_count: 1, last_seq: 0 }
    }

    /// Mocks of a bus that hears every instance and a cache that answers every latest page.
    fn hearing_mocks() -> Mocks {
        let mut mocks = Mocks::new();
        mocks.hears_announcements = true;
        mocks.cache.expect_latest().returning(|_, _| Ok(CachedPage::Hit(Arc::default())));
        mocks
    }

    #[tokio::test]
    async fn a_members_repeated_reads_by_name_skip_storage() {
        let (general, ada) = (RoomId::generate(), UserId::generate());
        let mut mocks = hearing_mocks();
        mocks.rooms.expect_find_by_name().times(1).returning(move |_| Ok(Some(room(general, "General"))));
        // The first check starts following the ends of memberships, the second is remembered.
        mocks
            .rooms
            .expect_membership()
            .withf(move |in_room, user| *in_room == general && *user == ada)
            .times(2)
            .returning(|_, _| Ok(Membership::Member));
        let service = mocks.service();
        for name in ["general", "GENERAL", "General", "general"] {
            let room = RoomRef::Name(RoomName::parse(name).unwrap());
            service.history(ada, &room, &HistoryQuery::latest(5)).await.unwrap();
        }
    }

    #[tokio::test]
    async fn refusals_and_unknown_names_are_always_asked_again() {
        let mut mocks = hearing_mocks();
        mocks.rooms.expect_find_by_name().times(3).returning(|_| Ok(None));
        mocks.rooms.expect_membership().times(3).returning(|_, _| Ok(Membership::Outsider));
        let service = mocks.service();
        let (nowhere, general) = (RoomRef::Name(RoomName::parse("nowhere").unwrap()), RoomId::generate());
        for _ in 0..3 {
            let error = service.history(UserId::generate(), &nowhere, &HistoryQuery::latest(5)).await;
            assert!(matches!(error, Err(DomainError::RoomNotFound)), "{error:?}");
            let error =
                service.history(UserId::generate(), &RoomRef::Id(general), &HistoryQuery::latest(5)).await;
            assert!(matches!(error, Err(DomainError::NotAMember)), "{error:?}");
        }
    }

    #[tokio::test]
    async fn a_member_who_leaves_here_is_refused_at_once_and_every_instance_is_told() {
        let (general, ada) = (RoomId::generate(), UserId::generate());
        let mut mocks = hearing_mocks();
        let left = Arc::new(AtomicUsize::new(0));
        let gone = Arc::clone(&left);
        mocks.rooms.expect_membership().times(3).returning(move |_, _| {
            Ok(if gone.load(Ordering::SeqCst) == 0 { Membership::Member } else { Membership::Outsider })
        });
        mocks.rooms.expect_find().returning(move |id| Ok(Some(room(id, "general"))));
        let leaving = Arc::clone(&left);
        mocks
            .rooms
            .expect_leave()
            .times(1)
            .returning(move |_, _| Ok(leaving.fetch_add(1, Ordering::SeqCst) == 0));
        mocks.users.expect_find_by_id().returning(|id| {
            let (email, username) =
                (Email::parse("ada@example.com").unwrap(), Username::parse("ada").unwrap());
            Ok(Some(User { id, email, username, created_at: Utc::now() }))
        });
        mocks
            .events
            .expect_publish_all()
            .withf(move |events| {
                matches!(events.as_slice(), [
                    Event::MembershipEnded { room_id, user_id },
                    Event::MemberLeft { room_id: left_room, user },
                ] if *room_id == general && *user_id == ada && *left_room == general && user.id == ada)
            })
            .times(1)
            .returning(|_| Ok(()));
        let service = mocks.service();
        let (room_ref, latest) = (RoomRef::Id(general), HistoryQuery::latest(5));
        let read = || service.history(ada, &room_ref, &latest);
        for _ in 0..3 {
            read().await.unwrap();
        }
        service.leave(ada, general).await.unwrap();
        let error = read().await.unwrap_err();
        assert!(matches!(error, DomainError::NotAMember), "{error:?}");
    }

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
