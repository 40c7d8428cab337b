//! One room's events in the order its live clients must see them, whatever order the event bus
//! brought them in: [`RoomStream`].
//!
//! Messages go out in seq order, each once. Seqs are gap-free per room, so a message above the
//! next expected seq shows a gap: it is held until the messages below it arrive. Edits and
//! deletions refer to a message by its seq and go out after it, never before: one for a
//! message still held, or not seen yet, waits with it. Membership, typing and presence have no
//! seq and go out at once, also while a gap is pending.
//!
//! A gap that does not fill by itself (a lost publish, or a message deleted before its publish
//! got here) is read from storage [`GAP_WAIT`] after it was **first seen**. Counting from the
//! latest event instead would let a busy room put the read off for ever while held messages
//! pile up. The held events are **bounded** by [`MAX_EARLY`]: past it the gap is read at once,
//! so a flood behind one lost publish costs one read and bounded memory rather than an
//! unbounded wait. When storage cannot be read, or the feed ends, the stream does **not** skip
//! the gap: it ends with a [`Resume`] after the last seq given in order, and its subscribers
//! resume from storage with `sinceSeq`. Skipping would lose messages silently; resuming only
//! costs a reconnect.
//!
//! The stream knows no transport: the api's WebSocket fan-out drives one per followed room, and
//! any other live gateway could do the same.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::LiveService;
use crate::error::DomainResult;
use crate::event::{Event, Subscription, SubscriptionError, Topic};
use crate::id::RoomId;
use crate::message::Message;

/// How long a gap is waited for before it is read from storage, counted from when it was first
/// seen.
pub const GAP_WAIT: Duration = Duration::from_millis(250);
/// Events held at most while a gap is waited for (messages above it, and edits and deletions of
/// messages not given yet); past this the gap is read at once.
pub const MAX_EARLY: usize = 1024;

/// Why a [`RoomStream`] ended, and where its subscribers resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// The last seq the stream gave in order: every message up to it went out, none above it
    /// did. A subscriber resumes after it, or after the last seq it saw itself.
    pub after_seq: i64,
    /// What broke continuity.
    pub cause: ResumeCause,
}

/// What broke a [`RoomStream`]'s continuity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeCause {
    /// A gap had to be read from storage, and storage could not be read.
    GapUnreadable,
    /// The event feed ended.
    FeedEnded,
}

/// What waits for a seq that has not gone out yet.
#[derive(Debug)]
struct Pending {
    /// When the first event for this seq arrived: the gap below it was seen then at the latest.
    seen: Instant,
    /// The message, once it has arrived.
    created: Option<Message>,
    /// Its edits and deletion that arrived before it could go out, in arrival order.
    changes: Vec<Event>,
}

/// One room's events, in the order its clients must see them; see the module docs.
///
/// [`RoomStream::next`] is cancel safe: an event received is kept until it is given, and a
/// storage read cancelled midway changes nothing.
pub struct RoomStream {
    room: RoomId,
    events: Subscription,
    storage: Arc<dyn LiveService>,
    /// The seq of the next message to give.
    next_seq: i64,
    /// What waits for a seq at or above `next_seq`.
    pending: BTreeMap<i64, Pending>,
    /// The events in `pending`, bounded by [`MAX_EARLY`].
    held: usize,
    /// When the oldest gap still pending was first seen; `None` while nothing is pending.
    gap_seen: Option<Instant>,
    /// Events in order, not given yet.
    ready: VecDeque<Event>,
    ended: Option<Resume>,
}

impl std::fmt::Debug for RoomStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomStream")
            .field("room", &self.room)
            .field("next_seq", &self.next_seq)
            .field("held", &self.held)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl RoomStream {
    /// Follows `room` from its latest message on, reading gaps through `live`.
    pub async fn follow(live: Arc<dyn LiveService>, room: RoomId) -> DomainResult<Self> {
        // Subscribed first, so no message falls between the latest seq and the feed.
        let events = live.subscribe(Topic::Room(room)).await?;
        let last_seq = live.last_seq(room).await?;
        Ok(Self::new(room, events, last_seq, live))
    }

    /// Orders the events of `room` arriving on `events`, whose messages up to `after_seq` have
    /// been given already; gaps are read through `storage`.
    pub fn new(room: RoomId, events: Subscription, after_seq: i64, storage: Arc<dyn LiveService>) -> Self {
        Self {
            room,
            events,
            storage,
            next_seq: after_seq + 1,
            pending: BTreeMap::new(),
            held: 0,
            gap_seen: None,
            ready: VecDeque::new(),
            ended: None,
        }
    }

    /// The last seq given in order.
    pub fn after_seq(&self) -> i64 {
        self.next_seq - 1
    }

    /// The next event clients must see, waiting for it; or, once continuity can no longer be
    /// kept, where to resume (then every later call says the same).
    pub async fn next(&mut self) -> Result<Event, Resume> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(event);
            }
            if let Some(resume) = self.ended {
                return Err(resume);
            }
            let received = match self.gap_seen {
                None => Some(self.events.recv().await),
                Some(seen) if self.held < MAX_EARLY => {
                    tokio::time::timeout_at(seen + GAP_WAIT, self.events.recv()).await.ok()
                }
                Some(_) => None,
            };
            match received {
                None => self.fill_gap().await,
                Some(Ok(event)) => self.accept(event),
                Some(Err(SubscriptionError::Lagged(missed))) => {
                    tracing::warn!(room = %self.room, missed, "room feed lagged; reading missed messages from storage");
                    self.read_from_storage(i64::MAX).await;
                }
                Some(Err(SubscriptionError::Closed)) => self.end(ResumeCause::FeedEnded),
            }
        }
    }

    /// Gives the event at once, or holds it until the message it is or refers to is next.
    fn accept(&mut self, event: Event) {
        let seq = match &event {
            Event::MessageCreated(message) | Event::MessageEdited(message) => message.seq,
            Event::MessageDeleted { seq, .. } => *seq,
            _ => {
                self.ready.push_back(event);
                return;
            }
        };
        if seq < self.next_seq {
            // A message below `next_seq` went out already (this is a duplicate); a change to it
            // may follow at once.
            if !matches!(event, Event::MessageCreated(_)) {
                self.ready.push_back(event);
            }
            return;
        }
        if self.pending.is_empty()
            && seq == self.next_seq
            && let Event::MessageCreated(_) = event
        {
            // In order, as nearly always: nothing to hold.
            self.next_seq += 1;
            self.ready.push_back(event);
            return;
        }
        let now = Instant::now();
        let pending = self.pending.entry(seq).or_insert_with(|| Pending {
            seen: now,
            created: None,
            changes: Vec::new(),
        });
        match event {
            Event::MessageCreated(message) => {
                if pending.created.is_some() {
                    return;
                }
                pending.created = Some(message);
            }
            change => pending.changes.push(change),
        }
        self.held += 1;
        self.gap_seen.get_or_insert(now);
        self.settle();
    }

    /// Gives what is now next in line, and dates the gap that is left.
    fn settle(&mut self) {
        if self.drain() {
            self.date_gap();
        }
    }

    /// The gap left is as old as the oldest event still waiting above it.
    fn date_gap(&mut self) {
        self.gap_seen = self.pending.values().map(|pending| pending.seen).min();
    }

    /// Gives what is now next in line: each message whose turn has come, then its changes;
    /// `true` if anything left `pending`.
    fn drain(&mut self) -> bool {
        let mut drained = false;
        while let Some(entry) = self.pending.first_entry() {
            let seq = *entry.key();
            if seq > self.next_seq || (seq == self.next_seq && entry.get().created.is_none()) {
                break;
            }
            let pending = entry.remove();
            drained = true;
            self.held -= usize::from(pending.created.is_some()) + pending.changes.len();
            // Below `next_seq` the message went out already, from storage.
            if let Some(message) = pending.created
                && seq == self.next_seq
            {
                self.ready.push_back(Event::MessageCreated(message));
                self.next_seq += 1;
            }
            self.ready.extend(pending.changes);
        }
        drained
    }

    /// Reads the lowest pending gap from storage and moves past it.
    async fn fill_gap(&mut self) {
        let Some((&first, pending)) = self.pending.first_key_value() else {
            self.gap_seen = None;
            return;
        };
        // Up to the first held message; through the first seq if only a change vouches for it.
        let before = if pending.created.is_some() { first } else { first + 1 };
        if self.read_from_storage(before).await {
            // What storage lacks below `before` was deleted: nothing is left to wait for there.
            self.next_seq = self.next_seq.max(before);
            self.drain();
            self.date_gap();
        }
    }

    /// Gives the stored messages from `next_seq` up to (not including) `before`, each followed
    /// by what waited for it; `false`, with the stream ended, if storage could not be read
    /// (nothing was skipped).
    async fn read_from_storage(&mut self, before: i64) -> bool {
        match self.storage.messages_between(self.room, self.next_seq - 1, before).await {
            Ok(messages) => {
                for message in messages {
                    if message.seq >= self.next_seq {
                        self.next_seq = message.seq + 1;
                        self.ready.push_back(Event::MessageCreated(message));
                        self.drain();
                    }
                }
                self.drain();
                self.date_gap();
                true
            }
            Err(error) => {
                tracing::warn!(room = %self.room, %error, "could not read a gap in a room feed");
                self.end(ResumeCause::GapUnreadable);
                false
            }
        }
    }

    fn end(&mut self, cause: ResumeCause) {
        self.ended = Some(Resume { after_seq: self.after_seq(), cause });
    }
}
