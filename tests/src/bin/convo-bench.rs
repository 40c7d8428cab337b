//! `make bench`: throughput and latency of the REST hot paths, measured end to end over HTTP
//! against a real server started in this process (the load generator shares the machine, as it
//! would in a single-host measurement).
//!
//! usage: convo-bench [sqlite|postgres] [connections] [seconds]

use std::time::{Duration, Instant};

use convo_tests::{Backend, TestApp, TestUser, spawn_app_with};
use serde_json::json;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let backend = match args.next().as_deref() {
        None | Some("sqlite") => Backend::Sqlite,
        Some("postgres") => Backend::Postgres,
        Some(other) => return eprintln!("convo-bench: unknown backend `{other}` (sqlite or postgres)"),
    };
    let connections: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(64);
    let seconds: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(10);

    let limits = [("RATE_LIMIT_POINTS", "1000000")];
    let Some(app) = spawn_app_with(backend, &limits).await else {
        return eprintln!("convo-bench: {backend:?} is not reachable");
    };
    let owner = app.register("bench_owner").await;
    let room = app.create_room(&owner, "bench").await;
    let mut users = Vec::with_capacity(connections);
    for n in 0..connections {
        let user = app.register(&format!("bench_{n}")).await;
        app.join(&user, &room).await;
        users.push(user);
    }
    println!("{backend:?}, {connections} connections, {seconds} s per phase");

    let sends = run_phase(&app, &users, seconds, |app, user, n| {
        let body = json!({"roomId": room, "content": format!("message {n} from {}", user.username)});
        app.post("/chat/message", &user.token, body).send()
    })
    .await;
    report("message sends", &sends, seconds);

    let path = format!("/chat/messages?roomId={room}&limit=50");
    let reads = run_phase(&app, &users, seconds, |app, user, _| app.get(&path, &user.token).send()).await;
    report("history reads (latest 50)", &reads, seconds);
    app.stop().await;
}

/// Every user sends requests back to back for `seconds`; returns each request's latency, or
/// `None` for a request that failed.
async fn run_phase<'a, F, Fut>(
    app: &'a TestApp,
    users: &'a [TestUser],
    seconds: u64,
    request: F,
) -> Vec<Option<Duration>>
where
    F: Fn(&'a TestApp, &'a TestUser, u64) -> Fut + Copy,
    Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>>,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let workers = users.iter().map(|user| async move {
        let mut samples = Vec::new();
        let mut n = 0;
        while Instant::now() < deadline {
            let started = Instant::now();
            let ok = match request(app, user, n).await {
                Ok(response) => response.status().is_success() && response.bytes().await.is_ok(),
                Err(_) => false,
            };
            samples.push(ok.then(|| started.elapsed()));
            n += 1;
        }
        samples
    });
    futures_util::future::join_all(workers).await.into_iter().flatten().collect()
}

fn report(phase: &str, samples: &[Option<Duration>], seconds: u64) {
    let mut latencies: Vec<Duration> = samples.iter().flatten().copied().collect();
    latencies.sort_unstable();
    let failed = samples.len() - latencies.len();
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len().max(1)) - 1;
        latencies.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{phase:>28}: {:>8.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  ({} ok, {failed} failed)",
        latencies.len() as f64 / seconds as f64,
        percentile(0.50),
        percentile(0.99),
        percentile(1.0),
        latencies.len(),
    );
}
