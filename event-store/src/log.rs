//! The event log contract shared by every implementation.

use std::path::PathBuf;

use async_trait::async_trait;
use bus_schema::{EventEnvelope, ExpectedRevision, RecordedEvent, StreamId, ValidationError};
use tokio::sync::watch;
use uuid::Uuid;

/// Why the log could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("data directory {path} is already opened by another process")]
    Locked { path: PathBuf },
    #[error("data directory {path} does not exist")]
    Missing { path: PathBuf },
    #[error("storage failure: {0}")]
    Sled(#[from] sled::Error),
    #[error("I/O failure: {0}")]
    Io(#[from] std::io::Error),
    #[error("the data files in {path} are damaged: {reason}")]
    Damaged { path: PathBuf, reason: String },
    #[error("record at position {position} is corrupt: {reason}")]
    Corrupt { position: u64, reason: String },
    #[error("the log is closed")]
    Closed,
}

impl StoreError {
    /// Names sled's corruption reports for what they are: damaged data files.
    pub fn in_directory(self, path: &std::path::Path) -> Self {
        match self {
            Self::Sled(error @ sled::Error::Corruption { .. }) => {
                Self::Damaged { path: path.to_owned(), reason: error.to_string() }
            }
            other => other,
        }
    }
}

/// Why an append was refused. Nothing was written in any case.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Optimistic concurrency: the stream moved on since the writer read it.
    #[error("stream {stream} is at revision {actual}, expected {expected}")]
    Conflict { stream: StreamId, expected: ExpectedRevision, actual: u64 },
    /// Some, but not all, of the events were appended before under these ids.
    #[error("events were partially appended before: {event_id} exists, others do not")]
    PartialDuplicate { event_id: Uuid },
    /// An event does not belong to the stream it is appended to, or is invalid.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// A replicated event's position is not after the log's head.
    #[error("position {position} is not after the head {head}")]
    OutOfOrder { position: u64, head: u64 },
    /// The intake holds as many bytes as it may keep waiting; nothing was
    /// queued. Retry once the masking agent has caught up.
    #[error("the intake backlog is full ({bytes} bytes wait for masking)")]
    Backlog { bytes: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AppendError {
    /// The stream's actual revision, when this is a conflict.
    pub fn actual_revision(&self) -> Option<u64> {
        match self {
            Self::Conflict { actual, .. } => Some(*actual),
            _ => None,
        }
    }
}

/// What a successful append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    /// The global position of each event, in order.
    pub positions: Vec<u64>,
    /// True when every event was already stored: nothing was written and the
    /// original positions are returned.
    pub duplicate: bool,
}

impl AppendOutcome {
    /// The stream's revision after the append (the last event's position).
    pub fn revision(&self) -> u64 {
        self.positions.last().copied().unwrap_or(0)
    }
}

/// One stream's part of [`EventLog::append_many`].
#[derive(Debug, Clone)]
pub struct StreamAppend {
    pub stream: StreamId,
    pub expected: ExpectedRevision,
    pub events: Vec<EventEnvelope>,
}

/// An append-only, totally ordered log of events.
///
/// Positions are global, 1-based and strictly increasing (gaps are allowed where
/// positions come from JetStream). A stream's revision is the position of its
/// last event, 0 when it has none. Reads only ever see durable events.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends `events` to `stream` if its revision satisfies `expected`; returns
    /// only once they are durable. Idempotent by `event_id`: appending events that
    /// are all stored already returns their original positions and writes nothing.
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedRevision,
        events: Vec<EventEnvelope>,
    ) -> Result<AppendOutcome, AppendError>;

    /// Appends to several streams in one request, each as [`append`](Self::append)
    /// would: its own expected revision, its own outcome (a conflict on one
    /// stream leaves the others appended), all durable before this returns.
    /// The outer error means nothing was appended. For a batch that spans many
    /// streams, such as the masking agent's, a log may make this one commit
    /// rather than one request per stream.
    async fn append_many(
        &self,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<Result<AppendOutcome, AppendError>>, AppendError> {
        let mut outcomes = Vec::with_capacity(appends.len());
        for StreamAppend { stream, expected, events } in appends {
            outcomes.push(self.append(&stream, expected, events).await);
        }
        Ok(outcomes)
    }

    /// Stores events at positions chosen elsewhere (JetStream sequences, in
    /// distributed mode), in order and atomically. A known `event_id` is skipped
    /// and reported as a duplicate; any other position not after the head refuses
    /// the whole batch with [`AppendError::OutOfOrder`].
    async fn append_at(
        &self,
        records: Vec<(u64, EventEnvelope)>,
    ) -> Result<Vec<AppendOutcome>, AppendError>;

    /// Events of one stream with position >= `from`, at most `limit`.
    fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Events of every stream with position >= `from`, at most `limit`.
    fn read_all(&self, from: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Hands every durable event with position >= `from` to `visit`, in order:
    /// the fast path for replay. Implementations may decode in parallel.
    fn scan(
        &self,
        from: u64,
        visit: &mut dyn FnMut(RecordedEvent) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut next = from;
        loop {
            let page = self.read_all(next, 1024)?;
            let Some(last) = page.last().map(|event| event.position) else { return Ok(()) };
            for event in page {
                visit(event)?;
            }
            next = last + 1;
        }
    }

    /// The stream's revision (position of its last event; 0 = none).
    fn stream_revision(&self, stream: &StreamId) -> Result<u64, StoreError>;

    /// Where an event is stored, from the permanent `event_id` index.
    fn position_of(&self, event_id: Uuid) -> Result<Option<u64>, StoreError>;

    /// The position of the last durable event (0 = empty).
    fn head(&self) -> u64;

    /// Follows the durable head.
    fn watch_head(&self) -> watch::Receiver<u64>;
}

/// Idempotency of an append, given where each of its events is stored already
/// (if anywhere): all stored → the original positions, as a duplicate; some
/// stored → refused; none → `None`, go on and append.
pub(crate) fn already_stored(
    known: &[(Uuid, Option<u64>)],
) -> Option<Result<AppendOutcome, AppendError>> {
    if !known.is_empty() && known.iter().all(|(_, position)| position.is_some()) {
        let positions = known.iter().filter_map(|(_, position)| *position).collect();
        return Some(Ok(AppendOutcome { positions, duplicate: true }));
    }
    known
        .iter()
        .find(|(_, position)| position.is_some())
        .map(|(event_id, _)| Err(AppendError::PartialDuplicate { event_id: *event_id }))
}

/// Checks that every event belongs to `stream`, is valid, and is there once.
pub(crate) fn check_events(stream: &StreamId, events: &[EventEnvelope]) -> Result<(), AppendError> {
    Ok(EventEnvelope::validate_batch(stream, events)?)
}
