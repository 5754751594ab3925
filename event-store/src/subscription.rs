//! Catch-up subscriptions: history from a checkpoint, then the live tail.
//!
//! The subscription always reads from the log by position, strictly after the
//! last position it delivered, and only up to the durable head. The switch from
//! history to live is therefore only a change in how long it waits: there is no
//! second source that could overlap (duplicates) or miss (gaps).

use std::collections::VecDeque;
use std::sync::Arc;

use bus_schema::RecordedEvent;
use tokio::sync::watch;

use crate::log::{EventLog, StoreError};

/// How many events one read fetches.
const PAGE: usize = 512;

/// Delivers every event after a checkpoint, in order, then follows the tail.
pub struct CatchUpSubscription {
    log: Arc<dyn EventLog>,
    head: watch::Receiver<u64>,
    next: u64,
    buffer: VecDeque<RecordedEvent>,
}

impl CatchUpSubscription {
    /// Starts after `checkpoint` (the last position already processed; 0 = all).
    pub fn new(log: Arc<dyn EventLog>, checkpoint: u64) -> Self {
        let head = log.watch_head();
        Self { log, head, next: checkpoint + 1, buffer: VecDeque::new() }
    }

    /// The next event, waiting for one when the subscription is at the head.
    /// Returns `Ok(None)` once the log is closed.
    pub async fn next(&mut self) -> Result<Option<RecordedEvent>, StoreError> {
        loop {
            if let Some(event) = self.try_next()? {
                return Ok(Some(event));
            }
            if self.head.changed().await.is_err() {
                // The log is gone; deliver what it made durable before closing.
                return self.try_next();
            }
        }
    }

    /// The next event if one is already durable, without waiting.
    pub fn try_next(&mut self) -> Result<Option<RecordedEvent>, StoreError> {
        if self.buffer.is_empty() {
            self.head.borrow_and_update();
            self.buffer.extend(self.log.read_all(self.next, PAGE)?);
        }
        let event = self.buffer.pop_front();
        if let Some(event) = &event {
            self.next = event.position + 1;
        }
        Ok(event)
    }

    /// The last position delivered.
    pub fn checkpoint(&self) -> u64 {
        self.next - 1
    }
}
