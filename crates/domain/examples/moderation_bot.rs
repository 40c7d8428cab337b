//! A moderation bot built on `convo-domain` alone: the shape another service takes when it reuses
//! Convo's rules and use cases with storage of its own.
//!
//! It implements every port the use cases need with small in-memory types (a real service would
//! put its own database behind the same traits and prove them with `convo-contract`), then runs a
//! real conversation through the use cases: two users register, the bot opens a room, a user
//! joins and posts (once retrying a send, which stores nothing twice), and the bot pages through
//! the history a few messages at a time, deleting what breaks the room's rule.
//!
//! Run it with `cargo run -p convo-domain --example moderation_bot`; it exits non-zero if any step
//! does not behave as the domain promises.

use std::collections::{HashMap, HashSet};
use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use convo_domain::{
    AccessGrant, AuthPorts, AuthService, AuthSettings, AuthUseCases, CachedPage, ChatPorts, ChatUseCases,
    ClientMessageId, Credentials, DirectoryQuery, DomainError, DomainResult, Email, Event, EventBus,
    FillTicket, HistoryPage, HistoryQuery, Member, Membership, Message, MessageCache, MessageContent,
    MessageId, MessageRepository, MessageService, NewMessage, NewRoom, Password, PasswordHash,
    PasswordHasher, Posted, Presence, Principal, RateDecision, RateLimit, RateLimiter, Room, RoomId,
    RoomName, RoomRef, RoomRepository, RoomService, RoomSummary, Session, SessionId, SessionStore,
    Subscription, SystemClock, TicketStore, TokenCodec, Topic, User, UserId, UserRef, UserRepository,
    Username, lock,
};

/// Words the bot does not let stand.
const BANNED: &[&str] = &["spam"];

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let store = Arc::new(Store::default());
    let events = Arc::new(EventLog::default());
    let limiter = Arc::new(NoLimit);
    let clock = Arc::new(SystemClock);

    let auth = AuthUseCases::new(
        AuthPorts {
            users: store.clone(),
            hasher: Arc::new(PlainHasher),
            sessions: Arc::new(MapSessions::default()),
            tickets: Arc::new(MapTickets::default()),
            tokens: Arc::new(UnsignedTokens),
            limiter: limiter.clone(),
            events: events.clone(),
            clock: clock.clone(),
        },
        AuthSettings::default(),
    );
    let chat = ChatUseCases::new(
        ChatPorts {
            users: store.clone(),
            rooms: store.clone(),
            messages: store.clone(),
            cache: Arc::new(NoCache),
            limiter,
            events: events.clone(),
            presence: Arc::new(NobodyOnline),
            clock,
        },
        RateLimit { points: 100, window: Duration::from_secs(10) },
    );
    // From here on the bot speaks to the use cases through the same traits the api crate uses,
    // one per use case it needs.
    let auth: Arc<dyn AuthService> = Arc::new(auth);
    let chat = Arc::new(chat);
    let rooms: Arc<dyn RoomService> = chat.clone();
    let messages: Arc<dyn MessageService> = chat;

    let password = Password::parse("Modb0t-secret")?;
    let bot =
        auth.register(Email::parse("bot@example.com")?, Username::parse("modbot")?, password, None).await?;
    let ada = auth
        .register(
            Email::parse("ada@example.com")?,
            Username::parse("ada")?,
            Password::parse("Passw0rd!")?,
            None,
        )
        .await?;
    let bot_id = bot.user.id;
    let ada_id = ada.user.id;
    // A token opens the session it names, as every request of the api would check it.
    let principal = auth.authenticate(&ada.access_token).await?.principal;
    ensure(principal.user_id == ada_id, "the token names its user")?;

    let lobby = rooms.create_room(bot_id, RoomName::parse("lobby")?).await?;
    rooms.join(ada_id, lobby.id).await?;
    let room = RoomRef::Name(RoomName::parse("Lobby")?);

    for (key, text) in [
        ("m-1", "hello everyone"),
        ("m-2", "buy cheap spam here"),
        ("m-3", "anyone up for chess?"),
        ("m-4", "more spam, sorry"),
        ("m-5", "good night"),
    ] {
        let posted = messages
            .send(ada_id, &room, MessageContent::parse(text)?, Some(ClientMessageId::parse(key)?))
            .await?;
        ensure(posted.created, "a new clientMessageId stores a message")?;
    }
    let retried = messages
        .send(ada_id, &room, MessageContent::parse("good night")?, Some(ClientMessageId::parse("m-5")?))
        .await?;
    ensure(!retried.created && retried.message.seq == 5, "a retried send returns the original")?;

    // Page back through the whole history, two messages at a time, as a client scrolling up.
    let mut removed = 0;
    let mut query = HistoryQuery::parse(None, None, Some(2))?;
    loop {
        let page = messages.history(bot_id, &room, &query).await?;
        for message in &page.messages {
            if BANNED.iter().any(|word| message.content.as_str().contains(word)) {
                // The room's owner may delete anyone's message.
                messages.delete(bot_id, message.id).await?;
                removed += 1;
                println!(
                    "removed #{} by {}: {:?}",
                    message.seq,
                    message.author.username,
                    message.content.as_str()
                );
            }
        }
        match page.messages.first() {
            Some(oldest) if page.has_more => query = HistoryQuery::parse(Some(oldest.seq), None, Some(2))?,
            _ => break,
        }
    }
    ensure(removed == 2, "both offending messages were found")?;

    let latest = messages.history(bot_id, &room, &HistoryQuery::parse(None, None, Some(50))?).await?;
    let seqs: Vec<i64> = latest.messages.iter().map(|message| message.seq).collect();
    ensure(seqs == [1, 3, 5], "deleted messages leave their seqs unused")?;
    for message in &latest.messages {
        println!("#{} {}: {}", message.seq, message.author.username, message.content.as_str());
    }
    let stranger = rooms.members(ada_id, RoomId::generate()).await;
    ensure(matches!(stranger, Err(DomainError::RoomNotFound)), "an unknown room is refused")?;
    println!("{} events published", events.published());
    Ok(())
}

fn ensure(condition: bool, what: &str) -> Result<(), Box<dyn Error>> {
    if condition { Ok(()) } else { Err(format!("expected: {what}").into()) }
}

/// Users, rooms, memberships and messages in one map, for the storage ports.
#[derive(Default)]
struct Store {
    data: Mutex<Data>,
}

#[derive(Default)]
struct Data {
    users: Vec<Credentials>,
    rooms: Vec<Room>,
    last_message_at: HashMap<RoomId, DateTime<Utc>>,
    members: Vec<(RoomId, UserId, DateTime<Utc>)>,
    /// Every message not deleted, in the order stored (so ascending by seq within a room).
    messages: Vec<Message>,
}

impl Data {
    fn room_mut(&mut self, id: RoomId) -> DomainResult<&mut Room> {
        self.rooms.iter_mut().find(|room| room.id == id).ok_or(DomainError::RoomNotFound)
    }

    fn is_member(&self, room: RoomId, user: UserId) -> bool {
        self.members.iter().any(|(r, u, _)| *r == room && *u == user)
    }

    fn user_ref(&self, id: UserId) -> DomainResult<UserRef> {
        let found = self.users.iter().find(|found| found.user.id == id);
        found.map(|found| UserRef::from(&found.user)).ok_or(DomainError::Unauthenticated)
    }
}

#[async_trait]
impl UserRepository for Store {
    async fn create(&self, user: &User, password_hash: &PasswordHash) -> DomainResult<()> {
        let mut data = lock(&self.data);
        if data.users.iter().any(|found| found.user.email == user.email) {
            return Err(DomainError::EmailTaken);
        }
        if data.users.iter().any(|found| found.user.username.key() == user.username.key()) {
            return Err(DomainError::UsernameTaken);
        }
        data.users.push(Credentials { user: user.clone(), password_hash: password_hash.clone() });
        Ok(())
    }

    async fn find_by_id(&self, id: UserId) -> DomainResult<Option<User>> {
        Ok(lock(&self.data).users.iter().find(|found| found.user.id == id).map(|found| found.user.clone()))
    }

    async fn find_credentials(&self, email: &Email) -> DomainResult<Option<Credentials>> {
        Ok(lock(&self.data).users.iter().find(|found| &found.user.email == email).cloned())
    }
}

#[async_trait]
impl RoomRepository for Store {
    async fn create(&self, new: &NewRoom) -> DomainResult<Room> {
        let mut data = lock(&self.data);
        if data.rooms.iter().any(|room| room.name.key() == new.name.key()) {
            return Err(DomainError::RoomNameTaken);
        }
        let room = Room {
            id: new.id,
            name: new.name.clone(),
            owner_id: new.owner_id,
            created_at: new.created_at,
            member_count: 1,
            last_seq: 0,
        };
        data.rooms.push(room.clone());
        data.members.push((new.id, new.owner_id, new.created_at));
        Ok(room)
    }

    async fn find(&self, id: RoomId) -> DomainResult<Option<Room>> {
        Ok(lock(&self.data).rooms.iter().find(|room| room.id == id).cloned())
    }

    async fn find_by_name(&self, name: &RoomName) -> DomainResult<Option<Room>> {
        Ok(lock(&self.data).rooms.iter().find(|room| room.name.key() == name.key()).cloned())
    }

    async fn directory(&self, query: &DirectoryQuery) -> DomainResult<Vec<Room>> {
        let data = lock(&self.data);
        let mut rooms: Vec<Room> = data
            .rooms
            .iter()
            .filter(|room| room.name.key().starts_with(&query.prefix_key))
            .cloned()
            .collect();
        rooms.sort_by_key(|room| room.name.key());
        rooms.truncate(query.limit as usize);
        Ok(rooms)
    }

    async fn rooms_of(&self, user: UserId) -> DomainResult<Vec<RoomSummary>> {
        let data = lock(&self.data);
        let mut summaries: Vec<RoomSummary> = data
            .members
            .iter()
            .filter(|(_, member, _)| *member == user)
            .filter_map(|(room, _, joined_at)| {
                let room = data.rooms.iter().find(|found| found.id == *room)?.clone();
                let last_message_at = data.last_message_at.get(&room.id).copied();
                Some(RoomSummary { room, joined_at: *joined_at, last_message_at })
            })
            .collect();
        summaries.sort_by_key(|summary| {
            std::cmp::Reverse(summary.last_message_at.unwrap_or(summary.room.created_at))
        });
        Ok(summaries)
    }

    async fn membership(&self, room: RoomId, user: UserId) -> DomainResult<Membership> {
        let data = lock(&self.data);
        Ok(if !data.rooms.iter().any(|found| found.id == room) {
            Membership::NoSuchRoom
        } else if data.is_member(room, user) {
            Membership::Member
        } else {
            Membership::Outsider
        })
    }

    async fn join(&self, room: RoomId, user: UserId, at: DateTime<Utc>) -> DomainResult<bool> {
        let mut data = lock(&self.data);
        data.room_mut(room)?;
        if data.is_member(room, user) {
            return Ok(false);
        }
        data.members.push((room, user, at));
        data.room_mut(room)?.member_count += 1;
        Ok(true)
    }

    async fn leave(&self, room: RoomId, user: UserId) -> DomainResult<bool> {
        let mut data = lock(&self.data);
        let before = data.members.len();
        data.members.retain(|(r, u, _)| !(*r == room && *u == user));
        let left = data.members.len() < before;
        if left {
            data.room_mut(room)?.member_count -= 1;
        }
        Ok(left)
    }

    async fn members(&self, room: RoomId) -> DomainResult<Vec<Member>> {
        let data = lock(&self.data);
        data.members
            .iter()
            .filter(|(r, _, _)| *r == room)
            .map(|(_, user, joined_at)| {
                let user = data.user_ref(*user)?;
                Ok(Member { user_id: user.id, username: user.username, joined_at: *joined_at, online: false })
            })
            .collect()
    }
}

impl Store {
    /// One message of a batch, stored or refused on its own.
    fn insert_one(&self, new: &NewMessage) -> DomainResult<Posted> {
        let mut data = lock(&self.data);
        data.room_mut(new.room_id)?;
        if !data.is_member(new.room_id, new.author_id) {
            return Err(DomainError::NotAMember);
        }
        if let Some(key) = &new.client_message_id {
            let existing = data.messages.iter().find(|message| {
                message.author.id == new.author_id && message.client_message_id.as_ref() == Some(key)
            });
            if let Some(existing) = existing {
                return Ok(Posted { message: existing.clone(), created: false });
            }
        }
        let author = data.user_ref(new.author_id)?;
        let room = data.room_mut(new.room_id)?;
        room.last_seq += 1;
        let message = Message {
            id: new.id,
            room_id: new.room_id,
            seq: room.last_seq,
            author,
            content: new.content.clone(),
            created_at: new.created_at,
            edited_at: None,
            client_message_id: new.client_message_id.clone(),
        };
        data.last_message_at.insert(new.room_id, new.created_at);
        data.messages.push(message.clone());
        Ok(Posted { message, created: true })
    }
}

#[async_trait]
impl MessageRepository for Store {
    async fn insert_batch(
        &self,
        _room: RoomId,
        batch: &[NewMessage],
    ) -> DomainResult<Vec<DomainResult<Posted>>> {
        Ok(batch.iter().map(|new| self.insert_one(new)).collect())
    }

    async fn find(&self, id: MessageId) -> DomainResult<Option<Message>> {
        Ok(lock(&self.data).messages.iter().find(|message| message.id == id).cloned())
    }

    async fn history(&self, room: RoomId, query: &HistoryQuery) -> DomainResult<HistoryPage> {
        let data = lock(&self.data);
        let in_range: Vec<&Message> = data
            .messages
            .iter()
            .filter(|message| message.room_id == room)
            .filter(|message| query.after.is_none_or(|after| message.seq > after))
            .filter(|message| query.before.is_none_or(|before| message.seq < before))
            .collect();
        let limit = query.limit as usize;
        let has_more = in_range.len() > limit;
        // Paging forward takes the first `limit` after the cursor; otherwise the last `limit`.
        let page = if query.after.is_some() {
            &in_range[..limit.min(in_range.len())]
        } else {
            &in_range[in_range.len().saturating_sub(limit)..]
        };
        Ok(HistoryPage::new(page.iter().map(|message| (*message).clone()).collect(), has_more))
    }

    async fn edit(
        &self,
        id: MessageId,
        content: &MessageContent,
        at: DateTime<Utc>,
    ) -> DomainResult<Message> {
        let mut data = lock(&self.data);
        let message =
            data.messages.iter_mut().find(|message| message.id == id).ok_or(DomainError::MessageNotFound)?;
        message.content = content.clone();
        message.edited_at = Some(at);
        Ok(message.clone())
    }

    async fn delete(&self, id: MessageId, _at: DateTime<Utc>) -> DomainResult<bool> {
        let mut data = lock(&self.data);
        let before = data.messages.len();
        data.messages.retain(|message| message.id != id);
        Ok(data.messages.len() < before)
    }
}

/// A cache that never holds anything: every latest-page read goes to storage, which is always
/// correct, only slower.
struct NoCache;

#[async_trait]
impl MessageCache for NoCache {
    async fn latest(&self, _room: RoomId, _limit: u32) -> DomainResult<CachedPage> {
        Ok(CachedPage::Miss(FillTicket(0)))
    }
    async fn fill(&self, _room: RoomId, _page: &HistoryPage, _ticket: FillTicket) -> DomainResult<()> {
        Ok(())
    }
    async fn messages_stored(&self, _room: RoomId, _messages: &[Message]) -> DomainResult<()> {
        Ok(())
    }
    async fn message_edited(&self, _message: &Message) -> DomainResult<()> {
        Ok(())
    }
    async fn message_deleted(&self, _room: RoomId, _id: MessageId) -> DomainResult<()> {
        Ok(())
    }
}

/// The bot has no live subscribers: it counts the events the use cases publish.
#[derive(Default)]
struct EventLog {
    published: Mutex<usize>,
}

impl EventLog {
    fn published(&self) -> usize {
        *lock(&self.published)
    }
}

#[async_trait]
impl EventBus for EventLog {
    async fn publish(&self, _event: Event) -> DomainResult<()> {
        *lock(&self.published) += 1;
        Ok(())
    }
    async fn subscribe(&self, _topic: Topic) -> DomainResult<Subscription> {
        Err(DomainError::internal("this bot has no live subscribers"))
    }
}

/// Nobody is connected to a bot.
struct NobodyOnline;

#[async_trait]
impl Presence for NobodyOnline {
    async fn connected(&self, _user: UserId) -> DomainResult<bool> {
        Ok(false)
    }
    async fn disconnected(&self, _user: UserId) -> DomainResult<bool> {
        Ok(false)
    }
    async fn online_among(&self, _users: &[UserId]) -> DomainResult<HashSet<UserId>> {
        Ok(HashSet::new())
    }
}

/// A trusted batch job needs no throttle.
struct NoLimit;

#[async_trait]
impl RateLimiter for NoLimit {
    async fn acquire(&self, _key: &str, limit: RateLimit) -> DomainResult<RateDecision> {
        Ok(RateDecision::Allowed { remaining: limit.points })
    }
    async fn peek(&self, _key: &str, limit: RateLimit) -> DomainResult<RateDecision> {
        Ok(RateDecision::Allowed { remaining: limit.points })
    }
    async fn release(&self, _key: &str) -> DomainResult<()> {
        Ok(())
    }
}

/// Keeps the password as it is. Only for an example that never stores anything: a real service
/// uses a slow salted hash (Convo's server uses argon2id from `convo-crypto`).
struct PlainHasher;

#[async_trait]
impl PasswordHasher for PlainHasher {
    async fn hash(&self, password: &Password) -> DomainResult<PasswordHash> {
        Ok(PasswordHash::new(format!("plain:{}", password.expose())))
    }
    async fn verify(&self, password: &Password, hash: &PasswordHash) -> DomainResult<bool> {
        Ok(hash.as_str().strip_prefix("plain:") == Some(password.expose()))
    }
}

#[derive(Default)]
struct MapSessions {
    sessions: Mutex<HashMap<SessionId, Session>>,
}

#[async_trait]
impl SessionStore for MapSessions {
    async fn create(&self, session: &Session, _ttl: Duration) -> DomainResult<()> {
        lock(&self.sessions).insert(session.id, session.clone());
        Ok(())
    }
    async fn touch(&self, id: SessionId, _ttl: Duration) -> DomainResult<Option<Session>> {
        Ok(lock(&self.sessions).get(&id).cloned())
    }
    async fn alive_many(&self, ids: &[SessionId]) -> DomainResult<Vec<bool>> {
        let sessions = lock(&self.sessions);
        Ok(ids.iter().map(|id| sessions.contains_key(id)).collect())
    }
    async fn revoke(&self, user: UserId, id: SessionId) -> DomainResult<bool> {
        let mut sessions = lock(&self.sessions);
        let owned = sessions.get(&id).is_some_and(|session| session.user_id == user);
        Ok(owned && sessions.remove(&id).is_some())
    }
    async fn revoke_all(&self, user: UserId) -> DomainResult<Vec<SessionId>> {
        let mut sessions = lock(&self.sessions);
        let ended: Vec<SessionId> =
            sessions.values().filter(|session| session.user_id == user).map(|session| session.id).collect();
        sessions.retain(|_, session| session.user_id != user);
        Ok(ended)
    }
}

#[derive(Default)]
struct MapTickets {
    tickets: Mutex<HashMap<String, AccessGrant>>,
}

#[async_trait]
impl TicketStore for MapTickets {
    async fn issue(&self, ticket: &str, grant: AccessGrant, _ttl: Duration) -> DomainResult<()> {
        lock(&self.tickets).insert(ticket.to_owned(), grant);
        Ok(())
    }
    async fn redeem(&self, ticket: &str) -> DomainResult<Option<AccessGrant>> {
        Ok(lock(&self.tickets).remove(ticket))
    }
}

/// `user.session.issued.expires`, unsigned: enough for a process that never hands a token out.
/// A service that does uses a signed format (Convo's server: HS256 JWTs from `convo-crypto`).
struct UnsignedTokens;

impl TokenCodec for UnsignedTokens {
    fn encode(&self, grant: &AccessGrant) -> DomainResult<String> {
        let principal = grant.principal;
        Ok(format!(
            "{}.{}.{}.{}",
            principal.user_id,
            principal.session_id,
            grant.issued_at.timestamp(),
            grant.expires_at.timestamp()
        ))
    }

    fn decode(&self, token: &str) -> DomainResult<AccessGrant> {
        let parts: Vec<&str> = token.split('.').collect();
        let [user, session, issued, expires] = parts[..] else { return Err(DomainError::Unauthenticated) };
        let uuid = |part: &str| part.parse::<uuid::Uuid>().map_err(|_| DomainError::Unauthenticated);
        let time = |part: &str| {
            let seconds = part.parse::<i64>().map_err(|_| DomainError::Unauthenticated)?;
            Utc.timestamp_opt(seconds, 0).single().ok_or(DomainError::Unauthenticated)
        };
        let grant = AccessGrant {
            principal: Principal {
                user_id: UserId::from(uuid(user)?),
                session_id: SessionId::from(uuid(session)?),
            },
            issued_at: time(issued)?,
            expires_at: time(expires)?,
        };
        if grant.expires_at <= Utc::now() {
            return Err(DomainError::Unauthenticated);
        }
        Ok(grant)
    }
}
