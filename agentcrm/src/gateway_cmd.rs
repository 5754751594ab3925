//! `agentcrm gateway`: the gateway as its own service on NATS, and the gateway
//! flags shared with `up`.
//!
//! The distributed gateway keeps its own sled database in `--data-dir`: its
//! local tables (sources, keys, delivery ids) and a replica of the log
//! that feeds its read models. The replica follows `CRM_EVENTS` exactly as the
//! event-store service does (in stream order, from its own head) and stores each
//! event at its stream sequence, so positions (and so ETags) are the same as
//! everywhere else. It holds no personal data: profiles, look-ups, reveal and
//! forget go to the masking agent's vault service over NATS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agent_kit::intake::NatsIntake;
use agent_kit::vault::NatsPiiVault;
use agent_kit::{NatsBus, Shutdown};
use anyhow::Context;
use clap::Args;
use event_store::{SledOptions, SledStore};
use gateway::{GatewayConfig, LocalState};

/// Limits of the gateway (see `gateway::GatewayConfig`).
#[derive(Args, Clone)]
pub(crate) struct GatewayFlags {
    /// The largest request body accepted, in bytes (413 above).
    #[arg(long, default_value_t = 1024 * 1024, env = "AGENTCRM_BODY_LIMIT")]
    body_limit: usize,
    /// How far a webhook-timestamp may be from now, in seconds.
    #[arg(long, default_value_t = 300)]
    signature_tolerance: i64,
}

impl GatewayFlags {
    pub(crate) fn config(&self) -> GatewayConfig {
        GatewayConfig {
            body_limit: self.body_limit,
            signature_tolerance_seconds: self.signature_tolerance,
            ..GatewayConfig::default()
        }
    }
}

#[derive(Args)]
pub(crate) struct GatewayArgs {
    /// NATS server with JetStream.
    #[arg(long, default_value = "nats://127.0.0.1:4222", env = "AGENTCRM_NATS_URL")]
    nats_url: String,
    /// The gateway's own data: local tables and the read-model replica.
    #[arg(long, default_value = "./gateway-data", env = "AGENTCRM_DATA_DIR")]
    data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "AGENTCRM_LISTEN")]
    listen: SocketAddr,
    #[command(flatten)]
    nats: crate::NatsUser,
    /// Name of this instance, shown in the NATS server's connection list.
    #[arg(long, default_value = "1")]
    replica: String,
    /// How long to wait for the masking agent's vault service, in milliseconds
    /// (503 after that).
    #[arg(long, default_value_t = 3000)]
    vault_timeout_ms: u64,
    #[command(flatten)]
    flags: GatewayFlags,
}

/// Opens the gateway's tables and creates the seed route's source on first
/// start.
pub(crate) fn local_state(store: &SledStore) -> anyhow::Result<LocalState> {
    let local = LocalState::open(store).context("opening the gateway's tables")?;
    if local.ensure_default_source().context("creating the default webhook source")? {
        println!(
            "Created webhook source `default`; `agentcrm sources secret default` prints its secret"
        );
    }
    Ok(local)
}

/// Binds the gateway's address and serves it in a task until `shutdown`;
/// returns the address bound (the port, when 0 was asked for) and the task.
pub(crate) async fn bind_and_serve(
    listen: SocketAddr,
    state: gateway::AppState,
    shutdown: Shutdown,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, "Listening");
    Ok((address, tokio::spawn(gateway::serve(listener, state, shutdown))))
}

pub(crate) fn run(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    let store = SledStore::open(&args.data_dir, SledOptions::default()).map_err(|error| {
        anyhow::anyhow!("cannot open data directory {}: {error}", args.data_dir.display())
    })?;
    let runtime = crate::runtime()?;
    let background = crate::background_runtime()?;
    let result = runtime.block_on(async {
        let options =
            args.nats.options(&args.nats_url, format!("agentcrm-gateway-{}", args.replica));
        let bus = Arc::new(NatsBus::connect(options).await?);
        let intake = Arc::new(NatsIntake::connect(&bus).await?);
        let local = local_state(&store)?;
        // Personal data stays with the masking agent: the gateway tokenizes,
        // looks up, reveals and forgets through its vault service.
        let vault = Arc::new(NatsPiiVault::new(
            bus.client().clone(),
            Duration::from_millis(args.vault_timeout_ms),
        ));
        let shutdown = Shutdown::new();
        let log = store.log_dyn();
        store.read_models.catch_up(&log).context("bringing read models up to date")?;
        let projections =
            background.spawn(store.read_models.clone().run(log.clone(), shutdown.receiver()));
        let replica = {
            let (bus, log, shutdown) = (bus.clone(), log.clone(), shutdown.clone());
            background.spawn(async move {
                agent_kit::store_service::run(bus.as_ref(), log, shutdown).await
            })
        };
        let state = gateway::AppState::new(
            bus,
            intake,
            store.read_models.clone(),
            vault,
            local,
            args.flags.config(),
        );
        let (address, server) = bind_and_serve(args.listen, state, shutdown.clone()).await?;
        println!("AgentCRM gateway is up: http://{address} (NATS {})", args.nats_url);
        tokio::select! {
            _ = crate::node::wait_for_signal(shutdown.clone()) => {}
            result = replica => {
                shutdown.trigger();
                result.context("replica task")?.context("read-model replica")?;
            }
        }
        shutdown.trigger();
        server.await.context("gateway task")?.context("gateway")?;
        projections.await.context("projection task")?.context("projections")?;
        anyhow::Ok(())
    });
    drop(background);
    store.close().context("closing the replica")?;
    result?;
    Ok(ExitCode::SUCCESS)
}
