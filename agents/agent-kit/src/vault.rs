//! The personal-data boundary as a service: what the gateway and other edges
//! call instead of ever keeping personal data themselves.
//!
//! Only the masking agent implements [`PiiVault`]: it keeps originals encrypted
//! under a per-customer key and hands out tokens (`<EMAIL_1>`, `<PERSON_1>`, …)
//! that are stable for one customer. Canonical events and read models only ever
//! hold those tokens.

use async_trait::async_trait;

use crate::bus::BusError;

/// Personal fields of a customer profile; `None` = not given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileFields {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// How a customer can be looked up by personal data without storing it in the
/// clear (the vault keeps a keyed hash of the normalised value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupKind {
    Email,
    Phone,
}

#[async_trait]
pub trait PiiVault: Send + Sync + 'static {
    /// Replaces each given field by its token for this customer, storing the
    /// original in the vault and indexing email and phone for [`PiiVault::lookup`].
    async fn tokenize_profile(
        &self,
        customer_id: &str,
        profile: ProfileFields,
    ) -> Result<ProfileFields, BusError>;

    /// The customer whose profile holds this (normalised) email or phone.
    async fn lookup(&self, kind: LookupKind, value: &str) -> Result<Option<String>, BusError>;

    /// `text` with this customer's tokens restored, for a viewer allowed to see
    /// personal data. Tokens of a forgotten customer stay tokens.
    async fn reveal(&self, customer_id: &str, text: &str) -> Result<String, BusError>;
}
