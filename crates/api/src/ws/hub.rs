//! The fan-out of one instance. For each room with local subscribers, one pump task follows
//! the room's [`RoomStream`] (which puts its events in the order clients must see them),
//! encodes each frame once and hands the same bytes to every subscribed connection's outbound
//! queue. Each room's subscribers sit behind a lock of their own, which the pump takes without
//! going through the map of rooms, so one room's fan-out never waits for another's; the map is
//! locked only briefly, to find a room or to add or drop one (always before a room's lock,
//! never while holding it). No lock is held across an await, and no query runs per recipient.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use convo_domain::{DomainResult, Event, LiveService, Message, Resume, RoomId, RoomStream, UserId, lock};
use futures_util::FutureExt;
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::protocol::{ServerFrame, deleted, message_json, user_ref_json};
use super::wire::Wire;

/// Frames held for a connection while it replays or awaits its own acks; past this it is
/// treated as too slow. A connection's held frames are those of its room that arrived since its
/// last ack there (each ack of a send releases the frames up to its seq), so this fits a full
/// pipeline of sends in a busy room: the connection's own in-flight messages (at most 256) plus
/// what others post while they commit.
const MAX_HELD: usize = 4096;
/// One `typing` per user and room at most this often.
const TYPING_INTERVAL: Duration = Duration::from_secs(2);
/// The most events a room's pump takes from its stream to hand out at once.
const DISPATCH_RUN: usize = 64;

/// What goes down a connection's outbound queue.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// Framed once and shared by reference count: every recipient writes the same bytes. A run
    /// of several frames is one item: a busy room's events that were ready together cost each
    /// connection one queue slot and one wake-up.
    Frames(Wire),
    Ping,
    /// The answer to a client's ping, with its payload.
    Pong(Bytes),
    /// Close after everything queued before it.
    Close(u16, &'static str),
}

/// Why a connection's writer stops, at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// The server closes with this code and reason.
    Ours(u16, &'static str),
    /// The client closed (with this code, if it gave one): the server answers with the same.
    Answer(Option<u16>),
}

/// The close codes of the contract.
pub mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const SESSION_ENDED: u16 = 4001;
    pub const TOO_SLOW: u16 = 4008;
}

/// The sending side of one connection: its bounded queue and an immediate close.
#[derive(Debug, Clone)]
pub struct ConnectionHandle {
    pub id: u64,
    pub user: UserId,
    queue: mpsc::Sender<Outbound>,
    in_runs: InRuns,
    close_now: Arc<watch::Sender<Option<Closing>>>,
}

/// The frames queued in runs beyond the first of each: a connection's queue is bounded in
/// frames (`WS_OUTBOUND_QUEUE`, its capacity), and a run takes one slot whatever its length.
/// The writer gives them back as it takes runs off the queue ([`InRuns::taken`]).
#[derive(Debug, Clone, Default)]
pub struct InRuns(Arc<AtomicUsize>);

impl InRuns {
    /// The writer took `outbound` off the queue.
    pub fn taken(&self, outbound: &Outbound) {
        if let Outbound::Frames(wire) = outbound
            && wire.frames() > 1
        {
            self.0.fetch_sub(wire.frames() - 1, Ordering::Relaxed);
        }
    }
}

impl ConnectionHandle {
    pub fn new(
        user: UserId,
        queue: mpsc::Sender<Outbound>,
        close_now: watch::Sender<Option<Closing>>,
    ) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            user,
            queue,
            in_runs: InRuns::default(),
            close_now: Arc::new(close_now),
        }
    }

    /// What the connection's writer gives back the frames of runs through.
    pub fn in_runs(&self) -> InRuns {
        self.in_runs.clone()
    }

    /// The frames (and pings and closes) queued now.
    fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity() + self.in_runs.0.load(Ordering::Relaxed)
    }

    /// Queues a frame; `false` when the connection is gone or just overflowed (and is being
    /// closed with 4008). Typing and presence frames are dropped first, once the queue is
    /// three quarters full.
    pub fn push(&self, frame: &Frame) -> bool {
        if frame.droppable && self.queued() > self.queue.max_capacity() / 4 * 3 {
            return true;
        }
        self.enqueue(Outbound::Frames(frame.wire.clone()), 1)
    }

    /// Queues a run of frames as one item; `false` as for [`Self::push`].
    fn push_run(&self, run: &Wire) -> bool {
        self.enqueue(Outbound::Frames(run.clone()), run.frames())
    }

    /// Queues an item of `frames` frames unless that would pass the bound; `false` as for
    /// [`Self::push`].
    fn enqueue(&self, outbound: Outbound, frames: usize) -> bool {
        if self.queued() + frames > self.queue.max_capacity() {
            return self.overflowed();
        }
        // Counted before it is queued, so that the writer never gives back more than was taken.
        let beyond_first = frames - 1;
        if beyond_first > 0 {
            self.in_runs.0.fetch_add(beyond_first, Ordering::Relaxed);
        }
        match self.queue.try_send(outbound) {
            Ok(()) => true,
            Err(error) => {
                if beyond_first > 0 {
                    self.in_runs.0.fetch_sub(beyond_first, Ordering::Relaxed);
                }
                match error {
                    mpsc::error::TrySendError::Full(_) => self.overflowed(),
                    mpsc::error::TrySendError::Closed(_) => false,
                }
            }
        }
    }

    /// Closes the connection as too slow; `false`.
    fn overflowed(&self) -> bool {
        self.close_now(close::TOO_SLOW, "outbound queue overflowed");
        false
    }

    pub fn push_frame(&self, frame: &ServerFrame) -> bool {
        self.push(&Frame::new(frame, false))
    }

    /// Closes after the frames already queued (they may be acks the client waits for); at once
    /// if the queue is full.
    pub fn close_after_queue(&self, code: u16, reason: &'static str) {
        if self.queue.try_send(Outbound::Close(code, reason)).is_err() {
            self.close_now(code, reason);
        }
    }

    pub fn close_now(&self, code: u16, reason: &'static str) {
        self.stop(Closing::Ours(code, reason));
    }

    /// The client closed: the writer stops and answers with its close code.
    pub fn answer_close(&self, code: Option<u16>) {
        self.stop(Closing::Answer(code));
    }

    fn stop(&self, closing: Closing) {
        self.close_now.send_if_modified(|current| {
            let first = current.is_none();
            if first {
                *current = Some(closing);
            }
            first
        });
    }

    pub fn ping(&self) {
        let _ = self.queue.try_send(Outbound::Ping);
    }

    /// Answers a client's ping, unless the queue is full (the connection is then being closed
    /// as too slow).
    pub fn pong(&self, payload: Bytes) {
        let _ = self.queue.try_send(Outbound::Pong(payload));
    }
}

/// A frame encoded once, shared by every recipient.
#[derive(Debug, Clone)]
pub struct Frame {
    wire: Wire,
    droppable: bool,
}

impl Frame {
    pub fn new(frame: &ServerFrame, droppable: bool) -> Self {
        Self { wire: Wire::text(&frame.encode()), droppable }
    }
}

/// A room event, encoded, with what the dispatch needs to know about it.
#[derive(Debug, Clone)]
struct Encoded {
    frame: Frame,
    /// The seq of a new message, which no subscriber may see twice.
    seq: Option<i64>,
    /// Typing is not echoed to the typing user's own connections.
    skip_user: Option<UserId>,
    /// A membership that ended: that user's connections leave the room (`left`).
    leaving: Option<UserId>,
    /// The `joined` frame of a join whose replay ended at this seq: once it is delivered, live
    /// messages up to here are duplicates.
    resumes_after: Option<i64>,
}

impl Encoded {
    fn reply(frame: &ServerFrame) -> Self {
        Self {
            frame: Frame::new(frame, false),
            seq: None,
            skip_user: None,
            leaving: None,
            resumes_after: None,
        }
    }

    fn message(message: &Message) -> Self {
        Self {
            seq: Some(message.seq),
            ..Self::reply(&ServerFrame::Message { message: message_json(message) })
        }
    }
}

fn encode(event: &Event) -> Option<Encoded> {
    let plain = |frame: ServerFrame| Encoded::reply(&frame);
    Some(match event {
        Event::MessageCreated(message) => Encoded::message(message),
        Event::MessageEdited(message) => plain(ServerFrame::MessageEdited { message: message_json(message) }),
        Event::MessageDeleted { room_id, message_id, .. } => plain(deleted(None, *room_id, *message_id)),
        Event::MemberJoined { room_id, user } => {
            plain(ServerFrame::UserJoined { room_id: room_id.as_uuid(), user: user_ref_json(user) })
        }
        Event::MemberLeft { room_id, user } => Encoded {
            leaving: Some(user.id),
            ..plain(ServerFrame::UserLeft { room_id: room_id.as_uuid(), user: user_ref_json(user) })
        },
        Event::Typing { room_id, user } => Encoded {
            frame: Frame::new(
                &ServerFrame::Typing { room_id: room_id.as_uuid(), user: user_ref_json(user) },
                true,
            ),
            seq: None,
            skip_user: Some(user.id),
            leaving: None,
            resumes_after: None,
        },
        Event::Presence { room_id, user, online } => Encoded {
            frame: Frame::new(
                &ServerFrame::Presence {
                    room_id: room_id.as_uuid(),
                    user: user_ref_json(user),
                    online: *online,
                },
                true,
            ),
            seq: None,
            skip_user: None,
            leaving: None,
            resumes_after: None,
        },
        Event::MembershipEnded { .. } | Event::SessionsRevoked { .. } => return None,
    })
}

/// One connection subscribed to a room.
#[derive(Debug)]
struct Subscriber {
    handle: ConnectionHandle,
    /// The highest message seq this connection has been given (or replayed) in this room.
    after_seq: i64,
    /// While `Some`, frames wait here instead of the queue: during a join's replay, and while
    /// the connection awaits the replies to its own sends, edits or deletes (a reply must come
    /// before the broadcast of its change).
    held: Option<Vec<Encoded>>,
}

impl Subscriber {
    /// Delivers one event; `false` if the connection is gone and should be dropped.
    fn deliver(&mut self, encoded: &Encoded) -> bool {
        if encoded.skip_user == Some(self.handle.user) {
            return true;
        }
        if let Some(held) = &mut self.held {
            if held.len() >= MAX_HELD {
                self.handle.close_now(close::TOO_SLOW, "outbound queue overflowed");
                return false;
            }
            held.push(encoded.clone());
            return true;
        }
        if let Some(seq) = encoded.seq {
            if seq <= self.after_seq {
                return true;
            }
            self.after_seq = seq;
        }
        if let Some(resumed) = encoded.resumes_after {
            self.after_seq = self.after_seq.max(resumed);
        }
        self.handle.push(&encoded.frame)
    }

    /// Delivers a run of plain events (new messages in ascending seq, and frames for everyone)
    /// as one queue item when all of it is due to this connection, else one by one; `false` if
    /// the connection is gone.
    fn deliver_run(&mut self, events: &[Encoded], run: &Wire) -> bool {
        let first_seq = events.iter().find_map(|encoded| encoded.seq);
        if self.held.is_some() || first_seq.is_some_and(|seq| seq <= self.after_seq) {
            return events.iter().all(|encoded| self.deliver(encoded));
        }
        if let Some(last_seq) = events.iter().rev().find_map(|encoded| encoded.seq) {
            self.after_seq = last_seq;
        }
        self.handle.push_run(run)
    }

    /// Delivers `frames` in order, live (not held); `false` if the connection overflowed.
    fn deliver_all(&mut self, frames: Vec<Encoded>) -> bool {
        let held = self.held.take();
        let delivered = frames.iter().all(|encoded| self.deliver(encoded));
        self.held = held;
        delivered
    }
}

/// One room's local subscribers, shared by the room's pump and the connections' calls.
#[derive(Debug, Default)]
struct RoomFeed {
    subscribers: Mutex<HashMap<u64, Subscriber>>,
}

/// A room this instance follows: its feed, and its pump, which stops once the room is dropped
/// from the map.
#[derive(Debug)]
struct Followed {
    feed: Arc<RoomFeed>,
    pump: AbortHandle,
}

impl Drop for Followed {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

/// The fan-out of this instance.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    live: Arc<dyn LiveService>,
    rooms: Mutex<HashMap<RoomId, Followed>>,
    typing: Mutex<HashMap<(UserId, RoomId), Instant>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("rooms", &self.rooms)
            .field("typing", &self.typing)
            .finish_non_exhaustive()
    }
}

impl Hub {
    pub fn new(live: Arc<dyn LiveService>) -> Self {
        Self {
            inner: Arc::new(Inner {
                live,
                rooms: Mutex::new(HashMap::new()),
                typing: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Subscribes the connection to the room with its frames held; the caller replays what it
    /// missed, then calls [`Hub::release`] with the joined frame.
    pub async fn subscribe(&self, room: RoomId, handle: &ConnectionHandle) -> DomainResult<()> {
        let subscriber =
            || Subscriber { handle: handle.clone(), after_seq: i64::MIN, held: Some(Vec::new()) };
        // The map stays locked while the subscriber is added, so the room cannot be dropped
        // in between.
        {
            let rooms = lock(&self.inner.rooms);
            if let Some(followed) = rooms.get(&room) {
                lock(&followed.feed.subscribers).insert(handle.id, subscriber());
                return Ok(());
            }
        }
        // The first local subscriber: follow the room from its current seq.
        let stream = RoomStream::follow(Arc::clone(&self.inner.live), room).await?;
        let mut rooms = lock(&self.inner.rooms);
        let followed = rooms.entry(room).or_insert_with(|| {
            let feed = Arc::new(RoomFeed::default());
            let pump = tokio::spawn(pump(self.clone(), room, Arc::clone(&feed), stream)).abort_handle();
            Followed { feed, pump }
        });
        lock(&followed.feed.subscribers).insert(handle.id, subscriber());
        Ok(())
    }

    /// The room's feed, if followed.
    fn feed(&self, room: RoomId) -> Option<Arc<RoomFeed>> {
        lock(&self.inner.rooms).get(&room).map(|followed| Arc::clone(&followed.feed))
    }

    /// Runs `change` on the connection's subscription to the room; `true` if there is none.
    fn with_subscriber(
        &self,
        room: RoomId,
        connection: u64,
        change: impl FnOnce(&mut Subscriber) -> bool,
    ) -> bool {
        let Some(feed) = self.feed(room) else { return true };
        let mut subscribers = lock(&feed.subscribers);
        subscribers.get_mut(&connection).is_none_or(change)
    }

    /// Stops following the room if its feed is (still) the one given and has no subscriber.
    fn drop_if_unused(&self, room: RoomId, feed: &Arc<RoomFeed>) {
        let mut rooms = lock(&self.inner.rooms);
        if rooms.get(&room).is_some_and(|followed| {
            Arc::ptr_eq(&followed.feed, feed) && lock(&followed.feed.subscribers).is_empty()
        }) {
            rooms.remove(&room);
        }
    }

    /// Holds the connection's frames of this room (while it awaits its own replies).
    pub fn hold(&self, room: RoomId, connection: u64) {
        self.with_subscriber(room, connection, |subscriber| {
            subscriber.held.get_or_insert_with(Vec::new);
            true
        });
    }

    /// Ends a join: the replayed messages, then `joined`, then the frames held meanwhile (those
    /// up to `last_seq` are duplicates of the replay and are dropped). With `keep_holding` (the
    /// connection still awaits replies in this room) they all stay held, ahead of the rest, to
    /// go out with the next release. Returns `false` if the connection overflowed.
    pub fn finish_join(
        &self,
        room: RoomId,
        connection: u64,
        replay: &[Message],
        last_seq: i64,
        joined: &ServerFrame,
        keep_holding: bool,
    ) -> bool {
        let mut frames: Vec<Encoded> = replay.iter().map(Encoded::message).collect();
        frames.push(Encoded { resumes_after: Some(last_seq), ..Encoded::reply(joined) });
        self.with_subscriber(room, connection, |subscriber| {
            frames.extend(subscriber.held.take().unwrap_or_default());
            if keep_holding {
                if frames.len() > MAX_HELD {
                    subscriber.handle.close_now(close::TOO_SLOW, "outbound queue overflowed");
                    return false;
                }
                subscriber.held = Some(frames);
                return true;
            }
            subscriber.deliver_all(frames)
        })
    }

    /// Sends the held frames and delivers live from then on. Returns `false` if the connection
    /// overflowed meanwhile.
    pub fn release(&self, room: RoomId, connection: u64) -> bool {
        self.with_subscriber(room, connection, |subscriber| {
            let held = subscriber.held.take().unwrap_or_default();
            subscriber.deliver_all(held)
        })
    }

    /// Sends the held frames that came before the first new message above `seq`, and keeps
    /// holding the rest: the connection's own send with that seq was just acked, while later
    /// sends of it (with higher seqs) are not. Returns `false` if the connection overflowed.
    pub fn release_through(&self, room: RoomId, connection: u64, seq: i64) -> bool {
        self.with_subscriber(room, connection, |subscriber| {
            let Some(held) = &mut subscriber.held else { return true };
            let end =
                held.iter().position(|encoded| encoded.seq.is_some_and(|s| s > seq)).unwrap_or(held.len());
            let ready: Vec<Encoded> = held.drain(..end).collect();
            subscriber.deliver_all(ready)
        })
    }

    pub fn unsubscribe(&self, room: RoomId, connection: u64) {
        let mut rooms = lock(&self.inner.rooms);
        let Some(followed) = rooms.get(&room) else { return };
        let unused = {
            let mut subscribers = lock(&followed.feed.subscribers);
            subscribers.remove(&connection);
            subscribers.is_empty()
        };
        if unused {
            rooms.remove(&room);
        }
    }

    /// Whether `user` may send another typing notice to `room` now.
    pub fn typing_allowed(&self, user: UserId, room: RoomId) -> bool {
        let now = Instant::now();
        let mut typing = lock(&self.inner.typing);
        if typing.len() > 10_000 {
            typing.retain(|_, last| now.duration_since(*last) < TYPING_INTERVAL);
        }
        match typing.get(&(user, room)) {
            Some(last) if now.duration_since(*last) < TYPING_INTERVAL => false,
            _ => {
                typing.insert((user, room), now);
                true
            }
        }
    }

    /// Hands events of the room, in order, to every local subscriber. A run of plain events
    /// (no typing, presence or leave, which some subscribers get differently) goes to each
    /// connection as one queue item.
    fn dispatch(&self, room: RoomId, feed: &Arc<RoomFeed>, events: &[Event]) {
        let encoded: Vec<Encoded> = events.iter().filter_map(encode).collect();
        let plain = |encoded: &Encoded| {
            encoded.skip_user.is_none() && encoded.leaving.is_none() && !encoded.frame.droppable
        };
        if encoded.len() < 2 || !encoded.iter().all(plain) {
            for encoded in encoded {
                self.dispatch_one(room, feed, encoded);
            }
            return;
        }
        let run = Wire::run(encoded.iter().map(|encoded| &encoded.frame.wire));
        let mut subscribers = lock(&feed.subscribers);
        subscribers.retain(|_, subscriber| subscriber.deliver_run(&encoded, &run));
        let unused = subscribers.is_empty();
        drop(subscribers);
        if unused {
            self.drop_if_unused(room, feed);
        }
    }

    /// Hands one event of the room to every local subscriber.
    fn dispatch_one(&self, room: RoomId, feed: &Arc<RoomFeed>, encoded: Encoded) {
        let left = encoded
            .leaving
            .map(|_| Frame::new(&ServerFrame::Left { reference: None, room_id: room.as_uuid() }, false));
        let mut subscribers = lock(&feed.subscribers);
        subscribers.retain(|_, subscriber| {
            if let (Some(user), Some(left)) = (encoded.leaving, &left)
                && subscriber.handle.user == user
            {
                // The user left the room (perhaps elsewhere): their connections stop following it.
                subscriber.handle.push(left);
                return false;
            }
            subscriber.deliver(&encoded)
        });
        let unused = subscribers.is_empty();
        drop(subscribers);
        if unused {
            self.drop_if_unused(room, feed);
        }
    }

    /// The room's stream ended (its event source closed, or a gap in it could not be read):
    /// its subscribers can no longer be kept up to date, so they are closed to reconnect and
    /// resume with `sinceSeq`.
    fn abandon(&self, room: RoomId, feed: &Arc<RoomFeed>, resume: Resume) {
        let followed = {
            let mut rooms = lock(&self.inner.rooms);
            let ours = rooms.get(&room).is_some_and(|followed| Arc::ptr_eq(&followed.feed, feed));
            if ours { rooms.remove(&room) } else { None }
        };
        if let Some(followed) = followed {
            tracing::warn!(
                %room,
                after_seq = resume.after_seq,
                cause = ?resume.cause,
                "room feed ended; closing its subscribers so they resume"
            );
            for subscriber in lock(&followed.feed.subscribers).values() {
                subscriber
                    .handle
                    .close_after_queue(close::GOING_AWAY, "room feed interrupted; resume with sinceSeq");
            }
        }
    }
}

/// Hands one room's events, in order, to its local subscribers while it has any.
/// Takes every event that is ready along with the one it waited for (up to [`DISPATCH_RUN`]):
/// under load many are, and handing them out together costs each subscriber one queue item.
async fn pump(hub: Hub, room: RoomId, feed: Arc<RoomFeed>, mut stream: RoomStream) {
    let mut run = Vec::with_capacity(DISPATCH_RUN);
    let resume = loop {
        let mut ended = match stream.next().await {
            Ok(event) => {
                run.push(event);
                None
            }
            Err(resume) => Some(resume),
        };
        // `next` is cancel safe: a call that is not ready at once loses nothing.
        while ended.is_none() && run.len() < DISPATCH_RUN {
            match stream.next().now_or_never() {
                Some(Ok(event)) => run.push(event),
                Some(Err(resume)) => ended = Some(resume),
                None => break,
            }
        }
        hub.dispatch(room, &feed, &run);
        run.clear();
        if let Some(resume) = ended {
            break resume;
        }
    };
    hub.abandon(room, &feed, resume);
}

#[cfg(test)]
mod tests {
    use convo_contract::fixture::message;
    use convo_domain::chat::MockLiveService;
    use convo_domain::{Subscription, UserRef, Username};
    use serde_json::Value;
    use tokio::sync::broadcast;

    use super::*;
    use crate::ws::wire::texts;

    /// A hub and a room whose feed stays open and silent: the tests dispatch by hand. Rooms
    /// followed later get feeds of their own, also silent.
    async fn hub_with_room() -> (Hub, RoomId, broadcast::Sender<Event>) {
        let (feed, events) = broadcast::channel(16);
        let first = Mutex::new(Some(events));
        let later = Mutex::new(Vec::new());
        let mut live = MockLiveService::new();
        live.expect_subscribe().returning(move |_| {
            let events = lock(&first).take().unwrap_or_else(|| {
                let (feed, events) = broadcast::channel(16);
                lock(&later).push(feed);
                events
            });
            Ok(Subscription::new(events))
        });
        live.expect_last_seq().returning(|_| Ok(0));
        (Hub::new(Arc::new(live)), RoomId::generate(), feed)
    }

    /// A subscribed connection that has joined, and its outbound queue.
    async fn joined(hub: &Hub, room: RoomId) -> (ConnectionHandle, mpsc::Receiver<Outbound>) {
        let (queue, outbound) = mpsc::channel(64);
        let handle = ConnectionHandle::new(UserId::generate(), queue, watch::channel(None).0);
        hub.subscribe(room, &handle).await.expect("subscribed");
        let joined =
            ServerFrame::Joined { reference: None, room_id: room.as_uuid(), last_seq: 0, truncated: false };
        assert!(hub.finish_join(room, handle.id, &[], 0, &joined, false));
        let mut connection = (handle, outbound);
        assert_eq!(queued(&mut connection.1), ["joined"]);
        connection
    }

    /// Dispatches as the room's pump does.
    fn dispatch(hub: &Hub, room: RoomId, event: &Event) {
        hub.dispatch(room, &hub.feed(room).expect("followed"), std::slice::from_ref(event));
    }

    fn post(hub: &Hub, room: RoomId, seq: i64) {
        dispatch(hub, room, &Event::MessageCreated(message(room, seq)));
    }

    /// The frames queued so far: a message as its seq, any other frame as its type.
    fn queued(outbound: &mut mpsc::Receiver<Outbound>) -> Vec<String> {
        queued_items(outbound).concat()
    }

    /// The same, item by item: the frames of each queue item.
    fn queued_items(outbound: &mut mpsc::Receiver<Outbound>) -> Vec<Vec<String>> {
        let described = |text: &String| {
            let frame: Value = serde_json::from_str(text).expect("JSON");
            match frame["message"]["seq"].as_i64() {
                Some(seq) => seq.to_string(),
                None => frame["type"].as_str().unwrap_or_default().to_owned(),
            }
        };
        let mut items = Vec::new();
        loop {
            match outbound.try_recv() {
                Ok(Outbound::Frames(wire)) => items.push(texts(wire.bytes()).iter().map(described).collect()),
                _ => return items,
            }
        }
    }

    fn created(room: RoomId, seq: i64) -> Event {
        Event::MessageCreated(message(room, seq))
    }

    #[tokio::test]
    async fn events_ready_together_reach_each_connection_as_one_item_of_shared_frames() {
        let (hub, room, _feed) = hub_with_room().await;
        let (_first, mut first) = joined(&hub, room).await;
        let (_second, mut second) = joined(&hub, room).await;
        let feed = hub.feed(room).expect("followed");
        hub.dispatch(room, &feed, &[created(room, 1), created(room, 2), created(room, 3)]);
        let (Ok(Outbound::Frames(mine)), Ok(Outbound::Frames(theirs))) =
            (first.try_recv(), second.try_recv())
        else {
            panic!("a run each")
        };
        assert_eq!(mine.bytes().as_ptr(), theirs.bytes().as_ptr(), "one run shared by both");
        assert_eq!(mine.frames(), 3);
        assert!(first.try_recv().is_err(), "one item in all");

        hub.dispatch(room, &feed, &[created(room, 4), created(room, 5)]);
        assert_eq!(queued_items(&mut second), [["4", "5"]]);
    }

    #[tokio::test]
    async fn the_pump_hands_out_the_events_ready_together_as_one_run() {
        let (hub, room, feed) = hub_with_room().await;
        let (_handle, mut outbound) = joined(&hub, room).await;
        for seq in 1..=3 {
            feed.send(created(room, seq)).expect("the pump follows the room");
        }
        let item = tokio::time::timeout(Duration::from_secs(5), outbound.recv()).await.expect("delivered");
        let Some(Outbound::Frames(run)) = item else { panic!("one run expected") };
        assert_eq!(run.frames(), 3);
        feed.send(created(room, 4)).expect("the pump follows the room");
        let item = tokio::time::timeout(Duration::from_secs(5), outbound.recv()).await.expect("delivered");
        assert!(
            matches!(item, Some(Outbound::Frames(wire)) if wire.frames() == 1),
            "a lone event goes as itself"
        );
    }

    #[tokio::test]
    async fn the_queue_is_bounded_in_frames_whether_they_come_alone_or_in_runs() {
        let (queue, mut outbound) = mpsc::channel(8);
        let (close_now, closed) = watch::channel(None);
        let handle = ConnectionHandle::new(UserId::generate(), queue, close_now);
        let in_runs = handle.in_runs();
        let run = Wire::run(&[
            Wire::text("{}"),
            Wire::text("{}"),
            Wire::text("{}"),
            Wire::text("{}"),
            Wire::text("{}"),
        ]);
        assert!(handle.push_run(&run));
        assert!(handle.push(&Frame::new(&ServerFrame::Pong { reference: None }, false)));
        // Six frames queued in two slots: a run of five more would pass the bound of eight.
        assert!(!handle.push_run(&run));
        assert!(matches!(*closed.borrow(), Some(Closing::Ours(close::TOO_SLOW, _))));

        // Once the writer has taken the run, its frames are free again.
        let taken = outbound.try_recv().expect("the run");
        in_runs.taken(&taken);
        assert_eq!(handle.queued(), 1);
    }

    #[tokio::test]
    async fn a_run_goes_one_by_one_where_a_connection_must_skip_or_hold_part_of_it() {
        let (hub, room, _feed) = hub_with_room().await;
        let (_live, mut live) = joined(&hub, room).await;
        let (holding, mut held) = joined(&hub, room).await;
        let feed = hub.feed(room).expect("followed");
        post(&hub, room, 1);
        assert_eq!(queued(&mut live), ["1"]);
        assert_eq!(queued(&mut held), ["1"]);

        // Seq 1 again (as after a gap read) with new ones: only the new ones go out.
        hub.hold(room, holding.id);
        hub.dispatch(room, &feed, &[created(room, 1), created(room, 2), created(room, 3)]);
        assert_eq!(queued_items(&mut live), [["2"], ["3"]]);
        assert!(queued(&mut held).is_empty(), "held while replies are awaited");
        assert!(hub.release(room, holding.id));
        assert_eq!(queued(&mut held), ["2", "3"]);

        // A typing notice in the run: each frame on its own, the typist's own left out.
        let user = UserRef { id: holding.user, username: Username::parse("typist").expect("name") };
        hub.dispatch(room, &feed, &[created(room, 4), Event::Typing { room_id: room, user }]);
        assert_eq!(queued_items(&mut live), [["4"], ["typing"]]);
        assert_eq!(queued_items(&mut held), [["4"]]);
    }

    #[tokio::test]
    async fn a_room_stream_that_breaks_closes_its_subscribers_to_resume() {
        let (hub, room, feed) = hub_with_room().await;
        let (_handle, mut outbound) = joined(&hub, room).await;
        let (_other, mut other_outbound) = joined(&hub, room).await;

        // The room's event source ends: the stream cannot vouch for what follows.
        drop(feed);
        for outbound in [&mut outbound, &mut other_outbound] {
            match outbound.recv().await {
                Some(Outbound::Close(code, _)) => assert_eq!(code, close::GOING_AWAY),
                Some(Outbound::Frames(wire)) => panic!("expected a close, got {:?}", texts(wire.bytes())),
                other => panic!("expected a close, got {:?}", other.map(|_| "a ping")),
            }
        }
        assert!(lock(&hub.inner.rooms).get(&room).is_none(), "the room is no longer followed");
    }

    #[tokio::test]
    async fn one_rooms_fan_out_does_not_wait_for_anothers() {
        let (hub, room, _feed) = hub_with_room().await;
        let other = RoomId::generate();
        let (_handle, mut outbound) = joined(&hub, room).await;
        let (_other_handle, mut other_outbound) = joined(&hub, other).await;

        // The first room's subscribers are locked, as during its fan-out: the other's goes on.
        let busy = hub.feed(room).expect("followed");
        let fanning_out = lock(&busy.subscribers);
        post(&hub, other, 1);
        assert_eq!(queued(&mut other_outbound), ["1"]);
        drop(fanning_out);
        post(&hub, room, 1);
        assert_eq!(queued(&mut outbound), ["1"]);
    }

    #[tokio::test]
    async fn the_last_subscriber_leaving_stops_following_the_room() {
        let (hub, room, _feed) = hub_with_room().await;
        let (first, _outbound) = joined(&hub, room).await;
        let (second, _other_outbound) = joined(&hub, room).await;
        hub.unsubscribe(room, first.id);
        assert!(hub.feed(room).is_some(), "one subscriber is left");
        hub.unsubscribe(room, second.id);
        assert!(hub.feed(room).is_none());
        // Following it again starts afresh.
        let (_third, mut outbound) = joined(&hub, room).await;
        post(&hub, room, 1);
        assert_eq!(queued(&mut outbound), ["1"]);
    }

    #[tokio::test]
    async fn an_ack_releases_the_held_frames_up_to_its_seq_and_the_last_reply_the_rest() {
        let (hub, room, _feed) = hub_with_room().await;
        let (handle, mut outbound) = joined(&hub, room).await;
        // Two sends of this connection in flight will get seqs 2 and 4.
        hub.hold(room, handle.id);
        post(&hub, room, 1);
        post(&hub, room, 2);
        let user = UserRef { id: UserId::generate(), username: Username::parse("newcomer").expect("name") };
        dispatch(&hub, room, &Event::MemberJoined { room_id: room, user });
        post(&hub, room, 3);
        post(&hub, room, 4);
        post(&hub, room, 5);
        assert!(queued(&mut outbound).is_empty(), "held while replies are awaited");

        // The ack of seq 2 is queued: what came before seq 3 may follow it.
        assert!(hub.release_through(room, handle.id, 2));
        assert_eq!(queued(&mut outbound), ["1", "2", "userJoined"]);
        post(&hub, room, 6);
        assert!(queued(&mut outbound).is_empty(), "still held: seq 4 awaits its ack");
        // The last reply: the rest, then live again.
        assert!(hub.release(room, handle.id));
        assert_eq!(queued(&mut outbound), ["3", "4", "5", "6"]);
        post(&hub, room, 7);
        assert_eq!(queued(&mut outbound), ["7"]);
    }

    #[tokio::test]
    async fn a_join_while_holding_keeps_its_replay_and_joined_ahead_of_live_frames_without_duplicates() {
        let (hub, room, _feed) = hub_with_room().await;
        let (queue, mut outbound) = mpsc::channel(64);
        let handle = ConnectionHandle::new(UserId::generate(), queue, watch::channel(None).0);
        hub.subscribe(room, &handle).await.expect("subscribed");
        // Live frames while the join reads storage: 2 and 3 are in the replay too.
        post(&hub, room, 2);
        post(&hub, room, 3);
        post(&hub, room, 4);
        // The replay ends at 3: the connection's own sends with seqs 2 and 3 are not acked yet.
        let replay = [message(room, 1), message(room, 2), message(room, 3)];
        let joined =
            ServerFrame::Joined { reference: None, room_id: room.as_uuid(), last_seq: 3, truncated: false };
        assert!(hub.finish_join(room, handle.id, &replay, 3, &joined, true));
        assert!(queued(&mut outbound).is_empty(), "the replay waits for the acks");

        assert!(hub.release_through(room, handle.id, 2));
        assert_eq!(queued(&mut outbound), ["1", "2"]);
        assert!(hub.release_through(room, handle.id, 3));
        assert_eq!(queued(&mut outbound), ["3", "joined"]);
        assert!(hub.release(room, handle.id));
        assert_eq!(queued(&mut outbound), ["4"], "the live copies of 2 and 3 are dropped");
    }
}
