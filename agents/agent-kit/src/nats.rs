//! The bus on NATS JetStream.
//!
//! Canonical events live in the stream `CRM_EVENTS` (subjects `crm.evt.>`, file
//! storage, no deletes, no purges). An append publishes each event to its
//! stream's subject with `Nats-Msg-Id` = event id (deduplication inside the
//! stream's duplicate window) and `Nats-Expected-Last-Subject-Sequence` = the
//! expected revision (optimistic concurrency), and returns once JetStream has
//! acknowledged it. The global position of an event is its stream sequence.
//!
//! JetStream 2.9 has no atomic multi-message publish: events of one append are
//! published one after the other, each chained on the previous one's sequence, so
//! a concurrent writer can never interleave, but a failure part-way leaves the
//! first events appended. Agents append one decision at a time.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, context::PublishErrorKind, stream};
use async_trait::async_trait;
use bus_schema::subjects::{self, Subject};
use bus_schema::{EventEnvelope, ExpectedRevision, RecordedEvent, StreamId};
use event_store::log::AppendOutcome;
use futures::StreamExt;

use crate::bus::{Acker, Bus, BusError, Delivery, EventSubscription};

/// How to reach NATS and how the streams are set up.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    pub url: String,
    /// Credentials of this service's NATS user (see `deploy/nats/`).
    pub user: Option<(String, String)>,
    /// The name this connection shows in the server's monitoring.
    pub client_name: String,
    /// Prefix of this connection's reply subjects. `None`: `_INBOX_<user>` for
    /// a named user (so the server can keep each user's replies to itself),
    /// NATS's default `_INBOX` without one.
    pub inbox_prefix: Option<String>,
    /// How long a request (a JetStream publish's acknowledgement, an API call)
    /// may wait before it fails as unavailable.
    pub request_timeout: Duration,
    /// `Nats-Msg-Id` deduplication window of `CRM_EVENTS` (the event-store's own
    /// index keeps idempotency forever).
    pub duplicate_window: Duration,
    /// How often a consumer gets a message before it is given up.
    pub max_deliver: i64,
    /// Waits between redeliveries.
    pub backoff: Vec<Duration>,
}

impl NatsOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            user: None,
            client_name: "agentcrm".into(),
            inbox_prefix: None,
            request_timeout: Duration::from_secs(5),
            duplicate_window: Duration::from_secs(120),
            max_deliver: 10,
            backoff: vec![Duration::from_secs(1), Duration::from_secs(5), Duration::from_secs(30)],
        }
    }
}

/// The bus of the distributed deployment.
#[derive(Clone)]
pub struct NatsBus {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    events: stream::Stream,
    options: NatsOptions,
}

impl NatsBus {
    /// The reply-inbox prefix this connection uses (see
    /// [`NatsOptions::inbox_prefix`]).
    pub fn inbox_prefix(options: &NatsOptions) -> Result<Option<String>, BusError> {
        if let Some(prefix) = &options.inbox_prefix {
            return Ok(Some(prefix.clone()));
        }
        match &options.user {
            Some((user, _)) => Ok(Some(subjects::inbox_prefix(user)?)),
            None => Ok(None),
        }
    }

    /// Connects and makes sure `CRM_EVENTS` exists.
    pub async fn connect(options: NatsOptions) -> Result<Self, BusError> {
        let connect_error = |reason: String| BusError::Connect { url: options.url.clone(), reason };
        let mut connect = async_nats::ConnectOptions::new()
            .name(&options.client_name)
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(options.request_timeout));
        if let Some((user, password)) = &options.user {
            connect = connect.user_and_password(user.clone(), password.clone());
        }
        if let Some(prefix) = Self::inbox_prefix(&options)? {
            connect = connect.custom_inbox_prefix(prefix);
        }
        let client = connect
            .connect(options.url.as_str())
            .await
            .map_err(|error| connect_error(error.to_string()))?;
        let mut jetstream = jetstream::new(client.clone());
        // Bounds every JetStream call, a publish's acknowledgement included:
        // while the server is away, callers fail as unavailable instead of
        // hanging.
        jetstream.set_timeout(options.request_timeout);
        let events = jetstream
            .get_or_create_stream(stream::Config {
                name: subjects::EVENTS_STREAM.to_owned(),
                subjects: vec![subjects::all_events().into_string()],
                storage: stream::StorageType::File,
                duplicate_window: options.duplicate_window,
                deny_delete: true,
                deny_purge: true,
                allow_direct: true,
                ..Default::default()
            })
            .await
            .map_err(|error| {
                connect_error(format!("cannot set up stream {}: {error}", subjects::EVENTS_STREAM))
            })?;
        Ok(Self { client, jetstream, events, options })
    }

    /// Every event after position `after`, in strict stream order, then the live
    /// tail: an ordered consumer that the caller's own checkpoint positions.
    ///
    /// This is what the event-store service reads. A durable consumer with acks
    /// would redeliver an unacknowledged message only after newer ones (after a
    /// crash, say), which would break the log's total order; the store's own
    /// head is a checkpoint that moves exactly when an event is durable.
    pub async fn follow(&self, after: u64) -> Result<OrderedEvents, BusError> {
        let deliver_policy = if after == 0 {
            consumer::DeliverPolicy::All
        } else {
            consumer::DeliverPolicy::ByStartSequence { start_sequence: after + 1 }
        };
        let consumer = self
            .events
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: subjects::all_events().into_string(),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|error| BusError::Unavailable(error.to_string()))?;
        let messages =
            consumer.messages().await.map_err(|error| BusError::Unavailable(error.to_string()))?;
        Ok(OrderedEvents { messages })
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Fails fast while the client is not connected. The client would queue a
    /// publish until it reconnects and deliver it after the caller had already
    /// been told it failed; refusing it up front keeps "unavailable" meaning
    /// "not written" except for a disconnect in the instant between this check
    /// and the publish (which deduplication by event id makes harmless to retry).
    pub fn ensure_connected(&self) -> Result<(), BusError> {
        ensure_connected(&self.client)
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    async fn publish(
        &self,
        event: &EventEnvelope,
        expected_last: Option<u64>,
    ) -> Result<jetstream::publish::PublishAck, BusError> {
        let mut headers = HeaderMap::new();
        headers.insert(subjects::HEADER_MSG_ID, event.event_id.to_string().as_str());
        headers.insert(subjects::HEADER_EVENT_TYPE, event.event_type());
        if let Some(sequence) = expected_last {
            headers.insert(
                subjects::HEADER_EXPECTED_LAST_SUBJECT_SEQUENCE,
                sequence.to_string().as_str(),
            );
        }
        let subject = subjects::event(&event.stream).into_string();
        self.ensure_connected()?;
        let ack = self
            .jetstream
            .publish_with_headers(subject, headers, event.encode().into())
            .await
            .map_err(|error| BusError::Unavailable(error.to_string()))?;
        ack.await.map_err(|error| match error.kind() {
            PublishErrorKind::WrongLastSequence => BusError::Conflict {
                stream: event.stream.clone(),
                expected: expected_last
                    .map_or(ExpectedRevision::Any, ExpectedRevision::from_revision),
                actual: 0,
            },
            _ => BusError::Unavailable(error.to_string()),
        })
    }
}

#[async_trait]
impl Bus for NatsBus {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedRevision,
        events: Vec<EventEnvelope>,
    ) -> Result<AppendOutcome, BusError> {
        EventEnvelope::validate_batch(stream, &events)?;
        if events.is_empty() {
            let actual = self.stream_revision(stream).await?;
            if !expected.is_satisfied_by(actual) {
                return Err(BusError::Conflict { stream: stream.clone(), expected, actual });
            }
        }
        let mut positions = Vec::with_capacity(events.len());
        let mut duplicates = 0;
        let mut expected_last = expected.as_last_subject_sequence();
        for event in &events {
            match self.publish(event, expected_last).await {
                Ok(ack) => {
                    duplicates += usize::from(ack.duplicate);
                    positions.push(ack.sequence);
                    expected_last = expected_last.map(|_| ack.sequence);
                }
                Err(BusError::Conflict { .. }) => {
                    let actual = self.stream_revision(stream).await?;
                    return Err(BusError::Conflict { stream: stream.clone(), expected, actual });
                }
                Err(other) => return Err(other),
            }
        }
        Ok(AppendOutcome { duplicate: !events.is_empty() && duplicates == events.len(), positions })
    }

    async fn read_stream(&self, stream: &StreamId) -> Result<Vec<RecordedEvent>, BusError> {
        self.ensure_connected()?;
        let consumer = self
            .events
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: subjects::event(stream).into_string(),
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|error| BusError::Unavailable(error.to_string()))?;
        let revision = self.stream_revision(stream).await?;
        let mut events = Vec::new();
        if revision == 0 {
            return Ok(events);
        }
        let mut messages =
            consumer.messages().await.map_err(|error| BusError::Unavailable(error.to_string()))?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(|error| BusError::Unavailable(error.to_string()))?;
            let event = decode(&message)?;
            let position = event.position;
            events.push(event);
            if position >= revision {
                break;
            }
        }
        Ok(events)
    }

    async fn stream_revision(&self, stream: &StreamId) -> Result<u64, BusError> {
        self.ensure_connected()?;
        match self.events.get_last_raw_message_by_subject(subjects::event(stream).as_str()).await {
            Ok(message) => Ok(message.sequence),
            Err(error)
                if matches!(error.kind(), stream::LastRawMessageErrorKind::NoMessageFound) =>
            {
                Ok(0)
            }
            Err(error) => Err(BusError::Unavailable(error.to_string())),
        }
    }

    async fn subscribe(
        &self,
        consumer_name: &str,
        filter: &Subject,
    ) -> Result<Box<dyn EventSubscription>, BusError> {
        bus_schema::stream::validate_id("consumer", consumer_name)?;
        let consumer: consumer::PullConsumer = self
            .events
            .get_or_create_consumer(
                consumer_name,
                consumer::pull::Config {
                    durable_name: Some(consumer_name.to_owned()),
                    filter_subject: filter.as_str().to_owned(),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(30),
                    max_deliver: self.options.max_deliver,
                    backoff: self.options.backoff.clone(),
                    max_ack_pending: 4096,
                    ..Default::default()
                },
            )
            .await
            .map_err(|error| {
                BusError::Unavailable(format!("cannot create consumer {consumer_name}: {error}"))
            })?;
        let messages =
            consumer.messages().await.map_err(|error| BusError::Unavailable(error.to_string()))?;
        Ok(Box::new(NatsSubscription { messages }))
    }
}

/// See [`NatsBus::ensure_connected`].
pub(crate) fn ensure_connected(client: &async_nats::Client) -> Result<(), BusError> {
    match client.connection_state() {
        async_nats::connection::State::Connected => Ok(()),
        _ => Err(BusError::Unavailable("not connected to NATS".into())),
    }
}

fn decode(message: &jetstream::Message) -> Result<RecordedEvent, BusError> {
    let info = message
        .info()
        .map_err(|error| BusError::Other(format!("message without JetStream info: {error}")))?;
    let position = info.stream_sequence;
    let envelope = EventEnvelope::decode(&message.payload)
        .map_err(|error| BusError::Other(format!("undecodable event at {position}: {error}")))?;
    Ok(RecordedEvent { position, envelope })
}

/// Events in stream order from [`NatsBus::follow`].
pub struct OrderedEvents {
    messages: consumer::pull::Ordered,
}

impl OrderedEvents {
    /// The next event; waits at the tail. An undecodable message is an error:
    /// the store must not skip what it cannot read.
    pub async fn next(&mut self) -> Result<Option<RecordedEvent>, BusError> {
        match self.messages.next().await {
            Some(Ok(message)) => decode(&message).map(Some),
            Some(Err(error)) => Err(BusError::Unavailable(error.to_string())),
            None => Ok(None),
        }
    }
}

struct NatsSubscription {
    messages: consumer::pull::Stream,
}

#[async_trait]
impl EventSubscription for NatsSubscription {
    async fn next(&mut self) -> Result<Option<Delivery>, BusError> {
        while let Some(message) = self.messages.next().await {
            let message = message.map_err(|error| BusError::Unavailable(error.to_string()))?;
            match decode(&message) {
                Ok(event) => {
                    return Ok(Some(Delivery::new(event, Box::new(NatsAcker { message }))));
                }
                Err(error) => {
                    // A message that can never decode would be redelivered forever:
                    // terminate it and say so loudly.
                    tracing::error!(error = %error, subject = %message.subject, "Terminating undecodable message");
                    if let Err(error) = message.ack_with(jetstream::AckKind::Term).await {
                        tracing::warn!(error = %error, "Failed to terminate an undecodable message");
                    }
                }
            }
        }
        Ok(None)
    }
}

struct NatsAcker {
    message: jetstream::Message,
}

#[async_trait]
impl Acker for NatsAcker {
    async fn ack(&self, _position: u64) -> Result<(), BusError> {
        self.message.ack().await.map_err(|error| BusError::Unavailable(error.to_string()))
    }
}
