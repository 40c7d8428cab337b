//! The WebSocket gateway's pipeline, against a message service whose sends wait until the test
//! lets each one go: other frames are answered while a send waits in the service, a
//! connection's sends to one room reach the service one after another in the order sent,
//! replies keep frame order, a full pipeline stops reading, and a shutdown or an ended session
//! closes only after the replies in flight, while an expired token closes at once. Also the
//! socket's own rules: the upgrade handshake and the frame limit.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeDelta, Utc};
use convo_api::ws::connection::MAX_IN_FLIGHT;
use convo_api::{AppState, HttpSettings};
use convo_domain::auth::MockAuthService;
use convo_domain::chat::{MockLiveService, MockRoomService, QueuedSend, Resumption};
use convo_domain::{
    AccessGrant, ClientMessageId, DomainError, DomainResult, Email, HistoryPage, HistoryQuery, Message,
    MessageContent, MessageId, MessageService, Posted, Principal, Room, RoomId, RoomName, RoomRef,
    SessionFollow, SessionId, Subscription, Topic, User, UserId, UserRef, Username,
};
use poem::listener::{Acceptor, Listener, TcpListener};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, oneshot};

const TOKEN: &str = "a-token";
/// How long a test waits for something it expects.
const WAIT: Duration = Duration::from_secs(10);
/// How long a test watches for something that must not happen.
const QUIET: Duration = Duration::from_millis(300);

/// A send that reached the service and waits for the test to let it finish.
struct Started {
    room: RoomId,
    content: String,
    finish: oneshot::Sender<()>,
}

/// A message service whose sends report that they started, then wait for the test before they
/// are queued (as a send held up by the rate limiter or a full room queue would).
struct GatedMessages {
    author: UserRef,
    started: mpsc::UnboundedSender<Started>,
    finished: mpsc::UnboundedSender<String>,
    /// Per room: the last seq given, the sends running now, and the most ever running at once.
    rooms: Mutex<HashMap<RoomId, RoomLog>>,
}

#[derive(Default, Clone, Copy)]
struct RoomLog {
    last_seq: i64,
    running: usize,
    most_running: usize,
}

impl GatedMessages {
    fn log(&self, room: RoomId, change: impl FnOnce(&mut RoomLog)) -> RoomLog {
        let mut rooms = self.rooms.lock().expect("room log");
        let log = rooms.entry(room).or_default();
        change(log);
        *log
    }
}

#[async_trait]
impl MessageService for GatedMessages {
    async fn enqueue(
        &self,
        _author: UserId,
        room: &RoomRef,
        content: MessageContent,
        client_message_id: Option<ClientMessageId>,
    ) -> DomainResult<QueuedSend> {
        let RoomRef::Id(room) = *room else { return Err(DomainError::RoomNotFound) };
        self.log(room, |log| {
            log.running += 1;
            log.most_running = log.most_running.max(log.running);
        });
        let (finish, finishing) = oneshot::channel();
        let text = content.as_str().to_owned();
        self.started.send(Started { room, content: text.clone(), finish }).expect("test listening");
        finishing.await.map_err(|_| DomainError::internal("the test dropped the send"))?;
        let seq = self
            .log(room, |log| {
                log.running -= 1;
                log.last_seq += 1;
            })
            .last_seq;
        let _ = self.finished.send(text);
        let message = Message {
            id: MessageId::generate(),
            room_id: room,
            seq,
            author: self.author.clone(),
            content,
            created_at: Utc::now(),
            edited_at: None,
            client_message_id,
        };
        Ok(QueuedSend::known(Ok(Posted { message, created: true })))
    }

    async fn history(&self, _: UserId, _: &RoomRef, _: &HistoryQuery) -> DomainResult<Arc<HistoryPage>> {
        Err(DomainError::internal("not used by these tests"))
    }

    async fn edit(&self, _: UserId, _: MessageId, _: MessageContent) -> DomainResult<Message> {
        Err(DomainError::internal("not used by these tests"))
    }

    async fn delete(&self, _: UserId, _: MessageId) -> DomainResult<RoomId> {
        Err(DomainError::internal("not used by these tests"))
    }
}

/// The server side of a test: the sends that reach the service, and the gateway's shutdown.
struct Gate {
    started: mpsc::UnboundedReceiver<Started>,
    finished: mpsc::UnboundedReceiver<String>,
    messages: Arc<GatedMessages>,
    settings: HttpSettings,
    address: SocketAddr,
    /// A room the user does not belong to; every other room takes them.
    outsider_room: RoomId,
    /// The topics the instance subscribed to, in order.
    subscribed: Arc<Mutex<Vec<Topic>>>,
    /// What ends each connection's session follow, as the session check does when it finds
    /// the session gone.
    session_ends: Arc<Mutex<Vec<oneshot::Sender<()>>>>,
}

impl Gate {
    /// The next send to reach the service.
    async fn next_started(&mut self) -> Started {
        tokio::time::timeout(WAIT, self.started.recv()).await.expect("a send in time").expect("service alive")
    }

    /// Waits until the send with this content has finished in the service.
    async fn wait_finished(&mut self, content: &str) {
        loop {
            let next = tokio::time::timeout(WAIT, self.finished.recv()).await.expect("in time");
            if next.expect("service alive") == content {
                return;
            }
        }
    }

    fn most_running(&self, room: RoomId) -> usize {
        self.messages.log(room, |_| {}).most_running
    }

    /// Ends the session of every connection, as if the store no longer had it.
    fn end_sessions(&self) {
        for end in self.session_ends.lock().expect("session ends").drain(..) {
            let _ = end.send(());
        }
    }
}

/// Serves the api on a free port with the gated message service, one known user and live
/// events that never come.
async fn serve() -> Gate {
    serve_tokens_lasting(Duration::from_secs(3600)).await
}

/// [`serve`], with tokens that expire this long after a connection opens.
async fn serve_tokens_lasting(token_lifetime: Duration) -> Gate {
    let user = User {
        id: UserId::generate(),
        email: Email::parse("alice@example.com").expect("email"),
        username: Username::parse("alice").expect("username"),
        created_at: Utc::now(),
    };
    let mut auth = MockAuthService::new();
    let user_id = user.id;
    auth.expect_authenticate().withf(|token| token == TOKEN).returning(move |_| {
        let now = Utc::now();
        Ok(AccessGrant {
            principal: Principal { user_id, session_id: SessionId::generate() },
            issued_at: now,
            expires_at: now + TimeDelta::from_std(token_lifetime).expect("a lifetime in range"),
        })
    });
    auth.expect_me().returning(move |_| Ok(user.clone()));
    let session_ends = Arc::new(Mutex::new(Vec::new()));
    let ends = Arc::clone(&session_ends);
    auth.expect_follow_session().returning(move |_| {
        let (end, ended) = oneshot::channel();
        ends.lock().expect("session ends").push(end);
        SessionFollow::new(ended, tokio::time::Instant::now() + token_lifetime)
    });
    let mut live = MockLiveService::new();
    live.expect_connected().returning(|_| Ok(()));
    live.expect_disconnected().returning(|_| Ok(()));
    // Each feed stays open (a closed room feed would close its subscribers) and stays silent.
    let feeds = Mutex::new(Vec::new());
    let subscribed = Arc::new(Mutex::new(Vec::new()));
    let topics = Arc::clone(&subscribed);
    live.expect_subscribe().returning(move |topic| {
        topics.lock().expect("topics").push(topic);
        let (feed, events) = broadcast::channel(16);
        feeds.lock().expect("feeds").push(feed);
        Ok(Subscription::new(events))
    });
    let outsider_room = RoomId::generate();
    let mut rooms = MockRoomService::new();
    rooms.expect_room().returning(move |_, room| {
        if room == outsider_room {
            return Err(DomainError::NotAMember);
        }
        Ok(Room {
            id: room,
            name: RoomName::parse("general").expect("name"),
            owner_id: user_id,
            created_at: Utc::now(),
            member_count: 1,
            last_seq: 0,
        })
    });
    live.expect_last_seq().returning(|_| Ok(0));
    live.expect_resume()
        .returning(|_, _, _| Ok(Resumption { messages: Vec::new(), last_seq: 0, truncated: false }));

    let (started, started_rx) = mpsc::unbounded_channel();
    let (finished, finished_rx) = mpsc::unbounded_channel();
    let author = UserRef { id: user_id, username: Username::parse("alice").expect("username") };
    let messages = Arc::new(GatedMessages { author, started, finished, rooms: Mutex::new(HashMap::new()) });
    let state = AppState {
        auth: Arc::new(auth),
        rooms: Arc::new(rooms),
        messages: messages.clone(),
        live: Arc::new(live),
        probes: Vec::new(),
    };
    let settings = HttpSettings::default();
    let app = convo_api::app(state, &settings);
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.expect("bind");
    let address = acceptor.local_addr()[0].as_socket_addr().copied().expect("a TCP address");
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    Gate {
        started: started_rx,
        finished: finished_rx,
        messages,
        settings,
        address,
        outsider_room,
        subscribed,
        session_ends,
    }
}

/// What the server sent.
#[derive(Debug, PartialEq)]
enum Received {
    Text(Value),
    Close(u16),
}

/// A bare WebSocket client: enough of RFC 6455 for text frames and the close.
struct Client {
    tcp: TcpStream,
}

impl Client {
    /// Upgrades with the known token and reads the `ready` frame.
    async fn connect(address: SocketAddr) -> Client {
        let mut tcp = TcpStream::connect(address).await.expect("connect");
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Authorization: Bearer {TOKEN}\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.expect("write");
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(tcp.read_u8().await.expect("response"));
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
        let mut client = Client { tcp };
        assert_eq!(client.recv().await["type"], "ready");
        client
    }

    /// Sends a text frame.
    async fn send(&mut self, frame: Value) {
        self.send_frame(0x81, frame.to_string().as_bytes()).await;
    }

    /// Sends a text message in fragments: a text frame without FIN, then continuations.
    async fn send_fragmented(&mut self, text: &str, pieces: usize) {
        let chunks: Vec<&[u8]> = text.as_bytes().chunks(text.len().div_ceil(pieces)).collect();
        for (n, chunk) in chunks.iter().enumerate() {
            let opcode = if n == 0 { 0x01 } else { 0x00 };
            let fin = if n + 1 == chunks.len() { 0x80 } else { 0x00 };
            self.send_frame(fin | opcode, chunk).await;
        }
    }

    /// Sends one frame whose first byte is `head` (masked, with an all-zero key, so the payload
    /// goes as it is).
    async fn send_frame(&mut self, head: u8, payload: &[u8]) {
        let mut bytes = vec![head];
        match u16::try_from(payload.len()) {
            Ok(len) if len < 126 => bytes.push(0x80 | len as u8),
            Ok(len) => {
                bytes.push(0x80 | 126);
                bytes.extend(len.to_be_bytes());
            }
            Err(_) => panic!("frame too long for this client"),
        }
        bytes.extend([0, 0, 0, 0]);
        bytes.extend(payload);
        // The server may close while this is written: what it answered is read next.
        let _ = self.tcp.write_all(&bytes).await;
    }

    /// The next text frame or close, skipping pings.
    async fn next(&mut self) -> Received {
        loop {
            let mut head = [0u8; 2];
            self.tcp.read_exact(&mut head).await.expect("a frame");
            let len = match head[1] & 0x7f {
                126 => u64::from(self.tcp.read_u16().await.expect("length")),
                127 => self.tcp.read_u64().await.expect("length"),
                len => u64::from(len),
            };
            let mut payload = vec![0; usize::try_from(len).expect("length")];
            self.tcp.read_exact(&mut payload).await.expect("payload");
            match head[0] & 0x0f {
                0x1 => return Received::Text(serde_json::from_slice(&payload).expect("JSON frame")),
                0x8 => return Received::Close(u16::from_be_bytes([payload[0], payload[1]])),
                0x9 | 0xa => {}
                other => panic!("unexpected opcode {other}"),
            }
        }
    }

    /// The next text frame, within [`WAIT`].
    async fn recv(&mut self) -> Value {
        match tokio::time::timeout(WAIT, self.next()).await.expect("a frame in time") {
            Received::Text(frame) => frame,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Fails if a frame arrives within [`QUIET`].
    async fn expect_quiet(&mut self) {
        if let Ok(received) = tokio::time::timeout(QUIET, self.next()).await {
            panic!("expected nothing yet, got {received:?}");
        }
    }
}

fn send(room: RoomId, content: &str, reference: &str) -> Value {
    json!({"type": "send", "roomId": room.to_string(), "content": content, "ref": reference})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_and_join_are_answered_while_a_send_waits_in_the_service() {
    let mut gate = serve().await;
    let mut client = Client::connect(gate.address).await;
    let (room, other) = (RoomId::generate(), RoomId::generate());

    client.send(send(room, "slow", "s")).await;
    let slow = gate.next_started().await;
    assert_eq!(slow.content, "slow");
    // The send is held up in the service: the connection still answers.
    client.send(json!({"type": "ping", "ref": "p"})).await;
    assert_eq!(client.recv().await, json!({"type": "pong", "ref": "p"}));
    client.send(json!({"type": "join", "roomId": other.to_string(), "ref": "j"})).await;
    assert_eq!(
        client.recv().await,
        json!({"type": "joined", "ref": "j", "roomId": other.to_string(), "lastSeq": 0})
    );

    let _ = slow.finish.send(());
    let ack = client.recv().await;
    assert_eq!((ack["type"].as_str(), ack["ref"].as_str()), (Some("ack"), Some("s")));
    assert_eq!(ack["message"]["seq"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_by_an_outsider_is_refused_before_the_instance_follows_the_room() {
    let gate = serve().await;
    let mut client = Client::connect(gate.address).await;

    let room = gate.outsider_room;
    client.send(json!({"type": "join", "roomId": room.to_string(), "ref": "j"})).await;
    let refused = client.recv().await;
    assert_eq!((refused["type"].as_str(), refused["ref"].as_str()), (Some("error"), Some("j")));
    assert_eq!(refused["code"], "NOT_A_MEMBER");
    assert!(!gate.subscribed.lock().expect("topics").contains(&Topic::Room(room)), "never subscribed");

    let member_of = RoomId::generate();
    client.send(json!({"type": "join", "roomId": member_of.to_string(), "ref": "k"})).await;
    assert_eq!(client.recv().await["type"], "joined");
    assert!(gate.subscribed.lock().expect("topics").contains(&Topic::Room(member_of)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_to_a_room_reach_the_service_one_after_another_and_acks_keep_frame_order() {
    let mut gate = serve().await;
    let mut client = Client::connect(gate.address).await;
    let (a, b) = (RoomId::generate(), RoomId::generate());

    for (room, content) in [(a, "a1"), (b, "b1"), (a, "a2"), (a, "a3")] {
        client.send(send(room, content, content)).await;
    }
    // Once the pong is back, every send has been read; only the first of each room runs.
    client.send(json!({"type": "ping", "ref": "p"})).await;
    assert_eq!(client.recv().await, json!({"type": "pong", "ref": "p"}));
    let mut first = HashMap::new();
    for _ in 0..2 {
        let started = gate.next_started().await;
        first.insert(started.content.clone(), started);
    }
    let (a1, b1) = (first.remove("a1").expect("a1 started"), first.remove("b1").expect("b1 started"));
    assert_eq!((a1.room, b1.room), (a, b));

    // b1 finishes first, yet its ack waits for a1's.
    let _ = b1.finish.send(());
    gate.wait_finished("b1").await;
    client.expect_quiet().await;
    let _ = a1.finish.send(());
    for (expected, seq) in [("a1", 1), ("b1", 1)] {
        let ack = client.recv().await;
        assert_eq!(
            (ack["ref"].as_str(), ack["message"]["seq"].as_i64()),
            (Some(expected), Some(seq)),
            "{ack}"
        );
    }
    // a2 starts only once a1 has finished, a3 once a2 has.
    for (expected, seq) in [("a2", 2), ("a3", 3)] {
        let started = gate.next_started().await;
        assert_eq!(started.content, expected);
        let _ = started.finish.send(());
        let ack = client.recv().await;
        assert_eq!(
            (ack["ref"].as_str(), ack["message"]["seq"].as_i64()),
            (Some(expected), Some(seq)),
            "{ack}"
        );
    }
    assert_eq!(gate.most_running(a), 1, "one send of the room at a time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pipeline_reads_no_further_frame_until_a_reply_goes_out() {
    let mut gate = serve().await;
    let mut client = Client::connect(gate.address).await;

    // One send per room, so that none waits for another: all of them reach the service.
    for n in 0..MAX_IN_FLIGHT {
        client.send(send(RoomId::generate(), &format!("m{n}"), &format!("s{n}"))).await;
    }
    client.send(send(RoomId::generate(), "one too many", "over")).await;
    client.send(json!({"type": "ping", "ref": "p"})).await;
    let mut running = Vec::new();
    for _ in 0..MAX_IN_FLIGHT {
        running.push(gate.next_started().await);
    }
    // Full: the next send is not started and the ping not answered.
    client.expect_quiet().await;
    assert!(gate.started.try_recv().is_err(), "a send past the limit started");

    // Each reply frees one place, for one more frame: the send behind, then the ping.
    let mut finish = |content: &str| {
        let index = running.iter().position(|started| started.content == content).expect("started");
        let _ = running.swap_remove(index).finish.send(());
    };
    finish("m0");
    assert_eq!(client.recv().await["ref"], "s0");
    let over = gate.next_started().await;
    assert_eq!(over.content, "one too many");
    client.expect_quiet().await;
    finish("m1");
    assert_eq!(client.recv().await["ref"], "s1");
    assert_eq!(client.recv().await, json!({"type": "pong", "ref": "p"}));

    for started in running.into_iter().chain([over]) {
        let _ = started.finish.send(());
    }
    for n in 2..MAX_IN_FLIGHT {
        assert_eq!(client.recv().await["ref"], format!("s{n}"));
    }
    assert_eq!(client.recv().await["ref"], "over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_closes_with_1001_after_the_ack_of_a_send_in_flight() {
    let mut gate = serve().await;
    let mut client = Client::connect(gate.address).await;

    client.send(send(RoomId::generate(), "last words", "s")).await;
    let started = gate.next_started().await;
    gate.settings.shutdown.trigger();
    // The connection waits for the send in flight before it closes.
    client.expect_quiet().await;
    let _ = started.finish.send(());
    let ack = client.recv().await;
    assert_eq!((ack["type"].as_str(), ack["ref"].as_str()), (Some("ack"), Some("s")));
    let closed = tokio::time::timeout(WAIT, client.next()).await.expect("a close in time");
    assert_eq!(closed, Received::Close(1001));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_found_gone_closes_with_4001_after_the_ack_of_a_send_in_flight() {
    let mut gate = serve().await;
    let mut client = Client::connect(gate.address).await;

    client.send(send(RoomId::generate(), "last words", "s")).await;
    let started = gate.next_started().await;
    gate.end_sessions();
    client.expect_quiet().await;
    let _ = started.finish.send(());
    let ack = client.recv().await;
    assert_eq!((ack["type"].as_str(), ack["ref"].as_str()), (Some("ack"), Some("s")));
    let closed = tokio::time::timeout(WAIT, client.next()).await.expect("a close in time");
    assert_eq!(closed, Received::Close(4001));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closes_with_4001_at_its_tokens_expiry_without_waiting_for_replies() {
    let lifetime = Duration::from_millis(800);
    let mut gate = serve_tokens_lasting(lifetime).await;
    let opened = tokio::time::Instant::now();
    let mut client = Client::connect(gate.address).await;

    client.send(send(RoomId::generate(), "too late", "s")).await;
    let _started = gate.next_started().await;
    let closed = tokio::time::timeout(WAIT, client.next()).await.expect("a close in time");
    assert_eq!(closed, Received::Close(4001), "closed at expiry, the send still unanswered");
    assert!(opened.elapsed() >= lifetime, "closed after {:?}, before the token expired", opened.elapsed());
}

/// A ping frame of exactly `len` bytes of JSON text.
fn padded_ping(len: usize) -> Value {
    let bare = json!({"type": "ping", "ref": "p", "pad": ""}).to_string().len();
    let frame = json!({"type": "ping", "ref": "p", "pad": "x".repeat(len - bare)});
    assert_eq!(frame.to_string().len(), len);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_16_kib_closes_with_1009_and_one_at_the_limit_is_read() {
    let gate = serve().await;
    let mut client = Client::connect(gate.address).await;
    client.send(padded_ping(16 * 1024)).await;
    assert_eq!(client.recv().await, json!({"type": "pong", "ref": "p"}));

    client.send(padded_ping(16 * 1024 + 1)).await;
    let closed = tokio::time::timeout(WAIT, client.next()).await.expect("a close in time");
    assert_eq!(closed, Received::Close(1009));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_16_kib_in_small_fragments_closes_with_1009() {
    let gate = serve().await;
    let mut client = Client::connect(gate.address).await;
    client.send_fragmented(&padded_ping(12 * 1024).to_string(), 3).await;
    assert_eq!(client.recv().await, json!({"type": "pong", "ref": "p"}), "fragments are joined");

    // Each fragment is 6 KiB, the message 18 KiB.
    client.send_fragmented(&padded_ping(18 * 1024).to_string(), 3).await;
    let closed = tokio::time::timeout(WAIT, client.next()).await.expect("a close in time");
    assert_eq!(closed, Received::Close(1009));
}

/// Sends a raw HTTP request for `/ws` with these extra header lines; returns the response head
/// and body.
async fn raw_get(address: SocketAddr, headers: &str) -> (String, Value) {
    let mut tcp = TcpStream::connect(address).await.expect("connect");
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {TOKEN}\r\n{headers}\
         Connection: close\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    tokio::time::timeout(WAIT, tcp.read_to_string(&mut response)).await.expect("in time").expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head");
    (head.to_ascii_lowercase(), serde_json::from_str(body).expect("a JSON body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_is_not_a_websocket_upgrade_is_refused_with_a_problem() {
    let gate = serve().await;
    let (head, problem) = raw_get(gate.address, "").await;
    assert!(head.starts_with("http/1.1 400"), "{head}");
    assert!(head.contains("content-type: application/problem+json"), "{head}");
    assert_eq!(
        (problem["status"].as_u64(), problem["code"].as_str()),
        (Some(400), Some("VALIDATION_FAILED"))
    );
    assert!(problem["detail"].as_str().expect("detail").contains("`Upgrade`"), "{problem}");

    // A version other than 13 is told the one spoken.
    let (head, problem) = raw_get(
        gate.address,
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n",
    )
    .await;
    assert!(head.starts_with("http/1.1 400"), "{head}");
    assert!(head.contains("sec-websocket-version: 13"), "{head}");
    assert!(problem["detail"].as_str().expect("detail").contains("`Sec-WebSocket-Version`"), "{problem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upgrade_answers_with_the_accept_key_of_the_client_key() {
    let gate = serve().await;
    let mut tcp = TcpStream::connect(gate.address).await.expect("connect");
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {TOKEN}\r\n\r\n",
        gate.address
    );
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.expect("response"));
    }
    let head = String::from_utf8(head).expect("text").to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    // The worked example of RFC 6455, section 1.3.
    assert!(head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="), "{head}");
    let mut client = Client { tcp };
    assert_eq!(client.recv().await["type"], "ready");
}
