//! Support for Convo's black-box tests: [`spawn_app`] starts the real server on a free port
//! against a fresh database of its own and hands back a client for it. Each test owns its server
//! and its data, so the suite runs in parallel. [`redis`] runs several servers on one PostgreSQL
//! database and one Redis (or a Redis of the test's own), and [`ws`] is a WebSocket client.
//!
//! The tests themselves are one binary, `tests/api/main.rs`, with a module per area, so the
//! server is linked once. The load programs in `src/bin` use the same support and run the
//! server as a child process ([`process`]), to measure its CPU apart from their own.
//! [`drill`] runs two such processes on a Redis and a PostgreSQL of its own and breaks them
//! under traffic (`make drill`).

pub mod bench;
pub mod contract;
pub mod drill;
pub mod process;
pub mod redis;
pub mod ws;

use std::collections::HashMap;
use std::time::Duration;

use convo_server::{Config, RunningServer};
use convo_sql::testing::TestDatabase;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

/// Which database a test server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A running server, its database and a client.
#[derive(Debug)]
pub struct TestApp {
    pub base_url: String,
    pub client: reqwest::Client,
    server: Option<RunningServer>,
    /// `None` for a second server on a database another `TestApp` owns.
    _database: Option<TestDatabase>,
    /// The `DATABASE_URL` the server runs on.
    pub database_url: String,
}

/// The configuration of a test server on `database_url`: the test defaults with `vars` on top.
pub fn test_config(database_url: &str, vars: &[(&str, &str)]) -> Config {
    let mut env: HashMap<String, String> = HashMap::from([
        ("DATABASE_URL".to_owned(), database_url.to_owned()),
        ("HOST".to_owned(), "127.0.0.1".to_owned()),
        ("PORT".to_owned(), "0".to_owned()),
        ("JWT_SECRET".to_owned(), JWT_SECRET.to_owned()),
        // Tests register many users from one address; the registration throttle has a test of
        // its own that sets a small budget.
        ("REGISTRATIONS_PER_ADDRESS".to_owned(), "1000000".to_owned()),
    ]);
    env.extend(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    Config::from_lookup(|name| env.get(name).cloned()).expect("test configuration is valid")
}

/// A server on SQLite with the default configuration.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(Backend::Sqlite, &[]).await.expect("SQLite is always available")
}

/// A server on `backend` with extra environment variables; `None` when the backend's service
/// is not running here (outside CI only: under `CI=true` a missing service fails the test).
pub async fn spawn_app_with(backend: Backend, vars: &[(&str, &str)]) -> Option<TestApp> {
    let database = match backend {
        Backend::Sqlite => TestDatabase::sqlite().await,
        Backend::Postgres => TestDatabase::postgres().await?,
    };
    let url = database.url().to_owned();
    Some(start_server(&url, Some(database), vars).await)
}

/// The `JWT_SECRET` of every test server, so that a test can sign a token of its own.
pub const JWT_SECRET: &str = "black-box-tests-secret-of-32-bytes!";

/// Starts a server on `database_url` with the test defaults and `vars` on top; `database`, if
/// given, is dropped (and removed) with the server's [`TestApp`].
pub async fn start_server(
    database_url: &str,
    database: Option<TestDatabase>,
    vars: &[(&str, &str)],
) -> TestApp {
    let config = test_config(database_url, vars);
    let server = convo_server::start(&config, false).await.expect("server starts");
    TestApp {
        base_url: format!("http://{}", server.address()),
        client: reqwest::Client::new(),
        server: Some(server),
        database_url: database_url.to_owned(),
        _database: database,
    }
}

/// A registered user and their token.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub username: String,
    pub email: String,
    pub password: String,
    pub token: String,
}

pub const PASSWORD: &str = "Sup3rSecret";

impl TestApp {
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base_url))
    }

    pub fn get(&self, path: &str, token: &str) -> RequestBuilder {
        self.request(Method::GET, path).bearer_auth(token)
    }

    pub fn post(&self, path: &str, token: &str, body: Value) -> RequestBuilder {
        self.request(Method::POST, path).bearer_auth(token).json(&body)
    }

    /// Registers a user with a name unique to this server.
    pub async fn register(&self, name: &str) -> TestUser {
        let email = format!("{name}@example.com");
        let response = self
            .request(Method::POST, "/auth/register")
            .json(&json!({"email": email, "username": name, "password": PASSWORD}))
            .send()
            .await
            .expect("request");
        let body = expect_status(response, StatusCode::CREATED).await;
        TestUser {
            id: body["user"]["id"].as_str().expect("user id").to_owned(),
            username: name.to_owned(),
            email,
            password: PASSWORD.to_owned(),
            token: body["access_token"].as_str().expect("token").to_owned(),
        }
    }

    /// Logs in again as `user`: a second session.
    pub async fn login(&self, user: &TestUser) -> String {
        let response = self
            .request(Method::POST, "/auth/login")
            .json(&json!({"email": user.email, "password": user.password}))
            .send()
            .await
            .expect("request");
        let body = expect_status(response, StatusCode::OK).await;
        body["access_token"].as_str().expect("token").to_owned()
    }

    /// Creates a room owned by `owner`; returns its id.
    pub async fn create_room(&self, owner: &TestUser, name: &str) -> String {
        let response =
            self.post("/chat/room", &owner.token, json!({"name": name})).send().await.expect("request");
        let body = expect_status(response, StatusCode::CREATED).await;
        body["id"].as_str().expect("room id").to_owned()
    }

    pub async fn join(&self, user: &TestUser, room_id: &str) {
        let response = self
            .post(&format!("/chat/room/{room_id}/join"), &user.token, json!({}))
            .send()
            .await
            .expect("request");
        expect_status(response, StatusCode::OK).await;
    }

    /// Sends a message; returns the response for the test to inspect.
    pub async fn send(&self, user: &TestUser, room_id: &str, content: &str) -> Response {
        self.post("/chat/message", &user.token, json!({"roomId": room_id, "content": content}))
            .send()
            .await
            .expect("request")
    }

    /// The messages of a history query (`query` without the leading `?`).
    pub async fn history(&self, user: &TestUser, query: &str) -> Value {
        let response =
            self.get(&format!("/chat/messages?{query}"), &user.token).send().await.expect("request");
        expect_status(response, StatusCode::OK).await
    }

    /// Stops the server gracefully.
    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("server stops cleanly");
        }
    }
}

/// Asserts the status and returns the JSON body (`null` for an empty one), after checking the
/// response against the OpenAPI document ([`contract::check_response`]).
pub async fn expect_status(response: Response, status: StatusCode) -> Value {
    let actual = response.status();
    let path = response.url().path().to_owned();
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let text = response.text().await.expect("body");
    assert_eq!(actual, status, "unexpected status; body: {text}");
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("JSON body") };
    contract::check_response(&path, actual, content_type.as_deref(), &body);
    body
}

/// How long the tests let an announcement take from one instance to another (a leave, a
/// logout): far more than it takes (well under a millisecond here), and far less than anything
/// an instance remembers is trusted without asking again (5 s at least), so an instance that
/// was never told still fails.
pub const ANNOUNCEMENT_ARRIVES_WITHIN: Duration = Duration::from_secs(1);

/// Sends the request `build` makes until it is answered with `status`, for at most
/// [`ANNOUNCEMENT_ARRIVES_WITHIN`], and returns the last answer (for the caller's checks). For
/// what an instance learns from another's announcement: that reaches it asynchronously, so a
/// request may overtake it.
pub async fn once_announced(build: impl Fn() -> RequestBuilder, status: StatusCode) -> Response {
    let deadline = tokio::time::Instant::now() + ANNOUNCEMENT_ARRIVES_WITHIN;
    loop {
        let response = build().send().await.expect("request");
        if response.status() == status || tokio::time::Instant::now() >= deadline {
            return response;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Asserts an error response: status, problem+json shape and code; returns the problem.
pub async fn expect_problem(response: Response, status: StatusCode, code: &str) -> Value {
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let request_id = response.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let problem = expect_status(response, status).await;
    assert_eq!(content_type, "application/problem+json", "{problem}");
    assert_eq!(problem["code"], code, "{problem}");
    assert_eq!(problem["status"], status.as_u16(), "{problem}");
    assert_eq!(problem["type"], "about:blank");
    assert!(problem["title"].as_str().is_some_and(|t| !t.is_empty()), "{problem}");
    assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()), "{problem}");
    assert_eq!(problem["requestId"].as_str(), request_id.as_deref(), "requestId must match x-request-id");
    problem
}
