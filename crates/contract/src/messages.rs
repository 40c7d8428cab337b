//! The contract of [`MessageRepository`]: seqs without gaps or duplicates under concurrent
//! senders, idempotent retries by client message id, history pages in both directions, and
//! edits and deletes that never reuse a seq.

use std::collections::HashSet;
use std::sync::Arc;

use convo_domain::{
    ClientMessageId, DomainError, HistoryQuery, MessageContent, MessageId, MessageRepository, Posted, Room,
    RoomId, RoomRepository, User, UserId,
};

use crate::fixture::Case;
use crate::storage::{Storage, at, history, new_message, room, room_with_messages, send, user};

/// Every body of this module but the two-handle one, by name.
pub fn cases<S: Storage + ?Sized + 'static>() -> Vec<Case<S>> {
    crate::message_repository_contract! { @bodies cases }
}

// ---- sending ----------------------------------------------------------------------------------

pub async fn messages_get_consecutive_seqs_and_carry_the_author<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
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

pub async fn insert_into_a_missing_room_is_room_not_found<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
    let ada = user(store, "ada").await;
    let error =
        store.insert(&new_message(RoomId::generate(), &ada, "hi", None, 1)).await.expect_err("no room");
    assert!(matches!(error, DomainError::RoomNotFound), "{error:?}");
}

pub async fn insert_by_an_outsider_is_not_a_member_and_uses_no_seq<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
    let ada = user(store, "ada").await;
    let eve = user(store, "eve").await;
    let general = room(store, &ada, "general").await;

    let error = store.insert(&new_message(general.id, &eve, "hi", Some("k"), 1)).await.expect_err("outsider");
    assert!(matches!(error, DomainError::NotAMember), "{error:?}");
    let after = RoomRepository::find(store, general.id).await.expect("find").expect("exists");
    assert_eq!(after.last_seq, 0);
    assert_eq!(send(store, general.id, &ada, "first").await.seq, 1);
}

pub async fn a_batch_stores_the_good_messages_and_refuses_each_bad_one_alone<S: Storage + ?Sized>(
    storage: Arc<S>,
) {
    let store = &*storage;
    let ada = user(store, "ada").await;
    let bob = user(store, "bob").await;
    let eve = user(store, "eve").await;
    let general = room(store, &ada, "general").await;
    RoomRepository::join(store, general.id, bob.id, at(1)).await.expect("join");
    let earlier =
        store.insert(&new_message(general.id, &ada, "earlier", Some("k0"), 2)).await.expect("insert");
    let deleted =
        store.insert(&new_message(general.id, &ada, "deleted since", Some("kd"), 2)).await.expect("insert");
    assert!(store.delete(deleted.message.id, at(2)).await.expect("delete"));

    let batch = [
        new_message(general.id, &ada, "one", None, 3),
        new_message(general.id, &eve, "not a member", None, 3),
        new_message(general.id, &ada, "a late retry", Some("k0"), 3),
        new_message(general.id, &bob, "two", Some("k1"), 4),
        new_message(general.id, &bob, "two, retried in the same batch", Some("k1"), 4),
        new_message(general.id, &ada, "three", None, 5),
        new_message(general.id, &ada, "a retry of the deleted one", Some("kd"), 5),
    ];
    let outcomes = store.insert_batch(general.id, &batch).await.expect("the batch as a whole");
    assert_eq!(outcomes.len(), batch.len());

    let created = |index: usize| match &outcomes[index] {
        Ok(Posted { message, created: true }) => message.clone(),
        other => panic!("message {index} should be stored: {other:?}"),
    };
    let (one, two, three) = (created(0), created(3), created(5));
    assert_eq!([one.seq, two.seq, three.seq], [3, 4, 5], "consecutive seqs in batch order");
    assert_eq!((two.author.username.as_str(), two.content.as_str()), ("bob", "two"));
    assert_eq!(two.created_at, at(4));
    assert!(matches!(&outcomes[1], Err(DomainError::NotAMember)), "{:?}", outcomes[1]);
    assert!(matches!(&outcomes[2], Ok(Posted { message, created: false }) if *message == earlier.message));
    assert!(matches!(&outcomes[4], Ok(Posted { message, created: false }) if *message == two));
    assert!(matches!(&outcomes[6], Err(DomainError::MessageDeleted)), "{:?}", outcomes[6]);

    let page = store.history(general.id, &HistoryQuery::latest(100)).await.expect("history");
    assert_eq!(page.messages, vec![earlier.message, one, two, three], "as storage reads them back");
    assert_eq!(RoomRepository::find(store, general.id).await.expect("find").expect("exists").last_seq, 5);
    assert_eq!(send(store, general.id, &ada, "next").await.seq, 6, "the refused gave their seqs back");
}

pub async fn a_batch_of_refusals_only_uses_no_seq<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
    let ada = user(store, "ada").await;
    let eve = user(store, "eve").await;
    let general = room(store, &ada, "general").await;

    let batch = [new_message(general.id, &eve, "a", None, 1), new_message(general.id, &eve, "b", None, 1)];
    let outcomes = store.insert_batch(general.id, &batch).await.expect("the batch as a whole");
    assert!(outcomes.iter().all(|outcome| matches!(outcome, Err(DomainError::NotAMember))), "{outcomes:?}");
    let missing = RoomId::generate();
    let outcomes =
        store.insert_batch(missing, &[new_message(missing, &ada, "a", None, 1)]).await.expect("the batch");
    assert!(matches!(outcomes[..], [Err(DomainError::RoomNotFound)]), "{outcomes:?}");
    assert_eq!(RoomRepository::find(store, general.id).await.expect("find").expect("exists").last_seq, 0);
    assert_eq!(send(store, general.id, &ada, "first").await.seq, 1);
}

pub async fn concurrent_batches_interleave_without_gaps<S: Storage + ?Sized + 'static>(storage: Arc<S>) {
    let store = &*storage;
    let ada = user(store, "ada").await;
    let general = room(store, &ada, "general").await;

    // Eight batches of eight at once: each batch's seqs are consecutive, in batch order.
    let tasks: Vec<_> = (0..8)
        .map(|b| {
            let (store, ada) = (Arc::clone(&storage), ada.clone());
            tokio::spawn(async move {
                let batch: Vec<_> =
                    (0..8).map(|n| new_message(general.id, &ada, &format!("{b}.{n}"), None, 1)).collect();
                store.insert_batch(general.id, &batch).await.expect("batch")
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        let batch: Vec<i64> = task
            .await
            .expect("task")
            .into_iter()
            .map(|outcome| outcome.expect("stored").message.seq)
            .collect();
        assert!(batch.windows(2).all(|pair| pair[1] == pair[0] + 1), "{batch:?}");
        seqs.extend(batch);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=64).collect::<Vec<_>>(), "no gap, no duplicate");
    let (stored, _) = history(store, general.id, None, None, 100).await;
    assert_eq!(stored, (1..=64).collect::<Vec<_>>());
}

pub async fn retry_with_the_same_client_message_id_returns_the_original<S: Storage + ?Sized>(
    storage: Arc<S>,
) {
    let store = &*storage;
    let ada = user(store, "ada").await;
    let general = room(store, &ada, "general").await;
    let original =
        store.insert(&new_message(general.id, &ada, "first try", Some("k1"), 1)).await.expect("insert");

    let retry =
        store.insert(&new_message(general.id, &ada, "second try", Some("k1"), 2)).await.expect("retry");
    assert_eq!(retry, Posted { message: original.message.clone(), created: false });
    assert_eq!(send(store, general.id, &ada, "next").await.seq, 2, "the retry used no seq");
    assert_eq!(history(store, general.id, None, None, 10).await, (vec![1, 2], false));
}

pub async fn client_message_ids_are_per_author<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
    let ada = user(store, "ada").await;
    let bob = user(store, "bob").await;
    let general = room(store, &ada, "general").await;
    store.join(general.id, bob.id, at(0)).await.expect("join");

    let by_ada = store.insert(&new_message(general.id, &ada, "a", Some("same"), 1)).await.expect("insert");
    let by_bob = store.insert(&new_message(general.id, &bob, "b", Some("same"), 1)).await.expect("insert");
    assert!(by_ada.created && by_bob.created);
    assert_ne!(by_ada.message.id, by_bob.message.id);
    let retry =
        store.insert(&new_message(general.id, &bob, "b again", Some("same"), 2)).await.expect("retry");
    assert_eq!(retry, Posted { message: by_bob.message, created: false }, "bob's key names bob's message");
}

pub async fn concurrent_inserts_with_the_same_client_message_id_store_one_message<
    S: Storage + ?Sized + 'static,
>(
    storage: Arc<S>,
) {
    let store = &*storage;
    let ada = user(store, "ada").await;
    let general = room(store, &ada, "general").await;
    let other = room(store, &ada, "other").await;

    // Eight racing retries, half of them (wrongly) naming another room: the key is the author's.
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let (store, ada) = (Arc::clone(&storage), ada.clone());
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
async fn send_concurrently<S: Storage + ?Sized + 'static>(
    stores: &[Arc<S>],
    room: RoomId,
    senders: &[User],
) -> Vec<(UserId, i64)> {
    let tasks: Vec<_> = senders
        .iter()
        .enumerate()
        .map(|(n, sender)| {
            let (store, sender) = (Arc::clone(&stores[n % stores.len()]), sender.clone());
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

async fn assert_seqs_without_gaps<S: Storage + ?Sized>(store: &S, room: RoomId, sent: &[(UserId, i64)]) {
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

async fn sixteen_senders<S: Storage + ?Sized>(store: &S) -> (Room, Vec<User>) {
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

pub async fn sixteen_concurrent_senders_get_seqs_one_to_forty_eight_without_gaps<
    S: Storage + ?Sized + 'static,
>(
    storage: Arc<S>,
) {
    let store = &*storage;
    let (general, senders) = sixteen_senders(store).await;
    let sent = send_concurrently(std::slice::from_ref(&storage), general.id, &senders).await;
    assert_seqs_without_gaps(store, general.id, &sent).await;
}

/// Like two server instances on one database: nothing in the process serialises them. Not in
/// [`cases`]: a driver runs it with a second handle of its own on the same store (a SQL driver:
/// a second connection pool), where a store can be shared.
pub async fn senders_through_two_handles_on_one_store_get_seqs_without_gaps<S: Storage + ?Sized + 'static>(
    storage: Arc<S>,
    second: Arc<S>,
) {
    let store = &*storage;
    let (general, senders) = sixteen_senders(store).await;
    let sent = send_concurrently(&[Arc::clone(&storage), second], general.id, &senders).await;
    assert_seqs_without_gaps(store, general.id, &sent).await;
}

// ---- history ----------------------------------------------------------------------------------

pub async fn history_without_cursor_is_the_latest_page_ascending<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
    let (_, general, messages) = room_with_messages(store, 5).await;

    let page = store.history(general.id, &HistoryQuery::latest(2)).await.expect("history");
    assert_eq!(page.messages, messages[3..].to_vec());
    assert!(page.has_more);
    assert_eq!(history(store, general.id, None, None, 5).await, (vec![1, 2, 3, 4, 5], false));
    assert_eq!(history(store, general.id, None, None, 50).await, (vec![1, 2, 3, 4, 5], false));
}

pub async fn history_pages_back_with_before<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
    let (_, general, _) = room_with_messages(store, 5).await;

    assert_eq!(history(store, general.id, Some(4), None, 2).await, (vec![2, 3], true));
    assert_eq!(history(store, general.id, Some(2), None, 2).await, (vec![1], false));
    assert_eq!(history(store, general.id, Some(3), None, 2).await, (vec![1, 2], false));
    assert_eq!(history(store, general.id, Some(1), None, 2).await, (vec![], false));
    assert_eq!(history(store, general.id, Some(99), None, 2).await, (vec![4, 5], true));
}

pub async fn history_pages_forward_with_after<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
    let (_, general, _) = room_with_messages(store, 5).await;

    assert_eq!(history(store, general.id, None, Some(0), 2).await, (vec![1, 2], true));
    assert_eq!(history(store, general.id, None, Some(2), 2).await, (vec![3, 4], true));
    assert_eq!(history(store, general.id, None, Some(3), 2).await, (vec![4, 5], false));
    assert_eq!(history(store, general.id, None, Some(5), 2).await, (vec![], false));
}

pub async fn history_between_after_and_before_is_bounded_on_both_sides<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
    let (_, general, _) = room_with_messages(store, 6).await;

    assert_eq!(history(store, general.id, Some(5), Some(1), 10).await, (vec![2, 3, 4], false));
    assert_eq!(history(store, general.id, Some(5), Some(1), 2).await, (vec![2, 3], true));
    assert_eq!(history(store, general.id, Some(3), Some(2), 10).await, (vec![], false));
}

pub async fn history_of_an_empty_room_is_empty<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
    let ada = user(store, "ada").await;
    let general = room(store, &ada, "general").await;
    assert_eq!(history(store, general.id, None, None, 50).await, (vec![], false));
    assert_eq!(history(store, RoomId::generate(), None, Some(0), 50).await, (vec![], false));
}

// ---- edits and deletes ------------------------------------------------------------------------

pub async fn deleted_messages_are_hidden_and_keep_their_seq<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
    let (ada, general, messages) = room_with_messages(store, 3).await;

    assert!(store.delete(messages[1].id, at(9)).await.expect("delete"));
    assert!(!store.delete(messages[1].id, at(10)).await.expect("delete again"));
    assert_eq!(MessageRepository::find(store, messages[1].id).await.expect("find"), None);
    assert_eq!(history(store, general.id, None, None, 50).await, (vec![1, 3], false));
    assert_eq!(history(store, general.id, None, Some(0), 50).await, (vec![1, 3], false));
    assert_eq!(history(store, general.id, Some(3), None, 50).await, (vec![1], false));
    assert_eq!(send(store, general.id, &ada, "after").await.seq, 4, "a deleted seq is never reused");
}

pub async fn deleted_messages_do_not_count_towards_a_page<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
    let (_, general, messages) = room_with_messages(store, 4).await;
    store.delete(messages[0].id, at(9)).await.expect("delete");

    // Two live messages before seq 4: [2, 3], and nothing live before them.
    assert_eq!(history(store, general.id, Some(4), None, 2).await, (vec![2, 3], false));
    assert_eq!(history(store, general.id, None, None, 3).await, (vec![2, 3, 4], false));
}

pub async fn edit_replaces_the_content_and_sets_edited_at<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
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

pub async fn edit_of_a_missing_or_deleted_message_is_message_not_found<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
    let (_, _, messages) = room_with_messages(store, 1).await;
    let content = MessageContent::parse("nope").expect("valid");

    let error = store.edit(MessageId::generate(), &content, at(1)).await.expect_err("missing");
    assert!(matches!(error, DomainError::MessageNotFound), "{error:?}");
    store.delete(messages[0].id, at(2)).await.expect("delete");
    let error = store.edit(messages[0].id, &content, at(3)).await.expect_err("deleted");
    assert!(matches!(error, DomainError::MessageNotFound), "{error:?}");
}

pub async fn delete_of_a_missing_message_is_false<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
    assert!(!store.delete(MessageId::generate(), at(1)).await.expect("delete"));
}

pub async fn retry_of_a_deleted_message_is_refused_and_posts_nothing<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
    let ada = user(store, "ada").await;
    let general = room(store, &ada, "general").await;
    let original = store.insert(&new_message(general.id, &ada, "oops", Some("k"), 1)).await.expect("insert");
    store.delete(original.message.id, at(2)).await.expect("delete");

    let error = store.insert(&new_message(general.id, &ada, "oops", Some("k"), 3)).await.expect_err("retry");
    assert!(matches!(error, DomainError::MessageDeleted), "{error:?}");
    assert_eq!(history(store, general.id, None, None, 50).await, (vec![], false));
    assert_eq!(send(store, general.id, &ada, "next").await.seq, 2, "the refused retry took no seq");
}
