//! One WebSocket connection: a reader that handles client frames one at a time (so replies keep
//! their order), and a writer task that drains the bounded outbound queue into the socket.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use convo_domain::{
    ClientMessageId, DomainError, Event, MessageContent, MessageId, Principal, RoomId, RoomRef, Topic, User,
    UserRef, ValidationError,
};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use poem::web::websocket::{CloseCode, Message, WebSocketStream};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, interval_at};

use super::Gateway;
use super::hub::{ConnectionHandle, Outbound, close};
use super::protocol::{ClientFrame, ServerFrame, deleted, member_json, message_json, parse, user_json};
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
/// How often a connection checks that its session still lives (expiry has no event).
const SESSION_CHECK: Duration = Duration::from_secs(30);

/// Serves one upgraded connection until it closes.
pub async fn run(socket: WebSocketStream, gateway: Gateway, principal: Principal, user: User) {
    let (sink, stream) = socket.split();
    let (queue, queue_rx) = mpsc::channel(gateway.outbound_queue);
    let (close_now, close_rx) = watch::channel(None);
    let handle = ConnectionHandle::new(user.id, queue, close_now);
    let metrics = gateway.metrics.clone();
    metrics.ws_opened();
    let writer = tokio::spawn(write_frames(sink, queue_rx, close_rx.clone(), metrics.clone()));

    let user_ref = UserRef::from(&user);
    let mut connection =
        Connection { gateway, principal, user: user_ref, handle, rooms: HashSet::new(), invalid_in_a_row: 0 };
    connection.handle.push_frame(&ServerFrame::Ready {
        user: user_json(&user),
        session_id: principal.session_id.as_uuid(),
    });
    if let Err(error) = connection.gateway.live.connected(&connection.user).await {
        tracing::warn!(%error, "could not record presence");
    }
    let mut stream = stream;
    connection.read_frames(&mut stream, close_rx).await;

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

/// Writes queued frames, batching what is already queued into one flush, until a close. A
/// close asked for while a write is stuck (a client that stopped reading) interrupts the write:
/// the close frame goes out as soon as the client reads again.
async fn write_frames(
    mut sink: SplitSink<WebSocketStream, Message>,
    mut queue: mpsc::Receiver<Outbound>,
    mut close_now: watch::Receiver<Option<(u16, &'static str)>>,
    metrics: Arc<Metrics>,
) {
    // Once every handle is gone the watch has no sender: stop watching it and drain the queue.
    let mut watching = true;
    let close = loop {
        let first = tokio::select! {
            biased;
            changed = close_now.changed(), if watching => match changed {
                Ok(()) => break *close_now.borrow(),
                Err(_) => {
                    watching = false;
                    continue;
                }
            },
            next = queue.recv() => next,
        };
        let Some(first) = first else { break None };
        let written = tokio::select! {
            biased;
            Ok(()) = close_now.changed(), if watching => break *close_now.borrow(),
            written = write_batch(&mut sink, &mut queue, first) => written,
        };
        match written {
            Ok(None) => {}
            Ok(Some(close)) => break Some(close),
            Err(()) => return,
        }
    };
    if let Some((code, reason)) = close {
        metrics.ws_closed(code);
        let _ = sink.send(Message::Close(Some((CloseCode::from(code), reason.to_owned())))).await;
    }
    let _ = sink.close().await;
}

/// Writes `first` and whatever else is queued, then flushes once; returns a queued close.
async fn write_batch(
    sink: &mut SplitSink<WebSocketStream, Message>,
    queue: &mut mpsc::Receiver<Outbound>,
    first: Outbound,
) -> Result<Option<(u16, &'static str)>, ()> {
    let mut outbound = first;
    loop {
        let message = match outbound {
            Outbound::Text(text) => Message::Text(text.to_string()),
            Outbound::Ping => Message::Ping(Vec::new()),
            Outbound::Close(code, reason) => return Ok(Some((code, reason))),
        };
        sink.feed(message).await.map_err(|_| ())?;
        match queue.try_recv() {
            Ok(more) => outbound = more,
            Err(_) => break,
        }
    }
    sink.flush().await.map_err(|_| ())?;
    Ok(None)
}

struct Connection {
    gateway: Gateway,
    principal: Principal,
    user: UserRef,
    handle: ConnectionHandle,
    /// The rooms this connection follows.
    rooms: HashSet<RoomId>,
    invalid_in_a_row: u32,
}

impl Connection {
    async fn read_frames(
        &mut self,
        stream: &mut SplitStream<WebSocketStream>,
        mut closed: watch::Receiver<Option<(u16, &'static str)>>,
    ) {
        let mut shutdown = self.gateway.shutdown.clone();
        let mut user_events = match self.gateway.live.subscribe(Topic::User(self.user.id)).await {
            Ok(events) => Some(events),
            Err(error) => {
                tracing::warn!(%error, "cannot follow session events; relying on periodic checks");
                None
            }
        };
        let mut heartbeat = interval_at(Instant::now() + PING_AFTER, PING_AFTER / 2);
        let mut session_check = interval_at(Instant::now() + SESSION_CHECK, SESSION_CHECK);
        let mut last_heard = Instant::now();

        loop {
            tokio::select! {
                biased;
                _ = closed.changed() => return,
                _ = shutdown.changed() => {
                    self.handle.close_after_queue(close::GOING_AWAY, "server shutting down");
                    return;
                }
                event = next_event(&mut user_events) => match event {
                    Ok(Event::SessionsRevoked { sessions, .. }) if sessions.contains(&self.principal.session_id) => {
                        self.handle.close_after_queue(close::SESSION_ENDED, "session ended");
                        return;
                    }
                    Ok(_) => {}
                    Err(convo_domain::SubscriptionError::Lagged(_)) => {
                        if !self.session_alive().await {
                            return;
                        }
                    }
                    Err(convo_domain::SubscriptionError::Closed) => user_events = None,
                },
                _ = heartbeat.tick() => {
                    let silent = last_heard.elapsed();
                    if silent >= SILENT_LIMIT {
                        self.handle.close_now(close::GOING_AWAY, "no answer for 60 s");
                        return;
                    }
                    if silent >= PING_AFTER {
                        self.handle.ping();
                    }
                }
                _ = session_check.tick() => {
                    if !self.session_alive().await {
                        return;
                    }
                }
                incoming = stream.next() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        last_heard = Instant::now();
                        if !self.handle_text(&text).await {
                            return;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        self.handle.close_after_queue(close::POLICY, "frames must be JSON text");
                        return;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => last_heard = Instant::now(),
                    Some(Ok(Message::Close(_))) | None => return,
                    Some(Err(error)) => {
                        // tungstenite reports a frame over max_message_size as a capacity error.
                        if error.to_string().contains("Space limit exceeded") {
                            self.handle.close_now(close::TOO_BIG, "frame over 16 KiB");
                        }
                        return;
                    }
                },
            }
        }
    }

    /// `false` (and the connection closing with 4001) once the session has ended.
    async fn session_alive(&self) -> bool {
        match self.gateway.auth.check_session(&self.principal).await {
            Err(DomainError::Unauthenticated) => {
                self.handle.close_after_queue(close::SESSION_ENDED, "session ended");
                false
            }
            // Unreachable session store: keep the connection; the next check decides.
            _ => true,
        }
    }

    /// Handles one text frame; `false` when the connection must end.
    async fn handle_text(&mut self, text: &str) -> bool {
        let (reference, frame) = parse(text);
        let frame = match frame {
            Ok(frame) => {
                self.invalid_in_a_row = 0;
                frame
            }
            Err(why) => {
                self.invalid_in_a_row += 1;
                if self.invalid_in_a_row >= MAX_INVALID_IN_A_ROW {
                    self.handle.push_frame(&ServerFrame::invalid(reference, why));
                    self.handle.close_after_queue(close::POLICY, "too many invalid frames");
                    return false;
                }
                return self.handle.push_frame(&ServerFrame::invalid(reference, why));
            }
        };
        let reply = match self.handle_frame(frame, reference.clone()).await {
            Ok(Some(reply)) => reply,
            Ok(None) => return true,
            Err(Stop) => return false,
        };
        match reply {
            Ok(frame) => self.handle.push_frame(&frame),
            Err(error) => self.handle.push_frame(&ServerFrame::error(reference, &error)),
        }
    }

    /// The direct reply to a frame, if it has one; `Err(Stop)` when the connection overflowed.
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
                let room = RoomId::from(room_id);
                let parsed = MessageContent::parse(&content).and_then(|content| {
                    let key = client_message_id.as_deref().map(ClientMessageId::parse).transpose()?;
                    Ok((content, key))
                });
                let (content, key) = match parsed {
                    Ok(parsed) => parsed,
                    Err(error) => return Ok(Some(Err(error.into()))),
                };
                // Our own `message` frame must not overtake the ack: hold this room's frames.
                let held = self.hold(self.rooms.contains(&room).then_some(room));
                let reply = match self.gateway.messages.send(user, &RoomRef::Id(room), content, key).await {
                    Ok(posted) => ServerFrame::Ack { reference, message: message_json(&posted.message) },
                    Err(error) => ServerFrame::error(reference, &error),
                };
                return self.reply_then_release(&held, &reply);
            }
            ClientFrame::Edit { message_id, content } => {
                let content = match MessageContent::parse(&content) {
                    Ok(content) => content,
                    Err(error) => return Ok(Some(Err(error.into()))),
                };
                // The room is not known before the message is read: hold every followed room.
                let held = self.hold(self.rooms.iter().copied());
                let reply = match self.gateway.messages.edit(user, MessageId::from(message_id), content).await
                {
                    Ok(message) => ServerFrame::Ack { reference, message: message_json(&message) },
                    Err(error) => ServerFrame::error(reference, &error),
                };
                return self.reply_then_release(&held, &reply);
            }
            ClientFrame::Delete { message_id } => {
                let id = MessageId::from(message_id);
                let held = self.hold(self.rooms.iter().copied());
                let reply = match self.gateway.messages.delete(user, id).await {
                    Ok(room) => deleted(reference, room, id),
                    Err(error) => ServerFrame::error(reference, &error),
                };
                return self.reply_then_release(&held, &reply);
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

    /// Holds this connection's frames of `rooms` while a change it asked for is made.
    fn hold(&self, rooms: impl IntoIterator<Item = RoomId>) -> Vec<RoomId> {
        let rooms: Vec<RoomId> = rooms.into_iter().collect();
        for room in &rooms {
            self.gateway.hub.hold(*room, self.handle.id);
        }
        rooms
    }

    /// Queues the reply to a change, then the held frames: the reply reaches the client
    /// before the change's own broadcast does.
    fn reply_then_release(
        &self,
        held: &[RoomId],
        reply: &ServerFrame,
    ) -> Result<Option<Result<ServerFrame, DomainError>>, Stop> {
        let mut open = self.handle.push_frame(reply);
        for room in held {
            open &= self.gateway.hub.release(*room, self.handle.id, i64::MIN, None);
        }
        if open { Ok(None) } else { Err(Stop) }
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
        for message in &resumption.messages {
            if !self.handle.push_frame(&ServerFrame::Message { message: message_json(message) }) {
                return Err(Stop);
            }
        }
        let joined = ServerFrame::Joined {
            reference,
            room_id: room.as_uuid(),
            last_seq: resumption.last_seq,
            truncated: resumption.truncated,
        };
        if !hub.release(room, self.handle.id, resumption.last_seq, Some(&joined)) {
            return Err(Stop);
        }
        Ok(None)
    }
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
