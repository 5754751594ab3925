//! The stored record and its hash chain.
//!
//! A record is a fixed header followed by the envelope's protobuf bytes exactly as
//! appended:
//!
//! | bytes | content |
//! |---|---|
//! | 1 | format version (1) |
//! | 8 | position, big-endian |
//! | 32 | hash of the previous record |
//! | 32 | this record's hash: `sha256(prev_hash ‖ position big-endian ‖ envelope)` |
//! | rest | the envelope (`agentcrm.v1.Envelope`) |
//!
//! Editing, removing or reordering any record breaks the chain. The header is
//! fixed-size so replay can decode the envelope in place, without a copy.
//!
//! The records of one group commit are stored together under the key of the
//! first one, as a block: the byte 2, then each record as its length (u32,
//! big-endian) and its bytes. A group of one record is stored as the bare
//! record. Reading a block costs the storage engine one lookup where separate
//! keys cost one per record, which is most of a replay's time.

use bus_schema::{EventEnvelope, RecordedEvent};
use sha2::{Digest, Sha256};

use crate::log::StoreError;

/// The hash "before" the first record.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

const FORMAT: u8 = 1;
const BLOCK: u8 = 2;
const HEADER: usize = 1 + 8 + 32 + 32;

/// A record as it lies on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub position: u64,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
    pub envelope: Vec<u8>,
}

impl StoredRecord {
    /// Seals an envelope at `position` after the record whose hash is `prev_hash`.
    pub fn seal(position: u64, prev_hash: [u8; 32], envelope: Vec<u8>) -> Self {
        let hash = chain_hash(&prev_hash, position, &envelope);
        Self { position, prev_hash, hash, envelope }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(HEADER + self.envelope.len());
        bytes.push(FORMAT);
        bytes.extend_from_slice(&self.position.to_be_bytes());
        bytes.extend_from_slice(&self.prev_hash);
        bytes.extend_from_slice(&self.hash);
        bytes.extend_from_slice(&self.envelope);
        bytes
    }

    /// Parses a record stored under `position`.
    pub fn decode_bytes(position: u64, bytes: &[u8]) -> Result<Self, StoreError> {
        let view = RecordView::parse(position, bytes)?;
        Ok(Self {
            position: view.position,
            prev_hash: view.prev_hash,
            hash: view.hash,
            envelope: view.envelope.to_vec(),
        })
    }

    /// The recomputed hash of this record's content.
    pub fn computed_hash(&self) -> [u8; 32] {
        chain_hash(&self.prev_hash, self.position, &self.envelope)
    }

    pub fn to_event(&self) -> Result<RecordedEvent, StoreError> {
        decode_envelope(self.position, &self.envelope)
    }
}

/// A record borrowed from its stored bytes.
struct RecordView<'a> {
    position: u64,
    prev_hash: [u8; 32],
    hash: [u8; 32],
    envelope: &'a [u8],
}

impl<'a> RecordView<'a> {
    fn parse(key_position: u64, bytes: &'a [u8]) -> Result<Self, StoreError> {
        let corrupt = |reason: &str| StoreError::Corrupt {
            position: key_position,
            reason: reason.to_owned(),
        };
        if bytes.len() < HEADER {
            return Err(corrupt("record shorter than its header"));
        }
        if bytes[0] != FORMAT {
            return Err(corrupt("unknown record format"));
        }
        let array = |range: std::ops::Range<usize>| -> Result<[u8; 32], StoreError> {
            bytes[range].try_into().map_err(|_| corrupt("malformed hash"))
        };
        let position_bytes: [u8; 8] =
            bytes[1..9].try_into().map_err(|_| corrupt("malformed position"))?;
        Ok(Self {
            position: u64::from_be_bytes(position_bytes),
            prev_hash: array(9..41)?,
            hash: array(41..73)?,
            envelope: &bytes[HEADER..],
        })
    }
}

/// Decodes the event in a stored record without copying the envelope: the
/// replay path.
pub fn decode_event(key_position: u64, bytes: &[u8]) -> Result<RecordedEvent, StoreError> {
    let view = RecordView::parse(key_position, bytes)?;
    decode_envelope(view.position, view.envelope)
}

fn decode_envelope(position: u64, envelope: &[u8]) -> Result<RecordedEvent, StoreError> {
    let envelope = EventEnvelope::decode(envelope)
        .map_err(|error| StoreError::Corrupt { position, reason: format!("envelope: {error}") })?;
    Ok(RecordedEvent { position, envelope })
}

/// Packs encoded records (in position order) into one stored value.
pub fn pack(mut records: Vec<Vec<u8>>) -> Vec<u8> {
    if records.len() == 1 {
        return records.pop().unwrap_or_default();
    }
    let size = records.iter().map(|record| 4 + record.len()).sum::<usize>();
    let mut value = Vec::with_capacity(1 + size);
    value.push(BLOCK);
    for record in &records {
        // Records are events of at most a few megabytes, far below 4 GiB.
        let length = u32::try_from(record.len()).unwrap_or(u32::MAX);
        value.extend_from_slice(&length.to_be_bytes());
        value.extend_from_slice(record);
    }
    value
}

/// The records in a value stored under `key_position` (a bare record or a
/// block), each with the position its header names, in stored order.
pub fn unpack(key_position: u64, value: &[u8]) -> Result<Vec<(u64, &[u8])>, StoreError> {
    let corrupt =
        |reason: &str| StoreError::Corrupt { position: key_position, reason: reason.to_owned() };
    match value.first() {
        Some(&BLOCK) => {
            let mut records = Vec::new();
            let mut rest = &value[1..];
            while !rest.is_empty() {
                let (length, tail) =
                    rest.split_first_chunk::<4>().ok_or_else(|| corrupt("truncated block"))?;
                let length = usize::try_from(u32::from_be_bytes(*length)).unwrap_or(usize::MAX);
                if tail.len() < length {
                    return Err(corrupt("truncated block"));
                }
                let (record, tail) = tail.split_at(length);
                records.push((record_position(key_position, record)?, record));
                rest = tail;
            }
            if records.is_empty() {
                return Err(corrupt("empty block"));
            }
            Ok(records)
        }
        _ => Ok(vec![(record_position(key_position, value)?, value)]),
    }
}

fn record_position(key_position: u64, record: &[u8]) -> Result<u64, StoreError> {
    Ok(RecordView::parse(key_position, record)?.position)
}

pub fn chain_hash(prev_hash: &[u8], position: u64, envelope: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(position.to_be_bytes());
    hasher.update(envelope);
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_short_or_unknown_records() {
        let record = StoredRecord::seal(7, [3; 32], vec![1, 2, 3]);
        let bytes = record.encode();
        assert_eq!(StoredRecord::decode_bytes(7, &bytes).unwrap(), record);
        assert_eq!(record.computed_hash(), record.hash);
        assert!(StoredRecord::decode_bytes(7, &bytes[..10]).is_err());
        let mut unknown = bytes.clone();
        unknown[0] = 9;
        assert!(matches!(
            StoredRecord::decode_bytes(7, &unknown),
            Err(StoreError::Corrupt { position: 7, .. })
        ));
    }

    #[test]
    fn blocks_hold_records_in_order_and_refuse_truncation() {
        let first = StoredRecord::seal(7, [3; 32], vec![1, 2, 3]);
        let second = StoredRecord::seal(8, first.hash, vec![4, 5]);
        let (first, second) = (first.encode(), second.encode());
        let block = pack(vec![first.clone(), second.clone()]);
        let records = unpack(7, &block).unwrap();
        assert_eq!(records, vec![(7, &first[..]), (8, &second[..])]);
        // One record is stored bare, as records always were.
        assert_eq!(pack(vec![first.clone()]), first);
        assert_eq!(unpack(7, &first).unwrap(), vec![(7, &first[..])]);
        for cut in [1, 3, block.len() - 1] {
            assert!(
                matches!(unpack(7, &block[..cut]), Err(StoreError::Corrupt { position: 7, .. })),
                "a block cut at {cut} was accepted"
            );
        }
    }
}
