//! The gateway's limits, from flags or a config file.

use std::time::Duration;

use serde::Deserialize;

/// Limits and timings of the gateway. Every field has a default, so an empty
/// config is valid; an unknown field is an error at start-up.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// The largest request body accepted, in bytes; larger ones get 413.
    pub body_limit: usize,
    /// How far a `webhook-timestamp` may be from now, in seconds.
    pub signature_tolerance_seconds: i64,
    /// How long a write waits for the read model to show it before answering
    /// (read-your-writes), in milliseconds.
    pub read_your_writes_timeout_ms: u64,
    /// The most customers one list page holds.
    pub max_page_size: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            body_limit: 1024 * 1024,
            signature_tolerance_seconds: crate::signature::DEFAULT_TOLERANCE_SECONDS,
            read_your_writes_timeout_ms: 5_000,
            max_page_size: 200,
        }
    }
}

impl GatewayConfig {
    pub fn read_your_writes_timeout(&self) -> Duration {
        Duration::from_millis(self.read_your_writes_timeout_ms)
    }
}
