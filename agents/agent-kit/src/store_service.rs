//! The event-store service of the distributed deployment.
//!
//! It reads `CRM_EVENTS` in strict stream order from just after the log's own
//! head, appends each event at its stream sequence, and moves on only once the
//! log's group commit made it durable: the log's head is the service's
//! checkpoint, so a crash at any point resumes exactly after the last durable
//! event. A repeat published after JetStream's duplicate window is recognised by
//! the permanent `event_id` index and skipped: the sled log stores every event
//! once.

use std::sync::Arc;
use std::time::Duration;

use event_store::EventLog;

use crate::bus::BusError;
use crate::nats::NatsBus;
use crate::shutdown::Shutdown;

/// How many events are committed together at most.
const BATCH: usize = 512;

/// Waits after a failed read of the bus before following it again.
const RETRY: Duration = Duration::from_millis(500);

/// Copies the bus into the log until `shutdown` fires. A lost connection to
/// NATS is waited out: the service follows the stream again from the log's
/// head, so an outage of the server loses nothing and ends nothing.
pub async fn run(
    bus: &NatsBus,
    log: Arc<dyn EventLog>,
    shutdown: Shutdown,
) -> Result<(), BusError> {
    while !shutdown.is_triggered() {
        match copy(bus, &log, &shutdown).await {
            Ok(()) => return Ok(()),
            Err(BusError::Unavailable(reason)) => {
                tracing::warn!(reason = %reason, head = log.head(), "NATS unavailable; following again");
                tokio::select! {
                    () = tokio::time::sleep(RETRY) => {}
                    () = shutdown.wait() => return Ok(()),
                }
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

async fn copy(bus: &NatsBus, log: &Arc<dyn EventLog>, shutdown: &Shutdown) -> Result<(), BusError> {
    let mut events = bus.follow(log.head()).await?;
    loop {
        let first = tokio::select! {
            event = events.next() => event?,
            () = shutdown.wait() => return Ok(()),
        };
        let Some(first) = first else { return Ok(()) };
        let mut batch = vec![(first.position, first.envelope)];
        // Take what is already waiting, so one group commit covers it all.
        while batch.len() < BATCH {
            match tokio::time::timeout(Duration::ZERO, events.next()).await {
                Ok(Ok(Some(event))) => batch.push((event.position, event.envelope)),
                Ok(Err(error)) => return Err(error),
                _ => break,
            }
        }
        let count = batch.len();
        let outcomes = log.append_at(batch).await?;
        let duplicates = outcomes.iter().filter(|outcome| outcome.duplicate).count();
        if duplicates > 0 {
            tracing::info!(
                duplicates,
                "Skipped events already stored (repeats past the duplicate window)"
            );
        }
        tracing::debug!(count, head = log.head(), "Stored events");
    }
}
