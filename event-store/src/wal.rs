//! The write-ahead log that makes a group commit durable.
//!
//! sled's own `flush()` writes through several I/O threads and ends in
//! `sync_file_range`; following it with an `fdatasync` of sled's file, per group,
//! costs milliseconds. Instead each group's changes are appended to a plain
//! segment file and made durable with one `fdatasync` of that file; sled keeps
//! the same changes in memory and writes them out in the background. Every
//! second (and at close) the flusher checkpoints: it starts a new segment, has
//! sled flush and `fdatasync` its file, and deletes the older segments, whose
//! content sled now holds durably. On open, the segments still present are
//! applied to sled again: applying a group twice writes the same bytes twice.
//!
//! Segment files `wal/<id>.log` hold frames `[length u32][crc32 u32][ops]`; an op
//! is `[tree u8][key length u32][key][value length u32][value]`, all
//! little-endian. A torn or zeroed tail frame ends the segment: it was never
//! acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::log::StoreError;

/// Which sled tree an operation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum WalTree {
    Events = 0,
    Intake = 1,
}

/// The changes of one writer batch, as they go to the write-ahead log.
#[derive(Default)]
pub(crate) struct WalBatch {
    ops: Vec<u8>,
}

impl WalBatch {
    pub(crate) fn insert(&mut self, tree: WalTree, key: &[u8], value: &[u8]) {
        self.ops.push(tree as u8);
        push_bytes(&mut self.ops, key);
        push_bytes(&mut self.ops, value);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

fn push_bytes(buffer: &mut Vec<u8>, bytes: &[u8]) {
    // Keys and values are far below 4 GiB (records are events, not files).
    buffer.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buffer.extend_from_slice(bytes);
}

/// The open segment the flusher appends to.
pub(crate) struct Wal {
    dir: PathBuf,
    file: File,
    id: u64,
    sync: bool,
    frame: Vec<u8>,
}

impl Wal {
    /// Starts a new segment after any that exist.
    pub(crate) fn create(dir: &Path, sync: bool) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let id = segments(dir)?.last().map_or(1, |(id, _)| id + 1);
        let file = open_segment(dir, id, sync)?;
        Ok(Self { dir: dir.to_owned(), file, id, sync, frame: Vec::new() })
    }

    /// Appends the batches as frames and makes them durable with one `fdatasync`.
    pub(crate) fn append<'a>(
        &mut self,
        batches: impl Iterator<Item = &'a WalBatch>,
    ) -> io::Result<()> {
        self.frame.clear();
        for batch in batches.filter(|batch| !batch.is_empty()) {
            self.frame.extend_from_slice(&(batch.ops.len() as u32).to_le_bytes());
            self.frame.extend_from_slice(&crc32fast::hash(&batch.ops).to_le_bytes());
            self.frame.extend_from_slice(&batch.ops);
        }
        if self.frame.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.frame)?;
        if self.sync {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Moves appends to a fresh segment; returns the segments before it, which
    /// may be deleted once sled holds their content durably.
    pub(crate) fn rotate(&mut self) -> Result<Vec<PathBuf>, StoreError> {
        let next = self.id + 1;
        self.file = open_segment(&self.dir, next, self.sync)?;
        self.id = next;
        Ok(segments(&self.dir)?
            .into_iter()
            .filter(|(id, _)| *id < next)
            .map(|(_, path)| path)
            .collect())
    }
}

fn open_segment(dir: &Path, id: u64, sync: bool) -> Result<File, StoreError> {
    let file =
        OpenOptions::new().create(true).append(true).open(dir.join(format!("{id:020}.log")))?;
    if sync {
        // The segment's name must be durable before anything in it counts.
        File::open(dir)?.sync_all()?;
    }
    Ok(file)
}

/// The segments in `dir`, oldest first.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let id = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(".log"))
            .and_then(|stem| stem.parse::<u64>().ok());
        if let Some(id) = id {
            found.push((id, path));
        }
    }
    found.sort();
    Ok(found)
}

/// Applies every complete frame of every segment in `dir` to the trees, in
/// order. Returns how many frames were applied and the segment files, which the
/// caller deletes once sled is durable.
pub(crate) fn replay(
    dir: &Path,
    events: &sled::Tree,
    intake: &sled::Tree,
) -> Result<(usize, Vec<PathBuf>), StoreError> {
    if !dir.exists() {
        return Ok((0, Vec::new()));
    }
    let mut frames = 0;
    let mut paths = Vec::new();
    for (_, path) in segments(dir)? {
        let mut bytes = Vec::new();
        File::open(&path)?.read_to_end(&mut bytes)?;
        let mut rest = bytes.as_slice();
        while let Some((ops, after)) = next_frame(rest) {
            apply(ops, events, intake)?;
            frames += 1;
            rest = after;
        }
        paths.push(path);
    }
    Ok((frames, paths))
}

/// The next complete, intact frame, or `None` at the end (or a torn tail).
fn next_frame(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let length = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    let ops = bytes.get(8..8 + length)?;
    if length == 0 || crc32fast::hash(ops) != crc {
        return None;
    }
    Some((ops, &bytes[8 + length..]))
}

fn apply(mut ops: &[u8], events: &sled::Tree, intake: &sled::Tree) -> Result<(), StoreError> {
    let mut events_batch = sled::Batch::default();
    let mut intake_batch = sled::Batch::default();
    let malformed =
        || StoreError::Corrupt { position: 0, reason: "malformed write-ahead log frame".into() };
    while let Some((&tree, rest)) = ops.split_first() {
        let (key, rest) = take_bytes(rest).ok_or_else(malformed)?;
        let (value, rest) = take_bytes(rest).ok_or_else(malformed)?;
        match tree {
            0 => events_batch.insert(key, value),
            1 => intake_batch.insert(key, value),
            _ => return Err(malformed()),
        }
        ops = rest;
    }
    events.apply_batch(events_batch)?;
    intake.apply_batch(intake_batch)?;
    Ok(())
}

fn take_bytes(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let length = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
    let value = bytes.get(4..4 + length)?;
    Some((value, &bytes[4 + length..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_replay_in_order_and_a_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().join("wal");
        let mut wal = Wal::create(&wal_dir, true).unwrap();
        let mut first = WalBatch::default();
        first.insert(WalTree::Events, b"a", b"1");
        first.insert(WalTree::Intake, b"q", b"x");
        let mut second = WalBatch::default();
        second.insert(WalTree::Events, b"a", b"2");
        wal.append([&first, &second].into_iter()).unwrap();
        // A torn frame: a length and part of its body.
        wal.file.write_all(&[50, 0, 0, 0, 1, 2, 3]).unwrap();

        let db = sled::Config::new().temporary(true).open().unwrap();
        let (events, intake) = (db.open_tree("e").unwrap(), db.open_tree("i").unwrap());
        let (frames, paths) = replay(&wal_dir, &events, &intake).unwrap();
        assert_eq!(frames, 2);
        assert_eq!(paths.len(), 1);
        assert_eq!(events.get(b"a").unwrap().unwrap().as_ref(), b"2");
        assert_eq!(intake.get(b"q").unwrap().unwrap().as_ref(), b"x");

        let older = wal.rotate().unwrap();
        assert_eq!(older, paths);
    }
}
