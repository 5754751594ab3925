//! API keys: `acrm_<base64url of 32 random bytes>`, shown once. Only the
//! SHA-256 of a key is stored, so a copy of the data directory does not hand
//! out working keys.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use event_store::StoreError;
use event_store::local::LocalTable;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::Role;

pub const KEYS_TABLE: &str = "gateway.keys";
const KEY_PREFIX: &str = "acrm_";
const BY_HASH: &[u8] = b"h/";
const BY_NAME: &[u8] = b"n/";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("a key named `{0}` already exists")]
    Exists(String),
    #[error("no key named `{0}`")]
    Unknown(String),
    #[error("invalid key name `{0}`: use 1-64 ASCII letters, digits, `_`, `-`, `.` or `@`")]
    InvalidName(String),
    #[error("cannot generate a key: {0}")]
    Random(String),
    #[error("stored key is unreadable: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A key as stored (without the key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct ApiKeys {
    table: LocalTable,
}

fn hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

fn prefixed(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(rest);
    key
}

impl ApiKeys {
    pub fn new(table: LocalTable) -> Self {
        Self { table }
    }

    /// Creates a key and returns it: the only time it is ever shown.
    pub fn create(&self, name: &str, role: Role) -> Result<(String, KeyRecord), KeyError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.@".contains(c));
        if !valid {
            return Err(KeyError::InvalidName(name.to_owned()));
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|error| KeyError::Random(error.to_string()))?;
        let key = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
        let digest = hash(&key);
        let record = KeyRecord { name: name.to_owned(), role, created_at: Utc::now() };
        let value =
            serde_json::to_vec(&record).map_err(|error| KeyError::Corrupt(error.to_string()))?;
        if self.table.insert_new(&prefixed(BY_NAME, name.as_bytes()), &digest)?.is_some() {
            return Err(KeyError::Exists(name.to_owned()));
        }
        self.table.insert(&prefixed(BY_HASH, &digest), &value)?;
        self.table.flush()?;
        Ok((key, record))
    }

    /// The key's record, if the key is valid.
    pub fn verify(&self, key: &str) -> Result<Option<KeyRecord>, KeyError> {
        if !key.starts_with(KEY_PREFIX) || key.len() > 128 {
            return Ok(None);
        }
        match self.table.get(&prefixed(BY_HASH, &hash(key)))? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|error| KeyError::Corrupt(error.to_string())),
            None => Ok(None),
        }
    }

    pub fn list(&self) -> Result<Vec<KeyRecord>, KeyError> {
        self.table
            .scan_prefix(BY_HASH)?
            .into_iter()
            .map(|(_, bytes)| {
                serde_json::from_slice(&bytes).map_err(|error| KeyError::Corrupt(error.to_string()))
            })
            .collect::<Result<Vec<KeyRecord>, _>>()
            .map(|mut keys| {
                keys.sort_by(|a, b| a.name.cmp(&b.name));
                keys
            })
    }

    /// Revokes a key: it stops working at once.
    pub fn revoke(&self, name: &str) -> Result<(), KeyError> {
        let by_name = prefixed(BY_NAME, name.as_bytes());
        let digest = self.table.get(&by_name)?.ok_or_else(|| KeyError::Unknown(name.to_owned()))?;
        self.table.remove(&prefixed(BY_HASH, &digest))?;
        self.table.remove(&by_name)?;
        self.table.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_verify_until_revoked_and_only_hashes_are_stored() {
        let table = LocalTable::temporary("keys").unwrap();
        let keys = ApiKeys::new(table.clone());
        let (key, record) = keys.create("alice", Role::Sales).unwrap();
        assert!(key.starts_with("acrm_") && key.len() > 40);
        assert_eq!(keys.verify(&key).unwrap(), Some(record));
        assert_eq!(keys.verify("acrm_nope").unwrap(), None);
        assert!(matches!(keys.create("alice", Role::Admin), Err(KeyError::Exists(_))));
        assert!(matches!(keys.create("bad name", Role::Admin), Err(KeyError::InvalidName(_))));
        let stored: Vec<u8> = table
            .scan_prefix(b"")
            .unwrap()
            .into_iter()
            .flat_map(|(k, v)| [k, v].concat())
            .collect();
        assert!(!String::from_utf8_lossy(&stored).contains(&key[5..]));
        keys.revoke("alice").unwrap();
        assert_eq!(keys.verify(&key).unwrap(), None);
        assert!(matches!(keys.revoke("alice"), Err(KeyError::Unknown(_))));
    }
}
