//! `make bench`: the read path (a room's latest history page), measured end to end against a
//! `convo` server running as a child process, so that the server's CPU time can be told apart
//! from this load generator's on a shared machine.
//!
//! usage: convo-read-bench BACKEND [SECONDS] [CONNECTIONS]
//!   BACKEND       `sqlite` (a fresh file, in-process adapters) or `postgres-redis` (a fresh
//!                 PostgreSQL database and the local Redis under a fresh key prefix: the
//!                 production setup); both are removed again at the end
//!   SECONDS       how long each scenario reads (default 10)
//!   CONNECTIONS   readers, each a user of its own on a connection of its own (default 64)
//!
//! Scenarios, one after the other on the same server, in a room of 200 messages that every
//! reader belongs to: `GET /chat/messages?roomId=…&limit=50`, then the same by `chatRoomName`.
//! Latency is per request; a request that is not a 200 with a full body counts as failed.
//!
//! CPU: as in `convo-write-bench`, the server's user + system time from /proc/<pid>/stat and the
//! generator's from /proc/self/stat, before and after each scenario; the server's figure is per
//! request and leaves out PostgreSQL and Redis.

use std::time::{Duration, Instant};

use convo_tests::TestUser;
use convo_tests::bench::{RawGet, percentile_ms, register_all};
use convo_tests::process::{ServerProcess, Stack, own_cpu_time};
use futures_util::future::join_all;

/// Messages in the room read.
const MESSAGES: usize = 200;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(stack) = args.first().and_then(|name| Stack::parse(name)) else {
        return eprintln!("usage: convo-read-bench sqlite|postgres-redis [seconds] [connections]");
    };
    let number = |index: usize, default: u64| args.get(index).and_then(|n| n.parse().ok()).unwrap_or(default);
    let seconds = Duration::from_secs(number(1, 10));
    let connections = number(2, 64).max(1) as usize;

    let limits = [("RATE_LIMIT_POINTS", "1000000")];
    let Some(server) = ServerProcess::start(stack, &limits).await else {
        return eprintln!("convo-read-bench: {} is not reachable", stack.label());
    };
    let app = &server.app;
    println!(
        "\nconvo-read-bench: {}, {connections} connections, {} s per scenario; server CPU is the convo \
         process's alone (pid {}), without PostgreSQL or Redis\n",
        stack.label(),
        seconds.as_secs(),
        server.pid()
    );
    println!(
        "| scenario | backend | reads/s | p50 ms | p99 ms | server CPU ms/read | generator CPU s | failed |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");

    let users = register_all(app, "reader", connections).await;
    let room = app.create_room(&users[0], "bench_reads").await;
    join_all(users[1..].iter().map(|user| app.join(user, &room))).await;
    for n in 0..MESSAGES {
        let response = app.send(&users[n % users.len()], &room, &format!("message {n}")).await;
        assert!(response.status().is_success(), "seeding the room: {}", response.status());
    }

    let by_id = format!("/chat/messages?roomId={room}&limit=50");
    reads(&server, &users, &by_id, seconds).await.print("history, latest 50, by roomId", stack);
    let by_name = "/chat/messages?chatRoomName=bench_reads&limit=50";
    reads(&server, &users, by_name, seconds).await.print("history, latest 50, by chatRoomName", stack);
}

/// One scenario's figures.
struct Row {
    latencies: Vec<Duration>,
    span: Duration,
    server_cpu: Duration,
    generator_cpu: Duration,
    failed: usize,
}

impl Row {
    fn print(mut self, scenario: &str, stack: Stack) {
        self.latencies.sort_unstable();
        let count = self.latencies.len();
        println!(
            "| {scenario} | {} | {:.0} | {:.1} | {:.1} | {:.3} | {:.1} | {} |",
            stack.label(),
            count as f64 / self.span.as_secs_f64(),
            percentile_ms(&self.latencies, 0.5),
            percentile_ms(&self.latencies, 0.99),
            self.server_cpu.as_secs_f64() * 1000.0 / count.max(1) as f64,
            self.generator_cpu.as_secs_f64(),
            self.failed,
        );
    }
}

/// Every user reads `path` back to back for `seconds`, each on a connection of its own read
/// straight off TCP ([`RawGet`]); a failed connection counts one failure and is opened again.
async fn reads(server: &ServerProcess, users: &[TestUser], path: &str, seconds: Duration) -> Row {
    let address = server.app.base_url.trim_start_matches("http://");
    let (server_before, own_before) = (server.cpu_time(), own_cpu_time());
    let started = Instant::now();
    let deadline = started + seconds;
    let readers = users.iter().map(|user| async move {
        let (mut latencies, mut failed) = (Vec::new(), 0);
        let mut connection: Option<RawGet> = None;
        while Instant::now() < deadline {
            let sent = Instant::now();
            let answer = match &mut connection {
                Some(open) => open.get().await,
                None => match RawGet::connect(address, path, &user.token).await {
                    Ok(open) => connection.insert(open).get().await,
                    Err(error) => Err(error),
                },
            };
            match answer {
                Ok(true) => latencies.push(sent.elapsed()),
                Ok(false) => failed += 1,
                Err(_) => {
                    failed += 1;
                    connection = None;
                }
            }
        }
        (latencies, failed)
    });
    let outcomes = join_all(readers).await;
    let failed = outcomes.iter().map(|(_, failed)| failed).sum();
    let latencies = outcomes.into_iter().flat_map(|(latencies, _)| latencies).collect();
    let span = started.elapsed();
    let server_cpu = server.cpu_time().saturating_sub(server_before);
    let generator_cpu = own_cpu_time().saturating_sub(own_before);
    Row { latencies, span, server_cpu, generator_cpu, failed }
}
