//! The failure policy while Redis is unreachable, against a `redis-server` of the test's own
//! that it kills, restarts, freezes and thaws under traffic: token checks and logins fail
//! closed with 503, open WebSockets keep sending (the database is the source of truth), no
//! request hangs, no acknowledged message is lost, and the server recovers by itself.

use std::time::{Duration, Instant};

use convo_domain::{Event, EventBus, SessionId, SubscriptionError, Topic, UserId};
use convo_redis::{RedisConnection, RedisEventBus};
use convo_sql::testing::TestDatabase;
use convo_tests::redis::{RedisServer, spawn_on};
use convo_tests::ws::WsClient;
use convo_tests::{TestApp, TestUser, expect_problem, expect_status};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Nothing may take longer than this while Redis is down (command timeouts are about 1 s).
const PROMPT: Duration = Duration::from_secs(5);

async fn setup() -> Option<(RedisServer, TestApp)> {
    let redis = RedisServer::start()?;
    let database = TestDatabase::postgres().await?;
    let url = redis.url();
    let mut apps = spawn_on(database, 1, &url, "outage:", &[("RATE_LIMIT_POINTS", "1000")]).await;
    Some((redis, apps.remove(0)))
}

/// Sends over the socket and returns the acknowledged message.
async fn ws_send(socket: &mut WsClient, room: &str, content: &str) -> Value {
    let started = Instant::now();
    socket.send(json!({"type": "send", "roomId": room, "content": content, "ref": content})).await;
    let ack = socket.recv_kind("ack").await;
    assert!(started.elapsed() < PROMPT, "a send took {:?}", started.elapsed());
    assert_eq!(ack["ref"], content);
    ack["message"].clone()
}

async fn status_of(app: &TestApp, request: reqwest::RequestBuilder) -> reqwest::Response {
    let started = Instant::now();
    let response = request.send().await.expect("an answer, not a hang");
    assert!(started.elapsed() < PROMPT, "{} took {:?}", app.base_url, started.elapsed());
    response
}

/// Retries a login until Redis is back (or fails after 15 s).
async fn login_when_back(app: &TestApp, user: &TestUser) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let response = app
            .request(reqwest::Method::POST, "/auth/login")
            .json(&json!({"email": user.email, "password": user.password}))
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::OK {
            let body: Value = response.json().await.unwrap();
            return body["access_token"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "no recovery: login still answers {}", response.status());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn contents(page: &Value) -> Vec<String> {
    page["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_crash_fails_closed_keeps_sockets_sending_and_recovers_without_a_restart() {
    let Some((mut redis, app)) = setup().await else { return };
    let ada = app.register("ada").await;
    let room = app.create_room(&ada, "general").await;
    let mut socket = WsClient::connect(&app, &ada.token).await;
    socket.join(&room, None).await;
    let mut sent = vec![ws_send(&mut socket, &room, "before").await["content"].clone()];
    socket.recv_kind("message").await;
    // The latest page is now cached in Redis.
    assert_eq!(contents(&app.history(&ada, &format!("roomId={room}")).await).len(), 1);

    redis.kill();

    let ready = status_of(&app, app.request(reqwest::Method::GET, "/ready")).await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(ready.text().await.unwrap().contains("cache"), "/ready names the cache");
    // The token was just in use, so its session may be remembered; with Redis known to be
    // gone (revocations could go unheard), nothing is trusted from memory.
    let response = status_of(&app, app.get("/auth/me", &ada.token)).await;
    expect_problem(response, StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE").await;
    let login = app
        .request(reqwest::Method::POST, "/auth/login")
        .json(&json!({"email": ada.email, "password": ada.password}));
    expect_problem(status_of(&app, login).await, StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE")
        .await;
    let health = status_of(&app, app.request(reqwest::Method::GET, "/health")).await;
    assert_eq!(health.status(), StatusCode::OK);

    // An open socket keeps sending: stored in the database, acknowledged, and delivered to the
    // sockets of this instance.
    for n in 1..=5 {
        let message = ws_send(&mut socket, &room, &format!("during {n}")).await;
        sent.push(message["content"].clone());
        let echoed = socket.recv_kind("message").await;
        assert_eq!(echoed["message"]["id"], message["id"]);
    }

    redis.restart();

    // The restarted Redis kept nothing (no persistence): sessions are gone, logins work again.
    let token = login_when_back(&app, &ada).await;
    expect_status(app.get("/auth/me", &token).send().await.unwrap(), StatusCode::OK).await;
    let ready = app.request(reqwest::Method::GET, "/ready").send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let reader = TestUser { token, ..ada.clone() };
    let page = app.history(&reader, &format!("roomId={room}")).await;
    let expected: Vec<String> = sent.iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    assert_eq!(contents(&page), expected, "every acknowledged message, in order");
    let response = app.send(&reader, &room, "after").await;
    expect_status(response, StatusCode::CREATED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_sent_while_redis_was_frozen_are_never_missing_from_cached_history() {
    let Some((redis, app)) = setup().await else { return };
    let ada = app.register("ada").await;
    let room = app.create_room(&ada, "general").await;
    let query = format!("roomId={room}");
    let mut socket = WsClient::connect(&app, &ada.token).await;
    let mut expected = Vec::new();
    for n in 1..=3 {
        expected.push(ws_send(&mut socket, &room, &format!("before {n}")).await["content"].clone());
    }
    assert_eq!(contents(&app.history(&ada, &query).await).len(), 3, "cached");

    // Frozen, Redis keeps its data (the cached page of 3) but answers nothing.
    redis.pause();
    for n in 1..=3 {
        expected.push(ws_send(&mut socket, &room, &format!("frozen {n}")).await["content"].clone());
    }
    let response = status_of(&app, app.get("/auth/me", &ada.token)).await;
    expect_problem(response, StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE").await;
    redis.resume();

    // The session survived; the cache, which missed three reports, must not serve its old page.
    let expected: Vec<String> = expected.iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let response = app.get(&format!("/chat/messages?{query}"), &ada.token).send().await.unwrap();
        if response.status() == StatusCode::OK {
            let page: Value = response.json().await.unwrap();
            assert_eq!(contents(&page), expected, "no acknowledged message missing, ever");
            break;
        }
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(Instant::now() < deadline, "no recovery after Redis thawed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..5 {
        assert_eq!(contents(&app.history(&ada, &query).await), expected);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits (up to 15 s) until `done` holds.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_bus_admits_that_events_may_be_missed_while_redis_is_gone_and_after() {
    let Some(mut redis) = RedisServer::start() else { return };
    let settings = convo_redis::testing::settings(&redis.url(), "continuity:");
    let bus = RedisEventBus::new(RedisConnection::connect(settings).await.expect("connects"))
        .await
        .expect("the bus starts");
    let mut sessions = bus.subscribe(Topic::Sessions).await.expect("subscribes");
    let before = bus.continuity().expect("hears every instance while Redis is up");

    redis.kill();
    eventually("the bus sees the loss", || bus.continuity().is_none()).await;
    redis.restart();
    eventually("the bus hears again", || bus.continuity().is_some()).await;
    assert_ne!(bus.continuity(), Some(before), "what was trusted before the loss is trusted no more");

    // Back means subscribed again: the old subscription is told once that it may have missed
    // events (so that it reads them from storage), and announcements reach it.
    let revoked =
        Event::SessionsRevoked { user_id: UserId::generate(), sessions: vec![SessionId::generate()] };
    bus.publish(revoked.clone()).await.expect("publishes");
    let told = tokio::time::timeout(PROMPT, sessions.recv()).await.expect("in time");
    assert_eq!(told, Err(SubscriptionError::Lagged(0)));
    let heard = tokio::time::timeout(PROMPT, sessions.recv()).await.expect("in time");
    assert_eq!(heard, Ok(revoked));
}
