//! The masking agent: raw intake in, masked canonical events out.
//!
//! For each raw submission from [`Intake::subscribe`] (the sled queue embedded,
//! `CRM_INGEST` on NATS) the agent
//!
//! 1. reads the webhook with the shared contract ([`parse_webhook`]);
//! 2. resolves the customer: the given `customer_id`, or the customer whose
//!    email the vault knows, or a new id derived from the email (then a
//!    `CustomerRegistered` with a tokenized profile goes first);
//! 3. masks the text with the customer's token table and known names;
//! 4. flushes the vault once per batch, so every token the events hold can be
//!    restored after a crash;
//! 5. appends with `event_id` = the intake's id (a redelivery appends nothing:
//!    the log answers `duplicate`), streams in parallel, each stream in order;
//! 6. acknowledges the raw item, which deletes it.
//!
//! Transient failures are retried with backoff until shutdown; an item that
//! can never become an event is logged (masked) and dropped. Raw text never
//! reaches a log line: messages about an item carry ids, field names and
//! masked text only.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agent_kit::bus::{Bus, BusError, StreamAppend};
use agent_kit::intake::{Intake, IntakeDelivery, IntakeLoad, IntakeSubscription};
use agent_kit::shutdown::Shutdown;
use agent_kit::vault::ProfileFields;
use bus_schema::webhook::{CustomerRef, parse_webhook};
use bus_schema::{
    CustomerRegistered, EventEnvelope, EventPayload, ExpectedRevision, RawIntake, StreamId,
};
use futures::FutureExt;
use uuid::Uuid;

use crate::detect::Detector;
use crate::service::{MaskingVault, ServiceError};
use crate::token::TokenTable;
use crate::vault::VaultError;

/// The producer name in derived event ids and the agent's actor id.
pub const AGENT_NAME: &str = "masking";

/// Items taken from the intake in one batch (one vault flush per batch).
pub const DEFAULT_BATCH: usize = 256;

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The arrival rate is taken over the samples of this last stretch…
const RATE_WINDOW: Duration = Duration::from_secs(1);
/// …once they span at least this much.
const RATE_MIN_SPAN: Duration = Duration::from_millis(200);
/// How often the intake's load is sampled while the agent waits.
const LOAD_POLL: Duration = Duration::from_millis(50);

/// How the agent leaves the machine to the gateway during a burst of
/// webhooks, where the intake shares the machine ([`Intake::load`]; the
/// embedded node). While webhooks arrive faster than `above_per_second`, the
/// agent masks nothing: every accepted webhook waits, durable, in the intake.
/// It masks again once the rate falls, once it has waited `max_wait` (it
/// then masks until it has caught up before it waits again), or once the
/// waiting webhooks fill half the intake's limit. Masking competes with
/// ingest for the same cores; deferred, it runs after the burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BurstYield {
    pub above_per_second: u64,
    pub max_wait: Duration,
}

/// Samples of the intake's load, and whether the agent owes a catch-up.
#[derive(Default)]
struct BurstWatch {
    /// (when, accepted) over the last [`RATE_WINDOW`].
    samples: VecDeque<(Instant, u64)>,
    /// Set when a wait ran out; cleared by a batch that came back short.
    catching_up: bool,
}

impl BurstWatch {
    /// Records a sample; returns the arrival rate per second once the samples
    /// span [`RATE_MIN_SPAN`].
    fn rate(&mut self, now: Instant, accepted: u64) -> Option<f64> {
        while self.samples.front().is_some_and(|(when, _)| now.duration_since(*when) > RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        self.samples.push_back((now, accepted));
        let (since, from) = *self.samples.front()?;
        let span = now.duration_since(since);
        (span >= RATE_MIN_SPAN).then(|| accepted.saturating_sub(from) as f64 / span.as_secs_f64())
    }
}

/// Counters of one agent, read with [`Metrics::snapshot`].
#[derive(Debug, Default)]
pub struct Metrics {
    intake_received: AtomicU64,
    events_appended: AtomicU64,
    duplicates: AtomicU64,
    intake_dropped: AtomicU64,
    entities_masked: AtomicU64,
    customers_registered: AtomicU64,
    retries: AtomicU64,
    burst_waits: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Raw items taken from the intake (redeliveries included).
    pub intake_received_total: u64,
    /// Canonical events written (not counting duplicates).
    pub events_appended_total: u64,
    /// Items whose event was stored already (redeliveries).
    pub duplicates_total: u64,
    /// Items that could never become an event, dropped after logging.
    pub intake_dropped_total: u64,
    /// Detected values replaced by tokens.
    pub entities_masked_total: u64,
    /// New customers registered from an email.
    pub customers_registered_total: u64,
    /// Transient failures retried.
    pub retries_total: u64,
    /// Times the agent waited out a burst of webhooks ([`BurstYield`]).
    pub burst_waits_total: u64,
}

impl Metrics {
    pub fn snapshot(&self) -> MetricsSnapshot {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        MetricsSnapshot {
            intake_received_total: read(&self.intake_received),
            events_appended_total: read(&self.events_appended),
            duplicates_total: read(&self.duplicates),
            intake_dropped_total: read(&self.intake_dropped),
            entities_masked_total: read(&self.entities_masked),
            customers_registered_total: read(&self.customers_registered),
            retries_total: read(&self.retries),
            burst_waits_total: read(&self.burst_waits),
        }
    }

    fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }
}

/// What one raw item becomes.
enum Prepared {
    /// Events for one customer stream: an optional registration, then the
    /// interaction or activity.
    Append { stream: StreamId, events: Vec<EventEnvelope> },
    /// Never an event; the reason is masked text.
    Drop { reason: String },
}

/// A delivery and the events it becomes, waiting to be appended.
type Pending = (IntakeDelivery, Vec<EventEnvelope>);

/// The masking agent (see the module documentation).
#[derive(Clone)]
pub struct MaskingAgent {
    bus: Arc<dyn Bus>,
    vault: Arc<MaskingVault>,
    detector: Arc<Detector>,
    metrics: Arc<Metrics>,
    batch: usize,
    burst_yield: Option<BurstYield>,
}

impl MaskingAgent {
    pub fn new(bus: Arc<dyn Bus>, vault: Arc<MaskingVault>, detector: Arc<Detector>) -> Self {
        Self {
            bus,
            vault,
            detector,
            metrics: Arc::default(),
            batch: DEFAULT_BATCH,
            burst_yield: None,
        }
    }

    /// Yields to bursts of webhooks (see [`BurstYield`]); off by default.
    pub fn with_burst_yield(mut self, burst_yield: Option<BurstYield>) -> Self {
        self.burst_yield = burst_yield;
        self
    }

    /// Items per batch (at least 1).
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Consumes `intake` until `shutdown` fires or the intake closes. The batch
    /// in hand is finished first; anything not yet acknowledged is delivered
    /// again on the next start.
    pub async fn run(self, intake: Arc<dyn Intake>, shutdown: Shutdown) -> Result<(), BusError> {
        tracing::info!(batch = self.batch, "Masking agent started");
        let mut backoff = FIRST_BACKOFF;
        let mut burst = BurstWatch::default();
        'subscribe: while !shutdown.is_triggered() {
            let mut subscription = match intake.subscribe().await {
                Ok(subscription) => subscription,
                Err(error) => {
                    tracing::warn!(error = %error, "Cannot subscribe to the intake; retrying");
                    if !self.pause(&mut backoff, &shutdown).await {
                        break;
                    }
                    continue;
                }
            };
            loop {
                let first = tokio::select! {
                    () = shutdown.wait() => break 'subscribe,
                    next = subscription.next() => next,
                    // While idle, the load is still sampled, so that a burst
                    // is known as one from its first item.
                    () = self.sample_load(intake.as_ref(), &mut burst) => continue,
                };
                let first = match first {
                    Ok(Some(delivery)) => delivery,
                    Ok(None) => {
                        tracing::info!("The intake closed");
                        break 'subscribe;
                    }
                    Err(error) => {
                        tracing::warn!(error = %error, "Intake subscription failed; subscribing again");
                        if !self.pause(&mut backoff, &shutdown).await {
                            break 'subscribe;
                        }
                        continue 'subscribe;
                    }
                };
                backoff = FIRST_BACKOFF;
                if !self.wait_out_burst(intake.as_ref(), &mut burst, &shutdown).await {
                    break 'subscribe;
                }
                let batch = self.fill_batch(first, subscription.as_mut());
                if batch.len() < self.batch {
                    burst.catching_up = false;
                }
                self.process_batch(batch, &shutdown).await;
            }
        }
        let metrics = self.metrics.snapshot();
        tracing::info!(
            intake_received_total = metrics.intake_received_total,
            events_appended_total = metrics.events_appended_total,
            duplicates_total = metrics.duplicates_total,
            intake_dropped_total = metrics.intake_dropped_total,
            entities_masked_total = metrics.entities_masked_total,
            "Masking agent stopped"
        );
        Ok(())
    }

    /// Adds every delivery that is ready now, without waiting, up to the batch
    /// size. Polling `next` once and dropping it is safe: both subscriptions
    /// only advance when they hand out an item.
    fn fill_batch(
        &self,
        first: IntakeDelivery,
        subscription: &mut dyn IntakeSubscription,
    ) -> Vec<IntakeDelivery> {
        let mut batch = vec![first];
        while batch.len() < self.batch {
            match subscription.next().now_or_never() {
                Some(Ok(Some(delivery))) => batch.push(delivery),
                Some(Err(error)) => {
                    tracing::warn!(error = %error, "Intake subscription failed mid-batch");
                    break;
                }
                Some(Ok(None)) | None => break,
            }
        }
        batch
    }

    /// Takes a sample of the intake's load every [`LOAD_POLL`]; never returns
    /// where there is nothing to watch.
    async fn sample_load(&self, intake: &dyn Intake, burst: &mut BurstWatch) {
        if self.burst_yield.is_none() || intake.load().is_none() {
            return std::future::pending().await;
        }
        tokio::time::sleep(LOAD_POLL).await;
        if let Some(load) = intake.load() {
            burst.rate(Instant::now(), load.accepted);
        }
    }

    /// Returns once the agent may mask (see [`BurstYield`]); false once
    /// shutdown fired.
    async fn wait_out_burst(
        &self,
        intake: &dyn Intake,
        burst: &mut BurstWatch,
        shutdown: &Shutdown,
    ) -> bool {
        let Some(policy) = self.burst_yield else { return true };
        if burst.catching_up {
            return true;
        }
        let started = Instant::now();
        let mut waited = false;
        while let Some(IntakeLoad { accepted, waiting_bytes, limit_bytes }) = intake.load() {
            let now = Instant::now();
            let rate = burst.rate(now, accepted);
            if !rate.is_some_and(|rate| rate > policy.above_per_second as f64) {
                break;
            }
            if now.duration_since(started) >= policy.max_wait || waiting_bytes >= limit_bytes / 2 {
                tracing::info!(
                    waited_ms = now.duration_since(started).as_millis() as u64,
                    waiting_bytes,
                    "A burst of webhooks goes on; masking until caught up"
                );
                burst.catching_up = true;
                break;
            }
            if !waited {
                waited = true;
                Metrics::add(&self.metrics.burst_waits, 1);
                tracing::debug!(rate = rate.unwrap_or_default(), "Waiting out a burst of webhooks");
            }
            tokio::select! {
                () = shutdown.wait() => return false,
                () = tokio::time::sleep(LOAD_POLL) => {}
            }
        }
        true
    }

    /// Sleeps for the backoff (doubling it) unless shutdown fires first;
    /// false once shutdown fired.
    async fn pause(&self, backoff: &mut Duration, shutdown: &Shutdown) -> bool {
        Metrics::add(&self.metrics.retries, 1);
        let wait = *backoff;
        *backoff = (*backoff * 2).min(MAX_BACKOFF);
        tokio::select! {
            () = shutdown.wait() => false,
            () = tokio::time::sleep(wait) => true,
        }
    }

    /// Masks a batch, flushes the vault once, appends stream by stream (streams
    /// in parallel) and acknowledges each item once its events are durable.
    pub async fn process_batch(&self, batch: Vec<IntakeDelivery>, shutdown: &Shutdown) {
        Metrics::add(&self.metrics.intake_received, batch.len() as u64);
        let mut registered: HashSet<String> = HashSet::new();
        let mut groups: Vec<(StreamId, Vec<Pending>)> = Vec::new();
        let mut group_of: HashMap<StreamId, usize> = HashMap::new();
        let mut to_drop = Vec::new();
        for delivery in batch {
            let mut backoff = FIRST_BACKOFF;
            let prepared = loop {
                match self.prepare(&delivery.intake, &mut registered).await {
                    Ok(prepared) => break prepared,
                    Err(error) => {
                        tracing::warn!(
                            event_id = %delivery.intake.event_id,
                            error = %error,
                            "Masking failed; retrying"
                        );
                        if !self.pause(&mut backoff, shutdown).await {
                            // Not acknowledged: delivered again after a restart.
                            return;
                        }
                    }
                }
            };
            match prepared {
                Prepared::Append { stream, events } => {
                    let index = *group_of.entry(stream.clone()).or_insert_with(|| {
                        groups.push((stream, Vec::new()));
                        groups.len() - 1
                    });
                    if let Some((_, items)) = groups.get_mut(index) {
                        items.push((delivery, events));
                    }
                }
                Prepared::Drop { reason } => to_drop.push((delivery, reason)),
            }
        }

        // Every token the events below hold must be restorable after a crash.
        let mut backoff = FIRST_BACKOFF;
        while let Err(error) = self.vault.flush() {
            tracing::warn!(error = %error, "Vault flush failed; retrying");
            if !self.pause(&mut backoff, shutdown).await {
                return;
            }
        }

        for (delivery, reason) in to_drop {
            tracing::warn!(
                event_id = %delivery.intake.event_id,
                source = %delivery.intake.source,
                reason = %reason,
                "Dropping an intake item that cannot become an event"
            );
            Metrics::add(&self.metrics.intake_dropped, 1);
            acknowledge(delivery).await;
        }

        // Every stream in one request first (one commit for a batch that
        // spans many customers); a stream refused there, or every stream if
        // the request failed, goes on its own with retries.
        let requests = groups
            .iter()
            .map(|(stream, items)| StreamAppend {
                stream: stream.clone(),
                expected: ExpectedRevision::Any,
                events: items.iter().flat_map(|(_, events)| events.iter().cloned()).collect(),
            })
            .collect();
        let outcomes = match self.bus.append_many(requests).await {
            Ok(outcomes) => outcomes,
            Err(error) => {
                tracing::debug!(error = %error, "Appending the batch stream by stream");
                Vec::new()
            }
        };
        let mut outcomes = outcomes.into_iter();
        let mut left = Vec::new();
        for (stream, items) in groups {
            match outcomes.next() {
                Some(Ok(outcome)) => self.appended(items, outcome.duplicate).await,
                Some(Err(error)) => {
                    tracing::debug!(stream = %stream, error = %error, "Appending the stream on its own");
                    left.push((stream, items));
                }
                None => left.push((stream, items)),
            }
        }
        let appends =
            left.into_iter().map(|(stream, items)| self.append_stream(stream, items, shutdown));
        futures::future::join_all(appends).await;
    }

    /// Counts and acknowledges items whose events are durable.
    async fn appended(&self, items: Vec<Pending>, duplicate: bool) {
        for (delivery, events) in items {
            self.count_append(duplicate, events.len(), events.len() > 1);
            acknowledge(delivery).await;
        }
    }

    /// Appends one stream's items in order, acknowledging each once durable.
    ///
    /// All of them go in one append first (one group commit for a customer who
    /// writes a lot); if the log refuses that (say, one item was stored by an
    /// earlier run, which the log reports as a partial duplicate), item by item.
    async fn append_stream(&self, stream: StreamId, items: Vec<Pending>, shutdown: &Shutdown) {
        if items.len() > 1 {
            let all: Vec<EventEnvelope> =
                items.iter().flat_map(|(_, events)| events.iter().cloned()).collect();
            match self.bus.append(&stream, ExpectedRevision::Any, all).await {
                Ok(outcome) => {
                    self.appended(items, outcome.duplicate).await;
                    return;
                }
                Err(error) => {
                    tracing::debug!(stream = %stream, error = %error, "Appending the batch item by item");
                }
            }
        }
        for (delivery, events) in items {
            let registers = events.len() > 1;
            match self.append_with_retry(&stream, events.clone(), shutdown).await {
                Some(Ok(duplicate)) => {
                    self.count_append(duplicate, events.len(), registers);
                    acknowledge(delivery).await;
                }
                Some(Err(error)) if registers => {
                    // The registration may be stored already (another instance,
                    // or an earlier partial run): append the item's own event.
                    tracing::debug!(error = %error, "Appending without the registration");
                    let own: Vec<EventEnvelope> = events.into_iter().skip(1).collect();
                    match self.append_with_retry(&stream, own, shutdown).await {
                        Some(Ok(duplicate)) => {
                            self.count_append(duplicate, 1, false);
                            acknowledge(delivery).await;
                        }
                        Some(Err(error)) => self.reject(delivery, &error).await,
                        None => return,
                    }
                }
                Some(Err(error)) => self.reject(delivery, &error).await,
                // Shutdown: leave the rest unacknowledged.
                None => return,
            }
        }
    }

    fn count_append(&self, duplicate: bool, events: usize, registers: bool) {
        if duplicate {
            Metrics::add(&self.metrics.duplicates, 1);
        } else {
            Metrics::add(&self.metrics.events_appended, events as u64);
            if registers {
                Metrics::add(&self.metrics.customers_registered, 1);
            }
        }
    }

    async fn reject(&self, delivery: IntakeDelivery, error: &BusError) {
        let reason = self.masked_reason(&error.to_string());
        tracing::error!(
            event_id = %delivery.intake.event_id,
            source = %delivery.intake.source,
            reason = %reason,
            "The log refused a masked event; dropping the intake item"
        );
        Metrics::add(&self.metrics.intake_dropped, 1);
        acknowledge(delivery).await;
    }

    /// `Some(Ok(duplicate))` once durable, `Some(Err)` for a permanent refusal,
    /// `None` if shutdown fired while retrying.
    async fn append_with_retry(
        &self,
        stream: &StreamId,
        events: Vec<EventEnvelope>,
        shutdown: &Shutdown,
    ) -> Option<Result<bool, BusError>> {
        let mut backoff = FIRST_BACKOFF;
        loop {
            // An interaction does not depend on the stream's state: no
            // expected revision, so concurrent writers never conflict with it.
            match self.bus.append(stream, ExpectedRevision::Any, events.clone()).await {
                Ok(outcome) => return Some(Ok(outcome.duplicate)),
                Err(error @ (BusError::Invalid(_) | BusError::Other(_))) => {
                    return Some(Err(error));
                }
                Err(error) => {
                    tracing::warn!(stream = %stream, error = %error, "Append failed; retrying");
                    if !self.pause(&mut backoff, shutdown).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Turns one raw item into masked events, or a reason to drop it. Errors
    /// are transient (the vault's store failed).
    async fn prepare(
        &self,
        intake: &RawIntake,
        registered: &mut HashSet<String>,
    ) -> Result<Prepared, ServiceError> {
        let data: serde_json::Value = match serde_json::from_str(&intake.data_json) {
            Ok(data) => data,
            Err(error) => {
                // serde_json's message names a position and a category, never
                // the text itself.
                return Ok(Prepared::Drop { reason: format!("data is not JSON: {error}") });
            }
        };
        let webhook = match parse_webhook(&intake.event_type, &data) {
            Ok(webhook) => webhook,
            Err(error) => {
                let reason = self.masked_reason(&format!("{}: {}", error.field, error.kind));
                return Ok(Prepared::Drop { reason });
            }
        };
        let (customer_id, email) = match &webhook.customer {
            CustomerRef::Id(id) => (id.clone(), None),
            CustomerRef::Email(email) => {
                let (id, known) = self.vault.customer_for_email(email)?;
                (id, Some((email.clone(), known)))
            }
        };
        let stream = match StreamId::customer(&customer_id) {
            Ok(stream) => stream,
            Err(error) => return Ok(Prepared::Drop { reason: error.to_string() }),
        };
        let forgotten =
            || Prepared::Drop { reason: format!("customer {customer_id} was forgotten") };
        if self.vault.is_forgotten(&customer_id)? {
            return Ok(forgotten());
        }

        let mut events = Vec::with_capacity(2);
        if let Some((email, known)) = email {
            // A customer known only by email is registered once, with a
            // tokenized profile. The registration's id is derived from the
            // customer id, so every path that registers them writes it once.
            let revision = self.bus.stream_revision(&stream).await.map_err(|error| {
                ServiceError::Vault(VaultError::Store(format!("reading the stream: {error}")))
            })?;
            let register = revision == 0 && registered.insert(customer_id.clone());
            if register || !known {
                let name = data.get("name").and_then(serde_json::Value::as_str);
                let name = name.map(str::trim).filter(|name| !name.is_empty());
                let profile = ProfileFields {
                    name: name.filter(|_| register).map(str::to_owned),
                    email: Some(email),
                    phone: None,
                };
                let tokens = match self.vault.tokenize(&customer_id, profile) {
                    Ok(tokens) => tokens,
                    Err(ServiceError::Forgotten { .. }) => return Ok(forgotten()),
                    Err(error) => return Err(error),
                };
                if register {
                    events.push(self.registration(intake, &stream, &customer_id, tokens));
                }
            }
        }

        let mut payload = webhook.to_payload(
            &customer_id,
            &intake.event_id.to_string(),
            &intake.source,
            intake.received_at,
        );
        let texts: Vec<&mut String> = match &mut payload {
            EventPayload::InteractionRecorded(event) => {
                vec![&mut event.content, &mut event.interaction_id]
            }
            EventPayload::ActivityLogged(event) => vec![&mut event.detail, &mut event.activity_id],
            _ => Vec::new(),
        };
        let mut texts = texts;
        let report = match self.vault.mask_texts(&self.detector, &customer_id, &mut texts) {
            Ok(report) => report,
            Err(ServiceError::Forgotten { .. }) => return Ok(forgotten()),
            Err(error) => return Err(error),
        };
        Metrics::add(&self.metrics.entities_masked, report.entities as u64);
        let occurred_at = match &payload {
            EventPayload::InteractionRecorded(event) => event.occurred_at,
            EventPayload::ActivityLogged(event) => event.occurred_at,
            _ => intake.received_at,
        };
        let mut event = EventEnvelope::new(stream.clone(), intake.actor.clone(), payload);
        // The intake's id: masking the same item twice appends it once.
        event.event_id = intake.event_id;
        event.correlation_id = intake.event_id;
        event.occurred_at = occurred_at;
        for event in &events {
            if let Err(error) = event.validate() {
                return Ok(Prepared::Drop { reason: self.masked_reason(&error.to_string()) });
            }
        }
        if let Err(error) = event.validate() {
            return Ok(Prepared::Drop { reason: self.masked_reason(&error.to_string()) });
        }
        events.push(event);
        Ok(Prepared::Append { stream, events })
    }

    /// `CustomerRegistered` for a customer first seen by email.
    fn registration(
        &self,
        intake: &RawIntake,
        stream: &StreamId,
        customer_id: &str,
        tokens: ProfileFields,
    ) -> EventEnvelope {
        let email_token = tokens.email.unwrap_or_default();
        let payload = EventPayload::CustomerRegistered(CustomerRegistered {
            customer_id: customer_id.to_owned(),
            // Without a name, the email's token names the customer.
            name: tokens.name.unwrap_or_else(|| email_token.clone()),
            email: email_token,
            phone: String::new(),
            company: String::new(),
            owner: String::new(),
            stage: "lead".into(),
        });
        let mut registration = EventEnvelope::new(stream.clone(), intake.actor.clone(), payload);
        let customer_uuid = Uuid::new_v5(&Uuid::NAMESPACE_OID, customer_id.as_bytes());
        registration.event_id = EventEnvelope::derived_id(AGENT_NAME, customer_uuid, "registered");
        registration.correlation_id = intake.event_id;
        registration.causation_id = Some(intake.event_id);
        registration.occurred_at = intake.received_at;
        registration
    }

    /// A message about an item, masked with a throw-away table: error texts
    /// can quote a value from the sender.
    fn masked_reason(&self, text: &str) -> String {
        let no_names: &[&str] = &[];
        crate::token::mask(&self.detector, text, no_names, &mut TokenTable::new()).text
    }
}

async fn acknowledge(delivery: IntakeDelivery) {
    let event_id = delivery.intake.event_id;
    if let Err(error) = delivery.ack().await {
        // The event is durable; a redelivery is answered `duplicate`.
        tracing::warn!(event_id = %event_id, error = %error, "Failed to acknowledge an intake item");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arrival_rate_needs_a_span_and_forgets_old_samples() {
        let mut burst = BurstWatch::default();
        let start = Instant::now();
        let at = |millis| start + Duration::from_millis(millis);
        assert_eq!(burst.rate(at(0), 0), None);
        assert_eq!(burst.rate(at(100), 500), None, "a span under 200 ms tells nothing");
        assert_eq!(burst.rate(at(250), 2_500), Some(10_000.0));
        // A second later the samples before 250 ms are gone: 100 in 1 s.
        assert_eq!(burst.rate(at(1_250), 2_600), Some(100.0));
        // After a pause longer than the window, only the new sample is left.
        assert_eq!(burst.rate(at(5_000), 9_000), None);
    }
}
