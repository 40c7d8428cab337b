//! [`JsonBody`]: a JSON response written straight from the value by serde, for the responses
//! served most (messages and pages of them). poem-openapi's `Json` first turns the value into a
//! `serde_json::Value` tree, an allocation per field and per string, and then writes that tree;
//! a history page of 50 messages built some 800 allocations that way.
//!
//! [`EncodedJson`] goes one step further for a body many responses share (a cached history
//! page): it is encoded once and each response holds a reference-counted handle to its bytes.
//!
//! The document does not change: the payloads declare the same content type and the type's own
//! schema, and the types sent this way derive `Serialize` to the very shape their `ToJSON` gives,
//! which a test checks field by field.

use std::marker::PhantomData;

use bytes::Bytes;
use poem::http::header;
use poem::{IntoResponse, Response};
use poem_openapi::payload::{Json, Payload};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use serde::{Serialize, Serializer};

/// A JSON response body serialized directly, declared in the document as `T`'s schema.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

/// The content type of every JSON response.
const JSON_UTF8: &str = "application/json; charset=utf-8";

/// Declares a body type in the document exactly as poem-openapi's `Json<T>` would be.
macro_rules! declared_as_json {
    ($body:ident) => {
        impl<T: Type> Payload for $body<T> {
            const CONTENT_TYPE: &'static str = JSON_UTF8;

            fn check_content_type(content_type: &str) -> bool {
                Json::<T>::check_content_type(content_type)
            }

            fn schema_ref() -> MetaSchemaRef {
                T::schema_ref()
            }

            fn register(registry: &mut Registry) {
                T::register(registry);
            }
        }
    };
}

declared_as_json!(JsonBody);

impl<T: Serialize + Send> IntoResponse for JsonBody<T> {
    fn into_response(self) -> Response {
        poem::web::Json(self.0).into_response()
    }
}

/// A JSON response body encoded beforehand, declared in the document as `T`'s schema.
#[derive(Debug, Clone)]
pub struct EncodedJson<T> {
    body: Bytes,
    schema: PhantomData<fn() -> T>,
}

impl<T> EncodedJson<T> {
    /// A body encoded elsewhere, which must be `T`'s JSON (a history page spliced from its
    /// messages' JSON, say).
    pub fn from_encoded(body: Bytes) -> Self {
        Self { body, schema: PhantomData }
    }

    /// The encoded body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
}

declared_as_json!(EncodedJson);

impl<T: Send> IntoResponse for EncodedJson<T> {
    fn into_response(self) -> Response {
        Response::builder().header(header::CONTENT_TYPE, JSON_UTF8).body(self.body)
    }
}

/// Writes a time as poem-openapi's `ToJSON` does (`to_rfc3339`, offset `+00:00`), for fields
/// sent both ways.
pub fn rfc3339<S: Serializer>(
    time: &chrono::DateTime<chrono::Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&time.to_rfc3339())
}

/// As [`rfc3339`], for a time that may be absent (null).
pub fn optional_rfc3339<S: Serializer>(
    time: &Option<chrono::DateTime<chrono::Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => rfc3339(time, serializer),
        None => serializer.serialize_none(),
    }
}
