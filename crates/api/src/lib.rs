//! # Convo's HTTP API
//!
//! The inbound adapter of the hexagon: REST routes with poem-openapi, Swagger UI at `/docs`, the
//! OpenAPI document at `/openapi.json`, `/metrics`, the WebSocket gateway at `/ws`, and the web
//! client at `/` ([`web`]). It
//! depends only on the domain's inbound ports (the `AuthService`, `RoomService`,
//! `MessageService` and `LiveService` traits) and knows no adapter: the server crate hands it an
//! [`AppState`] holding the use cases as trait objects, built from whichever adapters the
//! configuration chose; a test hands it mocks, one per service (see `tests/routes.rs`).
//!
//! Every error of every route leaves through one place, the [`edge`] middleware, as RFC 9457
//! problem details with a stable `code` and the request's `x-request-id`.
//!
//! This crate owns the wire: the stable error codes ([`ErrorCode`], each domain error mapped to
//! its code and status once, in [`problem`], for REST and WebSocket frames alike), the names
//! requests give the inputs the domain validates ([`field`]), and the JSON shapes of both
//! transports.

pub mod allow;
pub mod auth;
pub mod client_address;
pub mod edge;
pub mod field;
pub mod health;
pub mod json_body;
pub mod message_json;
pub mod messages;
pub mod metrics;
pub mod problem;
pub mod rooms;
pub mod rules;
pub mod state;
pub mod web;
pub mod ws;

use std::sync::Arc;

use poem::endpoint::BoxEndpoint;
use poem::middleware::Cors;
use poem::{EndpointExt, Response, Route, get};
use poem_openapi::{OpenApiService, Tags};

use crate::allow::AllowedMethods;

pub use client_address::TrustedProxies;
pub use edge::{MAX_BODY_BYTES, REQUEST_ID_HEADER};
pub use metrics::Metrics;
pub use problem::{ApiError, ErrorCode, Problem};
pub use state::AppState;

#[derive(Tags)]
pub(crate) enum ApiTags {
    /// Accounts, sessions and tokens.
    Auth,
    /// Rooms and memberships.
    Rooms,
    /// Sending and reading messages.
    Messages,
    /// Liveness and readiness.
    Health,
}

type Apis = (auth::AuthApi, rooms::RoomApi, messages::MessageApi, health::HealthApi);

const DESCRIPTION: &str = "\
Convo is a chat backend: accounts and sessions, rooms with members, and messages with a \
per-room sequence number (`seq`).

**Errors.** Every error is `application/problem+json` with a stable `code` to switch on and the \
`requestId` of the request (also in the `x-request-id` header of every response).

**Sessions.** `access_token` is a JWT naming a server-side session; it is accepted while the \
session lives. Each authenticated request extends the session to `expires_in` seconds from then. \
`POST /auth/logout` ends one session, `POST /auth/logout-all` every session of the user.

**Limits.** Sending is limited per user (`RATE_LIMIT_POINTS` per `RATE_LIMIT_DURATION` seconds); \
failed logins per email and per client address; registrations per client address. All answer \
429 with `Retry-After`. When password hashing is saturated, register and login answer 503 \
`SERVICE_UNAVAILABLE` with `Retry-After`. Request bodies are limited to 64 KiB.";

/// The OpenAPI service: every REST operation, with no state attached (handlers read the
/// [`AppState`] from the route), so the document can be produced without any adapter.
pub fn openapi_service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (auth::AuthApi, rooms::RoomApi, messages::MessageApi, health::HealthApi),
        "Convo",
        env!("CARGO_PKG_VERSION"),
    )
    .description(DESCRIPTION)
}

/// The OpenAPI document as served at `/openapi.json` and committed at `openapi/openapi.json`.
pub fn openapi_json() -> String {
    openapi_service().spec()
}

/// How the HTTP surface is set up, beyond the domain services.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Origins allowed to call the API from a browser; empty allows none.
    pub cors_origins: Vec<String>,
    /// Frames a WebSocket may have queued before it is closed with 4008.
    pub ws_outbound_queue: usize,
    /// Closes every WebSocket with 1001 when triggered.
    pub shutdown: ws::Shutdown,
    /// Proxies whose `X-Forwarded-For` names the client; none by default.
    pub trusted_proxies: TrustedProxies,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            cors_origins: Vec::new(),
            ws_outbound_queue: 4096,
            shutdown: ws::Shutdown::new(),
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

/// The whole HTTP application: REST, docs, document, metrics and the web client, behind the edge
/// middleware.
pub fn app(state: AppState, settings: &HttpSettings) -> BoxEndpoint<'static, Response> {
    let metrics = Arc::new(Metrics::default());
    let gateway = ws::Gateway::new(
        state.auth.clone(),
        state.rooms.clone(),
        state.messages.clone(),
        state.live.clone(),
        settings.ws_outbound_queue,
        &settings.shutdown,
        metrics.clone(),
    );
    let api = openapi_service();
    let allowed = Arc::new(AllowedMethods::from_document(&api.spec()));
    let docs = api.swagger_ui();
    let document = api.spec_endpoint();
    let routes = Route::new()
        .nest("/", api)
        .nest("/docs", docs)
        .at("/openapi.json", document)
        .at("/metrics", get(metrics::metrics_endpoint))
        .at("/ws", get(ws::endpoint))
        .data(gateway)
        .data(state)
        .data(metrics.clone());
    let cors = (!settings.cors_origins.is_empty()).then(|| {
        Cors::new()
            .allow_origins(settings.cors_origins.iter().map(String::as_str))
            .expose_header(REQUEST_ID_HEADER)
    });
    routes
        .with(web::WebClient)
        .with_if(cors.is_some(), cors.unwrap_or_default())
        .with(edge::Edge::new(metrics, allowed, settings.trusted_proxies.clone()))
        .boxed()
}
