//! The stored record and its hash chain.
//!
//! Each record holds the envelope's protobuf bytes exactly as appended, the hash
//! of the previous record, and its own hash:
//! `sha256(prev_hash || position as u64 big-endian || envelope bytes)`.
//! Editing, removing or reordering any record breaks the chain.

use bus_schema::{EventEnvelope, RecordedEvent};
use prost::Message;
use sha2::{Digest, Sha256};

use crate::log::StoreError;

/// The hash "before" the first record.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// A record as it lies on disk (protobuf, so auditors can read it from any language).
#[derive(Clone, PartialEq, Message)]
pub struct StoredRecord {
    #[prost(uint64, tag = "1")]
    pub position: u64,
    #[prost(bytes = "vec", tag = "2")]
    pub prev_hash: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub hash: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub envelope: Vec<u8>,
}

impl StoredRecord {
    /// Seals an envelope at `position` after the record whose hash is `prev_hash`.
    pub fn seal(position: u64, prev_hash: [u8; 32], envelope: Vec<u8>) -> Self {
        let hash = chain_hash(&prev_hash, position, &envelope);
        Self { position, prev_hash: prev_hash.to_vec(), hash: hash.to_vec(), envelope }
    }

    pub fn decode_bytes(position: u64, bytes: &[u8]) -> Result<Self, StoreError> {
        Self::decode(bytes)
            .map_err(|error| StoreError::Corrupt { position, reason: format!("record: {error}") })
    }

    /// The recomputed hash of this record's content.
    pub fn computed_hash(&self) -> [u8; 32] {
        chain_hash(&self.prev_hash, self.position, &self.envelope)
    }

    pub fn hash_array(&self) -> Result<[u8; 32], StoreError> {
        self.hash.as_slice().try_into().map_err(|_| StoreError::Corrupt {
            position: self.position,
            reason: "hash is not 32 bytes".into(),
        })
    }

    pub fn to_event(&self) -> Result<RecordedEvent, StoreError> {
        let envelope = EventEnvelope::decode(&self.envelope).map_err(|error| {
            StoreError::Corrupt { position: self.position, reason: format!("envelope: {error}") }
        })?;
        Ok(RecordedEvent { position: self.position, envelope })
    }
}

pub fn chain_hash(prev_hash: &[u8], position: u64, envelope: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(position.to_be_bytes());
    hasher.update(envelope);
    hasher.finalize().into()
}
