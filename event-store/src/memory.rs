//! The event log contract in memory, for tests that need no disk.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bus_schema::{EventEnvelope, ExpectedRevision, RecordedEvent, StreamId};
use tokio::sync::watch;
use uuid::Uuid;

use crate::log::{AppendError, AppendOutcome, EventLog, StoreError, already_stored, check_events};

/// An [`EventLog`] that keeps everything in memory, with the same semantics as
/// the sled log (minus durability).
pub struct MemoryEventLog {
    state: Mutex<State>,
    head_sender: watch::Sender<u64>,
    head_watch: watch::Receiver<u64>,
}

#[derive(Default)]
struct State {
    events: Vec<RecordedEvent>,
    streams: HashMap<StreamId, Vec<u64>>,
    event_ids: HashMap<Uuid, u64>,
}

impl Default for MemoryEventLog {
    fn default() -> Self {
        let (head_sender, head_watch) = watch::channel(0);
        Self { state: Mutex::new(State::default()), head_sender, head_watch }
    }
}

impl MemoryEventLog {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, StoreError> {
        self.state.lock().map_err(|_| StoreError::Closed)
    }
}

impl State {
    fn head(&self) -> u64 {
        self.events.last().map_or(0, |event| event.position)
    }

    fn revision(&self, stream: &StreamId) -> u64 {
        self.streams.get(stream).and_then(|positions| positions.last().copied()).unwrap_or(0)
    }

    fn push(&mut self, position: u64, mut envelope: EventEnvelope) {
        envelope.recorded_at = chrono::Utc::now();
        self.streams.entry(envelope.stream.clone()).or_default().push(position);
        self.event_ids.insert(envelope.event_id, position);
        self.events.push(RecordedEvent { position, envelope });
    }
}

#[async_trait]
impl EventLog for MemoryEventLog {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedRevision,
        events: Vec<EventEnvelope>,
    ) -> Result<AppendOutcome, AppendError> {
        check_events(stream, &events)?;
        let mut state = self.lock()?;
        let known: Vec<_> = events
            .iter()
            .map(|event| (event.event_id, state.event_ids.get(&event.event_id).copied()))
            .collect();
        if let Some(outcome) = already_stored(&known) {
            return outcome;
        }
        let actual = state.revision(stream);
        if !expected.is_satisfied_by(actual) {
            return Err(AppendError::Conflict { stream: stream.clone(), expected, actual });
        }
        let mut positions = Vec::with_capacity(events.len());
        for event in events {
            let position = state.head() + 1;
            state.push(position, event);
            positions.push(position);
        }
        self.head_sender.send_replace(state.head());
        Ok(AppendOutcome { positions, duplicate: false })
    }

    async fn append_at(
        &self,
        records: Vec<(u64, EventEnvelope)>,
    ) -> Result<Vec<AppendOutcome>, AppendError> {
        for (_, event) in &records {
            event.validate()?;
        }
        let mut state = self.lock()?;
        let mut head = state.head();
        let mut outcomes = Vec::with_capacity(records.len());
        let mut in_batch = HashMap::new();
        for (position, event) in &records {
            let known = in_batch.get(&event.event_id).or(state.event_ids.get(&event.event_id));
            if let Some(original) = known {
                outcomes.push(AppendOutcome { positions: vec![*original], duplicate: true });
            } else if *position <= head {
                return Err(AppendError::OutOfOrder { position: *position, head });
            } else {
                head = *position;
                in_batch.insert(event.event_id, *position);
                outcomes.push(AppendOutcome { positions: vec![*position], duplicate: false });
            }
        }
        for ((position, event), outcome) in records.into_iter().zip(&outcomes) {
            if !outcome.duplicate {
                state.push(position, event);
            }
        }
        self.head_sender.send_replace(state.head());
        Ok(outcomes)
    }

    fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let state = self.lock()?;
        let Some(positions) = state.streams.get(stream) else {
            return Ok(Vec::new());
        };
        Ok(positions
            .iter()
            .filter(|position| **position >= from)
            .take(limit)
            .filter_map(|position| {
                let index =
                    state.events.binary_search_by_key(position, |event| event.position).ok()?;
                state.events.get(index).cloned()
            })
            .collect())
    }

    fn read_all(&self, from: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let state = self.lock()?;
        let start = state.events.partition_point(|event| event.position < from);
        Ok(state.events[start..].iter().take(limit).cloned().collect())
    }

    fn stream_revision(&self, stream: &StreamId) -> Result<u64, StoreError> {
        Ok(self.lock()?.revision(stream))
    }

    fn position_of(&self, event_id: Uuid) -> Result<Option<u64>, StoreError> {
        Ok(self.lock()?.event_ids.get(&event_id).copied())
    }

    fn head(&self) -> u64 {
        self.lock().map(|state| state.head()).unwrap_or(0)
    }

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.head_watch.clone()
    }
}
