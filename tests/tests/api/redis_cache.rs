//! The shared recent-message cache under concurrency: senders, editors and deleters on two
//! instances, while readers on both compare every latest page they get (from the cache) with
//! what was acknowledged. A read never shows a message whose deletion was acknowledged before
//! it began, never an edit older than one acknowledged before it began, and never misses a
//! message acknowledged before it began (unless its deletion started before the read ended).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use convo_tests::redis::spawn_instances;
use convo_tests::{TestApp, TestUser, expect_status};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[derive(Debug, Clone, Default)]
struct Record {
    seq: i64,
    /// The highest content version whose edit was acknowledged / started.
    version_acked: u32,
    version_started: u32,
    delete_started: bool,
    delete_acked: bool,
}

type Ledger = Arc<Mutex<HashMap<String, Record>>>;

fn snapshot(ledger: &Ledger) -> HashMap<String, Record> {
    ledger.lock().unwrap().clone()
}

/// Content `"<author>-<n> v<version>"`.
fn version_of(content: &str) -> u32 {
    content.rsplit_once(" v").and_then(|(_, v)| v.parse().ok()).expect("versioned content")
}

async fn writer(app: Arc<TestApp>, user: TestUser, room: String, ledger: Ledger, rounds: usize) {
    let mut mine: Vec<String> = Vec::new();
    for n in 0..rounds {
        let response = app.send(&user, &room, &format!("{}-{n} v0", user.username)).await;
        let message = expect_status(response, StatusCode::CREATED).await;
        let id = message["id"].as_str().unwrap().to_owned();
        let seq = message["seq"].as_i64().unwrap();
        ledger.lock().unwrap().insert(id.clone(), Record { seq, ..Record::default() });
        mine.push(id);
        if n % 3 == 1 && mine.len() >= 2 {
            // Edit an earlier message of mine, twice.
            let id = mine[mine.len() - 2].clone();
            for _ in 0..2 {
                let version = {
                    let mut ledger = ledger.lock().unwrap();
                    let record = ledger.get_mut(&id).unwrap();
                    record.version_started += 1;
                    record.version_started
                };
                let response = app
                    .request(Method::PATCH, &format!("/chat/message/{id}"))
                    .bearer_auth(&user.token)
                    .json(&json!({"content": format!("{}-edit v{version}", user.username)}))
                    .send()
                    .await
                    .unwrap();
                expect_status(response, StatusCode::OK).await;
                let mut ledger = ledger.lock().unwrap();
                let record = ledger.get_mut(&id).unwrap();
                record.version_acked = record.version_acked.max(version);
            }
        }
        if n % 4 == 3 {
            let id = mine.remove(0);
            ledger.lock().unwrap().get_mut(&id).unwrap().delete_started = true;
            let response = app
                .request(Method::DELETE, &format!("/chat/message/{id}"))
                .bearer_auth(&user.token)
                .send()
                .await
                .unwrap();
            expect_status(response, StatusCode::NO_CONTENT).await;
            ledger.lock().unwrap().get_mut(&id).unwrap().delete_acked = true;
        }
    }
}

async fn check_one_read(app: &TestApp, reader: &TestUser, room: &str, ledger: &Ledger) {
    const LIMIT: usize = 50;
    let before = snapshot(ledger);
    let page = app.history(reader, &format!("roomId={room}&limit={LIMIT}")).await;
    let after = snapshot(ledger);
    let shown: Vec<&Value> = page["messages"].as_array().unwrap().iter().collect();
    let mut shown_ids = HashMap::new();
    for message in &shown {
        let id = message["id"].as_str().unwrap();
        let content = message["content"].as_str().unwrap();
        shown_ids.insert(id.to_owned(), ());
        if let Some(record) = before.get(id) {
            assert!(!record.delete_acked, "a message deleted before the read was shown: {message}");
            assert!(
                version_of(content) >= record.version_acked,
                "an old edit was shown ({content}, v{} acknowledged): {message}",
                record.version_acked
            );
        }
        if let Some(record) = after.get(id) {
            assert!(version_of(content) <= record.version_started, "content from nowhere: {message}");
        }
    }
    let seqs: Vec<i64> = shown.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "ascending by seq: {seqs:?}");
    let oldest_shown = if shown.len() < LIMIT { 0 } else { seqs[0] };
    for (id, record) in &before {
        let deleting = after.get(id).is_some_and(|r| r.delete_started);
        if record.seq >= oldest_shown && !deleting {
            assert!(
                shown_ids.contains_key(id),
                "acknowledged message seq {} missing from {seqs:?}",
                record.seq
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_senders_editors_and_deleters_never_see_a_wrong_cached_page() {
    let Some(mut cluster) = spawn_instances(2, &[("RATE_LIMIT_POINTS", "100000")]).await else { return };
    let owner = cluster.apps[0].register("owner").await;
    let room = cluster.apps[0].create_room(&owner, "busy").await;
    let mut writers = Vec::new();
    for name in ["ada", "bob", "cyd"] {
        let user = cluster.apps[0].register(name).await;
        cluster.apps[0].join(&user, &room).await;
        writers.push(user);
    }
    let ledger: Ledger = Arc::default();
    let b = cluster.apps.pop().unwrap();
    let a = cluster.apps.pop().unwrap();
    let (a, b) = (Arc::new(a), Arc::new(b));

    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for app in [a.clone(), b.clone(), a.clone(), b.clone()] {
        let (owner, room, ledger, done) = (owner.clone(), room.clone(), ledger.clone(), done.clone());
        readers.push(tokio::spawn(async move {
            let mut reads = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                check_one_read(&app, &owner, &room, &ledger).await;
                reads += 1;
            }
            reads
        }));
    }
    let mut tasks = Vec::new();
    for (n, user) in writers.into_iter().enumerate() {
        let app = if n % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(writer(app, user, room.clone(), ledger.clone(), 40)));
    }
    for task in tasks {
        task.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut reads = 0;
    for reader in readers {
        reads += reader.await.unwrap();
    }
    assert!(reads > 20, "only {reads} reads were checked");
    // Quiet now: both instances agree exactly with the ledger.
    check_one_read(&a, &owner, &room, &ledger).await;
    check_one_read(&b, &owner, &room, &ledger).await;
}
