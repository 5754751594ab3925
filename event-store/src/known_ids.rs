//! A Bloom filter over the event ids in the log, so the writer tells a new
//! event id from a repeat without reading sled's index.
//!
//! Every append and every intake item with a delivery id asks whether its
//! event id is in the log. Almost always it is not, and the answer used to be
//! a read of the `I` index in sled (about 40 % of the writer's time under a
//! burst of webhooks). The filter answers "certainly not" from memory; "maybe"
//! still goes to the index, so a false positive costs one read and a wrong
//! answer is impossible.
//!
//! On open the filter is filled from the index, for a large log on a thread of
//! its own while the log already serves (until then every question goes to
//! the index); ids appended meanwhile are added by the writer, so once the
//! scan ends the filter holds every id. It is sized for twice the records the log held at open
//! (at least [`MIN_CAPACITY`]) at a 1 % false-positive rate; a log that grows
//! past four times that capacity before the next open stops asking it, since
//! its answers would mostly be "maybe".

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use fastbloom::AtomicBloomFilter;
use uuid::Uuid;

use crate::log::StoreError;

/// The fewest ids the filter is sized for (4 Mi ids take about 5 MiB).
pub(crate) const MIN_CAPACITY: u64 = 4 << 20;

pub(crate) struct KnownIds {
    filter: AtomicBloomFilter,
    capacity: u64,
    inserted: AtomicU64,
    ready: AtomicBool,
    stopped: AtomicBool,
}

impl KnownIds {
    /// An empty filter for a log of `records` records; not ready until
    /// [`KnownIds::fill`] has run.
    pub(crate) fn new(records: u64) -> Self {
        let capacity = records.saturating_mul(2).max(MIN_CAPACITY);
        let items = usize::try_from(capacity).unwrap_or(usize::MAX);
        Self {
            filter: AtomicBloomFilter::with_false_pos(0.01).expected_items(items),
            capacity,
            inserted: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        }
    }

    pub(crate) fn insert(&self, event_id: Uuid) {
        self.filter.insert(&event_id);
        self.inserted.fetch_add(1, Ordering::Relaxed);
    }

    /// False only when `event_id` is certainly not in the log.
    pub(crate) fn may_contain(&self, event_id: Uuid) -> bool {
        if !self.ready.load(Ordering::Acquire)
            || self.inserted.load(Ordering::Relaxed) > self.capacity.saturating_mul(4)
        {
            return true;
        }
        self.filter.contains(&event_id)
    }

    /// Adds every id of the event-id index (`prefix` ‖ id → position), then
    /// lets the filter answer; gives up, not ready, once [`KnownIds::stop`] is
    /// called (the log is closing).
    pub(crate) fn fill(&self, tree: &sled::Tree, prefix: u8) -> Result<(), StoreError> {
        for key in tree.scan_prefix([prefix]).keys() {
            if self.stopped.load(Ordering::Relaxed) {
                return Ok(());
            }
            let key = key?;
            if let Ok(event_id) = Uuid::from_slice(&key[1..]) {
                self.insert(event_id);
            }
        }
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    #[cfg(test)]
    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_once_filled_and_never_denies_an_inserted_id()
    -> Result<(), Box<dyn std::error::Error>> {
        let tree = sled::Config::new().temporary(true).open()?.open_tree("t")?;
        let stored: Vec<Uuid> = (0..1000).map(|_| Uuid::now_v7()).collect();
        for id in &stored {
            tree.insert([&[b'I'][..], id.as_bytes()].concat(), &[0u8; 8])?;
        }
        let known = KnownIds::new(1000);
        let fresh = Uuid::now_v7();
        assert!(known.may_contain(fresh), "not filled yet: every id may be there");
        let appended = Uuid::now_v7();
        known.insert(appended);
        known.fill(&tree, b'I')?;
        assert!(known.is_ready());
        assert!(stored.iter().all(|id| known.may_contain(*id)));
        assert!(known.may_contain(appended));
        let strangers = (0..10_000).filter(|_| known.may_contain(Uuid::now_v7())).count();
        assert!(strangers < 500, "{strangers} of 10,000 new ids were reported as maybe known");
        Ok(())
    }
}
