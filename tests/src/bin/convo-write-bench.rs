//! `make bench`: the write path (storing a message and broadcasting it), measured end to end
//! against a `convo` server running as a child process, so that the server's CPU time can be
//! told apart from this load generator's on a shared machine.
//!
//! usage: convo-write-bench BACKEND [SECONDS] [SUBSCRIBERS] [PACE]
//!   BACKEND       `sqlite` (a fresh file, in-process adapters) or `postgres-redis` (a fresh
//!                 PostgreSQL database and the local Redis under a fresh key prefix: the
//!                 production setup); both are removed again at the end
//!   SECONDS       how long each scenario sends (default 10)
//!   SUBSCRIBERS   sockets subscribed to the WebSocket scenario's room (default 200)
//!   PACE          the WebSocket sender's pace: `window:N` keeps at most N sends unacknowledged
//!                 (default `window:256`); `rate:N` sends N frames per second whatever the acks
//!
//! Scenarios, one after the other on the same server:
//! - `REST send, 64 conns, 1 room`: 64 users, each on its own connection, POST /chat/message
//!   back to back into one room they all belong to. Latency is per request.
//! - `REST send, 64 conns, 64 rooms`: the same, each user in a room of its own.
//! - `WS send, pipelined ...`: one socket writes `send` frames without waiting for their acks
//!   (within PACE) into a room whose SUBSCRIBERS other users each watch on a socket of their
//!   own. Latency is from writing a frame to reading its `ack` (matched by `ref`); msgs/s counts
//!   acks. Every subscriber must receive every acknowledged message: `lost` counts the ones that
//!   did not arrive within five quiet seconds, summed over subscribers (a frame out of seq order
//!   counts as lost too).
//!
//! CPU: the server's user + system time comes from /proc/<pid>/stat and the generator's from
//! /proc/self/stat, each read before and after a scenario (10 ms resolution). The server figure
//! is per stored message; it leaves out PostgreSQL and Redis, which are processes of their own.
//! The generator's figure says how much of the two shared cores the measurement itself took.
//!
//! Output: a Markdown table, one row per scenario, ready to paste into README.md.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use convo_tests::bench::{RawFrames, Socket, back_to_back, join, open_socket, percentile_ms, register_all};
use convo_tests::process::{ServerProcess, Stack, own_cpu_time};
use convo_tests::{TestApp, TestUser};
use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};
use memchr::memmem;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Connections of the REST scenarios.
const CONNECTIONS: usize = 64;
/// How long the WebSocket sender waits for its last acks, and a subscriber for its last
/// messages, once sending has stopped and nothing more arrives.
const GRACE: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(stack) = args.first().and_then(|name| Stack::parse(name)) else {
        return eprintln!("usage: convo-write-bench sqlite|postgres-redis [seconds] [subscribers] [pace]");
    };
    let number = |index: usize, default: u64| args.get(index).and_then(|n| n.parse().ok()).unwrap_or(default);
    let seconds = Duration::from_secs(number(1, 10));
    let subscribers = number(2, 200) as usize;
    let Some(pace) = Pace::parse(args.get(3).map_or("window:256", String::as_str)) else {
        return eprintln!("convo-write-bench: pace is `window:N` or `rate:N`");
    };

    let limits = [("RATE_LIMIT_POINTS", "1000000")];
    let Some(server) = ServerProcess::start(stack, &limits).await else {
        return eprintln!("convo-write-bench: {} is not reachable", stack.label());
    };
    let app = &server.app;
    println!(
        "\nconvo-write-bench: {}, {} s per scenario; server CPU is the convo process's alone (pid {}), \
         without PostgreSQL or Redis\n",
        stack.label(),
        seconds.as_secs(),
        server.pid()
    );
    println!("{}", Row::HEADER);

    let users = register_all(app, "rest", CONNECTIONS).await;
    let room = app.create_room(&users[0], "bench_one_room").await;
    join_all(users[1..].iter().map(|user| app.join(user, &room))).await;
    let rooms = vec![room; CONNECTIONS];
    let row = rest_sends(&server, &users, &rooms, seconds).await;
    row.print(&format!("REST send, {CONNECTIONS} conns, 1 room"), stack);

    let rooms = join_all(
        users
            .iter()
            .map(|user| async move { app.create_room(user, &format!("bench_{}", user.username)).await }),
    )
    .await;
    let row = rest_sends(&server, &users, &rooms, seconds).await;
    row.print(&format!("REST send, {CONNECTIONS} conns, {CONNECTIONS} rooms"), stack);

    let row = pipelined_sends(&server, subscribers, pace, seconds).await;
    row.print(&format!("WS send, 1 pipelined sender ({pace}), {subscribers} subscribers"), stack);
}

/// One scenario's figures.
struct Row {
    /// Messages stored (REST: 201 answers; WebSocket: acks).
    stored: usize,
    /// From the first send to the last answer.
    span: Duration,
    /// One per stored message.
    latencies: Vec<Duration>,
    server_cpu: Duration,
    generator_cpu: Duration,
    failed: usize,
    /// WebSocket only: deliveries per second, and messages a subscriber missed.
    deliveries: Option<(f64, usize)>,
}

impl Row {
    const HEADER: &str = "| scenario | backend | msgs/s | p50 ms | p99 ms | server CPU ms/msg | generator CPU s \
                          | deliveries/s | failed / lost |\n|---|---|---:|---:|---:|---:|---:|---:|---:|";

    fn print(mut self, scenario: &str, stack: Stack) {
        self.latencies.sort_unstable();
        let per_message = self.server_cpu.as_secs_f64() * 1000.0 / self.stored.max(1) as f64;
        let (deliveries, lost) = match self.deliveries {
            Some((per_second, lost)) => (format!("{per_second:.0}"), lost.to_string()),
            None => ("-".to_owned(), "-".to_owned()),
        };
        println!(
            "| {scenario} | {} | {:.0} | {:.1} | {:.1} | {per_message:.3} | {:.1} | {deliveries} | {} / {lost} |",
            stack.label(),
            self.stored as f64 / self.span.as_secs_f64().max(1e-9),
            percentile_ms(&self.latencies, 0.50),
            percentile_ms(&self.latencies, 0.99),
            self.generator_cpu.as_secs_f64(),
            self.failed,
        );
    }
}

/// CPU clocks read at the start of a scenario.
struct CpuMark {
    server: Duration,
    own: Duration,
}

impl CpuMark {
    fn now(server: &ServerProcess) -> CpuMark {
        CpuMark { server: server.cpu_time(), own: own_cpu_time() }
    }

    /// (server, generator) CPU time since the mark.
    fn elapsed(&self, server: &ServerProcess) -> (Duration, Duration) {
        (server.cpu_time().saturating_sub(self.server), own_cpu_time().saturating_sub(self.own))
    }
}

/// Each user posts into its room (`rooms[i]` for `users[i]`) back to back for `seconds`.
async fn rest_sends(server: &ServerProcess, users: &[TestUser], rooms: &[String], seconds: Duration) -> Row {
    let app = &server.app;
    let cpu = CpuMark::now(server);
    let started = Instant::now();
    let senders: Vec<(&TestUser, &String)> = users.iter().zip(rooms).collect();
    let (latencies, failed) = back_to_back(&senders, started + seconds, |(user, room), n| {
        let body = json!({"roomId": room, "content": format!("message {n} from {}", user.username)});
        app.post("/chat/message", &user.token, body).send()
    })
    .await;
    let span = started.elapsed();
    let (server_cpu, generator_cpu) = cpu.elapsed(server);
    Row { stored: latencies.len(), span, latencies, server_cpu, generator_cpu, failed, deliveries: None }
}

/// How the WebSocket sender paces itself.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// At most this many sends unacknowledged.
    Window(usize),
    /// This many sends per second.
    Rate(u64),
}

impl Pace {
    fn parse(text: &str) -> Option<Pace> {
        let (kind, n) = text.split_once(':')?;
        match (kind, n.parse::<u64>().ok().filter(|n| *n > 0)?) {
            ("window", n) => Some(Pace::Window(n as usize)),
            ("rate", n) => Some(Pace::Rate(n)),
            _ => None,
        }
    }
}

impl std::fmt::Display for Pace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pace::Window(n) => write!(f, "window {n}"),
            Pace::Rate(n) => write!(f, "{n}/s"),
        }
    }
}

/// One sender socket writes `send` frames into a room watched by `subscribers` sockets.
async fn pipelined_sends(server: &ServerProcess, subscribers: usize, pace: Pace, seconds: Duration) -> Row {
    let app = &server.app;
    let sender = app.register("ws_sender").await;
    let room = app.create_room(&sender, "bench_ws").await;
    let watchers = register_all(app, "ws_sub", subscribers).await;
    join_all(watchers.iter().map(|user| app.join(user, &room))).await;
    // Every socket opens before any joins the room, so that no presence frame reaches a
    // subscriber during the run.
    let sockets = join_all(watchers.iter().map(|user| connect(app, &user.token))).await;
    let sending = connect(app, &sender.token).await;
    let (target, target_seen) = watch::channel(None);
    let mut readers = Vec::with_capacity(subscribers);
    for mut socket in sockets {
        join(&mut socket, &room).await;
        readers.push(tokio::spawn(subscribe(socket, target_seen.clone())));
    }

    let cpu = CpuMark::now(server);
    let started = Instant::now();
    let deadline = started + seconds;
    let (mut sink, mut stream) = sending.split();
    // Window pacing: a permit per send in flight, given back by its ack.
    let window = match pace {
        Pace::Window(n) => Some(Arc::new(Semaphore::new(n))),
        Pace::Rate(_) => None,
    };
    let (total, total_seen) = watch::channel(None);

    // The writer never waits for an ack, only for the window (or its ticker).
    let writer = {
        let window = window.clone();
        tokio::spawn(async move {
            let mut ticker = match pace {
                Pace::Rate(n) => Some(tokio::time::interval(Duration::from_secs_f64(1.0 / n as f64))),
                Pace::Window(_) => None,
            };
            let mut sent_at = Vec::new();
            while Instant::now() < deadline {
                if let Some(ticker) = ticker.as_mut() {
                    ticker.tick().await;
                } else if let Some(window) = &window {
                    match tokio::time::timeout_at(deadline.into(), window.acquire()).await {
                        Ok(Ok(permit)) => permit.forget(),
                        _ => break,
                    }
                }
                let n = sent_at.len();
                let frame = json!({"type": "send", "roomId": room, "content": format!("ws {n}"), "ref": n.to_string()});
                sent_at.push(Instant::now());
                if sink.send(Message::Text(frame.to_string().into())).await.is_err() {
                    sent_at.pop();
                    break;
                }
            }
            (sent_at, sink)
        })
    };

    // The reader matches acks to sends by `ref` and opens the window again for each answer.
    let reader = tokio::spawn(async move {
        let mut acked: Vec<(usize, Instant, i64)> = Vec::new();
        let mut failed = 0;
        let mut total_seen = total_seen;
        loop {
            let expected = *total_seen.borrow_and_update();
            if expected.is_some_and(|total| acked.len() + failed >= total) {
                break;
            }
            let wait = if expected.is_some() { GRACE } else { Duration::from_secs(3600) };
            let next = tokio::select! {
                _ = total_seen.changed() => continue,
                next = tokio::time::timeout(wait, stream.next()) => next,
            };
            let text = match next {
                Ok(Some(Ok(Message::Text(text)))) => text,
                Ok(Some(Ok(_))) => continue,
                _ => break,
            };
            let frame: Value = serde_json::from_str(&text).unwrap_or_default();
            let reference = frame["ref"].as_str().and_then(|r| r.parse::<usize>().ok());
            match (frame["type"].as_str(), reference) {
                (Some("ack"), Some(n)) => {
                    acked.push((n, Instant::now(), frame["message"]["seq"].as_i64().unwrap_or(0)));
                    window.iter().for_each(|window| window.add_permits(1));
                }
                (Some("error"), _) => {
                    failed += 1;
                    window.iter().for_each(|window| window.add_permits(1));
                }
                _ => {}
            }
        }
        (acked, failed)
    });

    let (sent_at, sink) = writer.await.expect("writer");
    let _ = total.send(Some(sent_at.len()));
    let (acked, failed) = reader.await.expect("reader");
    drop(sink);
    let last_ack = acked.iter().map(|(_, at, _)| *at).max().unwrap_or(started);
    let latencies = acked.iter().map(|(n, at, _)| at.duration_since(sent_at[*n])).collect();
    let last_seq = acked.iter().map(|(_, _, seq)| *seq).max().unwrap_or(0);
    let _ = target.send(Some(last_seq));

    let mut delivered = 0;
    let mut lost = 0;
    let mut last_delivery = started;
    for reader in readers {
        let received = reader.await.expect("subscriber");
        delivered += received.count;
        lost += acked.len().saturating_sub(received.in_order);
        last_delivery = last_delivery.max(received.last_at);
    }
    let (server_cpu, generator_cpu) = cpu.elapsed(server);
    let unanswered = sent_at.len() - acked.len() - failed;
    let delivery_span = last_delivery.duration_since(started).as_secs_f64().max(1e-9);
    Row {
        stored: acked.len(),
        span: last_ack.duration_since(started),
        latencies,
        server_cpu,
        generator_cpu,
        failed: failed + unanswered,
        deliveries: Some((delivered as f64 / delivery_span, lost)),
    }
}

/// What one subscriber received.
struct Received {
    /// `message` frames.
    count: usize,
    /// Those that came in seq order (each seq above the one before).
    in_order: usize,
    last_at: Instant,
}

/// Reads `message` frames until the last acknowledged seq (`target`, once known) has arrived,
/// or nothing has for [`GRACE`] after it became known.
async fn subscribe(socket: Socket, mut target: watch::Receiver<Option<i64>>) -> Received {
    let mut received = Received { count: 0, in_order: 0, last_at: Instant::now() };
    let mut last_seq = 0;
    let mut frames = RawFrames::new(socket);
    loop {
        let goal = *target.borrow_and_update();
        if goal.is_some_and(|goal| last_seq >= goal) {
            break;
        }
        let wait = if goal.is_some() { GRACE } else { Duration::from_secs(3600) };
        let mut arrived = 0;
        let read = tokio::select! {
            changed = target.changed() => match changed {
                Ok(()) => continue,
                Err(_) => break,
            },
            read = tokio::time::timeout(wait, frames.read(|text| {
                if let Some(seq) = message_seq(text) {
                    arrived += 1;
                    if seq > last_seq {
                        received.in_order += 1;
                        last_seq = seq;
                    }
                }
            })) => read,
        };
        if arrived > 0 {
            received.count += arrived;
            received.last_at = Instant::now();
        }
        if read != Ok(true) {
            break;
        }
    }
    received
}

/// The seq of a `message` frame, found without parsing the whole frame (200 subscribers read
/// every message; the generator's CPU is better spent sending). The searchers are built once:
/// building one per frame took a fifth of the generator's CPU.
fn message_seq(text: &str) -> Option<i64> {
    static MESSAGE: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new(r#""type":"message""#));
    static SEQ: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(r#""seq":"#));
    MESSAGE.find(text.as_bytes())?;
    let at = SEQ.find(text.as_bytes())? + r#""seq":"#.len();
    let digits = text[at..].bytes().take_while(u8::is_ascii_digit).count();
    text[at..at + digits].parse().ok()
}

async fn connect(app: &TestApp, token: &str) -> Socket {
    let url = format!("{}/ws", app.base_url.replacen("http://", "ws://", 1));
    open_socket(&url, token, WebSocketConfig::default().read_buffer_size(16 * 1024)).await
}
