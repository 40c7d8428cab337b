//! The latest messages of recently read rooms, in process memory.
//!
//! Per room the cache keeps `last_seq` (the highest seq it has heard of, even with nothing
//! held), the held messages (the latest non-deleted ones, ascending, at most
//! [`RECENT_MESSAGES`]), whether they are the room's `complete` history, whether they are
//! `loaded` at all, and a `version` that every write report replaces. A miss hands out the
//! version as its ticket, and a fill is kept only if the version is still the same, so a page
//! read from storage before a write can never overwrite what the write reported. A kept fill
//! replaces the version too: readers that missed together share a ticket, and the page of one
//! that read storage before a send committed must not replace the page of one that read after
//! it (`last_seq` would still count the send, and its report would be dropped as known).
//!
//! Versions come from one counter per shard, never reused, so a ticket cannot match again
//! after its room was evicted and read anew (no ABA). That also lets writes to rooms the cache
//! does not hold be ignored: no ticket that could still match was ever handed out for them.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use convo_domain::{
    CachedPage, DomainResult, FillTicket, HistoryPage, Message, MessageCache, MessageId, RECENT_MESSAGES,
    RoomId,
};

use crate::shard::Shards;

const RECENT: usize = RECENT_MESSAGES as usize;
/// Rooms, over the whole cache, that keep the page they served last (with what the API encoded
/// of it), so that the pages of the busiest rooms are made once per change: bounded apart from
/// the rooms held, since a kept page and its encoding can be as large as the room's messages.
const SERVED_PAGES: usize = 64;

/// [`MessageCache`] for a single instance. It holds at most `max_rooms` rooms (each up to
/// [`RECENT_MESSAGES`] messages) and evicts the least recently used when full.
#[derive(Debug)]
pub struct InMemoryMessageCache {
    shards: Shards<CacheShard>,
}

impl InMemoryMessageCache {
    /// The room limit of [`Default`]. Each room holds at most [`RECENT_MESSAGES`] messages
    /// (a message is at most about 4 KB), so the cache stays within a few hundred MB even when
    /// every room is full of maximal messages, and typically within a few MB. The pages kept for
    /// the 64 rooms served most recently, with their encodings, add at most a few tens of MB.
    pub const DEFAULT_MAX_ROOMS: usize = 1024;
    /// The cache is split into more shards only while each keeps at least this many rooms, so
    /// that each shard's least-recently-used order stays meaningful.
    const ROOMS_PER_SHARD: usize = 64;
    const MAX_SHARDS: usize = 16;

    /// A cache of at most `max_rooms` rooms (at least one).
    pub fn new(max_rooms: usize) -> Self {
        let max_rooms = max_rooms.max(1);
        Self::with_shards(max_rooms, (max_rooms / Self::ROOMS_PER_SHARD).clamp(1, Self::MAX_SHARDS))
    }

    /// Each shard evicts on its own, so the rooms are split evenly and the total stays within
    /// `max_rooms`.
    fn with_shards(max_rooms: usize, shards: usize) -> Self {
        let capacity = (max_rooms / shards).max(1);
        let serving = (SERVED_PAGES / shards).max(1);
        Self { shards: Shards::new(shards, || CacheShard::new(capacity, serving)) }
    }

    #[cfg(test)]
    fn rooms(&self) -> usize {
        self.shards.each().map(|shard| shard.rooms.len()).sum()
    }

    #[cfg(test)]
    fn pages_served(&self) -> usize {
        self.shards
            .each()
            .map(|shard| shard.rooms.values().filter(|room| room.served.is_some()).count())
            .sum()
    }

    #[cfg(test)]
    fn holds(&self, room: RoomId) -> bool {
        self.shards.of(&room).rooms.contains_key(&room)
    }
}

impl Default for InMemoryMessageCache {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_ROOMS)
    }
}

#[derive(Debug)]
struct CacheShard {
    rooms: HashMap<RoomId, RoomCache>,
    capacity: usize,
    /// The source of versions; every value is used once.
    versions: u64,
    /// A logical clock for least-recently-used order.
    ticks: u64,
    /// The rooms (with their version) whose page served last is kept, oldest first.
    serving: VecDeque<(RoomId, u64)>,
    serving_capacity: usize,
}

impl CacheShard {
    fn new(capacity: usize, serving_capacity: usize) -> Self {
        Self {
            rooms: HashMap::new(),
            capacity,
            versions: 0,
            ticks: 0,
            serving: VecDeque::new(),
            serving_capacity,
        }
    }

    /// Notes that `room` keeps a page made at `version`; past the shard's share of
    /// [`SERVED_PAGES`], the room that made one longest ago lets its page go.
    fn now_serving(&mut self, room: RoomId, version: u64) {
        self.serving.push_back((room, version));
        while self.serving.len() > self.serving_capacity {
            let Some((oldest, made_at)) = self.serving.pop_front() else { break };
            if let Some(entry) = self.rooms.get_mut(&oldest)
                && entry.served.as_ref().is_some_and(|(version, _, _)| *version == made_at)
            {
                entry.served = None;
            }
        }
    }

    fn next_version(&mut self) -> u64 {
        self.versions += 1;
        self.versions
    }

    fn tick(&mut self) -> u64 {
        self.ticks += 1;
        self.ticks
    }

    /// The room's entry, marked as just used.
    fn used(&mut self, room: RoomId) -> Option<&mut RoomCache> {
        let now = self.tick();
        let entry = self.rooms.get_mut(&room)?;
        entry.last_used = now;
        Some(entry)
    }

    /// A write report: a new version for the room, if the room is held at all.
    fn written(&mut self, room: RoomId) -> Option<&mut RoomCache> {
        let version = self.next_version();
        let entry = self.used(room)?;
        entry.version = version;
        Some(entry)
    }

    /// The room's entry, marked as just used; a room not held yet is admitted (not loaded),
    /// after an eviction if the shard is full.
    fn open(&mut self, room: RoomId) -> &mut RoomCache {
        let now = self.tick();
        if self.rooms.len() >= self.capacity && !self.rooms.contains_key(&room) {
            self.evict();
        }
        let versions = &mut self.versions;
        let entry = self.rooms.entry(room).or_insert_with(|| {
            *versions += 1;
            RoomCache::new(*versions, now)
        });
        entry.last_used = now;
        entry
    }

    /// Drops the least recently used eighth of the shard in one O(n) pass, so evictions cost
    /// amortised O(1) per admitted room.
    fn evict(&mut self) {
        let count = (self.capacity / 8).max(1).min(self.rooms.len());
        if count == 0 {
            return;
        }
        let mut by_age: Vec<(u64, RoomId)> =
            self.rooms.iter().map(|(room, entry)| (entry.last_used, *room)).collect();
        by_age.select_nth_unstable(count - 1);
        for (_, room) in &by_age[..count] {
            self.rooms.remove(room);
        }
    }
}

#[derive(Debug)]
struct RoomCache {
    version: u64,
    last_seq: i64,
    loaded: bool,
    complete: bool,
    held: VecDeque<Message>,
    last_used: u64,
    /// The page last handed out, with the version and limit it was made for: readers of an
    /// unchanged room share it, and with it what the API encoded of it. Kept for the
    /// [`SERVED_PAGES`] rooms that made one most recently.
    served: Option<(u64, u32, Arc<HistoryPage>)>,
}

impl RoomCache {
    fn new(version: u64, last_used: u64) -> Self {
        Self {
            version,
            last_seq: 0,
            loaded: false,
            complete: false,
            held: VecDeque::new(),
            last_used,
            served: None,
        }
    }

    /// The latest `limit` messages, if what is held answers for storage, and whether the page
    /// was made now (rather than the one served last, again).
    fn page(&mut self, limit: u32) -> Option<(Arc<HistoryPage>, bool)> {
        if let Some((version, served_limit, page)) = &self.served
            && (*version, *served_limit) == (self.version, limit)
        {
            return Some((Arc::clone(page), false));
        }
        let wanted = usize::try_from(limit).unwrap_or(usize::MAX);
        if !self.loaded || (self.held.len() < wanted && !self.complete) {
            return None;
        }
        let skip = self.held.len().saturating_sub(wanted);
        let page = Arc::new(HistoryPage::new(
            self.held.iter().skip(skip).cloned().collect(),
            skip > 0 || !self.complete,
        ));
        self.served = Some((self.version, limit, Arc::clone(&page)));
        Some((page, true))
    }

    fn load(&mut self, page: &HistoryPage) {
        let skip = page.messages.len().saturating_sub(RECENT);
        self.held = page.messages[skip..].iter().cloned().collect();
        self.complete = !page.has_more && skip == 0;
        self.loaded = true;
        if let Some(last) = page.messages.last() {
            self.last_seq = self.last_seq.max(last.seq);
        }
    }

    /// Forgets the messages; the next read misses and storage answers.
    fn unload(&mut self) {
        self.loaded = false;
        self.complete = false;
        self.held = VecDeque::new();
    }

    fn stored(&mut self, message: &Message) {
        if message.seq <= self.last_seq {
            return; // already known: a repeated or late report
        }
        if self.loaded {
            if message.seq == self.last_seq + 1 {
                self.held.push_back(message.clone());
                if self.held.len() > RECENT {
                    self.held.pop_front();
                    self.complete = false;
                }
            } else {
                // A report is missing in between: what is held no longer ends at the room's end.
                self.unload();
            }
        }
        self.last_seq = message.seq;
    }

    fn edited(&mut self, message: &Message) {
        if !self.loaded {
            return;
        }
        if message.seq > self.last_seq {
            // Edited before its store report arrived: that report would bring back the old
            // content, so let storage answer instead.
            self.unload();
            return;
        }
        if let Ok(index) = self.held.binary_search_by_key(&message.seq, |held| held.seq)
            && self.held[index].id == message.id
            && self.held[index].edited_at <= message.edited_at
        {
            self.held[index] = message.clone();
        }
    }

    fn deleted(&mut self, id: MessageId) {
        if !self.loaded {
            return;
        }
        match self.held.iter().position(|held| held.id == id) {
            Some(index) => {
                self.held.remove(index);
            }
            // Older than what is held, or not reported stored yet; the latter would come back
            // with its store report, so let storage answer. Deleting old messages is rare.
            None => self.unload(),
        }
    }
}

#[async_trait]
impl MessageCache for InMemoryMessageCache {
    async fn latest(&self, room: RoomId, limit: u32) -> DomainResult<CachedPage> {
        let mut shard = self.shards.of(&room);
        let entry = shard.open(room);
        let version = entry.version;
        Ok(match entry.page(limit) {
            Some((page, made_now)) => {
                if made_now {
                    shard.now_serving(room, version);
                }
                CachedPage::Hit(page)
            }
            None => CachedPage::Miss(FillTicket(version)),
        })
    }

    async fn fill(&self, room: RoomId, page: &HistoryPage, ticket: FillTicket) -> DomainResult<()> {
        let mut shard = self.shards.of(&room);
        let version = shard.next_version();
        if let Some(entry) = shard.used(room)
            && entry.version == ticket.0
        {
            entry.load(page);
            entry.version = version; // the ticket fills at most once
        }
        Ok(())
    }

    async fn messages_stored(&self, room: RoomId, messages: &[Message]) -> DomainResult<()> {
        if let Some(entry) = self.shards.of(&room).written(room) {
            for message in messages {
                entry.stored(message);
            }
        }
        Ok(())
    }

    async fn message_edited(&self, message: &Message) -> DomainResult<()> {
        if let Some(entry) = self.shards.of(&message.room_id).written(message.room_id) {
            entry.edited(message);
        }
        Ok(())
    }

    async fn message_deleted(&self, room: RoomId, id: MessageId) -> DomainResult<()> {
        if let Some(entry) = self.shards.of(&room).written(room) {
            entry.deleted(id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use convo_contract::fixture::message;
    use convo_domain::MessageContent;

    use super::*;

    async fn load(cache: &InMemoryMessageCache, room: RoomId) {
        let CachedPage::Miss(ticket) = cache.latest(room, 10).await.expect("latest") else {
            panic!("expected a miss");
        };
        let page = HistoryPage::new(vec![message(room, 1)], false);
        cache.fill(room, &page, ticket).await.expect("fill");
    }

    async fn is_hit(cache: &InMemoryMessageCache, room: RoomId) -> bool {
        matches!(cache.latest(room, 10).await.expect("latest"), CachedPage::Hit(_))
    }

    #[tokio::test]
    async fn the_least_recently_used_room_is_evicted() {
        let cache = InMemoryMessageCache::with_shards(3, 1);
        let [a, b, c, d] = [(); 4].map(|()| RoomId::generate());
        for room in [a, b, c] {
            load(&cache, room).await;
        }
        assert!(is_hit(&cache, a).await, "reading a makes b the least recently used");
        load(&cache, d).await;
        assert_eq!(cache.rooms(), 3);
        assert!(!cache.holds(b));
        assert!(cache.holds(a) && cache.holds(c) && cache.holds(d));
    }

    #[tokio::test]
    async fn the_cache_never_holds_more_than_max_rooms() {
        for max_rooms in [1, 10, 100, 1000, 5000] {
            let cache = InMemoryMessageCache::new(max_rooms);
            for _ in 0..max_rooms * 3 {
                load(&cache, RoomId::generate()).await;
            }
            assert!(cache.rooms() <= max_rooms, "{} rooms held of at most {max_rooms}", cache.rooms());
            assert!(cache.rooms() >= max_rooms * 3 / 4, "eviction is in batches, not wholesale");
        }
    }

    #[tokio::test]
    async fn writes_to_rooms_not_held_take_no_memory() {
        let cache = InMemoryMessageCache::new(10);
        let room = RoomId::generate();
        cache.messages_stored(room, &[message(room, 1)]).await.expect("stored");
        cache.message_edited(&message(room, 1)).await.expect("edited");
        cache.message_deleted(room, MessageId::generate()).await.expect("deleted");
        assert_eq!(cache.rooms(), 0);
    }

    #[tokio::test]
    async fn a_ticket_from_before_an_eviction_never_matches_again() {
        let cache = InMemoryMessageCache::with_shards(1, 1);
        let (room, other) = (RoomId::generate(), RoomId::generate());
        let CachedPage::Miss(stale) = cache.latest(room, 10).await.expect("latest") else {
            panic!("expected a miss");
        };
        // `other` evicts `room`; reading `room` again starts it over with a new version.
        cache.latest(other, 10).await.expect("latest");
        let CachedPage::Miss(fresh) = cache.latest(room, 10).await.expect("latest") else {
            panic!("expected a miss");
        };
        assert_ne!(stale, fresh);
        let page = HistoryPage::new(vec![message(room, 1)], false);
        cache.fill(room, &page, stale).await.expect("fill");
        assert!(!is_hit(&cache, room).await, "the stale fill was refused");
    }

    #[tokio::test]
    async fn an_older_edit_reported_late_does_not_replace_a_newer_one() {
        let cache = InMemoryMessageCache::new(10);
        let room = RoomId::generate();
        let original = message(room, 1);
        let CachedPage::Miss(ticket) = cache.latest(room, 10).await.expect("latest") else {
            panic!("expected a miss");
        };
        let page = HistoryPage::new(vec![original.clone()], false);
        cache.fill(room, &page, ticket).await.expect("fill");
        let first = Message { edited_at: Some(Utc::now()), ..original.clone() };
        let second = Message {
            content: MessageContent::from_trusted("second".to_owned()),
            edited_at: Some(Utc::now() + chrono::Duration::seconds(1)),
            ..original
        };
        cache.message_edited(&second).await.expect("edited");
        cache.message_edited(&first).await.expect("edited");
        let CachedPage::Hit(page) = cache.latest(room, 10).await.expect("latest") else {
            panic!("expected a hit");
        };
        assert_eq!(page.messages, vec![second]);
    }

    #[tokio::test]
    async fn pages_are_kept_for_a_bounded_number_of_rooms() {
        let cache = InMemoryMessageCache::with_shards(4 * SERVED_PAGES, 2);
        let rooms: Vec<RoomId> = (0..2 * SERVED_PAGES).map(|_| RoomId::generate()).collect();
        for room in &rooms {
            load(&cache, *room).await;
            assert!(is_hit(&cache, *room).await);
        }
        assert_eq!(cache.rooms(), rooms.len(), "every room still held");
        assert_eq!(cache.pages_served(), SERVED_PAGES, "but only so many keep a page");

        // A room whose page went is served a new one, which is then shared again.
        let first = rooms[0];
        let CachedPage::Hit(made) = cache.latest(first, 10).await.expect("latest") else { panic!("a hit") };
        let CachedPage::Hit(again) = cache.latest(first, 10).await.expect("latest") else { panic!("a hit") };
        assert!(Arc::ptr_eq(&made, &again));
        assert_eq!(cache.pages_served(), SERVED_PAGES);
    }
}
