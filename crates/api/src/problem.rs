//! The one error shape of the API (RFC 9457 problem details), the stable codes clients switch on
//! (on both transports), and the single place where domain errors and poem's own errors become
//! HTTP statuses and codes.

use std::time::Duration;

use convo_domain::DomainError;
use poem::http::{HeaderName, HeaderValue, StatusCode};
use poem::{Error, Response};
use poem_openapi::registry::{
    MetaHeader, MetaMediaType, MetaResponse, MetaResponses, MetaSchemaRef, Registry,
};
use poem_openapi::types::{ToJSON, Type};
use poem_openapi::{Enum, Object};
use serde::Serialize;

use crate::field::json_name;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

// Also the `code` of WebSocket `error` frames (through serde). Both derives spell a variant in
// SCREAMING_SNAKE_CASE; a test checks they agree. The doc line below is the OpenAPI description.
/// A stable identifier clients can switch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize)]
#[allow(non_camel_case_types)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    ValidationFailed,
    Unauthorized,
    InvalidCredentials,
    TooManyAttempts,
    RateLimited,
    EmailTaken,
    UsernameTaken,
    RoomNameTaken,
    NotAMember,
    NotTheAuthor,
    RoomNotFound,
    MessageNotFound,
    MessageDeleted,
    NotFound,
    Forbidden,
    MethodNotAllowed,
    PayloadTooLarge,
    ServiceUnavailable,
    InternalError,
}

/// Problem details (RFC 9457), the body of every error response.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct Problem {
    /// Always `about:blank`: the status and `code` say what happened.
    #[oai(rename = "type")]
    pub kind: String,
    /// The HTTP reason phrase of `status`.
    pub title: String,
    pub status: u16,
    /// What went wrong, for people; names the offending field on validation failures.
    pub detail: String,
    pub code: ErrorCode,
    /// The `x-request-id` of the request, to quote when reporting a problem.
    pub request_id: String,
}

/// An error on its way to becoming a problem response. The request id is added by the edge
/// middleware, which turns every error of every route into a [`Problem`].
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub detail: String,
    pub retry_after: Option<Duration>,
    /// Headers the response must carry besides the problem (such as the WebSocket version a
    /// refused upgrade should have asked for).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, detail: impl Into<String>) -> Self {
        Self { status, code, detail: detail.into(), retry_after: None, headers: Vec::new() }
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The problem response for this error.
    pub fn into_problem_response(self, request_id: &str) -> Response {
        let problem = Problem {
            kind: "about:blank".to_owned(),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code,
            request_id: request_id.to_owned(),
        };
        let mut response = Response::builder()
            .status(self.status)
            .content_type(PROBLEM_CONTENT_TYPE)
            .body(problem.to_json_string());
        for (name, value) in self.headers {
            response.headers_mut().append(name, value);
        }
        if let Some(wait) = self.retry_after {
            // Whole seconds, rounded up, so that a client retrying on time is let through.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response.headers_mut().insert(poem::http::header::RETRY_AFTER, seconds.max(1).into());
        }
        response
    }

    /// Any error a route can end with: ours, poem-openapi's parse and auth errors, poem's own.
    pub fn from_poem(error: Error) -> Self {
        if error.is::<ApiError>() {
            return match error.downcast::<ApiError>() {
                Ok(api) => api,
                Err(other) => Self::internal(&other),
            };
        }
        let status = error.status();
        let detail = error.to_string();
        use poem_openapi::error::{AuthorizationError, ContentTypeError};
        if error.is::<AuthorizationError>() {
            return Self::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "a bearer token is required",
            );
        }
        if error.is::<ContentTypeError>() {
            return Self::new(StatusCode::BAD_REQUEST, ErrorCode::ValidationFailed, detail);
        }
        match status {
            StatusCode::NOT_FOUND => Self::new(status, ErrorCode::NotFound, "no such route"),
            StatusCode::METHOD_NOT_ALLOWED => {
                Self::new(status, ErrorCode::MethodNotAllowed, "method not allowed on this route")
            }
            StatusCode::PAYLOAD_TOO_LARGE => {
                Self::new(status, ErrorCode::PayloadTooLarge, "request body is over 64 KiB")
            }
            StatusCode::UNAUTHORIZED => Self::new(status, ErrorCode::Unauthorized, detail),
            StatusCode::FORBIDDEN => Self::new(status, ErrorCode::Forbidden, detail),
            s if s.is_client_error() => {
                Self::new(StatusCode::BAD_REQUEST, ErrorCode::ValidationFailed, detail)
            }
            _ => Self::internal(&error),
        }
    }

    fn internal(error: &dyn std::fmt::Display) -> Self {
        tracing::error!(%error, "request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::InternalError, "internal error")
    }
}

/// The HTTP status and the code of each domain error: the one place they are decided, for the
/// REST routes and the WebSocket gateway alike.
pub fn classify(error: &DomainError) -> (StatusCode, ErrorCode) {
    use DomainError as D;
    match error {
        D::Validation(_) => (StatusCode::BAD_REQUEST, ErrorCode::ValidationFailed),
        D::Unauthenticated => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized),
        D::InvalidCredentials => (StatusCode::UNAUTHORIZED, ErrorCode::InvalidCredentials),
        D::TooManyAttempts { .. } => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::TooManyAttempts),
        D::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited),
        D::EmailTaken => (StatusCode::CONFLICT, ErrorCode::EmailTaken),
        D::UsernameTaken => (StatusCode::CONFLICT, ErrorCode::UsernameTaken),
        D::RoomNameTaken => (StatusCode::CONFLICT, ErrorCode::RoomNameTaken),
        D::NotAMember => (StatusCode::FORBIDDEN, ErrorCode::NotAMember),
        D::NotTheAuthor => (StatusCode::FORBIDDEN, ErrorCode::NotTheAuthor),
        D::RoomNotFound => (StatusCode::NOT_FOUND, ErrorCode::RoomNotFound),
        D::MessageNotFound => (StatusCode::NOT_FOUND, ErrorCode::MessageNotFound),
        D::MessageDeleted => (StatusCode::GONE, ErrorCode::MessageDeleted),
        D::Unavailable { .. } | D::Overloaded { .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::ServiceUnavailable)
        }
        D::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::InternalError),
    }
}

impl ErrorCode {
    /// The code clients see for a domain error.
    pub fn of(error: &DomainError) -> Self {
        classify(error).1
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        let (status, code) = classify(&error);
        match &error {
            DomainError::Unavailable { what, source } => {
                tracing::error!(error = %source, "{what} unavailable")
            }
            DomainError::Internal(source) => tracing::error!(error = %source, "internal error"),
            DomainError::Overloaded { what, .. } => {
                tracing::warn!("{what} is busy: a request waited too long")
            }
            _ => {}
        }
        Self {
            status,
            code,
            detail: client_message(&error),
            retry_after: error.retry_after(),
            headers: Vec::new(),
        }
    }
}

/// What a refusal tells the client, on either transport: the error's message, a validation
/// failure naming the field as requests spell it.
pub fn client_message(error: &DomainError) -> String {
    match error {
        DomainError::Validation(invalid) => format!("{}: {}", json_name(invalid.field), invalid.message),
        other => other.to_string(),
    }
}

impl poem::error::ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        self.status
    }
}

/// The problem responses an operation declares in the OpenAPI document, by status.
pub fn problem_responses(statuses: &[u16]) -> MetaResponses {
    let responses = statuses
        .iter()
        .map(|&status| MetaResponse {
            description: problem_description(status),
            status: Some(status),
            status_range: None,
            content: vec![MetaMediaType {
                content_type: PROBLEM_CONTENT_TYPE,
                schema: MetaSchemaRef::Reference(Problem::name().into_owned()),
            }],
            headers: if status == 429 {
                vec![MetaHeader {
                    name: "Retry-After".to_owned(),
                    description: Some("Seconds to wait before trying again.".to_owned()),
                    required: true,
                    deprecated: false,
                    schema: u64::schema_ref(),
                }]
            } else {
                Vec::new()
            },
        })
        .collect();
    MetaResponses { responses }
}

pub fn register_problem(registry: &mut Registry) {
    Problem::register(registry);
}

fn problem_description(status: u16) -> &'static str {
    match status {
        400 => "The request is malformed or a value breaks a validation rule (`VALIDATION_FAILED`).",
        401 => "The bearer token is missing, invalid or its session has ended (`UNAUTHORIZED`).",
        403 => "The caller may not do this (`NOT_A_MEMBER`, `NOT_THE_AUTHOR`).",
        404 => "The room or message does not exist (`ROOM_NOT_FOUND`, `MESSAGE_NOT_FOUND`).",
        409 => "The name or address is taken (`EMAIL_TAKEN`, `USERNAME_TAKEN`, `ROOM_NAME_TAKEN`).",
        410 => "A retried `clientMessageId` names a message that was deleted since (`MESSAGE_DELETED`).",
        413 => "The request body is over 64 KiB (`PAYLOAD_TOO_LARGE`).",
        429 => "Too many requests; retry after `Retry-After` seconds.",
        503 => "A dependency is unreachable; retry later (`SERVICE_UNAVAILABLE`).",
        _ => "An unexpected error (`INTERNAL_ERROR`); quote the requestId when reporting it.",
    }
}

/// Declares error types that list, in the OpenAPI document, exactly the problem responses an
/// operation can return. 500 and 503 are added to every list: any operation can meet them.
macro_rules! declare_errors {
    ($($(#[$doc:meta])* $name:ident: [$($status:literal),*];)*) => {$(
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name(pub $crate::problem::ApiError);

        impl From<convo_domain::DomainError> for $name {
            fn from(error: convo_domain::DomainError) -> Self {
                Self(error.into())
            }
        }

        impl From<convo_domain::ValidationError> for $name {
            fn from(error: convo_domain::ValidationError) -> Self {
                Self(convo_domain::DomainError::from(error).into())
            }
        }

        impl From<$name> for poem::Error {
            fn from(error: $name) -> Self {
                poem::Error::from(error.0)
            }
        }

        impl poem_openapi::ApiResponse for $name {
            fn meta() -> poem_openapi::registry::MetaResponses {
                $crate::problem::problem_responses(&[$($status,)* 500, 503])
            }

            fn register(registry: &mut poem_openapi::registry::Registry) {
                $crate::problem::register_problem(registry);
            }
        }
    )*};
}
pub(crate) use declare_errors;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use convo_domain::{DomainError, Field, ValidationError};
    use poem_openapi::types::ToJSON;

    use super::*;

    #[test]
    fn every_domain_error_keeps_its_code_on_the_wire() {
        let errors = [
            (DomainError::Validation(ValidationError::new(Field::RoomName, "bad")), "VALIDATION_FAILED"),
            (DomainError::Unauthenticated, "UNAUTHORIZED"),
            (DomainError::InvalidCredentials, "INVALID_CREDENTIALS"),
            (DomainError::TooManyAttempts { retry_after: Duration::from_secs(1) }, "TOO_MANY_ATTEMPTS"),
            (DomainError::RateLimited { retry_after: Duration::from_secs(1) }, "RATE_LIMITED"),
            (DomainError::EmailTaken, "EMAIL_TAKEN"),
            (DomainError::UsernameTaken, "USERNAME_TAKEN"),
            (DomainError::RoomNameTaken, "ROOM_NAME_TAKEN"),
            (DomainError::NotAMember, "NOT_A_MEMBER"),
            (DomainError::NotTheAuthor, "NOT_THE_AUTHOR"),
            (DomainError::RoomNotFound, "ROOM_NOT_FOUND"),
            (DomainError::MessageNotFound, "MESSAGE_NOT_FOUND"),
            (DomainError::MessageDeleted, "MESSAGE_DELETED"),
            (DomainError::unavailable("database", "down"), "SERVICE_UNAVAILABLE"),
            (
                DomainError::Overloaded { what: "password hashing", retry_after: Duration::from_secs(1) },
                "SERVICE_UNAVAILABLE",
            ),
            (DomainError::internal("bug"), "INTERNAL_ERROR"),
        ];
        for (error, code) in errors {
            let api = ApiError::from(error);
            assert_eq!(api.code.to_json(), Some(serde_json::Value::from(code)));
            assert_eq!(serde_json::to_value(api.code).ok(), Some(serde_json::Value::from(code)));
        }
    }

    #[test]
    fn both_derives_spell_every_code_alike() {
        use ErrorCode as C;
        for code in [
            C::ValidationFailed,
            C::Unauthorized,
            C::InvalidCredentials,
            C::TooManyAttempts,
            C::RateLimited,
            C::EmailTaken,
            C::UsernameTaken,
            C::RoomNameTaken,
            C::NotAMember,
            C::NotTheAuthor,
            C::RoomNotFound,
            C::MessageNotFound,
            C::MessageDeleted,
            C::NotFound,
            C::Forbidden,
            C::MethodNotAllowed,
            C::PayloadTooLarge,
            C::ServiceUnavailable,
            C::InternalError,
        ] {
            assert_eq!(serde_json::to_value(code).ok(), code.to_json(), "{code:?}");
        }
    }

    #[test]
    fn a_validation_failure_names_the_field_as_requests_spell_it() {
        let api = ApiError::from(DomainError::from(ValidationError::new(Field::ClientMessageId, "is bad")));
        assert_eq!(api.detail, "clientMessageId: is bad");
        let api = ApiError::from(DomainError::from(ValidationError::new(Field::RoomByName, "is bad")));
        assert_eq!(api.detail, "chatRoomName: is bad");
    }

    #[test]
    fn internals_never_reach_the_client() {
        let api = ApiError::from(DomainError::internal("password=hunter2 at db.internal"));
        assert_eq!(api.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(api.detail, "internal error");
        let api = ApiError::from(DomainError::unavailable("database", "10.0.0.3 refused"));
        assert_eq!(api.detail, "database is unavailable");
    }

    #[tokio::test]
    async fn rate_limits_carry_retry_after_in_whole_seconds_rounded_up() {
        let api = ApiError::from(DomainError::RateLimited { retry_after: Duration::from_millis(2300) });
        let response = api.into_problem_response("req-1");
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "3");
        assert_eq!(response.headers()["content-type"], PROBLEM_CONTENT_TYPE);
        let body: serde_json::Value =
            serde_json::from_str(&response.into_body().into_string().await.expect("body")).expect("json");
        assert_eq!(body["code"], "RATE_LIMITED");
        assert_eq!(body["requestId"], "req-1");
        assert_eq!(body["type"], "about:blank");
        assert_eq!(body["title"], "Too Many Requests");
        assert_eq!(body["status"], 429);
    }

    #[tokio::test]
    async fn an_overloaded_resource_is_a_503_with_retry_after() {
        let error = DomainError::Overloaded { what: "password hashing", retry_after: Duration::from_secs(1) };
        let response = ApiError::from(error).into_problem_response("req-2");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "1");
        let body: serde_json::Value =
            serde_json::from_str(&response.into_body().into_string().await.expect("body")).expect("json");
        assert_eq!(body["code"], "SERVICE_UNAVAILABLE");
        assert_eq!(body["detail"], "password hashing is busy");
        assert_eq!(body["status"], 503);
    }
}
