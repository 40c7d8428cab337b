//! `/ready` answers 503 naming each dependency that fails its probe, and 200 listing them all
//! when every one answers.

use std::sync::Arc;

use convo_api::{AppState, HttpSettings};
use convo_domain::auth::MockAuthService;
use convo_domain::chat::{MockLiveService, MockMessageService, MockRoomService};
use convo_domain::health::MockProbe;
use convo_domain::{DomainError, Probe};
use poem::http::StatusCode;
use poem::test::TestClient;

fn probe(name: &'static str, up: bool) -> Arc<dyn Probe> {
    let mut probe = MockProbe::new();
    probe.expect_name().return_const(name);
    probe.expect_check().returning(move || {
        if up { Ok(()) } else { Err(DomainError::unavailable(name, "connection refused")) }
    });
    Arc::new(probe)
}

/// Use cases that expect no call: readiness must not touch them.
fn state(probes: Vec<Arc<dyn Probe>>) -> AppState {
    AppState {
        auth: Arc::new(MockAuthService::new()),
        rooms: Arc::new(MockRoomService::new()),
        messages: Arc::new(MockMessageService::new()),
        live: Arc::new(MockLiveService::new()),
        probes,
    }
}

#[tokio::test]
async fn ready_lists_every_dependency_when_all_answer() {
    let client = TestClient::new(convo_api::app(
        state(vec![probe("database", true), probe("cache", true)]),
        &HttpSettings::default(),
    ));
    let response = client.get("/ready").send().await;
    response.assert_status_is_ok();
    response.assert_json(serde_json::json!({"status": "ready", "checked": ["database", "cache"]})).await;
}

#[tokio::test]
async fn ready_is_503_naming_the_dependencies_that_failed() {
    let client = TestClient::new(convo_api::app(
        state(vec![probe("database", false), probe("cache", true)]),
        &HttpSettings::default(),
    ));
    let response = client.get("/ready").send().await;
    response.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    response.assert_content_type("application/problem+json");
    let body: serde_json::Value = response.0.into_body().into_json().await.expect("json");
    assert_eq!(body["code"], "SERVICE_UNAVAILABLE");
    assert_eq!(body["detail"], "unreachable: database");
}
