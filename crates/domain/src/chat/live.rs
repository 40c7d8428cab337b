//! The live side of a room: a stream resuming after the last seq it saw, filling gaps, typing
//! and presence. The inbound port [`LiveService`] and its implementation by [`ChatUseCases`].

use async_trait::async_trait;

use super::ChatUseCases;
use crate::error::DomainResult;
use crate::event::{Event, Subscription, Topic};
use crate::id::{RoomId, UserId};
use crate::message::{HistoryQuery, Message, RECENT_MESSAGES};
use crate::user::UserRef;

/// A `join` with `sinceSeq` resumes with at most this many missed messages; past it, the
/// client is told to read history over REST.
pub const MAX_RESUMED_MESSAGES: i64 = 1000;

/// What a resuming live stream missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumption {
    /// The missed messages, ascending by seq (empty when truncated).
    pub messages: Vec<Message>,
    /// The highest seq the resumption covers: live messages above it follow.
    pub last_seq: i64,
    /// More than [`MAX_RESUMED_MESSAGES`] were missed; none is included.
    pub truncated: bool,
}

/// The live side of rooms, as the api's WebSocket gateway calls it: the inbound port that
/// [`ChatUseCases`] implements.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait LiveService: Send + Sync {
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

#[async_trait]
impl LiveService for ChatUseCases {
    async fn resume(&self, user: UserId, room: RoomId, since: Option<i64>) -> DomainResult<Resumption> {
        self.require_member(room, user).await?;
        let last_seq = self.find_room(room).await?.last_seq;
        let Some(since) = since else {
            return Ok(Resumption { messages: Vec::new(), last_seq, truncated: false });
        };
        if last_seq - since > MAX_RESUMED_MESSAGES {
            return Ok(Resumption { messages: Vec::new(), last_seq, truncated: true });
        }
        let messages =
            if since < last_seq { self.read_after(room, since.max(0), None).await? } else { Vec::new() };
        // Messages committed while paging are included too; the live stream starts above them.
        let last_seq = messages.last().map_or(last_seq, |message| message.seq.max(last_seq));
        Ok(Resumption { messages, last_seq, truncated: false })
    }

    async fn messages_between(&self, room: RoomId, after: i64, before: i64) -> DomainResult<Vec<Message>> {
        if after + 1 >= before {
            return Ok(Vec::new());
        }
        self.read_after(room, after, Some(before)).await
    }

    async fn subscribe(&self, topic: Topic) -> DomainResult<Subscription> {
        self.ports.events.subscribe(topic).await
    }

    async fn last_seq(&self, room: RoomId) -> DomainResult<i64> {
        Ok(self.find_room(room).await?.last_seq)
    }

    async fn typing(&self, user: &UserRef, room: RoomId) -> DomainResult<()> {
        self.require_member(room, user.id).await?;
        self.announce(Event::Typing { room_id: room, user: user.clone() }).await;
        Ok(())
    }

    async fn connected(&self, user: &UserRef) -> DomainResult<()> {
        if self.ports.presence.connected(user.id).await? {
            self.announce_presence(user, true).await?;
        }
        Ok(())
    }

    async fn disconnected(&self, user: &UserRef) -> DomainResult<()> {
        if self.ports.presence.disconnected(user.id).await? {
            self.announce_presence(user, false).await?;
        }
        Ok(())
    }
}

impl ChatUseCases {
    /// Every message of the room with a seq above `after` (and below `before`), a page at a time.
    async fn read_after(
        &self,
        room: RoomId,
        mut after: i64,
        before: Option<i64>,
    ) -> DomainResult<Vec<Message>> {
        let mut messages = Vec::new();
        loop {
            let query = HistoryQuery { before, after: Some(after), limit: RECENT_MESSAGES };
            let page = self.ports.messages.history(room, &query).await?;
            let Some(last) = page.messages.last() else { break };
            after = last.seq;
            messages.extend(page.messages);
            if !page.has_more {
                break;
            }
        }
        Ok(messages)
    }

    async fn announce_presence(&self, user: &UserRef, online: bool) -> DomainResult<()> {
        for summary in self.ports.rooms.rooms_of(user.id).await? {
            self.announce(Event::Presence { room_id: summary.room.id, user: user.clone(), online }).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::chat::test_support::{Mocks, message};
    use crate::message::HistoryPage;
    use crate::room::{Room, RoomName, RoomSummary};
    use crate::user::Username;

    fn room(id: RoomId, owner: UserId, last_seq: i64) -> Room {
        Room {
            id,
            name: RoomName::parse("r").unwrap(),
            owner_id: owner,
            created_at: Utc::now(),
            member_count: 1,
            last_seq,
        }
    }

    #[tokio::test]
    async fn a_join_without_since_only_reports_the_latest_seq() {
        let (room_id, user) = (RoomId::generate(), UserId::generate());
        let mut mocks = Mocks::new();
        mocks.member_of_every_room();
        mocks.rooms.expect_find().returning(move |_| Ok(Some(room(room_id, user, 12))));
        mocks.messages.expect_history().never();
        let resumption = mocks.service().resume(user, room_id, None).await.unwrap();
        assert_eq!(resumption, Resumption { messages: Vec::new(), last_seq: 12, truncated: false });
    }

    #[tokio::test]
    async fn a_long_absence_is_truncated_without_reading_history() {
        let (room_id, user) = (RoomId::generate(), UserId::generate());
        let mut mocks = Mocks::new();
        mocks.member_of_every_room();
        mocks.rooms.expect_find().returning(move |_| Ok(Some(room(room_id, user, 1500))));
        mocks.messages.expect_history().never();
        let resumption = mocks.service().resume(user, room_id, Some(499)).await.unwrap();
        assert!(resumption.truncated);
        assert_eq!(resumption.last_seq, 1500);
        let resumed_in_full = {
            let mut mocks = Mocks::new();
            mocks.member_of_every_room();
            mocks.rooms.expect_find().returning(move |_| Ok(Some(room(room_id, user, 1500))));
            mocks.messages.expect_history().returning(|_, _| Ok(HistoryPage::default()));
            mocks.service().resume(user, room_id, Some(500)).await.unwrap()
        };
        assert!(!resumed_in_full.truncated, "exactly 1000 missed are still included");
    }

    #[tokio::test]
    async fn a_resumption_pages_through_everything_after_since() {
        let (room_id, user) = (RoomId::generate(), UserId::generate());
        let mut mocks = Mocks::new();
        mocks.member_of_every_room();
        mocks.rooms.expect_find().returning(move |_| Ok(Some(room(room_id, user, 250))));
        mocks.messages.expect_history().times(2).returning(move |_, query| {
            let after = query.after.unwrap();
            let top = (after + i64::from(query.limit)).min(250);
            Ok(HistoryPage::new(
                (after + 1..=top).map(|seq| message(room_id, user, seq)).collect(),
                top < 250,
            ))
        });
        let resumption = mocks.service().resume(user, room_id, Some(50)).await.unwrap();
        let seqs: Vec<i64> = resumption.messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (51..=250).collect::<Vec<_>>());
        assert_eq!(resumption.last_seq, 250);
    }

    #[tokio::test]
    async fn only_the_first_connection_announces_presence_to_each_room() {
        let user = UserRef { id: UserId::generate(), username: Username::parse("ada").unwrap() };
        let rooms = [RoomId::generate(), RoomId::generate()];
        let mut mocks = Mocks::new();
        let mut first = true;
        mocks
            .presence
            .expect_connected()
            .times(2)
            .returning(move |_| Ok(std::mem::replace(&mut first, false)));
        let id = user.id;
        mocks.rooms.expect_rooms_of().times(1).returning(move |_| {
            Ok(rooms
                .iter()
                .map(|r| RoomSummary { room: room(*r, id, 0), joined_at: Utc::now(), last_message_at: None })
                .collect())
        });
        mocks
            .events
            .expect_publish()
            .withf(move |event| matches!(event, Event::Presence { online: true, user, .. } if user.id == id))
            .times(2)
            .returning(|_| Ok(()));
        let service = mocks.service();
        service.connected(&user).await.unwrap();
        service.connected(&user).await.unwrap();
    }
}
