//! The WebSocket frames of the public contract: what clients send and what the server sends,
//! as JSON text, one object per frame with a `type`.

use convo_domain::{DomainError, Member, Message, MessageId, RoomId, User, UserRef};
use poem_openapi::types::ToJSON;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::problem::{ErrorCode, client_message};

/// A frame from the client. Unknown fields are ignored; `ref` is echoed on the direct reply.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum ClientFrame {
    Join { room_id: Uuid, since_seq: Option<i64> },
    Leave { room_id: Uuid },
    Send { room_id: Uuid, content: String, client_message_id: Option<String> },
    Edit { message_id: Uuid, content: String },
    Delete { message_id: Uuid },
    Typing { room_id: Uuid },
    Members { room_id: Uuid },
    Ping,
}

/// A client frame read from JSON text, with its `ref` (kept even when the rest of the frame is
/// invalid, so that the error can carry it).
pub fn parse(text: &str) -> (Option<String>, Result<ClientFrame, String>) {
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(error) => return (None, Err(format!("not JSON: {error}"))),
    };
    let reference = value.get("ref").and_then(Value::as_str).map(str::to_owned);
    let frame = ClientFrame::deserialize(value).map_err(|error| error.to_string());
    (reference, frame)
}

/// A frame to the client.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum ServerFrame {
    Ready {
        user: Value,
        session_id: Uuid,
    },
    Joined {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        room_id: Uuid,
        last_seq: i64,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        truncated: bool,
    },
    Left {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        room_id: Uuid,
    },
    Message {
        message: Value,
    },
    Ack {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        message: Value,
    },
    MessageEdited {
        message: Value,
    },
    MessageDeleted {
        /// Set when this is the reply to the connection's own `delete`.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        room_id: Uuid,
        message_id: Uuid,
    },
    Typing {
        room_id: Uuid,
        user: Value,
    },
    Presence {
        room_id: Uuid,
        user: Value,
        online: bool,
    },
    UserJoined {
        room_id: Uuid,
        user: Value,
    },
    UserLeft {
        room_id: Uuid,
        user: Value,
    },
    Members {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        room_id: Uuid,
        members: Vec<Value>,
    },
    Pong {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
    Error {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        code: FrameErrorCode,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
}

impl ServerFrame {
    /// The JSON text of the frame.
    pub fn encode(&self) -> String {
        // Serialising these plain structs cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The `error` frame for a refused client frame: the domain error's code, in the one place
    /// the gateway maps them.
    pub fn error(reference: Option<String>, error: &DomainError) -> Self {
        let (code, message) = match error {
            DomainError::Unavailable { .. } | DomainError::Internal(_) | DomainError::Unauthenticated => {
                tracing::error!(%error, "a WebSocket frame failed");
                let why = "the server could not handle this frame; retry later".to_owned();
                (FrameErrorCode::Gateway(GatewayErrorCode::ServerError), why)
            }
            other => (FrameErrorCode::Api(ErrorCode::of(other)), client_message(other)),
        };
        let retry_after_ms =
            error.retry_after().map(|wait| u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
        Self::Error { reference, code, message, retry_after_ms }
    }

    /// An `INVALID_FRAME` error.
    pub fn invalid(reference: Option<String>, why: impl Into<String>) -> Self {
        let code = FrameErrorCode::Gateway(GatewayErrorCode::InvalidFrame);
        Self::Error { reference, code, message: why.into(), retry_after_ms: None }
    }
}

/// The `code` of an `error` frame: a refused frame carries the code the REST API gives the same
/// refusal; the gateway has two of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum FrameErrorCode {
    Api(ErrorCode),
    Gateway(GatewayErrorCode),
}

/// The codes only the WebSocket gateway sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GatewayErrorCode {
    /// The server failed to handle the frame; the client may retry later.
    ServerError,
    /// The frame is not JSON or not a frame of the protocol.
    InvalidFrame,
}

/// The REST shapes, so that a message or a user reads the same on both transports.
pub fn message_json(message: &Message) -> Value {
    crate::messages::Message::from(message.clone()).to_json().unwrap_or_default()
}

pub fn user_json(user: &User) -> Value {
    crate::auth::User::from(user.clone()).to_json().unwrap_or_default()
}

pub fn user_ref_json(user: &UserRef) -> Value {
    crate::messages::UserRef::from(user.clone()).to_json().unwrap_or_default()
}

pub fn member_json(member: &Member) -> Value {
    crate::rooms::Member::from(member.clone()).to_json().unwrap_or_default()
}

pub fn deleted(reference: Option<String>, room: RoomId, message: MessageId) -> ServerFrame {
    ServerFrame::MessageDeleted { reference, room_id: room.as_uuid(), message_id: message.as_uuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_parse_with_camel_case_fields() {
        let frame: ClientFrame =
            serde_json::from_str(r#"{"type":"join","roomId":"0192e7a0-0000-7000-8000-000000000000","sinceSeq":4,"ref":"r1","extra":1}"#)
                .unwrap();
        assert!(matches!(frame, ClientFrame::Join { since_seq: Some(4), .. }));
        let (reference, frame) = parse(r#"{"type":"shout","ref":"r9"}"#);
        assert_eq!(reference.as_deref(), Some("r9"));
        assert!(frame.unwrap_err().contains("shout"));
        assert_eq!(parse(r#"{"type":"ping","ref":7}"#).0, None);
        assert!(parse("{nope").1.unwrap_err().starts_with("not JSON"));
    }

    #[test]
    fn replies_carry_the_ref_and_pushed_frames_none() {
        let pong = ServerFrame::Pong { reference: Some("p".into()) }.encode();
        assert_eq!(pong, r#"{"type":"pong","ref":"p"}"#);
        let joined =
            ServerFrame::Joined { reference: None, room_id: Uuid::nil(), last_seq: 3, truncated: false };
        assert_eq!(
            joined.encode(),
            r#"{"type":"joined","roomId":"00000000-0000-0000-0000-000000000000","lastSeq":3}"#
        );
        let limited = ServerFrame::error(
            Some("s".into()),
            &DomainError::RateLimited { retry_after: std::time::Duration::from_millis(1500) },
        );
        assert_eq!(
            limited.encode(),
            r#"{"type":"error","ref":"s","code":"RATE_LIMITED","message":"too many messages","retryAfterMs":1500}"#
        );
    }

    #[test]
    fn the_gateway_codes_read_as_in_the_contract() {
        let invalid = ServerFrame::invalid(None, "no").encode();
        assert_eq!(invalid, r#"{"type":"error","code":"INVALID_FRAME","message":"no"}"#);
        let failed = ServerFrame::error(None, &DomainError::internal("bug")).encode();
        assert!(failed.contains(r#""code":"SERVER_ERROR""#), "{failed}");
    }
}
