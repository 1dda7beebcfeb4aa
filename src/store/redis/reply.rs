//! A function's reply, read: an array whose first element says what happened (`reserved`,
//! `sold_out`, ...) and whose other elements are that outcome's values. Every read is checked;
//! a reply of another shape is a [`MalformedReply`] (a library and a node that disagree), never
//! a panic.

use redis::Value;

/// A reply that is not what the library's functions return.
#[derive(Debug, thiserror::Error)]
#[error("a buyline function replied {what}")]
pub struct MalformedReply {
    what: String,
}

impl MalformedReply {
    pub fn new(what: impl Into<String>) -> Self {
        MalformedReply { what: what.into() }
    }
}

/// A function's reply: its outcome and values.
#[derive(Debug)]
pub struct Reply {
    outcome: String,
    values: Vec<Value>,
}

impl Reply {
    /// Reads `value`, the whole reply of an `FCALL`.
    pub fn read(value: Value) -> Result<Reply, MalformedReply> {
        let Value::Array(mut items) = value else {
            return Err(MalformedReply::new(format!("{value:?}, not an array")));
        };
        if items.is_empty() {
            return Err(MalformedReply::new("an empty array"));
        }
        let first = items.remove(0);
        let outcome = text_of(&first)
            .ok_or_else(|| MalformedReply::new(format!("{first:?} as its outcome")))?;
        Ok(Reply {
            outcome,
            values: items,
        })
    }

    /// What happened: `reserved`, `sold_out`, ...
    pub fn outcome(&self) -> &str {
        &self.outcome
    }

    /// Value `index` (0 is the first after the outcome) as an integer.
    pub fn int(&self, index: usize) -> Result<i64, MalformedReply> {
        match self.values.get(index) {
            Some(Value::Int(n)) => Ok(*n),
            Some(other) => text_of(other)
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| self.bad(index, "an integer")),
            None => Err(self.bad(index, "an integer")),
        }
    }

    /// Value `index` as a `u32` (a count).
    pub fn count(&self, index: usize) -> Result<u32, MalformedReply> {
        u32::try_from(self.int(index)?).map_err(|_| self.bad(index, "a count (0 to 2^32 - 1)"))
    }

    /// Value `index` as a `u64` (a total or a version).
    pub fn unsigned(&self, index: usize) -> Result<u64, MalformedReply> {
        u64::try_from(self.int(index)?).map_err(|_| self.bad(index, "a non-negative integer"))
    }

    /// Value `index` as text.
    pub fn text(&self, index: usize) -> Result<String, MalformedReply> {
        self.values
            .get(index)
            .and_then(text_of)
            .ok_or_else(|| self.bad(index, "text"))
    }

    /// How many values follow the outcome.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Value `index` as raw bytes, or `None` for a nil (a key that was missing).
    pub fn bytes(&self, index: usize) -> Result<Option<&[u8]>, MalformedReply> {
        match self.values.get(index) {
            Some(Value::BulkString(bytes)) => Ok(Some(bytes)),
            Some(Value::Nil) => Ok(None),
            _ => Err(self.bad(index, "bytes or nil")),
        }
    }

    /// The values, unread (a batch's reply holds one reply a request, of more than one shape).
    pub fn into_values(self) -> Vec<Value> {
        self.values
    }

    /// A reply whose outcome this caller does not expect.
    pub fn unexpected(&self) -> MalformedReply {
        MalformedReply::new(format!("the unexpected outcome {:?}", self.outcome))
    }

    fn bad(&self, index: usize, wanted: &str) -> MalformedReply {
        MalformedReply::new(format!(
            "{:?} after {:?} where {wanted} was expected at {index}",
            self.values.get(index),
            self.outcome
        ))
    }
}

/// A bulk or simple string as UTF-8 text.
fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn an_outcome_and_its_values_are_read_and_checked() {
        let reply = Reply::read(Value::Array(vec![
            bulk("reserved"),
            bulk("res_1"),
            Value::Int(2),
            Value::Int(-1),
        ]))
        .expect("a reply");
        assert_eq!(reply.outcome(), "reserved");
        assert_eq!(reply.text(0).expect("text"), "res_1");
        assert_eq!(reply.count(1).expect("count"), 2);
        assert!(reply.count(2).is_err(), "a negative count");
        assert!(reply.int(3).is_err(), "past the end");
        assert!(reply.text(1).is_err(), "an integer is not text");
    }

    #[test]
    fn replies_of_another_shape_are_errors_not_panics() {
        assert!(Reply::read(Value::Int(1)).is_err());
        assert!(Reply::read(Value::Array(vec![])).is_err());
        assert!(Reply::read(Value::Array(vec![Value::Int(1)])).is_err());
        assert!(Reply::read(Value::Nil).is_err());
    }
}
