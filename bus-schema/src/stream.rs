//! Stream identity: which aggregate an event belongs to.

use std::fmt;
use std::str::FromStr;

use compact_str::CompactString;

use crate::error::ValidationError;

/// Longest aggregate id accepted; ids become NATS subject tokens and sled keys.
pub const MAX_ID_LEN: usize = 128;

/// An aggregate kind plus its id, written `kind.id` (e.g. `customer.cus_12345`).
///
/// Both parts are single NATS subject tokens: the kind is lower-case ASCII letters,
/// digits and `_`; the id is ASCII letters, digits, `_` and `-`. Dots, wildcards and
/// white space are refused, so a stream always maps to exactly one subject.
///
/// Both parts are kept inline up to 24 bytes (no heap allocation): a stream id
/// is decoded with every event and cloned into every index entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    aggregate: CompactString,
    id: CompactString,
}

impl StreamId {
    pub fn new(aggregate: &str, id: &str) -> Result<Self, ValidationError> {
        validate_aggregate(aggregate)?;
        validate_id("id", id)?;
        Ok(Self { aggregate: CompactString::new(aggregate), id: CompactString::new(id) })
    }

    /// The stream of one customer.
    pub fn customer(customer_id: &str) -> Result<Self, ValidationError> {
        Self::new("customer", customer_id)
    }

    pub fn aggregate(&self) -> &str {
        &self.aggregate
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.aggregate, self.id)
    }
}

impl FromStr for StreamId {
    type Err = ValidationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (aggregate, id) = text
            .split_once('.')
            .ok_or_else(|| ValidationError::format("stream", "expected `<aggregate>.<id>`"))?;
        Self::new(aggregate, id)
            .map_err(|error| ValidationError { field: "stream".into(), ..error })
    }
}

fn validate_aggregate(aggregate: &str) -> Result<(), ValidationError> {
    if aggregate.is_empty() {
        return Err(ValidationError::empty("aggregate"));
    }
    let valid = aggregate.len() <= 64
        && aggregate.starts_with(|c: char| c.is_ascii_lowercase())
        && aggregate.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(ValidationError::format(
            "aggregate",
            "must be lower-case ASCII letters, digits or `_`, starting with a letter",
        ));
    }
    Ok(())
}

/// Checks an identifier that becomes a subject token (customer ids, source names, ...).
pub fn validate_id(field: &str, id: &str) -> Result<(), ValidationError> {
    if id.is_empty() {
        return Err(ValidationError::empty(field));
    }
    if id.len() > MAX_ID_LEN {
        return Err(ValidationError::format(field, format!("longer than {MAX_ID_LEN} bytes")));
    }
    if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(ValidationError::format(
            field,
            "may hold only ASCII letters, digits, `_` and `-`",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let stream = StreamId::customer("cus_123-a").unwrap();
        assert_eq!(stream.to_string(), "customer.cus_123-a");
        assert_eq!("customer.cus_123-a".parse::<StreamId>().unwrap(), stream);
    }

    #[test]
    fn refuses_tokens_that_would_break_a_subject() {
        for bad in ["", "a.b", "a b", "a*", "a>", "客户"] {
            let error = StreamId::customer(bad).unwrap_err();
            assert_eq!(error.field, "id", "{bad:?}");
        }
        assert_eq!("nodot".parse::<StreamId>().unwrap_err().field, "stream");
        assert_eq!(StreamId::new("Customer", "x").unwrap_err().field, "aggregate");
    }
}
