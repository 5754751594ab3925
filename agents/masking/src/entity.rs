//! What the detector reports: a typed span of the original text.

use std::fmt;
use std::sync::Arc;

/// The kind of personal data a span holds. The names returned by
/// [`EntityType::name`] are the protocol names used in tokens and in the
/// JSONL output.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityType {
    /// An e-mail address.
    Email,
    /// A telephone number, international or national.
    Phone,
    /// A payment card number that passes Luhn and fits a card network.
    CreditCard,
    /// An International Bank Account Number with a valid mod-97 check.
    Iban,
    /// A US Social Security Number outside the never-issued ranges.
    UsSsn,
    /// A Chinese resident identity card number with a valid check character.
    CnId,
    /// An IPv4 or IPv6 address.
    IpAddress,
    /// A person's name.
    Person,
    /// A type defined by a configured custom pattern, by its configured name.
    Custom(Arc<str>),
}

impl EntityType {
    /// The names of the built-in types, as they appear in tokens and JSONL.
    pub const BUILT_IN_NAMES: [&'static str; 8] =
        ["EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "US_SSN", "CN_ID", "IP_ADDRESS", "PERSON"];

    /// The protocol name of this type (`EMAIL`, `CREDIT_CARD`, a custom name...).
    pub fn name(&self) -> &str {
        match self {
            Self::Email => "EMAIL",
            Self::Phone => "PHONE",
            Self::CreditCard => "CREDIT_CARD",
            Self::Iban => "IBAN",
            Self::UsSsn => "US_SSN",
            Self::CnId => "CN_ID",
            Self::IpAddress => "IP_ADDRESS",
            Self::Person => "PERSON",
            Self::Custom(name) => name,
        }
    }
}

impl fmt::Display for EntityType {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// One detected piece of personal data. Offsets are byte offsets into the
/// text given to the detector, always on `char` boundaries; the JSONL
/// interface converts them to code points.
#[derive(Clone, Debug, PartialEq)]
pub struct Entity {
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
    /// What the span holds.
    pub entity_type: EntityType,
    /// Confidence in `0.0..=1.0`; higher wins when detections overlap.
    pub score: f32,
}
