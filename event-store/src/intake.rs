//! The embedded intake queue: raw submissions waiting for the masking agent.
//!
//! An accepted item goes to the log's write-ahead log, in the same group
//! commit as the log's records (`fdatasync` before the answer), and waits in
//! memory until the masking agent acknowledges it. An item the agent masks
//! before the next checkpoint costs no other write. When a checkpoint retires
//! the write-ahead segments, the items still waiting are first copied
//! ("spilled") to a spill file, `intake/<first>-<last>.spill`: one sequential
//! file and one `fdatasync` for all of them, written in slices of 256 KiB,
//! each written out before the next and spread over up to half a second, so
//! that the group commits' cache flushes never wait behind the whole spill.
//! A spill file is deleted once every item in it is acknowledged. On open, the write-ahead log is replayed
//! and the spill files are read back; an item whose event id is in the log
//! already was masked before the stop and is dropped.
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
//! A spill file holds records `[sequence u64][event id, 16 bytes][length
//! u32][crc32 u32][item]`, little-endian, the checksum over the sequence, the
//! id and the item; it is written as `.tmp`, synced, then renamed, so a file
//! with the `.spill` name is whole. Earlier versions spilled to the `intake`
//! tree (`P` sequence → event id ‖ item), and before that wrote `Q` sequence →
//! item, `N` → last sequence and `D` delivery key → event id; their items are
//! still read and removed.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;
use uuid::Uuid;

use crate::log::StoreError;

const SPILLED: u8 = b'P';
const LEGACY_ITEM: u8 = b'Q';
const LEGACY_LAST: &[u8] = b"N";
const SPILL_SUFFIX: &str = "spill";

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
    /// In the `intake` tree under this prefix (`P` or `Q`, from earlier versions).
    Tree(u8),
    /// In the spill file with this first sequence.
    File(u64),
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
    /// Spill files by first sequence.
    files: HashMap<u64, SpillFile>,
}

struct SpillFile {
    path: PathBuf,
    /// How many of its items still wait.
    live: usize,
}

/// The waiting items, shared by the log's writer (adds), its checkpointer
/// (spills) and the queue's readers (take and remove).
pub(crate) struct IntakeState {
    tree: sled::Tree,
    /// Where spill files go.
    dir: PathBuf,
    waiting: Mutex<Waiting>,
    limit: usize,
}

impl IntakeState {
    /// Reads the items kept in `tree` (after the write-ahead log was replayed
    /// into it) and in the spill files in `dir`, leaving out those whose event
    /// id `is_stored` says the log holds; returns the state and the last
    /// sequence used.
    pub(crate) fn load(
        tree: sled::Tree,
        dir: &Path,
        limit: usize,
        is_stored: &dyn Fn(Uuid) -> Result<bool, StoreError>,
    ) -> Result<(Self, u64), StoreError> {
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
            if is_stored(event_id)? {
                tree.remove(key)?;
                continue;
            }
            waiting.add(sequence, Some(event_id), Arc::from(bytes), Kept::Tree(SPILLED));
        }
        for (first, path) in spill_files(dir)? {
            let mut live = 0;
            for (sequence, event_id, item) in read_spill_file(&path)? {
                last = last.max(sequence);
                if waiting.items.contains_key(&sequence) || is_stored(event_id)? {
                    continue;
                }
                waiting.add(sequence, Some(event_id), Arc::from(item), Kept::File(first));
                live += 1;
            }
            if live == 0 {
                std::fs::remove_file(&path)?;
            } else {
                waiting.files.insert(first, SpillFile { path, live });
            }
        }
        let state = Self { tree, dir: dir.to_owned(), waiting: Mutex::new(waiting), limit };
        Ok((state, last))
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

    /// Adds an item the intake lane staged; readers see it once it is durable.
    /// Returns the write-ahead key and value that keep it.
    pub(crate) fn add(&self, sequence: u64, event_id: Uuid, item: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
        let value = spilled_value(event_id, &item);
        self.waiting().add(sequence, Some(event_id), Arc::from(item), Kept::WriteAhead);
        (item_key(SPILLED, sequence), value)
    }

    /// Copies every item up to `durable` that only the write-ahead log holds
    /// into a new spill file, durably, before a checkpoint retires the
    /// segments.
    pub(crate) fn spill(&self, durable: u64) -> Result<(), StoreError> {
        let copies: Vec<(u64, Uuid, Arc<[u8]>)> = self
            .waiting()
            .items
            .range(..=durable)
            .filter(|(_, item)| item.kept == Kept::WriteAhead)
            .filter_map(|(sequence, item)| Some((*sequence, item.event_id?, item.bytes.clone())))
            .collect();
        let (Some((first, _, _)), Some((last, _, _))) = (copies.first(), copies.last()) else {
            return Ok(());
        };
        let (first, last) = (*first, *last);
        let path = self.dir.join(format!("{first:020}-{last:020}.{SPILL_SUFFIX}"));
        write_spill_file(&self.dir, &path, &copies)?;
        // An item acknowledged while the file was written is not counted: the
        // file goes once the items that still wait are acknowledged.
        let mut waiting = self.waiting();
        let mut live = 0;
        for (sequence, _, _) in &copies {
            if let Some(item) = waiting.items.get_mut(sequence) {
                item.kept = Kept::File(first);
                live += 1;
            }
        }
        if live == 0 {
            drop(waiting);
            remove_spill_file(&path);
        } else {
            waiting.files.insert(first, SpillFile { path, live });
        }
        Ok(())
    }

    fn remove(&self, sequence: u64) -> Result<(), StoreError> {
        let mut waiting = self.waiting();
        match waiting.remove(sequence) {
            Some(Kept::Tree(prefix)) => {
                drop(waiting);
                self.tree.remove(item_key(prefix, sequence))?;
            }
            Some(Kept::File(first)) => {
                let Some(file) = waiting.files.get_mut(&first) else { return Ok(()) };
                file.live -= 1;
                if file.live == 0
                    && let Some(file) = waiting.files.remove(&first)
                {
                    drop(waiting);
                    remove_spill_file(&file.path);
                }
            }
            Some(Kept::WriteAhead) | None => {}
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

/// How busy the queue is: what a consumer sharing the machine with the
/// gateway reads to yield to a burst of webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntakeLoad {
    /// The last sequence made durable: it grows by one per accepted item.
    pub accepted: u64,
    /// Bytes of items waiting for the masking agent.
    pub waiting_bytes: usize,
    /// Past this many waiting bytes, the queue refuses new items.
    pub limit_bytes: usize,
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

    pub fn load(&self) -> IntakeLoad {
        IntakeLoad {
            accepted: *self.last.borrow(),
            waiting_bytes: self.state.waiting().bytes,
            limit_bytes: self.state.limit,
        }
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

/// Writes `items` to `path` (through a `.tmp` file, synced, then renamed, the
/// directory synced after), in slices spread over up to [`SPILL_SPREAD`].
fn write_spill_file(dir: &Path, path: &Path, items: &[(u64, Uuid, Arc<[u8]>)]) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let temporary = path.with_extension("tmp");
    let mut file = File::create(&temporary)?;
    let total: usize = items.iter().map(|(_, _, item)| SPILL_HEADER + item.len()).sum();
    let slices = u32::try_from(total.div_ceil(SPILL_SLICE)).unwrap_or(u32::MAX).max(1);
    let pause = (SPILL_SPREAD / slices).min(SPILL_MAX_PAUSE);
    let mut slice = Vec::with_capacity(SPILL_SLICE + SPILL_HEADER);
    let mut offset = 0;
    for (sequence, event_id, item) in items {
        let length = u32::try_from(item.len()).map_err(io::Error::other)?;
        slice.extend_from_slice(&sequence.to_le_bytes());
        slice.extend_from_slice(event_id.as_bytes());
        slice.extend_from_slice(&length.to_le_bytes());
        slice.extend_from_slice(&spill_crc(*sequence, *event_id, item).to_le_bytes());
        slice.extend_from_slice(item);
        if slice.len() >= SPILL_SLICE {
            write_slice(&mut file, &slice, offset)?;
            offset += slice.len() as u64;
            slice.clear();
            std::thread::sleep(pause);
        }
    }
    write_slice(&mut file, &slice, offset)?;
    file.sync_data()?;
    std::fs::rename(&temporary, path)?;
    File::open(dir)?.sync_all()
}

/// A spill record's bytes before its item.
const SPILL_HEADER: usize = 8 + 16 + 4 + 4;
/// A spill goes to disk in slices of this size, each written out before the
/// next: a group commit's cache flush waits for every write queued before it,
/// so one large write would hold up the webhooks of the groups behind it.
const SPILL_SLICE: usize = 256 << 10;
/// Over about how long the slices of one spill are spread.
const SPILL_SPREAD: std::time::Duration = std::time::Duration::from_millis(500);
/// The longest pause between two slices.
const SPILL_MAX_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// Appends `bytes`, which start at `offset` in the file, and waits until the
/// kernel has written them out (not a sync: the caller syncs the whole file
/// at the end).
fn write_slice(file: &mut File, bytes: &[u8], offset: u64) -> io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    file.write_all(bytes)?;
    write_out(file, offset, bytes.len())
}

#[cfg(target_os = "linux")]
fn write_out(file: &File, offset: u64, length: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let offset = libc::off64_t::try_from(offset).map_err(io::Error::other)?;
    let length = libc::off64_t::try_from(length).map_err(io::Error::other)?;
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    #[allow(unsafe_code)]
    // SAFETY: a system call on a descriptor the `File` keeps open; it reads
    // and writes no memory of ours.
    let result = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, length, flags) };
    if result == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(not(target_os = "linux"))]
fn write_out(_file: &File, _offset: u64, _length: usize) -> io::Result<()> {
    Ok(())
}

fn spill_crc(sequence: u64, event_id: Uuid, item: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&sequence.to_le_bytes());
    hasher.update(event_id.as_bytes());
    hasher.update(item);
    hasher.finalize()
}

/// The items of a spill file. A whole file was renamed into place only after
/// its sync, so a record that does not check out is damage, not a torn write.
fn read_spill_file(path: &Path) -> Result<Vec<(u64, Uuid, Vec<u8>)>, StoreError> {
    let corrupt = || StoreError::Corrupt {
        position: 0,
        reason: format!("damaged intake spill file {}", path.display()),
    };
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let mut items = Vec::new();
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        let sequence = u64::from_le_bytes(take(&mut rest).ok_or_else(corrupt)?);
        let event_id = Uuid::from_bytes(take(&mut rest).ok_or_else(corrupt)?);
        let length = u32::from_le_bytes(take(&mut rest).ok_or_else(corrupt)?);
        let crc = u32::from_le_bytes(take(&mut rest).ok_or_else(corrupt)?);
        let (item, after) = rest.split_at_checked(length as usize).ok_or_else(corrupt)?;
        if spill_crc(sequence, event_id, item) != crc {
            return Err(corrupt());
        }
        items.push((sequence, event_id, item.to_vec()));
        rest = after;
    }
    Ok(items)
}

/// The first `N` bytes of `bytes`, which then starts after them.
fn take<const N: usize>(bytes: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = bytes.split_first_chunk::<N>()?;
    *bytes = rest;
    Some(*head)
}

/// The spill files in `dir` by first sequence, oldest first; left-over
/// `.tmp` files (a spill cut short, whose items the write-ahead log still
/// held) are deleted.
fn spill_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error.into()),
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry?.path();
        match path.extension().and_then(|extension| extension.to_str()) {
            Some(SPILL_SUFFIX) => {
                let first = path
                    .file_stem()
                    .and_then(|stem| stem.to_str())
                    .and_then(|stem| stem.split_once('-'))
                    .and_then(|(first, _)| first.parse().ok());
                if let Some(first) = first {
                    found.push((first, path));
                }
            }
            Some("tmp") => std::fs::remove_file(&path)?,
            _ => {}
        }
    }
    found.sort();
    Ok(found)
}

/// Deletes a spill file whose items were all acknowledged. Not synced: if
/// the file comes back after a crash, opening drops the items whose event the
/// log holds, and the few the masking agent dropped as invalid are dropped
/// again.
fn remove_spill_file(path: &Path) {
    if let Err(error) = std::fs::remove_file(path)
        && error.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(error = %error, path = %path.display(), "Cannot delete an intake spill file");
    }
}
