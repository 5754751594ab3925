//! [`MaskingVault`]: the masking agent's vault as a service. It implements
//! [`PiiVault`] for the gateway and masks interaction text for the agent loop,
//! both over one store so that a customer's tokens agree everywhere.
//!
//! - Originals live only in the customer's token table, sealed with AES-256-GCM
//!   under the customer's own key ([`crate::vault`]).
//! - Emails and phones are found again through a keyed hash (HMAC-SHA256 with a
//!   node secret kept in the vault table), never stored in the clear.
//! - [`MaskingVault::forget`] destroys the key, the sealed table and the
//!   customer's index entries, and leaves a tombstone: from then on the
//!   customer's tokens restore to nothing and no new personal data of theirs is
//!   accepted.
//!
//! Nothing here flushes implicitly except [`PiiVault::tokenize_profile`] and
//! [`MaskingVault::forget`]: the agent loop masks a batch, calls
//! [`MaskingVault::flush`] once, and only then appends the events whose tokens
//! the tables now hold.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use agent_kit::BusError;
use agent_kit::vault::{LookupKind, PiiVault, ProfileFields};
use async_trait::async_trait;
use bus_schema::ValidationError;
use event_store::local::LocalTable;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::detect::Detector;
use crate::store::{TableVaultStore, customer_key, store_error};
use crate::token::{TokenTable, mask, restore};
use crate::vault::{Vault, VaultError, VaultStore};

const NODE_SECRET: &[u8] = b"s/node-secret";
const INDEX_PREFIX: &str = "i/";
/// How many decrypted token tables stay in memory. The agent sees raw text
/// anyway; the cache only saves an AES-GCM open per message.
const CACHED_TABLES: usize = 4096;

/// Why the vault refused or failed. Match on the variant.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The customer was forgotten: their personal data is not stored again.
    #[error("customer {customer} was forgotten")]
    Forgotten { customer: String },
    /// Storage or cryptography failed; nothing was half-written that a retry
    /// would not repair.
    #[error(transparent)]
    Vault(#[from] VaultError),
}

impl From<ServiceError> for BusError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Forgotten { customer } => BusError::Invalid(ValidationError::format(
                "customer_id",
                format!("customer {customer} was forgotten; their personal data is not kept"),
            )),
            ServiceError::Vault(error) => BusError::Unavailable(format!("vault: {error}")),
        }
    }
}

/// What masking one customer's texts found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaskReport {
    /// Detected values replaced by tokens, over all texts.
    pub entities: usize,
    /// Whether new tokens were minted (the table was sealed again and must be
    /// flushed before the masked text is appended).
    pub minted: bool,
}

/// What [`MaskingVault::forget`] destroyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForgetReport {
    /// Whether a key existed (false: nothing was ever stored, or already forgotten).
    pub key_destroyed: bool,
    /// Look-up index entries removed.
    pub index_entries: usize,
}

/// The vault of the masking agent (see the module documentation).
pub struct MaskingVault {
    vault: Vault<TableVaultStore>,
    table: LocalTable,
    node_secret: Zeroizing<[u8; 32]>,
    /// Token tables are read, extended and sealed back under this lock, so two
    /// writers never mint the same token twice; it also guards the cache.
    tables: Mutex<HashMap<String, TokenTable>>,
}

/// An email as compared: trimmed, lower-case (the webhook contract's rule).
pub fn normalise_email(email: &str) -> String {
    bus_schema::webhook::normalise_email(email)
}

/// A phone as compared: its digits, with a leading `+` kept.
pub fn normalise_phone(phone: &str) -> String {
    let trimmed = phone.trim();
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    if trimmed.starts_with('+') { format!("+{digits}") } else { digits }
}

impl MaskingVault {
    /// Opens the vault in `table`, creating the node secret on first use.
    pub fn open(table: LocalTable) -> Result<Self, VaultError> {
        let stored = match table.get(NODE_SECRET).map_err(store_error)? {
            Some(bytes) => bytes,
            None => {
                let mut fresh = Zeroizing::new(vec![0u8; 32]);
                getrandom::fill(&mut fresh).map_err(VaultError::Random)?;
                // Only the first writer's secret is kept, so concurrent openers agree.
                let kept = table
                    .insert_new(NODE_SECRET, &fresh)
                    .map_err(store_error)?
                    .unwrap_or_else(|| fresh.to_vec());
                table.flush().map_err(store_error)?;
                kept
            }
        };
        let node_secret = <[u8; 32]>::try_from(stored.as_slice())
            .map(Zeroizing::new)
            .map_err(|_| VaultError::Store("malformed node secret".into()))?;
        Ok(Self {
            vault: Vault::new(TableVaultStore::new(table.clone())),
            table,
            node_secret,
            tables: Mutex::new(HashMap::new()),
        })
    }

    /// A vault in a throw-away table, for tests.
    pub fn temporary() -> Result<Self, VaultError> {
        Self::open(LocalTable::temporary("vault").map_err(store_error)?)
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        // HMAC accepts keys of any length: this never fails for a 32-byte key.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.node_secret.as_slice()) else {
            return [0; 32];
        };
        for part in parts {
            mac.update(part);
            mac.update(b"\0");
        }
        mac.finalize().into_bytes().into()
    }

    fn index_mac(&self, kind: LookupKind, normalised: &str) -> [u8; 32] {
        let label: &[u8] = match kind {
            LookupKind::Email => b"email",
            LookupKind::Phone => b"phone",
        };
        self.mac(&[label, normalised.as_bytes()])
    }

    fn index_key(mac: &[u8; 32]) -> Vec<u8> {
        let mut key = INDEX_PREFIX.as_bytes().to_vec();
        key.extend_from_slice(mac);
        key
    }

    fn owner_key(customer: &str, mac: &[u8; 32]) -> Vec<u8> {
        let mut key = format!("x/{customer}/").into_bytes();
        key.extend_from_slice(mac);
        key
    }

    fn add_index(
        &self,
        customer: &str,
        kind: LookupKind,
        normalised: &str,
    ) -> Result<(), VaultError> {
        if normalised.is_empty() {
            return Ok(());
        }
        let mac = self.index_mac(kind, normalised);
        self.table.insert(&Self::index_key(&mac), customer.as_bytes()).map_err(store_error)?;
        self.table.insert(&Self::owner_key(customer, &mac), b"").map_err(store_error)
    }

    /// Whether `customer` was forgotten.
    pub fn is_forgotten(&self, customer: &str) -> Result<bool, VaultError> {
        Ok(self.table.get(&customer_key("f", customer)).map_err(store_error)?.is_some())
    }

    /// The customer whose profile holds this email or phone.
    pub fn find(&self, kind: LookupKind, value: &str) -> Result<Option<String>, VaultError> {
        let normalised = match kind {
            LookupKind::Email => normalise_email(value),
            LookupKind::Phone => normalise_phone(value),
        };
        if normalised.is_empty() {
            return Ok(None);
        }
        let key = Self::index_key(&self.index_mac(kind, &normalised));
        Ok(self
            .table
            .get(&key)
            .map_err(store_error)?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// The customer id for a normalised email: the known customer, or a new id
    /// derived from the email with the node secret (`cus_` + 16 hex digits), so
    /// every node of one vault and every redelivery agree on it. A derived id
    /// that belongs to a forgotten customer is skipped: a person who was
    /// forgotten and writes again starts as a new customer. Returns the id and
    /// whether the customer was known.
    pub fn customer_for_email(&self, email: &str) -> Result<(String, bool), VaultError> {
        if let Some(customer) = self.find(LookupKind::Email, email)? {
            return Ok((customer, true));
        }
        let email = normalise_email(email);
        for generation in 0u32.. {
            let generation = generation.to_string();
            let mac = self.mac(&[b"customer", email.as_bytes(), generation.as_bytes()]);
            let customer = format!("cus_{}", hex::encode(&mac[..8]));
            if !self.is_forgotten(&customer)? {
                return Ok((customer, false));
            }
        }
        // Unreachable in practice: every one of 2^32 derived ids forgotten.
        Err(VaultError::Store("no customer id left for this email".into()))
    }

    /// Runs `change` on the customer's token table under the lock and seals
    /// the table again if it gained tokens. Returns what `change` returned and
    /// whether tokens were minted.
    fn with_table<R>(
        &self,
        customer: &str,
        change: impl FnOnce(&mut TokenTable) -> Result<R, VaultError>,
    ) -> Result<(R, bool), ServiceError> {
        let mut tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        if self.is_forgotten(customer)? {
            return Err(ServiceError::Forgotten { customer: customer.to_owned() });
        }
        if !tables.contains_key(customer) {
            let loaded = self.vault.load_table(customer)?;
            if tables.len() >= CACHED_TABLES {
                tables.clear();
            }
            tables.insert(customer.to_owned(), loaded);
        }
        let Some(table) = tables.get_mut(customer) else {
            return Err(VaultError::Store("token table cache lost an entry".into()).into());
        };
        let before = table.len();
        let result = change(table);
        let minted = table.len() != before;
        if minted && let Err(error) = self.vault.save_table(customer, table) {
            // The cached table holds tokens the store does not: drop it so the
            // next use reloads what is stored.
            tables.remove(customer);
            return Err(error.into());
        }
        Ok((result?, minted))
    }

    /// Tokenizes profile fields (name → `PERSON`, email → `EMAIL`, phone →
    /// `PHONE`) and indexes email and phone. Does not flush.
    pub fn tokenize(
        &self,
        customer: &str,
        profile: ProfileFields,
    ) -> Result<ProfileFields, ServiceError> {
        let (tokens, _) = self.with_table(customer, |table| {
            let mut tokens = ProfileFields::default();
            if let Some(name) = profile.name {
                tokens.name = Some(table.token_for("PERSON", name.trim()).to_owned());
            }
            if let Some(email) = profile.email {
                let email = normalise_email(&email);
                tokens.email = Some(table.token_for("EMAIL", &email).to_owned());
                self.add_index(customer, LookupKind::Email, &email)?;
            }
            if let Some(phone) = profile.phone {
                let phone = phone.trim();
                tokens.phone = Some(table.token_for("PHONE", phone).to_owned());
                self.add_index(customer, LookupKind::Phone, &normalise_phone(phone))?;
            }
            Ok(tokens)
        })?;
        Ok(tokens)
    }

    /// Masks each text in place with the customer's token table, using the
    /// names the CRM knows for the customer (the table's `PERSON` values) as
    /// known names. Does not flush: call [`MaskingVault::flush`] before the
    /// masked text is appended anywhere.
    pub fn mask_texts(
        &self,
        detector: &Detector,
        customer: &str,
        texts: &mut [&mut String],
    ) -> Result<MaskReport, ServiceError> {
        let (entities, minted) = self.with_table(customer, |table| {
            let names: Vec<String> = table
                .entries()
                .iter()
                .filter(|entry| entry.entity_type == "PERSON")
                .map(|entry| entry.value.clone())
                .collect();
            let mut entities = 0;
            for text in texts.iter_mut() {
                if text.is_empty() {
                    continue;
                }
                let masked = mask(detector, text, &names, table);
                entities += masked.entities.len();
                **text = masked.text;
            }
            Ok(entities)
        })?;
        Ok(MaskReport { entities, minted })
    }

    /// `text` with the customer's tokens restored; a forgotten customer's (or
    /// an unknown one's) tokens stay tokens.
    pub fn restore_text(&self, customer: &str, text: &str) -> Result<String, VaultError> {
        match self.with_table(customer, |table| Ok(restore(text, table))) {
            Ok((restored, _)) => Ok(restored),
            Err(ServiceError::Forgotten { .. }) => Ok(text.to_owned()),
            Err(ServiceError::Vault(VaultError::NoKey { .. })) => Ok(text.to_owned()),
            Err(ServiceError::Vault(error)) => Err(error),
        }
    }

    /// Makes every change so far durable (survives `kill -9`).
    pub fn flush(&self) -> Result<(), VaultError> {
        self.table.flush().map_err(store_error)
    }

    /// Crypto-shreds the customer: destroys their key and sealed table,
    /// removes their look-up index entries, leaves a tombstone and flushes.
    /// Idempotent.
    pub fn forget(&self, customer: &str) -> Result<ForgetReport, VaultError> {
        let mut tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        tables.remove(customer);
        let key_destroyed = self.vault.store().get_key(customer)?.is_some();
        self.vault.shred(customer)?;
        self.table.remove(&customer_key("t", customer)).map_err(store_error)?;
        let owned =
            self.table.scan_prefix(format!("x/{customer}/").as_bytes()).map_err(store_error)?;
        let mut index_entries = 0;
        for (owner_key, _) in owned {
            // The hash is binary (it may hold `/`): it is the key's last 32 bytes.
            let mac = owner_key.get(owner_key.len().saturating_sub(32)..).unwrap_or_default();
            let mut index_key = INDEX_PREFIX.as_bytes().to_vec();
            index_key.extend_from_slice(mac);
            // Only remove an entry that still names this customer.
            if self.table.get(&index_key).map_err(store_error)?.as_deref()
                == Some(customer.as_bytes())
            {
                self.table.remove(&index_key).map_err(store_error)?;
                index_entries += 1;
            }
            self.table.remove(&owner_key).map_err(store_error)?;
        }
        let when = chrono::Utc::now().to_rfc3339();
        self.table.insert(&customer_key("f", customer), when.as_bytes()).map_err(store_error)?;
        drop(tables);
        self.flush()?;
        Ok(ForgetReport { key_destroyed, index_entries })
    }
}

#[async_trait]
impl PiiVault for MaskingVault {
    async fn tokenize_profile(
        &self,
        customer_id: &str,
        profile: ProfileFields,
    ) -> Result<ProfileFields, BusError> {
        let tokens = self.tokenize(customer_id, profile)?;
        // The tokens are about to be appended to the log: their originals must
        // survive a crash first.
        self.flush().map_err(ServiceError::from)?;
        Ok(tokens)
    }

    async fn lookup(&self, kind: LookupKind, value: &str) -> Result<Option<String>, BusError> {
        Ok(self.find(kind, value).map_err(ServiceError::from)?)
    }

    async fn reveal(&self, customer_id: &str, text: &str) -> Result<String, BusError> {
        Ok(self.restore_text(customer_id, text).map_err(ServiceError::from)?)
    }

    async fn forget(&self, customer_id: &str) -> Result<bool, BusError> {
        bus_schema::stream::validate_id("customer_id", customer_id)?;
        let report = MaskingVault::forget(self, customer_id).map_err(ServiceError::from)?;
        Ok(report.key_destroyed || report.index_entries > 0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::config::DetectorConfig;

    fn profile(name: &str, email: &str, phone: &str) -> ProfileFields {
        ProfileFields {
            name: Some(name.into()),
            email: Some(email.into()),
            phone: Some(phone.into()),
        }
    }

    #[tokio::test]
    async fn tokenizes_looks_up_and_reveals() {
        let vault = MaskingVault::temporary().unwrap();
        let tokens = vault
            .tokenize_profile("c1", profile("Ann Lee", " Ann@Example.com", "+86 138-1234-5678"))
            .await
            .unwrap();
        assert_eq!(tokens, profile("<PERSON_1>", "<EMAIL_1>", "<PHONE_1>"));
        let found = vault.lookup(LookupKind::Email, "ann@EXAMPLE.com ").await.unwrap();
        assert_eq!(found.as_deref(), Some("c1"));
        let found = vault.lookup(LookupKind::Phone, "+8613812345678").await.unwrap();
        assert_eq!(found.as_deref(), Some("c1"));
        assert_eq!(vault.lookup(LookupKind::Email, "bob@example.com").await.unwrap(), None);
        let revealed = vault.reveal("c1", "<PERSON_1> <EMAIL_1> <PHONE_9>").await.unwrap();
        assert_eq!(revealed, "Ann Lee ann@example.com <PHONE_9>");
        // Another customer's tokens are not this customer's.
        assert_eq!(vault.reveal("c2", "<PERSON_1>").await.unwrap(), "<PERSON_1>");
    }

    #[test]
    fn masking_reuses_profile_tokens_and_known_names() {
        let vault = MaskingVault::temporary().unwrap();
        let detector = Detector::new(&DetectorConfig::default()).unwrap();
        vault
            .tokenize("c1", profile("Laura Gonzalez", "laura@example.com", "13812345678"))
            .unwrap();
        let original = "Laura Gonzalez here: laura@example.com or 13812345678, or mine@example.org";
        let mut text = original.to_owned();
        let report = vault.mask_texts(&detector, "c1", &mut [&mut text]).unwrap();
        assert_eq!(text, "<PERSON_1> here: <EMAIL_1> or <PHONE_1>, or <EMAIL_2>");
        assert_eq!(report, MaskReport { entities: 4, minted: true });
        // Nothing new: nothing minted, nothing to seal.
        let mut again = "laura@example.com".to_owned();
        let report = vault.mask_texts(&detector, "c1", &mut [&mut again]).unwrap();
        assert_eq!(again, "<EMAIL_1>");
        assert!(!report.minted);
        assert_eq!(vault.restore_text("c1", &text).unwrap(), original);
    }

    #[test]
    fn tables_survive_reopening_the_store() {
        let table = LocalTable::temporary("vault").unwrap();
        let vault = MaskingVault::open(table.clone()).unwrap();
        vault.tokenize("c1", profile("Ann", "ann@example.com", "")).unwrap();
        let (derived, known) = vault.customer_for_email("new@example.com").unwrap();
        drop(vault);
        let reopened = MaskingVault::open(table).unwrap();
        assert_eq!(reopened.restore_text("c1", "<EMAIL_1>").unwrap(), "ann@example.com");
        assert_eq!(reopened.customer_for_email("new@example.com").unwrap(), (derived, known));
    }

    #[test]
    fn derived_customer_ids_are_stable_and_shaped_like_ids() {
        let vault = MaskingVault::temporary().unwrap();
        let (first, known) = vault.customer_for_email("Zhang.Wei@Example.cn").unwrap();
        assert!(!known);
        assert_eq!(vault.customer_for_email(" zhang.wei@example.cn").unwrap().0, first);
        assert!(first.starts_with("cus_") && first.len() == 20, "{first}");
        bus_schema::stream::validate_id("customer_id", &first).unwrap();
        vault
            .tokenize(
                &first,
                ProfileFields { email: Some("zhang.wei@example.cn".into()), ..Default::default() },
            )
            .unwrap();
        assert_eq!(vault.customer_for_email("zhang.wei@example.cn").unwrap(), (first, true));
    }

    #[tokio::test]
    async fn forgetting_destroys_key_index_and_refuses_new_data() {
        let vault = MaskingVault::temporary().unwrap();
        let detector = Detector::new(&DetectorConfig::default()).unwrap();
        let (customer, _) = vault.customer_for_email("ann@example.com").unwrap();
        vault.tokenize(&customer, profile("Ann Lee", "ann@example.com", "13812345678")).unwrap();
        assert_eq!(vault.reveal(&customer, "<EMAIL_1>").await.unwrap(), "ann@example.com");

        let report = vault.forget(&customer).unwrap();
        assert_eq!(report, ForgetReport { key_destroyed: true, index_entries: 2 });
        assert_eq!(
            vault.reveal(&customer, "<EMAIL_1> <PERSON_1>").await.unwrap(),
            "<EMAIL_1> <PERSON_1>"
        );
        assert_eq!(vault.lookup(LookupKind::Email, "ann@example.com").await.unwrap(), None);
        assert_eq!(vault.lookup(LookupKind::Phone, "13812345678").await.unwrap(), None);
        assert!(vault.vault.store().get_table(&customer).unwrap().is_none());
        assert!(vault.is_forgotten(&customer).unwrap());
        let refused =
            vault.mask_texts(&detector, &customer, &mut [&mut "x@example.com".to_owned()]);
        assert!(matches!(refused, Err(ServiceError::Forgotten { .. })));
        let refused = vault.tokenize_profile(&customer, profile("Ann", "", "")).await;
        assert!(matches!(refused, Err(BusError::Invalid(_))));
        // The same person writing again becomes a new customer.
        let (again, known) = vault.customer_for_email("ann@example.com").unwrap();
        assert!(!known);
        assert_ne!(again, customer);
        // Forgetting twice is harmless, also through the service trait.
        assert!(!vault.forget(&customer).unwrap().key_destroyed);
        assert!(!PiiVault::forget(&vault, &customer).await.unwrap());
        let (other, _) = vault.customer_for_email("bob@example.com").unwrap();
        vault.tokenize(&other, profile("Bob", "bob@example.com", "")).unwrap();
        assert!(PiiVault::forget(&vault, &other).await.unwrap());
        assert!(matches!(PiiVault::forget(&vault, "a/b").await, Err(BusError::Invalid(_))));
    }
}
