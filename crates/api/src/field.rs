//! Request fields: how the API spells each input the domain validates ([`json_name`]), and
//! request body fields that never fail the whole body. poem-openapi reports a wrong field as
//! "expected string, found null (while parsing RegisterRequest)" without naming it; wrapping each
//! field in [`Field`] keeps the schema of the inner type in the document while the handler
//! reports `VALIDATION_FAILED` naming the field, like every other validation failure. A field's
//! [`Rule`] is declared in its schema and enforced by the domain, not by poem-openapi.

use std::borrow::Cow;
use std::marker::PhantomData;

use convo_domain::{self as domain, ValidationError};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromJSON, ParseResult, ToJSON, Type};
use serde_json::Value;

use crate::rules::{Any, Rule, declared};

/// A field as received: its value, or why it could not be read. `R` is the rule its schema
/// declares.
#[derive(Debug, Clone)]
pub struct Field<T, R = Any>(Result<T, &'static str>, PhantomData<R>);

impl<T, R> Field<T, R> {
    /// A field that was read well: for examples and tests.
    pub fn of(value: T) -> Self {
        Self(Ok(value), PhantomData)
    }

    fn failed(problem: &'static str) -> Self {
        Self(Err(problem), PhantomData)
    }

    /// The value, or a validation error naming `field`.
    pub fn get(self, field: domain::Field) -> Result<T, ValidationError> {
        self.0.map_err(|problem| ValidationError::new(field, problem))
    }
}

/// The name a request gives an input, as error messages quote it to the client.
pub fn json_name(field: domain::Field) -> &'static str {
    use domain::Field as F;
    match field {
        F::Email => "email",
        F::Username => "username",
        F::Password => "password",
        F::RoomName => "name",
        F::SearchPrefix => "q",
        F::Limit => "limit",
        F::Before => "before",
        F::After => "after",
        F::Content => "content",
        F::ClientMessageId => "clientMessageId",
        F::RoomId => "roomId",
        F::RoomByName => "chatRoomName",
        F::SinceSeq => "sinceSeq",
    }
}

impl<T: Type, R: Rule> Type for Field<T, R> {
    const IS_REQUIRED: bool = T::IS_REQUIRED;
    type RawValueType = T::RawValueType;
    type RawElementValueType = T::RawElementValueType;

    fn name() -> Cow<'static, str> {
        T::name()
    }

    fn schema_ref() -> MetaSchemaRef {
        declared::<T, R>()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        self.0.as_ref().ok().and_then(T::as_raw_value)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        match &self.0 {
            Ok(value) => value.raw_element_iter(),
            Err(_) => Box::new(std::iter::empty()),
        }
    }

    fn is_none(&self) -> bool {
        self.0.as_ref().is_ok_and(T::is_none)
    }
}

impl<T: ParseFromJSON, R: Rule> ParseFromJSON for Field<T, R> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        let absent = matches!(value, None | Some(Value::Null));
        if absent && T::IS_REQUIRED {
            return Ok(Self::failed("is required"));
        }
        let expects_string =
            matches!(T::schema_ref(), MetaSchemaRef::Inline(schema) if schema.ty == "string");
        let is_uuid =
            matches!(T::schema_ref(), MetaSchemaRef::Inline(schema) if schema.format == Some("uuid"));
        if expects_string && !absent && !matches!(value, Some(Value::String(_))) {
            return Ok(Self::failed(if is_uuid { "must be a UUID string" } else { "must be a string" }));
        }
        Ok(Self(
            T::parse_from_json(value)
                .map_err(|_| if is_uuid { "must be a UUID" } else { "has an invalid value" }),
            PhantomData,
        ))
    }
}

impl<T: ToJSON, R: Rule> ToJSON for Field<T, R> {
    fn to_json(&self) -> Option<Value> {
        self.0.as_ref().ok().and_then(ToJSON::to_json)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::*;

    fn parse<T: ParseFromJSON + std::fmt::Debug>(value: Option<Value>) -> Result<T, ValidationError> {
        Field::<T, Any>::parse_from_json(value).expect("never fails").get(domain::Field::Content)
    }

    #[test]
    fn wrong_values_are_named_not_fatal() {
        assert_eq!(parse::<String>(Some(json!("x"))).unwrap(), "x");
        assert_eq!(parse::<String>(None).unwrap_err().message, "is required");
        assert_eq!(parse::<String>(Some(Value::Null)).unwrap_err().message, "is required");
        assert_eq!(parse::<String>(Some(json!(7))).unwrap_err().message, "must be a string");
        assert_eq!(parse::<Option<String>>(None).unwrap(), None);
        assert_eq!(parse::<Option<String>>(Some(json!(["a"]))).unwrap_err().message, "must be a string");
        assert_eq!(parse::<Option<Uuid>>(Some(json!("nope"))).unwrap_err().message, "must be a UUID");
        assert_eq!(parse::<Option<Uuid>>(Some(json!(12))).unwrap_err().message, "must be a UUID string");
        let id = Uuid::now_v7();
        assert_eq!(parse::<Option<Uuid>>(Some(json!(id))).unwrap(), Some(id));
        assert_eq!(parse::<String>(Some(json!(1))).unwrap_err().field, domain::Field::Content);
    }
}
