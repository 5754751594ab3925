//! The durable event log on sled.
//!
//! One writer thread owns every write. It takes all appends that are waiting,
//! checks them in order (deduplication, expected revision), writes them as one
//! atomic sled batch, then makes the batch durable with one `flush()` followed by
//! one `fdatasync` of sled's data file, and only then answers every writer
//! (group commit). sled's `flush()` alone only issues `sync_file_range`, which
//! does not survive a power cut; and many tasks awaiting `flush_async` at once
//! deadlock sled 0.34 (sled issue #1308), so there is exactly one flusher.
//!
//! Layout of the `events` tree (positions are big-endian, so keys sort by position):
//! - `L` position → [`StoredRecord`]
//! - `S` stream `\0` position → empty (the per-stream index)
//! - `I` event id (16 bytes) → position (the permanent idempotency index)
//! - `H` → head position and head hash (so a removed tail is detected)

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use bus_schema::{EventEnvelope, ExpectedRevision, RecordedEvent, StreamId};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::intake::{IntakeQueue, IntakeReceipt};
use crate::log::{AppendError, AppendOutcome, EventLog, StoreError, check_events};
use crate::record::{GENESIS_HASH, StoredRecord};

const RECORD: u8 = b'L';
const STREAM: u8 = b'S';
const EVENT_ID: u8 = b'I';
const HEAD: &[u8] = b"H";
/// The most requests one group commit takes.
const MAX_BATCH: usize = 2048;

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
}

impl Default for SledOptions {
    fn default() -> Self {
        Self { cache_capacity: 64 * 1024 * 1024, fsync: true, create: true }
    }
}

/// Opens a sled database, turning sled's lock and corruption failures into clear
/// errors. Every other sled database in AgentCRM goes through here too.
pub fn open_db(path: &Path, options: &SledOptions) -> Result<sled::Db, StoreError> {
    if !options.create && !path.join("db").exists() {
        return Err(StoreError::Missing { path: path.to_owned() });
    }
    sled::Config::new().path(path).cache_capacity(options.cache_capacity).open().map_err(|error| {
        match error {
            sled::Error::Io(ref io) if io.to_string().contains("could not acquire lock") => {
                StoreError::Locked { path: path.to_owned() }
            }
            other => StoreError::Sled(other),
        }
    })
}

/// The durable, hash-chained event log.
pub struct SledEventLog {
    db: sled::Db,
    tree: sled::Tree,
    path: PathBuf,
    sender: Mutex<Option<mpsc::Sender<Request>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    durable_head: Arc<AtomicU64>,
    head_watch: watch::Receiver<u64>,
    intake_tree: sled::Tree,
    intake_watch: watch::Receiver<u64>,
}

enum Request {
    Append {
        stream: StreamId,
        expected: ExpectedRevision,
        events: Vec<EventEnvelope>,
        reply: oneshot::Sender<Result<AppendOutcome, AppendError>>,
    },
    Enqueue {
        event_id: Uuid,
        dedupe_key: Option<Vec<u8>>,
        item: Vec<u8>,
        reply: oneshot::Sender<Result<IntakeReceipt, AppendError>>,
    },
    AppendAt {
        records: Vec<(u64, EventEnvelope)>,
        reply: oneshot::Sender<Result<Vec<AppendOutcome>, AppendError>>,
    },
}

impl SledEventLog {
    /// Opens (or creates) the log in `path`.
    pub fn open(path: &Path, options: SledOptions) -> Result<Self, StoreError> {
        let db = open_db(path, &options)?;
        Self::with_db(db, path, options)
    }

    /// Opens the log inside an already opened database (read models share it).
    pub fn with_db(db: sled::Db, path: &Path, options: SledOptions) -> Result<Self, StoreError> {
        let tree = db.open_tree("events")?;
        let (head, head_hash) = read_head(&tree)?;
        let data_file = if options.fsync { Some(File::open(path.join("db"))?) } else { None };
        let durable_head = Arc::new(AtomicU64::new(head));
        let (head_sender, head_watch) = watch::channel(head);
        let (sender, receiver) = mpsc::channel(8192);
        let intake_tree = db.open_tree("intake")?;
        let intake_last = crate::intake::last_sequence(&intake_tree)?;
        let (intake_sender, intake_watch) = watch::channel(intake_last);
        let writer = Writer {
            intake: intake_tree.clone(),
            intake_last,
            intake_sender,
            db: db.clone(),
            tree: tree.clone(),
            data_file,
            head,
            head_hash,
            stream_revisions: HashMap::new(),
            durable_head: durable_head.clone(),
            head_sender,
        };
        let handle = std::thread::Builder::new()
            .name("event-log-writer".into())
            .spawn(move || writer.run(receiver))?;
        Ok(Self {
            db,
            tree,
            path: path.to_owned(),
            sender: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(handle)),
            durable_head,
            head_watch,
            intake_tree,
            intake_watch,
        })
    }

    /// The durable queue of raw intake that shares this log's group commit.
    pub fn intake(&self) -> IntakeQueue {
        IntakeQueue::new(self.intake_tree.clone(), self.intake_watch.clone())
    }

    /// Durably queues one raw intake item; idempotent by `dedupe_key` (forever).
    pub async fn enqueue_intake(
        &self,
        event_id: Uuid,
        dedupe_key: Option<Vec<u8>>,
        item: Vec<u8>,
    ) -> Result<IntakeReceipt, AppendError> {
        self.submit(|reply| Request::Enqueue { event_id, dedupe_key, item, reply }).await
    }

    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops taking appends, waits for the writer to make everything durable, and
    /// flushes the whole database. Idempotent.
    pub fn close(&self) -> Result<(), StoreError> {
        let sender = self.sender.lock().map(|mut guard| guard.take()).unwrap_or(None);
        drop(sender);
        let handle = self.writer.lock().map(|mut guard| guard.take()).unwrap_or(None);
        if let Some(handle) = handle {
            // A panicking writer already failed its pending appends; closing goes on.
            let _ = handle.join();
        }
        self.db.flush()?;
        Ok(())
    }

    /// Every stored record from `from`, raw, for verification and export. Reads
    /// what is on disk, including anything past the recorded head.
    pub fn raw_records(
        &self,
        from: u64,
    ) -> impl Iterator<Item = Result<(u64, StoredRecord), StoreError>> + '_ {
        self.tree.range(record_key(from)..[RECORD + 1].to_vec()).map(|entry| {
            let (key, value) = entry?;
            let position = position_from_key(&key[1..])?;
            Ok((position, StoredRecord::decode_bytes(position, &value)?))
        })
    }

    /// The head position and hash recorded with the last committed batch.
    pub fn recorded_head(&self) -> Result<(u64, [u8; 32]), StoreError> {
        read_head(&self.tree)
    }

    /// Overwrites a stored record's bytes. Only for tamper-evidence tests and
    /// tooling that demonstrates `verify`.
    #[doc(hidden)]
    pub fn overwrite_record_for_test(&self, position: u64, bytes: &[u8]) -> Result<(), StoreError> {
        self.tree.insert(record_key(position), bytes)?;
        self.db.flush()?;
        Ok(())
    }

    async fn submit<T>(
        &self,
        build: impl FnOnce(oneshot::Sender<Result<T, AppendError>>) -> Request,
    ) -> Result<T, AppendError> {
        let sender =
            self.sender.lock().ok().and_then(|guard| guard.clone()).ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        sender.send(build(reply)).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

impl Drop for SledEventLog {
    fn drop(&mut self) {
        if let Err(error) = self.close() {
            tracing::error!(error = %error, "Failed to close the event log cleanly");
        }
    }
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
        let stream = stream.clone();
        self.submit(|reply| Request::Append { stream, expected, events, reply }).await
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
        self.submit(|reply| Request::AppendAt { records, reply }).await
    }

    fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let head = self.head();
        let prefix = stream_prefix(stream);
        let mut start = prefix.clone();
        start.extend_from_slice(&from.to_be_bytes());
        let mut events = Vec::new();
        for entry in self.tree.range(start..) {
            let (key, _) = entry?;
            if !key.starts_with(&prefix) || events.len() >= limit {
                break;
            }
            let position = position_from_key(&key[prefix.len()..])?;
            if position > head {
                break;
            }
            events.push(self.read_record(position)?);
        }
        Ok(events)
    }

    fn read_all(&self, from: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let head = self.head();
        if from > head {
            return Ok(Vec::new());
        }
        let mut events = Vec::new();
        for entry in self.tree.range(record_key(from.max(1))..=record_key(head)) {
            if events.len() >= limit {
                break;
            }
            let (key, value) = entry?;
            let position = position_from_key(&key[1..])?;
            events.push(StoredRecord::decode_bytes(position, &value)?.to_event()?);
        }
        Ok(events)
    }

    fn stream_revision(&self, stream: &StreamId) -> Result<u64, StoreError> {
        stream_revision_at_most(&self.tree, stream, self.head())
    }

    fn position_of(&self, event_id: Uuid) -> Result<Option<u64>, StoreError> {
        let head = self.head();
        Ok(lookup_event_id(&self.tree, event_id)?.filter(|position| *position <= head))
    }

    fn head(&self) -> u64 {
        self.durable_head.load(Ordering::Acquire)
    }

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.head_watch.clone()
    }
}

impl SledEventLog {
    fn read_record(&self, position: u64) -> Result<RecordedEvent, StoreError> {
        let bytes = self.tree.get(record_key(position))?.ok_or_else(|| StoreError::Corrupt {
            position,
            reason: "indexed record is missing".into(),
        })?;
        StoredRecord::decode_bytes(position, &bytes)?.to_event()
    }
}

/// The single writer: owns the tentative head while it builds a batch.
struct Writer {
    db: sled::Db,
    tree: sled::Tree,
    data_file: Option<File>,
    head: u64,
    head_hash: [u8; 32],
    stream_revisions: HashMap<StreamId, u64>,
    durable_head: Arc<AtomicU64>,
    head_sender: watch::Sender<u64>,
    intake: sled::Tree,
    intake_last: u64,
    intake_sender: watch::Sender<u64>,
}

/// What one batch has decided so far but not yet written.
#[derive(Default)]
struct Pending {
    batch: sled::Batch,
    intake_batch: sled::Batch,
    intake_keys: HashMap<Vec<u8>, Uuid>,
    event_ids: HashMap<Uuid, u64>,
    replies: Vec<Reply>,
}

/// An answer held back until the batch is durable.
enum Reply {
    Append(oneshot::Sender<Result<AppendOutcome, AppendError>>, Result<AppendOutcome, AppendError>),
    AppendAt(
        oneshot::Sender<Result<Vec<AppendOutcome>, AppendError>>,
        Result<Vec<AppendOutcome>, AppendError>,
    ),
    Enqueue(
        oneshot::Sender<Result<IntakeReceipt, AppendError>>,
        Result<IntakeReceipt, AppendError>,
    ),
}

impl Reply {
    fn send(self) {
        // A writer that stopped waiting (its task was cancelled) needs no answer.
        match self {
            Self::Append(reply, result) => drop(reply.send(result)),
            Self::AppendAt(reply, result) => drop(reply.send(result)),
            Self::Enqueue(reply, result) => drop(reply.send(result)),
        }
    }

    /// Turns a success into a failure: the batch it was part of did not commit.
    fn fail(self, error: &StoreError) -> Self {
        let failure =
            || AppendError::Store(StoreError::Io(std::io::Error::other(error.to_string())));
        match self {
            Self::Append(reply, Ok(_)) => Self::Append(reply, Err(failure())),
            Self::AppendAt(reply, Ok(_)) => Self::AppendAt(reply, Err(failure())),
            Self::Enqueue(reply, Ok(_)) => Self::Enqueue(reply, Err(failure())),
            refused => refused,
        }
    }
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
            self.commit(requests);
        }
        if let Err(error) = self.db.flush() {
            tracing::error!(error = %error, "Final flush of the event log failed");
        }
    }

    fn commit(&mut self, requests: Vec<Request>) {
        let (start_head, start_hash, start_intake) = (self.head, self.head_hash, self.intake_last);
        let mut pending = Pending::default();
        for request in requests {
            match request {
                Request::Append { stream, expected, events, reply } => {
                    let result = self.stage_append(&mut pending, &stream, expected, events);
                    pending.replies.push(Reply::Append(reply, result));
                }
                Request::Enqueue { event_id, dedupe_key, item, reply } => {
                    let result = self.stage_enqueue(&mut pending, event_id, dedupe_key, item);
                    pending.replies.push(Reply::Enqueue(reply, result));
                }
                Request::AppendAt { records, reply } => {
                    let result = self.stage_append_at(&mut pending, records);
                    pending.replies.push(Reply::AppendAt(reply, result));
                }
            }
        }
        let wrote_events = self.head != start_head;
        let wrote_intake = self.intake_last != start_intake;
        let durable = if wrote_events || wrote_intake {
            self.write(
                wrote_events.then_some(pending.batch),
                wrote_intake.then_some(pending.intake_batch),
            )
        } else {
            Ok(())
        };
        match durable {
            Ok(()) => {
                self.durable_head.store(self.head, Ordering::Release);
                self.head_sender.send_replace(self.head);
                self.intake_sender.send_replace(self.intake_last);
                for reply in pending.replies {
                    reply.send();
                }
            }
            Err(error) => {
                tracing::error!(error = %error, "Group commit failed; failing its appends");
                // The batch may or may not have reached the tree: take the head
                // from what is there.
                (self.head, self.head_hash) =
                    read_head(&self.tree).unwrap_or((start_head, start_hash));
                self.stream_revisions.clear();
                self.intake_last =
                    crate::intake::last_sequence(&self.intake).unwrap_or(start_intake);
                for reply in pending.replies {
                    reply.fail(&error).send();
                }
            }
        }
    }

    fn write(
        &mut self,
        events: Option<sled::Batch>,
        intake: Option<sled::Batch>,
    ) -> Result<(), StoreError> {
        if let Some(mut batch) = events {
            let mut head_value = self.head.to_be_bytes().to_vec();
            head_value.extend_from_slice(&self.head_hash);
            batch.insert(HEAD, head_value);
            self.tree.apply_batch(batch)?;
        }
        if let Some(batch) = intake {
            self.intake.apply_batch(batch)?;
        }
        self.db.flush()?;
        if let Some(file) = &self.data_file {
            file.sync_data()?;
        }
        Ok(())
    }

    fn known_position(&self, pending: &Pending, event_id: Uuid) -> Result<Option<u64>, StoreError> {
        match pending.event_ids.get(&event_id) {
            Some(position) => Ok(Some(*position)),
            None => lookup_event_id(&self.tree, event_id),
        }
    }

    fn revision(&mut self, stream: &StreamId) -> Result<u64, StoreError> {
        if let Some(revision) = self.stream_revisions.get(stream) {
            return Ok(*revision);
        }
        let revision = stream_revision_at_most(&self.tree, stream, u64::MAX)?;
        self.stream_revisions.insert(stream.clone(), revision);
        Ok(revision)
    }

    fn stage_append(
        &mut self,
        pending: &mut Pending,
        stream: &StreamId,
        expected: ExpectedRevision,
        events: Vec<EventEnvelope>,
    ) -> Result<AppendOutcome, AppendError> {
        let mut known = Vec::with_capacity(events.len());
        for event in &events {
            known.push((event.event_id, self.known_position(pending, event.event_id)?));
        }
        if known.iter().all(|(_, position)| position.is_some()) {
            let positions = known.iter().filter_map(|(_, position)| *position).collect();
            return Ok(AppendOutcome { positions, duplicate: true });
        }
        if let Some((event_id, _)) = known.iter().find(|(_, position)| position.is_some()) {
            return Err(AppendError::PartialDuplicate { event_id: *event_id });
        }
        let actual = self.revision(stream)?;
        if !expected.is_satisfied_by(actual) {
            return Err(AppendError::Conflict { stream: stream.clone(), expected, actual });
        }
        let recorded_at = chrono::Utc::now();
        let mut positions = Vec::with_capacity(events.len());
        for mut event in events {
            event.recorded_at = recorded_at;
            let position = self.head + 1;
            self.stage_record(pending, position, &event);
            positions.push(position);
        }
        Ok(AppendOutcome { positions, duplicate: false })
    }

    fn stage_append_at(
        &mut self,
        pending: &mut Pending,
        records: Vec<(u64, EventEnvelope)>,
    ) -> Result<Vec<AppendOutcome>, AppendError> {
        // Check the whole batch before staging any of it, so a refusal writes nothing.
        let mut outcomes = Vec::with_capacity(records.len());
        let mut head = self.head;
        let mut in_batch = HashMap::new();
        for (position, event) in &records {
            let known = match in_batch.get(&event.event_id) {
                Some(position) => Some(*position),
                None => self.known_position(pending, event.event_id)?,
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
        for ((position, event), outcome) in records.iter().zip(&outcomes) {
            if !outcome.duplicate {
                // Make sure the stream's revision is cached before it moves.
                self.revision(&event.stream)?;
                self.stage_record(pending, *position, event);
            }
        }
        Ok(outcomes)
    }

    fn stage_enqueue(
        &mut self,
        pending: &mut Pending,
        event_id: Uuid,
        dedupe_key: Option<Vec<u8>>,
        item: Vec<u8>,
    ) -> Result<IntakeReceipt, AppendError> {
        if let Some(key) = &dedupe_key {
            let known = match pending.intake_keys.get(key) {
                Some(original) => Some(*original),
                None => crate::intake::lookup_delivery(&self.intake, key)?,
            };
            if let Some(original) = known {
                return Ok(IntakeReceipt { event_id: original, duplicate: true });
            }
        }
        self.intake_last += 1;
        crate::intake::stage(
            &mut pending.intake_batch,
            self.intake_last,
            event_id,
            dedupe_key.as_deref(),
            item,
        );
        if let Some(key) = dedupe_key {
            pending.intake_keys.insert(key, event_id);
        }
        Ok(IntakeReceipt { event_id, duplicate: false })
    }

    fn stage_record(&mut self, pending: &mut Pending, position: u64, event: &EventEnvelope) {
        let record = StoredRecord::seal(position, self.head_hash, event.encode());
        let hash = record.computed_hash();
        pending.batch.insert(record_key(position), prost::Message::encode_to_vec(&record));
        let mut stream_key = stream_prefix(&event.stream);
        stream_key.extend_from_slice(&position.to_be_bytes());
        pending.batch.insert(stream_key, Vec::new());
        pending.batch.insert(event_id_key(event.event_id), position.to_be_bytes().to_vec());
        pending.event_ids.insert(event.event_id, position);
        self.stream_revisions.insert(event.stream.clone(), position);
        self.head = position;
        self.head_hash = hash;
    }
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
