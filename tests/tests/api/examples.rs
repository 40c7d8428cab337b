//! The request examples of the OpenAPI document, which Swagger UI pre-fills for "Try it out",
//! are requests the server accepts, sent in the order a newcomer would try them.

use convo_tests::{expect_status, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::Value;

#[tokio::test]
async fn every_request_example_is_accepted_in_the_order_of_a_first_visit() {
    let app = spawn_app().await;
    let document: Value =
        app.request(Method::GET, "/openapi.json").send().await.unwrap().json().await.unwrap();
    let example = |schema: &str| {
        let example = document["components"]["schemas"][schema]["example"].clone();
        assert!(example.is_object(), "{schema} has no example");
        example
    };
    let with_examples = document["components"]["schemas"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, schema)| name.ends_with("Request") && schema.get("example").is_some())
        .count();
    assert_eq!(with_examples, 5, "a request schema was added: give it an example and try it here");

    let registered =
        app.request(Method::POST, "/auth/register").json(&example("RegisterRequest")).send().await;
    expect_status(registered.unwrap(), StatusCode::CREATED).await;
    let logged_in = app.request(Method::POST, "/auth/login").json(&example("LoginRequest")).send().await;
    let token =
        expect_status(logged_in.unwrap(), StatusCode::OK).await["access_token"].as_str().unwrap().to_owned();
    let created = app.post("/chat/room", &token, example("CreateRoomRequest")).send().await.unwrap();
    expect_status(created, StatusCode::CREATED).await;
    let sent = app.post("/chat/message", &token, example("SendMessageRequest")).send().await.unwrap();
    let message = expect_status(sent, StatusCode::CREATED).await;
    let edited = app
        .request(Method::PATCH, &format!("/chat/message/{}", message["id"].as_str().unwrap()))
        .bearer_auth(&token)
        .json(&example("EditMessageRequest"))
        .send()
        .await
        .unwrap();
    expect_status(edited, StatusCode::OK).await;
}
