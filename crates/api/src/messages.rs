//! `/chat/message*`, `/chat/messages`: sending, reading, editing and deleting messages.

use chrono::{DateTime, Utc};
use convo_domain::{
    self as domain, ClientMessageId, HistoryPage, HistoryQuery, MessageContent, MessageId, RoomId, RoomName,
    RoomRef, ValidationError,
};
use std::borrow::Cow;

use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromJSON, ParseResult, Type};
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Serialize;
use uuid::Uuid;

use crate::ApiTags;
use crate::auth::BearerAuth;
use crate::field::Field;
use crate::json_body::{EncodedJson, JsonBody, optional_rfc3339, rfc3339};
use crate::problem::declare_errors;
use crate::rules::{self, Ruled};
use crate::state::AppState;

/// A user as shown beside a message: `{id, username}`.
#[derive(Debug, Clone, Object, Serialize)]
pub struct UserRef {
    pub id: Uuid,
    pub username: String,
}

impl From<domain::UserRef> for UserRef {
    fn from(user: domain::UserRef) -> Self {
        Self { id: user.id.as_uuid(), username: user.username.into_string() }
    }
}

/// A stored message.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: Uuid,
    pub room_id: Uuid,
    /// Its position in the room: the n-th message stored has seq n. The cursor for history and
    /// for resuming a live stream.
    pub seq: i64,
    pub author: UserRef,
    /// Exactly as sent (trimmed), never HTML-escaped: escape it when you render it.
    pub content: String,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    /// When it was last edited; null if never.
    #[oai(nullable)]
    #[serde(serialize_with = "optional_rfc3339")]
    pub edited_at: Option<DateTime<Utc>>,
    /// The sender's idempotency key, if it gave one.
    #[oai(nullable)]
    pub client_message_id: Option<String>,
}

impl From<domain::Message> for Message {
    fn from(message: domain::Message) -> Self {
        Self {
            id: message.id.as_uuid(),
            room_id: message.room_id.as_uuid(),
            seq: message.seq,
            author: message.author.into(),
            content: message.content.into_string(),
            created_at: message.created_at,
            edited_at: message.edited_at,
            client_message_id: message.client_message_id.map(ClientMessageId::into_string),
        }
    }
}

/// A page of history, ascending by seq.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct MessagePage {
    pub messages: Vec<Message>,
    /// Whether more messages exist in the direction of paging (older ones, or newer ones when
    /// paging with `after`).
    pub has_more: bool,
}

/// A message to send, naming its room by `roomId` or by `chatRoomName`, not both. The document
/// declares it as one of [`MessageToRoomId`] and [`MessageToRoomName`]; the server reads it as
/// [`SendMessageFields`], so that a breach of that rule is answered like any other validation
/// failure.
pub struct SendMessageRequest(SendMessageFields);

/// A message to send, as the server reads it.
#[derive(Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct SendMessageFields {
    pub room_id: Field<Option<Uuid>>,
    pub chat_room_name: Field<Option<String>>,
    pub content: Field<String, rules::Content>,
    pub client_message_id: Field<Option<String>, rules::ClientKey>,
}

/// A message to a room named by its id.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct MessageToRoomId {
    pub room_id: Uuid,
    /// 1-1000 characters once trimmed.
    pub content: Field<String, rules::Content>,
    /// An idempotency key of 1-100 characters: a retry with the same key returns the original
    /// message (200) and stores nothing. Null is the same as absent.
    #[oai(nullable)]
    pub client_message_id: Field<Option<String>, rules::ClientKey>,
}

/// A message to a room named by its name (how the original service named rooms).
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct MessageToRoomName {
    /// The room's name; surrounding white space is ignored.
    pub chat_room_name: Field<String, rules::RoomNameRule>,
    /// 1-1000 characters once trimmed.
    pub content: Field<String, rules::Content>,
    /// An idempotency key of 1-100 characters: a retry with the same key returns the original
    /// message (200) and stores nothing. Null is the same as absent.
    #[oai(nullable)]
    pub client_message_id: Field<Option<String>, rules::ClientKey>,
}

impl Type for SendMessageRequest {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "SendMessageRequest".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Reference(Self::name().into_owned())
    }

    fn register(registry: &mut Registry) {
        registry.create_schema::<Self, _>(Self::name().into_owned(), |registry| {
            MessageToRoomId::register(registry);
            MessageToRoomName::register(registry);
            MetaSchema {
                description: Some(
                    "A message to send. Name the room by `roomId` or by `chatRoomName`, not both; \
                     `null` counts as absent.",
                ),
                one_of: vec![MessageToRoomId::schema_ref(), MessageToRoomName::schema_ref()],
                // What Swagger UI pre-fills: the room the README's walk-through creates, named
                // once, since a request naming it twice is refused.
                example: Some(serde_json::json!({
                    "chatRoomName": "general",
                    "content": "hello, world",
                    "clientMessageId": "m-1",
                })),
                ..MetaSchema::new("object")
            }
        });
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromJSON for SendMessageRequest {
    fn parse_from_json(value: Option<serde_json::Value>) -> ParseResult<Self> {
        SendMessageFields::parse_from_json(value).map(Self).map_err(|error| error.propagate())
    }
}

/// New content for a message.
#[derive(Object)]
#[oai(example)]
pub struct EditMessageRequest {
    /// 1-1000 characters once trimmed.
    pub content: Field<String, rules::Content>,
}

impl poem_openapi::types::Example for EditMessageRequest {
    fn example() -> Self {
        Self { content: Field::of("hello again, world".to_owned()) }
    }
}

#[derive(ApiResponse)]
pub enum SendMessageResponse {
    /// Stored and delivered to the room.
    #[oai(status = 201)]
    Created(JsonBody<Message>),
    /// A retry: the message stored earlier under this `clientMessageId`.
    #[oai(status = 200)]
    Replayed(JsonBody<Message>),
}

#[derive(ApiResponse)]
pub enum HistoryResponse {
    /// The page.
    #[oai(status = 200)]
    Ok(EncodedJson<MessagePage>),
}

/// The page as its response body, encoded once for all the readers a cache shares it with,
/// from its messages' JSON, each made once ([`crate::message_json`]).
fn encoded(page: &HistoryPage) -> domain::DomainResult<EncodedJson<MessagePage>> {
    let encode = || crate::message_json::page_body(page).map(EncodedJson::from_encoded);
    if let Some(Ok(kept)) = page.rendering.get_or_init(encode) {
        return Ok(kept.clone());
    }
    encode().map_err(|error| domain::DomainError::internal(format!("encoding a history page: {error}")))
}

#[derive(ApiResponse)]
pub enum EditMessageResponse {
    /// The edited message, with `editedAt`.
    #[oai(status = 200)]
    Ok(JsonBody<Message>),
}

#[derive(ApiResponse)]
pub enum DeleteMessageResponse {
    /// Deleted.
    #[oai(status = 204)]
    Deleted,
}

declare_errors! {
    SendMessageError: [400, 401, 403, 404, 410, 413, 429];
    HistoryError: [400, 401, 403, 404];
    EditMessageError: [400, 401, 403, 404, 413];
    DeleteMessageError: [400, 401, 403, 404];
}

/// The room a request names, by exactly one of id and name.
fn room_ref(room_id: Option<Uuid>, room_name: Option<&str>) -> Result<RoomRef, ValidationError> {
    match (room_id, room_name) {
        (Some(id), None) => Ok(RoomRef::Id(RoomId::from(id))),
        (None, Some(name)) => Ok(RoomRef::Name(
            RoomName::parse(name)
                .map_err(|error| ValidationError::new(domain::Field::RoomByName, error.message))?,
        )),
        (Some(_), Some(_)) => {
            Err(ValidationError::new(domain::Field::RoomId, "give roomId or chatRoomName, not both"))
        }
        (None, None) => {
            Err(ValidationError::new(domain::Field::RoomId, "roomId or chatRoomName is required"))
        }
    }
}

pub struct MessageApi;

#[OpenApi(tag = "ApiTags::Messages")]
impl MessageApi {
    /// Send a message
    ///
    /// Needs membership of the room. Limited per user (REST and WebSocket together) to
    /// `RATE_LIMIT_POINTS` messages per `RATE_LIMIT_DURATION` seconds.
    #[oai(path = "/chat/message", method = "post", operation_id = "sendMessage")]
    async fn send(
        &self,
        state: Data<&AppState>,
        caller: BearerAuth,
        body: Json<SendMessageRequest>,
    ) -> Result<SendMessageResponse, SendMessageError> {
        let Json(SendMessageRequest(body)) = body;
        let room = room_ref(
            body.room_id.get(domain::Field::RoomId)?,
            body.chat_room_name.get(domain::Field::RoomByName)?.as_deref(),
        )?;
        let content = MessageContent::parse(&body.content.get(domain::Field::Content)?)?;
        let key = body
            .client_message_id
            .get(domain::Field::ClientMessageId)?
            .as_deref()
            .map(ClientMessageId::parse)
            .transpose()?;
        let posted = state.messages.send(caller.principal().user_id, &room, content, key).await?;
        let message = JsonBody(posted.message.into());
        Ok(if posted.created {
            SendMessageResponse::Created(message)
        } else {
            SendMessageResponse::Replayed(message)
        })
    }

    /// Read a room's history
    ///
    /// Messages ascending by seq. Without a cursor, the latest `limit`; with `before`, the
    /// `limit` before that seq (paging back); with `after`, the `limit` after it (paging
    /// forward). Deleted messages are left out.
    #[oai(path = "/chat/messages", method = "get", operation_id = "listMessages")]
    #[allow(clippy::too_many_arguments, reason = "poem-openapi takes one argument per query parameter")]
    async fn history(
        &self,
        state: Data<&AppState>,
        caller: BearerAuth,
        /// The room's id; give it or `chatRoomName`, not both.
        #[oai(name = "roomId")]
        room_id: Query<Option<Uuid>>,
        /// The room's name, as the original service took it; give it or `roomId`, not both.
        #[oai(name = "chatRoomName")]
        room_name: Query<Option<Ruled<String, rules::RoomNameRule>>>,
        /// Only messages with a seq below this (1 or more).
        before: Query<Option<Ruled<i64, rules::BeforeSeq>>>,
        /// Only messages with a seq above this (0 or more).
        after: Query<Option<Ruled<i64, rules::AfterSeq>>>,
        /// 1-100, default 50.
        limit: Query<Option<Ruled<u32, rules::PageSize>>>,
    ) -> Result<HistoryResponse, HistoryError> {
        let room_name = room_name.0.map(Ruled::into_inner);
        let room = room_ref(room_id.0, room_name.as_deref())?;
        let query = HistoryQuery::parse(
            before.0.map(Ruled::into_inner),
            after.0.map(Ruled::into_inner),
            limit.0.map(Ruled::into_inner),
        )?;
        let page = state.messages.history(caller.principal().user_id, &room, &query).await?;
        Ok(HistoryResponse::Ok(encoded(&page)?))
    }

    /// Edit a message
    ///
    /// Only its author may edit it.
    #[oai(path = "/chat/message/:messageId", method = "patch", operation_id = "editMessage")]
    async fn edit(
        &self,
        state: Data<&AppState>,
        caller: BearerAuth,
        #[oai(name = "messageId")] message_id: Path<Uuid>,
        body: Json<EditMessageRequest>,
    ) -> Result<EditMessageResponse, EditMessageError> {
        let content = MessageContent::parse(&body.0.content.get(domain::Field::Content)?)?;
        let message =
            state.messages.edit(caller.principal().user_id, MessageId::from(message_id.0), content).await?;
        Ok(EditMessageResponse::Ok(JsonBody(message.into())))
    }

    /// Delete a message
    ///
    /// Its author may delete it, and so may the room's owner.
    #[oai(path = "/chat/message/:messageId", method = "delete", operation_id = "deleteMessage")]
    async fn delete(
        &self,
        state: Data<&AppState>,
        caller: BearerAuth,
        #[oai(name = "messageId")] message_id: Path<Uuid>,
    ) -> Result<DeleteMessageResponse, DeleteMessageError> {
        state.messages.delete(caller.principal().user_id, MessageId::from(message_id.0)).await?;
        Ok(DeleteMessageResponse::Deleted)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use poem_openapi::types::ToJSON;

    use super::*;

    fn message(edited: bool, key: Option<&str>) -> Message {
        let at = Utc.with_ymd_and_hms(2026, 12, 1, 9, 30, 5).single().expect("a time")
            + chrono::Duration::microseconds(123_456);
        Message {
            id: Uuid::now_v7(),
            room_id: Uuid::now_v7(),
            seq: 42,
            author: UserRef { id: Uuid::now_v7(), username: "ada".to_owned() },
            content: "quotes \" backslash \\ newline \n tab \t control \u{1} emoji 🎉 <b>".to_owned(),
            created_at: at,
            edited_at: edited.then(|| at + chrono::Duration::seconds(1)),
            client_message_id: key.map(str::to_owned),
        }
    }

    /// Responses written by serde must read exactly as the document's `ToJSON` shape.
    #[test]
    fn the_direct_encoding_is_the_documented_one() {
        for message in [message(false, None), message(true, Some("m-1"))] {
            let direct: serde_json::Value = serde_json::to_value(&message).expect("serializes");
            assert_eq!(Some(direct), message.to_json());
            let page = MessagePage { messages: vec![message.clone(), message], has_more: true };
            let direct: serde_json::Value = serde_json::to_value(&page).expect("serializes");
            assert_eq!(Some(direct), page.to_json());
        }
    }

    /// A page the cache shares is encoded by its first reader; the others send the same bytes.
    #[test]
    fn a_shared_page_is_encoded_once() {
        let room = domain::RoomId::generate();
        let author = domain::UserRef {
            id: domain::UserId::generate(),
            username: domain::Username::from_trusted("ada".to_owned()),
        };
        let stored = |seq| domain::Message {
            id: domain::MessageId::generate(),
            room_id: room,
            seq,
            author: author.clone(),
            content: MessageContent::from_trusted(format!("message {seq}")),
            created_at: Utc::now(),
            edited_at: None,
            client_message_id: None,
        };
        let page = HistoryPage::new(vec![stored(1), stored(2)], true);
        let first = encoded(&page).expect("encodes");
        let again = encoded(&page).expect("encodes");
        assert_eq!(first.body().as_ptr(), again.body().as_ptr(), "the same bytes");
        let expected =
            MessagePage { messages: page.messages.iter().cloned().map(Into::into).collect(), has_more: true };
        let body: serde_json::Value = serde_json::from_slice(first.body()).expect("JSON");
        assert_eq!(Some(body), expected.to_json());
        let copy = page.clone();
        assert_ne!(
            encoded(&copy).expect("encodes").body().as_ptr(),
            first.body().as_ptr(),
            "a copy starts anew"
        );
    }
}
