//! The bus contract shared by the embedded and the NATS implementation.

use async_trait::async_trait;
use bus_schema::subjects::Subject;
use bus_schema::{EventEnvelope, ExpectedRevision, RecordedEvent, StreamId, ValidationError};
use event_store::StoreError;
pub use event_store::log::StreamAppend;
use event_store::log::{AppendError, AppendOutcome};

/// Why a bus operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Optimistic concurrency: reload, decide again, retry.
    #[error("stream {stream} is at revision {actual}, expected {expected}")]
    Conflict { stream: StreamId, expected: ExpectedRevision, actual: u64 },
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The log or NATS cannot take writes now; nothing was written. Retry later.
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// The intake holds as much as it may keep waiting; nothing was queued.
    /// Retry once the masking agent has caught up.
    #[error("{0}")]
    Backlog(String),
    #[error("could not connect to NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Other(String),
}

impl BusError {
    pub fn actual_revision(&self) -> Option<u64> {
        match self {
            Self::Conflict { actual, .. } => Some(*actual),
            _ => None,
        }
    }
}

impl From<AppendError> for BusError {
    fn from(error: AppendError) -> Self {
        match error {
            AppendError::Conflict { stream, expected, actual } => {
                Self::Conflict { stream, expected, actual }
            }
            AppendError::Invalid(error) => Self::Invalid(error),
            AppendError::Store(StoreError::Closed) => {
                Self::Unavailable("the event log is closed".into())
            }
            AppendError::Store(error) => Self::Store(error),
            error @ AppendError::Backlog { .. } => Self::Backlog(error.to_string()),
            other => Self::Other(other.to_string()),
        }
    }
}

/// One event handed to a subscriber; it comes again unless acknowledged.
pub struct Delivery {
    pub event: RecordedEvent,
    acker: Box<dyn Acker>,
}

impl Delivery {
    pub fn new(event: RecordedEvent, acker: Box<dyn Acker>) -> Self {
        Self { event, acker }
    }

    /// Acknowledges: the consumer has durably done what this event asked.
    pub async fn ack(self) -> Result<(), BusError> {
        self.acker.ack(self.event.position).await
    }
}

/// How a delivery is acknowledged; implemented by each bus.
#[async_trait]
pub trait Acker: Send + Sync {
    async fn ack(&self, position: u64) -> Result<(), BusError>;
}

/// A durable, ordered stream of deliveries for one named consumer.
#[async_trait]
pub trait EventSubscription: Send {
    /// The next delivery; waits at the tail. `None` once the bus is closed.
    async fn next(&mut self) -> Result<Option<Delivery>, BusError>;
}

/// The event bus. Both implementations give `ExpectedRevision` the same meaning:
/// a stream's revision is the global position of its last event (0 = none).
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Appends events to one stream, durably, if its revision matches.
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedRevision,
        events: Vec<EventEnvelope>,
    ) -> Result<AppendOutcome, BusError>;

    /// Appends to several streams, each with its own expected revision and
    /// outcome (see [`EventLog::append_many`](event_store::EventLog::append_many)).
    /// The outer error means nothing was appended.
    async fn append_many(
        &self,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<Result<AppendOutcome, BusError>>, BusError> {
        // Streams are independent: their appends may run side by side.
        let appends =
            appends.into_iter().map(|StreamAppend { stream, expected, events }| async move {
                self.append(&stream, expected, events).await
            });
        Ok(futures::future::join_all(appends).await)
    }

    /// Every event of one stream, in order.
    async fn read_stream(&self, stream: &StreamId) -> Result<Vec<RecordedEvent>, BusError>;

    /// The stream's revision (position of its last event; 0 = none).
    async fn stream_revision(&self, stream: &StreamId) -> Result<u64, BusError>;

    /// A durable subscription: a consumer named `consumer` resumes after the last
    /// event it acknowledged, and receives only events whose subject matches
    /// `filter`.
    async fn subscribe(
        &self,
        consumer: &str,
        filter: &Subject,
    ) -> Result<Box<dyn EventSubscription>, BusError>;
}
