//! `/health` and `/ready`: is the process up, and can it reach what it depends on.

use std::time::Duration;

use futures_util::future::join_all;
use poem::http::StatusCode;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::ApiTags;
use crate::problem::{ApiError, ErrorCode, declare_errors};
use crate::state::AppState;

/// A probe that takes longer than this counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The process is up.
#[derive(Debug, Clone, Object)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// Every dependency answered.
#[derive(Debug, Clone, Object)]
pub struct Readiness {
    /// Always `ready`.
    pub status: String,
    /// The dependencies checked (`database`, `cache`).
    pub checked: Vec<String>,
}

#[derive(ApiResponse)]
pub enum HealthResponse {
    /// The process is up.
    #[oai(status = 200)]
    Ok(Json<Health>),
}

#[derive(ApiResponse)]
pub enum ReadyResponse {
    /// The database and the cache are reachable.
    #[oai(status = 200)]
    Ready(Json<Readiness>),
}

declare_errors! {
    /// 503 names the dependencies that failed.
    ReadyError: [];
}

pub struct HealthApi;

#[OpenApi(tag = "ApiTags::Health")]
impl HealthApi {
    /// Liveness
    #[oai(path = "/health", method = "get", operation_id = "getHealth")]
    async fn health(&self) -> HealthResponse {
        HealthResponse::Ok(Json(Health { status: "ok".to_owned() }))
    }

    /// Readiness
    ///
    /// 200 when the database and the cache answer, else 503 naming the ones that did not.
    #[oai(path = "/ready", method = "get", operation_id = "getReadiness")]
    async fn ready(&self, state: Data<&AppState>) -> Result<ReadyResponse, ReadyError> {
        // Concurrently, so that one slow dependency does not hide another.
        let checks = state.probes.iter().map(|probe| async move {
            let outcome = tokio::time::timeout(PROBE_TIMEOUT, probe.check()).await;
            match outcome {
                Ok(Ok(())) => None,
                Ok(Err(error)) => {
                    tracing::warn!(probe = probe.name(), %error, "readiness probe failed");
                    Some(probe.name())
                }
                Err(_) => {
                    tracing::warn!(probe = probe.name(), "readiness probe timed out");
                    Some(probe.name())
                }
            }
        });
        let failed: Vec<&str> = join_all(checks).await.into_iter().flatten().collect();
        if failed.is_empty() {
            let checked = state.probes.iter().map(|probe| probe.name().to_owned()).collect();
            return Ok(ReadyResponse::Ready(Json(Readiness { status: "ready".to_owned(), checked })));
        }
        Err(ReadyError(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ServiceUnavailable,
            format!("unreachable: {}", failed.join(", ")),
        )))
    }
}
