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
//! Segment files `wal/<id>.wal` hold frames `[length u32][crc32 u32][ops]`,
//! the checksum taken over the segment's id and then the ops; an op is
//! `[tree u8][key length u32][key][value length u32][value]`, all
//! little-endian. A torn or zeroed tail frame ends the segment: it was never
//! acknowledged. (Segments `<id>.log` of earlier versions have checksums over
//! the ops alone; they are replayed on open and then deleted.)
//!
//! Segments are reused. On ext4, `fdatasync` of a file that grew must commit
//! the journal, and in ordered mode that first writes out every other file's
//! dirty data — sled's, here: single syncs then took tens of milliseconds. A
//! checkpointed segment is instead kept as a spare (`wal/spare-<id>.wal`),
//! filled with zeros up to [`SEGMENT_BYTES`] once, and the next rotation
//! renames it into place, so appends overwrite blocks the file already has and
//! a sync writes data only. Frames left from its previous life never pass the
//! checksum, which covers the new id.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::log::StoreError;

/// How large a spare segment is made before it is reused; a busy second of
/// group commits writes about this much.
pub(crate) const SEGMENT_BYTES: u64 = 16 << 20;
/// How many spare segments are kept; the rest are deleted.
const SPARES: usize = 2;
const SPARE_PREFIX: &str = "spare-";

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
    /// Bytes appended to the open segment.
    written: u64,
}

impl Wal {
    /// Starts a new segment after any that exist. Its id is above every id a
    /// segment or spare ever had here, so no frame left in a spare can pass
    /// its checksum.
    pub(crate) fn create(dir: &Path, sync: bool) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let last_segment = segments(dir)?.last().map_or(0, |(id, _, _)| *id);
        let last_spare = spares(dir)?.iter().filter_map(|path| spare_id(path)).max().unwrap_or(0);
        let id = last_segment.max(last_spare) + 1;
        let file = open_segment(dir, id, sync)?;
        Ok(Self { dir: dir.to_owned(), file, id, sync, frame: Vec::new(), written: 0 })
    }

    /// Appends the batches as frames and makes them durable with one `fdatasync`.
    pub(crate) fn append<'a>(
        &mut self,
        batches: impl Iterator<Item = &'a WalBatch>,
    ) -> io::Result<()> {
        self.frame.clear();
        for batch in batches.filter(|batch| !batch.is_empty()) {
            self.frame.extend_from_slice(&(batch.ops.len() as u32).to_le_bytes());
            self.frame.extend_from_slice(&frame_crc(Some(self.id), &batch.ops).to_le_bytes());
            self.frame.extend_from_slice(&batch.ops);
        }
        if self.frame.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.frame)?;
        self.written += self.frame.len() as u64;
        if self.sync {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Whether the open segment holds as much as a spare: past it, appends
    /// would grow the file again.
    pub(crate) fn is_full(&self) -> bool {
        self.written >= SEGMENT_BYTES
    }

    /// Moves appends to a fresh segment; returns the segments before it, which
    /// may be deleted once sled holds their content durably.
    pub(crate) fn rotate(&mut self) -> Result<Vec<PathBuf>, StoreError> {
        let next = self.id + 1;
        self.file = open_segment(&self.dir, next, self.sync)?;
        self.id = next;
        self.written = 0;
        Ok(segments(&self.dir)?
            .into_iter()
            .filter(|(id, _, _)| *id < next)
            .map(|(_, path, _)| path)
            .collect())
    }
}

/// Opens segment `id` for appending: a spare renamed into place (written from
/// its start), or a new empty file.
fn open_segment(dir: &Path, id: u64, sync: bool) -> Result<File, StoreError> {
    let path = dir.join(format!("{id:020}.wal"));
    let file = match spares(dir)?.into_iter().next() {
        Some(spare) => {
            std::fs::rename(&spare, &path)?;
            OpenOptions::new().write(true).open(&path)?
        }
        None => OpenOptions::new().create(true).append(true).open(&path)?,
    };
    if sync {
        // The segment's name must be durable before anything in it counts.
        File::open(dir)?.sync_all()?;
    }
    Ok(file)
}

/// Keeps segments whose content sled now holds durably as spares, up to
/// [`SPARES`] of them, each zero-filled to [`SEGMENT_BYTES`]; deletes the rest.
/// Runs off the commit path (the checkpointer's thread).
pub(crate) fn retire(covered: &[PathBuf]) -> Result<(), StoreError> {
    for path in covered {
        let Some(dir) = path.parent() else { continue };
        let spare = path.file_name().and_then(|name| name.to_str()).and_then(|name| {
            name.ends_with(".wal").then(|| dir.join(format!("{SPARE_PREFIX}{name}")))
        });
        let result = match spare {
            // An empty segment (a run that wrote nothing, such as `verify`)
            // is not worth 16 MiB of zeros.
            Some(spare) if spares(dir)?.len() < SPARES && !is_empty_file(path) => {
                prepare_spare(path, &spare)
            }
            _ => std::fs::remove_file(path),
        };
        match result {
            // A segment may be listed by two rotations when a checkpoint failed.
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error.into()),
            _ => {}
        }
    }
    Ok(())
}

fn is_empty_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|metadata| metadata.len() == 0)
}

fn prepare_spare(segment: &Path, spare: &Path) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(segment)?;
    let length = file.metadata()?.len();
    if length < SEGMENT_BYTES {
        // Written zeros, not `set_len`: a hole or an unwritten extent would
        // still need a journal commit when it is first written.
        let mut writer = io::BufWriter::with_capacity(1 << 20, &file);
        std::io::Seek::seek(&mut writer, io::SeekFrom::Start(length))?;
        io::copy(&mut io::repeat(0).take(SEGMENT_BYTES - length), &mut writer)?;
        writer.flush()?;
    }
    file.sync_all()?;
    std::fs::rename(segment, spare)
}

/// The id a spare had as a segment (`spare-<id>.wal`).
fn spare_id(path: &Path) -> Option<u64> {
    path.file_name()?.to_str()?.strip_prefix(SPARE_PREFIX)?.strip_suffix(".wal")?.parse().ok()
}

/// The spare segments in `dir`.
fn spares(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with(SPARE_PREFIX))
        {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// The segments in `dir`, oldest first, each with whether it is of the
/// earlier format (`.log`, checksums without the id).
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf, bool)>, StoreError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else { continue };
        let (stem, legacy) = match (name.strip_suffix(".wal"), name.strip_suffix(".log")) {
            (Some(stem), _) => (stem, false),
            (None, Some(stem)) => (stem, true),
            (None, None) => continue,
        };
        if let Ok(id) = stem.parse::<u64>() {
            found.push((id, path, legacy));
        }
    }
    found.sort();
    Ok(found)
}

/// A frame's checksum: over the segment's id and the ops, or the ops alone in
/// an earlier-format segment.
fn frame_crc(id: Option<u64>, ops: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    if let Some(id) = id {
        hasher.update(&id.to_le_bytes());
    }
    hasher.update(ops);
    hasher.finalize()
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
    for (id, path, legacy) in segments(dir)? {
        let mut bytes = Vec::new();
        File::open(&path)?.read_to_end(&mut bytes)?;
        let mut rest = bytes.as_slice();
        let id = (!legacy).then_some(id);
        while let Some((ops, after)) = next_frame(id, rest) {
            apply(ops, events, intake)?;
            frames += 1;
            rest = after;
        }
        paths.push(path);
    }
    Ok((frames, paths))
}

/// The next complete, intact frame of segment `id`, or `None` at the end (a
/// torn tail, zeros, or frames of the segment's previous life).
fn next_frame(id: Option<u64>, bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let length = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    let ops = bytes.get(8..8 + length)?;
    if length == 0 || frame_crc(id, ops) != crc {
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

    #[test]
    fn a_reused_segment_replays_only_its_own_frames() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().join("wal");
        let mut wal = Wal::create(&wal_dir, true).unwrap();
        let batch = |key: &[u8], value: &[u8]| {
            let mut batch = WalBatch::default();
            batch.insert(WalTree::Events, key, value);
            batch
        };
        wal.append([&batch(b"a", b"1"), &batch(b"b", b"1")].into_iter()).unwrap();
        let first = wal.rotate().unwrap();
        retire(&first).unwrap();
        assert_eq!(spares(&wal_dir).unwrap().len(), 1);
        assert!(std::fs::metadata(&spares(&wal_dir).unwrap()[0]).unwrap().len() >= SEGMENT_BYTES);
        let second = wal.rotate().unwrap();
        assert!(spares(&wal_dir).unwrap().is_empty(), "the rotation took the spare");
        // The same length as the first frame of the segment's previous life,
        // so the second old frame, intact, follows it.
        wal.append([&batch(b"c", b"3")].into_iter()).unwrap();
        retire(&second).unwrap();

        let db = sled::Config::new().temporary(true).open().unwrap();
        let (events, intake) = (db.open_tree("e").unwrap(), db.open_tree("i").unwrap());
        let (frames, _) = replay(&wal_dir, &events, &intake).unwrap();
        assert_eq!(frames, 1);
        assert_eq!(events.get(b"c").unwrap().unwrap().as_ref(), b"3");
        assert!(events.get(b"b").unwrap().is_none(), "a frame of the old segment was replayed");
    }

    #[test]
    fn after_a_restart_a_spare_is_reused_under_a_new_id() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().join("wal");
        let batch = |key: &[u8], value: &[u8]| {
            let mut batch = WalBatch::default();
            batch.insert(WalTree::Events, key, value);
            batch
        };
        {
            let mut wal = Wal::create(&wal_dir, true).unwrap();
            wal.append([&batch(b"a", b"1"), &batch(b"b", b"1")].into_iter()).unwrap();
            let first = wal.rotate().unwrap();
            retire(&first).unwrap();
            // Opening the log replays and then deletes every segment.
            std::fs::remove_file(wal_dir.join(format!("{:020}.wal", wal.id))).unwrap();
        }
        assert_eq!(spares(&wal_dir).unwrap().len(), 1);
        let mut wal = Wal::create(&wal_dir, true).unwrap();
        assert!(wal.id > 1, "segment 1's frames would replay from the spare");
        wal.append([&batch(b"c", b"3")].into_iter()).unwrap();

        let db = sled::Config::new().temporary(true).open().unwrap();
        let (events, intake) = (db.open_tree("e").unwrap(), db.open_tree("i").unwrap());
        assert_eq!(replay(&wal_dir, &events, &intake).unwrap().0, 1);
        assert!(events.get(b"b").unwrap().is_none());
    }

    #[test]
    fn an_empty_segment_is_deleted_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().join("wal");
        let mut wal = Wal::create(&wal_dir, true).unwrap();
        let covered = wal.rotate().unwrap();
        retire(&covered).unwrap();
        assert!(spares(&wal_dir).unwrap().is_empty());
        assert_eq!(segments(&wal_dir).unwrap().len(), 1, "only the open segment is left");
    }

    #[test]
    fn segments_of_the_earlier_format_still_replay() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().join("wal");
        std::fs::create_dir_all(&wal_dir).unwrap();
        let mut batch = WalBatch::default();
        batch.insert(WalTree::Intake, b"q", b"x");
        let mut bytes = (batch.ops.len() as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&crc32fast::hash(&batch.ops).to_le_bytes());
        bytes.extend_from_slice(&batch.ops);
        std::fs::write(wal_dir.join(format!("{:020}.log", 7)), bytes).unwrap();

        let db = sled::Config::new().temporary(true).open().unwrap();
        let (events, intake) = (db.open_tree("e").unwrap(), db.open_tree("i").unwrap());
        assert_eq!(replay(&wal_dir, &events, &intake).unwrap().0, 1);
        assert_eq!(intake.get(b"q").unwrap().unwrap().as_ref(), b"x");
        // New segments number on from it.
        assert_eq!(Wal::create(&wal_dir, true).unwrap().id, 8);
    }
}
