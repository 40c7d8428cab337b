//! Fault drills: two `convo` instances on one PostgreSQL and one Redis, all real processes
//! owned by the drill, under continuous traffic (a WebSocket sender, a REST sender, and a
//! subscriber on each instance), while one piece is broken and mended. After the fault clears
//! the drill checks that every acknowledged message is in history exactly once, that every
//! subscriber received every message in seq order with no gap (resuming with `sinceSeq` after
//! any close), and that delivery resumed within [`RECOVERY_LIMIT`].

pub mod clients;
pub mod services;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use convo_sql::testing::TestDatabase;
use serde_json::{Value, json};

use clients::{Account, Ack, Closed, Route, Seen};
use services::{DrillPostgres, Instance};

use crate::redis::RedisServer;

/// How soon after a fault clears delivery must be flowing again, for every client.
pub const RECOVERY_LIMIT: Duration = Duration::from_secs(2);
/// Traffic before the fault.
const WARM_UP: Duration = Duration::from_secs(2);
/// Traffic after the fault clears, before the senders stop.
const AFTER: Duration = Duration::from_secs(4);
/// How long the subscribers get to catch up with the last acknowledged message.
const DRAIN: Duration = Duration::from_secs(10);
/// How long Redis stays dead.
const REDIS_DOWN: Duration = Duration::from_secs(3);
/// How long PostgreSQL stays down.
const POSTGRES_DOWN: Duration = Duration::from_secs(1);

/// What a drill breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Redis SIGKILLed, restarted empty after [`REDIS_DOWN`].
    RedisEmpty,
    /// Redis (append-only file, synced on every write) SIGKILLed, restarted with its data.
    RedisWithData,
    /// As [`Fault::RedisWithData`], but the senders stop as Redis returns: what was sent during
    /// the outage must still reach every subscriber, with no later message to reveal the gap.
    RedisThenQuiet,
    /// Instance A SIGKILLed; its clients move to B.
    KillInstance,
    /// Instance A SIGTERMed: its sockets must close with 1001, and its acks be durable.
    TerminateInstance,
    /// PostgreSQL stopped as in a crash and started again after [`POSTGRES_DOWN`].
    RestartPostgres,
}

impl Fault {
    pub const ALL: [Fault; 6] = [
        Fault::RedisEmpty,
        Fault::RedisWithData,
        Fault::RedisThenQuiet,
        Fault::KillInstance,
        Fault::TerminateInstance,
        Fault::RestartPostgres,
    ];

    /// The name a drill is chosen by on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Fault::RedisEmpty => "redis-empty",
            Fault::RedisWithData => "redis-with-data",
            Fault::RedisThenQuiet => "redis-then-quiet",
            Fault::KillInstance => "kill-instance",
            Fault::TerminateInstance => "terminate-instance",
            Fault::RestartPostgres => "restart-postgres",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Fault::RedisEmpty => "Redis SIGKILL, 3 s down, back empty",
            Fault::RedisWithData => "Redis SIGKILL, 3 s down, back with its data (AOF)",
            Fault::RedisThenQuiet => "the same, and no message after Redis returns",
            Fault::KillInstance => "instance A SIGKILL, clients move to B",
            Fault::TerminateInstance => "instance A SIGTERM, clients move to B",
            Fault::RestartPostgres => "PostgreSQL crash stop, 1 s down, restart",
        }
    }
}

/// The result of one drill.
#[derive(Debug)]
pub struct Outcome {
    pub fault: Fault,
    pub acked: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub gaps: usize,
    /// From the fault clearing to delivery flowing again for every client; `None` if it never did.
    pub recovery: Option<Duration>,
    /// Everything that did not hold, in words.
    pub problems: Vec<String>,
}

impl Outcome {
    pub fn held(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Where the drill's data lives.
enum Database {
    Shared(TestDatabase),
    Own(DrillPostgres),
}

impl Database {
    fn url(&self) -> String {
        match self {
            Database::Shared(database) => database.url().to_owned(),
            Database::Own(postgres) => postgres.url(),
        }
    }
}

/// Runs one drill; `Err` when a service it needs cannot be started here.
pub async fn run(fault: Fault) -> Result<Outcome, String> {
    let mut redis = RedisServer::launch(matches!(fault, Fault::RedisWithData | Fault::RedisThenQuiet))?;
    let quiet = fault == Fault::RedisThenQuiet;
    let database = if fault == Fault::RestartPostgres {
        Database::Own(DrillPostgres::start()?)
    } else {
        Database::Shared(TestDatabase::postgres().await.ok_or("PostgreSQL is not reachable")?)
    };
    let env: Vec<(String, String)> = [
        ("DATABASE_URL", database.url()),
        ("REDIS_URL", redis.url()),
        ("REDIS_KEY_PREFIX", "drill:".to_owned()),
        ("JWT_SECRET", crate::JWT_SECRET.to_owned()),
        ("RATE_LIMIT_POINTS", "1000000".to_owned()),
        ("REGISTRATIONS_PER_ADDRESS", "1000000".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut a = Instance::start("A", &env).await;
    let b = Instance::start("B", &env).await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");

    let names = ["wssender", "restsender", "subscriber_a", "subscriber_b"];
    let mut accounts = Vec::new();
    for name in names {
        accounts.push(register(&http, &a.base_url, name).await);
    }
    let room = create_room(&http, &a.base_url, &accounts[0]).await;
    for account in &accounts[1..] {
        let response = http
            .post(format!("{}/chat/room/{room}/join", b.base_url))
            .bearer_auth(&account.token)
            .send()
            .await
            .expect("join");
        assert!(response.status().is_success(), "join: {}", response.status());
    }

    let ab = Route::new(vec![a.base_url.clone(), b.base_url.clone()]);
    let ba = Route::new(vec![b.base_url.clone(), a.base_url.clone()]);
    let stop_senders = Arc::new(AtomicBool::new(false));
    let stop_subscribers = Arc::new(AtomicBool::new(false));
    let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let sender_closes: Arc<Mutex<Vec<Closed>>> = Arc::default();
    let seen_a: Arc<Mutex<Seen>> = Arc::default();
    let seen_b: Arc<Mutex<Seen>> = Arc::default();
    let subscribers = vec![
        tokio::spawn(clients::subscriber(
            accounts[2].clone(),
            ab.clone(),
            room.clone(),
            stop_subscribers.clone(),
            seen_a.clone(),
        )),
        tokio::spawn(clients::subscriber(
            accounts[3].clone(),
            ba.clone(),
            room.clone(),
            stop_subscribers.clone(),
            seen_b.clone(),
        )),
    ];
    // The subscribers join before the first send, so that every message reaches them live.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let senders = vec![
        tokio::spawn(clients::ws_sender(
            accounts[0].clone(),
            ab.clone(),
            room.clone(),
            stop_senders.clone(),
            acks.clone(),
            sender_closes.clone(),
        )),
        tokio::spawn(clients::rest_sender(
            accounts[1].clone(),
            ba,
            room.clone(),
            stop_senders.clone(),
            acks.clone(),
        )),
    ];

    tokio::time::sleep(WARM_UP).await;
    let fault_at = Instant::now();
    match fault {
        Fault::RedisEmpty | Fault::RedisWithData | Fault::RedisThenQuiet => {
            redis.kill();
            tokio::time::sleep(REDIS_DOWN).await;
            redis.restart();
        }
        Fault::KillInstance => a.kill(),
        Fault::TerminateInstance => a.terminate(),
        Fault::RestartPostgres => {
            if let Database::Own(postgres) = &database {
                tokio::task::block_in_place(|| postgres.crash_and_restart(POSTGRES_DOWN));
            }
        }
    }
    let cleared_at = Instant::now();
    if !quiet {
        tokio::time::sleep(AFTER).await;
    }

    stop_senders.store(true, Ordering::SeqCst);
    for sender in senders {
        sender.await.expect("sender");
    }
    let acks = acks.lock().unwrap().clone();
    let final_seq = acks.iter().map(|ack| ack.seq).max().unwrap_or(0);
    // Counted in naps rather than against the clock, so that a machine that stalls for a while
    // (a loaded CI host) does not cut the wait short.
    const NAP: Duration = Duration::from_millis(50);
    for _ in 0..DRAIN.as_millis() / NAP.as_millis() {
        if seen_a.lock().unwrap().last_seq >= final_seq && seen_b.lock().unwrap().last_seq >= final_seq {
            break;
        }
        tokio::time::sleep(NAP).await;
    }
    stop_subscribers.store(true, Ordering::SeqCst);
    for subscriber in subscribers {
        subscriber.await.expect("subscriber");
    }

    let mut problems = Vec::new();
    let survivor = &b.base_url;
    let history = full_history(&http, survivor, &accounts[0], &room).await;
    let mut outcome =
        check(fault, &acks, &history, &[("A", &seen_a), ("B", &seen_b)], cleared_at, quiet, &mut problems);
    latest_page_matches(&http, survivor, &accounts[0], &room, &history, &mut problems).await;

    if fault == Fault::TerminateInstance {
        let mut closes: Vec<Closed> = sender_closes.lock().unwrap().clone();
        closes.extend(seen_a.lock().unwrap().closes.iter().cloned());
        let on_a: Vec<u16> =
            closes.iter().filter(|c| c.instance == a.base_url && c.at >= fault_at).map(|c| c.code).collect();
        if on_a.is_empty() || on_a.iter().any(|&code| code != 1001) {
            problems.push(format!("sockets on the terminated instance closed with {on_a:?}, not all 1001"));
        }
        if !a.exited() {
            problems.push(format!("instance A still runs {:?} after SIGTERM", AFTER));
        }
    }
    let during = |prefix: &str| {
        acks.iter()
            .filter(|ack| ack.content.starts_with(prefix) && ack.at >= fault_at && ack.at < cleared_at)
            .count()
    };
    let mut times: Vec<Instant> = acks.iter().map(|ack| ack.at).collect();
    times.sort_unstable();
    let longest = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
    eprintln!(
        "  acks while the fault lasted ({:.2} s): {} over WebSocket, {} over REST; longest pause between acks {:.2} s",
        (cleared_at - fault_at).as_secs_f64(),
        during("ws-"),
        during("rest-"),
        longest.as_secs_f64()
    );
    let mut closes: Vec<String> = Vec::new();
    for (who, list) in [
        ("sender", sender_closes.lock().unwrap().clone()),
        ("subscriber A", seen_a.lock().unwrap().closes.clone()),
        ("subscriber B", seen_b.lock().unwrap().closes.clone()),
    ] {
        for closed in list {
            let at = if closed.at >= fault_at {
                (closed.at - fault_at).as_secs_f64()
            } else {
                -(fault_at - closed.at).as_secs_f64()
            };
            let on = if closed.instance == a.base_url { "A" } else { "B" };
            closes.push(format!("{who} on {on}: {} at {at:+.2} s", closed.code));
        }
    }
    eprintln!(
        "  sockets closed (time from the fault): {}",
        if closes.is_empty() { "none".to_owned() } else { closes.join("; ") }
    );
    if !problems.is_empty() {
        for instance in [&a, &b] {
            eprintln!("--- instance {} log (last lines) ---\n{}", instance.name, instance.log_tail());
        }
    }
    outcome.problems = problems;
    Ok(outcome)
}

/// Compares what was acknowledged, stored and delivered.
fn check(
    fault: Fault,
    acks: &[Ack],
    history: &[(i64, String)],
    subscribers: &[(&str, &Arc<Mutex<Seen>>)],
    cleared_at: Instant,
    quiet: bool,
    problems: &mut Vec<String>,
) -> Outcome {
    let mut stored: HashMap<&str, Vec<i64>> = HashMap::new();
    for (seq, content) in history {
        stored.entry(content.as_str()).or_default().push(*seq);
    }
    let duplicated_in_history: usize = stored.values().map(|seqs| seqs.len().saturating_sub(1)).sum();
    let mut lost = 0;
    for ack in acks {
        match stored.get(ack.content.as_str()) {
            None => lost += 1,
            Some(seqs) if !seqs.contains(&ack.seq) => {
                problems
                    .push(format!("{} was acked with seq {} but stored as {seqs:?}", ack.content, ack.seq));
            }
            Some(_) => {}
        }
    }
    let mut unique_acks: Vec<&str> = acks.iter().map(|ack| ack.content.as_str()).collect();
    unique_acks.sort_unstable();
    unique_acks.dedup();
    if unique_acks.len() != acks.len() {
        problems.push(format!("{} sends were acked twice", acks.len() - unique_acks.len()));
    }
    for (index, (seq, _)) in history.iter().enumerate() {
        if *seq != index as i64 + 1 {
            problems.push(format!("history skips from seq {index} to {seq}"));
            break;
        }
    }

    let last = history.last().map_or(0, |(seq, _)| *seq);
    let by_seq: HashMap<i64, &str> = history.iter().map(|(seq, content)| (*seq, content.as_str())).collect();
    let mut gaps = 0;
    let mut duplicated = duplicated_in_history;
    // Delivery is flowing again for a client once it sees a message sent after the fault.
    let sent_after: HashMap<i64, Instant> =
        acks.iter().filter(|ack| ack.at >= cleared_at).map(|ack| (ack.seq, ack.at)).collect();
    let first_ack_after = acks.iter().filter(|ack| ack.at >= cleared_at).map(|ack| ack.at).min();
    // With no traffic after the fault, it is flowing again once every subscriber has caught up.
    let mut recovered_at = if quiet { Some(cleared_at) } else { first_ack_after };
    for (name, seen) in subscribers {
        let seen = seen.lock().unwrap();
        gaps += seen.gaps.len();
        duplicated += seen.duplicates;
        if !seen.gaps.is_empty() {
            problems.push(format!("subscriber {name} skipped (expected, got): {:?}", seen.gaps));
        }
        if seen.last_seq < last {
            gaps += 1;
            problems.push(format!("subscriber {name} stopped at seq {} of {last}", seen.last_seq));
        }
        if seen.truncated {
            problems.push(format!("subscriber {name} was told its replay was truncated"));
        }
        for (seq, content, _) in &seen.messages {
            if by_seq.get(seq).is_some_and(|stored| stored != content) {
                problems.push(format!("subscriber {name} got {content} as seq {seq}"));
                break;
            }
        }
        let first = if quiet {
            let caught_up = seen.last_seq >= last;
            seen.messages.iter().map(|(_, _, at)| *at).max().filter(|_| caught_up)
        } else {
            seen.messages
                .iter()
                .filter(|(seq, _, _)| sent_after.contains_key(seq))
                .map(|(_, _, at)| *at)
                .min()
        };
        recovered_at = match (recovered_at, first) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }
    let recovery = recovered_at.map(|at| at.saturating_duration_since(cleared_at));
    match recovery {
        None => problems.push("delivery never resumed after the fault".to_owned()),
        Some(took) if took > RECOVERY_LIMIT => {
            problems.push(format!("delivery resumed {:.2} s after the fault cleared", took.as_secs_f64()));
        }
        Some(_) => {}
    }
    if lost > 0 {
        problems.push(format!("{lost} acknowledged messages are missing from history"));
    }
    if duplicated > 0 {
        problems.push(format!("{duplicated} duplicates ({duplicated_in_history} in history)"));
    }
    Outcome { fault, acked: acks.len(), lost, duplicated, gaps, recovery, problems: Vec::new() }
}

/// Every message of the room, paged forward with `after`.
async fn full_history(
    http: &reqwest::Client,
    base: &str,
    account: &Account,
    room: &str,
) -> Vec<(i64, String)> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page =
            get_json(http, &format!("{base}/chat/messages?roomId={room}&after={after}&limit=100"), account)
                .await;
        let messages = page["messages"].as_array().cloned().unwrap_or_default();
        for message in &messages {
            all.push((
                message["seq"].as_i64().expect("seq"),
                message["content"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        match all.last() {
            Some((seq, _)) if messages.len() == 100 => after = *seq,
            _ => return all,
        }
    }
}

/// The latest page (no cursor, which the cache may serve) must be the end of history.
async fn latest_page_matches(
    http: &reqwest::Client,
    base: &str,
    account: &Account,
    room: &str,
    history: &[(i64, String)],
    problems: &mut Vec<String>,
) {
    let page = get_json(http, &format!("{base}/chat/messages?roomId={room}&limit=50"), account).await;
    let latest: Vec<i64> =
        page["messages"].as_array().into_iter().flatten().filter_map(|m| m["seq"].as_i64()).collect();
    let expected: Vec<i64> = history.iter().rev().take(50).rev().map(|(seq, _)| *seq).collect();
    if latest != expected {
        problems.push(format!(
            "the latest page is stale: ends at seq {:?}, history at {:?}",
            latest.last(),
            expected.last()
        ));
    }
}

/// A GET as `account`, logging in again (the session may be gone with Redis) until it answers.
async fn get_json(http: &reqwest::Client, url: &str, account: &Account) -> Value {
    let mut account = account.clone();
    let base = url.split("/chat/").next().unwrap_or_default().to_owned();
    for _ in 0..50 {
        if let Ok(response) = http.get(url).bearer_auth(&account.token).send().await {
            if response.status().is_success() {
                return response.json().await.expect("JSON");
            }
            if response.status() == 401 {
                let _ = login(http, &base, &mut account).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{url} never answered 200");
}

async fn login(http: &reqwest::Client, base: &str, account: &mut Account) -> Option<()> {
    let response = http
        .post(format!("{base}/auth/login"))
        .json(&json!({"email": account.email, "password": account.password}))
        .send()
        .await
        .ok()?;
    let body: Value = response.json().await.ok()?;
    account.token = body["access_token"].as_str()?.to_owned();
    Some(())
}

async fn register(http: &reqwest::Client, base: &str, name: &str) -> Account {
    let email = format!("{name}@example.com");
    let password = crate::PASSWORD.to_owned();
    let response = http
        .post(format!("{base}/auth/register"))
        .json(&json!({"email": email, "username": name, "password": password}))
        .send()
        .await
        .expect("register");
    let body: Value = response.json().await.expect("JSON");
    let token = body["access_token"].as_str().unwrap_or_else(|| panic!("register: {body}")).to_owned();
    Account { email, password, token }
}

async fn create_room(http: &reqwest::Client, base: &str, owner: &Account) -> String {
    let response = http
        .post(format!("{base}/chat/room"))
        .bearer_auth(&owner.token)
        .json(&json!({"name": "drill"}))
        .send()
        .await
        .expect("create room");
    let body: Value = response.json().await.expect("JSON");
    body["id"].as_str().unwrap_or_else(|| panic!("create room: {body}")).to_owned()
}

/// The table printed after a run.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut out = format!(
        "{:<52} {:>6} {:>5} {:>5} {:>5} {:>9}  {}\n",
        "fault", "acked", "lost", "dup", "gaps", "recovery", "result"
    );
    for outcome in outcomes {
        let recovery = outcome.recovery.map_or("never".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()));
        out.push_str(&format!(
            "{:<52} {:>6} {:>5} {:>5} {:>5} {:>9}  {}\n",
            outcome.fault.describe(),
            outcome.acked,
            outcome.lost,
            outcome.duplicated,
            outcome.gaps,
            recovery,
            if outcome.held() { "held" } else { "FAILED" }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two messages acked before the fault and two after it; history holds all four.
    fn traffic(cleared_at: Instant) -> (Vec<Ack>, Vec<(i64, String)>) {
        let before = cleared_at - Duration::from_secs(1);
        let after = cleared_at + Duration::from_millis(100);
        let ack = |seq: i64, at| Ack { content: format!("m{seq}"), seq, at, via: "A".into() };
        let acks = vec![ack(1, before), ack(2, before), ack(3, after), ack(4, after)];
        let history = (1..=4).map(|seq| (seq, format!("m{seq}"))).collect();
        (acks, history)
    }

    fn seeing(seqs: &[i64], at: Instant) -> Arc<Mutex<Seen>> {
        let mut seen = Seen::default();
        for &seq in seqs {
            if seq <= seen.last_seq {
                seen.duplicates += 1;
            } else {
                if seq != seen.last_seq + 1 {
                    seen.gaps.push((seen.last_seq + 1, seq));
                }
                seen.last_seq = seq;
            }
            seen.messages.push((seq, format!("m{seq}"), at));
        }
        Arc::new(Mutex::new(seen))
    }

    fn checked(
        acks: &[Ack],
        history: &[(i64, String)],
        seen: &Arc<Mutex<Seen>>,
        cleared_at: Instant,
    ) -> (Outcome, Vec<String>) {
        let mut problems = Vec::new();
        let outcome =
            check(Fault::KillInstance, acks, history, &[("A", seen)], cleared_at, false, &mut problems);
        (outcome, problems)
    }

    #[test]
    fn a_clean_run_holds_and_measures_its_recovery() {
        let cleared_at = Instant::now();
        let (acks, history) = traffic(cleared_at);
        let seen = seeing(&[1, 2, 3, 4], cleared_at + Duration::from_millis(300));
        let (outcome, problems) = checked(&acks, &history, &seen, cleared_at);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!((outcome.acked, outcome.lost, outcome.duplicated, outcome.gaps), (4, 0, 0, 0));
        assert_eq!(outcome.recovery, Some(Duration::from_millis(300)));
    }

    #[test]
    fn an_acked_message_missing_from_history_is_lost() {
        let cleared_at = Instant::now();
        let (acks, mut history) = traffic(cleared_at);
        history.remove(1);
        let seen = seeing(&[1, 2, 3, 4], cleared_at);
        let (outcome, problems) = checked(&acks, &history, &seen, cleared_at);
        assert_eq!(outcome.lost, 1);
        assert!(problems.iter().any(|p| p.contains("missing from history")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("history skips")), "{problems:?}");
    }

    #[test]
    fn a_message_stored_twice_or_delivered_twice_is_a_duplicate() {
        let cleared_at = Instant::now();
        let (acks, mut history) = traffic(cleared_at);
        history.push((5, "m4".into()));
        let seen = seeing(&[1, 2, 3, 3, 4, 5], cleared_at);
        let (outcome, problems) = checked(&acks, &history, &seen, cleared_at);
        assert_eq!(outcome.duplicated, 2);
        assert!(!problems.is_empty());
    }

    #[test]
    fn a_skipped_seq_or_a_missing_tail_is_a_gap() {
        let cleared_at = Instant::now();
        let (acks, history) = traffic(cleared_at);
        let (outcome, problems) = checked(&acks, &history, &seeing(&[1, 3, 4], cleared_at), cleared_at);
        assert_eq!(outcome.gaps, 1, "{problems:?}");
        let (outcome, problems) = checked(&acks, &history, &seeing(&[1, 2, 3], cleared_at), cleared_at);
        assert_eq!(outcome.gaps, 1);
        assert!(problems.iter().any(|p| p.contains("stopped at seq 3 of 4")), "{problems:?}");
    }

    #[test]
    fn delivery_that_resumes_late_or_never_fails() {
        let cleared_at = Instant::now();
        let (acks, history) = traffic(cleared_at);
        let late = seeing(&[1, 2, 3, 4], cleared_at + RECOVERY_LIMIT + Duration::from_millis(1));
        let (outcome, problems) = checked(&acks, &history, &late, cleared_at);
        assert!(outcome.recovery > Some(RECOVERY_LIMIT));
        assert!(problems.iter().any(|p| p.contains("resumed")), "{problems:?}");
        let (outcome, problems) = checked(&acks, &history, &seeing(&[1, 2], cleared_at), cleared_at);
        assert_eq!(outcome.recovery, None);
        assert!(problems.iter().any(|p| p.contains("never resumed")), "{problems:?}");
    }
}
