//! Projections: read models folded from the log.
//!
//! A projection is a pure fold: given a row (or none) and an event, it makes
//! the new row. No I/O, no clock, no randomness, so replaying the log always
//! reproduces the same rows byte for byte. Rows are stored in postcard, a
//! compact binary serde format. The runner stores each batch of rows
//! together with the checkpoint (the last position folded) in one atomic sled
//! batch, so after a crash a read model resumes exactly where its state is.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use bus_schema::RecordedEvent;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::log::{EventLog, StoreError};
use crate::subscription::CatchUpSubscription;

const ROW: u8 = b'R';
const CHECKPOINT: &[u8] = b"C";
/// Events folded per atomic write.
const CHUNK: usize = 1024;

/// A pure fold from events to keyed rows.
pub trait Projection: Send + Sync + 'static {
    type Row: Serialize + DeserializeOwned + Clone + Send + Sync;

    /// The read model's name (also its sled tree, `rm.<name>`).
    const NAME: &'static str;
    /// Bumped whenever the fold changes; a stored model of another version is
    /// rebuilt from position 0 on open.
    const VERSION: u32;

    /// The row this event changes, if any.
    fn key<'a>(&self, event: &'a RecordedEvent) -> Option<&'a str>;

    /// Turns the row (none yet, or none any more) into the row after the
    /// event. Must not do I/O or read the clock. The row is changed in place
    /// and the event handed over, so nothing is copied that can be moved.
    fn apply(&self, row: &mut Option<Self::Row>, event: RecordedEvent);
}

/// Errors of a read model.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("row {key:?} of read model {model} is unreadable: {source}")]
    Row { model: &'static str, key: String, source: postcard::Error },
}

impl From<sled::Error> for ProjectionError {
    fn from(error: sled::Error) -> Self {
        Self::Store(StoreError::Sled(error))
    }
}

/// A persisted read model: its rows and checkpoint in a sled tree.
pub struct ReadModel<P: Projection> {
    projection: P,
    tree: sled::Tree,
    checkpoint: watch::Sender<u64>,
}

impl<P: Projection> ReadModel<P> {
    /// Opens the model's tree in `db`, clearing it if it was built by another
    /// version of the fold.
    pub fn open(db: &sled::Db, projection: P) -> Result<Self, ProjectionError> {
        let tree = db.open_tree(format!("rm.{}", P::NAME))?;
        let (checkpoint, version) = read_checkpoint(&tree)?;
        let checkpoint = if version == P::VERSION {
            checkpoint
        } else {
            if checkpoint > 0 {
                tracing::info!(
                    model = P::NAME,
                    from = version,
                    to = P::VERSION,
                    "Rebuilding read model of an older version"
                );
            }
            tree.clear()?;
            0
        };
        Ok(Self { projection, tree, checkpoint: watch::Sender::new(checkpoint) })
    }

    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// One row.
    pub fn get(&self, key: &str) -> Result<Option<P::Row>, ProjectionError> {
        self.tree.get(row_key(key))?.map(|bytes| self.decode(key, &bytes)).transpose()
    }

    /// Rows in key order, starting after `after` (for cursor pagination).
    pub fn rows_after(
        &self,
        after: Option<&str>,
    ) -> impl Iterator<Item = Result<(String, P::Row), ProjectionError>> + '_ {
        let start = match after {
            Some(key) => {
                let mut start = row_key(key);
                start.push(0);
                start
            }
            None => vec![ROW],
        };
        self.tree.range(start..vec![ROW + 1]).map(|entry| {
            let (key, value) = entry?;
            let key = String::from_utf8_lossy(&key[1..]).into_owned();
            let row = self.decode(&key, &value)?;
            Ok((key, row))
        })
    }

    /// The last position folded into the stored rows.
    pub fn checkpoint(&self) -> u64 {
        *self.checkpoint.borrow()
    }

    /// Waits until the model has folded `position` (read-your-writes).
    pub async fn wait_for(&self, position: u64) {
        let mut receiver = self.checkpoint.subscribe();
        // The sender lives as long as `self`, so this only ends at the position.
        let _ = receiver.wait_for(|checkpoint| *checkpoint >= position).await;
    }

    /// Folds everything after the checkpoint up to the log's durable head.
    pub fn catch_up(&self, log: &Arc<dyn EventLog>) -> Result<u64, ProjectionError> {
        let mut subscription = CatchUpSubscription::new(log.clone(), self.checkpoint());
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut folded = 0;
        while let Some(event) = subscription.try_next()? {
            chunk.push(event);
            if chunk.len() == CHUNK {
                folded += self.fold_chunk(std::mem::take(&mut chunk))?;
            }
        }
        folded += self.fold_chunk(chunk)?;
        Ok(folded as u64)
    }

    /// Follows the log until `shutdown` fires, folding each batch that arrives.
    pub async fn run(
        &self,
        log: Arc<dyn EventLog>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), ProjectionError> {
        let mut subscription = CatchUpSubscription::new(log, self.checkpoint());
        loop {
            let first = tokio::select! {
                event = subscription.next() => event?,
                _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
            };
            let Some(first) = first else { return Ok(()) };
            let mut chunk = vec![first];
            while chunk.len() < CHUNK {
                match subscription.try_next()? {
                    Some(event) => chunk.push(event),
                    None => break,
                }
            }
            self.fold_chunk(chunk)?;
        }
    }

    /// Folds events (all after the checkpoint, in order) and stores the changed
    /// rows with the new checkpoint atomically.
    fn fold_chunk(&self, events: Vec<RecordedEvent>) -> Result<usize, ProjectionError> {
        let Some(last) = events.last().map(|event| event.position) else {
            return Ok(0);
        };
        let count = events.len();
        let mut touched: HashMap<String, Option<P::Row>> = HashMap::new();
        for event in events {
            let Some(key) = self.projection.key(&event).map(str::to_owned) else {
                continue;
            };
            let row = match touched.entry(key) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => {
                    let stored = self.get(entry.key())?;
                    entry.insert(stored)
                }
            };
            self.projection.apply(row, event);
        }
        let mut batch = sled::Batch::default();
        for (key, row) in touched {
            match row {
                Some(row) => batch.insert(row_key(&key), self.encode(&key, &row)?),
                None => batch.remove(row_key(&key)),
            }
        }
        batch.insert(CHECKPOINT, checkpoint_value(last, P::VERSION));
        self.tree.apply_batch(batch)?;
        self.checkpoint.send_replace(last);
        Ok(count)
    }

    /// Folds the whole log again, in memory, then stores the result in place
    /// of the stored rows. `progress` is told the position reached now and then.
    pub fn rebuild(
        &self,
        log: &Arc<dyn EventLog>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, ProjectionError> {
        let mut rows: HashMap<String, Option<P::Row>> = HashMap::new();
        let mut last = 0;
        let mut count = 0u64;
        log.scan(0, &mut |event| {
            last = event.position;
            count += 1;
            if let Some(key) = self.projection.key(&event) {
                // Look up by the borrowed key; allocate one only for a new row.
                match rows.get_mut(key) {
                    Some(row) => self.projection.apply(row, event),
                    None => {
                        let key = key.to_owned();
                        let mut row = None;
                        self.projection.apply(&mut row, event);
                        rows.insert(key, row);
                    }
                }
            }
            if count.is_multiple_of(65_536) {
                progress(last);
            }
            Ok(())
        })?;
        progress(last);
        // The checkpoint goes first and comes back last: a rebuild cut short
        // leaves rows without a checkpoint, which `open` clears (version 0).
        self.tree.remove(CHECKPOINT)?;
        let mut rows: Vec<(String, P::Row)> =
            rows.into_iter().filter_map(|(key, row)| Some((key, row?))).collect();
        // In key order, each writer fills its own leaves from left to right.
        rows.sort_unstable_by(|(left, _), (right, _)| left.cmp(right));
        self.remove_rows_not_in(&rows)?;
        self.write_rows(&rows)?;
        self.tree.insert(CHECKPOINT, checkpoint_value(last, P::VERSION))?;
        self.checkpoint.send_replace(last);
        Ok(count)
    }

    /// Removes the stored rows whose keys are not among `rows` (sorted by
    /// key). Rows that stay are overwritten in place, which costs sled far less
    /// than removing every row and inserting it again.
    fn remove_rows_not_in(&self, rows: &[(String, P::Row)]) -> Result<(), ProjectionError> {
        let mut stale = Vec::new();
        for key in self.tree.range(vec![ROW]..vec![ROW + 1]).keys() {
            let key = key?;
            let name = &key[1..];
            if rows.binary_search_by(|(row, _)| row.as_bytes().cmp(name)).is_err() {
                stale.push(key);
            }
        }
        for key in stale {
            self.tree.remove(key)?;
        }
        Ok(())
    }

    /// Encodes and stores rows on every core: sled 0.34 copies a leaf on each
    /// insert, so a few thousand rows of a few kilobytes take most of a
    /// rebuild's write time on one thread.
    fn write_rows(&self, rows: &[(String, P::Row)]) -> Result<(), ProjectionError> {
        let workers = std::thread::available_parallelism().map_or(1, usize::from).clamp(1, 8);
        let per_worker = rows.len().div_ceil(workers).max(1);
        std::thread::scope(|scope| {
            let handles: Vec<_> = rows
                .chunks(per_worker)
                .map(|part| {
                    scope.spawn(move || -> Result<(), ProjectionError> {
                        for (key, row) in part {
                            self.tree.insert(row_key(key), self.encode(key, row)?)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            // A panic is a bug: it goes on up, as it would on this thread.
            handles.into_iter().try_for_each(|handle| {
                handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
        })
    }

    /// SHA-256 over every stored row, in key order: equal digests mean equal
    /// read models.
    pub fn digest(&self) -> Result<String, ProjectionError> {
        digest_rows(&self.tree)
    }

    fn decode(&self, key: &str, bytes: &[u8]) -> Result<P::Row, ProjectionError> {
        postcard::from_bytes(bytes).map_err(|source| ProjectionError::Row {
            model: P::NAME,
            key: key.to_owned(),
            source,
        })
    }

    fn encode(&self, key: &str, row: &P::Row) -> Result<Vec<u8>, ProjectionError> {
        postcard::to_stdvec(row).map_err(|source| ProjectionError::Row {
            model: P::NAME,
            key: key.to_owned(),
            source,
        })
    }
}

/// The operations every read model offers, whatever its rows are: what `replay`
/// and the live node run over the whole set.
pub trait ReadModelAdmin: Send + Sync {
    fn name(&self) -> &'static str;
    fn checkpoint(&self) -> u64;
    fn catch_up(&self, log: &Arc<dyn EventLog>) -> Result<u64, ProjectionError>;
    fn rebuild(
        &self,
        log: &Arc<dyn EventLog>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, ProjectionError>;
    fn digest(&self) -> Result<String, ProjectionError>;
}

impl<P: Projection> ReadModelAdmin for ReadModel<P> {
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn checkpoint(&self) -> u64 {
        ReadModel::checkpoint(self)
    }

    fn catch_up(&self, log: &Arc<dyn EventLog>) -> Result<u64, ProjectionError> {
        ReadModel::catch_up(self, log)
    }

    fn rebuild(
        &self,
        log: &Arc<dyn EventLog>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, ProjectionError> {
        ReadModel::rebuild(self, log, progress)
    }

    fn digest(&self) -> Result<String, ProjectionError> {
        ReadModel::digest(self)
    }
}

fn row_key(key: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(key.len() + 1);
    bytes.push(ROW);
    bytes.extend_from_slice(key.as_bytes());
    bytes
}

fn checkpoint_value(position: u64, version: u32) -> Vec<u8> {
    let mut value = position.to_be_bytes().to_vec();
    value.extend_from_slice(&version.to_be_bytes());
    value
}

fn read_checkpoint(tree: &sled::Tree) -> Result<(u64, u32), ProjectionError> {
    match tree.get(CHECKPOINT)? {
        Some(value) if value.len() == 12 => {
            let mut position = [0; 8];
            position.copy_from_slice(&value[..8]);
            let mut version = [0; 4];
            version.copy_from_slice(&value[8..]);
            Ok((u64::from_be_bytes(position), u32::from_be_bytes(version)))
        }
        Some(_) => Err(StoreError::Corrupt {
            position: 0,
            reason: "malformed read model checkpoint".into(),
        }
        .into()),
        None => Ok((0, 0)),
    }
}

fn digest_rows(tree: &sled::Tree) -> Result<String, ProjectionError> {
    let mut hasher = Sha256::new();
    for entry in tree.range(vec![ROW]..vec![ROW + 1]) {
        let (key, value) = entry?;
        hasher.update((key.len() as u64).to_be_bytes());
        hasher.update(&key);
        hasher.update((value.len() as u64).to_be_bytes());
        hasher.update(&value);
    }
    Ok(hex::encode(hasher.finalize()))
}
