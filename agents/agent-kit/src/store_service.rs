//! The event-store service of the distributed deployment.
//!
//! It consumes `CRM_EVENTS` with the durable consumer `event-store`, appends each
//! event to the sled log at its stream sequence, and acknowledges only after the
//! log's group commit made it durable. A redelivery (a crash between the commit
//! and the ack) is recognised by the permanent `event_id` index and only acked,
//! as is a repeat published after JetStream's duplicate window: the sled log
//! stores every event once.

use std::sync::Arc;

use bus_schema::subjects;
use event_store::EventLog;

use crate::bus::{Bus, BusError, Delivery};
use crate::shutdown::Shutdown;

/// The durable consumer name of the event-store service.
pub const CONSUMER: &str = "event-store";
/// How many deliveries are committed together.
const BATCH: usize = 256;

/// Copies the bus into the log until `shutdown` fires.
pub async fn run(
    bus: &dyn Bus,
    log: Arc<dyn EventLog>,
    shutdown: Shutdown,
) -> Result<(), BusError> {
    let mut subscription = bus.subscribe(CONSUMER, &subjects::all_events()).await?;
    loop {
        let first = tokio::select! {
            delivery = subscription.next() => delivery?,
            _ = shutdown.wait() => return Ok(()),
        };
        let Some(first) = first else { return Ok(()) };
        let mut batch = vec![first];
        // Take what is already waiting, so one group commit covers it all.
        while batch.len() < BATCH {
            match tokio::time::timeout(std::time::Duration::ZERO, subscription.next()).await {
                Ok(Ok(Some(delivery))) => batch.push(delivery),
                Ok(Err(error)) => return Err(error),
                _ => break,
            }
        }
        store_batch(&log, batch).await?;
    }
}

async fn store_batch(log: &Arc<dyn EventLog>, batch: Vec<Delivery>) -> Result<(), BusError> {
    let records = batch
        .iter()
        .map(|delivery| (delivery.event.position, delivery.event.envelope.clone()))
        .collect();
    match log.append_at(records).await {
        Ok(_) => {}
        Err(event_store::log::AppendError::OutOfOrder { position, head }) => {
            // Only possible when the log is ahead of the stream (say, a restored
            // backup of the stream): store what is new one by one, skip the rest.
            tracing::error!(position, head, "Events behind the log's head; skipping them");
            for delivery in &batch {
                let record = vec![(delivery.event.position, delivery.event.envelope.clone())];
                match log.append_at(record).await {
                    Ok(_) | Err(event_store::log::AppendError::OutOfOrder { .. }) => {}
                    Err(error) => return Err(error.into()),
                }
            }
        }
        Err(error) => return Err(error.into()),
    }
    // Durable now: acknowledge, in order.
    for delivery in batch {
        delivery.ack().await?;
    }
    Ok(())
}
