//! `agentcrm`: one binary for the embedded default and for every service.
//!
//! `main` only parses arguments, installs logging and calls a subcommand; each
//! subcommand lives in its own module. Errors reach the user as one line and a
//! non-zero exit, never a panic.

mod agent_cmd;
mod audit;
mod forget_cmd;
mod gateway_cmd;
mod import;
mod intake;
mod keys;
mod mask_cmd;
mod node;
mod publish;
mod replay;
mod sources;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

// glibc's malloc spent a tenth of the gateway's CPU under load and half of a
// replay freeing across threads; mimalloc keeps per-thread heaps.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// AgentCRM: an AI-native CRM built as an event-sourced ecosystem of agents.
#[derive(Parser)]
#[command(name = "agentcrm", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything in one process: the sled log as the bus, projections and
    /// the gateway (the embedded default).
    Up(node::UpArgs),
    /// Run the event-store service: copy JetStream's CRM_EVENTS into the sled log
    /// and keep the read models.
    Store(node::StoreArgs),
    /// Rebuild every read model from position 0 and print a digest per model.
    Replay(replay::ReplayArgs),
    /// Walk the hash chain and report the first record that breaks it.
    Verify(DataDir),
    /// Write the whole log to stdout, for audit.
    Export(audit::ExportArgs),
    /// Run the gateway as its own service on NATS (distributed mode).
    Gateway(gateway_cmd::GatewayArgs),
    /// Webhook sources and their signing secrets (on a stopped node).
    Sources(sources::SourcesArgs),
    /// API keys and their roles (on a stopped node).
    Keys(keys::KeysArgs),
    /// The embedded intake queue (on a stopped node).
    Intake(intake::IntakeArgs),
    /// Publish events from JSON onto the bus, checked against the contract.
    Publish(publish::PublishArgs),
    /// Import customers from a CSV export (upsert by email, then phone).
    Import(import::ImportArgs),
    /// Run an agent as its own service on NATS (distributed mode).
    Agent(agent_cmd::AgentArgs),
    /// Mask personal data in JSON lines `{"text": …}` from stdin to stdout.
    Mask(mask_cmd::MaskArgs),
    /// Forget a customer (on a stopped node): destroy their vault key and
    /// record CustomerForgotten.
    Forget(forget_cmd::ForgetArgs),
}

/// Where the node keeps its sled files.
#[derive(Args, Clone)]
struct DataDir {
    /// Data directory of the node.
    #[arg(long, default_value = "./data", env = "AGENTCRM_DATA_DIR")]
    data_dir: PathBuf,
}

/// The NATS user a service connects as (see `deploy/nats/nats-server.conf`).
#[derive(Args, Clone)]
struct NatsUser {
    /// NATS user of this service (`gateway`, `masking`, `store`, …); its
    /// replies then arrive under its own inbox prefix `_INBOX_<user>`.
    #[arg(long, env = "AGENTCRM_NATS_USER")]
    nats_user: Option<String>,
    /// Password of the NATS user.
    #[arg(long, env = "AGENTCRM_NATS_PASSWORD", hide_env_values = true, requires = "nats_user")]
    nats_password: Option<String>,
}

impl NatsUser {
    /// NATS options for `url` as this user, named `client_name`.
    fn options(&self, url: &str, client_name: String) -> agent_kit::NatsOptions {
        let mut options = agent_kit::NatsOptions::new(url);
        options.client_name = client_name;
        if let Some(user) = &self.nats_user {
            options.user = Some((user.clone(), self.nats_password.clone().unwrap_or_default()));
        }
        options
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Up(args) => node::up(args),
        Command::Store(args) => node::store(args),
        Command::Replay(args) => replay::run(args),
        Command::Verify(args) => audit::verify(&args.data_dir),
        Command::Export(args) => audit::export(args),
        Command::Gateway(args) => gateway_cmd::run(args),
        Command::Sources(args) => sources::run(args),
        Command::Keys(args) => keys::run(args),
        Command::Intake(args) => intake::run(args),
        Command::Publish(args) => publish::run(args),
        Command::Import(args) => import::run(args),
        Command::Agent(args) => agent_cmd::run(args),
        Command::Mask(args) => mask_cmd::run(args),
        Command::Forget(args) => forget_cmd::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The tokio runtime every async subcommand runs on.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// Where a node's agents, projections and replica run, beside the gateway's
/// runtime: a batch of masking or folding is CPU work that would otherwise
/// hold a gateway worker for milliseconds (tokio is cooperative), and the
/// requests behind it would wait. The OS shares the cores between the two,
/// with the background threads at a lower priority: a request that arrives
/// while both cores fold or mask runs first, and the agents catch up as soon
/// as a core is free (what waits meanwhile is durable in the intake, within
/// its limit).
fn background_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("agentcrm-background")
        .on_thread_start(lower_priority)
        .enable_all()
        .build()?)
}

/// Puts the calling thread in Linux's idle scheduling class (`SCHED_IDLE`),
/// below nice 19: it runs when no request is runnable, and a request that
/// wakes up takes the core from it at once (a nice 19 thread may keep a core
/// for the rest of its time slice). Elsewhere, or where that is refused, the
/// thread keeps its priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::unix::{
            NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
            thread_native_id,
        };
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        if let Err(error) = set_thread_priority_and_policy(
            thread_native_id(),
            thread_priority::ThreadPriority::Min,
            idle,
        ) {
            tracing::debug!(error = ?error, "Cannot lower a background thread's priority");
        }
    }
}

/// Opens an existing node's store (never creates one: a typo in `--data-dir`
/// must not silently start an empty CRM).
fn open_existing(data_dir: &std::path::Path) -> anyhow::Result<event_store::SledStore> {
    let options = event_store::SledOptions { create: false, ..Default::default() };
    event_store::SledStore::open(data_dir, options).map_err(|error| {
        anyhow::anyhow!("cannot open data directory {}: {error}", data_dir.display())
    })
}

/// Opens a node's store, creating the directory on first use (so sources and
/// keys can be set up before the first `up`).
fn open_or_create(data_dir: &std::path::Path) -> anyhow::Result<event_store::SledStore> {
    event_store::SledStore::open(data_dir, event_store::SledOptions::default()).map_err(|error| {
        anyhow::anyhow!("cannot open data directory {}: {error}", data_dir.display())
    })
}
