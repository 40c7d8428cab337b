//! The server side of the WebSocket opening handshake (RFC 6455, section 4.2): checking that a
//! request asks for a WebSocket, and the `101 Switching Protocols` that accepts it. Poem keeps
//! the route and the HTTP exchange; the socket then runs on tokio-tungstenite directly, so that
//! a frame encoded once is sent to every recipient without a copy per connection.

use poem::Response;
use poem::http::StatusCode;
use poem::http::header::{self, HeaderMap, HeaderValue};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::problem::{ApiError, ErrorCode};

/// The only protocol version there is.
const VERSION: &str = "13";

/// What a valid upgrade request asked for.
#[derive(Debug)]
pub struct Upgrade {
    accept: HeaderValue,
}

impl Upgrade {
    /// Checks the upgrade headers; a refusal names the header at fault (400, with
    /// `Sec-WebSocket-Version: 13` when the version was wrong, as RFC 6455 asks).
    pub fn check(headers: &HeaderMap) -> Result<Self, ApiError> {
        if !lists_token(headers, header::UPGRADE, "websocket") {
            return Err(refusal("header `Upgrade` must be `websocket`: /ws only opens a WebSocket"));
        }
        if !lists_token(headers, header::CONNECTION, "upgrade") {
            return Err(refusal("header `Connection` must include `Upgrade`"));
        }
        let version = headers.get(header::SEC_WEBSOCKET_VERSION).and_then(|v| v.to_str().ok());
        if version.map(str::trim) != Some(VERSION) {
            return Err(refusal("header `Sec-WebSocket-Version` must be 13")
                .with_header(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static(VERSION)));
        }
        let key = headers.get(header::SEC_WEBSOCKET_KEY).map(HeaderValue::as_bytes).map(<[u8]>::trim_ascii);
        let Some(key) = key.filter(|key| is_nonce(key)) else {
            return Err(refusal("header `Sec-WebSocket-Key` must be 16 bytes in base64"));
        };
        let accept = HeaderValue::from_str(&derive_accept_key(key))
            .map_err(|_| refusal("header `Sec-WebSocket-Key` must be 16 bytes in base64"))?;
        Ok(Self { accept })
    }

    /// The `101 Switching Protocols` that completes the handshake.
    pub fn accept(self) -> Response {
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_ACCEPT, self.accept)
            .finish()
    }
}

fn refusal(detail: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::ValidationFailed, detail)
}

/// Whether any of the header's comma-separated values is `token` (case-insensitive).
fn lists_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// A base64-encoded 16-byte value: 22 characters of the alphabet, then `==`.
fn is_nonce(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22].iter().all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (header::HeaderName::from_static(name), HeaderValue::from_static(value)))
            .collect()
    }

    const VALID: [(&str, &str); 4] = [
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn a_valid_upgrade_is_accepted_with_the_key_of_rfc_6455() {
        let response = Upgrade::check(&headers(&VALID)).expect("valid").accept();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        // The worked example of RFC 6455, section 1.3.
        assert_eq!(response.headers()[header::SEC_WEBSOCKET_ACCEPT], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(response.headers()[header::UPGRADE], "websocket");
    }

    #[test]
    fn header_lists_and_case_are_understood() {
        let mut request = headers(&VALID);
        request.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        request.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        assert!(Upgrade::check(&request).is_ok());
    }

    #[test]
    fn each_missing_or_wrong_header_is_named_in_the_refusal() {
        let cases = [
            ("upgrade", None, "Upgrade"),
            ("upgrade", Some("h2c"), "Upgrade"),
            ("connection", None, "Connection"),
            ("connection", Some("keep-alive"), "Connection"),
            ("sec-websocket-version", None, "Sec-WebSocket-Version"),
            ("sec-websocket-version", Some("8"), "Sec-WebSocket-Version"),
            ("sec-websocket-key", None, "Sec-WebSocket-Key"),
            ("sec-websocket-key", Some("short"), "Sec-WebSocket-Key"),
        ];
        for (name, value, named) in cases {
            let mut request = headers(&VALID);
            let name = header::HeaderName::from_static(name);
            match value {
                Some(value) => request.insert(name, HeaderValue::from_static(value)),
                None => request.remove(name),
            };
            let refused = Upgrade::check(&request).expect_err(named);
            assert_eq!(
                (refused.status, refused.code),
                (StatusCode::BAD_REQUEST, ErrorCode::ValidationFailed)
            );
            assert!(refused.detail.contains(&format!("`{named}`")), "{}", refused.detail);
        }
    }

    #[test]
    fn a_wrong_version_is_answered_with_the_version_spoken() {
        let mut request = headers(&VALID);
        request.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        let response = Upgrade::check(&request).expect_err("refused").into_problem_response("id");
        assert_eq!(response.headers()[header::SEC_WEBSOCKET_VERSION], "13");
    }
}
