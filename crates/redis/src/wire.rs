//! What Convo keeps in Redis and sends over pub/sub, as JSON. The domain types have no serde on
//! purpose, so the formats live here, each a plain mirror of its domain type (ids as UUIDs).

use chrono::{DateTime, Utc};
use convo_domain::{
    ClientMessageId, DomainError, DomainResult, Event, Message, MessageContent, MessageId, RoomId, SessionId,
    UserId, UserRef, Username,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireMessage {
    id: Uuid,
    room: Uuid,
    seq: i64,
    author: WireUser,
    content: String,
    created: DateTime<Utc>,
    #[serde(default)]
    edited: Option<DateTime<Utc>>,
    #[serde(default)]
    client_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireUser {
    id: Uuid,
    name: String,
}

impl From<&UserRef> for WireUser {
    fn from(user: &UserRef) -> Self {
        Self { id: user.id.as_uuid(), name: user.username.as_str().to_owned() }
    }
}

impl From<WireUser> for UserRef {
    fn from(user: WireUser) -> Self {
        Self { id: UserId::from(user.id), username: Username::from_trusted(user.name) }
    }
}

impl From<&Message> for WireMessage {
    fn from(message: &Message) -> Self {
        Self {
            id: message.id.as_uuid(),
            room: message.room_id.as_uuid(),
            seq: message.seq,
            author: WireUser::from(&message.author),
            content: message.content.as_str().to_owned(),
            created: message.created_at,
            edited: message.edited_at,
            client_id: message.client_message_id.as_ref().map(|id| id.as_str().to_owned()),
        }
    }
}

impl From<WireMessage> for Message {
    fn from(wire: WireMessage) -> Self {
        Self {
            id: MessageId::from(wire.id),
            room_id: RoomId::from(wire.room),
            seq: wire.seq,
            author: wire.author.into(),
            content: MessageContent::from_trusted(wire.content),
            created_at: wire.created,
            edited_at: wire.edited,
            client_message_id: wire.client_id.map(ClientMessageId::from_trusted),
        }
    }
}

pub(crate) fn encode_message(message: &Message) -> String {
    // Serialising plain strings, numbers and ids cannot fail.
    serde_json::to_string(&WireMessage::from(message)).unwrap_or_default()
}

pub(crate) fn decode_message(json: &str) -> DomainResult<Message> {
    serde_json::from_str::<WireMessage>(json).map(Message::from).map_err(DomainError::internal)
}

/// One pub/sub payload: an event, or a fence a subscriber publishes to itself to learn that
/// everything published before has gone by.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "camelCase")]
pub(crate) enum WireEvent {
    Created {
        message: WireMessage,
    },
    Edited {
        message: WireMessage,
    },
    Deleted {
        room: Uuid,
        message: Uuid,
        /// Instances from before deletions carried their seq leave it out. 0 lies below every
        /// seq, so a live stream passes such a deletion on at once, as those instances did.
        #[serde(default)]
        seq: i64,
    },
    Joined {
        room: Uuid,
        user: WireUser,
    },
    Left {
        room: Uuid,
        user: WireUser,
    },
    Typing {
        room: Uuid,
        user: WireUser,
    },
    Presence {
        room: Uuid,
        user: WireUser,
        online: bool,
    },
    Ended {
        room: Uuid,
        user: Uuid,
    },
    Revoked {
        user: Uuid,
        sessions: Vec<Uuid>,
    },
    Fence {
        token: u64,
    },
}

impl From<&Event> for WireEvent {
    fn from(event: &Event) -> Self {
        match event {
            Event::MessageCreated(message) => Self::Created { message: message.into() },
            Event::MessageEdited(message) => Self::Edited { message: message.into() },
            Event::MessageDeleted { room_id, message_id, seq } => {
                Self::Deleted { room: room_id.as_uuid(), message: message_id.as_uuid(), seq: *seq }
            }
            Event::MemberJoined { room_id, user } => {
                Self::Joined { room: room_id.as_uuid(), user: user.into() }
            }
            Event::MemberLeft { room_id, user } => Self::Left { room: room_id.as_uuid(), user: user.into() },
            Event::Typing { room_id, user } => Self::Typing { room: room_id.as_uuid(), user: user.into() },
            Event::Presence { room_id, user, online } => {
                Self::Presence { room: room_id.as_uuid(), user: user.into(), online: *online }
            }
            Event::MembershipEnded { room_id, user_id } => {
                Self::Ended { room: room_id.as_uuid(), user: user_id.as_uuid() }
            }
            Event::SessionsRevoked { user_id, sessions } => Self::Revoked {
                user: user_id.as_uuid(),
                sessions: sessions.iter().map(SessionId::as_uuid).collect(),
            },
        }
    }
}

impl WireEvent {
    /// The domain event, or `None` for a fence.
    pub(crate) fn into_event(self) -> Option<Event> {
        Some(match self {
            Self::Created { message } => Event::MessageCreated(message.into()),
            Self::Edited { message } => Event::MessageEdited(message.into()),
            Self::Deleted { room, message, seq } => Event::MessageDeleted {
                room_id: RoomId::from(room),
                message_id: MessageId::from(message),
                seq,
            },
            Self::Joined { room, user } => {
                Event::MemberJoined { room_id: RoomId::from(room), user: user.into() }
            }
            Self::Left { room, user } => Event::MemberLeft { room_id: RoomId::from(room), user: user.into() },
            Self::Typing { room, user } => Event::Typing { room_id: RoomId::from(room), user: user.into() },
            Self::Presence { room, user, online } => {
                Event::Presence { room_id: RoomId::from(room), user: user.into(), online }
            }
            Self::Ended { room, user } => {
                Event::MembershipEnded { room_id: RoomId::from(room), user_id: UserId::from(user) }
            }
            Self::Revoked { user, sessions } => Event::SessionsRevoked {
                user_id: UserId::from(user),
                sessions: sessions.into_iter().map(SessionId::from).collect(),
            },
            Self::Fence { .. } => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Message {
        Message {
            id: MessageId::generate(),
            room_id: RoomId::generate(),
            seq: 7,
            author: UserRef { id: UserId::generate(), username: Username::from_trusted("ada".to_owned()) },
            content: MessageContent::from_trusted("héllo <b>".to_owned()),
            created_at: Utc::now(),
            edited_at: Some(Utc::now()),
            client_message_id: Some(ClientMessageId::from_trusted("c-1".to_owned())),
        }
    }

    #[test]
    fn messages_round_trip() {
        let original = message();
        assert_eq!(decode_message(&encode_message(&original)).expect("decodes"), original);
    }

    #[test]
    fn every_event_round_trips() {
        let m = message();
        let user = m.author.clone();
        let room = m.room_id;
        let events = [
            Event::MessageCreated(m.clone()),
            Event::MessageEdited(m.clone()),
            Event::MessageDeleted { room_id: room, message_id: m.id, seq: m.seq },
            Event::MemberJoined { room_id: room, user: user.clone() },
            Event::MemberLeft { room_id: room, user: user.clone() },
            Event::Typing { room_id: room, user: user.clone() },
            Event::Presence { room_id: room, user, online: true },
            Event::MembershipEnded { room_id: room, user_id: UserId::generate() },
            Event::SessionsRevoked { user_id: UserId::generate(), sessions: vec![SessionId::generate()] },
        ];
        for event in events {
            let json = serde_json::to_string(&WireEvent::from(&event)).expect("encodes");
            let back: WireEvent = serde_json::from_str(&json).expect("decodes");
            assert_eq!(back.into_event(), Some(event));
        }
    }

    #[test]
    fn a_deletion_published_without_its_seq_still_decodes() {
        let (room, message) = (Uuid::new_v4(), Uuid::new_v4());
        let json = format!(r#"{{"t":"deleted","room":"{room}","message":"{message}"}}"#);
        let wire: WireEvent = serde_json::from_str(&json).expect("decodes");
        assert_eq!(
            wire.into_event(),
            Some(Event::MessageDeleted {
                room_id: RoomId::from(room),
                message_id: MessageId::from(message),
                seq: 0
            })
        );
    }
}
