//! What every AgentCRM service shares: the bus and the services built on it.
//!
//! - [`bus`]: the [`Bus`] trait (append with expected revision, read a stream,
//!   durable subscriptions with explicit ack) and its errors.
//! - [`embedded`]: [`EmbeddedBus`], where the sled log is the bus (one process).
//! - [`intake`]: the [`intake::Intake`] trait: raw submissions from the gateway to
//!   the masking agent (sled queue embedded, `CRM_INGEST` work queue on NATS).
//! - [`nats`]: [`NatsBus`], on NATS JetStream (stream `CRM_EVENTS`).
//! - [`store_service`]: the event-store service that copies `CRM_EVENTS` into
//!   the sled log and acknowledges only once it is durable.
//! - [`vault`]: the [`vault::PiiVault`] trait, the personal-data boundary as a
//!   service (implemented by the masking agent), its NATS client
//!   [`vault::NatsPiiVault`] and the responder [`vault::serve`].
//! - [`shutdown`]: the shutdown signal every long-running task listens to.
//!
//! This is the only crate that uses async-nats.

pub mod bus;
pub mod embedded;
pub mod intake;
pub mod nats;
pub mod shutdown;
pub mod store_service;
pub mod vault;

pub use bus::{Bus, BusError, Delivery, EventSubscription};
pub use embedded::EmbeddedBus;
pub use nats::{NatsBus, NatsOptions};
pub use shutdown::Shutdown;
