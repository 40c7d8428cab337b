//! The edge middleware, wrapped around every route: it gives each request an id, settles which
//! address it comes from, refuses bodies over 64 KiB, turns every error into a problem response
//! carrying that id, records metrics and logs one line per request.

use std::sync::Arc;
use std::time::Instant;

use poem::http::header::{ALLOW, CONTENT_LENGTH};
use poem::http::{HeaderValue, StatusCode};
use poem::{Body, Endpoint, IntoResponse, Middleware, Request, Response, Result};
use poem_openapi::OperationId;
use tracing::Instrument;

use crate::allow::AllowedMethods;
use crate::client_address::{ClientAddress, TrustedProxies};
use crate::metrics::Metrics;
use crate::problem::{ApiError, ErrorCode};

pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Request bodies above this are answered 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// An incoming request id longer than this, or not visible ASCII, is replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

pub struct Edge {
    metrics: Arc<Metrics>,
    allowed: Arc<AllowedMethods>,
    proxies: Arc<TrustedProxies>,
}

impl Edge {
    pub fn new(metrics: Arc<Metrics>, allowed: Arc<AllowedMethods>, proxies: TrustedProxies) -> Self {
        Self { metrics, allowed, proxies: Arc::new(proxies) }
    }
}

impl<E: Endpoint> Middleware<E> for Edge {
    type Output = EdgeEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        EdgeEndpoint {
            inner,
            metrics: self.metrics.clone(),
            allowed: self.allowed.clone(),
            proxies: self.proxies.clone(),
        }
    }
}

pub struct EdgeEndpoint<E> {
    inner: E,
    metrics: Arc<Metrics>,
    allowed: Arc<AllowedMethods>,
    proxies: Arc<TrustedProxies>,
}

impl<E: Endpoint> Endpoint for EdgeEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut request: Request) -> Result<Response> {
        let started = Instant::now();
        let request_id = request_id_of(&request);
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let client = request
            .remote_addr()
            .as_socket_addr()
            .map(|peer| self.proxies.client_of(peer.ip(), request.headers()));
        if let Some(client) = client {
            request.set_data(ClientAddress(client));
        }
        let span = tracing::info_span!(
            "request",
            request_id = %request_id,
            %method,
            %path,
            client = client.map(tracing::field::display),
        );

        async move {
            let outcome = match limit_body(&mut request).await {
                Ok(()) => self.inner.call(request).await.map(IntoResponse::into_response),
                Err(error) => Err(error.into()),
            };
            let (mut response, route) = match outcome {
                Ok(response) => {
                    let route = route_name(response.data::<OperationId>(), &path);
                    (response, route)
                }
                Err(error) => {
                    let route = route_name(error.data::<OperationId>(), &path);
                    let mut response = ApiError::from_poem(error).into_problem_response(&request_id);
                    if response.status() == StatusCode::METHOD_NOT_ALLOWED
                        && let Some(allow) = self.allowed.for_path(&path)
                        && let Ok(value) = HeaderValue::from_str(allow)
                    {
                        response.headers_mut().insert(ALLOW, value);
                    }
                    (response, route)
                }
            };
            if let Ok(value) = HeaderValue::from_str(&request_id) {
                response.headers_mut().insert(REQUEST_ID_HEADER, value);
            }
            let status = response.status();
            let elapsed = started.elapsed();
            self.metrics.observe(&method, route, status, elapsed);
            tracing::info!(status = status.as_u16(), route, micros = elapsed.as_micros() as u64, "answered");
            Ok(response)
        }
        .instrument(span)
        .await
    }
}

/// The client's `x-request-id` when it is sensible, else a fresh one.
fn request_id_of(request: &Request) -> String {
    request
        .header(REQUEST_ID_HEADER)
        .filter(|id| {
            !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
        })
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned)
}

/// Refuses a body over the limit: at once when its declared length says so, or while reading it
/// when it has none, whatever its transfer form (chunked over HTTP/1.1, a stream of frames over
/// HTTP/2): such a body is read here, up to the limit and no further, before any route sees it.
async fn limit_body(request: &mut Request) -> Result<(), ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            "request body is over 64 KiB",
        )
    };
    let declared = request.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    match declared {
        Some(length) if length > MAX_BODY_BYTES as u64 => Err(too_large()),
        Some(_) => Ok(()),
        None => {
            let body = request.take_body();
            if body.is_empty() {
                request.set_body(body);
                return Ok(());
            }
            let bytes = body.into_bytes_limit(MAX_BODY_BYTES).await.map_err(|error| match error {
                poem::error::ReadBodyError::PayloadTooLarge => too_large(),
                other => {
                    ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::ValidationFailed, other.to_string())
                }
            })?;
            request.set_body(Body::from_bytes(bytes));
            Ok(())
        }
    }
}

/// The metrics label of a request: its operation id, or a fixed name for the routes outside the
/// OpenAPI document.
fn route_name(operation: Option<&OperationId>, path: &str) -> &'static str {
    if let Some(OperationId(id)) = operation {
        return id;
    }
    match path {
        "/metrics" => "metrics",
        "/openapi.json" => "openapiDocument",
        "/ws" => "websocket",
        p if p == "/docs" || p.starts_with("/docs/") => "swaggerUi",
        _ => "unmatched",
    }
}
