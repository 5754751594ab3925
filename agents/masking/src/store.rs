//! [`TableVaultStore`]: the vault's keys and sealed token tables in a
//! [`LocalTable`] of the node's store (the `vault` table).
//!
//! Layout (customer ids never contain `/`, see `bus_schema::stream::validate_id`):
//!
//! | key | value |
//! | --- | --- |
//! | `k/<customer>` | the customer's 32-byte AES-256 key |
//! | `t/<customer>` | the customer's token table, sealed under that key |
//! | `s/node-secret` | the node's 32-byte secret for keyed hashes |
//! | `i/<hmac>` | lookup index: keyed hash of a normalised email or phone → customer id |
//! | `x/<customer>/<hmac>` | which index entries belong to a customer (removed on forget) |
//! | `f/<customer>` | tombstone of a forgotten customer (RFC 3339 time, nothing personal) |

use event_store::local::LocalTable;

use crate::vault::{CustomerKey, VaultError, VaultStore};

/// Where keys and sealed tables live: a local table beside the log, never
/// part of it, never exported, never replayed.
#[derive(Clone)]
pub struct TableVaultStore {
    table: LocalTable,
}

pub(crate) fn store_error(error: impl std::fmt::Display) -> VaultError {
    VaultError::Store(error.to_string())
}

pub(crate) fn customer_key(prefix: &str, customer: &str) -> Vec<u8> {
    format!("{prefix}/{customer}").into_bytes()
}

impl TableVaultStore {
    /// A store over `table` (obtain it with `SledStore::table("vault")`).
    pub fn new(table: LocalTable) -> Self {
        Self { table }
    }

    /// The table itself, for the index and tombstones kept beside the keys.
    pub fn table(&self) -> &LocalTable {
        &self.table
    }
}

impl VaultStore for TableVaultStore {
    fn get_key(&self, customer: &str) -> Result<Option<CustomerKey>, VaultError> {
        match self.table.get(&customer_key("k", customer)).map_err(store_error)? {
            Some(bytes) => <[u8; 32]>::try_from(bytes.as_slice())
                .map(|bytes| Some(CustomerKey::from_bytes(bytes)))
                .map_err(|_| VaultError::Store("malformed customer key".into())),
            None => Ok(None),
        }
    }

    fn put_key(&self, customer: &str, key: &CustomerKey) -> Result<(), VaultError> {
        self.table.insert(&customer_key("k", customer), key.as_bytes()).map_err(store_error)
    }

    fn delete_key(&self, customer: &str) -> Result<(), VaultError> {
        self.table.remove(&customer_key("k", customer)).map_err(store_error)
    }

    fn get_table(&self, customer: &str) -> Result<Option<Vec<u8>>, VaultError> {
        self.table.get(&customer_key("t", customer)).map_err(store_error)
    }

    fn put_table(&self, customer: &str, sealed: Vec<u8>) -> Result<(), VaultError> {
        self.table.insert(&customer_key("t", customer), &sealed).map_err(store_error)
    }
}
