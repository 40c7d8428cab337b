//! Two Convo servers on one PostgreSQL database and one Redis, as in a multi-instance
//! deployment: sessions, logout, the rate limit, the message cache and events are shared.

use std::time::Duration;

use convo_domain::{SessionId, SessionStore, UserId};
use convo_redis::RedisSessionStore;
use convo_tests::redis::{Instances, spawn_instances};
use convo_tests::ws::WsClient;
use convo_tests::{TestUser, expect_problem, expect_status, once_announced};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

/// Two instances, and a room "general" made on the first by ada, which bob joined there.
async fn two_instances_with_a_room() -> Option<(Instances, TestUser, TestUser, String)> {
    let cluster = spawn_instances(2, &[]).await?;
    let a = &cluster.apps[0];
    let ada = a.register("ada").await;
    let bob = a.register("bob").await;
    let room = a.create_room(&ada, "general").await;
    a.join(&bob, &room).await;
    Some((cluster, ada, bob, room))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_created_on_one_instance_works_on_the_other() {
    let Some(cluster) = spawn_instances(2, &[]).await else { return };
    let [a, b] = [&cluster.apps[0], &cluster.apps[1]];
    let ada = a.register("ada").await;
    let me = expect_status(b.get("/auth/me", &ada.token).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(me["username"], "ada");
    let second = b.login(&ada).await;
    expect_status(a.get("/auth/me", &second).send().await.unwrap(), StatusCode::OK).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logout_on_one_instance_revokes_on_the_other() {
    let Some(cluster) = spawn_instances(2, &[]).await else { return };
    let [a, b] = [&cluster.apps[0], &cluster.apps[1]];
    let ada = a.register("ada").await;
    let phone = b.login(&ada).await;
    let laptop = a.login(&ada).await;
    // Busy tokens: each instance has just found every session alive, so may remember it.
    for _ in 0..3 {
        for token in [&ada.token, &phone, &laptop] {
            for app in [a, b] {
                expect_status(app.get("/auth/me", token).send().await.unwrap(), StatusCode::OK).await;
            }
        }
    }

    let response = a.post("/auth/logout", &ada.token, json!({})).send().await.unwrap();
    expect_status(response, StatusCode::NO_CONTENT).await;
    let refused = once_announced(|| b.get("/auth/me", &ada.token), StatusCode::UNAUTHORIZED).await;
    expect_problem(refused, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    expect_status(b.get("/auth/me", &phone).send().await.unwrap(), StatusCode::OK).await;

    let response = b.post("/auth/logout-all", &phone, json!({})).send().await.unwrap();
    expect_status(response, StatusCode::NO_CONTENT).await;
    for token in [&phone, &laptop] {
        for app in [a, b] {
            let refused = once_announced(|| app.get("/auth/me", token), StatusCode::UNAUTHORIZED).await;
            expect_problem(refused, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_rate_limit_is_exact_across_instances() {
    let Some(cluster) =
        spawn_instances(2, &[("RATE_LIMIT_POINTS", "5"), ("RATE_LIMIT_DURATION", "60")]).await
    else {
        return;
    };
    let [a, b] = [&cluster.apps[0], &cluster.apps[1]];
    let ada = a.register("ada").await;
    let room = a.create_room(&ada, "general").await;

    let attempts = (0..20).map(|n| {
        let (app, ada, room) = (if n % 2 == 0 { a } else { b }, ada.clone(), room.clone());
        async move { app.send(&ada, &room, &format!("attempt {n}")).await }
    });
    let responses = futures_util::future::join_all(attempts).await;
    let mut created = 0;
    for response in responses {
        match response.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                let retry: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=60).contains(&retry), "Retry-After {retry}");
                expect_problem(response, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED").await;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(created, 5, "exactly the budget, whichever instance served each attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn history_stays_right_when_instances_take_turns_writing_and_reading() {
    let Some(cluster) = spawn_instances(2, &[("RATE_LIMIT_POINTS", "1000")]).await else { return };
    let [a, b] = [&cluster.apps[0], &cluster.apps[1]];
    let ada = a.register("ada").await;
    let room = a.create_room(&ada, "general").await;
    let query = format!("roomId={room}&limit=10");
    let mut ids = Vec::new();
    for n in 1..=3 {
        let sent = expect_status(a.send(&ada, &room, &format!("m{n}")).await, StatusCode::CREATED).await;
        ids.push(sent["id"].as_str().unwrap().to_owned());
        // Read on the other instance each time: the shared cache must follow every write.
        let page = b.history(&ada, &query).await;
        assert_eq!(page["messages"].as_array().unwrap().len(), n);
    }
    let response = b
        .request(reqwest::Method::PATCH, &format!("/chat/message/{}", ids[0]))
        .bearer_auth(&ada.token)
        .json(&json!({"content": "edited on b"}))
        .send()
        .await
        .unwrap();
    expect_status(response, StatusCode::OK).await;
    let response = b
        .request(reqwest::Method::DELETE, &format!("/chat/message/{}", ids[1]))
        .bearer_auth(&ada.token)
        .send()
        .await
        .unwrap();
    expect_status(response, StatusCode::NO_CONTENT).await;
    let page = a.history(&ada, &query).await;
    let contents: Vec<&str> =
        page["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(contents, ["edited on b", "m3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_batches_from_two_instances_interleave_without_gap() {
    let Some(cluster) = spawn_instances(2, &[("RATE_LIMIT_POINTS", "1000")]).await else { return };
    let [a, b] = [&cluster.apps[0], &cluster.apps[1]];
    let ada = a.register("ada").await;
    let room = a.create_room(&ada, "general").await;

    // 64 at once through each instance's sequencer: batches from both meet at the row lock.
    let sends = (0..128).map(|n| {
        let (app, ada, room) = (if n % 2 == 0 { a } else { b }, ada.clone(), room.clone());
        async move {
            let sent =
                expect_status(app.send(&ada, &room, &format!("m{n}")).await, StatusCode::CREATED).await;
            sent["seq"].as_i64().unwrap()
        }
    });
    let mut seqs = futures_util::future::join_all(sends).await;
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=128).collect::<Vec<_>>(), "no gap, no duplicate");

    let mut stored = Vec::new();
    for after in [0, 100] {
        let page = b.history(&ada, &format!("roomId={room}&after={after}&limit=100")).await;
        stored.extend(page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()));
    }
    assert_eq!(stored, (1..=128).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_published_on_one_instance_is_received_on_the_other() {
    let Some((cluster, ada, bob, room)) = two_instances_with_a_room().await else { return };
    let [a, b] = [&cluster.apps[0], &cluster.apps[1]];

    let mut on_b = WsClient::connect(b, &bob.token).await;
    on_b.join(&room, None).await;
    let sent = expect_status(a.send(&ada, &room, "hello from a").await, StatusCode::CREATED).await;
    let frame = on_b.recv_kind("message").await;
    assert_eq!(frame["message"]["id"], sent["id"]);
    assert_eq!(frame["message"]["content"], "hello from a");
    on_b.expect_none(&["message"], Duration::from_millis(300)).await;

    // A logout on a closes bob's socket on b.
    let response = a.post("/auth/logout", &bob.token, json!({})).send().await.unwrap();
    expect_status(response, StatusCode::NO_CONTENT).await;
    assert_eq!(on_b.expect_close().await, 4001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_ended_without_announcement_closes_its_socket_on_the_other_instance_within_a_second() {
    let Some(cluster) = spawn_instances(2, &[]).await else { return };
    let [a, b] = [&cluster.apps[0], &cluster.apps[1]];
    let ada = a.register("ada").await;
    let other_session = a.login(&ada).await;
    let mut ended = WsClient::connect(b, &ada.token).await;
    let mut kept = WsClient::connect(b, &other_session).await;
    // b has just found the session alive, so may trust it from memory for a few seconds.
    expect_status(b.get("/auth/me", &ada.token).send().await.unwrap(), StatusCode::OK).await;

    // Ended in the store alone, with no announcement on any channel: as when an instance dies
    // between the two, or the announcement is lost.
    let user = UserId::from(Uuid::parse_str(&ada.id).unwrap());
    let session = SessionId::from(Uuid::parse_str(ended.ready["sessionId"].as_str().unwrap()).unwrap());
    let store = RedisSessionStore::new(cluster.redis.connection.clone());
    assert!(store.revoke(user, session).await.unwrap());
    let revoked = tokio::time::Instant::now();
    // Once a second b checks its sockets' sessions: well within 2 s (not the 30 s of a poll).
    assert_eq!(ended.expect_close_within(Duration::from_secs(2)).await, 4001);
    assert!(revoked.elapsed() < Duration::from_secs(2), "closed after {:?}", revoked.elapsed());
    // b no longer trusts the session for requests either, and the user's other session lives.
    expect_problem(
        b.get("/auth/me", &ada.token).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;
    kept.send(json!({"type": "ping", "ref": "p"})).await;
    assert_eq!(kept.recv_kind("pong").await["ref"], "p");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_who_leaves_on_one_instance_is_refused_on_the_other_once_it_is_announced() {
    let Some((cluster, ada, bob, room)) = two_instances_with_a_room().await else { return };
    let [a, b] = [&cluster.apps[0], &cluster.apps[1]];
    let queries = [format!("roomId={room}"), "chatRoomName=GENERAL".to_owned()];
    // Busy reads: b has just found bob a member and the name a room, so may remember both.
    for _ in 0..3 {
        for query in &queries {
            b.history(&bob, query).await;
        }
    }

    let response = a.post(&format!("/chat/room/{room}/leave"), &bob.token, json!({})).send().await.unwrap();
    expect_status(response, StatusCode::NO_CONTENT).await;
    for query in &queries {
        let path = format!("/chat/messages?{query}");
        let refused = once_announced(|| b.get(&path, &bob.token), StatusCode::FORBIDDEN).await;
        expect_problem(refused, StatusCode::FORBIDDEN, "NOT_A_MEMBER").await;
    }
    let response = b
        .post("/chat/message", &bob.token, json!({"chatRoomName": "general", "content": "still here?"}))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::FORBIDDEN, "NOT_A_MEMBER").await;
    // Who stayed reads on; who joins again reads again at once.
    b.history(&ada, &queries[1]).await;
    b.join(&bob, &room).await;
    for query in &queries {
        a.history(&bob, query).await;
        b.history(&bob, query).await;
    }
}
