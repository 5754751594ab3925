//! The embedded bus: the sled log itself is the bus.
//!
//! Appends go straight to the log (one write path); subscribers are catch-up
//! subscriptions whose checkpoints are kept per consumer name, so a restarted
//! agent resumes after the last event it acknowledged.

use std::sync::Arc;

use async_trait::async_trait;
use bus_schema::subjects::{self, Subject};
use bus_schema::{EventEnvelope, ExpectedRevision, RecordedEvent, StreamId};
use event_store::checkpoints::Checkpoints;
use event_store::log::{AppendOutcome, StreamAppend};
use event_store::{CatchUpSubscription, EventLog};

use crate::bus::{Acker, Bus, BusError, Delivery, EventSubscription};

/// The bus of the one-process deployment.
#[derive(Clone)]
pub struct EmbeddedBus {
    log: Arc<dyn EventLog>,
    checkpoints: Checkpoints,
}

impl EmbeddedBus {
    pub fn new(log: Arc<dyn EventLog>, checkpoints: Checkpoints) -> Self {
        Self { log, checkpoints }
    }

    /// A bus over the in-memory log, for tests.
    pub fn in_memory() -> Self {
        Self::new(Arc::new(event_store::MemoryEventLog::new()), Checkpoints::in_memory())
    }

    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }
}

#[async_trait]
impl Bus for EmbeddedBus {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedRevision,
        events: Vec<EventEnvelope>,
    ) -> Result<AppendOutcome, BusError> {
        Ok(self.log.append(stream, expected, events).await?)
    }

    async fn append_many(
        &self,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<Result<AppendOutcome, BusError>>, BusError> {
        let outcomes = self.log.append_many(appends).await?;
        Ok(outcomes.into_iter().map(|outcome| outcome.map_err(BusError::from)).collect())
    }

    async fn read_stream(&self, stream: &StreamId) -> Result<Vec<RecordedEvent>, BusError> {
        Ok(self.log.read_stream(stream, 0, usize::MAX)?)
    }

    async fn stream_revision(&self, stream: &StreamId) -> Result<u64, BusError> {
        Ok(self.log.stream_revision(stream)?)
    }

    async fn subscribe(
        &self,
        consumer: &str,
        filter: &Subject,
    ) -> Result<Box<dyn EventSubscription>, BusError> {
        let checkpoint = self.checkpoints.get(consumer)?;
        Ok(Box::new(EmbeddedSubscription {
            inner: CatchUpSubscription::new(self.log.clone(), checkpoint),
            filter: filter.clone(),
            acker: Arc::new(CheckpointAcker {
                checkpoints: self.checkpoints.clone(),
                consumer: consumer.to_owned(),
            }),
        }))
    }
}

struct EmbeddedSubscription {
    inner: CatchUpSubscription,
    filter: Subject,
    acker: Arc<CheckpointAcker>,
}

#[async_trait]
impl EventSubscription for EmbeddedSubscription {
    async fn next(&mut self) -> Result<Option<Delivery>, BusError> {
        while let Some(event) = self.inner.next().await? {
            if subjects::matches(
                self.filter.as_str(),
                subjects::event(&event.envelope.stream).as_str(),
            ) {
                return Ok(Some(Delivery::new(event, Box::new(self.acker.clone()))));
            }
        }
        Ok(None)
    }
}

struct CheckpointAcker {
    checkpoints: Checkpoints,
    consumer: String,
}

#[async_trait]
impl Acker for Arc<CheckpointAcker> {
    async fn ack(&self, position: u64) -> Result<(), BusError> {
        Ok(self.checkpoints.advance(&self.consumer, position)?)
    }
}
