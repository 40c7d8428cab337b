//! The chat use cases: rooms, memberships, sending and reading messages.

use std::sync::Arc;

use crate::clock::Clock;
use crate::error::{DomainError, DomainResult, ValidationError};
use crate::event::{Event, EventBus, EventReceiver, Topic};
use crate::id::{MessageId, RoomId, UserId};
use crate::message::{
    CachedPage, ClientMessageId, HistoryPage, HistoryQuery, Message, MessageCache, MessageContent,
    MessageRepository, NewMessage, Posted, RECENT_MESSAGES,
};
use crate::presence::Presence;
use crate::rate_limit::{RateDecision, RateLimit, RateLimiter};
use crate::room::{DirectoryQuery, Member, Membership, NewRoom, Room, RoomName, RoomRepository, RoomSummary};
use crate::user::{UserRef, UserRepository};

/// How a request names a room: by id, or by name as the original service did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomRef {
    Id(RoomId),
    Name(RoomName),
}

/// A `join` with `sinceSeq` replays at most this many missed messages; past it, the client is
/// told to read history over REST.
pub const MAX_REPLAY: i64 = 1000;

/// What a resuming connection missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// The missed messages, ascending by seq (empty when truncated).
    pub messages: Vec<Message>,
    /// The highest seq the replay covers: live messages above it follow.
    pub last_seq: i64,
    /// More than [`MAX_REPLAY`] were missed; nothing was replayed.
    pub truncated: bool,
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

    /// Creates a room owned by `owner`, who becomes its first member.
    pub async fn create_room(&self, owner: UserId, name: RoomName) -> DomainResult<Room> {
        let room =
            NewRoom { id: RoomId::generate(), name, owner_id: owner, created_at: self.ports.clock.now() };
        self.ports.rooms.create(&room).await
    }

    /// The user's rooms, most recently active first.
    pub async fn rooms_of(&self, user: UserId) -> DomainResult<Vec<RoomSummary>> {
        self.ports.rooms.rooms_of(user).await
    }

    /// Every room whose name starts with the prefix, by name.
    pub async fn directory(&self, query: &DirectoryQuery) -> DomainResult<Vec<Room>> {
        self.ports.rooms.directory(query).await
    }

    /// A room the user belongs to.
    pub async fn room(&self, user: UserId, room: RoomId) -> DomainResult<Room> {
        self.require_member(room, user).await?;
        self.find_room(room).await
    }

    /// Adds the user to the room; joining twice changes nothing.
    pub async fn join(&self, user: UserId, room: RoomId) -> DomainResult<Room> {
        if self.ports.rooms.join(room, user, self.ports.clock.now()).await? {
            let user = self.user_ref(user).await?;
            self.announce(Event::MemberJoined { room_id: room, user }).await;
        }
        self.find_room(room).await
    }

    /// Removes the user from the room; leaving twice changes nothing.
    pub async fn leave(&self, user: UserId, room: RoomId) -> DomainResult<()> {
        self.find_room(room).await?;
        if self.ports.rooms.leave(room, user).await? {
            let user = self.user_ref(user).await?;
            self.announce(Event::MemberLeft { room_id: room, user }).await;
        }
        Ok(())
    }

    /// The room's members with their online flags, for a member.
    pub async fn members(&self, user: UserId, room: RoomId) -> DomainResult<Vec<Member>> {
        self.require_member(room, user).await?;
        let mut members = self.ports.rooms.members(room).await?;
        let ids: Vec<UserId> = members.iter().map(|member| member.user_id).collect();
        let online = self.ports.presence.online_among(&ids).await?;
        for member in &mut members {
            member.online = online.contains(&member.user_id);
        }
        Ok(members)
    }

    /// Stores a message and tells the room. A retry with the same `client_message_id` returns
    /// the original message (`created: false`) without storing or counting anything.
    pub async fn send(
        &self,
        author: UserId,
        room: &RoomRef,
        content: MessageContent,
        client_message_id: Option<ClientMessageId>,
    ) -> DomainResult<Posted> {
        let room_id = self.resolve(room).await?;
        if let Some(key) = &client_message_id
            && let Some(existing) = self.ports.messages.find_by_client_id(author, key).await?
        {
            return self.replay_send(existing, room_id);
        }

        let key = format!("send:{author}");
        if let RateDecision::Limited { retry_after } =
            self.ports.limiter.acquire(&key, self.send_limit).await?
        {
            return Err(DomainError::RateLimited { retry_after });
        }

        let message = NewMessage {
            id: MessageId::generate(),
            room_id,
            author_id: author,
            content,
            client_message_id,
            created_at: self.ports.clock.now(),
        };
        let posted = self.ports.messages.insert(&message).await?;
        if !posted.created {
            // Another request with the same key won the race.
            return self.replay_send(posted.message, room_id);
        }
        if let Err(error) = self.ports.cache.message_stored(&posted.message).await {
            tracing::warn!(%error, "could not cache a new message");
        }
        self.announce(Event::MessageCreated(posted.message.clone())).await;
        Ok(posted)
    }

    /// A page of the room's history, for a member. The latest page comes from the cache when
    /// it can answer.
    pub async fn history(
        &self,
        user: UserId,
        room: &RoomRef,
        query: &HistoryQuery,
    ) -> DomainResult<HistoryPage> {
        let room_id = self.resolve(room).await?;
        self.require_member(room_id, user).await?;
        if !query.is_latest() {
            return self.ports.messages.history(room_id, query).await;
        }
        let ticket = match self.ports.cache.latest(room_id, query.limit).await {
            Ok(CachedPage::Hit(page)) => return Ok(page),
            Ok(CachedPage::Miss(ticket)) => Some(ticket),
            Err(error) => {
                tracing::warn!(%error, "message cache unavailable, reading storage");
                None
            }
        };
        let recent = self.ports.messages.history(room_id, &HistoryQuery::latest(RECENT_MESSAGES)).await?;
        if let Some(ticket) = ticket
            && let Err(error) = self.ports.cache.fill(room_id, &recent, ticket).await
        {
            tracing::warn!(%error, "could not fill the message cache");
        }
        Ok(latest_of(recent, query.limit))
    }

    /// Replaces the content of the caller's own message.
    pub async fn edit(&self, user: UserId, id: MessageId, content: MessageContent) -> DomainResult<Message> {
        let message = self.find_message(id).await?;
        if message.author.id != user {
            return Err(DomainError::NotTheAuthor);
        }
        self.require_member(message.room_id, user).await?;
        let edited = self.ports.messages.edit(id, &content, self.ports.clock.now()).await?;
        if let Err(error) = self.ports.cache.message_edited(&edited).await {
            tracing::warn!(%error, "could not update an edited message in the cache");
        }
        self.announce(Event::MessageEdited(edited.clone())).await;
        Ok(edited)
    }

    /// Deletes a message: the author may delete their own, the room's owner any. Returns the
    /// room it was in.
    pub async fn delete(&self, user: UserId, id: MessageId) -> DomainResult<RoomId> {
        let message = self.find_message(id).await?;
        if message.author.id != user && self.find_room(message.room_id).await?.owner_id != user {
            return Err(DomainError::NotTheAuthor);
        }
        if self.ports.messages.delete(id, self.ports.clock.now()).await? {
            if let Err(error) = self.ports.cache.message_deleted(message.room_id, id).await {
                tracing::warn!(%error, "could not remove a deleted message from the cache");
            }
            self.announce(Event::MessageDeleted { room_id: message.room_id, message_id: id }).await;
        }
        Ok(message.room_id)
    }

    /// For a member opening a room's live stream: the room's latest seq, and with `since` the
    /// messages after it (unless more than [`MAX_REPLAY`] were missed).
    pub async fn replay(&self, user: UserId, room: RoomId, since: Option<i64>) -> DomainResult<Replay> {
        self.require_member(room, user).await?;
        let last_seq = self.find_room(room).await?.last_seq;
        let Some(since) = since else {
            return Ok(Replay { messages: Vec::new(), last_seq, truncated: false });
        };
        if last_seq - since > MAX_REPLAY {
            return Ok(Replay { messages: Vec::new(), last_seq, truncated: true });
        }
        let messages =
            if since < last_seq { self.read_after(room, since.max(0), None).await? } else { Vec::new() };
        // Messages committed while paging are replayed too; the live stream starts above them.
        let last_seq = messages.last().map_or(last_seq, |message| message.seq.max(last_seq));
        Ok(Replay { messages, last_seq, truncated: false })
    }

    /// The messages of a room with a seq in `after+1 .. before`, for a live stream filling a gap
    /// it noticed (no membership check: the stream is already authorised).
    pub async fn messages_between(
        &self,
        room: RoomId,
        after: i64,
        before: i64,
    ) -> DomainResult<Vec<Message>> {
        if after + 1 >= before {
            return Ok(Vec::new());
        }
        self.read_after(room, after, Some(before)).await
    }

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

    /// The live events of a room or of a user, for a gateway that has already checked the
    /// caller may see them.
    pub async fn subscribe(&self, topic: Topic) -> DomainResult<EventReceiver> {
        self.ports.events.subscribe(topic).await
    }

    /// The seq of the room's latest message (0 before the first).
    pub async fn last_seq(&self, room: RoomId) -> DomainResult<i64> {
        Ok(self.find_room(room).await?.last_seq)
    }

    /// Tells the room's other subscribers that `user` is typing; nothing is stored.
    pub async fn typing(&self, user: &UserRef, room: RoomId) -> DomainResult<()> {
        self.require_member(room, user.id).await?;
        self.announce(Event::Typing { room_id: room, user: user.clone() }).await;
        Ok(())
    }

    /// Records a new live connection of `user`; the first one tells every room of theirs.
    pub async fn connected(&self, user: &UserRef) -> DomainResult<()> {
        if self.ports.presence.connected(user.id).await? {
            self.announce_presence(user, true).await?;
        }
        Ok(())
    }

    /// Records a closed connection of `user`; the last one tells every room of theirs.
    pub async fn disconnected(&self, user: &UserRef) -> DomainResult<()> {
        if self.ports.presence.disconnected(user.id).await? {
            self.announce_presence(user, false).await?;
        }
        Ok(())
    }

    async fn announce_presence(&self, user: &UserRef, online: bool) -> DomainResult<()> {
        for summary in self.ports.rooms.rooms_of(user.id).await? {
            self.announce(Event::Presence { room_id: summary.room.id, user: user.clone(), online }).await;
        }
        Ok(())
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

    /// A retried send: the original message, provided the key was used for the same room.
    fn replay_send(&self, existing: Message, room: RoomId) -> DomainResult<Posted> {
        if existing.room_id != room {
            return Err(ValidationError::new(
                "clientMessageId",
                "was already used for a message in another room",
            )
            .into());
        }
        Ok(Posted { message: existing, created: false })
    }

    /// Events follow a change that is already stored, so a failure to deliver one is logged
    /// rather than reported as a failure of the change.
    async fn announce(&self, event: Event) {
        if let Err(error) = self.ports.events.publish(event).await {
            tracing::warn!(%error, "could not publish a room event");
        }
    }
}

/// The last `limit` messages of a latest-page read.
fn latest_of(mut page: HistoryPage, limit: u32) -> HistoryPage {
    let limit = limit as usize;
    if page.messages.len() > limit {
        page.messages.drain(..page.messages.len() - limit);
        page.has_more = true;
    }
    page
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::{TimeZone, Utc};
    use mockall::predicate::{always, eq};

    use super::*;
    use crate::clock::MockClock;
    use crate::event::MockEventBus;
    use crate::message::{FillTicket, MockMessageCache, MockMessageRepository};
    use crate::presence::MockPresence;
    use crate::rate_limit::MockRateLimiter;
    use crate::room::MockRoomRepository;
    use crate::user::{MockUserRepository, Username};

    struct Mocks {
        users: MockUserRepository,
        rooms: MockRoomRepository,
        messages: MockMessageRepository,
        cache: MockMessageCache,
        limiter: MockRateLimiter,
        events: MockEventBus,
        presence: MockPresence,
    }

    const SEND_LIMIT: RateLimit = RateLimit { points: 5, window: Duration::from_secs(10) };

    impl Mocks {
        fn new() -> Self {
            Self {
                users: MockUserRepository::new(),
                rooms: MockRoomRepository::new(),
                messages: MockMessageRepository::new(),
                cache: MockMessageCache::new(),
                limiter: MockRateLimiter::new(),
                events: MockEventBus::new(),
                presence: MockPresence::new(),
            }
        }

        fn member_of_every_room(&mut self) {
            self.rooms.expect_membership().returning(|_, _| Ok(Membership::Member));
        }

        fn service(self) -> ChatService {
            let mut clock = MockClock::new();
            clock.expect_now().returning(|| Utc.timestamp_opt(1_800_000_000, 0).unwrap());
            ChatService::new(
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

    fn message(room: RoomId, author: UserId, seq: i64) -> Message {
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

    fn content() -> MessageContent {
        MessageContent::parse("hello").unwrap()
    }

    #[tokio::test]
    async fn a_new_message_is_stored_cached_and_announced() {
        let (room, author) = (RoomId::generate(), UserId::generate());
        let mut mocks = Mocks::new();
        mocks
            .limiter
            .expect_acquire()
            .with(eq(format!("send:{author}")), eq(SEND_LIMIT))
            .times(1)
            .returning(|_, _| Ok(RateDecision::Allowed { remaining: 4 }));
        let stored = message(room, author, 7);
        let returned = stored.clone();
        mocks
            .messages
            .expect_insert()
            .withf(move |new| {
                new.room_id == room && new.author_id == author && new.content.as_str() == "hello"
            })
            .times(1)
            .returning(move |_| Ok(Posted { message: returned.clone(), created: true }));
        mocks.cache.expect_message_stored().with(eq(stored.clone())).times(1).returning(|_| Ok(()));
        mocks
            .events
            .expect_publish()
            .with(eq(Event::MessageCreated(stored.clone())))
            .times(1)
            .returning(|_| Ok(()));

        let posted = mocks.service().send(author, &RoomRef::Id(room), content(), None).await.unwrap();
        assert!(posted.created);
        assert_eq!(posted.message, stored);
    }

    #[tokio::test]
    async fn a_retry_returns_the_original_without_spending_the_rate_limit() {
        let (room, author) = (RoomId::generate(), UserId::generate());
        let key = ClientMessageId::parse("k1").unwrap();
        let original = message(room, author, 3);
        let found = original.clone();
        let mut mocks = Mocks::new();
        mocks
            .messages
            .expect_find_by_client_id()
            .with(eq(author), eq(key.clone()))
            .returning(move |_, _| Ok(Some(found.clone())));
        mocks.limiter.expect_acquire().never();
        mocks.messages.expect_insert().never();
        mocks.events.expect_publish().never();

        let posted = mocks.service().send(author, &RoomRef::Id(room), content(), Some(key)).await.unwrap();
        assert!(!posted.created);
        assert_eq!(posted.message, original);
    }

    #[tokio::test]
    async fn a_key_reused_in_another_room_is_refused() {
        let author = UserId::generate();
        let elsewhere = message(RoomId::generate(), author, 1);
        let mut mocks = Mocks::new();
        mocks.messages.expect_find_by_client_id().returning(move |_, _| Ok(Some(elsewhere.clone())));
        let key = ClientMessageId::parse("k1").unwrap();
        let error = mocks
            .service()
            .send(author, &RoomRef::Id(RoomId::generate()), content(), Some(key))
            .await
            .unwrap_err();
        assert!(matches!(&error, DomainError::Validation(v) if v.field == "clientMessageId"), "{error:?}");
    }

    #[tokio::test]
    async fn a_rate_limited_send_stores_nothing() {
        let mut mocks = Mocks::new();
        mocks
            .limiter
            .expect_acquire()
            .returning(|_, _| Ok(RateDecision::Limited { retry_after: Duration::from_millis(2500) }));
        mocks.messages.expect_insert().never();
        let error = mocks
            .service()
            .send(UserId::generate(), &RoomRef::Id(RoomId::generate()), content(), None)
            .await
            .unwrap_err();
        assert!(
            matches!(error, DomainError::RateLimited { retry_after } if retry_after == Duration::from_millis(2500))
        );
    }

    #[tokio::test]
    async fn a_send_by_room_name_resolves_the_name_first() {
        let mut mocks = Mocks::new();
        mocks.rooms.expect_find_by_name().returning(|_| Ok(None));
        mocks.limiter.expect_acquire().never();
        let name = RoomName::parse("nowhere").unwrap();
        let error = mocks
            .service()
            .send(UserId::generate(), &RoomRef::Name(name), content(), None)
            .await
            .unwrap_err();
        assert!(matches!(error, DomainError::RoomNotFound));
    }

    #[tokio::test]
    async fn the_latest_page_comes_from_the_cache_when_it_can_answer() {
        let (room, user) = (RoomId::generate(), UserId::generate());
        let page = HistoryPage { messages: vec![message(room, user, 9)], has_more: true };
        let cached = page.clone();
        let mut mocks = Mocks::new();
        mocks.member_of_every_room();
        mocks
            .cache
            .expect_latest()
            .with(eq(room), eq(1))
            .returning(move |_, _| Ok(CachedPage::Hit(cached.clone())));
        mocks.messages.expect_history().never();
        let read = mocks.service().history(user, &RoomRef::Id(room), &HistoryQuery::latest(1)).await.unwrap();
        assert_eq!(read, page);
    }

    #[tokio::test]
    async fn a_cache_miss_reads_storage_fills_the_cache_and_returns_the_asked_slice() {
        let (room, user) = (RoomId::generate(), UserId::generate());
        let stored =
            HistoryPage { messages: (1..=5).map(|seq| message(room, user, seq)).collect(), has_more: false };
        let from_storage = stored.clone();
        let mut mocks = Mocks::new();
        mocks.member_of_every_room();
        mocks.cache.expect_latest().returning(|_, _| Ok(CachedPage::Miss(FillTicket(4))));
        mocks
            .messages
            .expect_history()
            .with(eq(room), eq(HistoryQuery::latest(RECENT_MESSAGES)))
            .times(1)
            .returning(move |_, _| Ok(from_storage.clone()));
        mocks
            .cache
            .expect_fill()
            .with(eq(room), eq(stored.clone()), eq(FillTicket(4)))
            .times(1)
            .returning(|_, _, _| Ok(()));

        let read = mocks.service().history(user, &RoomRef::Id(room), &HistoryQuery::latest(2)).await.unwrap();
        let seqs: Vec<i64> = read.messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [4, 5]);
        assert!(read.has_more);
    }

    #[tokio::test]
    async fn history_survives_a_failing_cache() {
        let (room, user) = (RoomId::generate(), UserId::generate());
        let mut mocks = Mocks::new();
        mocks.member_of_every_room();
        mocks.cache.expect_latest().returning(|_, _| Err(DomainError::unavailable("cache", "down")));
        mocks.cache.expect_fill().never();
        mocks.messages.expect_history().returning(|_, _| Ok(HistoryPage::default()));
        let read =
            mocks.service().history(user, &RoomRef::Id(room), &HistoryQuery::latest(50)).await.unwrap();
        assert_eq!(read, HistoryPage::default());
    }

    #[tokio::test]
    async fn paging_with_a_cursor_reads_storage() {
        let (room, user) = (RoomId::generate(), UserId::generate());
        let query = HistoryQuery::parse(Some(10), None, Some(5)).unwrap();
        let mut mocks = Mocks::new();
        mocks.member_of_every_room();
        mocks.cache.expect_latest().never();
        mocks
            .messages
            .expect_history()
            .with(eq(room), eq(query))
            .times(1)
            .returning(|_, _| Ok(HistoryPage::default()));
        mocks.service().history(user, &RoomRef::Id(room), &query).await.unwrap();
    }

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

    #[tokio::test]
    async fn only_the_author_edits() {
        let (room, author) = (RoomId::generate(), UserId::generate());
        let original = message(room, author, 1);
        let id = original.id;
        let mut mocks = Mocks::new();
        let found = original.clone();
        mocks.messages.expect_find().with(eq(id)).returning(move |_| Ok(Some(found.clone())));
        mocks.member_of_every_room();
        let mut edited = original.clone();
        edited.content = MessageContent::parse("new").unwrap();
        edited.edited_at = Some(Utc.timestamp_opt(1_800_000_000, 0).unwrap());
        let returned = edited.clone();
        mocks.messages.expect_edit().times(1).returning(move |_, _, _| Ok(returned.clone()));
        mocks.cache.expect_message_edited().with(eq(edited.clone())).times(1).returning(|_| Ok(()));
        mocks
            .events
            .expect_publish()
            .with(eq(Event::MessageEdited(edited.clone())))
            .times(1)
            .returning(|_| Ok(()));
        let service = mocks.service();

        let error =
            service.edit(UserId::generate(), id, MessageContent::parse("x").unwrap()).await.unwrap_err();
        assert!(matches!(error, DomainError::NotTheAuthor));
        assert_eq!(service.edit(author, id, MessageContent::parse("new").unwrap()).await.unwrap(), edited);
    }

    #[tokio::test]
    async fn the_owner_may_delete_any_message_and_others_none() {
        let (room, author, owner) = (RoomId::generate(), UserId::generate(), UserId::generate());
        let original = message(room, author, 1);
        let id = original.id;
        let mut mocks = Mocks::new();
        mocks.messages.expect_find().returning(move |_| Ok(Some(original.clone())));
        mocks.rooms.expect_find().with(eq(room)).returning(move |_| {
            Ok(Some(Room {
                id: room,
                name: RoomName::parse("r").unwrap(),
                owner_id: owner,
                created_at: Utc::now(),
                member_count: 2,
                last_seq: 1,
            }))
        });
        mocks.messages.expect_delete().with(eq(id), always()).times(1).returning(|_, _| Ok(true));
        mocks.cache.expect_message_deleted().with(eq(room), eq(id)).times(1).returning(|_, _| Ok(()));
        mocks
            .events
            .expect_publish()
            .with(eq(Event::MessageDeleted { room_id: room, message_id: id }))
            .times(1)
            .returning(|_| Ok(()));
        let service = mocks.service();

        let error = service.delete(UserId::generate(), id).await.unwrap_err();
        assert!(matches!(error, DomainError::NotTheAuthor));
        service.delete(owner, id).await.unwrap();
    }

    #[tokio::test]
    async fn joining_announces_only_a_new_membership() {
        let (room, user) = (RoomId::generate(), UserId::generate());
        let mut mocks = Mocks::new();
        let mut first = true;
        mocks.rooms.expect_join().times(2).returning(move |_, _, _| Ok(std::mem::replace(&mut first, false)));
        mocks.users.expect_find_by_id().returning(move |id| {
            Ok(Some(crate::user::User {
                id,
                email: crate::user::Email::parse("a@example.com").unwrap(),
                username: Username::parse("ada").unwrap(),
                created_at: Utc::now(),
            }))
        });
        mocks
            .events
            .expect_publish()
            .withf(move |event| matches!(event, Event::MemberJoined { room_id, user: joined } if *room_id == room && joined.id == user))
            .times(1)
            .returning(|_| Ok(()));
        mocks.rooms.expect_find().returning(move |_| {
            Ok(Some(Room {
                id: room,
                name: RoomName::parse("r").unwrap(),
                owner_id: user,
                created_at: Utc::now(),
                member_count: 1,
                last_seq: 0,
            }))
        });
        let service = mocks.service();
        service.join(user, room).await.unwrap();
        service.join(user, room).await.unwrap();
    }

    #[tokio::test]
    async fn members_carry_their_online_flag() {
        let (room, online, offline) = (RoomId::generate(), UserId::generate(), UserId::generate());
        let mut mocks = Mocks::new();
        mocks.member_of_every_room();
        mocks.rooms.expect_members().returning(move |_| {
            Ok([online, offline]
                .into_iter()
                .map(|user_id| Member {
                    user_id,
                    username: Username::parse("someone").unwrap(),
                    joined_at: Utc::now(),
                    online: false,
                })
                .collect())
        });
        mocks.presence.expect_online_among().returning(move |_| Ok([online].into_iter().collect()));
        let members = mocks.service().members(online, room).await.unwrap();
        let flags: Vec<(UserId, bool)> = members.iter().map(|m| (m.user_id, m.online)).collect();
        assert_eq!(flags, [(online, true), (offline, false)]);
    }

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
        let replay = mocks.service().replay(user, room_id, None).await.unwrap();
        assert_eq!(replay, Replay { messages: Vec::new(), last_seq: 12, truncated: false });
    }

    #[tokio::test]
    async fn a_long_absence_is_truncated_without_reading_history() {
        let (room_id, user) = (RoomId::generate(), UserId::generate());
        let mut mocks = Mocks::new();
        mocks.member_of_every_room();
        mocks.rooms.expect_find().returning(move |_| Ok(Some(room(room_id, user, 1500))));
        mocks.messages.expect_history().never();
        let replay = mocks.service().replay(user, room_id, Some(499)).await.unwrap();
        assert!(replay.truncated);
        assert_eq!(replay.last_seq, 1500);
        let replay_ok = {
            let mut mocks = Mocks::new();
            mocks.member_of_every_room();
            mocks.rooms.expect_find().returning(move |_| Ok(Some(room(room_id, user, 1500))));
            mocks.messages.expect_history().returning(|_, _| Ok(HistoryPage::default()));
            mocks.service().replay(user, room_id, Some(500)).await.unwrap()
        };
        assert!(!replay_ok.truncated, "exactly 1000 missed is replayed");
    }

    #[tokio::test]
    async fn a_replay_pages_through_everything_after_since() {
        let (room_id, user) = (RoomId::generate(), UserId::generate());
        let mut mocks = Mocks::new();
        mocks.member_of_every_room();
        mocks.rooms.expect_find().returning(move |_| Ok(Some(room(room_id, user, 250))));
        mocks.messages.expect_history().times(2).returning(move |_, query| {
            let after = query.after.unwrap();
            let top = (after + i64::from(query.limit)).min(250);
            Ok(HistoryPage {
                messages: (after + 1..=top).map(|seq| message(room_id, user, seq)).collect(),
                has_more: top < 250,
            })
        });
        let replay = mocks.service().replay(user, room_id, Some(50)).await.unwrap();
        let seqs: Vec<i64> = replay.messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (51..=250).collect::<Vec<_>>());
        assert_eq!(replay.last_seq, 250);
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
