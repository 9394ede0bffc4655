//! FastAPI-shaped 422 answers: [`ValidationIssue`], and the JSON body decoder that produces
//! them.
//!
//! Clients of the product already parse FastAPI's (pydantic's) `detail` arrays, so a bad
//! request reads `{"detail": [{"loc": ["body", "name"], "msg": "Field required", "type":
//! "missing"}]}`. Two sources feed them:
//!
//! * **The shape of the body**, found while decoding ([`decode_json`]). The body is parsed
//!   once into a JSON tree (a syntax error is `json_invalid` at its byte offset), then the
//!   request type is deserialised from that tree by a deserializer of our own whose error type
//!   is typed: a missing field is [`DecodeError::Missing`], a value of the wrong JSON type is
//!   [`DecodeError::Type`] with the [`Expected`] kind taken from *which* `deserialize_*` method
//!   the type asked for (a `String` asks for a string, a `Vec` for a sequence, a struct for a
//!   map). Nothing depends on the wording of serde's or serde_json's messages.
//! * **The core's rules** ([`AuthError::InvalidInput`]): the field the core names becomes
//!   `["body", <field>]`, the problem its message and pydantic type ([`input_issue`]).

use std::fmt;

use nexora_auth::{Field, InvalidInput, Problem};
use serde::{
    Serialize,
    de::{self, DeserializeOwned, IntoDeserializer, Visitor},
};
use serde_json::{Map, Value};

#[cfg(doc)]
use nexora_auth::AuthError;

/// One entry of a 422 `detail` array, in the shape FastAPI clients already parse:
/// `{"loc": ["body", "name"], "msg": "Field required", "type": "missing"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ValidationIssue {
    /// Where the problem is: `["body", "name"]`, `["path", "key_id"]`, `["body"]`.
    pub loc: Vec<LocPart>,
    /// Human-readable message.
    pub msg: String,
    /// Machine-readable kind: `missing`, `string_type`, `json_invalid`, `uuid_parsing`, …
    #[serde(rename = "type")]
    pub kind: &'static str,
}

impl ValidationIssue {
    /// Builds an issue.
    pub fn new(loc: Vec<LocPart>, msg: impl Into<String>, kind: &'static str) -> Self {
        Self {
            loc,
            msg: msg.into(),
            kind,
        }
    }
}

/// A segment of a validation location: a field name or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum LocPart {
    /// A field name (or `body`, `path`, `query`).
    Field(String),
    /// An index into an array.
    Index(usize),
}

impl From<&str> for LocPart {
    fn from(value: &str) -> Self {
        Self::Field(value.to_owned())
    }
}

impl From<usize> for LocPart {
    fn from(value: usize) -> Self {
        Self::Index(value)
    }
}

impl fmt::Display for LocPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Field(name) => f.write_str(name),
            Self::Index(i) => write!(f, "{i}"),
        }
    }
}

/// How a field is called in a message: `Name must be 1 to 100 characters`.
fn label(field: Field) -> &'static str {
    match field {
        Field::Name => "Name",
        Field::Email => "Email",
        Field::Password => "Password",
        Field::Scopes => "Scopes",
        Field::ExpiresAt => "Expiry",
        Field::TtlSecs => "Lifetime",
        Field::ChatId => "Chat id",
        _ => "Value",
    }
}

/// The 422 entry for a rule of the core: at `["body", <field>]`, with pydantic's type for the
/// kind of problem (`string_too_long`, `string_too_short`, `string_length`, else
/// `value_error`).
pub fn input_issue(error: &InvalidInput) -> ValidationIssue {
    let label = label(error.field);
    let (msg, kind) = match &error.problem {
        Problem::TooLong { max } => (
            format!("{label} must be at most {max} bytes"),
            "string_too_long",
        ),
        Problem::TooShort { min } => (
            format!("{label} must be at least {min} characters"),
            "string_too_short",
        ),
        Problem::Length { min, max } => (
            format!("{label} must be {min} to {max} characters"),
            "string_length",
        ),
        Problem::ControlCharacter => (
            format!("{label} must not contain control characters"),
            "value_error",
        ),
        Problem::NotAnEmail => ("Invalid email address".to_owned(), "value_error"),
        Problem::NotInFuture => (format!("{label} must be in the future"), "value_error"),
        Problem::OutOfRange => (
            format!("{label} must be no later than the year 9999 in UTC"),
            "value_error",
        ),
        Problem::Scope(scope) => (scope.to_string(), "value_error"),
        Problem::BelowMinimum { min } => (
            format!("Input should be greater than or equal to {min}"),
            "greater_than_equal",
        ),
        other => (format!("{label} {other}"), "value_error"),
    };
    ValidationIssue::new(vec!["body".into(), error.field.as_str().into()], msg, kind)
}

/// The JSON type a request type asked for where the body had another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expected {
    /// A string.
    String,
    /// An array.
    List,
    /// An object.
    Object,
    /// `true` or `false`.
    Bool,
    /// An integer.
    Int,
    /// A number.
    Float,
    /// `null`.
    Null,
    /// Something a type of its own reads (a time, for instance) that got a value of the wrong
    /// JSON type.
    Value,
}

impl Expected {
    /// pydantic's type and message for "expected this".
    fn issue(self) -> (&'static str, &'static str) {
        match self {
            Self::String => ("string_type", "Input should be a valid string"),
            Self::List => ("list_type", "Input should be a valid list"),
            Self::Object => (
                "model_attributes_type",
                "Input should be a valid dictionary or object to extract fields from",
            ),
            Self::Bool => ("bool_type", "Input should be a valid boolean"),
            Self::Int => ("int_type", "Input should be a valid integer"),
            Self::Float => ("float_type", "Input should be a valid number"),
            Self::Null => ("none_required", "Input should be None"),
            Self::Value => ("value_error", "Input is not valid"),
        }
    }
}

/// Why a JSON tree does not deserialise into a request type: the typed error of the body
/// decoder (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// A required field is absent.
    Missing(&'static str),
    /// A value has the wrong JSON type.
    Type(Expected),
    /// The type refused the value for a reason of its own (a scope that does not parse, a
    /// time that is not RFC 3339); the text is the type's.
    Custom(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(field) => write!(f, "missing field `{field}`"),
            Self::Type(expected) => write!(f, "expected {expected:?}"),
            Self::Custom(text) => f.write_str(text),
        }
    }
}

impl std::error::Error for DecodeError {}

impl de::Error for DecodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::Custom(msg.to_string())
    }

    fn missing_field(field: &'static str) -> Self {
        Self::Missing(field)
    }

    /// A visitor refused the JSON type it was given: types that read through
    /// `deserialize_any` (such as RFC 3339 times) report mismatches this way.
    fn invalid_type(_unexpected: de::Unexpected<'_>, _expected: &dyn de::Expected) -> Self {
        Self::Type(Expected::Value)
    }
}

/// A deserializer over a parsed JSON tree whose error is [`DecodeError`].
struct Tree<'de>(&'de Value);

impl<'de> Tree<'de> {
    fn mismatch(&self, expected: Expected) -> DecodeError {
        DecodeError::Type(expected)
    }
}

struct Elements<'de>(std::slice::Iter<'de, Value>);

impl<'de> de::SeqAccess<'de> for Elements<'de> {
    type Error = DecodeError;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DecodeError> {
        self.0
            .next()
            .map(|value| seed.deserialize(Tree(value)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Entries<'de> {
    entries: serde_json::map::Iter<'de>,
    value: Option<&'de Value>,
}

impl<'de> de::MapAccess<'de> for Entries<'de> {
    type Error = DecodeError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DecodeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        let key: &'de str = key;
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DecodeError> {
        // serde calls `next_value` once after each `next_key`.
        let value = self
            .value
            .take()
            .ok_or_else(|| DecodeError::Custom("value without a key".into()))?;
        seed.deserialize(Tree(value))
    }
}

fn visit_map<'de, V: Visitor<'de>>(
    map: &'de Map<String, Value>,
    visitor: V,
) -> Result<V::Value, DecodeError> {
    visitor.visit_map(Entries {
        entries: map.iter(),
        value: None,
    })
}

impl<'de> de::Deserializer<'de> for Tree<'de> {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => visitor.visit_seq(Elements(items.iter())),
            Value::Object(map) => visit_map(map, visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.0 {
            Value::Bool(b) => visitor.visit_bool(*b),
            _ => Err(self.mismatch(Expected::Bool)),
        }
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.0 {
            Value::Number(n) if n.is_i64() || n.is_u64() => self.deserialize_any(visitor),
            // A whole number written as a float (`342.0`) is that integer, as pydantic and
            // JSON Schema's `integer` read it; a fraction is not.
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && (0.0..9_007_199_254_740_992.0).contains(&f) =>
                {
                    #[allow(
                        clippy::cast_possible_truncation,
                        clippy::cast_sign_loss,
                        reason = "a whole, non-negative float below 2^53 converts exactly"
                    )]
                    visitor.visit_u64(f as u64)
                }
                Some(f) if f.fract() == 0.0 && (-9_007_199_254_740_992.0..0.0).contains(&f) =>
                {
                    #[allow(
                        clippy::cast_possible_truncation,
                        reason = "a whole float above -2^53 converts exactly"
                    )]
                    visitor.visit_i64(f as i64)
                }
                _ => Err(self.mismatch(Expected::Int)),
            },
            _ => Err(self.mismatch(Expected::Int)),
        }
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.0 {
            Value::Number(_) => self.deserialize_any(visitor),
            _ => Err(self.mismatch(Expected::Float)),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.0 {
            Value::String(s) => visitor.visit_borrowed_str(s),
            _ => Err(self.mismatch(Expected::String)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            _ => Err(self.mismatch(Expected::Null)),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.0 {
            Value::Array(items) => visitor.visit_seq(Elements(items.iter())),
            _ => Err(self.mismatch(Expected::List)),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.0 {
            Value::Object(map) => visit_map(map, visitor),
            _ => Err(self.mismatch(Expected::Object)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_unit()
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_seq(visitor)
    }

    serde::forward_to_deserialize_any! {
        i128 u128 bytes byte_buf unit_struct newtype_struct enum identifier
    }
}

/// A request body as the framework received it: the `Content-Type` header value (if any) and
/// the bytes (at most the configured limit; the framework crate stops reading past it).
#[derive(Debug, Clone, Copy)]
pub struct RequestBody<'a> {
    content_type: Option<&'a [u8]>,
    bytes: &'a [u8],
}

impl<'a> RequestBody<'a> {
    /// Wraps the raw `Content-Type` value and body bytes.
    pub fn new(content_type: Option<&'a [u8]>, bytes: &'a [u8]) -> Self {
        Self {
            content_type,
            bytes,
        }
    }

    /// A JSON body (`Content-Type: application/json`).
    pub fn json(bytes: &'a [u8]) -> Self {
        Self {
            content_type: Some(b"application/json"),
            bytes,
        }
    }
}

fn body_issue(loc: Vec<LocPart>, msg: &str, kind: &'static str) -> Vec<ValidationIssue> {
    vec![ValidationIssue::new(loc, msg, kind)]
}

fn is_json_content_type(value: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(value) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", subtype)) => subtype == "json" || subtype.ends_with("+json"),
        _ => false,
    }
}

/// Byte offset of a 1-based line/column position, for FastAPI's `["body", offset]` location.
fn byte_offset(bytes: &[u8], line: usize, column: usize) -> usize {
    let line_start = if line <= 1 {
        0
    } else {
        bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(line - 2)
            .map_or(bytes.len(), |(i, _)| i + 1)
    };
    (line_start + column.saturating_sub(1)).min(bytes.len())
}

fn json_invalid(bytes: &[u8], error: &serde_json::Error) -> Vec<ValidationIssue> {
    let offset = if error.is_eof() {
        bytes.len()
    } else {
        byte_offset(bytes, error.line(), error.column())
    };
    body_issue(
        vec!["body".into(), offset.into()],
        "JSON decode error",
        "json_invalid",
    )
}

/// [`decode_json`] for a body that may be left out: an empty body (or only whitespace) is
/// `T::default()`, whatever its `Content-Type`; any other body is decoded as
/// [`decode_json`] does.
pub fn decode_optional_json<T: DeserializeOwned + Default>(
    body: RequestBody<'_>,
) -> Result<T, Vec<ValidationIssue>> {
    if body.bytes.trim_ascii().is_empty() {
        return Ok(T::default());
    }
    decode_json(body)
}

/// Decodes a JSON request body into `T`, or the FastAPI-style 422 entries that say why not.
///
/// A `Content-Type` other than JSON (`application/json`, parameters allowed, or
/// `application/*+json`) is `model_attributes_type` at `["body"]`; no `Content-Type` at all
/// decodes as JSON, as FastAPI does. An empty body is `missing` at `["body"]`, malformed JSON
/// `json_invalid` at `["body", <byte offset>]`, anything but an object `model_attributes_type`.
/// Unknown fields are ignored; of two equal keys the last counts (as in Python's `json`).
pub fn decode_json<T: DeserializeOwned>(body: RequestBody<'_>) -> Result<T, Vec<ValidationIssue>> {
    let tree = parse_json(body)?;
    if !tree.is_object() {
        // serde's derive would accept an array for a struct; FastAPI's models take objects only.
        return Err(expected_at(vec!["body".into()], Expected::Object));
    }
    decode_tree(&tree)
}

/// Decodes a JSON body that is a list of objects (`list[Model]` in FastAPI) of at most
/// `max_items`, with [`decode_json`]'s rules for the body and for each item: anything but an
/// array is `list_type` at `["body"]`, more than `max_items` items `too_long` at `["body"]`
/// (before any item is looked at), an item that is not an object `model_attributes_type` at
/// `["body", <index>]`, a bad field at `["body", <index>, <field>]`.
pub fn decode_json_list<T: DeserializeOwned>(
    body: RequestBody<'_>,
    max_items: usize,
) -> Result<Vec<T>, Vec<ValidationIssue>> {
    let tree = parse_json(body)?;
    let Some(items) = tree.as_array() else {
        return Err(expected_at(vec!["body".into()], Expected::List));
    };
    if items.len() > max_items {
        return Err(body_issue(
            vec!["body".into()],
            &format!(
                "List should have at most {max_items} items after validation, not {}",
                items.len()
            ),
            "too_long",
        ));
    }
    if let Some(index) = items.iter().position(|item| !item.is_object()) {
        return Err(expected_at(
            vec!["body".into(), index.into()],
            Expected::Object,
        ));
    }
    decode_tree(&tree)
}

fn expected_at(loc: Vec<LocPart>, expected: Expected) -> Vec<ValidationIssue> {
    let (kind, msg) = expected.issue();
    body_issue(loc, msg, kind)
}

/// The body as a JSON tree: its content type checked, empty and malformed bodies refused.
fn parse_json(body: RequestBody<'_>) -> Result<Value, Vec<ValidationIssue>> {
    if body
        .content_type
        .is_some_and(|ct| !is_json_content_type(ct))
    {
        return Err(body_issue(
            vec!["body".into()],
            "Content-Type must be application/json",
            "model_attributes_type",
        ));
    }
    if body.bytes.trim_ascii().is_empty() {
        return Err(body_issue(vec!["body".into()], "Field required", "missing"));
    }
    serde_json::from_slice(body.bytes).map_err(|error| json_invalid(body.bytes, &error))
}

/// Deserialises `T` from the tree; a problem is reported at its path under `["body"]`.
fn decode_tree<T: DeserializeOwned>(tree: &Value) -> Result<T, Vec<ValidationIssue>> {
    serde_path_to_error::deserialize(Tree(tree)).map_err(|error| {
        let mut loc: Vec<LocPart> = vec!["body".into()];
        for segment in error.path().iter() {
            match segment {
                serde_path_to_error::Segment::Seq { index } => loc.push((*index).into()),
                serde_path_to_error::Segment::Map { key } => loc.push(key.as_str().into()),
                serde_path_to_error::Segment::Enum { variant } => {
                    loc.push(variant.as_str().into());
                }
                serde_path_to_error::Segment::Unknown => {}
            }
        }
        match error.into_inner() {
            DecodeError::Missing(field) => {
                loc.push(field.into());
                body_issue(loc, "Field required", "missing")
            }
            DecodeError::Type(expected) => expected_at(loc, expected),
            DecodeError::Custom(text) => {
                body_issue(loc, &format!("Value error, {text}"), "value_error")
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use nexora_auth::NewKey;
    use serde_json::json;

    use super::*;

    fn decode_error(content_type: Option<&str>, body: &str) -> Value {
        let body = RequestBody::new(content_type.map(str::as_bytes), body.as_bytes());
        serde_json::to_value(decode_json::<NewKey>(body).unwrap_err()).unwrap()
    }

    #[test]
    fn whole_floats_are_integers_and_fractions_are_not() {
        fn json(body: &str) -> RequestBody<'_> {
            RequestBody::new(Some(b"application/json"), body.as_bytes())
        }
        let key: NewKey = decode_json(json(
            r#"{"name": "x", "rate_limit": {"limit": 10.0, "period_secs": 60}, "credits": {"remaining": 5e2}}"#,
        ))
        .unwrap();
        assert_eq!(key.rate_limit, nexora_auth::RateLimit::new(10, 60));
        assert_eq!(key.credits.map(|c| c.remaining), Some(500));
        for bad in ["10.5", "-1.0", "1e300"] {
            let body =
                format!(r#"{{"name": "x", "rate_limit": {{"limit": {bad}, "period_secs": 60}}}}"#);
            let error =
                serde_json::to_value(decode_json::<NewKey>(json(&body)).unwrap_err()).unwrap();
            assert_eq!(
                error[0]["loc"],
                json!(["body", "rate_limit", "limit"]),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn missing_and_wrongly_typed_fields_are_fastapi_422s() {
        let json = Some("application/json");
        assert_eq!(
            decode_error(json, "{}"),
            json!([{"loc": ["body", "name"], "msg": "Field required", "type": "missing"}])
        );
        assert_eq!(
            decode_error(json, r#"{"name": 12}"#)[0]["type"],
            "string_type"
        );
        assert_eq!(
            decode_error(json, r#"{"name": null}"#)[0]["loc"],
            json!(["body", "name"])
        );
        assert_eq!(
            decode_error(json, r#"{"name": "x", "scopes": "agents:read"}"#)[0],
            json!({"loc": ["body", "scopes"], "msg": "Input should be a valid list", "type": "list_type"})
        );
        assert_eq!(
            decode_error(json, r#"{"name": "x", "scopes": ["a", 7]}"#)[0],
            json!({"loc": ["body", "scopes", 1], "msg": "Input should be a valid string", "type": "string_type"})
        );
        assert_eq!(
            decode_error(json, r#"{"name": "x", "expires_at": 7}"#)[0],
            json!({"loc": ["body", "expires_at"], "msg": "Input is not valid", "type": "value_error"})
        );
        let bad_scope = decode_error(json, r#"{"name": "x", "scopes": ["a b"]}"#);
        assert_eq!(
            (bad_scope[0]["type"].as_str(), &bad_scope[0]["loc"]),
            (Some("value_error"), &json!(["body", "scopes"]))
        );
        for not_an_object in ["[1, 2]", "\"name\"", "null", "7"] {
            assert_eq!(
                decode_error(json, not_an_object),
                json!([{"loc": ["body"], "msg": "Input should be a valid dictionary or object to extract fields from", "type": "model_attributes_type"}])
            );
        }
        assert_eq!(decode_error(json, "[1, 2")[0]["type"], "json_invalid");
        // Unknown fields are ignored; the last of two equal keys counts.
        let key: NewKey = decode_json(RequestBody::json(
            br#"{"name": "a", "x": [1], "name": "b"}"#,
        ))
        .unwrap();
        assert_eq!(key.name, "b");
    }

    #[test]
    fn malformed_empty_and_non_json_bodies_are_422s() {
        let json = Some("application/json");
        assert_eq!(
            decode_error(json, "{\"name\": "),
            json!([{"loc": ["body", 9], "msg": "JSON decode error", "type": "json_invalid"}])
        );
        assert_eq!(
            decode_error(json, "{\n\"name\": x}")[0]["loc"],
            json!(["body", 10])
        );
        assert_eq!(
            decode_error(json, r#"{"name": "a"} trailing"#)[0]["type"],
            "json_invalid"
        );
        assert_eq!(
            decode_error(json, "  "),
            json!([{"loc": ["body"], "msg": "Field required", "type": "missing"}])
        );
        assert_eq!(
            decode_error(Some("text/plain"), r#"{"name": "a"}"#)[0]["loc"],
            json!(["body"])
        );
        assert_eq!(
            decode_error(Some("application/x-www-form-urlencoded"), "name=a")[0]["type"],
            "model_attributes_type"
        );
        // JSON content types with parameters or a +json suffix, and no content type at all, decode.
        for ct in [
            Some("application/json; charset=utf-8"),
            Some("Application/JSON"),
            Some("application/vnd.api+json"),
            None,
        ] {
            let key: NewKey =
                decode_json(RequestBody::new(ct.map(str::as_bytes), br#"{"name": "a"}"#)).unwrap();
            assert_eq!(key.name, "a");
        }
    }

    #[test]
    fn core_rules_name_the_body_field() {
        let issue = input_issue(&InvalidInput::new(
            Field::Name,
            Problem::Length { min: 1, max: 100 },
        ));
        assert_eq!(
            serde_json::to_value(issue).unwrap(),
            json!({"loc": ["body", "name"], "msg": "Name must be 1 to 100 characters", "type": "string_length"})
        );
        let issue = input_issue(&InvalidInput::new(Field::ExpiresAt, Problem::NotInFuture));
        assert_eq!(issue.msg, "Expiry must be in the future");
        assert_eq!(issue.loc, vec!["body".into(), "expires_at".into()]);
        let issue = input_issue(&InvalidInput::new(Field::ExpiresAt, Problem::OutOfRange));
        assert_eq!(
            (issue.msg.as_str(), issue.kind),
            (
                "Expiry must be no later than the year 9999 in UTC",
                "value_error"
            )
        );
    }
}
