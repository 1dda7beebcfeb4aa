//! Reading a JSON field without committing to its type, so a decoder can say which field was
//! wrong in one pass.
//!
//! serde's derived structs stop at the first value of the wrong type with a message that does
//! not name the field ("invalid type: integer, expected a string at line 1 column 9"). A field
//! read as [`Lenient<T>`] instead records what it found ([`Found`]) and the parse goes on, so
//! the decoder can report "author.id must be a string, found a number" while still reading the
//! object once, straight into owned values.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

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
