//! Raw intake on its way to the masking agent, in both modes.
//!
//! Embedded: the intake queue of the sled log, durable through the log's group
//! commit, idempotent by event id for good. Distributed: the JetStream work queue
//! `CRM_INGEST` on `crm.ingest.<source>`; acceptance is the PubAck.
//!
//! A submission with a delivery id (`webhook-id`) gets an event id derived from
//! source and delivery id, so a repeat yields the same id in every mode: the
//! event log's permanent `event_id` index then stores the masked event once,
//! even for a repeat that arrives after JetStream's duplicate window.

use std::sync::Arc;

use async_nats::jetstream::{self, consumer, stream};
use async_trait::async_trait;
use bus_schema::{RawIntake, subjects};
use event_store::SledEventLog;
pub use event_store::intake::IntakeLoad;
use event_store::intake::{IntakeQueue, IntakeReceipt};
use futures::StreamExt;
use uuid::Uuid;

use crate::bus::BusError;
use crate::nats::NatsBus;

/// The event id for a submission: derived when the sender gave a delivery id,
/// fresh (UUIDv7) otherwise.
pub fn intake_event_id(source: &str, delivery_id: Option<&str>) -> Uuid {
    match delivery_id {
        Some(delivery) => Uuid::new_v5(
            &Uuid::NAMESPACE_URL,
            format!("agentcrm:intake/{source}/{delivery}").as_bytes(),
        ),
        None => Uuid::now_v7(),
    }
}

/// One raw submission handed to the masking agent.
pub struct IntakeDelivery {
    pub intake: RawIntake,
    acker: Box<dyn IntakeAcker>,
}

impl IntakeDelivery {
    /// Removes the raw item: call once its masked event is durable.
    pub async fn ack(self) -> Result<(), BusError> {
        self.acker.ack().await
    }
}

#[async_trait]
trait IntakeAcker: Send + Sync {
    async fn ack(&self) -> Result<(), BusError>;
}

/// Deliveries of raw intake, oldest first.
#[async_trait]
pub trait IntakeSubscription: Send {
    async fn next(&mut self) -> Result<Option<IntakeDelivery>, BusError>;
}

/// Where the gateway puts what it accepts, and where the masking agent takes it.
#[async_trait]
pub trait Intake: Send + Sync + 'static {
    /// Durably accepts a submission; returns once it survives `kill -9`.
    async fn accept(&self, intake: RawIntake) -> Result<IntakeReceipt, BusError>;

    /// The masking agent's subscription.
    async fn subscribe(&self) -> Result<Box<dyn IntakeSubscription>, BusError>;

    /// Whether `accept` itself remembers every delivery id for good and
    /// answers a repeat as a duplicate, so a caller needs no record of its
    /// own. JetStream only deduplicates within its window.
    fn remembers_deliveries(&self) -> bool {
        false
    }

    /// How busy the intake is, where it shares the machine with the gateway
    /// and can tell cheaply (the embedded queue); `None` elsewhere.
    fn load(&self) -> Option<IntakeLoad> {
        None
    }
}

/// The embedded intake: the sled queue.
#[derive(Clone)]
pub struct EmbeddedIntake {
    log: Arc<SledEventLog>,
}

impl EmbeddedIntake {
    pub fn new(log: Arc<SledEventLog>) -> Self {
        Self { log }
    }
}

#[async_trait]
impl Intake for EmbeddedIntake {
    async fn accept(&self, intake: RawIntake) -> Result<IntakeReceipt, BusError> {
        // With a delivery id, the event id is derived from it: a repeat has
        // the same one.
        let deduplicate = intake.delivery_id.is_some();
        Ok(self.log.enqueue_intake(intake.event_id, deduplicate, intake.encode()).await?)
    }

    fn load(&self) -> Option<IntakeLoad> {
        Some(self.log.intake().load())
    }

    /// A delivery's derived event id is recognised forever: while its item
    /// waits, and in the log's event-id index after masking (see
    /// `event_store::intake`).
    fn remembers_deliveries(&self) -> bool {
        true
    }

    async fn subscribe(&self) -> Result<Box<dyn IntakeSubscription>, BusError> {
        Ok(Box::new(EmbeddedIntakeSubscription {
            queue: self.log.intake(),
            after: 0,
            buffer: Vec::new(),
        }))
    }
}

struct EmbeddedIntakeSubscription {
    queue: IntakeQueue,
    after: u64,
    buffer: Vec<(u64, Vec<u8>)>,
}

#[async_trait]
impl IntakeSubscription for EmbeddedIntakeSubscription {
    async fn next(&mut self) -> Result<Option<IntakeDelivery>, BusError> {
        loop {
            if self.buffer.is_empty() {
                let mut items = self.queue.pending(self.after, 256)?;
                items.reverse();
                self.buffer = items;
            }
            if let Some((sequence, bytes)) = self.buffer.pop() {
                self.after = sequence;
                match RawIntake::decode(&bytes) {
                    Ok(intake) => {
                        let acker = Box::new(QueueAcker { queue: self.queue.clone(), sequence });
                        return Ok(Some(IntakeDelivery { intake, acker }));
                    }
                    Err(error) => {
                        tracing::error!(error = %error, sequence, "Dropping undecodable intake item");
                        self.queue.remove(sequence)?;
                        continue;
                    }
                }
            }
            self.queue.wait_after(self.after).await;
        }
    }
}

struct QueueAcker {
    queue: IntakeQueue,
    sequence: u64,
}

#[async_trait]
impl IntakeAcker for QueueAcker {
    async fn ack(&self) -> Result<(), BusError> {
        Ok(self.queue.remove(self.sequence)?)
    }
}

/// The distributed intake: the JetStream work queue `CRM_INGEST`.
#[derive(Clone)]
pub struct NatsIntake {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    stream: stream::Stream,
}

/// The durable consumer the masking agents share.
pub const MASKING_CONSUMER: &str = "masking";

impl NatsIntake {
    /// Makes sure `CRM_INGEST` exists (work-queue retention: a message is gone
    /// once the masking agent acknowledged it).
    pub async fn connect(bus: &NatsBus) -> Result<Self, BusError> {
        let jetstream = bus.jetstream().clone();
        let stream = jetstream
            .get_or_create_stream(stream::Config {
                name: subjects::INGEST_STREAM.to_owned(),
                subjects: vec![subjects::all_ingest().into_string()],
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::WorkQueue,
                ..Default::default()
            })
            .await
            .map_err(|error| {
                BusError::Unavailable(format!("cannot set up {}: {error}", subjects::INGEST_STREAM))
            })?;
        Ok(Self { client: bus.client().clone(), jetstream, stream })
    }
}

#[async_trait]
impl Intake for NatsIntake {
    async fn accept(&self, intake: RawIntake) -> Result<IntakeReceipt, BusError> {
        let subject = subjects::ingest(&intake.source)?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(subjects::HEADER_MSG_ID, intake.event_id.to_string().as_str());
        crate::nats::ensure_connected(&self.client)?;
        let ack = self
            .jetstream
            .publish_with_headers(subject.into_string(), headers, intake.encode().into())
            .await
            .map_err(|error| BusError::Unavailable(error.to_string()))?
            .await
            .map_err(|error| BusError::Unavailable(error.to_string()))?;
        Ok(IntakeReceipt { event_id: intake.event_id, duplicate: ack.duplicate })
    }

    async fn subscribe(&self) -> Result<Box<dyn IntakeSubscription>, BusError> {
        let consumer: consumer::PullConsumer = self
            .stream
            .get_or_create_consumer(
                MASKING_CONSUMER,
                consumer::pull::Config {
                    durable_name: Some(MASKING_CONSUMER.to_owned()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    max_deliver: 10,
                    ..Default::default()
                },
            )
            .await
            .map_err(|error| BusError::Unavailable(error.to_string()))?;
        let messages =
            consumer.messages().await.map_err(|error| BusError::Unavailable(error.to_string()))?;
        Ok(Box::new(NatsIntakeSubscription { messages }))
    }
}

struct NatsIntakeSubscription {
    messages: consumer::pull::Stream,
}

#[async_trait]
impl IntakeSubscription for NatsIntakeSubscription {
    async fn next(&mut self) -> Result<Option<IntakeDelivery>, BusError> {
        while let Some(message) = self.messages.next().await {
            let message = message.map_err(|error| BusError::Unavailable(error.to_string()))?;
            match RawIntake::decode(&message.payload) {
                Ok(intake) => {
                    return Ok(Some(IntakeDelivery {
                        intake,
                        acker: Box::new(NatsIntakeAcker { message }),
                    }));
                }
                Err(error) => {
                    tracing::error!(error = %error, "Terminating undecodable intake message");
                    if let Err(error) = message.ack_with(jetstream::AckKind::Term).await {
                        tracing::warn!(error = %error, "Failed to terminate an intake message");
                    }
                }
            }
        }
        Ok(None)
    }
}

struct NatsIntakeAcker {
    message: jetstream::Message,
}

#[async_trait]
impl IntakeAcker for NatsIntakeAcker {
    async fn ack(&self) -> Result<(), BusError> {
        self.message.ack().await.map_err(|error| BusError::Unavailable(error.to_string()))
    }
}
