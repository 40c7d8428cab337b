//! Sending, reading, editing and deleting messages, end to end.

use std::collections::BTreeSet;

use convo_tests::ws::WsClient;
use convo_tests::{Backend, TestApp, expect_problem, expect_status, spawn_app, spawn_app_with};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn seqs(page: &Value) -> Vec<i64> {
    page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn a_sent_message_is_stored_with_the_next_seq_and_read_back() {
    let app = spawn_app().await;
    let user = app.register("writer").await;
    let room = app.create_room(&user, "general").await;

    let first =
        expect_status(app.send(&user, &room, "  hello <b>world</b>  ").await, StatusCode::CREATED).await;
    assert_eq!(first["seq"], 1);
    assert_eq!(first["roomId"], room.as_str());
    assert_eq!(first["content"], "hello <b>world</b>", "trimmed, never escaped");
    assert_eq!(first["author"], json!({"id": user.id, "username": "writer"}));
    assert!(first["editedAt"].is_null());
    assert!(first["clientMessageId"].is_null());

    // The original service's routes: by room name.
    let response = app
        .post("/chat/message", &user.token, json!({"chatRoomName": "GENERAL", "content": "second"}))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_status(response, StatusCode::CREATED).await["seq"], 2);
    let page = app.history(&user, "chatRoomName=general").await;
    assert_eq!(seqs(&page), [1, 2]);
    assert_eq!(page["hasMore"], false);
    assert_eq!(page["messages"][0], first);
    let by_id = app.history(&user, &format!("roomId={room}")).await;
    assert_eq!(by_id, page);
}

#[tokio::test]
async fn sending_needs_membership_of_an_existing_room_and_valid_content() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let stranger = app.register("stranger").await;
    let room = app.create_room(&owner, "members only").await;

    expect_problem(app.send(&stranger, &room, "hi").await, StatusCode::FORBIDDEN, "NOT_A_MEMBER").await;
    let missing = uuid::Uuid::now_v7().to_string();
    expect_problem(app.send(&owner, &missing, "hi").await, StatusCode::NOT_FOUND, "ROOM_NOT_FOUND").await;
    let response = app
        .post("/chat/message", &owner.token, json!({"chatRoomName": "nowhere", "content": "hi"}))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::NOT_FOUND, "ROOM_NOT_FOUND").await;

    let invalid = [
        (json!({"roomId": room, "content": "   "}), "content"),
        (json!({"roomId": room, "content": "é".repeat(1001)}), "content"),
        (json!({"content": "no room"}), "roomId"),
        (json!({"roomId": room, "chatRoomName": "members only", "content": "both"}), "roomId"),
        (json!({"roomId": "not-a-uuid", "content": "hi"}), "roomId"),
        (json!({"roomId": room, "content": "hi", "clientMessageId": ""}), "clientMessageId"),
        (json!({"roomId": room}), "content"),
    ];
    for (body, field) in invalid {
        let response = app.post("/chat/message", &owner.token, body).send().await.unwrap();
        let problem = expect_problem(response, StatusCode::BAD_REQUEST, "VALIDATION_FAILED").await;
        assert!(problem["detail"].as_str().unwrap().contains(field), "{field}: {problem}");
    }
    // 1000 characters of any script is fine.
    expect_status(app.send(&owner, &room, &"é".repeat(1000)).await, StatusCode::CREATED).await;
}

#[tokio::test]
async fn a_retried_client_message_id_returns_the_original_and_creates_nothing() {
    // One long window, so the count below cannot straddle two.
    let app = spawn_app_with(Backend::Sqlite, &[("RATE_LIMIT_DURATION", "3600")]).await.unwrap();
    let user = app.register("retrier").await;
    let room = app.create_room(&user, "retries").await;
    let body = json!({"roomId": room, "content": "once", "clientMessageId": "c-1"});

    let original = expect_status(
        app.post("/chat/message", &user.token, body.clone()).send().await.unwrap(),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(original["clientMessageId"], "c-1");
    for _ in 0..3 {
        let replay = expect_status(
            app.post("/chat/message", &user.token, body.clone()).send().await.unwrap(),
            StatusCode::OK,
        )
        .await;
        assert_eq!(replay, original);
    }
    let page = app.history(&user, &format!("roomId={room}")).await;
    assert_eq!(seqs(&page), [1]);

    // A retry counts like any send (the original and three retries are 4 of the 5 points),
    // though it stores nothing.
    expect_status(app.send(&user, &room, "one more").await, StatusCode::CREATED).await;
    expect_problem(
        app.send(&user, &room, "one too many").await,
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMITED",
    )
    .await;
    let page = app.history(&user, &format!("roomId={room}")).await;
    assert_eq!(seqs(&page), [1, 2]);
}

#[tokio::test]
async fn a_retry_whose_message_was_deleted_is_gone_over_rest_and_websocket() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(app) = spawn_app_with(backend, &[]).await else { continue };
        let user = app.register("regretful").await;
        let room = app.create_room(&user, "regrets").await;
        let body = json!({"roomId": room, "content": "said too soon", "clientMessageId": "c-1"});
        let original = expect_status(
            app.post("/chat/message", &user.token, body.clone()).send().await.unwrap(),
            StatusCode::CREATED,
        )
        .await;
        let deleted = app
            .request(Method::DELETE, &format!("/chat/message/{}", original["id"].as_str().unwrap()))
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap();
        expect_status(deleted, StatusCode::NO_CONTENT).await;

        let retried = app.post("/chat/message", &user.token, body).send().await.unwrap();
        expect_problem(retried, StatusCode::GONE, "MESSAGE_DELETED").await;
        let mut socket = WsClient::connect(&app, &user.token).await;
        socket
            .send(json!({"type": "send", "ref": "r1", "roomId": room, "content": "said too soon", "clientMessageId": "c-1"}))
            .await;
        let error = socket.recv_kind("error").await;
        assert_eq!((error["ref"].as_str(), error["code"].as_str()), (Some("r1"), Some("MESSAGE_DELETED")));
        // Nothing was stored again: the room is empty and its next message takes seq 2.
        assert_eq!(seqs(&app.history(&user, &format!("roomId={room}")).await), Vec::<i64>::new());
        let next = expect_status(app.send(&user, &room, "better said").await, StatusCode::CREATED).await;
        assert_eq!(next["seq"], 2, "{backend:?}");
    }
}

#[tokio::test]
async fn the_sixth_message_inside_the_window_is_rate_limited() {
    let app = spawn_app().await;
    let user = app.register("chatty").await;
    let room = app.create_room(&user, "flood").await;
    for n in 0..5 {
        expect_status(app.send(&user, &room, &format!("m{n}")).await, StatusCode::CREATED).await;
    }
    let response = app.send(&user, &room, "one too many").await;
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    expect_problem(response, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED").await;

    // The limit is per user.
    let other = app.register("quiet").await;
    app.join(&other, &room).await;
    expect_status(app.send(&other, &room, "my turn").await, StatusCode::CREATED).await;
    let page = app.history(&user, &format!("roomId={room}")).await;
    assert_eq!(seqs(&page), [1, 2, 3, 4, 5, 6]);
}

/// Refusals for the room come before the rate limit: a stranger is told 403 (or 404 for a room
/// that does not exist) however often he tries, none of it costs him a point, and he is told
/// so even once his budget is spent elsewhere.
async fn refusals_for_the_room_spend_no_rate_limit_points(app: TestApp) {
    let owner = app.register("keeper").await;
    let room = app.create_room(&owner, "walled").await;
    let stranger = app.register("stranger").await;
    for n in 0..8 {
        let response = app.send(&stranger, &room, &format!("try {n}")).await;
        expect_problem(response, StatusCode::FORBIDDEN, "NOT_A_MEMBER").await;
    }
    let nowhere = uuid::Uuid::now_v7().to_string();
    for n in 0..8 {
        let response = app.send(&stranger, &nowhere, &format!("try {n}")).await;
        expect_problem(response, StatusCode::NOT_FOUND, "ROOM_NOT_FOUND").await;
    }
    // His whole budget is left once he belongs to the room.
    app.join(&stranger, &room).await;
    for n in 0..5 {
        expect_status(app.send(&stranger, &room, &format!("m{n}")).await, StatusCode::CREATED).await;
    }
    let response = app.send(&stranger, &room, "one too many").await;
    expect_problem(response, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED").await;
    // Out of points, he is still told that he does not belong where he does not.
    let fenced = app.create_room(&owner, "fenced").await;
    let response = app.send(&stranger, &fenced, "and here?").await;
    expect_problem(response, StatusCode::FORBIDDEN, "NOT_A_MEMBER").await;
    let response = app.send(&stranger, &nowhere, "or here?").await;
    expect_problem(response, StatusCode::NOT_FOUND, "ROOM_NOT_FOUND").await;
}

#[tokio::test]
async fn refusals_for_the_room_spend_no_rate_limit_points_on_sqlite() {
    refusals_for_the_room_spend_no_rate_limit_points(spawn_app().await).await;
}

#[tokio::test]
async fn refusals_for_the_room_spend_no_rate_limit_points_on_postgres() {
    if let Some(app) = spawn_app_with(Backend::Postgres, &[]).await {
        refusals_for_the_room_spend_no_rate_limit_points(app).await;
    }
}

#[tokio::test]
async fn refusals_for_the_room_spend_no_rate_limit_points_with_redis() {
    if let Some(mut instances) = convo_tests::redis::spawn_instances(1, &[]).await {
        refusals_for_the_room_spend_no_rate_limit_points(instances.apps.pop().unwrap()).await;
    }
}

/// Concurrent senders into one room, so that sends share batches.
const SENDERS: usize = 64;
const PER_SENDER: usize = 2;

async fn concurrent_senders_get_gapless_seqs(app: TestApp) {
    let owner = app.register("host").await;
    let room = app.create_room(&owner, "busy").await;
    let mut senders = Vec::new();
    for n in 0..SENDERS {
        let user = app.register(&format!("sender{n}")).await;
        app.join(&user, &room).await;
        senders.push(user);
    }
    let sends = senders.iter().flat_map(|user| {
        let (app, room) = (&app, &room);
        (0..PER_SENDER).map(move |k| async move {
            let message = expect_status(
                app.send(user, room, &format!("{} #{k}", user.username)).await,
                StatusCode::CREATED,
            )
            .await;
            message["seq"].as_i64().unwrap()
        })
    });
    let assigned: Vec<i64> = futures_util::future::join_all(sends).await;
    let total = (SENDERS * PER_SENDER) as i64;
    let unique: BTreeSet<i64> = assigned.iter().copied().collect();
    assert_eq!(unique.len() as i64, total, "no duplicate seqs: {assigned:?}");
    assert_eq!(unique, (1..=total).collect::<BTreeSet<_>>(), "no gaps");

    let mut stored = seqs(&app.history(&owner, &format!("roomId={room}&after=0&limit=100")).await);
    stored.extend(seqs(&app.history(&owner, &format!("roomId={room}&after=100&limit=100")).await));
    assert_eq!(stored, (1..=total).collect::<Vec<_>>());
}

#[tokio::test]
async fn sixty_four_concurrent_senders_get_seqs_1_to_128_on_sqlite() {
    concurrent_senders_get_gapless_seqs(spawn_app().await).await;
}

#[tokio::test]
async fn sixty_four_concurrent_senders_get_seqs_1_to_128_on_postgres() {
    if let Some(app) = spawn_app_with(Backend::Postgres, &[]).await {
        concurrent_senders_get_gapless_seqs(app).await;
    }
}

#[tokio::test]
async fn history_pages_back_and_forward_with_has_more() {
    let app = spawn_app_with(Backend::Sqlite, &[("RATE_LIMIT_POINTS", "100")]).await.unwrap();
    let user = app.register("pager").await;
    let room = app.create_room(&user, "history").await;
    for n in 1..=12 {
        expect_status(app.send(&user, &room, &format!("m{n}")).await, StatusCode::CREATED).await;
    }
    let latest = app.history(&user, &format!("roomId={room}&limit=5")).await;
    assert_eq!(seqs(&latest), [8, 9, 10, 11, 12]);
    assert_eq!(latest["hasMore"], true);
    let back = app.history(&user, &format!("roomId={room}&limit=5&before=8")).await;
    assert_eq!(seqs(&back), [3, 4, 5, 6, 7]);
    assert_eq!(back["hasMore"], true);
    let start = app.history(&user, &format!("roomId={room}&limit=5&before=3")).await;
    assert_eq!(seqs(&start), [1, 2]);
    assert_eq!(start["hasMore"], false);
    let forward = app.history(&user, &format!("roomId={room}&limit=5&after=5")).await;
    assert_eq!(seqs(&forward), [6, 7, 8, 9, 10]);
    assert_eq!(forward["hasMore"], true);
    let end = app.history(&user, &format!("roomId={room}&limit=5&after=10")).await;
    assert_eq!(seqs(&end), [11, 12]);
    assert_eq!(end["hasMore"], false);
    let between = app.history(&user, &format!("roomId={room}&after=3&before=6")).await;
    assert_eq!(seqs(&between), [4, 5]);
    let default_limit = app.history(&user, &format!("roomId={room}")).await;
    assert_eq!(seqs(&default_limit).len(), 12);
    assert_eq!(default_limit["hasMore"], false);

    for query in ["limit=0", "limit=101", "limit=x", "before=0", "after=-1", "before=abc"] {
        let response =
            app.get(&format!("/chat/messages?roomId={room}&{query}"), &user.token).send().await.unwrap();
        expect_problem(response, StatusCode::BAD_REQUEST, "VALIDATION_FAILED").await;
    }
    let stranger = app.register("stranger").await;
    let response = app.get(&format!("/chat/messages?roomId={room}"), &stranger.token).send().await.unwrap();
    expect_problem(response, StatusCode::FORBIDDEN, "NOT_A_MEMBER").await;
    let response = app
        .get(&format!("/chat/messages?roomId={}", uuid::Uuid::now_v7()), &user.token)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::NOT_FOUND, "ROOM_NOT_FOUND").await;
}

#[tokio::test]
async fn only_the_author_edits_and_the_author_or_owner_deletes() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let author = app.register("author").await;
    let other = app.register("other").await;
    let room = app.create_room(&owner, "moderated").await;
    app.join(&author, &room).await;
    app.join(&other, &room).await;
    let first = expect_status(app.send(&author, &room, "first draft").await, StatusCode::CREATED).await;
    let second = expect_status(app.send(&author, &room, "second").await, StatusCode::CREATED).await;
    let (first_id, second_id) = (first["id"].as_str().unwrap(), second["id"].as_str().unwrap());

    let edit = |token: &str, id: &str, content: &str| {
        app.request(reqwest::Method::PATCH, &format!("/chat/message/{id}"))
            .bearer_auth(token)
            .json(&json!({"content": content}))
            .send()
    };
    let delete = |token: &str, id: &str| {
        app.request(reqwest::Method::DELETE, &format!("/chat/message/{id}")).bearer_auth(token).send()
    };

    expect_problem(
        edit(&other.token, first_id, "hijack").await.unwrap(),
        StatusCode::FORBIDDEN,
        "NOT_THE_AUTHOR",
    )
    .await;
    expect_problem(
        edit(&owner.token, first_id, "moderate").await.unwrap(),
        StatusCode::FORBIDDEN,
        "NOT_THE_AUTHOR",
    )
    .await;
    expect_problem(
        edit(&author.token, first_id, " ").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "VALIDATION_FAILED",
    )
    .await;
    let edited = expect_status(edit(&author.token, first_id, "final").await.unwrap(), StatusCode::OK).await;
    assert_eq!(edited["content"], "final");
    assert!(edited["editedAt"].is_string());
    assert_eq!(edited["seq"], 1);

    expect_problem(delete(&other.token, first_id).await.unwrap(), StatusCode::FORBIDDEN, "NOT_THE_AUTHOR")
        .await;
    expect_status(delete(&author.token, first_id).await.unwrap(), StatusCode::NO_CONTENT).await;
    expect_status(delete(&owner.token, second_id).await.unwrap(), StatusCode::NO_CONTENT).await;

    let page = app.history(&owner, &format!("roomId={room}")).await;
    assert_eq!(seqs(&page), Vec::<i64>::new());
    let missing = uuid::Uuid::now_v7().to_string();
    for id in [first_id, missing.as_str()] {
        expect_problem(
            edit(&author.token, id, "again").await.unwrap(),
            StatusCode::NOT_FOUND,
            "MESSAGE_NOT_FOUND",
        )
        .await;
        expect_problem(delete(&author.token, id).await.unwrap(), StatusCode::NOT_FOUND, "MESSAGE_NOT_FOUND")
            .await;
    }
    // Deleted seqs stay used.
    assert_eq!(expect_status(app.send(&author, &room, "third").await, StatusCode::CREATED).await["seq"], 3);
}

#[tokio::test]
async fn the_latest_page_reflects_edits_and_deletes_at_once() {
    let app = spawn_app().await;
    let user = app.register("editor").await;
    let room = app.create_room(&user, "fresh").await;
    let message = expect_status(app.send(&user, &room, "v1").await, StatusCode::CREATED).await;
    let id = message["id"].as_str().unwrap();
    // Read once so the latest page is cached, then change it.
    assert_eq!(app.history(&user, &format!("roomId={room}")).await["messages"][0]["content"], "v1");
    let response = app
        .request(reqwest::Method::PATCH, &format!("/chat/message/{id}"))
        .bearer_auth(&user.token)
        .json(&json!({"content": "v2"}))
        .send()
        .await
        .unwrap();
    expect_status(response, StatusCode::OK).await;
    assert_eq!(app.history(&user, &format!("roomId={room}")).await["messages"][0]["content"], "v2");
    expect_status(app.send(&user, &room, "next").await, StatusCode::CREATED).await;
    assert_eq!(seqs(&app.history(&user, &format!("roomId={room}")).await), [1, 2]);
    let response = app
        .request(reqwest::Method::DELETE, &format!("/chat/message/{id}"))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    expect_status(response, StatusCode::NO_CONTENT).await;
    assert_eq!(seqs(&app.history(&user, &format!("roomId={room}")).await), [2]);
}
