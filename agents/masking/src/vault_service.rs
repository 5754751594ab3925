//! The masking agent's vault as a NATS service: `agentcrm agent masking`
//! answers the gateway's `crm.vault.<operation>` requests with its own
//! [`MaskingVault`], next to the agent loop, so profile tokens and the tokens
//! in masked interactions come from one token table per customer.
//!
//! The request/reply plumbing is `agent_kit::vault::serve` (agent-kit is the
//! only crate that talks to NATS); this module decides what answers.

use std::sync::Arc;

use agent_kit::{BusError, NatsBus, Shutdown};

use crate::service::MaskingVault;

/// Answers vault requests with `vault` until `shutdown` fires, in the queue
/// group that every masking instance joins.
pub async fn serve(
    bus: &NatsBus,
    vault: Arc<MaskingVault>,
    shutdown: Shutdown,
) -> Result<(), BusError> {
    agent_kit::vault::serve(bus.client().clone(), vault, shutdown).await
}
