//! Detector configuration, read from the agent's config file.

use serde::Deserialize;

/// Configuration of a [`crate::Detector`]. Unknown fields are an error so
/// that a typo in a config file fails at start-up instead of silently
/// disabling a pattern.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    /// Site-specific identifiers to mask in addition to the built-in types.
    #[serde(default)]
    pub custom_patterns: Vec<CustomPattern>,
}

/// A configured pattern: every match of `pattern` is masked as `name`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomPattern {
    /// The entity type name used in tokens, e.g. `EMPLOYEE_ID`. Must be
    /// upper-case ASCII letters, digits and `_`, start with a letter, and
    /// differ from the built-in names, so that tokens stay unambiguous.
    pub name: String,
    /// A `regex` crate pattern. Matches are taken as they are; anchor or
    /// delimit the pattern yourself if it must not match inside words.
    pub pattern: String,
    /// Score used when the match overlaps a built-in detection; defaults
    /// to 0.9, below checksum-validated types.
    #[serde(default)]
    pub score: Option<f32>,
}
