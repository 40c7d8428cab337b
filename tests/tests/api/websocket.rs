//! The WebSocket gateway, end to end with a real client: authentication, live rooms, acks,
//! ordering, resume, presence, typing, revocation, robustness and shutdown.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use convo_crypto::JwtTokenCodec;
use convo_domain::{AccessGrant, TokenCodec};
use convo_tests::redis::spawn_instances;
use convo_tests::ws::WsClient;
use convo_tests::{Backend, TestApp, expect_problem, expect_status, spawn_app_with};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

fn seq(frame: &Value) -> i64 {
    frame["message"]["seq"].as_i64().unwrap()
}

async fn an_upgrade_without_valid_credentials_is_refused_with_401(app: TestApp) {
    assert_eq!(WsClient::try_connect(&app, None, None).await.unwrap_err(), 401);
    assert_eq!(WsClient::try_connect(&app, Some("garbage"), None).await.unwrap_err(), 401);
    assert_eq!(WsClient::try_connect(&app, None, Some("made-up")).await.unwrap_err(), 401);
    // The refusal is a problem like any other.
    let response = app.request(Method::GET, "/ws").send().await.unwrap();
    expect_problem(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
}

async fn the_first_frame_is_ready_with_the_user_and_session(app: TestApp) {
    let user = app.register("alice").await;
    let client = WsClient::connect(&app, &user.token).await;
    let me = expect_status(app.get("/auth/me", &user.token).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(client.ready["user"], me);
    assert!(uuid::Uuid::parse_str(client.ready["sessionId"].as_str().unwrap()).is_ok());
}

async fn a_ticket_opens_one_connection_only(app: TestApp) {
    let user = app.register("browser").await;
    let response = app.post("/ws/ticket", &user.token, json!({})).send().await.unwrap();
    let ticket = expect_status(response, StatusCode::OK).await;
    assert_eq!(ticket["expiresIn"], 30);
    let ticket = ticket["ticket"].as_str().unwrap();
    let client = WsClient::connect_with_ticket(&app, ticket).await.unwrap();
    assert_eq!(client.ready["user"]["id"], user.id.as_str());
    assert_eq!(WsClient::connect_with_ticket(&app, ticket).await.unwrap_err(), 401);
    let response = app.request(Method::POST, "/ws/ticket").send().await.unwrap();
    expect_problem(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
}

async fn a_request_that_is_not_an_upgrade_is_refused_without_spending_its_ticket(app: TestApp) {
    let user = app.register("curious").await;
    let response = app.post("/ws/ticket", &user.token, json!({})).send().await.unwrap();
    let ticket = expect_status(response, StatusCode::OK).await;
    let ticket = ticket["ticket"].as_str().unwrap();
    // A plain GET, with a valid ticket but none of the upgrade headers.
    let response = app.request(Method::GET, &format!("/ws?ticket={ticket}")).send().await.unwrap();
    let problem = expect_problem(response, StatusCode::BAD_REQUEST, "VALIDATION_FAILED").await;
    assert!(problem["detail"].as_str().unwrap().contains("`Upgrade`"), "{problem}");
    // Nor does an upgrade that could not complete: the handshake lacks its key.
    let response = app
        .request(Method::GET, &format!("/ws?ticket={ticket}"))
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-version", "13")
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, StatusCode::BAD_REQUEST, "VALIDATION_FAILED").await;
    assert!(problem["detail"].as_str().unwrap().contains("Sec-WebSocket-Key"), "{problem}");
    // The ticket still opens its one connection.
    let client = WsClient::connect_with_ticket(&app, ticket).await.unwrap();
    assert_eq!(client.ready["user"]["id"], user.id.as_str());
    assert_eq!(WsClient::connect_with_ticket(&app, ticket).await.unwrap_err(), 401);
}

async fn a_send_is_acked_after_it_is_stored_then_broadcast_to_every_subscriber(app: TestApp) {
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&alice, "live").await;
    app.join(&bob, &room).await;
    let mut a = WsClient::connect(&app, &alice.token).await;
    let mut b = WsClient::connect(&app, &bob.token).await;
    let (_, joined) = a.join(&room, None).await;
    assert_eq!(joined, json!({"type": "joined", "ref": "join", "roomId": room, "lastSeq": 0}));
    b.join(&room, None).await;

    a.send(
        json!({"type": "send", "roomId": room, "content": "hi bob", "clientMessageId": "c1", "ref": "s1"}),
    )
    .await;
    let ack = a.recv_kind("ack").await;
    assert_eq!(ack["ref"], "s1");
    assert_eq!(ack["message"]["seq"], 1);
    assert_eq!(ack["message"]["content"], "hi bob");
    // Stored before the ack: history already has it.
    let page = app.history(&alice, &format!("roomId={room}")).await;
    assert_eq!(page["messages"][0], ack["message"]);
    // The sender's own copy comes after its ack; pushed frames carry no ref.
    let own = a.recv_kind("message").await;
    assert_eq!(own, json!({"type": "message", "message": ack["message"]}));
    assert_eq!(b.recv_kind("message").await, own);

    // REST sends reach WebSocket subscribers too.
    expect_status(app.send(&bob, &room, "from rest").await, StatusCode::CREATED).await;
    assert_eq!(seq(&a.recv_kind("message").await), 2);
    assert_eq!(seq(&b.recv_kind("message").await), 2);

    // Sending needs membership, not a WebSocket join; errors carry the ref.
    let other = app.create_room(&bob, "bobs room").await;
    a.send(json!({"type": "send", "roomId": other, "content": "let me in", "ref": "s2"})).await;
    let error = a.recv_kind("error").await;
    assert_eq!(error["code"], "NOT_A_MEMBER");
    assert_eq!(error["ref"], "s2");
}

async fn many_subscribers_see_every_message_once_in_seq_order(app: TestApp) {
    let owner = app.register("owner").await;
    let room = app.create_room(&owner, "crowd").await;
    let mut senders = Vec::new();
    for n in 0..4 {
        let user = app.register(&format!("sender{n}")).await;
        app.join(&user, &room).await;
        senders.push(user);
    }
    let mut clients = Vec::new();
    for _ in 0..20 {
        let mut client = WsClient::connect(&app, &owner.token).await;
        client.join(&room, None).await;
        clients.push(client);
    }
    // Four concurrent senders, ten messages each.
    let sends = senders.iter().map(|user| {
        let (app, room) = (&app, &room);
        async move {
            for k in 0..10 {
                expect_status(
                    app.send(user, room, &format!("{} {k}", user.username)).await,
                    StatusCode::CREATED,
                )
                .await;
            }
        }
    });
    futures_util::future::join_all(sends).await;
    for client in &mut clients {
        let seqs: Vec<i64> = {
            let mut seqs = Vec::new();
            for _ in 0..40 {
                seqs.push(seq(&client.recv_kind("message").await));
            }
            seqs
        };
        assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
    }
}

async fn join_with_since_seq_resumes_without_gap_or_duplicate_while_others_send(app: TestApp) {
    let owner = app.register("owner").await;
    let writer = app.register("writer").await;
    let room = app.create_room(&owner, "resume").await;
    app.join(&writer, &room).await;
    for n in 1..=5 {
        expect_status(app.send(&writer, &room, &format!("before {n}")).await, StatusCode::CREATED).await;
    }

    // Others keep sending while the client rejoins from seq 2.
    let sending = {
        let (app, writer, room) = (&app, &writer, &room);
        async move {
            for n in 0..30 {
                expect_status(app.send(writer, room, &format!("during {n}")).await, StatusCode::CREATED)
                    .await;
            }
        }
    };
    let resuming = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut client = WsClient::connect(&app, &owner.token).await;
        let (replayed, joined) = client.join(&room, Some(2)).await;
        let mut seqs: Vec<i64> = replayed.iter().map(seq).collect();
        let last = joined["lastSeq"].as_i64().unwrap();
        assert_eq!(seqs.last().copied().unwrap_or(2), last, "the replay ends at lastSeq");
        while seqs.last().copied().unwrap_or(2) < 35 {
            seqs.push(seq(&client.recv_kind("message").await));
        }
        seqs
    };
    let ((), seqs) = tokio::join!(sending, resuming);
    assert_eq!(seqs, (3..=35).collect::<Vec<_>>(), "every message once, in order");
}

async fn a_long_absence_is_truncated(app: TestApp) {
    let owner = app.register("owner").await;
    let room = app.create_room(&owner, "busy").await;
    let sends = (0..8).map(|worker| {
        let (app, owner, room) = (&app, &owner, &room);
        async move {
            for k in 0..126 {
                expect_status(app.send(owner, room, &format!("{worker}/{k}")).await, StatusCode::CREATED)
                    .await;
            }
        }
    });
    futures_util::future::join_all(sends).await;
    let mut client = WsClient::connect(&app, &owner.token).await;
    let (replayed, joined) = client.join(&room, Some(0)).await;
    assert!(replayed.is_empty());
    assert_eq!(joined["truncated"], true);
    assert_eq!(joined["lastSeq"], 1008);
    let (replayed, joined) = client.join(&room, Some(8)).await;
    assert_eq!(replayed.len(), 1000);
    assert!(joined.get("truncated").is_none(), "{joined}");
}

async fn edits_deletes_and_membership_changes_reach_subscribers(app: TestApp) {
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&alice, "changes").await;
    let mut a = WsClient::connect(&app, &alice.token).await;
    a.join(&room, None).await;

    app.join(&bob, &room).await;
    let joined = a.recv_kind("userJoined").await;
    assert_eq!(joined["user"], json!({"id": bob.id, "username": "bob"}));

    let mut b = WsClient::connect(&app, &bob.token).await;
    b.join(&room, None).await;
    b.send(json!({"type": "send", "roomId": room, "content": "draft", "ref": "s"})).await;
    let id = b.recv_kind("ack").await["message"]["id"].as_str().unwrap().to_owned();
    a.recv_kind("message").await;
    b.recv_kind("message").await;

    b.send(json!({"type": "edit", "messageId": id, "content": "final", "ref": "e"})).await;
    let reply = b.recv_kind("ack").await;
    assert_eq!(reply["ref"], "e");
    assert_eq!(reply["message"]["content"], "final");
    // The editor's own connection gets the broadcast after its reply.
    assert_eq!(b.recv_kind("messageEdited").await["message"], reply["message"]);
    let edited = a.recv_kind("messageEdited").await;
    assert_eq!(edited["message"]["content"], "final");
    assert!(edited["message"]["editedAt"].is_string());

    a.send(json!({"type": "edit", "messageId": id, "content": "not mine", "ref": "x"})).await;
    assert_eq!(a.recv_kind("error").await["code"], "NOT_THE_AUTHOR");
    // The owner may delete it.
    a.send(json!({"type": "delete", "messageId": id, "ref": "d"})).await;
    let reply = a.recv_kind("messageDeleted").await;
    assert_eq!(reply, json!({"type": "messageDeleted", "ref": "d", "roomId": room, "messageId": id}));
    let pushed = b.recv_kind("messageDeleted").await;
    assert_eq!(pushed, json!({"type": "messageDeleted", "roomId": room, "messageId": id}));
    assert_eq!(a.recv_kind("messageDeleted").await, pushed, "the broadcast follows the reply");

    // Leaving over REST unsubscribes the user's sockets; the others see userLeft.
    let response = app.post(&format!("/chat/room/{room}/leave"), &bob.token, json!({})).send().await.unwrap();
    expect_status(response, StatusCode::NO_CONTENT).await;
    assert_eq!(b.recv_kind("left").await, json!({"type": "left", "roomId": room}));
    assert_eq!(a.recv_kind("userLeft").await["user"]["id"], bob.id.as_str());
    expect_status(app.send(&alice, &room, "after bob left").await, StatusCode::CREATED).await;
    a.recv_kind("message").await;
    b.expect_none(&["message"], Duration::from_millis(300)).await;
}

async fn presence_follows_the_first_and_last_connection_and_members_show_it(app: TestApp) {
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&alice, "presence").await;
    app.join(&bob, &room).await;
    let mut a = WsClient::connect(&app, &alice.token).await;
    a.join(&room, None).await;

    let b1 = WsClient::connect(&app, &bob.token).await;
    let online = a.recv_kind("presence").await;
    assert_eq!(
        online,
        json!({"type": "presence", "roomId": room, "user": {"id": bob.id, "username": "bob"}, "online": true})
    );
    let b2 = WsClient::connect(&app, &bob.token).await;
    a.send(json!({"type": "members", "roomId": room, "ref": "m"})).await;
    let members = a.recv_kind("members").await;
    assert_eq!(members["ref"], "m");
    let flags: Vec<(String, bool)> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["username"].as_str().unwrap().to_owned(), m["online"].as_bool().unwrap()))
        .collect();
    assert_eq!(flags, [("alice".to_owned(), true), ("bob".to_owned(), true)]);

    // Only the last of bob's connections closing makes him go offline.
    drop(b1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(b2);
    let offline = a.recv().await;
    assert_eq!(offline["type"], "presence", "no presence frame for the first close: {offline}");
    assert_eq!(offline["online"], false);
}

async fn typing_reaches_the_others_at_most_every_two_seconds(app: TestApp) {
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&alice, "typing").await;
    app.join(&bob, &room).await;
    let mut a = WsClient::connect(&app, &alice.token).await;
    let mut b = WsClient::connect(&app, &bob.token).await;
    a.join(&room, None).await;
    b.join(&room, None).await;

    a.send(json!({"type": "typing", "roomId": room})).await;
    a.send(json!({"type": "typing", "roomId": room})).await;
    let typing = b.recv_kind("typing").await;
    assert_eq!(
        typing,
        json!({"type": "typing", "roomId": room, "user": {"id": alice.id, "username": "alice"}})
    );
    b.expect_none(&["typing"], Duration::from_millis(500)).await;
    a.expect_none(&["typing"], Duration::from_millis(100)).await;
}

async fn invalid_frames_get_errors_and_too_many_close_with_1008(app: TestApp) {
    let user = app.register("sloppy").await;
    let mut client = WsClient::connect(&app, &user.token).await;
    client.send_raw(Message::Text("not json".into())).await;
    assert_eq!(client.recv().await["code"], "INVALID_FRAME");
    client.send(json!({"type": "shout", "ref": "r1"})).await;
    let error = client.recv().await;
    assert_eq!((error["code"].as_str(), error["ref"].as_str()), (Some("INVALID_FRAME"), Some("r1")));
    client.send(json!({"type": "join", "roomId": "not-a-uuid"})).await;
    assert_eq!(client.recv().await["code"], "INVALID_FRAME");
    client.send(json!({"type": "send", "roomId": uuid::Uuid::now_v7(), "content": "  ", "ref": "v"})).await;
    assert_eq!(client.recv().await["code"], "VALIDATION_FAILED");
    // Still open.
    client.send(json!({"type": "ping", "ref": "p"})).await;
    assert_eq!(client.recv().await, json!({"type": "pong", "ref": "p"}));
    for _ in 0..10 {
        client.send_raw(Message::Text("{".into())).await;
    }
    assert_eq!(client.expect_close().await, 1008);
}

async fn binary_frames_close_with_1008_and_oversized_ones_with_1009(app: TestApp) {
    let user = app.register("bulky").await;
    let mut client = WsClient::connect(&app, &user.token).await;
    client.send_raw(Message::Binary(vec![1, 2, 3].into())).await;
    assert_eq!(client.expect_close().await, 1008);

    let mut client = WsClient::connect(&app, &user.token).await;
    let huge = json!({"type": "ping", "pad": "x".repeat(17 * 1024)});
    client.send(huge).await;
    assert_eq!(client.expect_close().await, 1009);
}

async fn logout_closes_that_sessions_sockets_with_4001_and_no_others(app: TestApp) {
    let user = app.register("leaver").await;
    let other_session = app.login(&user).await;
    let mut first = WsClient::connect(&app, &user.token).await;
    let mut second = WsClient::connect(&app, &user.token).await;
    let mut survivor = WsClient::connect(&app, &other_session).await;

    expect_status(
        app.post("/auth/logout", &user.token, json!({})).send().await.unwrap(),
        StatusCode::NO_CONTENT,
    )
    .await;
    assert_eq!(first.expect_close().await, 4001);
    assert_eq!(second.expect_close().await, 4001);
    survivor.send(json!({"type": "ping"})).await;
    assert_eq!(survivor.recv().await["type"], "pong");

    expect_status(
        app.post("/auth/logout-all", &other_session, json!({})).send().await.unwrap(),
        StatusCode::NO_CONTENT,
    )
    .await;
    assert_eq!(survivor.expect_close().await, 4001);
}

async fn a_client_that_reads_too_slowly_is_closed_with_4008_without_slowing_the_room(app: TestApp) {
    let owner = app.register("owner").await;
    let room = app.create_room(&owner, "firehose").await;
    let mut slow = WsClient::connect_reading_slowly(&app, &owner.token).await;
    slow.join(&room, None).await;
    let mut fast = WsClient::connect(&app, &owner.token).await;
    fast.join(&room, None).await;

    // The fast client reads all along and reports the last seq it saw.
    let (seen_tx, mut seen) = tokio::sync::watch::channel(0);
    let reader = tokio::spawn(async move {
        loop {
            let seq = fast.recv_kind("message").await["message"]["seq"].as_i64().unwrap();
            if seen_tx.send(seq).is_err() {
                return;
            }
        }
    });
    // The slow client reads nothing while large messages pour in: its socket buffers and then
    // its queue of 64 fill up. Senders stop once the server reports a 4008 close.
    let content = "x".repeat(1000);
    let overflowed = || async {
        let metrics = app.request(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
        metrics.contains(r#"convo_ws_closes_total{code="4008"}"#)
    };
    let mut sent = 0;
    while !overflowed().await {
        assert!(sent < 20_000, "no overflow after {sent} messages");
        // Bursts well under the queue's 64, which a reading client absorbs.
        let sends = (0..16).map(|_| app.send(&owner, &room, &content));
        for response in futures_util::future::join_all(sends).await {
            expect_status(response, StatusCode::CREATED).await;
        }
        sent += 16;
    }
    // The fast reader got every message; the slow one was cut off (after what was in flight).
    tokio::time::timeout(Duration::from_secs(30), seen.wait_for(|seq| *seq == sent)).await.unwrap().unwrap();
    reader.abort();
    assert_eq!(slow.expect_close_within(Duration::from_secs(30)).await, 4008);
}

async fn shutdown_closes_every_socket_with_1001(app: TestApp) {
    let user = app.register("lastone").await;
    let room = app.create_room(&user, "closing").await;
    let mut client = WsClient::connect(&app, &user.token).await;
    client.join(&room, None).await;
    let stopping = tokio::spawn(app.stop());
    assert_eq!(client.expect_close().await, 1001);
    stopping.await.unwrap();
}

async fn every_subscriber_sees_a_gapless_sequence_under_concurrent_rest_and_websocket_sends(app: TestApp) {
    let owner = app.register("owner").await;
    let room = app.create_room(&owner, "mixed").await;
    let mut watcher = WsClient::connect(&app, &owner.token).await;
    watcher.join(&room, None).await;
    let mut ws_sender = WsClient::connect(&app, &owner.token).await;
    let rest = async {
        for n in 0..20 {
            expect_status(app.send(&owner, &room, &format!("rest {n}")).await, StatusCode::CREATED).await;
        }
    };
    let ws = async {
        for n in 0..20 {
            ws_sender.send(json!({"type": "send", "roomId": room, "content": format!("ws {n}"), "ref": n.to_string()})).await;
            ws_sender.recv_kind("ack").await;
        }
    };
    tokio::join!(rest, ws);
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    for _ in 0..40 {
        let s = seq(&watcher.recv_kind("message").await);
        assert!(seen.insert(s), "duplicate {s}");
        order.push(s);
    }
    assert_eq!(order, (1..=40).collect::<Vec<_>>());
}

async fn a_burst_of_sends_is_acked_in_order_and_seen_once_in_seq_order(app: TestApp) {
    const BURST: usize = 100;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&alice, "burst").await;
    app.join(&bob, &room).await;
    let mut a = WsClient::connect(&app, &alice.token).await;
    let mut b = WsClient::connect(&app, &bob.token).await;
    a.join(&room, None).await;
    b.join(&room, None).await;

    // Written back to back, with a ping behind them, without waiting for any reply.
    for k in 0..BURST {
        a.send(
            json!({"type": "send", "roomId": room, "content": format!("burst {k}"), "ref": format!("s{k}")}),
        )
        .await;
    }
    a.send(json!({"type": "ping", "ref": "p"})).await;

    let (mut acked, mut own, mut pong) = (Vec::new(), Vec::new(), false);
    while acked.len() < BURST || own.len() < BURST || !pong {
        let frame = a.recv().await;
        match frame["type"].as_str().unwrap() {
            "ack" => {
                let k = acked.len();
                assert_eq!(frame["ref"], format!("s{k}"), "acks in the order of the frames: {frame}");
                assert_eq!(frame["message"]["content"], format!("burst {k}"));
                acked.push(seq(&frame));
            }
            "message" => {
                let s = seq(&frame);
                assert!(acked.contains(&s), "own message {s} before its ack");
                own.push(s);
            }
            "pong" => {
                assert_eq!(frame["ref"], "p");
                pong = true;
            }
            "presence" | "typing" => {}
            _ => panic!("unexpected frame {frame}"),
        }
    }
    assert!(acked.windows(2).all(|w| w[0] < w[1]), "seqs rise in the order sent: {acked:?}");
    assert_eq!(own, acked, "the sender sees its own messages once, in seq order");

    // A last message marks the end: anything seen twice would come before it.
    a.send(json!({"type": "send", "roomId": room, "content": "end", "ref": "end"})).await;
    let end = seq(&a.recv_kind("ack").await);
    assert_eq!(seq(&a.recv_kind("message").await), end);
    let mut seen = Vec::new();
    let mut contents = Vec::new();
    loop {
        let frame = b.recv_kind("message").await;
        if seq(&frame) == end {
            break;
        }
        seen.push(seq(&frame));
        contents.push(frame["message"]["content"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, acked, "every other subscriber sees the burst once, in seq order");
    assert_eq!(contents, (0..BURST).map(|k| format!("burst {k}")).collect::<Vec<_>>());
}

async fn replies_to_sends_and_edits_keep_frame_order_across_rooms(app: TestApp) {
    let alice = app.register("alice").await;
    let first = app.create_room(&alice, "first").await;
    let second = app.create_room(&alice, "second").await;
    let mut a = WsClient::connect(&app, &alice.token).await;
    a.join(&first, None).await;
    a.send(json!({"type": "send", "roomId": first, "content": "to edit", "ref": "x"})).await;
    let id = a.recv_kind("ack").await["message"]["id"].as_str().unwrap().to_owned();
    a.recv_kind("message").await;

    // Sends to two rooms, an edit, a refused send and a failed one, interleaved.
    let frames = [
        json!({"type": "send", "roomId": first, "content": "f1", "ref": "1"}),
        json!({"type": "send", "roomId": second, "content": "s1", "ref": "2"}),
        json!({"type": "edit", "messageId": id, "content": "edited", "ref": "3"}),
        json!({"type": "send", "roomId": first, "content": "  ", "ref": "4"}),
        json!({"type": "send", "roomId": second, "content": "s2", "ref": "5"}),
        json!({"type": "send", "roomId": uuid::Uuid::now_v7(), "content": "nowhere", "ref": "6"}),
        json!({"type": "send", "roomId": first, "content": "f2", "ref": "7"}),
    ];
    for frame in frames {
        a.send(frame).await;
    }
    let mut replies = Vec::new();
    let mut pushed = Vec::new();
    while replies.len() < 7 || pushed.len() < 3 {
        let frame = a.recv().await;
        match frame["type"].as_str().unwrap() {
            "ack" | "error" => replies.push(frame),
            "message" | "messageEdited" => {
                let id = &frame["message"]["id"];
                assert!(
                    replies.iter().any(|r| &r["message"]["id"] == id),
                    "broadcast before its reply: {frame}"
                );
                pushed.push(frame);
            }
            "presence" | "typing" => {}
            _ => panic!("unexpected frame {frame}"),
        }
    }
    let refs: Vec<&str> = replies.iter().map(|r| r["ref"].as_str().unwrap()).collect();
    assert_eq!(refs, ["1", "2", "3", "4", "5", "6", "7"]);
    assert_eq!(replies[2]["message"]["content"], "edited");
    assert_eq!(replies[3]["code"], "VALIDATION_FAILED");
    assert_eq!(replies[5]["code"], "ROOM_NOT_FOUND");
    assert_eq!((seq(&replies[0]), seq(&replies[6])), (2, 3), "one room's sends in the order sent");
    assert_eq!((seq(&replies[1]), seq(&replies[4])), (1, 2));
    // Only the followed room's changes are pushed: f1, the edit and f2.
    let kinds: Vec<&str> = pushed.iter().map(|p| p["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "message").count(), 2);
    assert_eq!(kinds.iter().filter(|k| **k == "messageEdited").count(), 1);
}

async fn a_join_during_a_burst_to_that_room_replays_no_message_before_its_ack(app: TestApp) {
    const BURST: usize = 30;
    let alice = app.register("alice").await;
    let room = app.create_room(&alice, "joining").await;
    let mut a = WsClient::connect(&app, &alice.token).await;
    // Not subscribed while the sends start; the join (from seq 0) comes behind them.
    for k in 0..BURST {
        a.send(json!({"type": "send", "roomId": room, "content": format!("m{k}"), "ref": format!("s{k}")}))
            .await;
    }
    a.send(json!({"type": "join", "roomId": room, "sinceSeq": 0, "ref": "j"})).await;
    // Replayed messages, then joined, then live ones: each message after its own ack.
    let (mut acked, mut messages, mut replayed) = (Vec::new(), Vec::new(), None);
    while acked.len() < BURST || messages.len() < BURST || replayed.is_none() {
        let frame = a.recv().await;
        match frame["type"].as_str().unwrap() {
            "ack" => acked.push(seq(&frame)),
            "message" => {
                let s = seq(&frame);
                assert!(acked.contains(&s), "message {s} before its ack");
                messages.push(s);
            }
            "joined" => {
                assert_eq!(frame["ref"], "j");
                replayed = Some((messages.len(), frame["lastSeq"].as_i64().unwrap()));
            }
            "presence" | "typing" => {}
            _ => panic!("unexpected frame {frame}"),
        }
    }
    assert_eq!(acked, (1..=BURST as i64).collect::<Vec<_>>());
    assert_eq!(messages, acked, "every message once, in order");
    let (before_joined, last_seq) = replayed.unwrap();
    assert_eq!(before_joined as i64, last_seq, "the replay ends at lastSeq");
}

async fn a_session_that_expires_closes_its_sockets_with_4001(app: TestApp) {
    let user = app.register("expiring").await;
    let mut client = WsClient::connect(&app, &user.token).await;
    // SESSION_TTL is 2 s and no request uses the session (an open socket does not extend it):
    // the instance's check of its sockets' sessions, once a second, finds it gone.
    assert_eq!(client.expect_close_within(Duration::from_secs(5)).await, 4001);
}

async fn a_session_in_use_over_its_socket_stays_alive(app: TestApp) {
    let user = app.register("chatting").await;
    let mut client = WsClient::connect(&app, &user.token).await;
    // SESSION_TTL is 2 s; the client's frames are activity, so the session outlives it.
    for n in 0..10 {
        let reference = format!("p{n}");
        client.send(json!({"type": "ping", "ref": reference})).await;
        assert_eq!(client.recv_kind("pong").await["ref"], reference.as_str());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    expect_status(app.get("/auth/me", &user.token).send().await.unwrap(), StatusCode::OK).await;
}

async fn a_socket_closes_with_4001_at_its_tokens_expiry_whether_opened_by_token_or_ticket(app: TestApp) {
    let user = app.register("shortlived").await;
    // The same session, named by a token that expires within three seconds: no setting makes
    // tokens that short, so the test signs it with the servers' secret.
    let codec = JwtTokenCodec::new(convo_tests::JWT_SECRET.as_bytes());
    let grant = codec.decode(&user.token).unwrap();
    let expires_at = DateTime::from_timestamp(Utc::now().timestamp() + 3, 0).unwrap();
    let short = codec.encode(&AccessGrant { expires_at, ..grant }).unwrap();
    let response = app.post("/ws/ticket", &short, json!({})).send().await.unwrap();
    let ticket = expect_status(response, StatusCode::OK).await["ticket"].as_str().unwrap().to_owned();

    let mut by_token = WsClient::connect(&app, &short).await;
    let mut by_ticket = WsClient::connect_with_ticket(&app, &ticket).await.unwrap();
    let mut long_lived = WsClient::connect(&app, &user.token).await;
    for client in [&mut by_token, &mut by_ticket] {
        assert_eq!(client.expect_close_within(Duration::from_secs(10)).await, 4001);
        assert!(Utc::now() >= expires_at, "closed before the token expired");
    }
    // The session lives on: only the sockets of the expired token closed.
    long_lived.send(json!({"type": "ping", "ref": "p"})).await;
    assert_eq!(long_lived.recv_kind("pong").await["ref"], "p");
}

async fn a_client_silent_for_60_seconds_is_closed(app: TestApp) {
    let user = app.register("silent").await;
    let mut silent = convo_tests::ws::silent_client(&app, &user.token).await;
    // Pinged after 20 s, never answering: closed once 60 s have passed without a word.
    let started = std::time::Instant::now();
    assert_eq!(convo_tests::ws::raw_close_code(&mut silent, Duration::from_secs(90)).await, Some(1001));
    assert!(started.elapsed() >= Duration::from_secs(55), "closed after {:?}", started.elapsed());
}

async fn a_clients_ping_is_answered_with_its_payload_and_its_close_with_its_code(app: TestApp) {
    let user = app.register("pinger").await;
    let mut client = WsClient::connect(&app, &user.token).await;
    client.send_raw(Message::Ping("are you there".into())).await;
    assert_eq!(client.recv_message().await, Message::Pong("are you there".into()));

    let close = CloseFrame { code: CloseCode::Away, reason: "bye".into() };
    client.send_raw(Message::Close(Some(close))).await;
    let Message::Close(Some(answer)) = client.recv_message().await else { panic!("a close answer") };
    assert_eq!(answer.code, CloseCode::Away, "the client's own code");
    let metrics = app.request(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    assert!(!metrics.contains(r#"convo_ws_closes_total{code="1001"}"#), "not a close of the server's");
}

/// Every test runs twice: on one instance with the in-process adapters (SQLite), and on one
/// instance with the Redis adapters (PostgreSQL and Redis).
macro_rules! on_both_deployments {
    ($($name:ident: [$($var:expr),*];)*) => {
        mod in_process {
            $(
                #[tokio::test]
                async fn $name() {
                    let app = super::spawn_app_with(super::Backend::Sqlite, &[$($var),*]).await.unwrap();
                    super::$name(app).await;
                }
            )*
        }
        mod with_redis {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(mut instances) = super::spawn_instances(1, &[$($var),*]).await else { return };
                    let app = instances.apps.pop().unwrap();
                    super::$name(app).await;
                }
            )*
        }
    };
}

on_both_deployments! {
    an_upgrade_without_valid_credentials_is_refused_with_401: [];
    the_first_frame_is_ready_with_the_user_and_session: [];
    a_ticket_opens_one_connection_only: [];
    a_request_that_is_not_an_upgrade_is_refused_without_spending_its_ticket: [];
    a_send_is_acked_after_it_is_stored_then_broadcast_to_every_subscriber: [];
    many_subscribers_see_every_message_once_in_seq_order: [("RATE_LIMIT_POINTS", "1000")];
    join_with_since_seq_resumes_without_gap_or_duplicate_while_others_send: [("RATE_LIMIT_POINTS", "1000")];
    a_long_absence_is_truncated: [("RATE_LIMIT_POINTS", "100000")];
    edits_deletes_and_membership_changes_reach_subscribers: [];
    presence_follows_the_first_and_last_connection_and_members_show_it: [];
    typing_reaches_the_others_at_most_every_two_seconds: [];
    invalid_frames_get_errors_and_too_many_close_with_1008: [];
    binary_frames_close_with_1008_and_oversized_ones_with_1009: [];
    logout_closes_that_sessions_sockets_with_4001_and_no_others: [];
    a_client_that_reads_too_slowly_is_closed_with_4008_without_slowing_the_room: [("WS_OUTBOUND_QUEUE", "64"), ("RATE_LIMIT_POINTS", "100000")];
    shutdown_closes_every_socket_with_1001: [];
    every_subscriber_sees_a_gapless_sequence_under_concurrent_rest_and_websocket_sends: [("RATE_LIMIT_POINTS", "1000")];
    a_burst_of_sends_is_acked_in_order_and_seen_once_in_seq_order: [("RATE_LIMIT_POINTS", "1000")];
    replies_to_sends_and_edits_keep_frame_order_across_rooms: [("RATE_LIMIT_POINTS", "1000")];
    a_join_during_a_burst_to_that_room_replays_no_message_before_its_ack: [("RATE_LIMIT_POINTS", "1000")];
    a_session_that_expires_closes_its_sockets_with_4001: [("SESSION_TTL", "2")];
    a_session_in_use_over_its_socket_stays_alive: [("SESSION_TTL", "2")];
    a_socket_closes_with_4001_at_its_tokens_expiry_whether_opened_by_token_or_ticket: [];
    a_client_silent_for_60_seconds_is_closed: [];
    a_clients_ping_is_answered_with_its_payload_and_its_close_with_its_code: [];
}
