//! Named consumer checkpoints: where each subscriber of the embedded bus is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::log::StoreError;

/// The last position each named consumer has acknowledged.
#[derive(Clone)]
pub struct Checkpoints {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sled(sled::Tree),
    Memory(Arc<Mutex<HashMap<String, u64>>>),
}

impl Checkpoints {
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(Self { backend: Backend::Sled(db.open_tree("checkpoints")?) })
    }

    pub fn in_memory() -> Self {
        Self { backend: Backend::Memory(Arc::default()) }
    }

    pub fn get(&self, consumer: &str) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sled(tree) => Ok(tree
                .get(consumer.as_bytes())?
                .and_then(|value| <[u8; 8]>::try_from(value.as_ref()).ok())
                .map_or(0, u64::from_be_bytes)),
            Backend::Memory(map) => {
                Ok(map.lock().map_err(|_| StoreError::Closed)?.get(consumer).copied().unwrap_or(0))
            }
        }
    }

    /// Moves the checkpoint forward (never back).
    pub fn advance(&self, consumer: &str, position: u64) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(tree) => {
                tree.fetch_and_update(consumer.as_bytes(), |old| {
                    let old = old
                        .and_then(|value| <[u8; 8]>::try_from(value).ok())
                        .map_or(0, u64::from_be_bytes);
                    Some(old.max(position).to_be_bytes().to_vec())
                })?;
                Ok(())
            }
            Backend::Memory(map) => {
                let mut map = map.lock().map_err(|_| StoreError::Closed)?;
                let entry = map.entry(consumer.to_owned()).or_default();
                *entry = (*entry).max(position);
                Ok(())
            }
        }
    }
}
