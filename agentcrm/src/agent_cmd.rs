//! `agentcrm agent masking`: the masking agent as its own service on NATS, and
//! the pieces `up` uses to run it inside the node.
//!
//! Distributed, the agent consumes the `CRM_INGEST` work queue as the NATS user
//! `masking` (see `deploy/nats/`), keeps its vault in its own data directory,
//! publishes masked events to `CRM_EVENTS`, and answers the gateway's vault
//! requests on `crm.vault.>` (`masking::vault_service`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use agent_kit::intake::{Intake, NatsIntake};
use agent_kit::{Bus, BusError, NatsBus, Shutdown};
use anyhow::Context;
use clap::{Args, Subcommand};
use event_store::SledStore;
use event_store::local::LocalTable;
use masking::{Detector, DetectorConfig, MaskingAgent, MaskingVault};

/// The local table that holds the vault, in the node's (or the agent's) store.
pub(crate) const VAULT_TABLE: &str = "vault";

#[derive(Args)]
pub(crate) struct AgentArgs {
    #[command(subcommand)]
    agent: AgentCommand,
}

#[derive(Subcommand)]
enum AgentCommand {
    /// The masking agent: raw intake from `crm.ingest.>` to masked events.
    Masking(MaskingArgs),
}

#[derive(Args)]
struct MaskingArgs {
    /// NATS server with JetStream.
    #[arg(long, default_value = "nats://127.0.0.1:4222", env = "AGENTCRM_NATS_URL")]
    nats_url: String,
    #[command(flatten)]
    nats: crate::NatsUser,
    /// Where the agent keeps its vault (per-customer keys, sealed token tables).
    #[arg(long, default_value = "./data/masking", env = "AGENTCRM_DATA_DIR")]
    data_dir: PathBuf,
    /// Detector configuration (JSON: `{"custom_patterns": [{"name", "pattern"}]}`).
    #[arg(long)]
    config: Option<PathBuf>,
}

pub(crate) fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    match args.agent {
        AgentCommand::Masking(args) => masking(args),
    }
}

/// The node's vault: every component of one node uses this one.
pub(crate) fn open_vault(store: &SledStore) -> anyhow::Result<MaskingVault> {
    let table = store.table(VAULT_TABLE).context("opening the vault table")?;
    MaskingVault::open(table).context("opening the vault")
}

/// The detector, with custom patterns from `config` if given.
pub(crate) fn load_detector(config: Option<&Path>) -> anyhow::Result<Detector> {
    let config = match config {
        Some(path) => {
            let raw = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&raw).with_context(|| format!("parsing {}", path.display()))?
        }
        None => DetectorConfig::default(),
    };
    Detector::new(&config).context("building the detector")
}

/// Starts the masking agent inside a node, on its embedded bus and intake,
/// as a task of `runtime`.
pub(crate) fn spawn(
    runtime: &tokio::runtime::Handle,
    bus: Arc<dyn Bus>,
    intake: Arc<dyn Intake>,
    vault: Arc<MaskingVault>,
    burst_yield: Option<masking::BurstYield>,
    shutdown: Shutdown,
) -> anyhow::Result<tokio::task::JoinHandle<Result<(), BusError>>> {
    let detector = Arc::new(load_detector(None)?);
    let agent = MaskingAgent::new(bus, vault, detector).with_burst_yield(burst_yield);
    Ok(runtime.spawn(agent.run(intake, shutdown)))
}

fn masking(args: MaskingArgs) -> anyhow::Result<ExitCode> {
    let detector = Arc::new(load_detector(args.config.as_deref())?);
    let options = event_store::SledOptions::default();
    let db = event_store::sled_log::open_db(&args.data_dir, &options).map_err(|error| {
        anyhow::anyhow!("cannot open data directory {}: {error}", args.data_dir.display())
    })?;
    let table = LocalTable::open(&db, VAULT_TABLE).context("opening the vault table")?;
    let vault = Arc::new(MaskingVault::open(table).context("opening the vault")?);
    let runtime = crate::runtime()?;
    let result = runtime.block_on(async {
        let options = args.nats.options(&args.nats_url, "agentcrm-masking".into());
        let bus = NatsBus::connect(options).await?;
        let intake: Arc<dyn Intake> = Arc::new(NatsIntake::connect(&bus).await?);
        let shutdown = Shutdown::new();
        // The vault answers the gateway (profiles, look-ups, reveal, forget)
        // from the same tables the agent masks with.
        let vault_service = {
            let (bus, vault, shutdown) = (bus.clone(), vault.clone(), shutdown.clone());
            tokio::spawn(async move { masking::vault_service::serve(&bus, vault, shutdown).await })
        };
        let agent = MaskingAgent::new(Arc::new(bus), vault.clone(), detector);
        let metrics = agent.metrics();
        let task = tokio::spawn(agent.run(intake, shutdown.clone()));
        println!("Masking agent is up: {} (vault in {})", args.nats_url, args.data_dir.display());
        crate::node::wait_for_signal(shutdown.clone()).await;
        task.await.context("masking agent task")?.context("masking agent")?;
        vault_service.await.context("vault service task")?.context("vault service")?;
        let metrics = metrics.snapshot();
        println!(
            "Masking agent stopped: {} events appended, {} duplicates, {} dropped",
            metrics.events_appended_total, metrics.duplicates_total, metrics.intake_dropped_total
        );
        anyhow::Ok(())
    });
    vault.flush().context("flushing the vault")?;
    result?;
    Ok(ExitCode::SUCCESS)
}
