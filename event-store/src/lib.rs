//! The append-only event log of AgentCRM and everything derived from it.
//!
//! - [`log`]: the [`EventLog`] trait (append with optimistic concurrency, reads,
//!   the durable head) and its errors.
//! - [`sled_log`]: [`SledEventLog`], the durable implementation: one writer thread,
//!   group commit (one write-ahead append and one `fdatasync` per group), a hash chain.
//! - [`intake`]: the embedded queue of raw submissions awaiting masking, durable
//!   through the same group commit.
//! - [`local`]: [`local::LocalTable`], service-local state beside the log (keys,
//!   sources, the vault), never part of it.
//! - [`memory`]: [`MemoryEventLog`], the same contract in memory, for tests.
//! - [`subscription`]: catch-up subscriptions (history from a checkpoint, then the
//!   live tail, with no gap and no duplicate at the switch).
//! - [`record`]: the stored record format and its hash chain.
//! - [`projection`]: pure folds over events, their checkpointed runner, replay and
//!   digests.
//! - [`read_models`]: the set of read models and [`SledStore`], the log bundled
//!   with them.
//! - [`customer360`]: the customer 360 read model.
//! - [`checkpoints`]: where each named consumer of the embedded bus is.
//! - [`verify`]: walks the log and names the first record that breaks the chain.
//!
//! - `wal`: the write-ahead log that makes each group commit durable with one
//!   `fdatasync`.
//!
//! This is the only crate that opens sled.

pub mod checkpoints;
pub mod customer360;
pub mod intake;
mod known_ids;
pub mod local;
pub mod log;
pub mod memory;
pub mod projection;
pub mod read_models;
pub mod record;
pub mod sled_log;
pub mod subscription;
pub mod verify;
mod wal;

pub use log::{AppendError, EventLog, StoreError};
pub use memory::MemoryEventLog;
pub use read_models::{ReadModels, SledStore};
pub use sled_log::{SledEventLog, SledOptions};
pub use subscription::CatchUpSubscription;
