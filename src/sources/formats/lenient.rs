//! Reading a JSON field without committing to its type, so a decoder can say which field was
//! wrong in one pass.
//!
//! serde's derived structs stop at the first value of the wrong type with a message that does
//! not name the field ("invalid type: integer, expected a string at line 1 column 9"). A field
//! read as [`Lenient<T>`] instead records what it found ([`Found`]) and the parse goes on, so
//! the decoder can report "author.id must be a string, found a number" while still reading the
//! object once, straight into owned values.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::{BoolDeserializer, MapAccessDeserializer, U64Deserializer};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::FormatError;

/// A JSON value that should be a `T`, or what was found instead.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Lenient<T> {
    Value(T),
    Wrong(Found),
}

/// The JSON type of a value that was not the expected one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Found {
    /// An integer, kept so an error can show the fix (`"id":"123"`).
    Integer(i128),
    Float,
    Boolean,
    Null,
    String,
    Array,
    Object,
}

impl Found {
    /// The phrase for "must be a string, found ...".
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Found::Integer(_) | Found::Float => "a number",
            Found::Boolean => "a boolean",
            Found::Null => "null",
            Found::String => "a string",
            Found::Array => "an array",
            Found::Object => "an object",
        }
    }
}

/// The JSON shapes a [`Lenient`] field accepts as its value; every other shape is [`Found`].
pub(crate) trait Shape: Sized {
    /// Builds the value from a JSON string; `None` if strings are the wrong type.
    fn from_str(_value: &str) -> Option<Self> {
        None
    }

    /// Builds the value from a JSON array, or drains it and returns `None`.
    fn from_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    /// Builds the value from a JSON object, or drains it and returns `None`.
    fn from_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

impl Shape for String {
    fn from_str(value: &str) -> Option<Self> {
        Some(value.to_owned())
    }
}

/// A JSON array that should hold only strings.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Strings {
    /// The string elements, in order.
    pub(crate) items: Vec<String>,
    /// How many elements the array had, strings or not.
    pub(crate) len: usize,
    /// The index and type of the first element that is not a string, for `urls[3] must be a
    /// string, found a number`.
    pub(crate) first_wrong: Option<(usize, Found)>,
}

impl Shape for Strings {
    fn from_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
        // Not sized from the size hint: the array's length is whatever the sender wrote.
        let mut strings = Strings::default();
        while let Some(item) = seq.next_element::<Lenient<String>>()? {
            match item {
                Lenient::Value(item) => strings.items.push(item),
                Lenient::Wrong(found) => {
                    strings.first_wrong.get_or_insert((strings.len, found));
                }
            }
            strings.len += 1;
        }
        Ok(Some(strings))
    }
}

impl<'de, T: Shape> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LenientVisitor(PhantomData))
    }
}

struct LenientVisitor<T>(PhantomData<T>);

impl<T> LenientVisitor<T> {
    fn found_or<E>(value: Option<T>, found: Found) -> Result<Lenient<T>, E> {
        Ok(value.map_or(Lenient::Wrong(found), Lenient::Value))
    }
}

impl<'de, T: Shape> Visitor<'de> for LenientVisitor<T> {
    type Value = Lenient<T>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Lenient::Wrong(Found::Boolean))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        Ok(Lenient::Wrong(Found::Integer(value.into())))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        Ok(Lenient::Wrong(Found::Integer(value.into())))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Lenient::Wrong(Found::Float))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Lenient::Wrong(Found::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Lenient::Wrong(Found::Null))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Self::found_or(T::from_str(value), Found::String)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Self::found_or(T::from_seq(seq)?, Found::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Self::found_or(T::from_map(map)?, Found::Object)
    }
}

/// A JSON value that should be a string, borrowed from the input when it has no escapes: the
/// borrowed counterpart of `Lenient<String>`, for the decoders that read large objects (Twitter
/// v1.1, Jetstream) and keep few of their strings.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum LenientStr<'a> {
    Value(Cow<'a, str>),
    Wrong(Found),
}

impl<'a> LenientStr<'a> {
    /// The string, or "`field` must be a string, found ...".
    pub(crate) fn string(self, field: impl fmt::Display) -> Result<Cow<'a, str>, FormatError> {
        match self {
            LenientStr::Value(value) => Ok(value),
            LenientStr::Wrong(found) => Err(FormatError::invalid(
                field.to_string(),
                format!("must be a string, found {}", found.describe()),
            )),
        }
    }

    /// The string if it is one; `None` for any other JSON type.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            LenientStr::Value(value) => Some(value),
            LenientStr::Wrong(_) => None,
        }
    }
}

impl From<Lenient<String>> for LenientStr<'_> {
    fn from(value: Lenient<String>) -> Self {
        match value {
            Lenient::Value(value) => LenientStr::Value(Cow::Owned(value)),
            Lenient::Wrong(found) => LenientStr::Wrong(found),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for LenientStr<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LenientStrVisitor)
    }
}

struct LenientStrVisitor;

impl<'de> Visitor<'de> for LenientStrVisitor {
    type Value = LenientStr<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(LenientStr::Value(Cow::Borrowed(value)))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        // Only strings with escapes get here: serde_json must unescape them into a copy.
        Ok(LenientStr::Value(Cow::Owned(value.to_owned())))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(LenientStr::Wrong(Found::Boolean))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        Ok(LenientStr::Wrong(Found::Integer(value.into())))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        Ok(LenientStr::Wrong(Found::Integer(value.into())))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(LenientStr::Wrong(Found::Float))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(LenientStr::Wrong(Found::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(LenientStr::Wrong(Found::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(LenientStr::Wrong(Found::Array))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(LenientStr::Wrong(Found::Object))
    }
}

/// A value of type `T` (an object, a boolean or an unsigned integer), or what was found
/// instead: for the top-level keys one format reads as structures and another format's
/// producers may use for anything (a native tweet with `"user": "bob"` stays a native tweet).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Loose<T> {
    Value(T),
    Wrong(Found),
}

impl<T> Loose<T> {
    /// The value, or "`field` must be `expected`, found ...".
    pub(crate) fn expect(self, field: &str, expected: &str) -> Result<T, FormatError> {
        match self {
            Loose::Value(value) => Ok(value),
            Loose::Wrong(found) => Err(FormatError::invalid(
                field,
                format!("must be {expected}, found {}", found.describe()),
            )),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Loose<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LooseVisitor(PhantomData))
    }
}

struct LooseVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for LooseVisitor<T> {
    type Value = Loose<T>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Self::Value, E> {
        Ok(T::deserialize(BoolDeserializer::<E>::new(value))
            .map_or(Loose::Wrong(Found::Boolean), Loose::Value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        Ok(Loose::Wrong(Found::Integer(value.into())))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        Ok(T::deserialize(U64Deserializer::<E>::new(value))
            .map_or(Loose::Wrong(Found::Integer(value.into())), Loose::Value))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Loose::Wrong(Found::Float))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Loose::Wrong(Found::String))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Loose::Wrong(Found::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Loose::Wrong(Found::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // Derived structs would read an array positionally; none of our keys is an array.
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Loose::Wrong(Found::Array))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        // Strings inside stay borrowed: the map access is serde_json's own.
        T::deserialize(MapAccessDeserializer::new(map)).map(Loose::Value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<T: Shape>(json: &str) -> Lenient<T> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_value_of_the_expected_type_is_kept() {
        assert_eq!(
            read::<String>(r#""a\"b""#),
            Lenient::Value(String::from("a\"b"))
        );
        assert_eq!(
            read::<Strings>(r#"["x", 1, "y", null]"#),
            Lenient::Value(Strings {
                items: vec![String::from("x"), String::from("y")],
                len: 4,
                first_wrong: Some((1, Found::Integer(1))),
            })
        );
    }

    #[test]
    fn other_types_are_recorded_and_skipped() {
        assert_eq!(read::<String>("-7"), Lenient::Wrong(Found::Integer(-7)));
        assert_eq!(read::<String>("1.5"), Lenient::Wrong(Found::Float));
        assert_eq!(read::<String>("true"), Lenient::Wrong(Found::Boolean));
        assert_eq!(read::<String>("null"), Lenient::Wrong(Found::Null));
        assert_eq!(
            read::<String>(r#"{"a":[1,{"b":2}]}"#),
            Lenient::Wrong(Found::Object)
        );
        assert_eq!(read::<String>("[[1],{}]"), Lenient::Wrong(Found::Array));
        assert_eq!(read::<Strings>(r#""x""#), Lenient::Wrong(Found::String));
    }

    #[test]
    fn broken_json_inside_a_lenient_field_is_still_an_error() {
        assert!(serde_json::from_str::<Lenient<String>>(r#"{"a":}"#).is_err());
        assert!(serde_json::from_str::<Lenient<String>>("[1,").is_err());
    }
}
