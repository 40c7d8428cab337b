//! `make bench`: a storm of logins, and the server's memory through it. Password hashing is the
//! costliest thing a client can ask for (argon2id: 19 MiB and about 25 ms of CPU per login), so
//! this checks that it is bounded while the storm lasts and given back once it is over.
//!
//! usage: convo-login-bench [SECONDS] [CONNECTIONS]
//!   SECONDS       how long the storm lasts (default 20)
//!   CONNECTIONS   clients logging in back to back, each as one of 40 users (default 16)
//!
//! Prints logins per second with the server's CPU per login, and the server's resident memory
//! at start, after the users' registrations, at the storm's peak, 2 s after it and 15 s after it
//! (by then the threads that ran the hashes have retired and their memory is gone with them).

use std::time::{Duration, Instant};

use convo_tests::bench::{back_to_back, percentile_ms, register_all};
use convo_tests::process::{ServerProcess, Stack};
use serde_json::json;

const USERS: usize = 40;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |index: usize, default: u64| args.get(index).and_then(|n| n.parse().ok()).unwrap_or(default);
    let (seconds, connections) = (number(0, 20), number(1, 16) as usize);
    // Registrations are throttled per address, and all of these come from one.
    let limits = [("REGISTRATIONS_PER_ADDRESS", "1000000")];
    let server = ServerProcess::start(Stack::Sqlite, &limits).await.expect("SQLite is always available");
    let at_start = server.rss();
    let users = register_all(&server.app, "storm", USERS).await;
    let clients: Vec<usize> = (0..connections).collect();
    let mb = |bytes: u64| bytes as f64 / 1_000_000.0;

    let before = server.rss();
    let cpu = server.cpu_time();
    let started = Instant::now();
    let peak = std::sync::atomic::AtomicU64::new(before);
    let storm = back_to_back(&clients, started + Duration::from_secs(seconds), |client, n| {
        peak.fetch_max(server.rss(), std::sync::atomic::Ordering::Relaxed);
        let user = &users[(*client * 7 + n) % USERS];
        server
            .app
            .request(reqwest::Method::POST, "/auth/login")
            .json(&json!({"email": user.email, "password": user.password}))
            .send()
    });
    let (mut latencies, failed) = storm.await;
    let elapsed = started.elapsed().as_secs_f64();
    let server_cpu = server.cpu_time().saturating_sub(cpu);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_2s = server.rss();
    tokio::time::sleep(Duration::from_secs(13)).await;
    let after_15s = server.rss();

    latencies.sort_unstable();
    let logins = latencies.len();
    println!("convo-login-bench: {connections} connections logging in for {seconds} s on SQLite");
    println!(
        "  {logins} logins ({:.0}/s, p50 {:.0} ms, p99 {:.0} ms, {failed} failed), {:.1} ms of server CPU each",
        logins as f64 / elapsed,
        percentile_ms(&latencies, 0.5),
        percentile_ms(&latencies, 0.99),
        server_cpu.as_secs_f64() * 1000.0 / logins.max(1) as f64,
    );
    println!(
        "  server RSS: {:.0} MB at start, {:.0} MB after registering {USERS} users, {:.0} MB at the peak seen, {:.0} MB 2 s after, {:.0} MB 15 s after",
        mb(at_start),
        mb(before),
        mb(peak.into_inner().max(after_2s)),
        mb(after_2s),
        mb(after_15s),
    );
}
