//! `make bench`'s WebSocket gateway under load, against a `convo` server running as its own
//! process (so that its memory can be read from /proc), on a fresh SQLite file or, given
//! `postgres-redis` as a last argument, on a fresh PostgreSQL database and the local Redis.
//!
//! usage:
//!   convo-ws-bench fanout [subscribers] [messages per second] [seconds] [sqlite|postgres-redis] [two-instances]
//!       subscribers in one room (with `two-instances`, on PostgreSQL + Redis: split over two
//!       instances, the senders on the first); four sender sockets send at the given total rate; reports
//!       deliveries per second and end-to-end latency percentiles (send to receipt). Once
//!       joined, subscribers read their frames straight off TCP (`RawFrames`), so that the
//!       load generator's share of the two cores stays small
//!   convo-ws-bench idle [connections] [sqlite|postgres-redis]
//!       opens that many connections that do nothing; reports the server's memory per connection

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use convo_tests::bench::{RawFrames, Socket, join, open_socket};
use convo_tests::process::{ServerProcess, Stack};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |index: usize, default: u64| args.get(index).and_then(|n| n.parse().ok()).unwrap_or(default);
    let stack = args.iter().find_map(|arg| Stack::parse(arg)).unwrap_or(Stack::Sqlite);
    let two = args.iter().any(|arg| arg == "two-instances");
    if two && stack != Stack::PostgresRedis {
        return eprintln!("convo-ws-bench: two instances share PostgreSQL + Redis: add postgres-redis");
    }
    let Some(server) = Server::start(stack, two).await else {
        return eprintln!("convo-ws-bench: {} is not available here", stack.label());
    };
    match args.first().map(String::as_str) {
        Some("fanout") | None => fanout(&server, number(1, 1000), number(2, 100), number(3, 10)).await,
        Some("idle") => idle(&server, number(1, 10_000)).await,
        Some(other) => eprintln!("convo-ws-bench: unknown mode `{other}` (fanout or idle)"),
    }
}

/// A `convo` process on a free port and fresh storage.
struct Server {
    stack: Stack,
    /// A second instance on the same storage, if asked for; dropped before the first.
    beside: Option<ServerProcess>,
    process: ServerProcess,
    /// `host:port` of each instance.
    bases: Vec<String>,
    base: String,
    http: reqwest::Client,
}

impl Server {
    async fn start(stack: Stack, two: bool) -> Option<Server> {
        let limits = [("RATE_LIMIT_POINTS", "1000000")];
        let process = ServerProcess::start(stack, &limits).await?;
        let beside = if two { Some(process.beside().await) } else { None };
        let host = |process: &ServerProcess| process.app.base_url.trim_start_matches("http://").to_owned();
        let bases = std::iter::once(&process).chain(&beside).map(host).collect();
        let base = host(&process);
        Some(Server { stack, beside, http: process.app.client.clone(), process, bases, base })
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Value {
        let mut request = self.http.post(format!("http://{}{path}", self.base)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request").json().await.expect("json")
    }

    async fn register(&self, name: &str) -> String {
        let body = json!({"email": format!("{name}@example.com"), "username": name, "password": "Bench1234"});
        self.post("/auth/register", None, body).await["access_token"].as_str().expect("token").to_owned()
    }

    /// The server's resident memory, in bytes.
    fn rss(&self) -> u64 {
        self.process.rss()
    }

    async fn socket(&self, token: &str) -> Socket {
        self.socket_on(0, token).await
    }

    /// A socket on instance `n` (counted round the instances).
    async fn socket_on(&self, n: usize, token: &str) -> Socket {
        // Small client buffers: thousands of sockets live in this process too.
        let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
        open_socket(&format!("ws://{}/ws", self.bases[n % self.bases.len()]), token, config).await
    }
}

async fn fanout(server: &Server, subscribers: u64, rate: u64, seconds: u64) {
    let token = server.register("bench_owner").await;
    let room = server.post("/chat/room", Some(&token), json!({"name": "bench"})).await["id"]
        .as_str()
        .expect("room")
        .to_owned();
    let started = Instant::now();
    let last_receipt = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for n in 0..subscribers {
        let mut socket = server.socket_on(n as usize, &token).await;
        join(&mut socket, &room).await;
        let last_receipt = last_receipt.clone();
        readers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut frames = RawFrames::new(socket);
            // A reader stops after five quiet seconds: the run is over.
            while let Ok(true) = tokio::time::timeout(
                Duration::from_secs(5),
                frames.read(|text| {
                    // The content is "t<micros since start>"; found without a full JSON parse.
                    let Some(at) = text.find("\"content\":\"t") else { return };
                    let digits = &text[at + 12..];
                    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
                    if let Ok(sent) = digits[..end].parse::<u64>() {
                        let now = started.elapsed().as_micros() as u64;
                        latencies.push(now.saturating_sub(sent));
                        last_receipt.fetch_max(now, Ordering::Relaxed);
                    }
                }),
            )
            .await
            {}
            latencies
        }));
    }
    let idle_rss = server.rss();
    println!(
        "fanout: {subscribers} subscribers in one room, {rate} messages/s for {seconds} s, on {}{}",
        server.stack.label(),
        if server.beside.is_some() { ", split over two instances" } else { "" }
    );

    // Four sender sockets share the rate, each paced by its own ticker.
    let senders = 4;
    let per_sender = (rate / senders).max(1);
    let first_send = started.elapsed().as_micros() as u64;
    let mut sending = Vec::new();
    for _ in 0..senders {
        let socket = server.socket(&token).await;
        let room = room.clone();
        sending.push(tokio::spawn(async move {
            let (mut sink, mut stream) = socket.split();
            // Acks are read and dropped so that the sender's socket never backs up.
            let drain = tokio::spawn(async move { while stream.next().await.is_some() {} });
            let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / per_sender));
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let mut sent = 0u64;
            while Instant::now() < deadline {
                ticker.tick().await;
                let content = format!("t{}", started.elapsed().as_micros());
                let frame = json!({"type": "send", "roomId": room, "content": content});
                if sink.send(Message::Text(frame.to_string().into())).await.is_err() {
                    break;
                }
                sent += 1;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            drain.abort();
            sent
        }));
    }
    let mut sent = 0;
    for sender in sending {
        sent += sender.await.unwrap_or(0);
    }
    let busy_rss = server.rss();
    let mut latencies: Vec<u64> = Vec::new();
    for reader in readers {
        latencies.extend(reader.await.unwrap_or_default());
    }
    latencies.sort_unstable();
    let span = last_receipt.load(Ordering::Relaxed).saturating_sub(first_send).max(1) as f64 / 1e6;
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len().max(1)) - 1;
        latencies.get(index).map_or(0.0, |micros| *micros as f64 / 1000.0)
    };
    println!(
        "  sent {sent} messages; {} of {} deliveries ({:.0}/s); latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        sent * subscribers,
        latencies.len() as f64 / span,
        percentile(0.5),
        percentile(0.99),
        percentile(1.0),
    );
    println!(
        "  server RSS: {} MB with the subscribers idle, {} MB under load",
        idle_rss / 1_000_000,
        busy_rss / 1_000_000
    );
}

async fn idle(server: &Server, connections: u64) {
    let token = server.register("bench_idle").await;
    let warm = server.socket(&token).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss();
    let mut sockets = Vec::with_capacity(connections as usize);
    for _ in 0..connections {
        sockets.push(server.socket(&token).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = server.rss();
    println!(
        "idle: {connections} connections; server RSS {} MB -> {} MB: {:.1} KB per idle connection",
        before / 1_000_000,
        after / 1_000_000,
        (after.saturating_sub(before)) as f64 / connections as f64 / 1024.0
    );
    drop(sockets);
    drop(warm);
}
