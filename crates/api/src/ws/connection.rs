//! One WebSocket connection: a reader that handles client frames in the order they arrive, and a
//! writer task that drains the bounded outbound queue into the socket.
//!
//! Sends, edits and deletes are pipelined: each runs in a task of its own while the reader goes
//! on, so a `ping`, `join`, `leave`, `typing` or `members` does not wait behind a commit. Their
//! replies (`ack` or `error`) are queued in the order their frames were read (an ordered set of
//! the tasks, polled by the reader), at most [`MAX_IN_FLIGHT`] at a time; past that the reader
//! stops reading until one is answered, which pushes back on the client through TCP. Nothing is
//! dropped. Replies to the other frames go out at once, so they may overtake the acks of earlier
//! sends; every reply carries its frame's `ref`. The tasks run on their own, not inside the
//! reader: a send half-way through its transaction never waits for the reader to poll it.
//!
//! Order of the stored messages. A send goes to the domain in two steps: `enqueue` checks it
//! (the rate limit) and queues it in its room's sequencer, then the queued send resolves once
//! its batch is stored. The sequencer gives seqs in queue order, but `enqueue` awaits before it
//! queues, so two calls started in order might queue in either order. So each connection keeps
//! a *lane* per room: a send starts its `enqueue` only once the previous send of the connection
//! to that room is queued, and the connection's messages to a room are stored in the order it
//! sent them, whatever the timing. Waiting for the commit happens outside the lane, so a burst
//! of sends to one room is stored a batch at a time. Sends to different rooms, and everything
//! else, overlap. Edits and deletes share one lane of their own, in which each waits for the
//! previous one to finish, so two changes to the same message apply in the order sent; they
//! need not wait for sends, since they name messages already acked.
//!
//! Own broadcasts after replies. A change's own broadcast must not reach the connection before
//! its reply. While replies are awaited in a room, the hub holds the connection's frames of that
//! room ([`Hub::hold`](super::hub::Hub::hold)). Each ack of a send releases the held frames up to
//! its seq: everything before it in the room is from others or already acked, and the
//! connection's later sends to the room were queued after it and get higher seqs (the lane), so
//! none of its unacked messages is among them. Edits and deletes hold every followed room; while one is in flight
//! nothing is released early, since its `messageEdited` may already be held. When the last
//! reply awaited in a room is queued, the rest is released. A join of a room with replies
//! awaited puts its replay and `joined` at the head of the held frames rather than sending them
//! at once, since the replay may hold the connection's own unacked messages: such a join is
//! answered with the acks of the sends before it.
//!
//! Session end. A connection closes with 4001 when its session ends: at once when the
//! announcement of a logout is heard ([`Topic::Sessions`]), and otherwise within a second, when
//! the instance's check of every live connection's session finds it gone (the domain's
//! [`SessionFollow`]). An open connection alone does not extend its session; its client's
//! frames do, as requests do. It closes with 4001 at its token's expiry at the latest, whatever
//! the session.
//!
//! Closing. When the connection closes on its own terms (shutdown 1001, session ended 4001,
//! policy 1008), it first queues the replies in flight, for up to `ANSWER_GRACE` (10 s) but not
//! past the token's expiry, then the close. When the client is gone, the connection is cut
//! (4008, 1009, silence) or the token expires, replies are not awaited. Either way the tasks are
//! not cancelled, and a queued send is stored and broadcast even if nobody awaits it: only an
//! ack no one would read is lost.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use convo_domain::{
    AccessGrant, ClientMessageId, DomainError, DomainResult, Event, MessageContent, MessageId,
    MessageService, Principal, RoomId, RoomRef, SessionEnd, SessionFollow, Topic, User, UserId, UserRef,
    ValidationError,
};
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, StreamExt};
use poem::Upgraded;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, interval_at, sleep_until};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as SocketError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::hub::{Closing, ConnectionHandle, InRuns, Outbound, close};
use super::protocol::{ClientFrame, ServerFrame, deleted, member_json, message_json, parse, user_json};
use super::wire::Wire;
use super::{Gateway, OpenSocket};
use crate::metrics::Metrics;

/// Invalid frames in a row before the connection is closed with 1008.
const MAX_INVALID_IN_A_ROW: u32 = 10;
/// A connection silent this long is pinged.
const PING_AFTER: Duration = Duration::from_secs(20);
/// A connection silent this long (no frame, no pong) is closed.
const SILENT_LIMIT: Duration = Duration::from_secs(60);
/// How long a closing connection's writer may wait for the client to read what is in flight
/// (and the close frame) before the socket is dropped.
const WRITER_GRACE: Duration = Duration::from_secs(30);
/// How long a closed connection waits for the client's close reply.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);
/// Sends, edits and deletes awaiting their reply, per connection; past this the connection
/// reads no more frames until one is answered.
pub const MAX_IN_FLIGHT: usize = 256;
/// How long a connection closing on its own terms (shutdown, session ended, policy) waits for
/// the replies to its sends, edits and deletes in flight before it closes.
const ANSWER_GRACE: Duration = Duration::from_secs(10);

/// The most bytes of queued frames a connection's writer gathers into one socket write.
const BATCH_BYTES: usize = 64 * 1024;

/// The reading side of an upgraded connection, read with tungstenite.
pub type Socket = tokio_tungstenite::WebSocketStream<Inbound>;

/// The read half of an upgraded connection, as tungstenite reads it. Every byte the server
/// sends is written by the connection's writer, from frames made once ([`Wire`]), pongs and
/// the answer to a client's close included, so what tungstenite would write is dropped here.
pub struct Inbound(pub ReadHalf<Upgraded>);

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound").finish_non_exhaustive()
    }
}

impl AsyncRead for Inbound {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Inbound {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Serves one upgraded connection, opened with `grant`, until it closes: `stream` reads its
/// frames, and `sink` is the socket the writer writes to.
/// `open` counts the socket as open until its last frame (the close) has been written.
pub async fn run(
    stream: Socket,
    sink: WriteHalf<Upgraded>,
    gateway: Gateway,
    grant: AccessGrant,
    user: User,
    open: OpenSocket,
) {
    let principal = grant.principal;
    let (queue, queue_rx) = mpsc::channel(gateway.outbound_queue);
    let (close_now, close_rx) = watch::channel(None);
    let handle = ConnectionHandle::new(user.id, queue, close_now);
    let metrics = gateway.metrics.clone();
    metrics.ws_opened();
    let writer =
        tokio::spawn(write_frames(sink, queue_rx, handle.in_runs(), close_rx.clone(), metrics.clone()));

    let user_ref = UserRef::from(&user);
    // Followed from before `ready`, like the announcements below.
    let session = gateway.auth.follow_session(&grant);
    let mut connection = Connection {
        gateway,
        principal,
        session,
        user: user_ref,
        handle,
        rooms: HashSet::new(),
        invalid_in_a_row: 0,
        in_flight: FuturesOrdered::new(),
        sends: HashMap::new(),
        changes: Lane::default(),
    };
    // Follow the session's events before saying `ready`: a logout the client makes once it is
    // ready must find this connection listening.
    let user_events = match connection.gateway.live.subscribe(Topic::Sessions).await {
        Ok(events) => Some(events),
        Err(error) => {
            tracing::warn!(%error, "cannot follow session events; relying on the session checks");
            None
        }
    };
    connection.handle.push_frame(&ServerFrame::Ready {
        user: user_json(&user),
        session_id: principal.session_id.as_uuid(),
    });
    if let Err(error) = connection.gateway.live.connected(&connection.user).await {
        tracing::warn!(%error, "could not record presence");
    }
    let mut stream = stream;
    let mut closed = close_rx;
    if let Ending::Close(code, reason) = connection.read_frames(&mut stream, &mut closed, user_events).await {
        // The client still reads: answer what is in flight, then close after the answers.
        connection.answer_in_flight(&mut closed).await;
        connection.handle.close_after_queue(code, reason);
    }
    // Whatever is still in flight runs on in its own task: a send already submitted is stored
    // and broadcast (its effects do not depend on this connection); only its ack, which no one
    // would read, is lost.

    for room in connection.rooms.drain() {
        connection.gateway.hub.unsubscribe(room, connection.handle.id);
    }
    if let Err(error) = connection.gateway.live.disconnected(&connection.user).await {
        tracing::warn!(%error, "could not record presence");
    }
    drop(connection);
    // A client that stopped reading can block the writer forever: give it a moment, then cut.
    let mut writer = writer;
    if tokio::time::timeout(WRITER_GRACE, &mut writer).await.is_err() {
        writer.abort();
    }
    drop(open);
    // The closing handshake: keep the socket open briefly for the client's close reply, so that
    // a client still reading what was sent before the close is not cut off mid-way.
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
        while let Some(Ok(message)) = stream.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
    metrics.ws_ended();
}

/// Writes queued frames, batching what is already queued into one write, until a close. A
/// close asked for while a write is stuck (a client that stopped reading) interrupts the write;
/// the rest of the batch is kept, so that the close frame follows whole frames, and goes out
/// once the client reads again.
async fn write_frames(
    mut sink: impl AsyncWrite + Unpin,
    mut queue: mpsc::Receiver<Outbound>,
    in_runs: InRuns,
    close_now: watch::Receiver<Option<Closing>>,
    metrics: Arc<Metrics>,
) {
    // What is left to write of the batch being written.
    let mut unwritten = Bytes::new();
    // One future for the writer's life: waiting anew at every batch registered and dropped a
    // waiter each time, which showed in profiles of rooms with many subscribers.
    let asked = close_asked(close_now);
    tokio::pin!(asked);
    let close = loop {
        let first = tokio::select! {
            biased;
            closing = &mut asked => break closing,
            next = queue.recv() => next,
        };
        let Some(first) = first else { break None };
        let written = tokio::select! {
            biased;
            closing = &mut asked => break closing,
            written = write_batch(&mut sink, &mut queue, &in_runs, first, &mut unwritten) => written,
        };
        match written {
            Ok(None) => {}
            Ok(Some(close)) => break Some(close),
            Err(_) => return,
        }
    };
    let mut last = match close {
        Some(Closing::Ours(code, reason)) => {
            metrics.ws_closed(code);
            Wire::close(Some(code), reason).bytes().clone()
        }
        Some(Closing::Answer(code)) => Wire::close(code, "").bytes().clone(),
        None => Bytes::new(),
    };
    if write_out(&mut sink, &mut unwritten).await.is_ok() {
        let _ = write_out(&mut sink, &mut last).await;
    }
}

/// Resolves with the close asked for at once; never once no handle is left to ask for one (the
/// writer then drains the queue).
async fn close_asked(mut close_now: watch::Receiver<Option<Closing>>) -> Option<Closing> {
    let asked = close_now.wait_for(Option::is_some).await.map(|closing| *closing);
    match asked {
        Ok(closing) => closing,
        Err(_) => std::future::pending().await,
    }
}

/// Gathers `first` and the items queued behind it when the batch began (up to [`BATCH_BYTES`])
/// into `unwritten` and writes them in one write, then flushes; returns a queued close, once
/// what was queued before it is written. A lone item is written from the hub's bytes
/// themselves, shared with every other recipient; several are copied together first, since
/// one system call costs more than the copy. Items queued meanwhile wait for the next batch, so
/// a busy room cannot put the write off.
async fn write_batch(
    sink: &mut (impl AsyncWrite + Unpin),
    queue: &mut mpsc::Receiver<Outbound>,
    in_runs: &InRuns,
    first: Outbound,
    unwritten: &mut Bytes,
) -> std::io::Result<Option<Closing>> {
    let mut behind = queue.len();
    let mut outbound = first;
    let mut parts: Vec<Bytes> = Vec::new();
    let mut size = 0;
    let mut closing = None;
    loop {
        in_runs.taken(&outbound);
        let part = match outbound {
            Outbound::Frames(wire) => wire.bytes().clone(),
            Outbound::Ping => Wire::ping().bytes().clone(),
            Outbound::Pong(payload) => Wire::pong(payload).bytes().clone(),
            Outbound::Close(code, reason) => {
                closing = Some(Closing::Ours(code, reason));
                break;
            }
        };
        size += part.len();
        parts.push(part);
        if behind == 0 || size >= BATCH_BYTES {
            break;
        }
        behind -= 1;
        match queue.try_recv() {
            Ok(more) => outbound = more,
            Err(_) => break,
        }
    }
    *unwritten = match parts.len() {
        0 => Bytes::new(),
        1 => parts.swap_remove(0),
        _ => {
            let mut together = BytesMut::with_capacity(size);
            for part in &parts {
                together.extend_from_slice(part);
            }
            together.freeze()
        }
    };
    write_out(sink, unwritten).await?;
    Ok(closing)
}

/// Writes `bytes` and flushes. `write_all_buf` takes off what each write took: if this is
/// cancelled, what is left of them is still in `bytes`.
async fn write_out(sink: &mut (impl AsyncWrite + Unpin), bytes: &mut Bytes) -> std::io::Result<()> {
    sink.write_all_buf(bytes).await?;
    sink.flush().await
}

struct Connection {
    gateway: Gateway,
    principal: Principal,
    /// Ends when the session is found gone or the token expires.
    session: SessionFollow,
    user: UserRef,
    handle: ConnectionHandle,
    /// The rooms this connection follows.
    rooms: HashSet<RoomId>,
    invalid_in_a_row: u32,
    /// The replies to sends, edits and deletes, in the order their frames were read.
    in_flight: FuturesOrdered<Pending>,
    /// The sends in flight, per room.
    sends: HashMap<RoomId, Lane>,
    /// The edits and deletes in flight (they hold every followed room).
    changes: Lane,
}

/// A reply being worked out in a task of its own.
type Pending = Pin<Box<dyn Future<Output = Answered> + Send>>;

/// A reply worked out, with what it releases.
struct Answered {
    reply: ServerFrame,
    work: Work,
    /// The seq of the message a send stored.
    seq: Option<i64>,
}

/// What a reply in flight holds.
#[derive(Clone, Copy)]
enum Work {
    /// A send to this room.
    Send(RoomId),
    /// An edit or a delete (every followed room).
    Change,
    /// Nothing: a send or an edit refused before it started (an invalid content or key).
    Refused,
}

/// Operations of one connection that must reach the domain one after the other: its sends to
/// one room (each queued after the one before), or its edits and deletes (each started after
/// the one before finished). An operation hands on its turn by dropping the sender [`Lane::enter`]
/// gave it; the count of those not yet answered keeps the hub holding the lane's rooms.
#[derive(Default)]
struct Lane {
    /// Started and not yet answered.
    awaiting: usize,
    /// Resolves once the latest operation of the lane has finished.
    last: Option<oneshot::Receiver<()>>,
}

impl Lane {
    /// Takes a place at the end of the lane: the returned turn resolves once the operation
    /// before has handed on its turn, and the operation drops the returned sender to hand on
    /// its own.
    fn enter(&mut self) -> (Option<oneshot::Receiver<()>>, oneshot::Sender<()>) {
        let (finished, next) = oneshot::channel();
        self.awaiting += 1;
        (self.last.replace(next), finished)
    }
}

/// Waits for the turn of an operation in its lane. The operation before hands on its turn
/// whether it succeeded or not (a cancelled task drops its sender too), so a turn always comes.
async fn wait_turn(previous: Option<oneshot::Receiver<()>>) {
    if let Some(previous) = previous {
        let _ = previous.await;
    }
}

/// How [`Connection::read_frames`] ended.
enum Ending {
    /// The client is gone or the connection is being cut: no reply would be read.
    Gone,
    /// Close with this code once the replies in flight are queued.
    Close(u16, &'static str),
}

impl Connection {
    async fn read_frames(
        &mut self,
        stream: &mut Socket,
        closed: &mut watch::Receiver<Option<Closing>>,
        mut user_events: Option<convo_domain::Subscription>,
    ) -> Ending {
        let mut shutdown = self.gateway.shutdown.clone();
        let mut heartbeat = interval_at(Instant::now() + PING_AFTER, PING_AFTER / 2);
        let mut last_heard = Instant::now();

        loop {
            tokio::select! {
                biased;
                _ = closed.changed() => return Ending::Gone,
                _ = shutdown.changed() => return Ending::Close(close::GOING_AWAY, "server shutting down"),
                event = next_event(&mut user_events) => match event {
                    Ok(Event::SessionsRevoked { sessions, .. }) if sessions.contains(&self.principal.session_id) => {
                        return Ending::Close(close::SESSION_ENDED, "session ended");
                    }
                    // A missed announcement is caught by the session follow within a second.
                    Ok(_) | Err(convo_domain::SubscriptionError::Lagged(_)) => {}
                    Err(convo_domain::SubscriptionError::Closed) => user_events = None,
                },
                end = self.session.ended() => match end {
                    SessionEnd::Ended => return Ending::Close(close::SESSION_ENDED, "session ended"),
                    SessionEnd::TokenExpired => {
                        self.handle.close_now(close::SESSION_ENDED, "token expired");
                        return Ending::Gone;
                    }
                },
                _ = heartbeat.tick() => {
                    if self.in_flight.len() >= MAX_IN_FLIGHT {
                        // Not reading (the pipeline is full), so the client cannot be judged
                        // silent: its frames and pongs wait in the socket.
                        last_heard = Instant::now();
                    }
                    let silent = last_heard.elapsed();
                    if silent >= SILENT_LIMIT {
                        self.handle.close_now(close::GOING_AWAY, "no answer for 60 s");
                        return Ending::Gone;
                    }
                    if silent >= PING_AFTER {
                        self.handle.ping();
                    }
                }
                // Replies first, so that a full pipeline frees a place before the next read.
                Some(answered) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    if !self.answer(answered) {
                        return Ending::Gone;
                    }
                }
                incoming = stream.next(), if self.in_flight.len() < MAX_IN_FLIGHT => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        last_heard = Instant::now();
                        if let Some(ending) = self.handle_text(&text).await {
                            return ending;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => return Ending::Close(close::POLICY, "frames must be JSON text"),
                    Some(Ok(Message::Ping(payload))) => {
                        last_heard = Instant::now();
                        self.handle.pong(payload);
                    }
                    // A raw frame is never read.
                    Some(Ok(Message::Pong(_) | Message::Frame(_))) => last_heard = Instant::now(),
                    Some(Ok(Message::Close(frame))) => {
                        // Answered with the client's code; one that may not be sent is a
                        // protocol error.
                        let code = frame.map(|frame| match frame.code.is_allowed() {
                            true => u16::from(frame.code),
                            false => u16::from(CloseCode::Protocol),
                        });
                        self.handle.answer_close(code);
                        return Ending::Gone;
                    }
                    None => return Ending::Gone,
                    Some(Err(SocketError::Capacity(CapacityError::MessageTooLong { .. }))) => {
                        // A frame, or a message in fragments, over the limit.
                        self.handle.close_now(close::TOO_BIG, "frame over 16 KiB");
                        return Ending::Gone;
                    }
                    Some(Err(_)) => return Ending::Gone,
                },
            }
        }
    }

    /// Queues the replies still in flight, in order, for at most [`ANSWER_GRACE`] and not past
    /// the token's expiry; stops early if the connection is cut meanwhile.
    async fn answer_in_flight(&mut self, closed: &mut watch::Receiver<Option<Closing>>) {
        let deadline = (Instant::now() + ANSWER_GRACE).min(self.session.expires());
        loop {
            tokio::select! {
                biased;
                _ = closed.changed() => return,
                answered = self.in_flight.next() => match answered {
                    Some(answered) => {
                        if !self.answer(answered) {
                            return;
                        }
                    }
                    None => return,
                },
                () = sleep_until(deadline) => return,
            }
        }
    }

    /// Handles one text frame; `Some` when the connection must end.
    async fn handle_text(&mut self, text: &str) -> Option<Ending> {
        let (reference, frame) = parse(text);
        let frame = match frame {
            Ok(frame) => {
                self.invalid_in_a_row = 0;
                frame
            }
            Err(why) => {
                self.invalid_in_a_row += 1;
                let open = self.handle.push_frame(&ServerFrame::invalid(reference, why));
                if self.invalid_in_a_row >= MAX_INVALID_IN_A_ROW {
                    return Some(Ending::Close(close::POLICY, "too many invalid frames"));
                }
                return (!open).then_some(Ending::Gone);
            }
        };
        // A frame from the client is activity: it extends the session as a request does.
        self.session.note_activity();
        let reply = match self.handle_frame(frame, reference.clone()).await {
            Ok(Some(reply)) => reply,
            Ok(None) => return None,
            Err(Stop) => return Some(Ending::Gone),
        };
        let open = match reply {
            Ok(frame) => self.handle.push_frame(&frame),
            Err(error) => self.handle.push_frame(&ServerFrame::error(reference, &error)),
        };
        (!open).then_some(Ending::Gone)
    }

    /// The direct reply to a frame, if it has one now; `Err(Stop)` when the connection
    /// overflowed. Sends, edits and deletes are started here and answered later, in order.
    async fn handle_frame(
        &mut self,
        frame: ClientFrame,
        reference: Option<String>,
    ) -> Result<Option<Result<ServerFrame, DomainError>>, Stop> {
        let user = self.user.id;
        Ok(Some(match frame {
            ClientFrame::Ping => Ok(ServerFrame::Pong { reference }),
            ClientFrame::Join { room_id, since_seq } => {
                return self.join(RoomId::from(room_id), since_seq, reference).await;
            }
            ClientFrame::Leave { room_id } => {
                let room = RoomId::from(room_id);
                if self.rooms.remove(&room) {
                    self.gateway.hub.unsubscribe(room, self.handle.id);
                }
                Ok(ServerFrame::Left { reference, room_id })
            }
            ClientFrame::Send { room_id, content, client_message_id } => {
                self.start_send(RoomId::from(room_id), &content, client_message_id.as_deref(), reference);
                return Ok(None);
            }
            ClientFrame::Edit { message_id, content } => {
                match MessageContent::parse(&content) {
                    Ok(content) => self.start_change(reference, move |messages, user| async move {
                        let edited = messages.edit(user, MessageId::from(message_id), content).await?;
                        Ok(move |reference| ServerFrame::Ack { reference, message: message_json(&edited) })
                    }),
                    Err(error) => self.refuse(reference, error.into()),
                }
                return Ok(None);
            }
            ClientFrame::Delete { message_id } => {
                let id = MessageId::from(message_id);
                self.start_change(reference, move |messages, user| async move {
                    let room = messages.delete(user, id).await?;
                    Ok(move |reference| deleted(reference, room, id))
                });
                return Ok(None);
            }
            ClientFrame::Typing { room_id } => {
                let room = RoomId::from(room_id);
                if !self.gateway.hub.typing_allowed(user, room) {
                    return Ok(None);
                }
                match self.gateway.live.typing(&self.user, room).await {
                    Ok(()) => return Ok(None),
                    Err(error) => Err(error),
                }
            }
            ClientFrame::Members { room_id } => {
                self.gateway.rooms.members(user, RoomId::from(room_id)).await.map(|members| {
                    ServerFrame::Members {
                        reference,
                        room_id,
                        members: members.iter().map(member_json).collect(),
                    }
                })
            }
        }))
    }

    /// Starts a send in its room's lane. Its reply (ack or error) is queued in frame order.
    fn start_send(
        &mut self,
        room: RoomId,
        content: &str,
        client_message_id: Option<&str>,
        reference: Option<String>,
    ) {
        let parsed = MessageContent::parse(content).and_then(|content| {
            let key = client_message_id.map(ClientMessageId::parse).transpose()?;
            Ok((content, key))
        });
        let (content, key) = match parsed {
            Ok(parsed) => parsed,
            Err(error) => return self.refuse(reference, error.into()),
        };
        // Our own `message` frame must not overtake the ack: hold this room's frames.
        if !self.holding(room) {
            self.gateway.hub.hold(room, self.handle.id);
        }
        let (turn, finished) = self.sends.entry(room).or_default().enter();
        let (messages, user) = (self.gateway.messages.clone(), self.user.id);
        let task_reference = reference.clone();
        let task = tokio::spawn(async move {
            wait_turn(turn).await;
            let queued = messages.enqueue(user, &RoomRef::Id(room), content, key).await;
            // Queued behind the connection's earlier sends to the room: the next may queue now,
            // and the two commit together or one after the other, in this order.
            drop(finished);
            let sent = match queued {
                Ok(queued) => queued.stored().await,
                Err(error) => Err(error),
            };
            match sent {
                Ok(posted) => Answered {
                    seq: Some(posted.message.seq),
                    reply: ServerFrame::Ack {
                        reference: task_reference,
                        message: message_json(&posted.message),
                    },
                    work: Work::Send(room),
                },
                Err(error) => Answered {
                    seq: None,
                    reply: ServerFrame::error(task_reference, &error),
                    work: Work::Send(room),
                },
            }
        });
        self.in_flight.push_back(answer_of(task, reference, Work::Send(room)));
    }

    /// Starts an edit or a delete in the changes' lane, holding every followed room: the room
    /// is not known before the message is read. `change` returns how to build the reply.
    fn start_change<F, R>(
        &mut self,
        reference: Option<String>,
        change: impl FnOnce(Arc<dyn MessageService>, UserId) -> F,
    ) where
        F: Future<Output = DomainResult<R>> + Send + 'static,
        R: FnOnce(Option<String>) -> ServerFrame + Send + 'static,
    {
        if self.changes.awaiting == 0 {
            for room in &self.rooms {
                if !self.sends.contains_key(room) {
                    self.gateway.hub.hold(*room, self.handle.id);
                }
            }
        }
        let (turn, finished) = self.changes.enter();
        let changed = change(self.gateway.messages.clone(), self.user.id);
        let task_reference = reference.clone();
        let task = tokio::spawn(async move {
            wait_turn(turn).await;
            let changed = changed.await;
            drop(finished);
            let reply = match changed {
                Ok(reply) => reply(task_reference),
                Err(error) => ServerFrame::error(task_reference, &error),
            };
            Answered { reply, work: Work::Change, seq: None }
        });
        self.in_flight.push_back(answer_of(task, reference, Work::Change));
    }

    /// Answers a send, edit or delete refused before it started, in its place among the others.
    fn refuse(&mut self, reference: Option<String>, error: DomainError) {
        let refused =
            Answered { reply: ServerFrame::error(reference, &error), work: Work::Refused, seq: None };
        self.in_flight.push_back(std::future::ready(refused).boxed());
    }

    /// Whether the hub holds this room's frames for this connection.
    fn holding(&self, room: RoomId) -> bool {
        self.sends.contains_key(&room) || self.changes.awaiting > 0
    }

    /// Queues a reply that came back, then releases what its change held. `false` when the
    /// connection overflowed.
    fn answer(&mut self, answered: Answered) -> bool {
        let hub = &self.gateway.hub;
        let mut open = self.handle.push_frame(&answered.reply);
        match answered.work {
            Work::Send(room) => {
                if let Some(lane) = self.sends.get_mut(&room) {
                    lane.awaiting -= 1;
                    if lane.awaiting == 0 {
                        self.sends.remove(&room);
                    }
                }
                if !self.holding(room) {
                    open &= hub.release(room, self.handle.id);
                } else if self.changes.awaiting == 0
                    && let Some(seq) = answered.seq
                {
                    open &= hub.release_through(room, self.handle.id, seq);
                }
            }
            Work::Change => {
                self.changes.awaiting -= 1;
                if self.changes.awaiting == 0 {
                    for room in &self.rooms {
                        if !self.sends.contains_key(room) {
                            open &= hub.release(*room, self.handle.id);
                        }
                    }
                }
            }
            Work::Refused => {}
        }
        open
    }

    /// Subscribes, replays what was missed, then goes live with no gap and no duplicate.
    async fn join(
        &mut self,
        room: RoomId,
        since: Option<i64>,
        reference: Option<String>,
    ) -> Result<Option<Result<ServerFrame, DomainError>>, Stop> {
        if since.is_some_and(|seq| seq < 0) {
            return Ok(Some(Err(
                ValidationError::new(convo_domain::Field::SinceSeq, "must be 0 or more").into()
            )));
        }
        let hub = self.gateway.hub.clone();
        if self.rooms.remove(&room) {
            hub.unsubscribe(room, self.handle.id);
        }
        // Only a member makes this instance follow the room's channel.
        if let Err(error) = self.gateway.rooms.room(self.user.id, room).await {
            return Ok(Some(Err(error)));
        }
        // Subscribe first (frames held), then read what was missed: a message committed in
        // between is in both, and the hub drops the copy at or below the resumed seq.
        if let Err(error) = hub.subscribe(room, &self.handle).await {
            return Ok(Some(Err(error)));
        }
        let resumption = match self.gateway.live.resume(self.user.id, room, since).await {
            Ok(resumption) => resumption,
            Err(error) => {
                hub.unsubscribe(room, self.handle.id);
                return Ok(Some(Err(error)));
            }
        };
        self.rooms.insert(room);
        let joined = ServerFrame::Joined {
            reference,
            room_id: room.as_uuid(),
            last_seq: resumption.last_seq,
            truncated: resumption.truncated,
        };
        // With replies of ours awaited in the room, the replay may hold our own unacked
        // messages: it waits, held, for those replies (the ack comes first).
        let keep_holding = self.holding(room);
        if !hub.finish_join(
            room,
            self.handle.id,
            &resumption.messages,
            resumption.last_seq,
            &joined,
            keep_holding,
        ) {
            return Err(Stop);
        }
        Ok(None)
    }
}

/// The reply of a task, or a server error if the task failed.
fn answer_of(task: tokio::task::JoinHandle<Answered>, reference: Option<String>, work: Work) -> Pending {
    async move {
        task.await.unwrap_or_else(|error| {
            tracing::error!(%error, "a WebSocket operation failed");
            Answered { reply: ServerFrame::error(reference, &DomainError::internal(error)), work, seq: None }
        })
    }
    .boxed()
}

/// The connection overflowed or closed while handling a frame.
struct Stop;

async fn next_event(
    events: &mut Option<convo_domain::Subscription>,
) -> Result<Event, convo_domain::SubscriptionError> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};

    use super::*;
    use crate::ws::hub::Frame;
    use crate::ws::wire::{self, texts};

    /// A socket that records what is written to it, each write and each flush.
    #[derive(Default)]
    struct Recorded {
        written: Vec<u8>,
        /// Where each write's bytes were.
        writes: Vec<*const u8>,
        /// How many frames had been written at each flush.
        flushes: Vec<usize>,
        /// A frame pushed here with each write: a room that keeps the queue busy.
        busy: Option<(ConnectionHandle, Frame)>,
    }

    impl Recorded {
        fn frames(&self) -> Vec<(OpCode, Vec<u8>)> {
            wire::parse(&self.written)
        }
    }

    impl AsyncWrite for Recorded {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
            let this = self.get_mut();
            this.written.extend_from_slice(buf);
            this.writes.push(buf.as_ptr());
            if let Some((handle, frame)) = &this.busy {
                assert!(handle.push(frame));
            }
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            let this = self.get_mut();
            this.flushes.push(wire::parse(&this.written).len());
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn handle(
        capacity: usize,
    ) -> (ConnectionHandle, mpsc::Receiver<Outbound>, watch::Receiver<Option<Closing>>) {
        let (queue, outbound) = mpsc::channel(capacity);
        let (close_now, closed) = watch::channel(None);
        (ConnectionHandle::new(UserId::generate(), queue, close_now), outbound, closed)
    }

    fn pong_frame() -> Frame {
        Frame::new(&ServerFrame::Pong { reference: None }, false)
    }

    #[tokio::test]
    async fn a_batch_goes_out_in_one_write_then_one_flush() {
        let (handle, mut outbound, _) = handle(16);
        for _ in 0..5 {
            assert!(handle.push(&pong_frame()));
        }
        handle.ping();
        handle.pong(Bytes::from_static(b"hello"));

        let mut socket = Recorded::default();
        let first = outbound.recv().await.expect("queued");
        assert_eq!(
            write_batch(&mut socket, &mut outbound, &InRuns::default(), first, &mut Bytes::new()).await.ok(),
            Some(None)
        );
        assert_eq!(socket.writes.len(), 1, "one write");
        assert_eq!(socket.flushes, [7], "one flush, after every frame of the batch");
        let frames = socket.frames();
        assert!(frames[..5].iter().all(|(opcode, _)| *opcode == OpCode::Data(Data::Text)));
        assert_eq!(frames[5], (OpCode::Control(Control::Ping), vec![]));
        assert_eq!(frames[6], (OpCode::Control(Control::Pong), b"hello".to_vec()));
    }

    #[tokio::test]
    async fn a_lone_item_is_written_from_the_bytes_every_recipient_shares() {
        let (queue, mut outbound) = mpsc::channel(16);
        let run = Wire::run(&[Wire::text("a"), Wire::text("b")]);
        queue.try_send(Outbound::Frames(run.clone())).expect("queued");

        let mut socket = Recorded::default();
        let first = outbound.recv().await.expect("queued");
        assert_eq!(
            write_batch(&mut socket, &mut outbound, &InRuns::default(), first, &mut Bytes::new()).await.ok(),
            Some(None)
        );
        assert_eq!(socket.writes, [run.bytes().as_ptr()], "the shared bytes, not a copy");
        assert_eq!(texts(&socket.written), ["a", "b"]);
    }

    #[tokio::test]
    async fn a_run_goes_out_in_order_with_the_rest_of_the_batch() {
        let (queue, mut outbound) = mpsc::channel(16);
        let run = Wire::run(&[Wire::text("a"), Wire::text("b"), Wire::text("c")]);
        queue.try_send(Outbound::Frames(run)).expect("queued");
        queue.try_send(Outbound::Frames(Wire::text("d"))).expect("queued");

        let mut socket = Recorded::default();
        let first = outbound.recv().await.expect("queued");
        assert_eq!(
            write_batch(&mut socket, &mut outbound, &InRuns::default(), first, &mut Bytes::new()).await.ok(),
            Some(None)
        );
        assert_eq!(texts(&socket.written), ["a", "b", "c", "d"]);
        assert_eq!(socket.flushes, [4], "one flush for the run and what followed it");
    }

    #[tokio::test]
    async fn a_batch_ends_with_what_was_queued_when_it_began_however_busy_the_room() {
        let (handle, mut outbound, _) = handle(64);
        for _ in 0..3 {
            assert!(handle.push(&pong_frame()));
        }

        let mut socket = Recorded { busy: Some((handle, pong_frame())), ..Recorded::default() };
        let first = outbound.recv().await.expect("queued");
        assert_eq!(
            write_batch(&mut socket, &mut outbound, &InRuns::default(), first, &mut Bytes::new()).await.ok(),
            Some(None)
        );
        assert_eq!(socket.flushes, [3], "flushed after the three queued, not put off");
        assert_eq!(outbound.len(), 1, "what came meanwhile waits for the next batch");
    }

    #[tokio::test]
    async fn a_batch_stops_gathering_at_its_byte_bound() {
        let (queue, mut outbound) = mpsc::channel(16);
        let big = Wire::text(&"x".repeat(BATCH_BYTES / 2));
        for _ in 0..3 {
            queue.try_send(Outbound::Frames(big.clone())).expect("queued");
        }

        let mut socket = Recorded::default();
        let first = outbound.recv().await.expect("queued");
        assert_eq!(
            write_batch(&mut socket, &mut outbound, &InRuns::default(), first, &mut Bytes::new()).await.ok(),
            Some(None)
        );
        assert_eq!(socket.flushes, [2], "two halves reach the bound");
        assert_eq!(outbound.len(), 1, "the third waits for the next batch");
    }

    #[tokio::test]
    async fn a_queued_close_goes_out_after_the_frames_before_it_and_nothing_after() {
        let (handle, outbound, closed) = handle(16);
        assert!(handle.push(&pong_frame()));
        assert!(handle.push(&pong_frame()));
        handle.close_after_queue(close::SESSION_ENDED, "session ended");
        assert!(handle.push(&pong_frame()));

        let mut socket = Recorded::default();
        let metrics = Arc::new(Metrics::default());
        write_frames(&mut socket, outbound, InRuns::default(), closed, Arc::clone(&metrics)).await;
        let frames = socket.frames();
        assert_eq!(frames.len(), 3, "{frames:?}");
        assert!(frames[..2].iter().all(|(opcode, _)| *opcode == OpCode::Data(Data::Text)));
        let mut close = close::SESSION_ENDED.to_be_bytes().to_vec();
        close.extend_from_slice(b"session ended");
        assert_eq!(frames[2], (OpCode::Control(Control::Close), close));
        assert_eq!(socket.flushes.last(), Some(&3), "flushed with the close");
        assert!(metrics.render().contains(r#"ws_closes_total{code="4001"} 1"#), "counted as ours");
    }

    #[tokio::test]
    async fn once_every_handle_is_gone_the_writer_sends_what_was_queued_and_stops() {
        let (handle, outbound, closed) = handle(16);
        assert!(handle.push(&pong_frame()));
        assert!(handle.push(&pong_frame()));
        drop(handle);

        let mut socket = Recorded::default();
        let metrics = Arc::new(Metrics::default());
        tokio::time::timeout(
            Duration::from_secs(5),
            write_frames(&mut socket, outbound, InRuns::default(), closed, metrics),
        )
        .await
        .expect("the writer stops");
        assert_eq!(texts(&socket.written).len(), 2, "both frames, and no close");
    }

    #[tokio::test]
    async fn a_clients_close_is_answered_at_once_with_its_code_and_not_counted_as_ours() {
        let (handle, outbound, closed) = handle(16);
        assert!(handle.push(&pong_frame()));
        handle.answer_close(Some(1000));
        // Even a close of ours asked for later is not sent: the connection is closing.
        handle.close_now(close::GOING_AWAY, "server shutting down");

        let mut socket = Recorded::default();
        let metrics = Arc::new(Metrics::default());
        write_frames(&mut socket, outbound, InRuns::default(), closed, Arc::clone(&metrics)).await;
        assert_eq!(socket.frames(), [(OpCode::Control(Control::Close), 1000u16.to_be_bytes().to_vec())]);
        assert!(!metrics.render().contains("ws_closes_total{"), "{}", metrics.render());
    }

    #[tokio::test]
    async fn a_close_that_interrupts_a_stuck_write_follows_the_rest_of_the_frame_being_written() {
        let (queue, outbound) = mpsc::channel(16);
        let (close_now, closed) = watch::channel(None);
        let handle = ConnectionHandle::new(UserId::generate(), queue.clone(), close_now);
        let text = "x".repeat(1000);
        queue.try_send(Outbound::Frames(Wire::text(&text))).expect("queued");
        // A client that reads nothing yet: the socket takes 64 bytes, then the write is stuck.
        let (server, mut client) = tokio::io::duplex(64);
        let writer = tokio::spawn(write_frames(
            server,
            outbound,
            InRuns::default(),
            closed,
            Arc::new(Metrics::default()),
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!writer.is_finished(), "stuck in the write");
        handle.close_now(close::TOO_SLOW, "outbound queue overflowed");

        let mut received = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut client, &mut received).await.expect("read");
        let frames = wire::parse(&received);
        assert_eq!(frames.len(), 2, "the frame whole, then the close");
        assert_eq!(frames[0], (OpCode::Data(Data::Text), text.into_bytes()));
        assert_eq!(frames[1].0, OpCode::Control(Control::Close));
        assert_eq!(frames[1].1[..2], close::TOO_SLOW.to_be_bytes());
        writer.await.expect("the writer ends");
    }
}
