//! The embedded intake queue: raw submissions waiting for the masking agent.
//!
//! An accepted item goes to the log's write-ahead log, in the same group
//! commit as the log's records (`fdatasync` before the answer), and waits in
//! memory until the masking agent acknowledges it. Sled sees an item only if
//! it is still waiting when a checkpoint retires the write-ahead segment that
//! holds it: the checkpointer first copies ("spills") every waiting item to
//! the `intake` tree, then makes sled durable, then retires the segments. An
//! item the agent masks within the second costs no sled write at all; on open,
//! replaying the write-ahead log puts the rest into the tree, and they are
//! read back from there.
//!
//! Idempotence is by event id, forever: an item whose event id is waiting
//! here, or already in the log (the masked event carries the item's event id),
//! is a duplicate. A submission with a delivery id gets an event id derived
//! from it, so a retried delivery is recognised before and after masking,
//! across restarts.
//!
//! Waiting items are bounded (`SledOptions::intake_limit_bytes`, by default
//! [`DEFAULT_LIMIT_BYTES`]): past that, `enqueue` refuses with [`AppendError::Backlog`](crate::log::AppendError::Backlog)
//! and the caller answers "retry later" instead of holding more than it can.
//!
//! Layout of the `intake` tree: `P` sequence → event id (16 bytes) ‖ item.
//! Earlier versions wrote `Q` sequence → item, `N` → last sequence and `D`
//! delivery key → event id; their items are still read and removed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;
use uuid::Uuid;

use crate::log::StoreError;

const SPILLED: u8 = b'P';
const LEGACY_ITEM: u8 = b'Q';
const LEGACY_LAST: &[u8] = b"N";

/// Items copied to the tree per sled batch.
const SPILL_BATCH: usize = 256;

/// How many bytes of items may wait for the masking agent, unless the log is
/// opened with another limit (256 MiB).
pub const DEFAULT_LIMIT_BYTES: usize = 256 << 20;

/// What `enqueue` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntakeReceipt {
    /// The event id given to the item (the first one's, for a repeat).
    pub event_id: Uuid,
    /// True when the event id was seen before: nothing was queued.
    pub duplicate: bool,
}

/// Where an item is kept besides memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kept {
    /// Only in the write-ahead log.
    WriteAhead,
    /// In the `intake` tree under this prefix (`P`, or `Q` from earlier versions).
    Tree(u8),
}

struct Item {
    /// Unknown for items written by earlier versions.
    event_id: Option<Uuid>,
    bytes: Arc<[u8]>,
    kept: Kept,
}

#[derive(Default)]
struct Waiting {
    items: BTreeMap<u64, Item>,
    by_id: HashMap<Uuid, u64>,
    bytes: usize,
}

/// The waiting items, shared by the log's writer (adds), its checkpointer
/// (spills) and the queue's readers (take and remove).
pub(crate) struct IntakeState {
    tree: sled::Tree,
    waiting: Mutex<Waiting>,
    limit: usize,
}

impl IntakeState {
    /// Reads the items kept in `tree` (after the write-ahead log was replayed
    /// into it); returns the state and the last sequence used.
    pub(crate) fn load(tree: sled::Tree, limit: usize) -> Result<(Self, u64), StoreError> {
        let mut waiting = Waiting::default();
        // Earlier versions wrote an item before its sequence: an item past
        // the last sequence was never acknowledged.
        let legacy_last = match tree.get(LEGACY_LAST)? {
            Some(value) => sequence_from(&value)?,
            None => 0,
        };
        let mut last = legacy_last;
        for entry in tree.scan_prefix([LEGACY_ITEM]) {
            let (key, value) = entry?;
            let sequence = sequence_from(&key[1..])?;
            if sequence > legacy_last {
                tree.remove(key)?;
                continue;
            }
            waiting.add(sequence, None, Arc::from(&value[..]), Kept::Tree(LEGACY_ITEM));
        }
        for entry in tree.scan_prefix([SPILLED]) {
            let (key, value) = entry?;
            let sequence = sequence_from(&key[1..])?;
            let (event_id, bytes) = split_spilled(&value)?;
            last = last.max(sequence);
            waiting.add(sequence, Some(event_id), Arc::from(bytes), Kept::Tree(SPILLED));
        }
        Ok((Self { tree, waiting: Mutex::new(waiting), limit }, last))
    }

    fn waiting(&self) -> MutexGuard<'_, Waiting> {
        // The map stays consistent at every step; a panic elsewhere does not
        // make it wrong.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether an item with this event id waits.
    pub(crate) fn is_waiting(&self, event_id: Uuid) -> bool {
        self.waiting().by_id.contains_key(&event_id)
    }

    /// Whether `bytes` more would go past the limit.
    pub(crate) fn is_full(&self, bytes: usize) -> bool {
        self.waiting().bytes.saturating_add(bytes) > self.limit
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Adds an item the writer staged; readers see it once it is durable.
    /// Returns the write-ahead key and value that keep it.
    pub(crate) fn add(&self, sequence: u64, event_id: Uuid, item: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
        let value = spilled_value(event_id, &item);
        self.waiting().add(sequence, Some(event_id), Arc::from(item), Kept::WriteAhead);
        (item_key(SPILLED, sequence), value)
    }

    /// Copies every item up to `durable` that only the write-ahead log holds
    /// into the tree, before a checkpoint retires the segments.
    pub(crate) fn spill(&self, durable: u64) -> Result<(), StoreError> {
        let copies: Vec<(u64, Vec<u8>)> = {
            let mut waiting = self.waiting();
            waiting
                .items
                .range_mut(..=durable)
                .filter(|(_, item)| item.kept == Kept::WriteAhead)
                .filter_map(|(sequence, item)| {
                    let id = item.event_id?;
                    item.kept = Kept::Tree(SPILLED);
                    Some((*sequence, spilled_value(id, &item.bytes)))
                })
                .collect()
        };
        if copies.is_empty() {
            return Ok(());
        }
        // In small batches: sled holds off every other writer while it
        // applies one, and group commits go on meanwhile.
        for part in copies.chunks(SPILL_BATCH) {
            let mut batch = sled::Batch::default();
            for (sequence, value) in part {
                batch.insert(item_key(SPILLED, *sequence), value.as_slice());
            }
            self.tree.apply_batch(batch)?;
        }
        // An item acknowledged while it was being copied is gone from the map
        // and must not stay in the tree.
        let waiting = self.waiting();
        for (sequence, _) in &copies {
            if !waiting.items.contains_key(sequence) {
                self.tree.remove(item_key(SPILLED, *sequence))?;
            }
        }
        Ok(())
    }

    fn remove(&self, sequence: u64) -> Result<(), StoreError> {
        let removed = self.waiting().remove(sequence);
        if let Some(Kept::Tree(prefix)) = removed {
            self.tree.remove(item_key(prefix, sequence))?;
        }
        Ok(())
    }
}

impl Waiting {
    fn add(&mut self, sequence: u64, event_id: Option<Uuid>, bytes: Arc<[u8]>, kept: Kept) {
        if let Some(id) = event_id {
            self.by_id.insert(id, sequence);
        }
        self.bytes += bytes.len();
        // Sequences are never reused: loading reads each key once, and new
        // items number on from the highest one loaded.
        self.items.insert(sequence, Item { event_id, bytes, kept });
    }

    fn remove(&mut self, sequence: u64) -> Option<Kept> {
        let item = self.items.remove(&sequence)?;
        self.bytes -= item.bytes.len();
        if let Some(id) = item.event_id
            && self.by_id.get(&id) == Some(&sequence)
        {
            self.by_id.remove(&id);
        }
        Some(item.kept)
    }
}

/// Reader side of the queue.
#[derive(Clone)]
pub struct IntakeQueue {
    state: Arc<IntakeState>,
    last: watch::Receiver<u64>,
}

impl IntakeQueue {
    pub(crate) fn new(state: Arc<IntakeState>, last: watch::Receiver<u64>) -> Self {
        Self { state, last }
    }

    /// Durable items with a sequence greater than `after`, oldest first.
    pub fn pending(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let durable = *self.last.borrow();
        if after >= durable {
            return Ok(Vec::new());
        }
        let waiting = self.state.waiting();
        Ok(waiting
            .items
            .range(after + 1..=durable)
            .take(limit)
            .map(|(sequence, item)| (*sequence, item.bytes.to_vec()))
            .collect())
    }

    /// Forgets an item once its masked event is durable.
    pub fn remove(&self, sequence: u64) -> Result<(), StoreError> {
        self.state.remove(sequence)
    }

    /// How many items wait.
    pub fn len(&self) -> usize {
        self.state.waiting().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.state.waiting().items.is_empty()
    }

    /// Waits until an item after `after` is durable.
    pub async fn wait_after(&mut self, after: u64) {
        // The sender lives in the writer; if it is gone, nothing more arrives.
        let _ = self.last.wait_for(|last| *last > after).await;
    }
}

fn spilled_value(event_id: Uuid, item: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(16 + item.len());
    value.extend_from_slice(event_id.as_bytes());
    value.extend_from_slice(item);
    value
}

fn split_spilled(value: &[u8]) -> Result<(Uuid, &[u8]), StoreError> {
    let corrupt = || StoreError::Corrupt { position: 0, reason: "malformed intake item".into() };
    let (id, item) = value.split_at_checked(16).ok_or_else(corrupt)?;
    Ok((Uuid::from_slice(id).map_err(|_| corrupt())?, item))
}

fn item_key(prefix: u8, sequence: u64) -> Vec<u8> {
    let mut key = vec![prefix];
    key.extend_from_slice(&sequence.to_be_bytes());
    key
}

fn sequence_from(bytes: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(bytes).map(u64::from_be_bytes).map_err(|_| StoreError::Corrupt {
        position: 0,
        reason: "malformed intake sequence".into(),
    })
}
