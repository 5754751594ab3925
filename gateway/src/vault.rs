//! [`LocalPiiVault`]: the personal-data vault of one node, in a local table.
//!
//! It is the masking crate's vault (per-customer AES-256-GCM keys, sealed token
//! tables, crypto-shredding by deleting the key) stored beside the log, plus a
//! keyed-hash index of normalised emails and phones for look-ups. Canonical
//! events only ever receive the tokens it hands out (`<PERSON_1>`, …).

use std::sync::Arc;

use agent_kit::BusError;
use agent_kit::vault::{LookupKind, PiiVault, ProfileFields};
use async_trait::async_trait;
use event_store::local::LocalTable;
use hmac::{Hmac, Mac};
use masking::{CustomerKey, TokenTable, Vault, VaultError, VaultStore};
use sha2::Sha256;
use tokio::sync::Mutex;

pub const VAULT_TABLE: &str = "gateway.vault";
const INDEX_KEY: &[u8] = b"x/index-key";

/// The vault's storage: keys and sealed tables in a [`LocalTable`].
struct TableStore {
    table: LocalTable,
}

fn store_error(error: impl std::fmt::Display) -> VaultError {
    VaultError::Store(error.to_string())
}

fn prefixed(prefix: &str, customer: &str) -> Vec<u8> {
    format!("{prefix}/{customer}").into_bytes()
}

impl VaultStore for TableStore {
    fn get_key(&self, customer: &str) -> Result<Option<CustomerKey>, VaultError> {
        match self.table.get(&prefixed("k", customer)).map_err(store_error)? {
            Some(bytes) => <[u8; 32]>::try_from(bytes.as_slice())
                .map(|bytes| Some(CustomerKey::from_bytes(bytes)))
                .map_err(|_| VaultError::Store("malformed customer key".into())),
            None => Ok(None),
        }
    }

    fn put_key(&self, customer: &str, key: &CustomerKey) -> Result<(), VaultError> {
        self.table.insert(&prefixed("k", customer), key.as_bytes()).map_err(store_error)
    }

    fn delete_key(&self, customer: &str) -> Result<(), VaultError> {
        self.table.remove(&prefixed("k", customer)).map_err(store_error)
    }

    fn get_table(&self, customer: &str) -> Result<Option<Vec<u8>>, VaultError> {
        self.table.get(&prefixed("t", customer)).map_err(store_error)
    }

    fn put_table(&self, customer: &str, sealed: Vec<u8>) -> Result<(), VaultError> {
        self.table.insert(&prefixed("t", customer), &sealed).map_err(store_error)
    }
}

/// The node-local [`PiiVault`].
#[derive(Clone)]
pub struct LocalPiiVault {
    vault: Arc<Vault<TableStore>>,
    table: LocalTable,
    index_key: Arc<[u8; 32]>,
    /// Token tables are read, extended and written back: one writer at a time,
    /// so two profiles of one customer never mint the same token twice.
    writer: Arc<Mutex<()>>,
}

fn vault_error(error: VaultError) -> BusError {
    BusError::Other(format!("vault: {error}"))
}

/// An email as compared: trimmed, lower-case.
pub fn normalise_email(email: &str) -> String {
    bus_schema::webhook::normalise_email(email)
}

/// A phone as compared: its digits, with a leading `+` kept.
pub fn normalise_phone(phone: &str) -> String {
    let trimmed = phone.trim();
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    if trimmed.starts_with('+') { format!("+{digits}") } else { digits }
}

impl LocalPiiVault {
    pub fn open(table: LocalTable) -> Result<Self, event_store::StoreError> {
        let key = match table.get(INDEX_KEY)? {
            Some(bytes) if bytes.len() == 32 => bytes,
            _ => {
                let mut bytes = vec![0u8; 32];
                getrandom::fill(&mut bytes).map_err(|error| {
                    event_store::StoreError::Io(std::io::Error::other(error.to_string()))
                })?;
                // Only the first writer's key is kept, so concurrent openers agree.
                table.insert_new(INDEX_KEY, &bytes)?.unwrap_or(bytes)
            }
        };
        let mut index_key = [0u8; 32];
        index_key.copy_from_slice(&key);
        table.flush()?;
        Ok(Self {
            vault: Arc::new(Vault::new(TableStore { table: table.clone() })),
            table,
            index_key: Arc::new(index_key),
            writer: Arc::default(),
        })
    }

    fn index_entry(&self, kind: LookupKind, normalised: &str) -> Vec<u8> {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.index_key.as_slice()) else {
            return Vec::new();
        };
        let label: &[u8] = match kind {
            LookupKind::Email => b"email",
            LookupKind::Phone => b"phone",
        };
        mac.update(label);
        mac.update(b"\0");
        mac.update(normalised.as_bytes());
        let mut key = b"i/".to_vec();
        key.extend_from_slice(&mac.finalize().into_bytes());
        key
    }

    fn tokenize(
        &self,
        customer_id: &str,
        profile: ProfileFields,
    ) -> Result<ProfileFields, VaultError> {
        let mut table: TokenTable = self.vault.load_table(customer_id)?;
        let mut tokenised = ProfileFields::default();
        if let Some(name) = profile.name {
            tokenised.name = Some(table.token_for("PERSON", name.trim()).to_owned());
        }
        if let Some(email) = profile.email {
            let email = normalise_email(&email);
            tokenised.email = Some(table.token_for("EMAIL", &email).to_owned());
            let entry = self.index_entry(LookupKind::Email, &email);
            self.table.insert(&entry, customer_id.as_bytes()).map_err(store_error)?;
        }
        if let Some(phone) = profile.phone {
            let phone = phone.trim().to_owned();
            tokenised.phone = Some(table.token_for("PHONE", &phone).to_owned());
            let entry = self.index_entry(LookupKind::Phone, &normalise_phone(&phone));
            self.table.insert(&entry, customer_id.as_bytes()).map_err(store_error)?;
        }
        self.vault.save_table(customer_id, &table)?;
        // The tokens are about to be appended to the log: their originals must
        // survive a crash first.
        self.table.flush().map_err(store_error)?;
        Ok(tokenised)
    }
}

#[async_trait]
impl PiiVault for LocalPiiVault {
    async fn tokenize_profile(
        &self,
        customer_id: &str,
        profile: ProfileFields,
    ) -> Result<ProfileFields, BusError> {
        let _guard = self.writer.lock().await;
        self.tokenize(customer_id, profile).map_err(vault_error)
    }

    async fn lookup(&self, kind: LookupKind, value: &str) -> Result<Option<String>, BusError> {
        let normalised = match kind {
            LookupKind::Email => normalise_email(value),
            LookupKind::Phone => normalise_phone(value),
        };
        if normalised.is_empty() {
            return Ok(None);
        }
        let entry = self.index_entry(kind, &normalised);
        Ok(self.table.get(&entry)?.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    async fn reveal(&self, customer_id: &str, text: &str) -> Result<String, BusError> {
        match self.vault.load_table(customer_id) {
            Ok(table) => Ok(masking::restore(text, &table)),
            // A shredded customer's tokens stay tokens.
            Err(VaultError::NoKey { .. }) => Ok(text.to_owned()),
            Err(error) => Err(vault_error(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokenizes_looks_up_and_reveals() {
        let vault = LocalPiiVault::open(LocalTable::temporary("vault").unwrap()).unwrap();
        let tokens = vault
            .tokenize_profile(
                "c1",
                ProfileFields {
                    name: Some("Ann Lee".into()),
                    email: Some(" Ann@Example.com".into()),
                    phone: Some("+86 138-1234-5678".into()),
                },
            )
            .await
            .unwrap();
        assert_eq!(tokens.name.as_deref(), Some("<PERSON_1>"));
        assert_eq!(tokens.email.as_deref(), Some("<EMAIL_1>"));
        assert_eq!(tokens.phone.as_deref(), Some("<PHONE_1>"));
        assert_eq!(
            vault.lookup(LookupKind::Email, "ann@EXAMPLE.com ").await.unwrap().as_deref(),
            Some("c1")
        );
        assert_eq!(
            vault.lookup(LookupKind::Phone, "+8613812345678").await.unwrap().as_deref(),
            Some("c1")
        );
        assert_eq!(vault.lookup(LookupKind::Email, "bob@example.com").await.unwrap(), None);
        assert_eq!(
            vault.reveal("c1", "<PERSON_1> <EMAIL_1>").await.unwrap(),
            "Ann Lee ann@example.com"
        );
        // A second profile of the same customer keeps the first tokens.
        let again = vault
            .tokenize_profile(
                "c1",
                ProfileFields { name: Some("Ann Lee".into()), ..Default::default() },
            )
            .await
            .unwrap();
        assert_eq!(again.name.as_deref(), Some("<PERSON_1>"));
        assert_eq!(vault.reveal("c2", "<PERSON_1>").await.unwrap(), "<PERSON_1>");
    }
}
