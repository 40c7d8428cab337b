//! Registration, login, sessions and logout, end to end.

use convo_tests::{Backend, PASSWORD, expect_problem, expect_status, spawn_app, spawn_app_with};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn registration_returns_a_token_and_the_user_without_secrets() {
    let app = spawn_app().await;
    let response = app
        .request(Method::POST, "/auth/register")
        .json(&json!({"email": "Ada@Example.com", "username": "Ada_L", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let body = expect_status(response, StatusCode::CREATED).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body["access_token"].as_str().is_some_and(|t| t.split('.').count() == 3), "a JWT: {body}");
    let user = &body["user"];
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["username"], "Ada_L");
    assert!(user["createdAt"].as_str().is_some_and(|t| t.ends_with('Z') || t.ends_with("+00:00")), "{user}");
    assert_eq!(user.as_object().unwrap().len(), 4, "only id, email, username, createdAt: {user}");

    let me = expect_status(
        app.get("/auth/me", body["access_token"].as_str().unwrap()).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(&me, user);
}

#[tokio::test]
async fn email_and_username_are_unique_whatever_their_case() {
    let app = spawn_app().await;
    app.register("grace").await;
    let register = |email: &str, username: &str| {
        app.request(Method::POST, "/auth/register")
            .json(&json!({"email": email, "username": username, "password": PASSWORD}))
            .send()
    };
    expect_problem(
        register("GRACE@example.COM", "other").await.unwrap(),
        StatusCode::CONFLICT,
        "EMAIL_TAKEN",
    )
    .await;
    expect_problem(
        register("new@example.com", "GRACE").await.unwrap(),
        StatusCode::CONFLICT,
        "USERNAME_TAKEN",
    )
    .await;
}

#[tokio::test]
async fn registration_validation_names_the_field() {
    let app = spawn_app().await;
    let cases = [
        (json!({"email": "not-an-email", "username": "valid_1", "password": PASSWORD}), "email"),
        (
            json!({"email": format!("{}@example.com", "a".repeat(250)), "username": "valid_1", "password": PASSWORD}),
            "email",
        ),
        (json!({"email": "a@example.com", "username": "ab", "password": PASSWORD}), "username"),
        (json!({"email": "a@example.com", "username": "has space", "password": PASSWORD}), "username"),
        (json!({"email": "a@example.com", "username": "x".repeat(21), "password": PASSWORD}), "username"),
        (json!({"email": "a@example.com", "username": "valid_1", "password": "Sh0rt"}), "password"),
        (json!({"email": "a@example.com", "username": "valid_1", "password": "nouppercase1"}), "password"),
        (json!({"email": "a@example.com", "username": "valid_1", "password": "NOLOWERCASE1"}), "password"),
        (json!({"email": "a@example.com", "username": "valid_1", "password": "NoDigitsHere"}), "password"),
        (json!({"email": "a@example.com", "username": "valid_1"}), "password"),
        (json!({"email": "a@example.com", "username": 42, "password": PASSWORD}), "username"),
    ];
    for (body, field) in cases {
        let response = app.request(Method::POST, "/auth/register").json(&body).send().await.unwrap();
        let problem = expect_problem(response, StatusCode::BAD_REQUEST, "VALIDATION_FAILED").await;
        assert!(problem["detail"].as_str().unwrap().contains(field), "{field}: {problem}");
    }
}

#[tokio::test]
async fn unknown_email_and_wrong_password_get_the_same_answer() {
    let app = spawn_app().await;
    let user = app.register("hopper").await;
    let login = |email: &str, password: &str| {
        app.request(Method::POST, "/auth/login").json(&json!({"email": email, "password": password})).send()
    };
    let wrong = expect_problem(
        login(&user.email, "Wr0ngPassword").await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "INVALID_CREDENTIALS",
    )
    .await;
    let unknown = expect_problem(
        login("nobody@example.com", PASSWORD).await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "INVALID_CREDENTIALS",
    )
    .await;
    assert_eq!(wrong["detail"], unknown["detail"]);

    let ok = expect_status(login("HOPPER@example.com", PASSWORD).await.unwrap(), StatusCode::OK).await;
    assert_eq!(ok["user"]["id"], user.id.as_str());
}

#[tokio::test]
async fn failed_logins_are_throttled_per_email_and_successes_do_not_count() {
    let app = spawn_app().await;
    let user = app.register("turing").await;
    let login = |password: &'static str| {
        app.request(Method::POST, "/auth/login")
            .json(&json!({"email": user.email, "password": password}))
            .send()
    };
    // Successful logins never count.
    for _ in 0..6 {
        expect_status(login(PASSWORD).await.unwrap(), StatusCode::OK).await;
    }
    for _ in 0..5 {
        expect_problem(
            login("Wr0ngPassword").await.unwrap(),
            StatusCode::UNAUTHORIZED,
            "INVALID_CREDENTIALS",
        )
        .await;
    }
    // Past the budget even the right password waits for the window to end.
    let response = login(PASSWORD).await.unwrap();
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    expect_problem(response, StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_ATTEMPTS").await;

    // Another email is not affected.
    let other = app.register("lovelace").await;
    app.login(&other).await;
}

#[tokio::test]
async fn a_token_needs_a_live_session() {
    let app = spawn_app().await;
    expect_problem(
        app.request(Method::GET, "/auth/me").send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;
    for token in ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."] {
        expect_problem(
            app.get("/auth/me", token).send().await.unwrap(),
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
        )
        .await;
    }
    let response = app
        .request(Method::GET, "/auth/me")
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
}

#[tokio::test]
async fn logout_revokes_only_its_own_session() {
    let app = spawn_app().await;
    let user = app.register("knuth").await;
    let second = app.login(&user).await;

    expect_status(
        app.post("/auth/logout", &user.token, json!({})).send().await.unwrap(),
        StatusCode::NO_CONTENT,
    )
    .await;
    expect_problem(
        app.get("/auth/me", &user.token).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;
    expect_status(app.get("/auth/me", &second).send().await.unwrap(), StatusCode::OK).await;
    // A revoked token cannot log out again.
    expect_problem(
        app.post("/auth/logout", &user.token, json!({})).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;
}

#[tokio::test]
async fn logout_all_revokes_every_session_of_the_user_only() {
    let app = spawn_app().await;
    let user = app.register("dijkstra").await;
    let second = app.login(&user).await;
    let other = app.register("hoare").await;

    expect_status(
        app.post("/auth/logout-all", &second, json!({})).send().await.unwrap(),
        StatusCode::NO_CONTENT,
    )
    .await;
    for token in [&user.token, &second] {
        expect_problem(
            app.get("/auth/me", token).send().await.unwrap(),
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
        )
        .await;
    }
    expect_status(app.get("/auth/me", &other.token).send().await.unwrap(), StatusCode::OK).await;
    // Logging in again works.
    let fresh = app.login(&user).await;
    expect_status(app.get("/auth/me", &fresh).send().await.unwrap(), StatusCode::OK).await;
}

#[tokio::test]
async fn sessions_end_after_the_ttl_without_activity_and_slide_with_it() {
    let app =
        convo_tests::spawn_app_with(convo_tests::Backend::Sqlite, &[("SESSION_TTL", "2")]).await.unwrap();
    let user = app.register("sliding").await;
    let idle = app.login(&user).await;
    // Activity every second keeps one session alive past the TTL; the idle one ends.
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
        expect_status(app.get("/auth/me", &user.token).send().await.unwrap(), StatusCode::OK).await;
    }
    expect_problem(
        app.get("/auth/me", &idle).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;
}

#[tokio::test]
async fn parallel_wrong_guesses_for_one_email_spend_the_budget_once() {
    let app = spawn_app().await;
    let user = app.register("shannon").await;
    let guesses = (0..20).map(|n| {
        app.request(Method::POST, "/auth/login")
            .json(&json!({"email": user.email, "password": format!("Gu3ss-number-{n}")}))
            .send()
    });
    let responses = futures_util::future::join_all(guesses).await;
    let (mut wrong, mut throttled) = (0, 0);
    for response in responses {
        let response = response.unwrap();
        match response.status() {
            StatusCode::UNAUTHORIZED => {
                wrong += 1;
                expect_problem(response, StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS").await;
            }
            StatusCode::TOO_MANY_REQUESTS => {
                throttled += 1;
                let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=900).contains(&retry_after), "{retry_after}");
                expect_problem(response, StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_ATTEMPTS").await;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((wrong, throttled), (5, 15), "only the budget of 5 was checked against the hash");
}

#[tokio::test]
async fn registrations_are_throttled_per_client_address() {
    let app = spawn_app_with(Backend::Sqlite, &[("REGISTRATIONS_PER_ADDRESS", "3")]).await.unwrap();
    let first = app.register("reg_one").await;
    for name in ["reg_two", "reg_three"] {
        app.register(name).await;
    }
    let response = app
        .request(Method::POST, "/auth/register")
        .json(&json!({"email": "reg_four@example.com", "username": "reg_four", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    expect_problem(response, StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_ATTEMPTS").await;
    // Logins have budgets of their own.
    app.login(&first).await;
}

/// A registration attempt of `name` that says it was forwarded for `forwarded`; its status.
async fn register_forwarded_for(app: &convo_tests::TestApp, name: &str, forwarded: &str) -> StatusCode {
    app.request(Method::POST, "/auth/register")
        .header("x-forwarded-for", forwarded)
        .json(&json!({"email": format!("{name}@example.com"), "username": name, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
    // The test client connects from 127.0.0.1, which no proxy list names here.
    let app = spawn_app_with(Backend::Sqlite, &[("REGISTRATIONS_PER_ADDRESS", "2")]).await.unwrap();
    assert_eq!(register_forwarded_for(&app, "spoof_a", "203.0.113.1").await, StatusCode::CREATED);
    assert_eq!(register_forwarded_for(&app, "spoof_b", "203.0.113.2").await, StatusCode::CREATED);
    // A made-up address does not buy a fresh budget.
    assert_eq!(register_forwarded_for(&app, "spoof_c", "203.0.113.3").await, StatusCode::TOO_MANY_REQUESTS);
    let app = spawn_app_with(
        Backend::Sqlite,
        &[("REGISTRATIONS_PER_ADDRESS", "2"), ("TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.1")],
    )
    .await
    .unwrap();
    assert_eq!(register_forwarded_for(&app, "spoof_d", "203.0.113.1").await, StatusCode::CREATED);
    assert_eq!(register_forwarded_for(&app, "spoof_e", "203.0.113.2").await, StatusCode::CREATED);
    assert_eq!(register_forwarded_for(&app, "spoof_f", "203.0.113.3").await, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[("REGISTRATIONS_PER_ADDRESS", "2"), ("TRUSTED_PROXIES", "127.0.0.1/32, 10.0.0.0/8")],
    )
    .await
    .unwrap();
    for name in ["fwd_a1", "fwd_a2"] {
        assert_eq!(register_forwarded_for(&app, name, "203.0.113.1").await, StatusCode::CREATED);
    }
    assert_eq!(register_forwarded_for(&app, "fwd_a3", "203.0.113.1").await, StatusCode::TOO_MANY_REQUESTS);
    // Another client behind the same proxy is counted apart.
    assert_eq!(register_forwarded_for(&app, "fwd_b1", "203.0.113.2").await, StatusCode::CREATED);
    // What a client writes left of the address the proxies saw does not count: this is still
    // 203.0.113.1 (behind a second, trusted hop).
    let spoofed = "198.51.100.7, 203.0.113.1, 10.0.0.5";
    assert_eq!(register_forwarded_for(&app, "fwd_a4", spoofed).await, StatusCode::TOO_MANY_REQUESTS);
    // Without the header, the proxy itself is the client.
    assert_eq!(
        app.request(Method::POST, "/auth/register")
            .json(&json!({"email": "fwd_p@example.com", "username": "fwd_p", "password": PASSWORD}))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
}
