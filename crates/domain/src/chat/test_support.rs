//! Mock ports for the chat use cases' unit tests.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use mockall::predicate::eq;

use super::{ChatPorts, ChatUseCases};
use crate::clock::MockClock;
use crate::event::{MockEventBus, Subscription, Topic};
use crate::id::{MessageId, RoomId, UserId};
use crate::message::{Message, MessageContent, MockMessageCache, MockMessageRepository};
use crate::presence::MockPresence;
use crate::rate_limit::{MockRateLimiter, RateLimit};
use crate::room::{Membership, MockRoomRepository};
use crate::user::{MockUserRepository, UserRef, Username};

pub(super) struct Mocks {
    pub(super) users: MockUserRepository,
    pub(super) rooms: MockRoomRepository,
    pub(super) messages: MockMessageRepository,
    pub(super) cache: MockMessageCache,
    pub(super) limiter: MockRateLimiter,
    pub(super) events: MockEventBus,
    pub(super) presence: MockPresence,
    /// Whether the bus hears every instance, so that memberships may be trusted from memory.
    pub(super) hears_announcements: bool,
}

pub(super) const SEND_LIMIT: RateLimit = RateLimit { points: 5, window: Duration::from_secs(10) };

impl Mocks {
    pub(super) fn new() -> Self {
        Self {
            users: MockUserRepository::new(),
            rooms: MockRoomRepository::new(),
            messages: MockMessageRepository::new(),
            cache: MockMessageCache::new(),
            limiter: MockRateLimiter::new(),
            events: MockEventBus::new(),
            presence: MockPresence::new(),
            hears_announcements: false,
        }
    }

    pub(super) fn member_of_every_room(&mut self) {
        self.rooms.expect_membership().returning(|_, _| Ok(Membership::Member));
    }

    pub(super) fn service(mut self) -> ChatUseCases {
        let mark = self.hears_announcements.then_some(0);
        self.events.expect_continuity().returning(move || mark);
        let (announcements, _) = tokio::sync::broadcast::channel(4);
        self.events
            .expect_subscribe()
            .with(eq(Topic::Memberships))
            .returning(move |_| Ok(Subscription::new(announcements.subscribe())));
        let mut clock = MockClock::new();
        clock.expect_now().returning(|| Utc.timestamp_opt(1_800_000_000, 0).unwrap());
        ChatUseCases::new(
            ChatPorts {
                users: Arc::new(self.users),
                rooms: Arc::new(self.rooms),
                messages: Arc::new(self.messages),
                cache: Arc::new(self.cache),
                limiter: Arc::new(self.limiter),
                events: Arc::new(self.events),
                presence: Arc::new(self.presence),
                clock: Arc::new(clock),
            },
            SEND_LIMIT,
        )
    }
}

pub(super) fn message(room: RoomId, author: UserId, seq: i64) -> Message {
    Message {
        id: MessageId::generate(),
        room_id: room,
        seq,
        author: UserRef { id: author, username: Username::parse("ada").unwrap() },
        content: MessageContent::parse(&format!("m{seq}")).unwrap(),
        created_at: Utc.timestamp_opt(1_800_000_000, 0).unwrap(),
        edited_at: None,
        client_message_id: None,
    }
}
