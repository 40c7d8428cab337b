//! What the storage suites ([`users`](crate::users), [`rooms`](crate::rooms),
//! [`messages`](crate::messages)) share: the [`Storage`] bound, and the fixtures that fill a
//! store. The fixtures are public for a driver's own tests of what is not a port's contract (a
//! SQL driver's migrations, say), so that those fill a store the same way.

use chrono::{DateTime, Duration, TimeZone, Utc};
use convo_domain::{
    ClientMessageId, DirectoryQuery, Email, HistoryQuery, Message, MessageContent, MessageId,
    MessageRepository, NewMessage, NewRoom, PasswordHash, Room, RoomId, RoomName, RoomRepository, User,
    UserId, UserRepository, Username,
};

/// A storage driver: one adapter for the three storage ports, since their bodies cross them (a
/// message needs a room, a room needs its owner). `S` may be the adapter or `dyn Storage`.
pub trait Storage: UserRepository + RoomRepository + MessageRepository {}

impl<S: UserRepository + RoomRepository + MessageRepository + ?Sized> Storage for S {}

/// A fixed instant plus `seconds`, so that tests control every timestamp and its order.
pub fn at(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).single().expect("valid date") + Duration::seconds(seconds)
}

/// Registers a user named `name` (email `name@example.com`), created at [`at(0)`](at).
pub async fn user<S: Storage + ?Sized>(store: &S, name: &str) -> User {
    let user = User {
        id: UserId::generate(),
        email: Email::parse(&format!("{name}@example.com")).expect("valid email"),
        username: Username::parse(name).expect("valid username"),
        created_at: at(0),
    };
    UserRepository::create(store, &user, &PasswordHash::new(format!("$argon2id$hash-of-{name}")))
        .await
        .expect("create user");
    user
}

/// A room of `owner` named `name`, created at [`at(created)`](at), not yet stored.
pub fn new_room(owner: &User, name: &str, created: i64) -> NewRoom {
    NewRoom {
        id: RoomId::generate(),
        name: RoomName::parse(name).expect("valid room name"),
        owner_id: owner.id,
        created_at: at(created),
    }
}

/// Creates a room of `owner` named `name`.
pub async fn room<S: Storage + ?Sized>(store: &S, owner: &User, name: &str) -> Room {
    RoomRepository::create(store, &new_room(owner, name, 0)).await.expect("create room")
}

/// A message by `author` into `room`, sent at [`at(sent)`](at), with an optional client message id.
pub fn new_message(room: RoomId, author: &User, content: &str, key: Option<&str>, sent: i64) -> NewMessage {
    NewMessage {
        id: MessageId::generate(),
        room_id: room,
        author_id: author.id,
        content: MessageContent::parse(content).expect("valid content"),
        client_message_id: key.map(|key| ClientMessageId::parse(key).expect("valid key")),
        created_at: at(sent),
    }
}

/// Stores a new message; returns it.
pub async fn send<S: Storage + ?Sized>(store: &S, room: RoomId, author: &User, content: &str) -> Message {
    let posted = store.insert(&new_message(room, author, content, None, 1)).await.expect("insert message");
    assert!(posted.created);
    posted.message
}

/// A room owned by `ada` holding messages "m1".."mN" with seqs 1..=N.
pub async fn room_with_messages<S: Storage + ?Sized>(store: &S, count: usize) -> (User, Room, Vec<Message>) {
    let ada = user(store, "ada").await;
    let general = room(store, &ada, "general").await;
    let mut messages = Vec::new();
    for n in 1..=count {
        messages.push(send(store, general.id, &ada, &format!("m{n}")).await);
    }
    (ada, general, messages)
}

/// The seqs of `messages`, in order.
pub fn seqs(messages: &[Message]) -> Vec<i64> {
    messages.iter().map(|message| message.seq).collect()
}

/// The names of `rooms`, in order.
pub fn names(rooms: &[Room]) -> Vec<&str> {
    rooms.iter().map(|room| room.name.as_str()).collect()
}

/// The directory's rooms starting with `prefix`, at most `limit`.
pub async fn directory<S: Storage + ?Sized>(store: &S, prefix: &str, limit: u32) -> Vec<Room> {
    store
        .directory(&DirectoryQuery::parse(Some(prefix), Some(limit)).expect("valid query"))
        .await
        .expect("directory")
}

/// The seqs of a history page and whether it has more.
pub async fn history<S: Storage + ?Sized>(
    store: &S,
    room: RoomId,
    before: Option<i64>,
    after: Option<i64>,
    limit: u32,
) -> (Vec<i64>, bool) {
    let query = HistoryQuery::parse(before, after, Some(limit)).expect("valid query");
    let page = store.history(room, &query).await.expect("history");
    (seqs(&page.messages), page.has_more)
}
