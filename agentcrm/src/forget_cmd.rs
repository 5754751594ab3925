//! `agentcrm forget <customer>`: crypto-shredding on a stopped node.
//!
//! The vault destroys the customer's key, sealed token table and look-up
//! entries, then `CustomerForgotten` is appended (actor: a human). The log
//! stays append-only and verifiable; every token of the customer in it, in the
//! read models and in decision logs now restores to nothing. Running it again
//! is harmless: the event's id is derived from the customer id, so it is
//! stored once.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use agent_kit::{Bus, EmbeddedBus};
use anyhow::Context;
use bus_schema::{
    Actor, ActorKind, CustomerForgotten, EventEnvelope, EventPayload, ExpectedRevision, StreamId,
};
use clap::Args;
use masking::TokenTable;

#[derive(Args)]
pub(crate) struct ForgetArgs {
    /// The customer id (`cus_…`).
    customer_id: String,
    /// Data directory of the node (the node must be stopped).
    #[arg(long, default_value = "./data", env = "AGENTCRM_DATA_DIR")]
    data_dir: PathBuf,
    /// Why, for the audit trail (masked before it is stored).
    #[arg(long, default_value = "erasure request")]
    reason: String,
    /// Who asked (recorded as a human actor).
    #[arg(long, default_value = "admin")]
    by: String,
}

pub(crate) fn run(args: ForgetArgs) -> anyhow::Result<ExitCode> {
    let stream = StreamId::customer(&args.customer_id)
        .map_err(|error| anyhow::anyhow!("`{}` is not a customer id: {error}", args.customer_id))?;
    let store = crate::open_existing(&args.data_dir)
        .context("forget needs the node stopped: stop `agentcrm up` first")?;
    let runtime = crate::runtime()?;
    let result = runtime.block_on(async {
        let vault = crate::agent_cmd::open_vault(&store)?;
        let log = store.log_dyn();
        let bus = EmbeddedBus::new(log.clone(), store.checkpoints.clone());
        let revision = bus.stream_revision(&stream).await?;
        if revision == 0 && !vault.is_forgotten(&args.customer_id)? {
            anyhow::bail!("no customer `{}` in {}", args.customer_id, args.data_dir.display());
        }
        let report = vault.forget(&args.customer_id).context("destroying the customer's key")?;
        // The reason is free text: it is masked like everything that reaches
        // the log.
        let detector = crate::agent_cmd::load_detector(None)?;
        let no_names: &[&str] = &[];
        let reason =
            masking::mask(&detector, &args.reason, no_names, &mut TokenTable::new()).text;
        let payload = EventPayload::CustomerForgotten(CustomerForgotten {
            customer_id: args.customer_id.clone(),
            reason,
        });
        let mut event = EventEnvelope::new(stream.clone(), Actor::new(ActorKind::Human, &args.by), payload);
        event.event_id = CustomerForgotten::event_id(&args.customer_id);
        event.correlation_id = event.event_id;
        let outcome = bus.append(&stream, ExpectedRevision::Any, vec![event]).await?;
        store.read_models.catch_up(&Arc::clone(&log)).context("updating the read models")?;
        let key = if report.key_destroyed { "key destroyed" } else { "no key was left" };
        let event = if outcome.duplicate { "already recorded" } else { "recorded" };
        println!(
            "forgot {}: {key}; look-up entries removed: {}; CustomerForgotten {event} at position {}",
            args.customer_id,
            report.index_entries,
            outcome.revision()
        );
        anyhow::Ok(())
    });
    store.close().context("closing the event log")?;
    result?;
    Ok(ExitCode::SUCCESS)
}
