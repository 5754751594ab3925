//! The vault's cryptography: originals are sealed with AES-256-GCM under
//! a per-customer key. Storage belongs to another crate; it implements
//! [`VaultStore`]. Deleting a customer's key (crypto-shredding) makes every
//! sealed table of that customer unreadable, wherever copies of it live.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use thiserror::Error;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::token::TokenTable;

/// Length of the random nonce prepended to every sealed message.
pub const NONCE_LENGTH: usize = 12;

/// What went wrong in the vault; match on the variant.
#[derive(Debug, Error)]
pub enum VaultError {
    /// The operating system's random number generator failed.
    #[error("random number generator failed: {0}")]
    Random(getrandom::Error),
    /// Sealed bytes shorter than a nonce and a tag.
    #[error("sealed data is truncated")]
    Truncated,
    /// Authentication failed: wrong key, wrong associated data or
    /// tampered bytes. Deliberately carries no detail.
    #[error("sealed data cannot be opened")]
    Open,
    /// Encryption failed (only possible for absurdly long plaintexts).
    #[error("plaintext cannot be sealed")]
    Seal,
    /// The customer has no key: never created, or shredded.
    #[error("no key for customer {customer}")]
    NoKey {
        /// The customer asked for.
        customer: String,
    },
    /// The token table could not be encoded or decoded.
    #[error("token table encoding")]
    Encoding(#[source] serde_json::Error),
    /// The store itself failed.
    #[error("vault store: {0}")]
    Store(String),
}

/// A customer's 256-bit data key. Wiped from memory when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct CustomerKey([u8; 32]);

impl CustomerKey {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, VaultError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(VaultError::Random)?;
        Ok(Self(bytes))
    }

    /// A key from stored bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw key, for the store to persist.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for CustomerKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material, not even in debug logs.
        formatter.write_str("CustomerKey(..)")
    }
}

/// Encrypt `plaintext` with AES-256-GCM. The output is a fresh random
/// 96-bit nonce followed by ciphertext and tag. `associated_data` (for
/// example the customer id) is authenticated but not encrypted: a sealed
/// table moved to another customer will not open.
pub fn seal(
    key: &CustomerKey,
    plaintext: &[u8],
    associated_data: &[u8],
) -> Result<Vec<u8>, VaultError> {
    let cipher = Aes256Gcm::new(key.0.as_ref().into());
    let mut nonce = [0u8; NONCE_LENGTH];
    getrandom::fill(&mut nonce).map_err(VaultError::Random)?;
    let ciphertext = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: associated_data })
        .map_err(|_| VaultError::Seal)?;
    let mut sealed = Vec::with_capacity(NONCE_LENGTH + ciphertext.len());
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&ciphertext);
    Ok(sealed)
}

/// Decrypt what [`seal`] produced with the same key and associated data.
pub fn open(
    key: &CustomerKey,
    sealed: &[u8],
    associated_data: &[u8],
) -> Result<Vec<u8>, VaultError> {
    const TAG_LENGTH: usize = 16;
    if sealed.len() < NONCE_LENGTH + TAG_LENGTH {
        return Err(VaultError::Truncated);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LENGTH);
    let cipher = Aes256Gcm::new(key.0.as_ref().into());
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: associated_data })
        .map_err(|_| VaultError::Open)
}

/// Where keys and sealed token tables live. Implemented by the storage
/// crate; [`InMemoryVaultStore`] serves tests.
pub trait VaultStore {
    /// The customer's key, if it exists.
    fn get_key(&self, customer: &str) -> Result<Option<CustomerKey>, VaultError>;
    /// Store the customer's key, replacing any previous one.
    fn put_key(&self, customer: &str, key: &CustomerKey) -> Result<(), VaultError>;
    /// Delete the customer's key: crypto-shredding.
    fn delete_key(&self, customer: &str) -> Result<(), VaultError>;
    /// The customer's sealed token table, if one was stored.
    fn get_table(&self, customer: &str) -> Result<Option<Vec<u8>>, VaultError>;
    /// Store the customer's sealed token table.
    fn put_table(&self, customer: &str, sealed: Vec<u8>) -> Result<(), VaultError>;
}

/// A [`VaultStore`] in memory, for tests and tools.
#[derive(Debug, Default)]
pub struct InMemoryVaultStore {
    keys: Mutex<HashMap<String, CustomerKey>>,
    tables: Mutex<HashMap<String, Vec<u8>>>,
}

impl InMemoryVaultStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

// A poisoned lock only means another test thread panicked mid-insert; the
// maps themselves stay consistent, so the guard is taken over.
impl VaultStore for InMemoryVaultStore {
    fn get_key(&self, customer: &str) -> Result<Option<CustomerKey>, VaultError> {
        Ok(self.keys.lock().unwrap_or_else(PoisonError::into_inner).get(customer).cloned())
    }

    fn put_key(&self, customer: &str, key: &CustomerKey) -> Result<(), VaultError> {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(customer.to_owned(), key.clone());
        Ok(())
    }

    fn delete_key(&self, customer: &str) -> Result<(), VaultError> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner).remove(customer);
        Ok(())
    }

    fn get_table(&self, customer: &str) -> Result<Option<Vec<u8>>, VaultError> {
        Ok(self.tables.lock().unwrap_or_else(PoisonError::into_inner).get(customer).cloned())
    }

    fn put_table(&self, customer: &str, sealed: Vec<u8>) -> Result<(), VaultError> {
        self.tables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(customer.to_owned(), sealed);
        Ok(())
    }
}

/// Loads and saves customers' token tables through a [`VaultStore`],
/// sealing them under the customer's key with the customer id as
/// associated data.
#[derive(Debug)]
pub struct Vault<S> {
    store: S,
}

impl<S: VaultStore> Vault<S> {
    /// A vault over `store`.
    pub fn new(store: S) -> Self {
        Self { store }
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The customer's key, created on first use.
    pub fn key_for(&self, customer: &str) -> Result<CustomerKey, VaultError> {
        if let Some(key) = self.store.get_key(customer)? {
            return Ok(key);
        }
        let key = CustomerKey::generate()?;
        self.store.put_key(customer, &key)?;
        Ok(key)
    }

    /// Seal and store the customer's table, creating the key if needed.
    pub fn save_table(&self, customer: &str, table: &TokenTable) -> Result<(), VaultError> {
        let key = self.key_for(customer)?;
        let plaintext =
            zeroize::Zeroizing::new(serde_json::to_vec(table).map_err(VaultError::Encoding)?);
        let sealed = seal(&key, &plaintext, customer.as_bytes())?;
        self.store.put_table(customer, sealed)
    }

    /// The customer's table: empty if none was stored yet; an error if a
    /// table exists but its key is gone (shredded) or it does not open.
    pub fn load_table(&self, customer: &str) -> Result<TokenTable, VaultError> {
        let Some(sealed) = self.store.get_table(customer)? else {
            return Ok(TokenTable::new());
        };
        let key = self
            .store
            .get_key(customer)?
            .ok_or_else(|| VaultError::NoKey { customer: customer.to_owned() })?;
        let plaintext = zeroize::Zeroizing::new(open(&key, &sealed, customer.as_bytes())?);
        serde_json::from_slice(&plaintext).map_err(VaultError::Encoding)
    }

    /// Crypto-shred the customer: delete the key, so no stored or copied
    /// table of theirs can be opened again.
    pub fn shred(&self, customer: &str) -> Result<(), VaultError> {
        self.store.delete_key(customer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips() {
        let key = CustomerKey::generate().unwrap();
        let sealed = seal(&key, b"13812345678", b"customer-1").unwrap();
        assert_eq!(sealed.len(), NONCE_LENGTH + 11 + 16);
        assert_eq!(open(&key, &sealed, b"customer-1").unwrap(), b"13812345678");
    }

    #[test]
    fn nonces_differ_between_seals() {
        let key = CustomerKey::generate().unwrap();
        let first = seal(&key, b"same", b"").unwrap();
        let second = seal(&key, b"same", b"").unwrap();
        assert_ne!(first, second);
    }

    #[test]
    fn wrong_key_associated_data_or_tampering_fail() {
        let key = CustomerKey::generate().unwrap();
        let other = CustomerKey::generate().unwrap();
        let mut sealed = seal(&key, b"secret", b"customer-1").unwrap();
        assert!(matches!(open(&other, &sealed, b"customer-1"), Err(VaultError::Open)));
        assert!(matches!(open(&key, &sealed, b"customer-2"), Err(VaultError::Open)));
        assert!(matches!(open(&key, &sealed[..10], b"customer-1"), Err(VaultError::Truncated)));
        if let Some(byte) = sealed.last_mut() {
            *byte ^= 1;
        }
        assert!(matches!(open(&key, &sealed, b"customer-1"), Err(VaultError::Open)));
    }

    #[test]
    fn shredding_the_key_makes_the_table_unreadable() {
        let vault = Vault::new(InMemoryVaultStore::new());
        let mut table = TokenTable::new();
        table.token_for("EMAIL", "zhang.wei@example.com");
        vault.save_table("customer-1", &table).unwrap();
        let loaded = vault.load_table("customer-1").unwrap();
        assert_eq!(loaded.value_of("<EMAIL_1>"), Some("zhang.wei@example.com"));

        let sealed_copy = vault.store().get_table("customer-1").unwrap().unwrap();
        let old_key = vault.key_for("customer-1").unwrap();
        vault.shred("customer-1").unwrap();
        assert!(matches!(vault.load_table("customer-1"), Err(VaultError::NoKey { .. })));
        // A key created after the shred cannot open the old copy either.
        let new_key = vault.key_for("customer-1").unwrap();
        assert_ne!(new_key.as_bytes(), old_key.as_bytes());
        assert!(matches!(open(&new_key, &sealed_copy, b"customer-1"), Err(VaultError::Open)));
    }
}
