//! The contract of [`RoomRepository`]: room names unique ignoring case (Unicode included), the
//! directory by literal prefix, a user's rooms by recent activity, and idempotent joins and
//! leaves.

use std::sync::Arc;

use convo_domain::{DomainError, Membership, RoomId, RoomName, RoomRepository, UserId};

use crate::fixture::Case;
use crate::storage::{Storage, at, directory, names, new_message, new_room, room, user};

/// Every body of this module, by name.
pub fn cases<S: Storage + ?Sized + 'static>() -> Vec<Case<S>> {
    crate::room_repository_contract! { @bodies cases }
}

pub async fn created_room_has_its_owner_as_only_member<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
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

pub async fn room_name_is_unique_ignoring_case_including_unicode<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
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

pub async fn room_is_found_by_id_and_by_name_in_any_case<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
    let ada = user(store, "ada").await;
    let cafe = room(store, &ada, "Café Crème").await;

    assert_eq!(RoomRepository::find(store, cafe.id).await.expect("find"), Some(cafe.clone()));
    for spelling in ["Café Crème", "CAFÉ CRÈME", "café crème"] {
        let name = RoomName::parse(spelling).expect("valid");
        assert_eq!(store.find_by_name(&name).await.expect("find"), Some(cafe.clone()), "{spelling}");
    }
}

pub async fn missing_rooms_are_not_found<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
    assert_eq!(RoomRepository::find(store, RoomId::generate()).await.expect("find"), None);
    let name = RoomName::parse("nowhere").expect("valid");
    assert_eq!(store.find_by_name(&name).await.expect("find"), None);
}

pub async fn directory_lists_rooms_starting_with_the_prefix_by_name<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
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

pub async fn directory_prefix_ignores_case_including_unicode<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
    let ada = user(store, "ada").await;
    room(store, &ada, "Café au lait").await;
    room(store, &ada, "Cafeteria").await;
    room(store, &ada, "Ωmega").await;

    assert_eq!(names(&directory(store, "CAFÉ", 50).await), ["Café au lait"]);
    assert_eq!(names(&directory(store, "caf", 50).await), ["Cafeteria", "Café au lait"]);
    assert_eq!(names(&directory(store, "ωME", 50).await), ["Ωmega"]);
}

pub async fn directory_prefix_treats_percent_and_underscore_literally<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
    let ada = user(store, "ada").await;
    for name in ["a_b", "axb", "abc", "a b"] {
        room(store, &ada, name).await;
    }
    assert_eq!(names(&directory(store, "a_", 50).await), ["a_b"]);
    assert!(directory(store, "a%", 50).await.is_empty());
    assert!(directory(store, "%", 50).await.is_empty());
    assert!(directory(store, "_", 50).await.is_empty());
}

pub async fn directory_respects_the_limit<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
    let ada = user(store, "ada").await;
    for n in 0..5 {
        room(store, &ada, &format!("room {n}")).await;
    }
    assert_eq!(names(&directory(store, "room", 2).await), ["room 0", "room 1"]);
}

pub async fn rooms_of_lists_the_users_rooms_most_recently_active_first<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
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

pub async fn membership_tells_no_such_room_outsider_and_member<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
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

pub async fn second_join_is_idempotent<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
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

pub async fn join_of_a_missing_room_is_room_not_found<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
    let ada = user(store, "ada").await;
    let error = store.join(RoomId::generate(), ada.id, at(1)).await.expect_err("no room");
    assert!(matches!(error, DomainError::RoomNotFound), "{error:?}");
}

pub async fn second_leave_is_idempotent<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
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

pub async fn members_are_ordered_by_join_time_then_username<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
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
