//! Request metrics in the Prometheus (OpenMetrics) text format: counts and latency histograms by
//! method, route and status.

use std::time::Duration;

use poem::http::{Method, StatusCode};
use poem::{IntoResponse, Response, handler, web::Data};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    /// One of the methods HTTP defines, or `OTHER`: a client cannot add series by inventing
    /// methods.
    method: &'static str,
    /// The operation id (or a fixed name for routes outside the API), never the raw path, so
    /// that ids in paths cannot multiply the series.
    route: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseLabels {
    code: u16,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The process's metrics registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    latency: LatencyFamily,
    ws_connections: Gauge,
    ws_closes: Family<CloseLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("convo");
        let requests = Family::<RouteLabels, Counter>::default();
        let latency = LatencyFamily::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register("http_requests", "HTTP requests handled", requests.clone());
        registry.register("http_request_duration_seconds", "Time to answer an HTTP request", latency.clone());
        let ws_connections = Gauge::default();
        let ws_closes = Family::<CloseLabels, Counter>::default();
        registry.register("ws_connections", "Open WebSocket connections", ws_connections.clone());
        registry.register(
            "ws_closes",
            "WebSocket connections the server closed, by close code",
            ws_closes.clone(),
        );
        Self { registry, requests, latency, ws_connections, ws_closes }
    }
}

impl Metrics {
    pub fn observe(&self, method: &Method, route: &'static str, status: StatusCode, elapsed: Duration) {
        let labels = RouteLabels { method: method_label(method), route, status: status.as_u16() };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    pub fn ws_opened(&self) {
        self.ws_connections.inc();
    }

    pub fn ws_ended(&self) {
        self.ws_connections.dec();
    }

    pub fn ws_closed(&self, code: u16) {
        self.ws_closes.get_or_create(&CloseLabels { code }).inc();
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// The label of a request's method: its name for the methods HTTP defines, `OTHER` for any
/// other a client makes up.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// `GET /metrics`.
#[handler]
pub async fn metrics_endpoint(metrics: Data<&Arc<Metrics>>) -> Response {
    metrics
        .render()
        .with_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_appear_in_the_exposition() {
        let metrics = Metrics::default();
        metrics.observe(&Method::POST, "sendMessage", StatusCode::CREATED, Duration::from_millis(3));
        metrics.observe(&Method::POST, "sendMessage", StatusCode::CREATED, Duration::from_millis(5));
        let text = metrics.render();
        assert!(
            text.contains(r#"convo_http_requests_total{method="POST",route="sendMessage",status="201"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"convo_http_request_duration_seconds_count{method="POST",route="sendMessage",status="201"} 2"#),
            "{text}"
        );
    }

    #[test]
    fn made_up_methods_share_one_label() {
        let metrics = Metrics::default();
        for name in ["FROBNICATE", "get", "BREW"] {
            let method = Method::from_bytes(name.as_bytes()).expect("a valid token");
            metrics.observe(&method, "unmatched", StatusCode::NOT_FOUND, Duration::from_millis(1));
        }
        let text = metrics.render();
        assert!(
            text.contains(r#"convo_http_requests_total{method="OTHER",route="unmatched",status="404"} 3"#),
            "{text}"
        );
        assert!(
            !text.contains("FROBNICATE") && !text.contains("BREW") && !text.contains(r#""get""#),
            "{text}"
        );
    }
}
