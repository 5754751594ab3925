//! The durable event log on sled.
//!
//! Four threads share the work, so disk waits overlap with CPU work:
//! - the **writer** takes every append that is waiting, checks it (deduplication,
//!   expected revision), chains the records and writes them to sled key by key
//!   (not as a sled batch: see [`apply_in_order`]), and hands the group to the
//!   flusher;
//! - the **flusher** appends every group written so far to the write-ahead log
//!   (`wal`) and makes it durable with one `fdatasync`, then moves the durable
//!   head and answers every writer (group commit). Once a second it starts a new
//!   write-ahead segment and hands the older ones to
//! - the **checkpointer**, which runs sled's `flush()` plus an `fdatasync` of
//!   sled's data file and then deletes those segments, while group commits go on;
//! - the **indexer** writes the per-stream and `event_id` indexes afterwards, off
//!   the acknowledgement path. Until an entry is indexed it lives in an in-memory
//!   tail that readers and the writer consult first; on open, records past the
//!   index checkpoint are indexed again from the log itself.
//!
//! sled's `flush()` alone only issues `sync_file_range`, which does not survive a
//! power cut, and costs milliseconds per call; many tasks awaiting `flush_async`
//! at once deadlock sled 0.34 (sled issue #1308). Hence one flusher, a
//! write-ahead log for the per-group `fdatasync`, and sled flushes only at
//! checkpoints. On open, the write-ahead log is applied again and records past
//! the head (written to sled, never acknowledged) are dropped. A failed
//! `fdatasync` poisons the log: nothing more is accepted until it is reopened.
//!
//! Layout of the `events` tree (positions are big-endian, so keys sort by position):
//! - `L` position → the records of one block, the first at this position (see
//!   [`crate::record::pack`]; a block of one is a bare [`StoredRecord`])
//! - `H` → head position and head hash (so a removed tail is detected)
//! - `S` stream `\0` position → empty (the per-stream index)
//! - `I` event id (16 bytes) → position (the permanent idempotency index)
//! - `X` → the last position the indexes cover

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use async_trait::async_trait;
use bus_schema::{EventEnvelope, ExpectedRevision, RecordedEvent, StreamId};
use prost::Message as _;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::intake::{IntakeQueue, IntakeReceipt, IntakeState};
use crate::known_ids::KnownIds;
use crate::log::{
    AppendError, AppendOutcome, EventLog, StoreError, StreamAppend, already_stored, check_events,
};
use crate::record::{GENESIS_HASH, StoredRecord};
use crate::wal::{Wal, WalBatch, WalTree};

const RECORD: u8 = b'L';
const STREAM: u8 = b'S';
const EVENT_ID: u8 = b'I';
const HEAD: &[u8] = b"H";
const INDEXED: &[u8] = b"X";
/// The write-ahead log's directory inside the data directory.
const WAL_DIR: &str = "wal";
/// Where intake items still waiting at a checkpoint are spilled.
const INTAKE_DIR: &str = "intake";
/// How often sled's own files are made to hold everything (then the
/// write-ahead segments before are retired); sooner when a segment is full.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// Up to this many records, the event-id filter is filled before `open`
/// returns (a fraction of a second); a larger log fills it on a thread of its
/// own while it serves.
const FILL_ON_OPEN: u64 = 100_000;
/// The most requests one writer batch takes.
const MAX_BATCH: usize = 2048;
/// [`SledOptions::group_commit_interval`] by default. Each caller waits for
/// its group's gathering and sync, so a client that keeps a fixed number of
/// requests open gets through no more than that number per wait: with 64
/// webhook connections and 500 µs, a quarter of the cores stayed idle at the
/// gateway's peak, and 150 µs raised that peak by about a fifth, while the
/// p99 at half the peak went from 2.5–2.7 to 2.9–3.2 ms (docs/BENCHMARKS.md).
const DEFAULT_GROUP_COMMIT_INTERVAL: std::time::Duration = std::time::Duration::from_micros(150);
/// How long the flusher waits for one more commit while it gathers a group.
const QUIET: std::time::Duration = std::time::Duration::from_micros(150);

/// How the log is opened.
#[derive(Debug, Clone)]
pub struct SledOptions {
    /// sled's page cache, in bytes (sled's default of 1 GiB is too much for a CRM
    /// node that also runs agents).
    pub cache_capacity: u64,
    /// `fdatasync` after each group flush. Turning it off keeps `kill -9` safety
    /// (the page cache outlives the process) but not power-loss safety; only
    /// benchmarks do that.
    pub fsync: bool,
    /// Create the directory when it does not exist.
    pub create: bool,
    /// How many bytes of raw intake may wait for the masking agent before
    /// `enqueue_intake` refuses ([`AppendError::Backlog`]).
    pub intake_limit_bytes: usize,
    /// Runs on the indexer's thread when it starts. Indexing is background
    /// work (records not yet indexed are answered from memory), so a node
    /// lowers that thread's priority here, below its requests.
    pub indexer_thread_start: Option<fn()>,
    /// While commits arrive concurrently (the last group held more than
    /// one), the flusher waits up to this long for more before it syncs a
    /// group, as long as they keep coming: fewer, larger `fdatasync`s. A lone
    /// writer, or writers that all wait for the group, are not held back.
    /// 150 µs by default; zero syncs what has arrived at once.
    pub group_commit_interval: std::time::Duration,
}

impl Default for SledOptions {
    fn default() -> Self {
        Self {
            cache_capacity: 64 * 1024 * 1024,
            fsync: true,
            create: true,
            intake_limit_bytes: crate::intake::DEFAULT_LIMIT_BYTES,
            indexer_thread_start: None,
            group_commit_interval: DEFAULT_GROUP_COMMIT_INTERVAL,
        }
    }
}

/// Opens a sled database, turning sled's lock and corruption failures into clear
/// errors. Every other sled database in AgentCRM goes through here too.
pub fn open_db(path: &Path, options: &SledOptions) -> Result<sled::Db, StoreError> {
    if !options.create && !path.join("db").exists() {
        return Err(StoreError::Missing { path: path.to_owned() });
    }
    // sled releases its file lock only when its last I/O task has let go of the
    // file, a moment after the database is dropped: a reopen in the same
    // process (a restart, a test) may race it, so a lock is retried briefly.
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match try_open_db(path, options) {
            Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            result => return result,
        }
    }
}

/// How long a locked data directory is retried before it is reported.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(1500);

fn try_open_db(path: &Path, options: &SledOptions) -> Result<sled::Db, StoreError> {
    sled::Config::new()
        .path(path)
        .cache_capacity(options.cache_capacity)
        // The log checkpoints sled itself once a second (see the flusher).
        .flush_every_ms(None)
        .open()
        .map_err(|error| match error {
            sled::Error::Io(ref io) if io.to_string().contains("could not acquire lock") => {
                StoreError::Locked { path: path.to_owned() }
            }
            other => StoreError::Sled(other).in_directory(path),
        })
}

/// An event encoded by its caller, ready to be chained.
struct Prepared {
    event_id: Uuid,
    stream: StreamId,
    bytes: Vec<u8>,
}

impl Prepared {
    fn new(event: &EventEnvelope) -> Self {
        Self { event_id: event.event_id, stream: event.stream.clone(), bytes: event.encode() }
    }
}

type Answer<T> = oneshot::Sender<Result<T, AppendError>>;

enum Request {
    Append {
        stream: StreamId,
        expected: ExpectedRevision,
        events: Vec<Prepared>,
        reply: Answer<AppendOutcome>,
    },
    AppendAt {
        records: Vec<(u64, Prepared)>,
        reply: Answer<Vec<AppendOutcome>>,
    },
    AppendMany {
        appends: Vec<(StreamId, ExpectedRevision, Vec<Prepared>)>,
        reply: Answer<Vec<Result<AppendOutcome, AppendError>>>,
    },
}

/// Stream and id of records the indexer has not written yet.
#[derive(Default)]
struct Tail {
    by_id: HashMap<Uuid, u64>,
    /// Each stream's unindexed positions, ascending: records are written and
    /// indexed in log order, so the indexer removes from the front.
    by_stream: HashMap<StreamId, VecDeque<u64>>,
}

impl Tail {
    fn insert(&mut self, position: u64, stream: &StreamId, event_id: Uuid) {
        self.by_id.insert(event_id, position);
        self.by_stream.entry(stream.clone()).or_default().push_back(position);
    }

    fn remove(&mut self, position: u64, stream: &StreamId, event_id: Uuid) {
        self.by_id.remove(&event_id);
        if let Some(positions) = self.by_stream.get_mut(stream) {
            if positions.front() == Some(&position) {
                positions.pop_front();
            } else {
                positions.retain(|candidate| *candidate != position);
            }
            if positions.is_empty() {
                self.by_stream.remove(stream);
            }
        }
    }
}

/// What readers, writer, flusher and indexer share.
struct Shared {
    tree: sled::Tree,
    durable_head: AtomicU64,
    tail: Mutex<Tail>,
    poisoned: Mutex<Option<String>>,
    known: KnownIds,
}

impl Shared {
    fn tail(&self) -> MutexGuard<'_, Tail> {
        // A panic while holding the lock cannot leave the maps half-updated in a
        // way readers could misread (every update is a single insert or remove).
        self.tail.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn head(&self) -> u64 {
        self.durable_head.load(Ordering::Acquire)
    }

    /// The stream's last position at or below `limit`: the unindexed tail first
    /// (it always holds a stream's newest entries), then the index.
    fn revision_at_most(&self, stream: &StreamId, limit: u64) -> Result<u64, StoreError> {
        let from_tail = self.tail().by_stream.get(stream).and_then(|positions| {
            positions.iter().rev().find(|position| **position <= limit).copied()
        });
        match from_tail {
            Some(position) => Ok(position),
            None => stream_revision_at_most(&self.tree, stream, limit),
        }
    }

    fn position_at_most(&self, event_id: Uuid, limit: u64) -> Result<Option<u64>, StoreError> {
        if let Some(position) = self.tail().by_id.get(&event_id) {
            return Ok(Some(*position).filter(|position| *position <= limit));
        }
        if !self.known.may_contain(event_id) {
            return Ok(None);
        }
        Ok(lookup_event_id(&self.tree, event_id)?.filter(|position| *position <= limit))
    }

    fn check_poisoned(&self) -> Result<(), StoreError> {
        match self.poisoned.lock().ok().and_then(|guard| guard.clone()) {
            Some(reason) => Err(StoreError::Io(std::io::Error::other(format!(
                "the log stopped accepting writes after a failed flush ({reason}); reopen it"
            )))),
            None => Ok(()),
        }
    }
}

/// The durable, hash-chained event log.
pub struct SledEventLog {
    db: sled::Db,
    shared: Arc<Shared>,
    path: PathBuf,
    sender: Mutex<Option<mpsc::Sender<Request>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    head_watch: watch::Receiver<u64>,
    intake: Arc<IntakeState>,
    intake_watch: watch::Receiver<u64>,
    lane: Mutex<IntakeLane>,
}

/// What [`SledEventLog::stage_intake`] did with an item.
enum Staged {
    /// Handed to the flusher, with its answer.
    Sent,
    /// A repeat of an item masked already, at this position.
    Masked(u64),
}

/// Raw intake's own way to the group commit: an item is staged on the
/// caller's thread and handed straight to the flusher, so a webhook's answer
/// never queues behind the writer (the agents' appends it is busy with), and
/// costs no hop through its thread.
struct IntakeLane {
    /// The last intake sequence staged.
    last: u64,
    /// `None` once the log is closing.
    commits: Option<std::sync::mpsc::Sender<Commit>>,
}

impl SledEventLog {
    /// Opens (or creates) the log in `path`.
    pub fn open(path: &Path, options: SledOptions) -> Result<Self, StoreError> {
        let db = open_db(path, &options)?;
        Self::with_db(db, path, options)
    }

    /// Opens the log inside an already opened database (read models share it).
    pub fn with_db(db: sled::Db, path: &Path, options: SledOptions) -> Result<Self, StoreError> {
        Self::start(db, path, options).map_err(|error| error.in_directory(path))
    }

    fn start(db: sled::Db, path: &Path, options: SledOptions) -> Result<Self, StoreError> {
        let tree = db.open_tree("events")?;
        let intake_tree = db.open_tree("intake")?;
        recover(&db, path, &tree, &intake_tree)?;
        let (head, head_hash) = read_head(&tree)?;
        check_high_water_mark(path, head, &head_hash)?;
        reindex_tail(&tree, head)?;
        let data_file = if options.fsync { Some(File::open(path.join("db"))?) } else { None };
        let shared = Arc::new(Shared {
            tree: tree.clone(),
            durable_head: AtomicU64::new(head),
            tail: Mutex::new(Tail::default()),
            poisoned: Mutex::new(None),
            known: KnownIds::new(head),
        });
        let (head_sender, head_watch) = watch::channel(head);
        // Items masked before the stop are in the log (indexed above) already.
        let is_stored = |event_id| Ok(lookup_event_id(&tree, event_id)?.is_some());
        let (intake, intake_last) = IntakeState::load(
            intake_tree,
            &path.join(INTAKE_DIR),
            options.intake_limit_bytes,
            &is_stored,
        )?;
        let intake = Arc::new(intake);
        let (intake_sender, intake_watch) = watch::channel(intake_last);
        let (sender, receiver) = mpsc::channel(8192);
        let (commits, commit_receiver) = std::sync::mpsc::channel();
        let (index_sender, index_receiver) = std::sync::mpsc::channel();
        let (checkpoints, checkpoint_receiver) = std::sync::mpsc::channel();

        let lane = Mutex::new(IntakeLane { last: intake_last, commits: Some(commits.clone()) });
        let writer = Writer {
            shared: shared.clone(),
            head,
            head_hash,
            stream_revisions: HashMap::new(),
            commits,
        };
        let flusher = Flusher {
            wal: Wal::create(&path.join(WAL_DIR), options.fsync)?,
            last_checkpoint: std::time::Instant::now(),
            last_group: 0,
            interval: options.group_commit_interval,
            mark: HighWaterMark::new(path),
            shared: shared.clone(),
            head_sender,
            intake_sender,
            index_sender,
            checkpoints,
        };
        let indexer = Indexer { shared: shared.clone(), on_start: options.indexer_thread_start };
        let checkpointer = Checkpointer { db: db.clone(), data_file, intake: intake.clone() };
        let mut threads = Vec::new();
        if head <= FILL_ON_OPEN {
            shared.known.fill(&shared.tree, EVENT_ID)?;
        } else {
            let filler = shared.clone();
            threads.push(std::thread::Builder::new().name("event-log-ids".into()).spawn(
                move || {
                    let started = std::time::Instant::now();
                    match filler.known.fill(&filler.tree, EVENT_ID) {
                        Ok(()) => tracing::info!(
                            seconds = started.elapsed().as_secs_f64(),
                            "Event-id filter filled"
                        ),
                        // The index still answers every question, only slower.
                        Err(error) => {
                            tracing::warn!(error = %error, "Cannot fill the event-id filter")
                        }
                    }
                },
            )?);
        }
        threads.extend([
            std::thread::Builder::new()
                .name("event-log-writer".into())
                .spawn(move || writer.run(receiver))?,
            std::thread::Builder::new()
                .name("event-log-flusher".into())
                .spawn(move || flusher.run(commit_receiver))?,
            std::thread::Builder::new()
                .name("event-log-indexer".into())
                .spawn(move || indexer.run(index_receiver))?,
            std::thread::Builder::new()
                .name("event-log-checkpointer".into())
                .spawn(move || checkpointer.run(checkpoint_receiver))?,
        ]);
        Ok(Self {
            db,
            shared,
            path: path.to_owned(),
            sender: Mutex::new(Some(sender)),
            threads: Mutex::new(threads),
            head_watch,
            intake,
            intake_watch,
            lane,
        })
    }

    /// The durable queue of raw intake that shares this log's group commit.
    pub fn intake(&self) -> IntakeQueue {
        IntakeQueue::new(self.intake.clone(), self.intake_watch.clone())
    }

    /// Durably queues one raw intake item. With `deduplicate`, an item whose
    /// event id waits in the queue or is in the log already is not queued
    /// again (forever: the masked event carries the item's event id).
    pub async fn enqueue_intake(
        &self,
        event_id: Uuid,
        deduplicate: bool,
        item: Vec<u8>,
    ) -> Result<IntakeReceipt, AppendError> {
        self.shared.check_poisoned()?;
        let (reply, answer) = oneshot::channel();
        match self.stage_intake(event_id, deduplicate, item, reply)? {
            Staged::Sent => answer.await.map_err(|_| StoreError::Closed)?,
            Staged::Masked(position) => {
                // The masked event carries this id: answered once it is durable.
                let mut head = self.head_watch.clone();
                head.wait_for(|head| *head >= position).await.map_err(|_| StoreError::Closed)?;
                Ok(IntakeReceipt { event_id, duplicate: true })
            }
        }
    }

    /// Stages one intake item (or the answer to a repeat) and hands it to the
    /// flusher, under the lane's lock so that sequences reach it in order.
    fn stage_intake(
        &self,
        event_id: Uuid,
        deduplicate: bool,
        item: Vec<u8>,
        reply: Answer<IntakeReceipt>,
    ) -> Result<Staged, AppendError> {
        let mut guard = self.lane.lock().map_err(|_| StoreError::Closed)?;
        let lane = &mut *guard;
        let commits = lane.commits.as_ref().ok_or(StoreError::Closed)?;
        // A repeat of an item that waits may not be durable yet: its answer
        // goes with the group that holds the item, or a later one.
        let duplicate = deduplicate && self.intake.is_waiting(event_id);
        if deduplicate
            && !duplicate
            && let Some(position) = self.shared.position_at_most(event_id, u64::MAX)?
        {
            return Ok(Staged::Masked(position));
        }
        let mut wal = WalBatch::default();
        if !duplicate {
            if self.intake.is_full(item.len()) {
                return Err(AppendError::Backlog { bytes: self.intake.limit() });
            }
            lane.last += 1;
            let (key, value) = self.intake.add(lane.last, event_id, item);
            wal.insert(WalTree::Intake, &key, &value);
        }
        let commit = Commit {
            wal,
            head: None,
            head_hash: None,
            intake_last: Some(lane.last),
            replies: vec![Reply::Enqueue(reply, Ok(IntakeReceipt { event_id, duplicate }))],
            index: Vec::new(),
            failure: None,
        };
        commits.send(commit).map_err(|_| StoreError::Closed)?;
        Ok(Staged::Sent)
    }

    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops taking appends, waits until everything accepted is durable and
    /// indexed, and flushes the whole database. Idempotent.
    pub fn close(&self) -> Result<(), StoreError> {
        let sender = self.sender.lock().map(|mut guard| guard.take()).unwrap_or(None);
        drop(sender);
        // The flusher stops once the writer and the intake lane let go of it.
        let lane = self.lane.lock().map(|mut lane| lane.commits.take()).unwrap_or(None);
        drop(lane);
        self.shared.known.stop();
        let threads =
            self.threads.lock().map(|mut guard| std::mem::take(&mut *guard)).unwrap_or_default();
        for thread in threads {
            // A panicking thread already failed its pending appends; closing goes on.
            let _ = thread.join();
        }
        self.db.flush()?;
        Ok(())
    }

    /// Every stored record from `from`, raw, for verification and export. Reads
    /// what is on disk, including anything past the recorded head.
    ///
    /// Each record comes with the position it is stored under: its block's key
    /// for the first record of a block, its own header's for the others.
    pub fn raw_records(
        &self,
        from: u64,
    ) -> impl Iterator<Item = Result<(u64, StoredRecord), StoreError>> + '_ {
        let start = first_block_key(&self.shared.tree, from);
        let blocks = match &start {
            Ok(start) => Some(self.shared.tree.range(start.clone()..[RECORD + 1].to_vec())),
            Err(_) => None,
        };
        let failed = start.err().map(Err).into_iter();
        let stored = blocks.into_iter().flatten().flat_map(move |entry| {
            let records = entry.map_err(StoreError::from).and_then(|(key, value)| {
                let key_position = position_from_key(&key[1..])?;
                let mut records = Vec::new();
                for (index, (position, bytes)) in
                    crate::record::unpack(key_position, &value)?.into_iter().enumerate()
                {
                    let stored_under = if index == 0 { key_position } else { position };
                    if position >= from {
                        records
                            .push((stored_under, StoredRecord::decode_bytes(stored_under, bytes)?));
                    }
                }
                Ok(records)
            });
            match records {
                Ok(records) => records.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(error) => vec![Err(error)],
            }
        });
        failed.chain(stored)
    }

    /// The head position and hash recorded with the last committed batch.
    pub fn recorded_head(&self) -> Result<(u64, [u8; 32]), StoreError> {
        read_head(&self.shared.tree)
    }

    /// Overwrites a stored record's bytes. Only for tamper-evidence tests and
    /// tooling that demonstrates `verify`.
    #[doc(hidden)]
    pub fn overwrite_record_for_test(&self, position: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let key = first_block_key(&self.shared.tree, position)?;
        let key_position = position_from_key(&key[1..])?;
        let value = self.shared.tree.get(&key)?.unwrap_or_default();
        let records: Vec<Vec<u8>> = crate::record::unpack(key_position, &value)
            .unwrap_or_default()
            .into_iter()
            .map(
                |(stored, record)| {
                    if stored == position { bytes.to_vec() } else { record.to_vec() }
                },
            )
            .collect();
        let value = if records.is_empty() { bytes.to_vec() } else { crate::record::pack(records) };
        self.shared.tree.insert(key, value)?;
        self.db.flush()?;
        Ok(())
    }

    async fn submit<T>(&self, build: impl FnOnce(Answer<T>) -> Request) -> Result<T, AppendError> {
        self.shared.check_poisoned()?;
        let sender =
            self.sender.lock().ok().and_then(|guard| guard.clone()).ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        sender.send(build(reply)).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    fn read_record(&self, position: u64) -> Result<RecordedEvent, StoreError> {
        let mut found = None;
        visit_records(&self.shared.tree, position, position, &mut |_, bytes| {
            found = Some(crate::record::decode_event(position, bytes)?);
            Ok(false)
        })?;
        found.ok_or_else(|| StoreError::Corrupt {
            position,
            reason: "indexed record is missing".into(),
        })
    }
}

impl Drop for SledEventLog {
    fn drop(&mut self) {
        if let Err(error) = self.close() {
            tracing::error!(error = %error, "Failed to close the event log cleanly");
        }
    }
}

/// Stamps and encodes events for the writer. Encoding happens here, on the
/// callers' threads, not in the single writer.
fn prepare(
    events: Vec<EventEnvelope>,
    recorded_at: chrono::DateTime<chrono::Utc>,
) -> Vec<Prepared> {
    events
        .into_iter()
        .map(|mut event| {
            event.recorded_at = recorded_at;
            Prepared::new(&event)
        })
        .collect()
}

#[async_trait]
impl EventLog for SledEventLog {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedRevision,
        events: Vec<EventEnvelope>,
    ) -> Result<AppendOutcome, AppendError> {
        check_events(stream, &events)?;
        if events.is_empty() {
            let actual = self.stream_revision(stream)?;
            if !expected.is_satisfied_by(actual) {
                return Err(AppendError::Conflict { stream: stream.clone(), expected, actual });
            }
            return Ok(AppendOutcome { positions: Vec::new(), duplicate: false });
        }
        let events = prepare(events, chrono::Utc::now());
        let stream = stream.clone();
        self.submit(|reply| Request::Append { stream, expected, events, reply }).await
    }

    /// One request to the writer for every stream: the streams' events share
    /// a group commit, and the caller waits for one answer.
    async fn append_many(
        &self,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<Result<AppendOutcome, AppendError>>, AppendError> {
        let recorded_at = chrono::Utc::now();
        // Streams settled here (invalid, or nothing to append) keep their
        // outcome; the rest go to the writer, and their outcomes come back in
        // order.
        let mut outcomes: Vec<Option<Result<AppendOutcome, AppendError>>> =
            Vec::with_capacity(appends.len());
        let mut submitted = Vec::new();
        for StreamAppend { stream, expected, events } in appends {
            if let Err(error) = check_events(&stream, &events) {
                outcomes.push(Some(Err(error)));
            } else if events.is_empty() {
                outcomes.push(Some(self.append(&stream, expected, events).await));
            } else {
                submitted.push((stream, expected, prepare(events, recorded_at)));
                outcomes.push(None);
            }
        }
        let mut answered = if submitted.is_empty() {
            Vec::new()
        } else {
            self.submit(|reply| Request::AppendMany { appends: submitted, reply }).await?
        }
        .into_iter();
        Ok(outcomes
            .into_iter()
            .map(|outcome| {
                outcome
                    .or_else(|| answered.next())
                    .unwrap_or_else(|| Err(StoreError::Closed.into()))
            })
            .collect())
    }

    async fn append_at(
        &self,
        records: Vec<(u64, EventEnvelope)>,
    ) -> Result<Vec<AppendOutcome>, AppendError> {
        for (_, event) in &records {
            event.validate()?;
        }
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let records =
            records.iter().map(|(position, event)| (*position, Prepared::new(event))).collect();
        self.submit(|reply| Request::AppendAt { records, reply }).await
    }

    fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let head = self.head();
        // The tail is read before the index: an entry moving from one to the other
        // in between is then seen in at least one of them.
        let mut positions: BTreeSet<u64> = self
            .shared
            .tail()
            .by_stream
            .get(stream)
            .map(|positions| {
                positions
                    .iter()
                    .copied()
                    .filter(|position| (from..=head).contains(position))
                    .collect()
            })
            .unwrap_or_default();
        let prefix = stream_prefix(stream);
        let mut start = prefix.clone();
        start.extend_from_slice(&from.to_be_bytes());
        let mut end = prefix.clone();
        end.extend_from_slice(&head.to_be_bytes());
        // Indexed entries all come before the tail's, so the first `limit` suffice.
        for entry in self.shared.tree.range(start..=end).take(limit) {
            let (key, _) = entry?;
            positions.insert(position_from_key(&key[prefix.len()..])?);
        }
        positions.into_iter().take(limit).map(|position| self.read_record(position)).collect()
    }

    fn read_all(&self, from: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let head = self.head();
        if from > head {
            return Ok(Vec::new());
        }
        let mut events = Vec::new();
        if limit == 0 {
            return Ok(events);
        }
        visit_records(&self.shared.tree, from.max(1), head, &mut |position, bytes| {
            events.push(crate::record::decode_event(position, bytes)?);
            Ok(events.len() < limit)
        })?;
        Ok(events)
    }

    /// Reads and decodes on several threads while the caller folds: workers take
    /// successive position ranges, and the caller gets them back in order.
    fn scan(
        &self,
        from: u64,
        visit: &mut dyn FnMut(RecordedEvent) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let head = self.head();
        let from = from.max(1);
        if from > head {
            return Ok(());
        }
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4);
        let ranges = (head - from) / SCAN_RANGE + 1;
        let next_range = std::sync::atomic::AtomicU64::new(0);
        let tree = &self.shared.tree;
        std::thread::scope(|scope| {
            let (decoded_sender, decoded_receiver) = std::sync::mpsc::sync_channel(workers * 2);
            for _ in 0..workers {
                let (decoded, next_range) = (decoded_sender.clone(), &next_range);
                scope.spawn(move || {
                    loop {
                        let range = next_range.fetch_add(1, Ordering::Relaxed);
                        if range >= ranges {
                            return;
                        }
                        let start = from + range * SCAN_RANGE;
                        let end = (start + SCAN_RANGE - 1).min(head);
                        if decoded.send((range, decode_range(tree, start, end))).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(decoded_sender);
            let mut waiting = std::collections::BTreeMap::new();
            let mut next = 0;
            for (range, events) in decoded_receiver {
                waiting.insert(range, events);
                while let Some(events) = waiting.remove(&next) {
                    for event in events? {
                        visit(event)?;
                    }
                    next += 1;
                }
            }
            Ok(())
        })
    }

    fn stream_revision(&self, stream: &StreamId) -> Result<u64, StoreError> {
        self.shared.revision_at_most(stream, self.head())
    }

    fn position_of(&self, event_id: Uuid) -> Result<Option<u64>, StoreError> {
        self.shared.position_at_most(event_id, self.head())
    }

    fn head(&self) -> u64 {
        self.shared.head()
    }

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.head_watch.clone()
    }
}

/// An answer held back until its batch is durable.
enum Reply {
    Append(Answer<AppendOutcome>, Result<AppendOutcome, AppendError>),
    AppendAt(Answer<Vec<AppendOutcome>>, Result<Vec<AppendOutcome>, AppendError>),
    AppendMany(
        Answer<Vec<Result<AppendOutcome, AppendError>>>,
        Result<Vec<Result<AppendOutcome, AppendError>>, AppendError>,
    ),
    Enqueue(Answer<IntakeReceipt>, Result<IntakeReceipt, AppendError>),
}

impl Reply {
    fn send(self) {
        // A caller that stopped waiting (its task was cancelled) needs no answer.
        match self {
            Self::Append(reply, result) => drop(reply.send(result)),
            Self::AppendAt(reply, result) => drop(reply.send(result)),
            Self::AppendMany(reply, result) => drop(reply.send(result)),
            Self::Enqueue(reply, result) => drop(reply.send(result)),
        }
    }

    /// Turns a success into a failure: the batch it was part of is not durable.
    fn fail(self, reason: &str) -> Self {
        let failure =
            || AppendError::Store(StoreError::Io(std::io::Error::other(reason.to_owned())));
        match self {
            Self::Append(reply, Ok(_)) => Self::Append(reply, Err(failure())),
            Self::AppendAt(reply, Ok(_)) => Self::AppendAt(reply, Err(failure())),
            // None of the request's streams is durable, whatever each one's
            // own outcome was.
            Self::AppendMany(reply, Ok(_)) => Self::AppendMany(reply, Err(failure())),
            Self::Enqueue(reply, Ok(_)) => Self::Enqueue(reply, Err(failure())),
            refused => refused,
        }
    }
}

/// Index entries of records made durable: (position, stream, event id).
type IndexEntries = Vec<(u64, StreamId, Uuid)>;

/// One writer batch on its way to the disk.
struct Commit {
    /// The batch's changes for the write-ahead log.
    wal: WalBatch,
    /// The log's head after this batch (`None` from the intake lane).
    head: Option<u64>,
    /// The chain's hash at `head`, when this batch moved it.
    head_hash: Option<[u8; 32]>,
    /// The last intake sequence staged (only from the intake lane).
    intake_last: Option<u64>,
    replies: Vec<Reply>,
    index: IndexEntries,
    /// Set when writing the batch already failed.
    failure: Option<String>,
}

/// What one writer batch has decided so far but not yet written.
#[derive(Default)]
struct Pending {
    /// The group's encoded records, in position order, with their positions.
    records: Vec<(u64, Vec<u8>)>,
    wal: WalBatch,
    replies: Vec<Reply>,
    index: IndexEntries,
}

/// The single writer: owns the tentative head while it builds a batch.
struct Writer {
    shared: Arc<Shared>,
    head: u64,
    head_hash: [u8; 32],
    stream_revisions: HashMap<StreamId, u64>,
    commits: std::sync::mpsc::Sender<Commit>,
}

impl Writer {
    fn run(mut self, mut receiver: mpsc::Receiver<Request>) {
        while let Some(first) = receiver.blocking_recv() {
            let mut requests = vec![first];
            while requests.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(request) => requests.push(request),
                    Err(_) => break,
                }
            }
            if !self.write_batch(requests) {
                break;
            }
        }
    }

    /// Stages a batch and hands it to the flusher; false once the flusher is
    /// gone.
    fn write_batch(&mut self, requests: Vec<Request>) -> bool {
        let start_head = self.head;
        let mut pending = Pending::default();
        for request in requests {
            match request {
                Request::Append { stream, expected, events, reply } => {
                    let result = self.stage_append(&mut pending, &stream, expected, events);
                    pending.replies.push(Reply::Append(reply, result));
                }
                Request::AppendAt { records, reply } => {
                    let result = self.stage_append_at(&mut pending, records);
                    pending.replies.push(Reply::AppendAt(reply, result));
                }
                Request::AppendMany { appends, reply } => {
                    let results = appends
                        .into_iter()
                        .map(|(stream, expected, events)| {
                            self.stage_append(&mut pending, &stream, expected, events)
                        })
                        .collect();
                    pending.replies.push(Reply::AppendMany(reply, Ok(results)));
                }
            }
        }
        if pending.replies.is_empty() {
            return true;
        }
        let mut failure = None;
        if self.head != start_head {
            let mut writes = blocks(pending.records);
            let mut head_value = self.head.to_be_bytes().to_vec();
            head_value.extend_from_slice(&self.head_hash);
            writes.push((HEAD.to_vec(), head_value));
            for (key, value) in &writes {
                pending.wal.insert(WalTree::Events, key, value);
            }
            if let Err(error) = apply_in_order(&self.shared.tree, writes) {
                failure = Some(error.to_string());
            }
        }
        let commit = Commit {
            wal: pending.wal,
            head_hash: (self.head != start_head).then_some(self.head_hash),
            head: Some(self.head),
            intake_last: None,
            replies: pending.replies,
            index: pending.index,
            failure,
        };
        self.commits.send(commit).is_ok()
    }

    fn known_position(&self, event_id: Uuid) -> Result<Option<u64>, StoreError> {
        // Staged entries are in the shared tail already, so one lookup covers
        // this batch, earlier unindexed batches and the index.
        self.shared.position_at_most(event_id, u64::MAX)
    }

    fn revision(&mut self, stream: &StreamId) -> Result<u64, StoreError> {
        if let Some(revision) = self.stream_revisions.get(stream) {
            return Ok(*revision);
        }
        let revision = self.shared.revision_at_most(stream, u64::MAX)?;
        self.stream_revisions.insert(stream.clone(), revision);
        Ok(revision)
    }

    fn stage_append(
        &mut self,
        pending: &mut Pending,
        stream: &StreamId,
        expected: ExpectedRevision,
        events: Vec<Prepared>,
    ) -> Result<AppendOutcome, AppendError> {
        let mut known = Vec::with_capacity(events.len());
        for event in &events {
            known.push((event.event_id, self.known_position(event.event_id)?));
        }
        if let Some(outcome) = already_stored(&known) {
            return outcome;
        }
        let actual = self.revision(stream)?;
        if !expected.is_satisfied_by(actual) {
            return Err(AppendError::Conflict { stream: stream.clone(), expected, actual });
        }
        let mut positions = Vec::with_capacity(events.len());
        for event in events {
            let position = self.head + 1;
            self.stage_record(pending, position, event);
            positions.push(position);
        }
        Ok(AppendOutcome { positions, duplicate: false })
    }

    fn stage_append_at(
        &mut self,
        pending: &mut Pending,
        records: Vec<(u64, Prepared)>,
    ) -> Result<Vec<AppendOutcome>, AppendError> {
        // Check the whole batch before staging any of it, so a refusal writes nothing.
        let mut outcomes = Vec::with_capacity(records.len());
        let mut head = self.head;
        let mut in_batch = HashMap::new();
        for (position, event) in &records {
            let known = match in_batch.get(&event.event_id) {
                Some(position) => Some(*position),
                None => self.known_position(event.event_id)?,
            };
            if let Some(original) = known {
                outcomes.push(AppendOutcome { positions: vec![original], duplicate: true });
                continue;
            }
            if *position <= head {
                return Err(AppendError::OutOfOrder { position: *position, head });
            }
            head = *position;
            in_batch.insert(event.event_id, *position);
            outcomes.push(AppendOutcome { positions: vec![*position], duplicate: false });
        }
        for ((position, event), outcome) in records.into_iter().zip(&outcomes) {
            if !outcome.duplicate {
                // Make sure the stream's revision is cached before it moves.
                self.revision(&event.stream)?;
                self.stage_record(pending, position, event);
            }
        }
        Ok(outcomes)
    }

    fn stage_record(&mut self, pending: &mut Pending, position: u64, event: Prepared) {
        let record = StoredRecord::seal(position, self.head_hash, event.bytes);
        let hash = record.hash;
        pending.records.push((position, record.encode()));
        // Into the filter before the tail: a reader that misses the tail
        // after the indexer emptied it then sees the filter's bits.
        self.shared.known.insert(event.event_id);
        self.shared.tail().insert(position, &event.stream, event.event_id);
        self.stream_revisions.insert(event.stream.clone(), position);
        pending.index.push((position, event.stream, event.event_id));
        self.head = position;
        self.head_hash = hash;
    }
}

/// Makes written batches durable and answers their writers.
struct Flusher {
    wal: Wal,
    last_checkpoint: std::time::Instant,
    /// How many commits the last group held.
    last_group: usize,
    interval: std::time::Duration,
    mark: HighWaterMark,
    shared: Arc<Shared>,
    head_sender: watch::Sender<u64>,
    intake_sender: watch::Sender<u64>,
    index_sender: std::sync::mpsc::Sender<IndexEntries>,
    /// Write-ahead segments that a checkpoint may delete once sled is
    /// durable, with the last intake sequence they hold.
    checkpoints: std::sync::mpsc::Sender<(Vec<PathBuf>, u64)>,
}

impl Flusher {
    fn run(mut self, commits: std::sync::mpsc::Receiver<Commit>) {
        self.run_until_closed(&commits);
        self.finish();
    }

    fn run_until_closed(&mut self, commits: &std::sync::mpsc::Receiver<Commit>) {
        while let Ok(first) = commits.recv() {
            // Everything written so far goes to disk with one flush and one sync.
            let mut group = vec![first];
            self.gather(commits, &mut group);
            self.last_group = group.len();
            // Once poisoned, nothing written after the failure may be acknowledged.
            let mut failure = self
                .shared
                .poisoned
                .lock()
                .ok()
                .and_then(|guard| guard.clone())
                .or_else(|| group.iter().find_map(|commit| commit.failure.clone()));
            if failure.is_none()
                && let Err(error) = self.wal.append(group.iter().map(|commit| &commit.wal))
            {
                failure = Some(error.to_string());
            }
            if let Some(reason) = failure {
                tracing::error!(reason = %reason, "Group commit failed; the log stops accepting writes");
                if let Ok(mut poisoned) = self.shared.poisoned.lock() {
                    poisoned.get_or_insert(reason.clone());
                }
                for commit in group {
                    for reply in commit.replies {
                        reply.fail(&reason).send();
                    }
                }
                continue;
            }
            // The writer's commits come in order, and so do the intake lane's.
            if let Some(head) = group.iter().rev().find_map(|commit| commit.head) {
                self.shared.durable_head.store(head, Ordering::Release);
                self.head_sender.send_replace(head);
                if let Some(hash) = group.iter().rev().find_map(|commit| commit.head_hash) {
                    self.mark.record(head, hash);
                }
            }
            if let Some(intake_last) = group.iter().rev().find_map(|commit| commit.intake_last) {
                self.intake_sender.send_replace(intake_last);
            }
            for commit in group {
                for reply in commit.replies {
                    reply.send();
                }
                if !commit.index.is_empty() {
                    // The indexer outlives the flusher (it is dropped after us).
                    let _ = self.index_sender.send(commit.index);
                }
            }
            if (self.last_checkpoint.elapsed() >= CHECKPOINT_EVERY || self.wal.is_full())
                && let Err(error) = self.checkpoint()
            {
                tracing::warn!(error = %error, "Rotating the write-ahead log failed");
            }
        }
    }

    /// Adds the commits waiting to the group. After a group of several, it
    /// also waits for more, for up to the group commit interval, while they
    /// keep coming: it stops once none came for [`QUIET`], as when every
    /// writer waits for this very group.
    fn gather(&self, commits: &std::sync::mpsc::Receiver<Commit>, group: &mut Vec<Commit>) {
        group.extend(commits.try_iter());
        if self.last_group <= 1 {
            return;
        }
        let deadline = std::time::Instant::now() + self.interval;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            // Sleeping and then taking what came, rather than waiting on the
            // channel: a sender to a receiver that is not waiting wakes no
            // thread, so a busy group costs a few wake-ups, not one per commit.
            std::thread::sleep(left.min(QUIET));
            let before = group.len();
            group.extend(commits.try_iter());
            if group.len() == before {
                return;
            }
        }
    }

    fn finish(&mut self) {
        if let Err(error) = self.checkpoint() {
            tracing::error!(error = %error, "Rotating the write-ahead log at close failed");
        }
        self.mark.flush_last();
    }

    /// Starts a new write-ahead segment and hands the older ones to the
    /// checkpointer. The log's records they hold are in sled's memory already
    /// (the writer applies a group before the flusher sees it); intake items
    /// up to the last durable sequence that still wait, the checkpointer
    /// spills to a file first.
    fn checkpoint(&mut self) -> Result<(), StoreError> {
        self.last_checkpoint = std::time::Instant::now();
        let covered = self.wal.rotate()?;
        let intake_last = *self.intake_sender.borrow();
        // The checkpointer lives until the flusher is gone.
        let _ = self.checkpoints.send((covered, intake_last));
        Ok(())
    }
}

/// Spills waiting intake items to a file, makes sled's files durable and
/// retires the write-ahead segments they now cover (kept as spares or
/// deleted), on its own thread: sled's `flush()` takes tens of milliseconds
/// under load, and group commits go on meanwhile. On close it finishes the
/// last checkpoint before the log is closed.
struct Checkpointer {
    db: sled::Db,
    data_file: Option<File>,
    intake: Arc<IntakeState>,
}

impl Checkpointer {
    fn run(self, rotations: std::sync::mpsc::Receiver<(Vec<PathBuf>, u64)>) {
        while let Ok((mut covered, mut intake_last)) = rotations.recv() {
            for (more, last) in rotations.try_iter() {
                covered.extend(more);
                intake_last = last;
            }
            if let Err(error) = self.checkpoint(&covered, intake_last) {
                // The write-ahead log still holds everything: nothing is lost,
                // it only grows until a checkpoint succeeds.
                tracing::warn!(error = %error, "Checkpoint of the event log failed");
            }
        }
    }

    fn checkpoint(&self, covered: &[PathBuf], intake_last: u64) -> Result<(), StoreError> {
        // Items still waiting leave the write-ahead log with these segments.
        self.intake.spill(intake_last)?;
        self.db.flush()?;
        if let Some(file) = &self.data_file {
            file.sync_data()?;
        }
        crate::wal::retire(covered)
    }
}

/// Writes the stream and event-id indexes of durable records.
struct Indexer {
    shared: Arc<Shared>,
    on_start: Option<fn()>,
}

/// Indexed entries the indexer drops from the tail per hold of its lock: the
/// writer takes the same lock for every group, and an indexer running below
/// the writer's priority must not keep it waiting long if it is preempted.
const TAIL_REMOVALS_PER_LOCK: usize = 64;

impl Indexer {
    fn run(self, entries: std::sync::mpsc::Receiver<IndexEntries>) {
        if let Some(on_start) = self.on_start {
            on_start();
        }
        while let Ok(first) = entries.recv() {
            let mut group = first;
            for more in entries.try_iter() {
                group.extend(more);
            }
            if let Err(error) = write_index(&self.shared.tree, &group) {
                // The entries stay in the tail (still correct for readers) and are
                // indexed again from the log on the next open.
                tracing::error!(error = %error, "Failed to write the log's indexes");
                continue;
            }
            for chunk in group.chunks(TAIL_REMOVALS_PER_LOCK) {
                let mut tail = self.shared.tail();
                for (position, stream, event_id) in chunk {
                    tail.remove(*position, stream, *event_id);
                }
            }
        }
    }
}

/// How many positions one scan worker reads at a time.
const SCAN_RANGE: u64 = 256;

fn decode_range(tree: &sled::Tree, start: u64, end: u64) -> Result<Vec<RecordedEvent>, StoreError> {
    // Sized up front: sled's iterator gives no size hint, and growing by doubling
    // copies the events and asks the allocator for fresh pages again and again.
    let mut events = Vec::with_capacity(usize::try_from(end - start + 1).unwrap_or(0));
    visit_records(tree, start, end, &mut |position, bytes| {
        events.push(crate::record::decode_event(position, bytes)?);
        Ok(true)
    })?;
    Ok(events)
}

/// Applies what the write-ahead log holds and sled may have lost, makes sled
/// durable, and drops records past the head (written to sled but never made
/// durable by the write-ahead log, so never acknowledged).
fn recover(
    db: &sled::Db,
    path: &Path,
    tree: &sled::Tree,
    intake: &sled::Tree,
) -> Result<(), StoreError> {
    let (frames, segments) = crate::wal::replay(&path.join(WAL_DIR), tree, intake)?;
    let (head, _) = read_head(tree)?;
    let unacknowledged: Vec<_> =
        tree.range(record_key(head + 1)..[RECORD + 1].to_vec()).keys().collect::<Result<_, _>>()?;
    for key in &unacknowledged {
        tree.remove(key)?;
    }
    // A group is one block or several, each written whole: none straddles the
    // head. Should one ever do, its records past the head go too.
    let last = first_block_key(tree, head)?;
    if let Some(value) = tree.get(&last)? {
        let records = crate::record::unpack(position_from_key(&last[1..])?, &value)?;
        if records.iter().any(|(position, _)| *position > head) {
            let kept: Vec<Vec<u8>> = records
                .into_iter()
                .filter(|(position, _)| *position <= head)
                .map(|(_, record)| record.to_vec())
                .collect();
            if kept.is_empty() {
                tree.remove(&last)?;
            } else {
                tree.insert(&last, crate::record::pack(kept))?;
            }
        }
    }
    if frames > 0 || !unacknowledged.is_empty() {
        tracing::info!(
            frames,
            dropped = unacknowledged.len(),
            "Recovered the event log from its write-ahead log"
        );
        db.flush()?;
        File::open(path.join("db"))?.sync_data()?;
    }
    // sled now holds what they held (flushed above when they held anything).
    crate::wal::retire(&segments)
}

/// A small file beside sled's that remembers how far the log was durable.
///
/// sled recovers a damaged data file by truncating at the first bad page, and a
/// file of garbage opens as an empty database: without this mark, a damaged log
/// would look like a short or empty one. Written at most once a second and at
/// close (write, then rename), always after the data it describes is durable.
struct HighWaterMark {
    path: PathBuf,
    state: Mutex<MarkState>,
}

struct MarkState {
    last_written: std::time::Instant,
    pending: Option<(u64, [u8; 32])>,
}

const MARK_FILE: &str = "agentcrm-log-head";
const MARK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl HighWaterMark {
    fn new(dir: &Path) -> Self {
        let state = MarkState { last_written: std::time::Instant::now(), pending: None };
        Self { path: dir.join(MARK_FILE), state: Mutex::new(state) }
    }

    fn record(&self, head: u64, hash: [u8; 32]) {
        let Ok(mut state) = self.state.lock() else { return };
        state.pending = Some((head, hash));
        if state.last_written.elapsed() >= MARK_EVERY {
            state.last_written = std::time::Instant::now();
            if let Some((head, hash)) = state.pending.take() {
                self.write(head, &hash);
            }
        }
    }

    fn flush_last(&self) {
        let pending = self.state.lock().ok().and_then(|mut state| state.pending.take());
        if let Some((head, hash)) = pending {
            self.write(head, &hash);
        }
    }

    fn write(&self, head: u64, hash: &[u8; 32]) {
        let temporary = self.path.with_extension("tmp");
        let result = std::fs::write(&temporary, format!("{head} {}\n", hex::encode(hash)))
            .and_then(|()| std::fs::rename(&temporary, &self.path));
        if let Err(error) = result {
            tracing::warn!(error = %error, "Could not record the log's high-water mark");
        }
    }
}

/// Refuses to open a log that ends before the position its high-water mark says
/// was durable, or whose hash there differs: its files are damaged.
fn check_high_water_mark(dir: &Path, head: u64, head_hash: &[u8; 32]) -> Result<(), StoreError> {
    let Ok(text) = std::fs::read_to_string(dir.join(MARK_FILE)) else { return Ok(()) };
    let mut parts = text.split_whitespace();
    let marked = parts.next().and_then(|position| position.parse::<u64>().ok());
    let marked_hash = parts.next();
    let Some(marked) = marked else {
        return Err(StoreError::Damaged {
            path: dir.to_owned(),
            reason: format!("unreadable {MARK_FILE}"),
        });
    };
    if marked > head {
        return Err(StoreError::Damaged {
            path: dir.to_owned(),
            reason: format!("the log ends at position {head} but position {marked} was durable"),
        });
    }
    if marked == head && marked_hash.is_some_and(|hash| hash != hex::encode(head_hash)) {
        return Err(StoreError::Damaged {
            path: dir.to_owned(),
            reason: format!(
                "the record at the head ({head}) differs from the one recorded as durable"
            ),
        });
    }
    Ok(())
}

/// Writes one group's keys one by one, in order, the last key last.
///
/// Not a sled batch: sled 0.34 seals and writes its I/O buffer twice for every
/// `apply_batch` (and wakes every thread of its I/O pool each time), which cost
/// more than the rest of a webhook's path. Atomicity comes from elsewhere: the
/// write-ahead log re-applies every durable group in full on open, and sled
/// recovers a prefix of its writes, so what a crash can leave is the head of an
/// unacknowledged group without its last key (the log's `H` head, the intake's
/// `N` and delivery keys, the indexes' `X`), which recovery drops or redoes.
fn apply_in_order(tree: &sled::Tree, writes: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), StoreError> {
    for (key, value) in writes {
        tree.insert(key, value)?;
    }
    Ok(())
}

fn write_index(tree: &sled::Tree, entries: &[(u64, StreamId, Uuid)]) -> Result<(), StoreError> {
    let Some(last) = entries.iter().map(|(position, _, _)| *position).max() else { return Ok(()) };
    let mut writes = Vec::with_capacity(entries.len() * 2 + 1);
    for (position, stream, event_id) in entries {
        let mut stream_key = stream_prefix(stream);
        stream_key.extend_from_slice(&position.to_be_bytes());
        writes.push((stream_key, Vec::new()));
        writes.push((event_id_key(*event_id), position.to_be_bytes().to_vec()));
    }
    // The index checkpoint last: entries past it are indexed again on open.
    writes.push((INDEXED.to_vec(), last.to_be_bytes().to_vec()));
    apply_in_order(tree, writes)
}

/// Indexes the records between the index checkpoint and the head, which a crash
/// may have left unindexed. Runs before the log accepts anything.
fn reindex_tail(tree: &sled::Tree, head: u64) -> Result<(), StoreError> {
    let indexed = match tree.get(INDEXED)? {
        Some(value) => position_from_key(&value)?,
        None => 0,
    };
    if indexed >= head {
        return Ok(());
    }
    let mut entries = Vec::new();
    visit_records(tree, indexed + 1, head, &mut |position, bytes| {
        let record = StoredRecord::decode_bytes(position, bytes)?;
        let envelope = bus_schema::proto::Envelope::decode(record.envelope.as_slice())
            .map_err(|error| StoreError::Corrupt { position, reason: error.to_string() })?;
        let stream = envelope.stream.parse().map_err(|error: bus_schema::ValidationError| {
            StoreError::Corrupt { position, reason: error.to_string() }
        })?;
        let event_id = Uuid::parse_str(&envelope.event_id)
            .map_err(|error| StoreError::Corrupt { position, reason: error.to_string() })?;
        entries.push((position, stream, event_id));
        Ok(true)
    })?;
    tracing::info!(records = entries.len(), "Indexing records left unindexed by the last stop");
    write_index(tree, &entries)
}

/// The most records one stored block holds, and the most bytes (unless one
/// record alone is larger). sled 0.34 keeps up to 17 keys in a leaf and moves a
/// leaf of more than 128 KiB out to a file of its own, which costs a file per
/// write and read: 17 blocks of 3 KiB stay well inside a leaf.
const BLOCK_RECORDS: usize = 16;
const BLOCK_BYTES: usize = 3 * 1024;

/// A group's records as the writes that store them: blocks of consecutive
/// records, each under the key of its first.
fn blocks(records: Vec<(u64, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut writes = Vec::new();
    let mut block: Vec<Vec<u8>> = Vec::new();
    let (mut first, mut bytes) = (0, 0);
    for (position, record) in records {
        let full = block.len() == BLOCK_RECORDS || bytes + record.len() > BLOCK_BYTES;
        if !block.is_empty() && full {
            writes.push((record_key(first), crate::record::pack(std::mem::take(&mut block))));
        }
        if block.is_empty() {
            (first, bytes) = (position, 0);
        }
        bytes += record.len();
        block.push(record);
    }
    if !block.is_empty() {
        writes.push((record_key(first), crate::record::pack(block)));
    }
    writes
}

/// The key of the block that holds `position` (the last block starting at or
/// before it), or `position`'s own key when no block starts that early.
fn first_block_key(tree: &sled::Tree, position: u64) -> Result<Vec<u8>, StoreError> {
    match tree.range(record_key(0)..=record_key(position)).next_back() {
        Some(entry) => Ok(entry?.0.to_vec()),
        None => Ok(record_key(position)),
    }
}

/// Sees one stored record (its position and bytes); `false` stops the walk.
type RecordVisitor<'a> = dyn FnMut(u64, &[u8]) -> Result<bool, StoreError> + 'a;

/// Calls `visit` with each stored record whose position lies in `from..=to`,
/// in order, until it returns `false`.
fn visit_records(
    tree: &sled::Tree,
    from: u64,
    to: u64,
    visit: &mut RecordVisitor<'_>,
) -> Result<(), StoreError> {
    if from > to {
        return Ok(());
    }
    for entry in tree.range(first_block_key(tree, from)?..=record_key(to)) {
        let (key, value) = entry?;
        for (position, bytes) in crate::record::unpack(position_from_key(&key[1..])?, &value)? {
            if position > to {
                return Ok(());
            }
            if position >= from && !visit(position, bytes)? {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn record_key(position: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(9);
    key.push(RECORD);
    key.extend_from_slice(&position.to_be_bytes());
    key
}

fn event_id_key(event_id: Uuid) -> Vec<u8> {
    let mut key = Vec::with_capacity(17);
    key.push(EVENT_ID);
    key.extend_from_slice(event_id.as_bytes());
    key
}

fn stream_prefix(stream: &StreamId) -> Vec<u8> {
    let text = stream.to_string();
    let mut key = Vec::with_capacity(text.len() + 10);
    key.push(STREAM);
    key.extend_from_slice(text.as_bytes());
    key.push(0);
    key
}

fn position_from_key(bytes: &[u8]) -> Result<u64, StoreError> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        position: 0,
        reason: "malformed position key".into(),
    })?;
    Ok(u64::from_be_bytes(array))
}

fn lookup_event_id(tree: &sled::Tree, event_id: Uuid) -> Result<Option<u64>, StoreError> {
    tree.get(event_id_key(event_id))?.map(|value| position_from_key(&value)).transpose()
}

fn stream_revision_at_most(
    tree: &sled::Tree,
    stream: &StreamId,
    head: u64,
) -> Result<u64, StoreError> {
    let prefix = stream_prefix(stream);
    let mut end = prefix.clone();
    end.extend_from_slice(&head.to_be_bytes());
    match tree.range(prefix.clone()..=end).next_back() {
        Some(entry) => position_from_key(&entry?.0[prefix.len()..]),
        None => Ok(0),
    }
}

fn read_head(tree: &sled::Tree) -> Result<(u64, [u8; 32]), StoreError> {
    match tree.get(HEAD)? {
        None => Ok((0, GENESIS_HASH)),
        Some(value) if value.len() == 40 => {
            let position = position_from_key(&value[..8])?;
            let mut hash = [0; 32];
            hash.copy_from_slice(&value[8..]);
            Ok((position, hash))
        }
        Some(_) => Err(StoreError::Corrupt { position: 0, reason: "malformed head record".into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(name: &str) -> StreamId {
        StreamId::customer(name).unwrap_or_else(|error| panic!("{error}"))
    }

    #[test]
    fn the_tail_forgets_indexed_positions_in_order_and_out_of_order() {
        let (a, b) = (stream("cus_a"), stream("cus_b"));
        let ids: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        let mut tail = Tail::default();
        for (position, id) in (1..=5).zip(&ids) {
            tail.insert(position, if position % 2 == 0 { &b } else { &a }, *id);
        }
        tail.remove(1, &a, ids[0]);
        tail.remove(2, &b, ids[1]);
        assert_eq!(tail.by_stream[&a], [3, 5]);
        assert_eq!(tail.by_stream[&b], [4]);
        // Out of order (an indexer write that failed leaves its entries).
        tail.remove(5, &a, ids[4]);
        assert_eq!(tail.by_stream[&a], [3]);
        tail.remove(3, &a, ids[2]);
        tail.remove(4, &b, ids[3]);
        assert!(tail.by_stream.is_empty());
        assert!(tail.by_id.is_empty());
    }
}
