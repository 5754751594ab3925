//! Small tables a service keeps for itself beside the log: API key hashes,
//! webhook sources, the masking vault. They are state, not facts: never part of
//! the event log, never exported, never replayed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::log::StoreError;

/// One key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// A named key/value table in the node's sled database.
#[derive(Clone)]
pub struct LocalTable {
    db: sled::Db,
    tree: sled::Tree,
    /// Changed since the last [`LocalTable::flush`]: a flush of an unchanged
    /// table costs nothing, instead of a whole sled flush.
    dirty: Arc<AtomicBool>,
}

impl LocalTable {
    pub fn open(db: &sled::Db, name: &str) -> Result<Self, StoreError> {
        Ok(Self {
            db: db.clone(),
            tree: db.open_tree(format!("local.{name}"))?,
            dirty: Arc::new(AtomicBool::new(false)),
        })
    }

    /// A table in a throw-away database, for tests.
    pub fn temporary(name: &str) -> Result<Self, StoreError> {
        let db = sled::Config::new().temporary(true).open()?;
        Self::open(&db, name)
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(key)?.map(|value| value.to_vec()))
    }

    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.tree.insert(key, value)?;
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Inserts only if the key is absent; returns the existing value otherwise.
    pub fn insert_new(&self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.tree.compare_and_swap(key, None as Option<&[u8]>, Some(value))? {
            Ok(()) => {
                self.dirty.store(true, Ordering::Release);
                Ok(None)
            }
            Err(current) => Ok(current.current.map(|value| value.to_vec())),
        }
    }

    pub fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        self.tree.remove(key)?;
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Every entry whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>, StoreError> {
        self.tree
            .scan_prefix(prefix)
            .map(|entry| {
                entry.map(|(key, value)| (key.to_vec(), value.to_vec())).map_err(Into::into)
            })
            .collect()
    }

    /// Writes the table's changes to the data file (survives `kill -9`); does
    /// nothing when the table has not changed since the last flush. The flag is
    /// cleared before flushing, and every change sets it after writing, so no
    /// change is ever left out.
    pub fn flush(&self) -> Result<(), StoreError> {
        if self.dirty.swap(false, Ordering::AcqRel)
            && let Err(error) = self.db.flush()
        {
            self.dirty.store(true, Ordering::Release);
            return Err(error.into());
        }
        Ok(())
    }
}
