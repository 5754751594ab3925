//! Long-running nodes: `up` (everything embedded) and `store` (the event-store
//! service on NATS).

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use agent_kit::intake::EmbeddedIntake;
use agent_kit::{EmbeddedBus, NatsBus, Shutdown};
use anyhow::Context;
use clap::Args;
use event_store::{SledOptions, SledStore};

use crate::DataDir;

#[derive(Args)]
pub(crate) struct UpArgs {
    #[command(flatten)]
    data: DataDir,
    /// Address the gateway listens on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "AGENTCRM_LISTEN")]
    listen: SocketAddr,
    #[command(flatten)]
    gateway: crate::gateway_cmd::GatewayFlags,
    /// How many KiB of accepted webhooks may wait for the masking agent (256
    /// MiB by default); past that, webhooks get 503 with `Retry-After` until
    /// it catches up.
    #[arg(long, default_value_t = 262_144, env = "AGENTCRM_INTAKE_LIMIT_KIB",
          value_parser = clap::value_parser!(u32).range(1..=67_108_864))]
    intake_limit_kib: u32,
    /// Webhooks per second above which the masking agent leaves the cores to
    /// the gateway: accepted webhooks wait, durable, and are masked once the
    /// burst ends (0: never wait).
    #[arg(long, default_value_t = 2_000, env = "AGENTCRM_YIELD_ABOVE")]
    yield_above: u64,
    /// The longest, in seconds, the masking agent waits out one burst; it
    /// then masks until it has caught up before it waits again.
    #[arg(long, default_value_t = 30, env = "AGENTCRM_YIELD_MAX_WAIT",
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    yield_max_wait: u64,
}

impl UpArgs {
    fn burst_yield(&self) -> Option<masking::BurstYield> {
        (self.yield_above > 0).then(|| masking::BurstYield {
            above_per_second: self.yield_above,
            max_wait: std::time::Duration::from_secs(self.yield_max_wait),
        })
    }
}

#[derive(Args)]
pub(crate) struct StoreArgs {
    #[command(flatten)]
    data: DataDir,
    /// NATS server with JetStream.
    #[arg(long, default_value = "nats://127.0.0.1:4222", env = "AGENTCRM_NATS_URL")]
    nats_url: String,
    #[command(flatten)]
    nats: crate::NatsUser,
}

fn open_store(data_dir: &Path, options: SledOptions) -> anyhow::Result<SledStore> {
    SledStore::open(data_dir, options).map_err(|error| {
        anyhow::anyhow!("cannot open data directory {}: {error}", data_dir.display())
    })
}

/// Waits for Ctrl-C or SIGTERM, then fires `shutdown`.
pub(crate) async fn wait_for_signal(shutdown: Shutdown) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
        _ = shutdown.wait() => {},
    }
    shutdown.trigger();
}

pub(crate) fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let intake_limit_bytes = usize::try_from(args.intake_limit_kib)? << 10;
    let options = SledOptions {
        intake_limit_bytes,
        indexer_thread_start: Some(crate::lower_priority),
        ..Default::default()
    };
    let store = open_store(&args.data.data_dir, options)?;
    let runtime = crate::runtime()?;
    let agents = crate::background_runtime()?;
    let result = runtime.block_on(async {
        let shutdown = Shutdown::new();
        let log = store.log_dyn();
        store.read_models.catch_up(&log).context("bringing read models up to date")?;
        let projections =
            agents.spawn(store.read_models.clone().run(log.clone(), shutdown.receiver()));
        let bus = Arc::new(EmbeddedBus::new(log.clone(), store.checkpoints.clone()));
        let intake = Arc::new(EmbeddedIntake::new(store.log.clone()));
        let local = crate::gateway_cmd::local_state(&store)?;
        // The masking agent's vault: personal profile fields become tokens
        // before any event is written, and the agent masks raw intake with the
        // same customers' tables.
        let vault = Arc::new(crate::agent_cmd::open_vault(&store)?);
        let masking = crate::agent_cmd::spawn(
            agents.handle(),
            bus.clone(),
            intake.clone(),
            vault.clone(),
            args.burst_yield(),
            shutdown.clone(),
        )?;
        let state = gateway::AppState::new(
            bus,
            intake,
            store.read_models.clone(),
            vault,
            local,
            args.gateway.config(),
        );
        let (address, server) =
            crate::gateway_cmd::bind_and_serve(args.listen, state, shutdown.clone()).await?;
        println!("AgentCRM is up: http://{address} (data in {})", args.data.data_dir.display());
        wait_for_signal(shutdown.clone()).await;
        tracing::info!("Shutting down");
        server.await.context("gateway task")?.context("gateway")?;
        masking.await.context("masking agent task")?.context("masking agent")?;
        projections.await.context("projection task")?.context("projections")?;
        anyhow::Ok(())
    });
    drop(agents);
    store.close().context("closing the event log")?;
    result?;
    println!("AgentCRM stopped; everything is flushed");
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn store(args: StoreArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(&args.data.data_dir, SledOptions::default())?;
    let runtime = crate::runtime()?;
    let result = runtime.block_on(async {
        let bus =
            NatsBus::connect(args.nats.options(&args.nats_url, "agentcrm-store".into())).await?;
        let shutdown = Shutdown::new();
        let log = store.log_dyn();
        store.read_models.catch_up(&log).context("bringing read models up to date")?;
        let projections =
            tokio::spawn(store.read_models.clone().run(log.clone(), shutdown.receiver()));
        let service = {
            let (log, shutdown) = (log.clone(), shutdown.clone());
            tokio::spawn(async move { agent_kit::store_service::run(&bus, log, shutdown).await })
        };
        println!("Event store is up: {} → {}", args.nats_url, args.data.data_dir.display());
        tokio::select! {
            _ = wait_for_signal(shutdown.clone()) => {}
            result = service => {
                shutdown.trigger();
                result.context("store task")?.context("event-store service")?;
            }
        }
        shutdown.trigger();
        projections.await.context("projection task")?.context("projections")?;
        anyhow::Ok(())
    });
    store.close().context("closing the event log")?;
    result?;
    Ok(ExitCode::SUCCESS)
}
