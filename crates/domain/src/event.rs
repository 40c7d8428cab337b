//! Room events: what happened, published after it is stored, to every interested connection on
//! every instance.

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::error::DomainResult;
use crate::id::{MessageId, RoomId, SessionId, UserId};
use crate::message::Message;
use crate::user::UserRef;

/// Something that happened, for live subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    MessageCreated(Message),
    MessageEdited(Message),
    MessageDeleted {
        room_id: RoomId,
        message_id: MessageId,
    },
    MemberJoined {
        room_id: RoomId,
        user: UserRef,
    },
    MemberLeft {
        room_id: RoomId,
        user: UserRef,
    },
    /// A user is typing in the room; nothing is stored.
    Typing {
        room_id: RoomId,
        user: UserRef,
    },
    /// A user's first connection opened (`online`) or last one closed, told to each room of theirs.
    Presence {
        room_id: RoomId,
        user: UserRef,
        online: bool,
    },
    /// These sessions ended (logout, logout-all): their connections must close.
    SessionsRevoked {
        user_id: UserId,
        sessions: Vec<SessionId>,
    },
}

/// Where an event is delivered: the subscribers of a room, or the connections of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    Room(RoomId),
    User(UserId),
}

impl Event {
    pub fn topic(&self) -> Topic {
        match self {
            Self::MessageCreated(message) | Self::MessageEdited(message) => Topic::Room(message.room_id),
            Self::MessageDeleted { room_id, .. }
            | Self::MemberJoined { room_id, .. }
            | Self::MemberLeft { room_id, .. }
            | Self::Typing { room_id, .. }
            | Self::Presence { room_id, .. } => Topic::Room(*room_id),
            Self::SessionsRevoked { user_id, .. } => Topic::User(*user_id),
        }
    }
}

/// A live feed of one topic; dropping it unsubscribes. A receiver that falls more than the
/// channel's capacity behind gets `RecvError::Lagged` and should resynchronise.
pub type EventReceiver = broadcast::Receiver<Event>;

/// Delivers events to subscribers on every instance.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait EventBus: Send + Sync {
    async fn publish(&self, event: Event) -> DomainResult<()>;
    async fn subscribe(&self, topic: Topic) -> DomainResult<EventReceiver>;
}
