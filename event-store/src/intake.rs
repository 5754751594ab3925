//! The embedded intake queue: raw submissions waiting for the masking agent.
//!
//! Items are written through the log's writer, so "accepted" shares the group
//! commit's durability (flush plus `fdatasync`). They live in their own tree, never
//! in the event log, and are removed once masked. The delivery-id index that makes
//! retried webhooks idempotent is permanent.
//!
//! Layout of the `intake` tree: `Q` sequence → item, `D` delivery key → event id.

use tokio::sync::watch;
use uuid::Uuid;

use crate::log::StoreError;
use crate::wal::{WalBatch, WalTree};

const ITEM: u8 = b'Q';
const DELIVERY: u8 = b'D';
const LAST: &[u8] = b"N";

/// What `enqueue` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntakeReceipt {
    /// The event id given to the item (the first one's, for a repeat).
    pub event_id: Uuid,
    /// True when the delivery key was seen before: nothing was queued.
    pub duplicate: bool,
}

/// Reader side of the queue.
#[derive(Clone)]
pub struct IntakeQueue {
    tree: sled::Tree,
    last: watch::Receiver<u64>,
}

impl IntakeQueue {
    pub(crate) fn new(tree: sled::Tree, last: watch::Receiver<u64>) -> Self {
        Self { tree, last }
    }

    /// Durable items with a sequence greater than `after`, oldest first.
    pub fn pending(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let durable = *self.last.borrow();
        let mut items = Vec::new();
        for entry in self.tree.range(item_key(after.saturating_add(1))..=item_key(durable)) {
            if items.len() >= limit {
                break;
            }
            let (key, value) = entry?;
            items.push((sequence_from(&key[1..])?, value.to_vec()));
        }
        Ok(items)
    }

    /// Forgets an item once its masked event is durable.
    pub fn remove(&self, sequence: u64) -> Result<(), StoreError> {
        self.tree.remove(item_key(sequence))?;
        Ok(())
    }

    /// How many items wait.
    pub fn len(&self) -> usize {
        self.tree.scan_prefix([ITEM]).count()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.scan_prefix([ITEM]).next().is_none()
    }

    /// Waits until an item after `after` is durable.
    pub async fn wait_after(&mut self, after: u64) {
        // The sender lives in the writer; if it is gone, nothing more arrives.
        let _ = self.last.wait_for(|last| *last > after).await;
    }
}

pub(crate) fn last_sequence(tree: &sled::Tree) -> Result<u64, StoreError> {
    match tree.get(LAST)? {
        Some(value) => sequence_from(&value),
        None => Ok(0),
    }
}

pub(crate) fn lookup_delivery(tree: &sled::Tree, key: &[u8]) -> Result<Option<Uuid>, StoreError> {
    let Some(value) = tree.get(delivery_key(key))? else { return Ok(None) };
    Uuid::from_slice(&value).map(Some).map_err(|_| StoreError::Corrupt {
        position: 0,
        reason: "malformed intake delivery index".into(),
    })
}

/// Stages an item in the sled batch and, identically, in the write-ahead batch.
/// The order matters (the writes are applied one by one, and a crash may keep
/// a prefix of an unacknowledged group): the item, then the sequence, then the
/// delivery key. A delivery key without its item would answer a retry
/// "duplicate" for an item that is gone; an item without its delivery key is
/// at worst masked twice, and both masked events carry the same event id
/// (derived from the delivery), so the log stores it once.
pub(crate) fn stage(
    batch: &mut Vec<(Vec<u8>, Vec<u8>)>,
    wal: &mut WalBatch,
    sequence: u64,
    event_id: Uuid,
    dedupe_key: Option<&[u8]>,
    item: Vec<u8>,
) {
    let mut put = |key: Vec<u8>, value: Vec<u8>| {
        wal.insert(WalTree::Intake, &key, &value);
        batch.push((key, value));
    };
    put(item_key(sequence), item);
    put(LAST.to_vec(), sequence.to_be_bytes().to_vec());
    if let Some(key) = dedupe_key {
        put(delivery_key(key), event_id.as_bytes().to_vec());
    }
}

fn item_key(sequence: u64) -> Vec<u8> {
    let mut key = vec![ITEM];
    key.extend_from_slice(&sequence.to_be_bytes());
    key
}

fn delivery_key(key: &[u8]) -> Vec<u8> {
    let mut bytes = vec![DELIVERY];
    bytes.extend_from_slice(key);
    bytes
}

fn sequence_from(bytes: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(bytes).map(u64::from_be_bytes).map_err(|_| StoreError::Corrupt {
        position: 0,
        reason: "malformed intake sequence".into(),
    })
}
