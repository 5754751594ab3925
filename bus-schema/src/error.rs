//! Typed errors of the contract. Every validation error names the offending field,
//! so an HTTP layer can point a client at it.

use std::fmt;

/// Why a field was rejected.
#[derive(Debug, Clone, PartialEq)]
pub enum ValidationErrorKind {
    /// Required and absent.
    Missing,
    /// Present but empty.
    Empty,
    /// A number outside its allowed range.
    OutOfRange { min: f64, max: f64, value: f64 },
    /// A value that is not one of the known names.
    UnknownVariant { value: String, expected: &'static str },
    /// A value with the wrong shape (not a UUID, a bad identifier, ...).
    InvalidFormat { reason: String },
}

impl fmt::Display for ValidationErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => write!(f, "is required"),
            Self::Empty => write!(f, "must not be empty"),
            Self::OutOfRange { min, max, value } => {
                write!(f, "{value} is outside [{min}, {max}]")
            }
            Self::UnknownVariant { value, expected } => {
                write!(f, "unknown value {value:?}, expected one of {expected}")
            }
            Self::InvalidFormat { reason } => write!(f, "{reason}"),
        }
    }
}

/// A payload or envelope field that does not satisfy the contract.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid field `{field}`: {kind}")]
pub struct ValidationError {
    /// Dotted path of the field, e.g. `payload.sentiment_score`.
    pub field: String,
    pub kind: ValidationErrorKind,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, kind: ValidationErrorKind) -> Self {
        Self { field: field.into(), kind }
    }

    pub fn missing(field: impl Into<String>) -> Self {
        Self::new(field, ValidationErrorKind::Missing)
    }

    pub fn empty(field: impl Into<String>) -> Self {
        Self::new(field, ValidationErrorKind::Empty)
    }

    pub fn format(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::new(field, ValidationErrorKind::InvalidFormat { reason: reason.into() })
    }

    /// The same error, with its field nested under `prefix`.
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = format!("{prefix}.{}", self.field);
        self
    }
}

/// Bytes or JSON that could not be turned into an event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(
        "schema version {found} of {event_type} is newer than this build understands ({supported})"
    )]
    UnsupportedSchemaVersion { event_type: String, found: u32, supported: u32 },
}

impl DecodeError {
    /// The field at fault, where one is known.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid(error) => Some(&error.field),
            Self::UnsupportedSchemaVersion { .. } => Some("schema_version"),
            Self::Protobuf(_) | Self::Json(_) => None,
        }
    }
}
