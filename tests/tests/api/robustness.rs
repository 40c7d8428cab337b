//! No input makes a route answer 500 or hang: malformed JSON, wrong types, bad ids, unknown
//! query values, oversized bodies, missing or garbage tokens. Every refusal is a problem.

use convo_tests::{expect_problem, expect_status, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn malformed_requests_get_a_problem_never_a_500() {
    let app = spawn_app().await;
    let user = app.register("fuzzer").await;
    let room = app.create_room(&user, "target").await;
    let message = expect_status(app.send(&user, &room, "hello").await, StatusCode::CREATED).await;
    let message_id = message["id"].as_str().unwrap().to_owned();

    // (method, path, content type, body, expected status)
    let json_type = Some("application/json");
    let cases: Vec<(Method, String, Option<&str>, String, StatusCode)> = vec![
        (Method::POST, "/auth/register".into(), json_type, "{".into(), StatusCode::BAD_REQUEST),
        (Method::POST, "/auth/register".into(), json_type, "null".into(), StatusCode::BAD_REQUEST),
        (Method::POST, "/auth/register".into(), json_type, "[]".into(), StatusCode::BAD_REQUEST),
        (Method::POST, "/auth/register".into(), json_type, "".into(), StatusCode::BAD_REQUEST),
        (Method::POST, "/auth/register".into(), Some("text/plain"), "{}".into(), StatusCode::BAD_REQUEST),
        (
            Method::POST,
            "/auth/register".into(),
            None,
            r#"{"email":"a@b.co"}"#.into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/auth/login".into(),
            json_type,
            r#"{"email":1,"password":true}"#.into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/auth/login".into(),
            json_type,
            r#"{"email":"a@b.co","password":""}"#.into(),
            StatusCode::BAD_REQUEST,
        ),
        (Method::POST, "/auth/login".into(), json_type, "\u{0}\u{1}".into(), StatusCode::BAD_REQUEST),
        (Method::POST, "/chat/room".into(), json_type, r#"{"name":["a"]}"#.into(), StatusCode::BAD_REQUEST),
        (
            Method::POST,
            "/chat/message".into(),
            json_type,
            r#"{"roomId":12,"content":"x"}"#.into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/chat/message".into(),
            json_type,
            format!(r#"{{"roomId":"{room}","content":{{"a":1}}}}"#),
            StatusCode::BAD_REQUEST,
        ),
        (Method::GET, "/chat/room/12345".into(), None, String::new(), StatusCode::BAD_REQUEST),
        (Method::GET, "/chat/room/%ZZ".into(), None, String::new(), StatusCode::BAD_REQUEST),
        (Method::POST, "/chat/room/not-a-uuid/join".into(), None, String::new(), StatusCode::BAD_REQUEST),
        (
            Method::PATCH,
            "/chat/message/xyz".into(),
            json_type,
            r#"{"content":"x"}"#.into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::PATCH,
            format!("/chat/message/{message_id}"),
            json_type,
            r#"{"content":null}"#.into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::DELETE,
            "/chat/message/00000000-0000-0000-0000-00000000000g".into(),
            None,
            String::new(),
            StatusCode::BAD_REQUEST,
        ),
        (Method::GET, "/chat/messages".into(), None, String::new(), StatusCode::BAD_REQUEST),
        (
            Method::GET,
            format!("/chat/messages?roomId={room}&limit=1e3"),
            None,
            String::new(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            format!("/chat/messages?roomId={room}&before=99999999999999999999"),
            None,
            String::new(),
            StatusCode::BAD_REQUEST,
        ),
        (Method::GET, "/chat/messages?roomId=nope".into(), None, String::new(), StatusCode::BAD_REQUEST),
        (Method::GET, "/chat/directory?limit=abc".into(), None, String::new(), StatusCode::BAD_REQUEST),
        (
            Method::GET,
            format!("/chat/directory?q={}", "x".repeat(51)),
            None,
            String::new(),
            StatusCode::BAD_REQUEST,
        ),
        (Method::GET, "/no/such/route".into(), None, String::new(), StatusCode::NOT_FOUND),
        (Method::PUT, "/chat/room".into(), json_type, "{}".into(), StatusCode::METHOD_NOT_ALLOWED),
    ];
    for (method, path, content_type, body, expected) in cases {
        let mut request = app.request(method.clone(), &path).bearer_auth(&user.token).body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let code = match expected {
            StatusCode::NOT_FOUND => "NOT_FOUND",
            StatusCode::METHOD_NOT_ALLOWED => "METHOD_NOT_ALLOWED",
            _ => "VALIDATION_FAILED",
        };
        assert!(status.as_u16() < 500, "{method} {path} {body:?} answered {status}");
        expect_problem(response, expected, code).await;
    }
}

#[tokio::test]
async fn a_method_the_route_does_not_answer_is_405_with_the_methods_it_does() {
    let app = spawn_app().await;
    let user = app.register("lost").await;
    let cases = [
        (Method::PUT, "/chat/room", "POST"),
        (Method::GET, "/chat/message", "POST"),
        (Method::PUT, "/chat/message/0193d6a0-0000-7000-8000-000000000000", "PATCH, DELETE"),
        (Method::DELETE, "/chat/messages", "GET, HEAD"),
        (Method::POST, "/ws", "GET, HEAD"),
        (Method::POST, "/metrics", "GET, HEAD"),
    ];
    for (method, path, allow) in cases {
        let response = app.request(method.clone(), path).bearer_auth(&user.token).send().await.unwrap();
        let header = response.headers().get("allow").map(|value| value.to_str().unwrap().to_owned());
        assert_eq!(header.as_deref(), Some(allow), "{method} {path}");
        expect_problem(response, StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED").await;
    }
}

#[tokio::test]
async fn bodies_over_64_kib_are_refused_with_413() {
    let app = spawn_app().await;
    let user = app.register("bulky").await;
    let room = app.create_room(&user, "big").await;
    let huge = "x".repeat(64 * 1024 + 1);
    let response = app
        .post("/chat/message", &user.token, json!({"roomId": room, "content": huge}))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE").await;

    // The same without a Content-Length: a chunked body is cut off while it is read.
    let chunks = futures_util::stream::iter((0..80).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])));
    let response = app
        .request(Method::POST, "/auth/register")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE").await;
    // Nothing was stored.
    let page = app.history(&user, &format!("roomId={room}")).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn every_authenticated_route_refuses_missing_and_garbage_tokens() {
    let app = spawn_app().await;
    let id = uuid::Uuid::now_v7();
    let routes = [
        (Method::POST, "/auth/logout".to_owned()),
        (Method::POST, "/auth/logout-all".to_owned()),
        (Method::GET, "/auth/me".to_owned()),
        (Method::POST, "/chat/room".to_owned()),
        (Method::GET, "/chat/rooms".to_owned()),
        (Method::GET, "/chat/directory".to_owned()),
        (Method::GET, format!("/chat/room/{id}")),
        (Method::POST, format!("/chat/room/{id}/join")),
        (Method::POST, format!("/chat/room/{id}/leave")),
        (Method::GET, format!("/chat/room/{id}/members")),
        (Method::POST, "/chat/message".to_owned()),
        (Method::GET, format!("/chat/messages?roomId={id}")),
        (Method::PATCH, format!("/chat/message/{id}")),
        (Method::DELETE, format!("/chat/message/{id}")),
    ];
    for (method, path) in routes {
        for authorization in [None, Some("Bearer"), Some("Bearer garbage"), Some("Token abc")] {
            let mut request =
                app.request(method.clone(), &path).json(&json!({"name": "x", "content": "x", "roomId": id}));
            if let Some(value) = authorization {
                request = request.header("authorization", value);
            }
            let response = request.send().await.unwrap();
            expect_problem(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
        }
    }
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_echoes_the_callers() {
    let app = spawn_app().await;
    let response =
        app.request(Method::GET, "/health").header("x-request-id", "trace-123").send().await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-123");
    let response =
        app.request(Method::GET, "/nowhere").header("x-request-id", "trace-456").send().await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-456");
    let problem = expect_problem(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    assert_eq!(problem["requestId"], "trace-456");
    let response = app.request(Method::GET, "/health").send().await.unwrap();
    let generated = response.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");
}
