//! PII masking for AgentCRM: the only component that sees raw customer
//! text. It turns text into masked text in which every piece of personal
//! data is replaced by a reversible token, and seals the originals.
//!
//! - [`detect`]: the [`Detector`], tuned for mixed English and Chinese CRM
//!   text, and overlap resolution. Helpers it uses, private:
//!   `checks` (Luhn, mod-97, Chinese ID, SSN ranges), `phone` (phone
//!   shapes and `phonenumber` validation), `person` and `surnames`
//!   (known names and cue-introduced names).
//! - [`entity`]: [`Entity`] and [`EntityType`], what detection reports.
//! - [`config`]: [`DetectorConfig`] with custom patterns.
//! - [`token`]: [`mask`], [`restore`] and the per-customer [`TokenTable`].
//! - [`vault`]: AES-256-GCM [`seal`]/[`open`] under a [`CustomerKey`], the
//!   [`VaultStore`] trait and an in-memory store; crypto-shredding.
//! - [`jsonl`]: [`mask_jsonl`], the line protocol behind `masking mask`.
//! - [`store`]: [`TableVaultStore`], the [`VaultStore`] on a local table of
//!   the node's store (only `event-store` opens sled).
//! - [`service`]: [`MaskingVault`], the vault as a service: the
//!   `agent_kit::vault::PiiVault` the gateway calls, per-customer masking for
//!   the agent, look-ups by keyed hash, and crypto-shredding
//!   ([`MaskingVault::forget`]).
//! - [`vault_service`]: the vault answering the gateway over NATS
//!   (`crm.vault.<operation>`).
//! - [`agent`]: [`MaskingAgent`], the loop from raw intake to masked
//!   canonical events.

pub mod agent;
mod checks;
pub mod config;
pub mod detect;
pub mod entity;
pub mod jsonl;
mod person;
mod phone;
pub mod service;
pub mod store;
mod surnames;
pub mod token;
pub mod vault;
pub mod vault_service;

pub use agent::{BurstYield, MaskingAgent, Metrics, MetricsSnapshot};
pub use config::{CustomPattern, DetectorConfig};
pub use detect::{Detector, DetectorError};
pub use entity::{Entity, EntityType};
pub use jsonl::{JsonlOptions, JsonlSummary, mask_jsonl, mask_jsonl_with};
pub use service::{ForgetReport, MaskReport, MaskingVault, ServiceError};
pub use store::TableVaultStore;
pub use token::{Masked, TokenEntry, TokenTable, mask, restore};
pub use vault::{CustomerKey, InMemoryVaultStore, Vault, VaultError, VaultStore, open, seal};
