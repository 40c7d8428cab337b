//! The contract of [`MessageCache`]: a hit is always what storage would answer for the latest
//! page. It never lacks an acknowledged message, never shows a deleted message or an old edit,
//! and says `has_more` exactly when older messages exist. A fill is accepted only if nothing was
//! written to the room since its ticket was handed out, and only once per ticket.

use std::sync::Arc;

use convo_domain::{CachedPage, FillTicket, HistoryPage, Message, MessageCache, RECENT_MESSAGES, RoomId};

use crate::fixture::{Case, edited, message, messages};

/// Every body of this module, by name.
pub fn cases<C: MessageCache + ?Sized + 'static>() -> Vec<Case<C>> {
    crate::message_cache_contract! { @bodies cases }
}

const RECENT: i64 = RECENT_MESSAGES as i64;

async fn latest<C: MessageCache + ?Sized>(cache: &C, room: RoomId, limit: u32) -> CachedPage {
    cache.latest(room, limit).await.expect("latest")
}

/// The ticket of a read that must miss.
async fn miss<C: MessageCache + ?Sized>(cache: &C, room: RoomId, limit: u32) -> FillTicket {
    match latest(cache, room, limit).await {
        CachedPage::Miss(ticket) => ticket,
        CachedPage::Hit(page) => {
            panic!("expected a miss for limit {limit}, got a hit of {} messages", page.messages.len())
        }
    }
}

/// The page of a read that must hit.
async fn hit<C: MessageCache + ?Sized>(cache: &C, room: RoomId, limit: u32) -> HistoryPage {
    match latest(cache, room, limit).await {
        CachedPage::Hit(page) => (*page).clone(),
        CachedPage::Miss(_) => panic!("expected a hit for limit {limit}, got a miss"),
    }
}

/// Misses, then fills the room with `stored` (its latest messages, `has_more` if older exist).
async fn load<C: MessageCache + ?Sized>(cache: &C, room: RoomId, stored: &[Message], has_more: bool) {
    let ticket = miss(cache, room, 1).await;
    let page = HistoryPage::new(stored.to_vec(), has_more);
    cache.fill(room, &page, ticket).await.expect("fill");
}

fn page(messages: &[Message], has_more: bool) -> HistoryPage {
    HistoryPage::new(messages.to_vec(), has_more)
}

async fn stored<C: MessageCache + ?Sized>(cache: &C, message: &Message) {
    cache.messages_stored(message.room_id, std::slice::from_ref(message)).await.expect("message stored");
}

/// Either a miss, or a hit that satisfies `check`: for writes whose effect an adapter may
/// apply or may answer by forgetting the room.
async fn miss_or_hit<C: MessageCache + ?Sized>(
    cache: &C,
    room: RoomId,
    limit: u32,
    check: impl FnOnce(&HistoryPage),
) {
    if let CachedPage::Hit(page) = latest(cache, room, limit).await {
        check(&page);
    }
}

pub async fn empty_cache_misses_with_a_ticket<C: MessageCache + ?Sized>(cache: Arc<C>) {
    let room = RoomId::generate();
    miss(&*cache, room, 50).await;
    miss(&*cache, room, 1).await;
}

pub async fn fill_then_latest_hits_with_the_latest_slice<C: MessageCache + ?Sized>(cache: Arc<C>) {
    let room = RoomId::generate();
    let all = messages(room, 1, 30);
    load(&*cache, room, &all, false).await;
    assert_eq!(hit(&*cache, room, 10).await, page(&all[20..], true), "the latest 10, older ones exist");
    assert_eq!(hit(&*cache, room, 1).await, page(&all[29..], true));
    assert_eq!(hit(&*cache, room, 30).await, page(&all, false), "the whole history");
}

pub async fn limit_over_a_complete_history_returns_all<C: MessageCache + ?Sized>(cache: Arc<C>) {
    let room = RoomId::generate();
    let all = messages(room, 1, 7);
    load(&*cache, room, &all, false).await;
    assert_eq!(hit(&*cache, room, 50).await, page(&all, false));
    assert_eq!(hit(&*cache, room, RECENT_MESSAGES).await, page(&all, false));
}

pub async fn limit_over_an_incomplete_history_misses<C: MessageCache + ?Sized>(cache: Arc<C>) {
    let room = RoomId::generate();
    let recent = messages(room, 71, 100);
    load(&*cache, room, &recent, true).await;
    assert_eq!(hit(&*cache, room, 30).await, page(&recent, true));
    miss(&*cache, room, 31).await;
    miss(&*cache, room, 50).await;
}

pub async fn has_more_when_older_messages_exist<C: MessageCache + ?Sized>(cache: Arc<C>) {
    let room = RoomId::generate();
    let recent = messages(room, 50, 60);
    load(&*cache, room, &recent, true).await;
    assert_eq!(hit(&*cache, room, 11).await, page(&recent, true), "all held, but older ones exist");
    assert_eq!(hit(&*cache, room, 5).await, page(&recent[6..], true));
}

pub async fn next_message_is_appended<C: MessageCache + ?Sized>(cache: Arc<C>) {
    let room = RoomId::generate();
    let mut all = messages(room, 1, 5);
    load(&*cache, room, &all, false).await;
    for seq in 6..=8 {
        let next = message(room, seq);
        stored(&*cache, &next).await;
        all.push(next);
    }
    assert_eq!(hit(&*cache, room, 10).await, page(&all, false));
    assert_eq!(hit(&*cache, room, 2).await, page(&all[6..], true));
}

pub async fn a_batch_of_stored_messages_is_appended_in_order<C: MessageCache + ?Sized>(cache: Arc<C>) {
    let room = RoomId::generate();
    let mut all = messages(room, 1, 5);
    load(&*cache, room, &all, false).await;
    let batch = messages(room, 6, 9);
    cache.messages_stored(room, &batch).await.expect("stored");
    all.extend(batch);
    assert_eq!(hit(&*cache, room, 10).await, page(&all, false));

    // A batch after a gap (another instance's batch, reported late) is never served without
    // the gap; once storage refills the room, all of it is.
    let (late, early) = (messages(room, 10, 11), messages(room, 12, 13));
    cache.messages_stored(room, &early).await.expect("stored");
    miss(&*cache, room, 10).await;
    cache.messages_stored(room, &late).await.expect("stored");
    let ticket = miss(&*cache, room, 10).await;
    all.extend(late);
    all.extend(early);
    cache.fill(room, &page(&all, false), ticket).await.expect("fill");
    assert_eq!(hit(&*cache, room, 13).await, page(&all, false));
}

pub async fn first_message_of_an_empty_room_is_appended<C: MessageCache + ?Sized>(cache: Arc<C>) {
    let room = RoomId::generate();
    load(&*cache, room, &[], false).await;
    assert_eq!(hit(&*cache, room, 50).await, page(&[], false), "an empty room is known to be empty");
    let first = message(room, 1);
    stored(&*cache, &first).await;
    assert_eq!(hit(&*cache, room, 50).await, page(&[first], false));
}

pub async fn message_after_a_gap_is_never_served_without_the_gap<C: MessageCache + ?Sized>(cache: Arc<C>) {
    let room = RoomId::generate();
    let mut all = messages(room, 1, 5);
    load(&*cache, room, &all, false).await;
    let (sixth, seventh) = (message(room, 6), message(room, 7));
    // The report of 6 is late: 7 arrives first.
    stored(&*cache, &seventh).await;
    let ticket = miss(&*cache, room, 10).await;
    stored(&*cache, &sixth).await;
    miss(&*cache, room, 10).await;

    all.extend([sixth, seventh]);
    cache.fill(room, &page(&all, false), ticket).await.expect("fill");
    let ticket = miss(&*cache, room, 10).await;
    cache.fill(room, &page(&all, false), ticket).await.expect("fill");
    assert_eq!(hit(&*cache, room, 10).await, page(&all, false), "a fill after the last write is accepted");
}

pub async fn repeated_store_report_changes_nothing<C: MessageCache + ?Sized>(cache: Arc<C>) {
    let room = RoomId::generate();
    let all = messages(room, 1, 5);
    load(&*cache, room, &all, false).await;
    stored(&*cache, &all[4]).await;
    stored(&*cache, &all[2]).await;
    assert_eq!(hit(&*cache, room, 10).await, page(&all, false));
}

pub async fn fill_after_a_store_is_refused<C: MessageCache + ?Sized>(cache: Arc<C>) {
    let room = RoomId::generate();
    let mut all = messages(room, 1, 5);
    let ticket = miss(&*cache, room, 10).await;
    let next = message(room, 6);
    stored(&*cache, &next).await;
    // Storage was read before the sixth message: that page must not be kept.
    cache.fill(room, &page(&all, false), ticket).await.expect("fill");
    let ticket = miss(&*cache, room, 10).await;

    all.push(next);
    cache.fill(room, &page(&all, false), ticket).await.expect("fill");
    assert_eq!(hit(&*cache, room, 10).await, page(&all, false));
}

pub async fn a_ticket_fills_at_most_once<C: MessageCache + ?Sized>(cache: Arc<C>) {
    let room = RoomId::generate();
    let mut all = messages(room, 1, 5);
    let ticket = miss(&*cache, room, 10).await;
    // Two readers missed with the same ticket. The slower one read storage before the sixth
    // message committed, the faster one after, and the faster one's fill landed first; the
    // report of the sixth is still on its way.
    let sixth = message(room, 6);
    let newer = [all.clone(), vec![sixth.clone()]].concat();
    cache.fill(room, &page(&newer, false), ticket).await.expect("fill");
    cache.fill(room, &page(&all, false), ticket).await.expect("fill");
    stored(&*cache, &sixth).await;
    let seventh = message(room, 7);
    stored(&*cache, &seventh).await;

    all.extend([sixth, seventh]);
    miss_or_hit(&*cache, room, 10, |shown| {
        assert_eq!(shown, &page(&all, false), "an older page filled with a used ticket hid a message");
    })
    .await;
}

pub async fn fill_after_an_edit_is_refused<C: MessageCache + ?Sized>(cache: Arc<C>) {
    let room = RoomId::generate();
    let mut all = messages(room, 1, 5);
    let ticket = miss(&*cache, room, 10).await;
    let edit = edited(&all[2], "edited before the fill");
    cache.message_edited(&edit).await.expect("message edited");
    cache.fill(room, &page(&all, false), ticket).await.expect("fill");
    let ticket = miss(&*cache, room, 10).await;

    all[2] = edit;
    cache.fill(room, &page(&all, false), ticket).await.expect("fill");
    assert_eq!(hit(&*cache, room, 10).await, page(&all, false));
}

pub async fn fill_after_a_delete_is_refused<C: MessageCache + ?Sized>(cache: Arc<C>) {
    let room = RoomId::generate();
    let mut all = messages(room, 1, 5);
    let ticket = miss(&*cache, room, 10).await;
    cache.message_deleted(room, all[2].id).await.expect("message deleted");
    cache.fill(room, &page(&all, false), ticket).await.expect("fill");
    let ticket = miss(&*cache, room, 10).await;

    all.remove(2);
    cache.fill(room, &page(&all, false), ticket).await.expect("fill");
    assert_eq!(hit(&*cache, room, 10).await, page(&all, false));
}

pub async fn edits_replace_content_in_hits<C: MessageCache + ?Sized>(cache: Arc<C>) {
    let room = RoomId::generate();
    let mut all = messages(room, 1, 5);
    load(&*cache, room, &all, false).await;
    let edit = edited(&all[3], "new words");
    cache.message_edited(&edit).await.expect("message edited");
    all[3] = edit;
    assert_eq!(hit(&*cache, room, 10).await, page(&all, false));
    let again = edited(&all[3], "newer words");
    cache.message_edited(&again).await.expect("message edited");
    all[3] = again;
    assert_eq!(hit(&*cache, room, 2).await, page(&all[3..], true));
}

pub async fn deletes_vanish_from_hits<C: MessageCache + ?Sized>(cache: Arc<C>) {
    let room = RoomId::generate();
    let mut all = messages(room, 1, 5);
    load(&*cache, room, &all, false).await;
    cache.message_deleted(room, all[2].id).await.expect("message deleted");
    all.remove(2);
    assert_eq!(hit(&*cache, room, 10).await, page(&all, false));
    cache.message_deleted(room, all[3].id).await.expect("message deleted");
    all.remove(3);
    assert_eq!(hit(&*cache, room, 10).await, page(&all, false));
    let next = message(room, 6);
    stored(&*cache, &next).await;
    all.push(next);
    assert_eq!(hit(&*cache, room, 10).await, page(&all, false), "seqs of deleted messages stay unused");

    // Held fewer than asked for, with older messages not held: storage must answer.
    let other = RoomId::generate();
    let recent = messages(other, 11, 15);
    load(&*cache, other, &recent, true).await;
    cache.message_deleted(other, recent[1].id).await.expect("message deleted");
    miss(&*cache, other, 5).await;
}

pub async fn delete_reported_before_its_store_never_shows<C: MessageCache + ?Sized>(cache: Arc<C>) {
    let room = RoomId::generate();
    let all = messages(room, 1, 5);
    load(&*cache, room, &all, false).await;
    let sixth = message(room, 6);
    cache.message_deleted(room, sixth.id).await.expect("message deleted");
    stored(&*cache, &sixth).await;
    miss_or_hit(&*cache, room, 10, |page| {
        assert!(page.messages.iter().all(|shown| shown.id != sixth.id), "a deleted message was served");
    })
    .await;
}

pub async fn edit_reported_before_its_store_never_shows_old_content<C: MessageCache + ?Sized>(cache: Arc<C>) {
    let room = RoomId::generate();
    let all = messages(room, 1, 5);
    load(&*cache, room, &all, false).await;
    let sixth = message(room, 6);
    let edit = edited(&sixth, "edited at once");
    cache.message_edited(&edit).await.expect("message edited");
    stored(&*cache, &sixth).await;
    miss_or_hit(&*cache, room, 10, |page| {
        for shown in page.messages.iter().filter(|shown| shown.id == sixth.id) {
            assert_eq!(shown, &edit, "an old version of an edited message was served");
        }
    })
    .await;
}

pub async fn never_more_than_recent_messages_are_kept<C: MessageCache + ?Sized>(cache: Arc<C>) {
    let room = RoomId::generate();
    let mut all = messages(room, 1, RECENT);
    load(&*cache, room, &all, false).await;
    assert_eq!(hit(&*cache, room, RECENT_MESSAGES).await, page(&all, false));
    for seq in RECENT + 1..=RECENT + 10 {
        let next = message(room, seq);
        stored(&*cache, &next).await;
        all.push(next);
    }
    let kept = &all[all.len() - RECENT_MESSAGES as usize..];
    assert_eq!(hit(&*cache, room, RECENT_MESSAGES).await, page(kept, true), "the oldest left the cache");

    // A fill larger than the cache keeps only the latest RECENT_MESSAGES.
    let other = RoomId::generate();
    let long = messages(other, 1, RECENT + 50);
    load(&*cache, other, &long, false).await;
    let kept = &long[long.len() - RECENT_MESSAGES as usize..];
    assert_eq!(hit(&*cache, other, RECENT_MESSAGES).await, page(kept, true));
}

pub async fn a_page_read_again_shows_every_change_since<C: MessageCache + ?Sized>(cache: Arc<C>) {
    let room = RoomId::generate();
    let mut all = messages(room, 1, 5);
    load(&*cache, room, &all, false).await;
    assert_eq!(hit(&*cache, room, 3).await, page(&all[2..], true));
    assert_eq!(hit(&*cache, room, 3).await, page(&all[2..], true), "read again, unchanged");
    let next = message(room, 6);
    stored(&*cache, &next).await;
    all.push(next);
    assert_eq!(hit(&*cache, room, 3).await, page(&all[3..], true), "a new message");
    let edit = edited(&all[5], "new words");
    cache.message_edited(&edit).await.expect("message edited");
    all[5] = edit;
    assert_eq!(hit(&*cache, room, 3).await, page(&all[3..], true), "an edit");
    cache.message_deleted(room, all[4].id).await.expect("message deleted");
    all.remove(4);
    assert_eq!(hit(&*cache, room, 3).await, page(&all[2..], true), "a deletion");
    assert_eq!(hit(&*cache, room, 10).await, page(&all, false), "another limit");
}

/// Readers of a room that has not changed share one page (and whatever was rendered of it); a
/// change gives the next reader a page of its own.
pub async fn readers_of_an_unchanged_room_share_one_page<C: MessageCache + ?Sized>(cache: Arc<C>) {
    let room = RoomId::generate();
    let mut all = messages(room, 1, 5);
    load(&*cache, room, &all, false).await;
    let shared = |answer: CachedPage| match answer {
        CachedPage::Hit(page) => page,
        CachedPage::Miss(_) => panic!("expected a hit"),
    };
    let first = shared(latest(&*cache, room, 3).await);
    let again = shared(latest(&*cache, room, 3).await);
    assert!(Arc::ptr_eq(&first, &again), "read again, unchanged: the same page");
    let next = message(room, 6);
    stored(&*cache, &next).await;
    all.push(next);
    let after = shared(latest(&*cache, room, 3).await);
    assert!(!Arc::ptr_eq(&first, &after), "a new message, a new page");
    assert_eq!(*after, page(&all[3..], true));
}

pub async fn rooms_are_independent<C: MessageCache + ?Sized>(cache: Arc<C>) {
    let (first, second) = (RoomId::generate(), RoomId::generate());
    let ticket = miss(&*cache, first, 10).await;
    let mut elsewhere = messages(second, 1, 3);
    load(&*cache, second, &elsewhere, false).await;
    let next = message(second, 4);
    stored(&*cache, &next).await;
    elsewhere.push(next);

    // Writes to the second room do not make the first room's ticket stale.
    let here = messages(first, 1, 2);
    cache.fill(first, &page(&here, false), ticket).await.expect("fill");
    assert_eq!(hit(&*cache, first, 10).await, page(&here, false));
    assert_eq!(hit(&*cache, second, 10).await, page(&elsewhere, false));
}
