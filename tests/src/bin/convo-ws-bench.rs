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
//!   convo-ws-bench ladder [subscribers] [seconds per rate] [sqlite|postgres-redis] [two-instances]
//!       the same room, sent to at rising rates (200 to 17,600 messages/s); a table of every rate,
//!       with the server's CPU per message and the generator's own, and the highest rate that made
//!       every delivery with a p99 within 50 ms
//!   convo-ws-bench idle [connections] [sqlite|postgres-redis]
//!       opens that many connections that do nothing; reports the server's memory per connection

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use convo_tests::bench::{RawFrames, Socket, join, open_socket};
use convo_tests::process::{ServerProcess, Stack, own_cpu_time};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use memchr::memmem;
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
        Some("ladder") => ladder(&server, number(1, 200), number(2, 5)).await,
        Some("idle") => idle(&server, number(1, 10_000)).await,
        Some(other) => eprintln!("convo-ws-bench: unknown mode `{other}` (fanout, ladder or idle)"),
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

    /// The storage, and the instances if there are two.
    fn setup(&self) -> String {
        let split = if self.beside.is_some() { ", split over two instances" } else { "" };
        format!("{}{split}", self.stack.label())
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

/// The rates the ladder climbs, in messages per second.
const LADDER: [u64; 11] = [200, 400, 800, 1600, 3200, 4800, 6400, 8800, 11_000, 13_200, 17_600];
/// A rate passes if nothing is lost and the 99th percentile stays within this.
const LADDER_P99: Duration = Duration::from_millis(50);

/// Climbs [`LADDER`] with one room of `subscribers`; reports each rate and the highest that
/// made every delivery with a p99 within [`LADDER_P99`]. Every rate is tried: a higher rate can
/// pass where a lower one did not, since frames sent close together share a write.
async fn ladder(server: &Server, subscribers: u64, seconds: u64) {
    let audience = Audience::gather(server, subscribers).await;
    println!(
        "ladder: {subscribers} subscribers in one room, {seconds} s per rate, on {}; a rate passes with \
         every delivery made and p99 within {} ms\n",
        server.setup(),
        LADDER_P99.as_millis()
    );
    println!(
        "| messages/s | deliveries/s | lost | p50 ms | p99 ms | server CPU us/message | generator CPU s | passes |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---|");
    let mut highest = None;
    for (rung, rate) in LADDER.into_iter().enumerate() {
        let outcome = audience.rung(server, rung, rate, seconds).await;
        let passes = outcome.lost == 0 && outcome.p99 <= LADDER_P99;
        println!(
            "| {rate} | {:.0} | {} | {:.1} | {:.1} | {:.0} | {:.1} | {} |",
            outcome.deliveries_per_second,
            outcome.lost,
            outcome.p50.as_secs_f64() * 1e3,
            outcome.p99.as_secs_f64() * 1e3,
            outcome.server_cpu.as_secs_f64() * 1e6 / outcome.sent.max(1) as f64,
            outcome.generator_cpu.as_secs_f64(),
            if passes { "yes" } else { "no" },
        );
        if passes {
            highest = Some(rate);
        }
    }
    match highest {
        Some(rate) => {
            println!("\nhighest rate passed: {rate} messages/s = {} deliveries/s\n", rate * subscribers)
        }
        None => println!("\nno rate passed\n"),
    }
}

async fn fanout(server: &Server, subscribers: u64, rate: u64, seconds: u64) {
    let audience = Audience::gather(server, subscribers).await;
    println!(
        "fanout: {subscribers} subscribers in one room, {rate} messages/s for {seconds} s, on {}",
        server.setup()
    );
    let outcome = audience.rung(server, 0, rate, seconds).await;
    println!(
        "  sent {} messages; {} of {} deliveries ({:.0}/s); latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        outcome.sent,
        outcome.sent * subscribers - outcome.lost,
        outcome.sent * subscribers,
        outcome.deliveries_per_second,
        outcome.p50.as_secs_f64() * 1e3,
        outcome.p99.as_secs_f64() * 1e3,
        outcome.max.as_secs_f64() * 1e3,
    );
    println!(
        "  server CPU {:.0} us per message; generator CPU {:.1} s",
        outcome.server_cpu.as_secs_f64() * 1e6 / outcome.sent.max(1) as f64,
        outcome.generator_cpu.as_secs_f64()
    );
    println!(
        "  server RSS: {} MB with the subscribers idle, {} MB under load",
        audience.idle_rss / 1_000_000,
        outcome.busy_rss / 1_000_000
    );
}

/// What one rate of sending came to.
struct Outcome {
    sent: u64,
    lost: u64,
    deliveries_per_second: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    server_cpu: Duration,
    generator_cpu: Duration,
    busy_rss: u64,
}

/// Send-to-receipt latencies in microseconds, as received, one list per rate. They go into a
/// histogram once the rate's run is over: recording into a thousand histograms of hundreds of
/// KB each as frames arrived (one cache miss per frame) took 14% of the generator's CPU.
type Latencies = Arc<Mutex<Vec<Vec<u32>>>>;

/// One room of subscribers, each recording how long every message took to reach it, by the
/// rate it was sent at (the content is `t<micros since start>r<rate's index>`).
struct Audience {
    token: String,
    room: String,
    started: Instant,
    readers: Vec<Latencies>,
    idle_rss: u64,
}

impl Audience {
    async fn gather(server: &Server, subscribers: u64) -> Audience {
        let token = server.register("bench_owner").await;
        let room = server.post("/chat/room", Some(&token), json!({"name": "bench"})).await["id"]
            .as_str()
            .expect("room")
            .to_owned();
        let started = Instant::now();
        let mut readers = Vec::new();
        for n in 0..subscribers {
            let mut socket = server.socket_on(n as usize, &token).await;
            join(&mut socket, &room).await;
            let latencies: Latencies = Arc::default();
            readers.push(latencies.clone());
            tokio::spawn(async move {
                // The subscribers' frame handling is most of the generator's CPU: the marker is
                // searched for with a searcher built once, and the clock is read once per read
                // (the frames of one read arrived together).
                let content = memmem::Finder::new(CONTENT_MARKER);
                let mut frames = RawFrames::new(socket);
                loop {
                    let mut now = None;
                    let open = frames
                        .read(|text| {
                            // Found without a full JSON parse.
                            let Some(at) = content.find(text.as_bytes()) else { return };
                            let (sent, rest) = leading_number(&text[at + CONTENT_MARKER.len()..]);
                            let Some(rest) = rest.strip_prefix('r') else { return };
                            let (rung, _) = leading_number(rest);
                            let now = *now.get_or_insert_with(|| started.elapsed().as_micros() as u64);
                            let mut latencies = latencies.lock().expect("latencies");
                            while latencies.len() <= rung as usize {
                                latencies.push(Vec::new());
                            }
                            let latency = now.saturating_sub(sent).max(1);
                            latencies[rung as usize].push(u32::try_from(latency).unwrap_or(u32::MAX));
                        })
                        .await;
                    if !open {
                        break;
                    }
                }
            });
        }
        let idle_rss = server.rss();
        Audience { token, room, started, readers, idle_rss }
    }

    /// Sends at `rate` for `seconds` from four sockets, waits for the stragglers, and tells what
    /// the subscribers received.
    async fn rung(&self, server: &Server, rung: usize, rate: u64, seconds: u64) -> Outcome {
        let (server_before, generator_before) = (server.process.cpu_time(), own_cpu_time());
        let senders = 4;
        let per_sender = (rate / senders).max(1);
        let begun = Instant::now();
        let mut sending = Vec::new();
        let period = Duration::from_micros(1_000_000 / per_sender);
        let first_tick = tokio::time::Instant::now() + Duration::from_millis(100);
        for n in 0..senders {
            let socket = server.socket(&self.token).await;
            let (room, started) = (self.room.clone(), self.started);
            sending.push(tokio::spawn(async move {
                let (mut sink, mut stream) = socket.split();
                // Acks are read and dropped so that the sender's socket never backs up.
                let drain = tokio::spawn(async move { while stream.next().await.is_some() {} });
                // The senders take turns through each period rather than all sending at once,
                // so the rate arrives evenly, not in bursts of four.
                let mut ticker =
                    tokio::time::interval_at(first_tick + period * n as u32 / senders as u32, period);
                let deadline = Instant::now() + Duration::from_secs(seconds);
                let mut sent = 0u64;
                while Instant::now() < deadline {
                    ticker.tick().await;
                    let content = format!("t{}r{rung}", started.elapsed().as_micros());
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
        let (server_cpu, generator_cpu) =
            (server.process.cpu_time() - server_before, own_cpu_time() - generator_before);
        let span = (begun.elapsed() - Duration::from_secs(2)).as_secs_f64().max(1e-3);
        let mut all = latency_histogram();
        for reader in &self.readers {
            if let Some(latencies) = reader.lock().expect("latencies").get_mut(rung) {
                for latency in std::mem::take(latencies) {
                    all.saturating_record(u64::from(latency));
                }
            }
        }
        let quantile = |q: f64| Duration::from_micros(all.value_at_quantile(q));
        let expected = sent * self.readers.len() as u64;
        Outcome {
            sent,
            lost: expected.saturating_sub(all.len()),
            deliveries_per_second: all.len() as f64 / span,
            p50: quantile(0.5),
            p99: quantile(0.99),
            max: Duration::from_micros(all.max()),
            server_cpu,
            generator_cpu,
            busy_rss,
        }
    }
}

/// Latencies in microseconds up to a minute, to three significant digits.
fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_max(60_000_000, 3).expect("valid bounds")
}

/// The number `text` starts with (0 if none), and what follows it.
/// Where a bench message's content starts: `t<sent at, us>r<rung>`.
const CONTENT_MARKER: &[u8] = b"\"content\":\"t";

/// The decimal number `text` starts with (0 if none), and the rest.
fn leading_number(text: &str) -> (u64, &str) {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let number = text.as_bytes()[..digits].iter().fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0'));
    (number, &text[digits..])
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
