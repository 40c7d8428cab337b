//! Rooms, memberships and the directory, end to end.

use convo_tests::{expect_problem, expect_status, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn the_creator_owns_a_new_room_and_is_its_first_member() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let response = app.post("/chat/room", &owner.token, json!({"name": "  General  "})).send().await.unwrap();
    let room = expect_status(response, StatusCode::CREATED).await;
    assert_eq!(room["name"], "General");
    assert_eq!(room["ownerId"], owner.id.as_str());
    assert_eq!(room["memberCount"], 1);
    assert_eq!(room["lastSeq"], 0);

    let id = room["id"].as_str().unwrap();
    let fetched = expect_status(
        app.get(&format!("/chat/room/{id}"), &owner.token).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(fetched, room);
    let members = expect_status(
        app.get(&format!("/chat/room/{id}/members"), &owner.token).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(members.as_array().unwrap().len(), 1);
    assert_eq!(members[0]["userId"], owner.id.as_str());
    assert_eq!(members[0]["username"], "owner");
    assert_eq!(members[0]["online"], false);
}

#[tokio::test]
async fn room_names_are_unique_whatever_their_case_and_validated() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    app.create_room(&owner, "Café Society").await;
    let response =
        app.post("/chat/room", &owner.token, json!({"name": "CAFÉ SOCIETY"})).send().await.unwrap();
    expect_problem(response, StatusCode::CONFLICT, "ROOM_NAME_TAKEN").await;

    for name in [json!(""), json!("   "), json!("x".repeat(51)), json!("semi;colon"), json!(7), Value::Null] {
        let response = app.post("/chat/room", &owner.token, json!({"name": name})).send().await.unwrap();
        let problem = expect_problem(response, StatusCode::BAD_REQUEST, "VALIDATION_FAILED").await;
        assert!(problem["detail"].as_str().unwrap().contains("name"), "{problem}");
    }
    let response = app.post("/chat/room", "not-a-token", json!({"name": "fine"})).send().await.unwrap();
    expect_problem(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
}

#[tokio::test]
async fn only_members_see_a_room_and_its_members() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let stranger = app.register("stranger").await;
    let room = app.create_room(&owner, "private").await;

    for path in [format!("/chat/room/{room}"), format!("/chat/room/{room}/members")] {
        expect_problem(
            app.get(&path, &stranger.token).send().await.unwrap(),
            StatusCode::FORBIDDEN,
            "NOT_A_MEMBER",
        )
        .await;
    }
    let missing = uuid::Uuid::now_v7();
    for path in [format!("/chat/room/{missing}"), format!("/chat/room/{missing}/members")] {
        expect_problem(
            app.get(&path, &owner.token).send().await.unwrap(),
            StatusCode::NOT_FOUND,
            "ROOM_NOT_FOUND",
        )
        .await;
    }
    let response = app.get("/chat/room/not-a-uuid", &owner.token).send().await.unwrap();
    expect_problem(response, StatusCode::BAD_REQUEST, "VALIDATION_FAILED").await;
}

#[tokio::test]
async fn joining_and_leaving_are_idempotent() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let guest = app.register("guest").await;
    let room = app.create_room(&owner, "lobby").await;

    for _ in 0..2 {
        let response =
            app.post(&format!("/chat/room/{room}/join"), &guest.token, json!({})).send().await.unwrap();
        let joined = expect_status(response, StatusCode::OK).await;
        assert_eq!(joined["memberCount"], 2);
    }
    let members = expect_status(
        app.get(&format!("/chat/room/{room}/members"), &guest.token).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    let names: Vec<&str> =
        members.as_array().unwrap().iter().map(|m| m["username"].as_str().unwrap()).collect();
    assert_eq!(names, ["owner", "guest"]);

    for _ in 0..2 {
        let response =
            app.post(&format!("/chat/room/{room}/leave"), &guest.token, json!({})).send().await.unwrap();
        expect_status(response, StatusCode::NO_CONTENT).await;
    }
    expect_problem(
        app.get(&format!("/chat/room/{room}"), &guest.token).send().await.unwrap(),
        StatusCode::FORBIDDEN,
        "NOT_A_MEMBER",
    )
    .await;
    let room_now = expect_status(
        app.get(&format!("/chat/room/{room}"), &owner.token).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(room_now["memberCount"], 1);

    let missing = uuid::Uuid::now_v7();
    for action in ["join", "leave"] {
        let response = app
            .post(&format!("/chat/room/{missing}/{action}"), &guest.token, json!({}))
            .send()
            .await
            .unwrap();
        expect_problem(response, StatusCode::NOT_FOUND, "ROOM_NOT_FOUND").await;
    }
}

#[tokio::test]
async fn my_rooms_come_most_recently_active_first() {
    let app = spawn_app().await;
    let user = app.register("busy").await;
    let first = app.create_room(&user, "first").await;
    let second = app.create_room(&user, "second").await;
    let third = app.create_room(&user, "third").await;
    let other = app.register("other").await;
    app.create_room(&other, "not mine").await;

    expect_status(app.send(&user, &first, "wake up").await, StatusCode::CREATED).await;
    let rooms =
        expect_status(app.get("/chat/rooms", &user.token).send().await.unwrap(), StatusCode::OK).await;
    let ids: Vec<&str> = rooms.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [first.as_str(), third.as_str(), second.as_str()]);
    assert!(rooms[0]["lastMessageAt"].is_string());
    assert!(rooms[0]["joinedAt"].is_string());
    assert_eq!(rooms[0]["lastSeq"], 1);
}

#[tokio::test]
async fn the_directory_searches_by_prefix_ignoring_case() {
    let app = spawn_app().await;
    let user = app.register("finder").await;
    for name in ["rust", "Rustaceans", "ruby", "go", "rust-lang", "rust_fans", "rustxy"] {
        app.create_room(&user, name).await;
    }
    let names = |body: &Value| -> Vec<String> {
        body.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_owned()).collect()
    };
    let found =
        expect_status(app.get("/chat/directory?q=RUST", &user.token).send().await.unwrap(), StatusCode::OK)
            .await;
    assert_eq!(names(&found), ["rust", "rust-lang", "rust_fans", "Rustaceans", "rustxy"]);
    // `_` is a literal, not a wildcard.
    let found =
        expect_status(app.get("/chat/directory?q=rust_", &user.token).send().await.unwrap(), StatusCode::OK)
            .await;
    assert_eq!(names(&found), ["rust_fans"]);
    let all =
        expect_status(app.get("/chat/directory", &user.token).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(all.as_array().unwrap().len(), 7);
    let limited = expect_status(
        app.get("/chat/directory?q=r&limit=2", &user.token).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(limited.as_array().unwrap().len(), 2);
    for query in ["limit=0", "limit=101", "limit=ten", "limit=-1"] {
        let response = app.get(&format!("/chat/directory?{query}"), &user.token).send().await.unwrap();
        expect_problem(response, StatusCode::BAD_REQUEST, "VALIDATION_FAILED").await;
    }
}
