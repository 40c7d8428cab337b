//! The validation rules of the public contract as the OpenAPI document declares them: lengths,
//! patterns, ranges and formats, so that generated clients and schema-driven testers know them.
//!
//! The rules are only declared here, never enforced by poem-openapi: the domain's value types
//! enforce them, and a breach is answered as every validation failure is (`VALIDATION_FAILED`
//! naming the field). A [`Rule`] adds its declaration to the schema of a request field
//! ([`crate::field::Field`]) or of a parameter ([`Ruled`]).
//!
//! Where the domain trims a value before checking it, the pattern accepts the same surrounding
//! white space the domain trims (Unicode `White_Space`, spelled out so that every regex engine
//! reads it alike). "Letters and digits" are `\p{L}\p{N}`; the domain's `is_alphanumeric` also
//! takes the few combining marks Unicode counts as alphabetic, which the document leaves out.

use std::borrow::Cow;
use std::marker::PhantomData;

use convo_domain::{ClientMessageId, DirectoryQuery, Email, HistoryQuery, MessageContent, RoomName};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type};
use serde_json::Value;

/// White space as `str::trim` removes it (the Unicode `White_Space` property).
const WS: &str = r"[\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]";
/// Anything but that white space.
const NOT_WS: &str = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]";

/// A rule of the contract, as a schema declares it.
pub trait Rule: Send + Sync + 'static {
    /// Adds the rule to the schema of the value it governs.
    fn declare(schema: &mut MetaSchema);
}

/// No rule beyond the type's own.
#[derive(Debug, Clone, Copy)]
pub struct Any;

impl Rule for Any {
    fn declare(_: &mut MetaSchema) {}
}

/// The schema of `T` with `R` declared on it.
pub(crate) fn declared<T: Type, R: Rule>() -> MetaSchemaRef {
    match T::schema_ref() {
        MetaSchemaRef::Inline(mut schema) => {
            R::declare(&mut schema);
            MetaSchemaRef::Inline(schema)
        }
        reference => reference,
    }
}

/// An email address as registration and login take it.
#[derive(Debug, Clone, Copy)]
pub struct EmailAddress;

impl Rule for EmailAddress {
    fn declare(schema: &mut MetaSchema) {
        const ALNUM: &str = r"[\p{L}\p{N}]";
        const LOCAL: &str = r"[\p{L}\p{N}!#$%&'*+/=?^_`{|}~-]+";
        schema.format = Some("email");
        schema.max_length = Some(Email::MAX_LEN);
        schema.pattern = Some(format!(
            r"^{LOCAL}(?:\.{LOCAL})*@(?:{ALNUM}(?:[\p{{L}}\p{{N}}-]*{ALNUM})?\.)+\p{{L}}{{2,}}$"
        ));
    }
}

/// A username: 3-20 characters of `A-Z a-z 0-9 _`, taken as sent.
#[derive(Debug, Clone, Copy)]
pub struct Username;

impl Rule for Username {
    fn declare(schema: &mut MetaSchema) {
        schema.min_length = Some(3);
        schema.max_length = Some(20);
        schema.pattern = Some("^[A-Za-z0-9_]{3,20}$".to_owned());
    }
}

/// A new password: 8-128 characters with a lower-case letter, an upper-case letter and a digit.
#[derive(Debug, Clone, Copy)]
pub struct NewPassword;

impl Rule for NewPassword {
    fn declare(schema: &mut MetaSchema) {
        schema.min_length = Some(8);
        schema.max_length = Some(128);
        schema.pattern = Some(r"^(?=[\s\S]*\p{Ll})(?=[\s\S]*\p{Lu})(?=[\s\S]*[0-9])".to_owned());
    }
}

/// A password as typed at login: 1-128 characters.
#[derive(Debug, Clone, Copy)]
pub struct PasswordAttempt;

impl Rule for PasswordAttempt {
    fn declare(schema: &mut MetaSchema) {
        schema.min_length = Some(1);
        schema.max_length = Some(128);
    }
}

/// A room name: once trimmed, 1-50 letters, digits, spaces, `_` and `-`.
#[derive(Debug, Clone, Copy)]
pub struct RoomNameRule;

impl Rule for RoomNameRule {
    fn declare(schema: &mut MetaSchema) {
        const EDGE: &str = r"[\p{L}\p{N}_-]";
        let inner = RoomName::MAX_LEN - 2;
        schema.min_length = Some(1);
        schema.pattern = Some(format!(r"^{WS}*{EDGE}(?:[\p{{L}}\p{{N}} _-]{{0,{inner}}}{EDGE})?{WS}*$"));
    }
}

/// A directory prefix: at most 50 characters once leading white space is dropped.
#[derive(Debug, Clone, Copy)]
pub struct SearchPrefix;

impl Rule for SearchPrefix {
    fn declare(schema: &mut MetaSchema) {
        let rest = RoomName::MAX_LEN - 1;
        schema.pattern = Some(format!(r"^{WS}*(?:{NOT_WS}[\s\S]{{0,{rest}}})?$"));
    }
}

/// Message content: once trimmed, 1-1000 characters.
#[derive(Debug, Clone, Copy)]
pub struct Content;

impl Rule for Content {
    fn declare(schema: &mut MetaSchema) {
        let inner = MessageContent::MAX_CHARS - 2;
        schema.min_length = Some(1);
        schema.pattern = Some(format!(r"^{WS}*{NOT_WS}(?:[\s\S]{{0,{inner}}}{NOT_WS})?{WS}*$"));
    }
}

/// A client's idempotency key: 1-100 characters, none of them a control character.
#[derive(Debug, Clone, Copy)]
pub struct ClientKey;

impl Rule for ClientKey {
    fn declare(schema: &mut MetaSchema) {
        schema.min_length = Some(1);
        schema.max_length = Some(ClientMessageId::MAX_CHARS);
        schema.pattern = Some(r"^[^\u0000-\u001F\u007F-\u009F]*$".to_owned());
    }
}

/// A page size: 1-100, 50 when absent.
#[derive(Debug, Clone, Copy)]
pub struct PageSize;

impl Rule for PageSize {
    fn declare(schema: &mut MetaSchema) {
        debug_assert_eq!(DirectoryQuery::DEFAULT_LIMIT, HistoryQuery::DEFAULT_LIMIT);
        schema.minimum = Some(1.0);
        schema.maximum = Some(f64::from(DirectoryQuery::MAX_LIMIT));
        schema.default = Some(Value::from(HistoryQuery::DEFAULT_LIMIT));
    }
}

/// The `before` cursor: a seq of 1 or more.
#[derive(Debug, Clone, Copy)]
pub struct BeforeSeq;

impl Rule for BeforeSeq {
    fn declare(schema: &mut MetaSchema) {
        schema.minimum = Some(1.0);
    }
}

/// The `after` cursor: a seq of 0 or more.
#[derive(Debug, Clone, Copy)]
pub struct AfterSeq;

impl Rule for AfterSeq {
    fn declare(schema: &mut MetaSchema) {
        schema.minimum = Some(0.0);
    }
}

/// A parameter of type `T` whose schema declares `R`; it parses exactly as `T` does, so that a
/// value breaking `R` reaches the domain and is refused there.
pub struct Ruled<T, R>(pub T, PhantomData<R>);

impl<T, R> Ruled<T, R> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: Type, R: Rule> Type for Ruled<T, R> {
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
        self.0.as_raw_value()
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        self.0.raw_element_iter()
    }

    fn is_none(&self) -> bool {
        self.0.is_none()
    }
}

impl<T: ParseFromParameter, R: Rule> ParseFromParameter for Ruled<T, R> {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        T::parse_from_parameter(value)
            .map(|value| Self(value, PhantomData))
            .map_err(|error| error.propagate())
    }
}

impl<T: ParseFromJSON, R: Rule> ParseFromJSON for Ruled<T, R> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        T::parse_from_json(value).map(|value| Self(value, PhantomData)).map_err(|error| error.propagate())
    }
}

impl<T: ToJSON, R: Rule> ToJSON for Ruled<T, R> {
    fn to_json(&self) -> Option<Value> {
        self.0.to_json()
    }
}
