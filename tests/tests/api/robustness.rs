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
        (Method::POST, "/", "GET, HEAD"),
        (Method::DELETE, "/favicon.ico", "GET, HEAD"),
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

/// Writes `head` and `body` to a fresh connection to `app` and returns the status of the first
/// response and its body. The server may answer and stop reading before the body is written
/// whole, so a failed write is not an error here.
async fn raw_exchange(app: &convo_tests::TestApp, head: &str, body: &[u8]) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.base_url.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let _ = tcp.write_all(body).await;
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let read_all = async {
        loop {
            match tcp.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
            if let Some(answer) = parse_response(&received) {
                return Some(answer);
            }
        }
        parse_response(&received)
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read_all)
        .await
        .expect("the server answers within 10 s")
        .unwrap_or_else(|| panic!("no complete response in {:?}", String::from_utf8_lossy(&received)))
}

/// The status and JSON body of a complete HTTP/1.1 response with a Content-Length, if `bytes`
/// holds one.
fn parse_response(bytes: &[u8]) -> Option<(u16, serde_json::Value)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
        })?
        .parse()
        .ok()?;
    (body.len() >= length).then(|| (status, serde_json::from_str(&body[..length]).unwrap_or_default()))
}

#[tokio::test]
async fn a_chunked_body_over_64_kib_is_refused_over_a_raw_connection() {
    let app = spawn_app().await;
    let head = "POST /auth/register HTTP/1.1\r\nhost: convo\r\ncontent-type: application/json\r\n\
                transfer-encoding: chunked\r\n\r\n";
    let mut body = Vec::new();
    for _ in 0..80 {
        body.extend_from_slice(b"400\r\n");
        body.extend_from_slice(&[b' '; 1024]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let (status, problem) = raw_exchange(&app, head, &body).await;
    assert_eq!(status, 413, "{problem}");
    assert_eq!(problem["code"], "PAYLOAD_TOO_LARGE", "{problem}");
}

#[tokio::test]
async fn bytes_after_a_head_without_length_are_not_read_as_its_body() {
    // HTTP/1.1 has no body without a length: what follows the head is the next request, so
    // the route sees an empty body (400), and the 80 KiB are never buffered as one.
    let app = spawn_app().await;
    let head = "POST /auth/register HTTP/1.1\r\nhost: convo\r\ncontent-type: application/json\r\n\
                connection: close\r\n\r\n";
    let (status, problem) = raw_exchange(&app, head, &[b' '; 80 * 1024]).await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["code"], "VALIDATION_FAILED", "{problem}");
}

#[tokio::test]
async fn an_http2_body_without_length_over_64_kib_is_refused_while_read() {
    use tokio_tungstenite::tungstenite::Bytes;
    static KIB_OF_SPACES: [u8; 1024] = [b' '; 1024];
    let app = spawn_app().await;
    let address = app.base_url.trim_start_matches("http://");
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.expect("the server speaks HTTP/2");
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = poem::http::Request::post(format!("{}/auth/register", app.base_url))
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    // Frames of data with no content-length: the body's size is known only once it has ended.
    let (response, mut stream) = client.send_request(request, false).unwrap();
    for _ in 0..80 {
        stream.send_data(Bytes::from_static(&KIB_OF_SPACES), false).unwrap();
    }
    stream.send_data(Bytes::new(), true).unwrap();
    let response = tokio::time::timeout(std::time::Duration::from_secs(10), response)
        .await
        .expect("answered within 10 s")
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    let problem: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(problem["code"], "PAYLOAD_TOO_LARGE", "{problem}");
}
