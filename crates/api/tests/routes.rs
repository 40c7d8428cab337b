//! A route tested on its own: the use cases behind it are inbound ports, so a test hands the api
//! one mock per service it touches, and nothing else is built.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use convo_api::{AppState, HttpSettings};
use convo_domain::auth::MockAuthService;
use convo_domain::chat::{MockLiveService, MockMessageService, MockRoomService};
use convo_domain::{AccessGrant, DomainError, Principal, RoomId, RoomName, RoomRef, SessionId, UserId};
use poem::Response;
use poem::endpoint::BoxEndpoint;
use poem::http::StatusCode;
use poem::test::TestClient;
use serde_json::json;

const TOKEN: &str = "a-token";

/// An auth service that knows one token, naming `user`.
fn auth_for(user: UserId) -> MockAuthService {
    let mut auth = MockAuthService::new();
    auth.expect_authenticate().withf(|token| token == TOKEN).returning(move |_| {
        Ok(AccessGrant {
            principal: Principal { user_id: user, session_id: SessionId::generate() },
            issued_at: DateTime::UNIX_EPOCH,
            expires_at: DateTime::<Utc>::MAX_UTC,
        })
    });
    auth
}

fn client(
    auth: MockAuthService,
    rooms: MockRoomService,
    messages: MockMessageService,
) -> TestClient<BoxEndpoint<'static, Response>> {
    let state = AppState {
        auth: Arc::new(auth),
        rooms: Arc::new(rooms),
        messages: Arc::new(messages),
        live: Arc::new(MockLiveService::new()),
        probes: Vec::new(),
    };
    TestClient::new(convo_api::app(state, &HttpSettings::default()))
}

#[tokio::test]
async fn create_room_answers_201_with_the_room_the_service_created() {
    let user = UserId::generate();
    let room_id = RoomId::generate();
    let mut rooms = MockRoomService::new();
    rooms
        .expect_create_room()
        .withf(move |owner, name| *owner == user && name.as_str() == "general")
        .times(1)
        .returning(move |owner, name| {
            Ok(convo_domain::Room {
                id: room_id,
                name,
                owner_id: owner,
                created_at: Utc.timestamp_opt(1_800_000_000, 0).unwrap(),
                member_count: 1,
                last_seq: 0,
            })
        });

    let response = client(auth_for(user), rooms, MockMessageService::new())
        .post("/chat/room")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body_json(&json!({"name": "  general "}))
        .send()
        .await;

    response.assert_status(StatusCode::CREATED);
    let body: serde_json::Value = response.0.into_body().into_json().await.expect("json");
    assert_eq!(body["id"], room_id.to_string());
    assert_eq!(body["name"], "general");
    assert_eq!(body["ownerId"], user.to_string());
}

#[tokio::test]
async fn history_refused_by_the_service_is_403_not_a_member() {
    let user = UserId::generate();
    let mut messages = MockMessageService::new();
    messages
        .expect_history()
        .withf(|_, room, query| {
            *room == RoomRef::Name(RoomName::parse("general").unwrap()) && query.limit == 10
        })
        .times(1)
        .returning(|_, _, _| Err(DomainError::NotAMember));

    let response = client(auth_for(user), MockRoomService::new(), messages)
        .get("/chat/messages")
        .query("chatRoomName", &"general")
        .query("limit", &10)
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await;

    response.assert_status(StatusCode::FORBIDDEN);
    response.assert_content_type("application/problem+json");
    let body: serde_json::Value = response.0.into_body().into_json().await.expect("json");
    assert_eq!(body["code"], "NOT_A_MEMBER");
}
