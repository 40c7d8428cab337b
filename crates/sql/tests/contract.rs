//! The storage ports' contract, run on SQLite and on PostgreSQL: every test body below runs once
//! per backend (`sqlite::name` and `postgres::name`), each time on a fresh migrated database.
//! The PostgreSQL runs are skipped with a warning when the server is unreachable, except under CI.

use std::collections::HashSet;

use chrono::{DateTime, Duration, TimeZone, Utc};
use convo_domain::{
    ClientMessageId, DirectoryQuery, DomainError, Email, HistoryQuery, Membership, Message, MessageContent,
    MessageId, MessageRepository, NewMessage, NewRoom, PasswordHash, Posted, Probe, Room, RoomId, RoomName,
    RoomRepository, User, UserId, UserRepository, Username,
};
use convo_migrations::{Migrator, MigratorTrait};
use convo_sql::testing::TestDatabase;
use convo_sql::{SqlStore, connect};

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            use convo_sql::testing::TestDatabase;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let db = TestDatabase::sqlite().await;
                    super::$name(&db).await;
                }
            )*
        }

        mod postgres {
            use convo_sql::testing::TestDatabase;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(db) = TestDatabase::postgres().await else { return };
                    super::$name(&db).await;
                }
            )*
        }
    };
}

contract!(
    created_user_is_found_by_id_and_by_email,
    unknown_users_are_not_found,
    email_is_unique,
    username_is_unique_ignoring_case,
    created_room_has_its_owner_as_only_member,
    room_name_is_unique_ignoring_case_including_unicode,
    room_is_found_by_id_and_by_name_in_any_case,
    missing_rooms_are_not_found,
    directory_lists_rooms_starting_with_the_prefix_by_name,
    directory_prefix_ignores_case_including_unicode,
    directory_prefix_treats_percent_and_underscore_literally,
    directory_respects_the_limit,
    rooms_of_lists_the_users_rooms_most_recently_active_first,
    membership_tells_no_such_room_outsider_and_member,
    second_join_is_idempotent,
    join_of_a_missing_room_is_room_not_found,
    second_leave_is_idempotent,
    members_are_ordered_by_join_time_then_username,
    messages_get_consecutive_seqs_and_carry_the_author,
    insert_into_a_missing_room_is_room_not_found,
    insert_by_an_outsider_is_not_a_member_and_uses_no_seq,
    retry_with_the_same_client_message_id_returns_the_original,
    client_message_ids_are_per_author,
    concurrent_inserts_with_the_same_client_message_id_store_one_message,
    sixteen_concurrent_senders_get_seqs_one_to_forty_eight_without_gaps,
    senders_through_two_connection_pools_get_seqs_without_gaps,
    history_without_cursor_is_the_latest_page_ascending,
    history_pages_back_with_before,
    history_pages_forward_with_after,
    history_between_after_and_before_is_bounded_on_both_sides,
    history_of_an_empty_room_is_empty,
    deleted_messages_are_hidden_and_keep_their_seq,
    deleted_messages_do_not_count_towards_a_page,
    edit_replaces_the_content_and_sets_edited_at,
    edit_of_a_missing_or_deleted_message_is_message_not_found,
    delete_of_a_missing_message_is_false,
    retry_of_a_deleted_message_returns_it_and_posts_nothing,
    probe_reports_the_database_as_reachable,
    migrating_again_changes_nothing,
    migrations_roll_back_and_apply_again,
);

// ---- fixtures ---------------------------------------------------------------------------------

/// A fixed instant plus `seconds`, so that tests control every timestamp and its order.
fn at(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).single().expect("valid date") + Duration::seconds(seconds)
}

async fn user(store: &SqlStore, name: &str) -> User {
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

fn new_room(owner: &User, name: &str, created: i64) -> NewRoom {
    NewRoom {
        id: RoomId::generate(),
        name: RoomName::parse(name).expect("valid room name"),
        owner_id: owner.id,
        created_at: at(created),
    }
}

async fn room(store: &SqlStore, owner: &User, name: &str) -> Room {
    RoomRepository::create(store, &new_room(owner, name, 0)).await.expect("create room")
}

fn new_message(room: RoomId, author: &User, content: &str, key: Option<&str>, sent: i64) -> NewMessage {
    NewMessage {
        id: MessageId::generate(),
        room_id: room,
        author_id: author.id,
        content: MessageContent::parse(content).expect("valid content"),
        client_message_id: key.map(|key| ClientMessageId::parse(key).expect("valid key")),
        created_at: at(sent),
    }
}

async fn send(store: &SqlStore, room: RoomId, author: &User, content: &str) -> Message {
    let posted = store.insert(&new_message(room, author, content, None, 1)).await.expect("insert message");
    assert!(posted.created);
    posted.message
}

/// A room owned by `ada` holding messages "m1".."mN" with seqs 1..=N.
async fn room_with_messages(store: &SqlStore, count: usize) -> (User, Room, Vec<Message>) {
    let ada = user(store, "ada").await;
    let general = room(store, &ada, "general").await;
    let mut messages = Vec::new();
    for n in 1..=count {
        messages.push(send(store, general.id, &ada, &format!("m{n}")).await);
    }
    (ada, general, messages)
}

fn seqs(messages: &[Message]) -> Vec<i64> {
    messages.iter().map(|message| message.seq).collect()
}

fn names(rooms: &[Room]) -> Vec<&str> {
    rooms.iter().map(|room| room.name.as_str()).collect()
}

async fn directory(store: &SqlStore, prefix: &str, limit: u32) -> Vec<Room> {
    store
        .directory(&DirectoryQuery::parse(Some(prefix), Some(limit)).expect("valid query"))
        .await
        .expect("directory")
}

async fn history(
    store: &SqlStore,
    room: RoomId,
    before: Option<i64>,
    after: Option<i64>,
    limit: u32,
) -> (Vec<i64>, bool) {
    let query = HistoryQuery::parse(before, after, Some(limit)).expect("valid query");
    let page = store.history(room, &query).await.expect("history");
    (seqs(&page.messages), page.has_more)
}

// ---- users ------------------------------------------------------------------------------------

async fn created_user_is_found_by_id_and_by_email(db: &TestDatabase) {
    let store = db.store();
    let ada = user(store, "Ada_99").await;

    assert_eq!(store.find_by_id(ada.id).await.expect("find"), Some(ada.clone()));
    let credentials = store
        .find_credentials(&Email::parse("ADA_99@Example.com").expect("valid"))
        .await
        .expect("find credentials")
        .expect("registered");
    assert_eq!(credentials.user, ada);
    assert_eq!(credentials.password_hash.as_str(), "$argon2id$hash-of-Ada_99");
}

async fn unknown_users_are_not_found(db: &TestDatabase) {
    let store = db.store();
    user(store, "ada").await;
    assert_eq!(store.find_by_id(UserId::generate()).await.expect("find"), None);
    let unknown = Email::parse("nobody@example.com").expect("valid");
    assert!(store.find_credentials(&unknown).await.expect("find").is_none());
}

async fn email_is_unique(db: &TestDatabase) {
    let store = db.store();
    user(store, "ada").await;
    let twin = User {
        id: UserId::generate(),
        email: Email::parse("ADA@EXAMPLE.COM").expect("valid"),
        username: Username::parse("someone_else").expect("valid"),
        created_at: at(0),
    };
    let error =
        UserRepository::create(store, &twin, &PasswordHash::new("x".into())).await.expect_err("taken");
    assert!(matches!(error, DomainError::EmailTaken), "{error:?}");
}

async fn username_is_unique_ignoring_case(db: &TestDatabase) {
    let store = db.store();
    user(store, "Ada").await;
    let twin = User {
        id: UserId::generate(),
        email: Email::parse("other@example.com").expect("valid"),
        username: Username::parse("aDA").expect("valid"),
        created_at: at(0),
    };
    let error =
        UserRepository::create(store, &twin, &PasswordHash::new("x".into())).await.expect_err("taken");
    assert!(matches!(error, DomainError::UsernameTaken), "{error:?}");
}

// ---- rooms ------------------------------------------------------------------------------------

async fn created_room_has_its_owner_as_only_member(db: &TestDatabase) {
    let store = db.store();
    let ada = user(store, "ada").await;
    let new = new_room(&ada, "General", 5);
    let created = RoomRepository::create(store, &new).await.expect("create");

    assert_eq!((created.id, created.name.as_str(), created.owner_id), (new.id, "General", ada.id));
    assert_eq!((created.member_count, created.last_seq, created.created_at), (1, 0, at(5)));
    assert_eq!(RoomRepository::find(store, new.id).await.expect("find"), Some(created));
    assert_eq!(store.membership(new.id, ada.id).await.expect("membership"), Membership::Member);
    let members = store.members(new.id).await.expect("members");
    assert_eq!(members.len(), 1);
    assert_eq!(
        (members[0].user_id, members[0].username.as_str(), members[0].joined_at),
        (ada.id, "ada", at(5))
    );
    assert!(!members[0].online);
}

async fn room_name_is_unique_ignoring_case_including_unicode(db: &TestDatabase) {
    let store = db.store();
    let ada = user(store, "ada").await;
    room(store, &ada, "Café").await;
    room(store, &ada, "general").await;

    for taken in ["CAFÉ", "café", "GENERAL"] {
        let error = RoomRepository::create(store, &new_room(&ada, taken, 0)).await.expect_err(taken);
        assert!(matches!(error, DomainError::RoomNameTaken), "{taken}: {error:?}");
    }
    // Nothing half-created: still two rooms, and ada is a member of those two only.
    assert_eq!(directory(store, "", 100).await.len(), 2);
    assert_eq!(store.rooms_of(ada.id).await.expect("rooms").len(), 2);
    // Differently accented is a different name.
    room(store, &ada, "Cafe").await;
}

async fn room_is_found_by_id_and_by_name_in_any_case(db: &TestDatabase) {
    let store = db.store();
    let ada = user(store, "ada").await;
    let cafe = room(store, &ada, "Café Crème").await;

    assert_eq!(RoomRepository::find(store, cafe.id).await.expect("find"), Some(cafe.clone()));
    for spelling in ["Café Crème", "CAFÉ CRÈME", "café crème"] {
        let name = RoomName::parse(spelling).expect("valid");
        assert_eq!(store.find_by_name(&name).await.expect("find"), Some(cafe.clone()), "{spelling}");
    }
}

async fn missing_rooms_are_not_found(db: &TestDatabase) {
    let store = db.store();
    assert_eq!(RoomRepository::find(store, RoomId::generate()).await.expect("find"), None);
    let name = RoomName::parse("nowhere").expect("valid");
    assert_eq!(store.find_by_name(&name).await.expect("find"), None);
}

async fn directory_lists_rooms_starting_with_the_prefix_by_name(db: &TestDatabase) {
    let store = db.store();
    let ada = user(store, "ada").await;
    for name in ["genome", "General", "Gen Z", "other", "agenda", "ge"] {
        room(store, &ada, name).await;
    }
    let bob = user(store, "bob").await;
    store.join(directory(store, "genome", 1).await[0].id, bob.id, at(1)).await.expect("join");

    let found = directory(store, "gen", 50).await;
    assert_eq!(names(&found), ["Gen Z", "General", "genome"]);
    assert_eq!(found.iter().map(|room| room.member_count).collect::<Vec<_>>(), [1, 1, 2]);
    assert_eq!(
        names(&directory(store, "", 50).await),
        ["agenda", "ge", "Gen Z", "General", "genome", "other"]
    );
    assert!(directory(store, "genz", 50).await.is_empty());
}

async fn directory_prefix_ignores_case_including_unicode(db: &TestDatabase) {
    let store = db.store();
    let ada = user(store, "ada").await;
    room(store, &ada, "Café au lait").await;
    room(store, &ada, "Cafeteria").await;
    room(store, &ada, "Ωmega").await;

    assert_eq!(names(&directory(store, "CAFÉ", 50).await), ["Café au lait"]);
    assert_eq!(names(&directory(store, "caf", 50).await), ["Cafeteria", "Café au lait"]);
    assert_eq!(names(&directory(store, "ωME", 50).await), ["Ωmega"]);
}

async fn directory_prefix_treats_percent_and_underscore_literally(db: &TestDatabase) {
    let store = db.store();
    let ada = user(store, "ada").await;
    for name in ["a_b", "axb", "abc", "a b"] {
        room(store, &ada, name).await;
    }
    assert_eq!(names(&directory(store, "a_", 50).await), ["a_b"]);
    assert!(directory(store, "a%", 50).await.is_empty());
    assert!(directory(store, "%", 50).await.is_empty());
    assert!(directory(store, "_", 50).await.is_empty());
}

async fn directory_respects_the_limit(db: &TestDatabase) {
    let store = db.store();
    let ada = user(store, "ada").await;
    for n in 0..5 {
        room(store, &ada, &format!("room {n}")).await;
    }
    assert_eq!(names(&directory(store, "room", 2).await), ["room 0", "room 1"]);
}

async fn rooms_of_lists_the_users_rooms_most_recently_active_first(db: &TestDatabase) {
    let store = db.store();
    let ada = user(store, "ada").await;
    let bob = user(store, "bob").await;
    let first = RoomRepository::create(store, &new_room(&ada, "first", 1)).await.expect("create");
    let second = RoomRepository::create(store, &new_room(&ada, "second", 2)).await.expect("create");
    let third = RoomRepository::create(store, &new_room(&bob, "third", 3)).await.expect("create");
    RoomRepository::create(store, &new_room(&bob, "not for ada", 4)).await.expect("create");
    store.join(third.id, ada.id, at(10)).await.expect("join");
    // A message makes `first` the most recently active.
    store.insert(&new_message(first.id, &ada, "hello", None, 20)).await.expect("insert");

    let rooms = store.rooms_of(ada.id).await.expect("rooms of");
    let order: Vec<&str> = rooms.iter().map(|summary| summary.room.name.as_str()).collect();
    assert_eq!(order, ["first", "third", "second"]);
    assert_eq!(rooms[0].last_message_at, Some(at(20)));
    assert_eq!((rooms[0].room.last_seq, rooms[0].joined_at), (1, at(1)));
    assert_eq!((rooms[1].last_message_at, rooms[1].joined_at, rooms[1].room.member_count), (None, at(10), 2));
    assert_eq!(rooms[2].room, RoomRepository::find(store, second.id).await.expect("find").expect("exists"));
    assert!(store.rooms_of(UserId::generate()).await.expect("rooms of").is_empty());
}

async fn membership_tells_no_such_room_outsider_and_member(db: &TestDatabase) {
    let store = db.store();
    let ada = user(store, "ada").await;
    let bob = user(store, "bob").await;
    let general = room(store, &ada, "general").await;

    assert_eq!(
        store.membership(RoomId::generate(), ada.id).await.expect("membership"),
        Membership::NoSuchRoom
    );
    assert_eq!(store.membership(general.id, bob.id).await.expect("membership"), Membership::Outsider);
    assert_eq!(store.membership(general.id, ada.id).await.expect("membership"), Membership::Member);
}

async fn second_join_is_idempotent(db: &TestDatabase) {
    let store = db.store();
    let ada = user(store, "ada").await;
    let bob = user(store, "bob").await;
    let general = room(store, &ada, "general").await;

    assert!(store.join(general.id, bob.id, at(1)).await.expect("join"));
    assert!(!store.join(general.id, bob.id, at(2)).await.expect("join again"));
    assert!(!store.join(general.id, ada.id, at(2)).await.expect("owner joins"));
    assert_eq!(store.membership(general.id, bob.id).await.expect("membership"), Membership::Member);
    let room = RoomRepository::find(store, general.id).await.expect("find").expect("exists");
    assert_eq!(room.member_count, 2);
    let members = store.members(general.id).await.expect("members");
    assert_eq!(members[1].joined_at, at(1), "the first join's time is kept");
}

async fn join_of_a_missing_room_is_room_not_found(db: &TestDatabase) {
    let store = db.store();
    let ada = user(store, "ada").await;
    let error = store.join(RoomId::generate(), ada.id, at(1)).await.expect_err("no room");
    assert!(matches!(error, DomainError::RoomNotFound), "{error:?}");
}

async fn second_leave_is_idempotent(db: &TestDatabase) {
    let store = db.store();
    let ada = user(store, "ada").await;
    let bob = user(store, "bob").await;
    let general = room(store, &ada, "general").await;
    store.join(general.id, bob.id, at(1)).await.expect("join");

    assert!(store.leave(general.id, bob.id).await.expect("leave"));
    assert!(!store.leave(general.id, bob.id).await.expect("leave again"));
    assert_eq!(store.membership(general.id, bob.id).await.expect("membership"), Membership::Outsider);
    assert_eq!(RoomRepository::find(store, general.id).await.expect("find").expect("exists").member_count, 1);
    assert!(store.rooms_of(bob.id).await.expect("rooms of").is_empty());
}

async fn members_are_ordered_by_join_time_then_username(db: &TestDatabase) {
    let store = db.store();
    let owner = user(store, "owner").await;
    let general = room(store, &owner, "general").await;
    for (name, joined) in [("zed", 5), ("bob", 9), ("Alice", 9), ("carol", 7)] {
        let member = user(store, name).await;
        store.join(general.id, member.id, at(joined)).await.expect("join");
    }
    let members = store.members(general.id).await.expect("members");
    let order: Vec<&str> = members.iter().map(|member| member.username.as_str()).collect();
    assert_eq!(order, ["owner", "zed", "carol", "Alice", "bob"]);
    assert!(members.iter().all(|member| !member.online));
    assert!(store.members(RoomId::generate()).await.expect("members").is_empty());
}

// ---- sending ----------------------------------------------------------------------------------

async fn messages_get_consecutive_seqs_and_carry_the_author(db: &TestDatabase) {
    let store = db.store();
    let ada = user(store, "Ada").await;
    let general = room(store, &ada, "general").await;
    let new = new_message(general.id, &ada, "  <b>hi</b> & bye ", Some("key-1"), 7);
    let posted = store.insert(&new).await.expect("insert");

    assert!(posted.created);
    let message = posted.message;
    assert_eq!((message.id, message.room_id, message.seq), (new.id, general.id, 1));
    assert_eq!((message.author.id, message.author.username.as_str()), (ada.id, "Ada"));
    assert_eq!(message.content.as_str(), "<b>hi</b> & bye", "stored as given");
    assert_eq!((message.created_at, message.edited_at), (at(7), None));
    assert_eq!(message.client_message_id.as_ref().map(ClientMessageId::as_str), Some("key-1"));
    assert_eq!(MessageRepository::find(store, new.id).await.expect("find"), Some(message.clone()));

    assert_eq!(send(store, general.id, &ada, "two").await.seq, 2);
    assert_eq!(send(store, general.id, &ada, "three").await.seq, 3);
    let other = room(store, &ada, "other").await;
    assert_eq!(send(store, other.id, &ada, "elsewhere").await.seq, 1, "seqs are per room");
    assert_eq!(RoomRepository::find(store, general.id).await.expect("find").expect("exists").last_seq, 3);
}

async fn insert_into_a_missing_room_is_room_not_found(db: &TestDatabase) {
    let store = db.store();
    let ada = user(store, "ada").await;
    let error =
        store.insert(&new_message(RoomId::generate(), &ada, "hi", None, 1)).await.expect_err("no room");
    assert!(matches!(error, DomainError::RoomNotFound), "{error:?}");
}

async fn insert_by_an_outsider_is_not_a_member_and_uses_no_seq(db: &TestDatabase) {
    let store = db.store();
    let ada = user(store, "ada").await;
    let eve = user(store, "eve").await;
    let general = room(store, &ada, "general").await;

    let error = store.insert(&new_message(general.id, &eve, "hi", Some("k"), 1)).await.expect_err("outsider");
    assert!(matches!(error, DomainError::NotAMember), "{error:?}");
    let after = RoomRepository::find(store, general.id).await.expect("find").expect("exists");
    assert_eq!(after.last_seq, 0);
    assert_eq!(send(store, general.id, &ada, "first").await.seq, 1);
}

async fn retry_with_the_same_client_message_id_returns_the_original(db: &TestDatabase) {
    let store = db.store();
    let ada = user(store, "ada").await;
    let general = room(store, &ada, "general").await;
    let original =
        store.insert(&new_message(general.id, &ada, "first try", Some("k1"), 1)).await.expect("insert");

    let retry =
        store.insert(&new_message(general.id, &ada, "second try", Some("k1"), 2)).await.expect("retry");
    assert_eq!(retry, Posted { message: original.message.clone(), created: false });
    let key = ClientMessageId::parse("k1").expect("valid");
    assert_eq!(store.find_by_client_id(ada.id, &key).await.expect("find"), Some(original.message));
    assert_eq!(send(store, general.id, &ada, "next").await.seq, 2, "the retry used no seq");
    assert_eq!(history(store, general.id, None, None, 10).await, (vec![1, 2], false));
}

async fn client_message_ids_are_per_author(db: &TestDatabase) {
    let store = db.store();
    let ada = user(store, "ada").await;
    let bob = user(store, "bob").await;
    let general = room(store, &ada, "general").await;
    store.join(general.id, bob.id, at(0)).await.expect("join");

    let by_ada = store.insert(&new_message(general.id, &ada, "a", Some("same"), 1)).await.expect("insert");
    let by_bob = store.insert(&new_message(general.id, &bob, "b", Some("same"), 1)).await.expect("insert");
    assert!(by_ada.created && by_bob.created);
    assert_ne!(by_ada.message.id, by_bob.message.id);
    let key = ClientMessageId::parse("same").expect("valid");
    assert_eq!(store.find_by_client_id(bob.id, &key).await.expect("find"), Some(by_bob.message));
    let unused = ClientMessageId::parse("unused").expect("valid");
    assert_eq!(store.find_by_client_id(ada.id, &unused).await.expect("find"), None);
}

async fn concurrent_inserts_with_the_same_client_message_id_store_one_message(db: &TestDatabase) {
    let store = db.store();
    let ada = user(store, "ada").await;
    let general = room(store, &ada, "general").await;
    let other = room(store, &ada, "other").await;

    // Eight racing retries, half of them (wrongly) naming another room: the key is the author's.
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let (store, ada) = (store.clone(), ada.clone());
            let room = if n % 2 == 0 { general.id } else { other.id };
            tokio::spawn(async move {
                store.insert(&new_message(room, &ada, &format!("try {n}"), Some("once"), n)).await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("task").expect("insert"));
    }

    assert_eq!(outcomes.iter().filter(|posted| posted.created).count(), 1);
    let ids: HashSet<MessageId> = outcomes.iter().map(|posted| posted.message.id).collect();
    assert_eq!(ids.len(), 1, "every call returns the one stored message");
    let stored = &outcomes[0].message;
    let (in_general, _) = history(store, general.id, None, None, 100).await;
    let (in_other, _) = history(store, other.id, None, None, 100).await;
    assert_eq!(in_general.len() + in_other.len(), 1);
    assert_eq!(stored.seq, 1);
    let general_seq = RoomRepository::find(store, general.id).await.expect("find").expect("exists").last_seq;
    let other_seq = RoomRepository::find(store, other.id).await.expect("find").expect("exists").last_seq;
    assert_eq!(general_seq + other_seq, 1, "the losers gave their seqs back");
}

/// 16 senders × 3 messages into one room, all at once.
async fn send_concurrently(stores: &[SqlStore], room: RoomId, senders: &[User]) -> Vec<(UserId, i64)> {
    let tasks: Vec<_> = senders
        .iter()
        .enumerate()
        .map(|(n, sender)| {
            let (store, sender) = (stores[n % stores.len()].clone(), sender.clone());
            tokio::spawn(async move {
                let mut sent = Vec::new();
                for k in 0..3 {
                    let new = new_message(room, &sender, &format!("{} #{k}", sender.username), None, 1);
                    let posted = store.insert(&new).await.expect("concurrent insert");
                    sent.push((sender.id, posted.message.seq));
                }
                sent
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("sender task"));
    }
    all
}

async fn assert_seqs_without_gaps(store: &SqlStore, room: RoomId, sent: &[(UserId, i64)]) {
    let mut seqs: Vec<i64> = sent.iter().map(|(_, seq)| *seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=48).collect::<Vec<_>>(), "no gap, no duplicate");
    // Each sender's own messages got increasing seqs, in the order it sent them.
    for sender in sent.iter().map(|(id, _)| *id).collect::<HashSet<_>>() {
        let own: Vec<i64> = sent.iter().filter(|(id, _)| *id == sender).map(|(_, seq)| *seq).collect();
        assert!(own.windows(2).all(|pair| pair[0] < pair[1]), "{own:?}");
    }
    assert_eq!(RoomRepository::find(store, room).await.expect("find").expect("exists").last_seq, 48);
    let (stored, has_more) = history(store, room, None, None, 100).await;
    assert_eq!((stored, has_more), ((1..=48).collect(), false));
}

async fn sixteen_senders(store: &SqlStore) -> (Room, Vec<User>) {
    let owner = user(store, "owner").await;
    let general = room(store, &owner, "general").await;
    let mut senders = Vec::new();
    for n in 0..16 {
        let sender = user(store, &format!("sender_{n}")).await;
        store.join(general.id, sender.id, at(0)).await.expect("join");
        senders.push(sender);
    }
    (general, senders)
}

async fn sixteen_concurrent_senders_get_seqs_one_to_forty_eight_without_gaps(db: &TestDatabase) {
    let store = db.store();
    let (general, senders) = sixteen_senders(store).await;
    let sent = send_concurrently(std::slice::from_ref(store), general.id, &senders).await;
    assert_seqs_without_gaps(store, general.id, &sent).await;
}

/// Like two server instances on one database: nothing in the process serialises them.
async fn senders_through_two_connection_pools_get_seqs_without_gaps(db: &TestDatabase) {
    let store = db.store();
    let second = connect(db.url()).await.expect("second pool");
    let (general, senders) = sixteen_senders(store).await;
    let sent = send_concurrently(&[store.clone(), second], general.id, &senders).await;
    assert_seqs_without_gaps(store, general.id, &sent).await;
}

// ---- history ----------------------------------------------------------------------------------

async fn history_without_cursor_is_the_latest_page_ascending(db: &TestDatabase) {
    let store = db.store();
    let (_, general, messages) = room_with_messages(store, 5).await;

    let page = store.history(general.id, &HistoryQuery::latest(2)).await.expect("history");
    assert_eq!(page.messages, messages[3..].to_vec());
    assert!(page.has_more);
    assert_eq!(history(store, general.id, None, None, 5).await, (vec![1, 2, 3, 4, 5], false));
    assert_eq!(history(store, general.id, None, None, 50).await, (vec![1, 2, 3, 4, 5], false));
}

async fn history_pages_back_with_before(db: &TestDatabase) {
    let store = db.store();
    let (_, general, _) = room_with_messages(store, 5).await;

    assert_eq!(history(store, general.id, Some(4), None, 2).await, (vec![2, 3], true));
    assert_eq!(history(store, general.id, Some(2), None, 2).await, (vec![1], false));
    assert_eq!(history(store, general.id, Some(3), None, 2).await, (vec![1, 2], false));
    assert_eq!(history(store, general.id, Some(1), None, 2).await, (vec![], false));
    assert_eq!(history(store, general.id, Some(99), None, 2).await, (vec![4, 5], true));
}

async fn history_pages_forward_with_after(db: &TestDatabase) {
    let store = db.store();
    let (_, general, _) = room_with_messages(store, 5).await;

    assert_eq!(history(store, general.id, None, Some(0), 2).await, (vec![1, 2], true));
    assert_eq!(history(store, general.id, None, Some(2), 2).await, (vec![3, 4], true));
    assert_eq!(history(store, general.id, None, Some(3), 2).await, (vec![4, 5], false));
    assert_eq!(history(store, general.id, None, Some(5), 2).await, (vec![], false));
}

async fn history_between_after_and_before_is_bounded_on_both_sides(db: &TestDatabase) {
    let store = db.store();
    let (_, general, _) = room_with_messages(store, 6).await;

    assert_eq!(history(store, general.id, Some(5), Some(1), 10).await, (vec![2, 3, 4], false));
    assert_eq!(history(store, general.id, Some(5), Some(1), 2).await, (vec![2, 3], true));
    assert_eq!(history(store, general.id, Some(3), Some(2), 10).await, (vec![], false));
}

async fn history_of_an_empty_room_is_empty(db: &TestDatabase) {
    let store = db.store();
    let ada = user(store, "ada").await;
    let general = room(store, &ada, "general").await;
    assert_eq!(history(store, general.id, None, None, 50).await, (vec![], false));
    assert_eq!(history(store, RoomId::generate(), None, Some(0), 50).await, (vec![], false));
}

// ---- edits and deletes ------------------------------------------------------------------------

async fn deleted_messages_are_hidden_and_keep_their_seq(db: &TestDatabase) {
    let store = db.store();
    let (ada, general, messages) = room_with_messages(store, 3).await;

    assert!(store.delete(messages[1].id, at(9)).await.expect("delete"));
    assert!(!store.delete(messages[1].id, at(10)).await.expect("delete again"));
    assert_eq!(MessageRepository::find(store, messages[1].id).await.expect("find"), None);
    assert_eq!(history(store, general.id, None, None, 50).await, (vec![1, 3], false));
    assert_eq!(history(store, general.id, None, Some(0), 50).await, (vec![1, 3], false));
    assert_eq!(history(store, general.id, Some(3), None, 50).await, (vec![1], false));
    assert_eq!(send(store, general.id, &ada, "after").await.seq, 4, "a deleted seq is never reused");
}

async fn deleted_messages_do_not_count_towards_a_page(db: &TestDatabase) {
    let store = db.store();
    let (_, general, messages) = room_with_messages(store, 4).await;
    store.delete(messages[0].id, at(9)).await.expect("delete");

    // Two live messages before seq 4: [2, 3], and nothing live before them.
    assert_eq!(history(store, general.id, Some(4), None, 2).await, (vec![2, 3], false));
    assert_eq!(history(store, general.id, None, None, 3).await, (vec![2, 3, 4], false));
}

async fn edit_replaces_the_content_and_sets_edited_at(db: &TestDatabase) {
    let store = db.store();
    let (_, general, messages) = room_with_messages(store, 2).await;
    let content = MessageContent::parse("edited ✓").expect("valid");

    let edited = store.edit(messages[0].id, &content, at(30)).await.expect("edit");
    assert_eq!(edited.content, content);
    assert_eq!(edited.edited_at, Some(at(30)));
    assert_eq!((edited.id, edited.seq, edited.created_at), (messages[0].id, 1, messages[0].created_at));
    assert_eq!(edited.author, messages[0].author);
    assert_eq!(MessageRepository::find(store, messages[0].id).await.expect("find"), Some(edited.clone()));
    let page = store.history(general.id, &HistoryQuery::latest(50)).await.expect("history");
    assert_eq!(page.messages, vec![edited, messages[1].clone()]);
}

async fn edit_of_a_missing_or_deleted_message_is_message_not_found(db: &TestDatabase) {
    let store = db.store();
    let (_, _, messages) = room_with_messages(store, 1).await;
    let content = MessageContent::parse("nope").expect("valid");

    let error = store.edit(MessageId::generate(), &content, at(1)).await.expect_err("missing");
    assert!(matches!(error, DomainError::MessageNotFound), "{error:?}");
    store.delete(messages[0].id, at(2)).await.expect("delete");
    let error = store.edit(messages[0].id, &content, at(3)).await.expect_err("deleted");
    assert!(matches!(error, DomainError::MessageNotFound), "{error:?}");
}

async fn delete_of_a_missing_message_is_false(db: &TestDatabase) {
    let store = db.store();
    assert!(!store.delete(MessageId::generate(), at(1)).await.expect("delete"));
}

async fn retry_of_a_deleted_message_returns_it_and_posts_nothing(db: &TestDatabase) {
    let store = db.store();
    let ada = user(store, "ada").await;
    let general = room(store, &ada, "general").await;
    let original = store.insert(&new_message(general.id, &ada, "oops", Some("k"), 1)).await.expect("insert");
    store.delete(original.message.id, at(2)).await.expect("delete");

    let retry = store.insert(&new_message(general.id, &ada, "oops", Some("k"), 3)).await.expect("retry");
    assert_eq!(retry, Posted { message: original.message, created: false });
    assert_eq!(history(store, general.id, None, None, 50).await, (vec![], false));
}

// ---- operations -------------------------------------------------------------------------------

async fn probe_reports_the_database_as_reachable(db: &TestDatabase) {
    let store = db.store();
    assert_eq!(store.name(), "database");
    store.check().await.expect("reachable");
}

async fn migrating_again_changes_nothing(db: &TestDatabase) {
    let store = db.store();
    let ada = user(store, "ada").await;
    store.migrate().await.expect("second migration");
    assert_eq!(store.find_by_id(ada.id).await.expect("find"), Some(ada));
}

async fn migrations_roll_back_and_apply_again(db: &TestDatabase) {
    let store = db.store();
    user(store, "ada").await;
    Migrator::down(store.connection(), None).await.expect("roll back");
    store.migrate().await.expect("apply again");
    assert_eq!(store.find_by_id(UserId::generate()).await.expect("find"), None);
    let (_, general, _) = room_with_messages(store, 2).await;
    assert_eq!(history(store, general.id, None, None, 50).await, (vec![1, 2], false));
}
