//! What operators and tools use: health, readiness, metrics, the OpenAPI document, Swagger UI,
//! CORS and graceful shutdown.

use convo_tests::{Backend, expect_status, spawn_app, spawn_app_with};
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    let health =
        expect_status(app.request(Method::GET, "/health").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(health["status"], "ok");
    let ready = expect_status(app.request(Method::GET, "/ready").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(ready["status"], "ready");
    assert!(ready["checked"].as_array().unwrap().contains(&"database".into()), "{ready}");
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = spawn_app().await;
    for _ in 0..3 {
        app.request(Method::GET, "/health").send().await.unwrap();
    }
    app.request(Method::GET, "/auth/me").send().await.unwrap();
    let response = app.request(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(
        text.contains(r#"convo_http_requests_total{method="GET",route="getHealth",status="200"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"convo_http_requests_total{method="GET",route="getCurrentUser",status="401"} 1"#),
        "{text}"
    );
    assert!(text.contains("convo_http_request_duration_seconds_bucket"), "{text}");
}

/// The label sets of the request counter, without their counts.
async fn request_series(app: &convo_tests::TestApp) -> std::collections::BTreeSet<String> {
    let text = app.request(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|line| line.starts_with("convo_http_requests_total{"))
        .filter_map(|line| line.rsplit_once(' ').map(|(labels, _count)| labels.to_owned()))
        .collect()
}

/// Requests with made-up methods and paths, different in each `round`.
async fn made_up_requests(app: &convo_tests::TestApp, round: u32) {
    for (method, path) in [
        (format!("FROBNICATE{round}"), format!("/chat/messages?x={round}")),
        (format!("BREW{round}"), format!("/nowhere/{round}")),
        ("GET".to_owned(), format!("/made-up-{round}/{}", uuid::Uuid::now_v7())),
        ("POST".to_owned(), format!("/docs-not/{round}")),
    ] {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let response = app.request(method, &path).send().await.unwrap();
        assert!(response.status().is_client_error(), "{path}: {}", response.status());
    }
}

#[tokio::test]
async fn made_up_methods_and_paths_add_no_series() {
    let app = spawn_app().await;
    request_series(&app).await;
    made_up_requests(&app, 1).await;
    let first = request_series(&app).await;
    made_up_requests(&app, 2).await;
    made_up_requests(&app, 3).await;
    let later = request_series(&app).await;
    assert_eq!(first, later, "new requests of the same kinds must not add series");
    let all = first.iter().cloned().collect::<Vec<_>>().join("\n");
    for invented in ["FROBNICATE", "BREW", "nowhere", "made-up"] {
        assert!(!all.contains(invented), "{invented} reached a label:\n{all}");
    }
    assert!(all.contains(r#"method="OTHER""#), "{all}");
    assert!(all.contains(r#"route="unmatched""#), "{all}");
}

#[tokio::test]
async fn the_served_document_is_the_committed_one_and_swagger_ui_is_up() {
    let app = spawn_app().await;
    let served = app.request(Method::GET, "/openapi.json").send().await.unwrap().text().await.unwrap();
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/openapi.json")).unwrap();
    let served: serde_json::Value = serde_json::from_str(&served).unwrap();
    let committed: serde_json::Value = serde_json::from_str(&committed).unwrap();
    assert_eq!(served, committed);

    let docs = app.request(Method::GET, "/docs").send().await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.unwrap().contains("swagger"), "Swagger UI page");
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let app = spawn_app_with(Backend::Sqlite, &[("CORS_ORIGINS", "https://chat.example.com")]).await.unwrap();
    let preflight = |origin: &'static str| {
        app.request(Method::OPTIONS, "/auth/login")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight("https://chat.example.com").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://chat.example.com");
    let refused = preflight("https://evil.example.com").await.unwrap();
    assert!(refused.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let app = spawn_app().await;
    // A request whose body is still arriving when the server is told to stop.
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
    });
    let request = app
        .request(Method::POST, "/auth/register")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(body))
        .send();
    let in_flight = tokio::spawn(request);
    tx.send(br#"{"email": "late@example.com", "#.to_vec()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let stopping = tokio::spawn(app.stop());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!stopping.is_finished(), "the server waits for the request in flight");
    tx.send(format!(r#""username": "late", "password": "{}"}}"#, convo_tests::PASSWORD).into_bytes())
        .await
        .unwrap();
    drop(tx);

    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    stopping.await.unwrap();
}
