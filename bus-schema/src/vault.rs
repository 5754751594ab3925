//! The vault service's wire contract: JSON request and reply bodies on
//! `crm.vault.<operation>` (see [`crate::subjects::vault`]).
//!
//! Only the gateway sends these requests and only the masking agent answers
//! them (NATS permissions, `deploy/nats/nats-server.conf`). Requests may hold
//! personal data (a profile to tokenize, an email to look up); replies hold
//! tokens, customer ids and flags only, except the reply to `reveal`, which
//! goes to the gateway's own reply inbox.

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// Personal profile fields; `None` = not given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// `crm.vault.tokenize`: replace each field by the customer's token.
/// Answered with a [`VaultProfile`] of tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizeRequest {
    pub customer_id: String,
    pub profile: VaultProfile,
}

/// What a look-up compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LookupField {
    Email,
    Phone,
}

/// `crm.vault.lookup`: the customer whose profile holds this email or phone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest {
    pub field: LookupField,
    pub value: String,
}

/// The answer to a [`LookupRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupReply {
    pub customer_id: Option<String>,
}

/// `crm.vault.reveal`: `text` with the customer's tokens restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevealRequest {
    pub customer_id: String,
    pub text: String,
}

/// The answer to a [`RevealRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevealReply {
    pub text: String,
}

/// `crm.vault.forget`: crypto-shred one customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgetRequest {
    pub customer_id: String,
}

/// The answer to a [`ForgetRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgetReply {
    /// Whether anything was destroyed (false: already forgotten, or never stored).
    pub destroyed: bool,
}

/// Why the vault refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VaultFaultKind {
    /// The request is wrong (a malformed body, a forgotten customer): do not retry.
    Invalid,
    /// The vault cannot answer now; retry later.
    Unavailable,
}

/// A refusal: what kind, and the field at fault where there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultFault {
    pub kind: VaultFaultKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Never holds personal data.
    pub message: String,
}

impl VaultFault {
    pub fn invalid(error: &ValidationError) -> Self {
        Self {
            kind: VaultFaultKind::Invalid,
            field: Some(error.field.clone()),
            message: error.kind.to_string(),
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self { kind: VaultFaultKind::Unavailable, field: None, message: message.into() }
    }
}

/// Every reply body: `{"ok": …}` or `{"fault": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VaultReply<T> {
    Ok(T),
    Fault(VaultFault),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_have_a_stable_json_shape() {
        let reply = VaultReply::Ok(ForgetReply { destroyed: true });
        assert_eq!(serde_json::to_string(&reply).unwrap(), r#"{"ok":{"destroyed":true}}"#);
        let fault: VaultReply<ForgetReply> =
            VaultReply::Fault(VaultFault::invalid(&ValidationError::empty("customer_id")));
        let text = serde_json::to_string(&fault).unwrap();
        assert!(text.starts_with(r#"{"fault":{"kind":"invalid","field":"customer_id""#), "{text}");
        let request: LookupRequest =
            serde_json::from_str(r#"{"field":"phone","value":"+8613812345678"}"#).unwrap();
        assert_eq!(request.field, LookupField::Phone);
        assert!(serde_json::from_str::<ForgetRequest>(r#"{"customer_id":"c","x":1}"#).is_err());
    }
}
