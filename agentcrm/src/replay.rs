//! `agentcrm replay`: rebuild every read model from position 0.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Args)]
pub(crate) struct ReplayArgs {
    /// Data directory of the node.
    #[arg(long, default_value = "./data", env = "AGENTCRM_DATA_DIR")]
    data_dir: PathBuf,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Brings the live models to the head, notes their digests, rebuilds each from
/// scratch and compares. A mismatch means a projection is not a pure fold: that
/// is reported and the exit status is non-zero.
pub(crate) fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let store = crate::open_existing(&args.data_dir)?;
    let log = store.log_dyn();
    let head = log.head();
    let mut all_match = true;
    for model in store.read_models.all() {
        model.catch_up(&log).with_context(|| format!("catching up {}", model.name()))?;
        let live = model.digest()?;
        let bar = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(head) };
        bar.set_style(
            ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} ({per_sec})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(model.name());
        let started = std::time::Instant::now();
        let events = model
            .rebuild(&log, &mut |position| bar.set_position(position))
            .with_context(|| format!("rebuilding {}", model.name()))?;
        bar.finish_and_clear();
        let rebuilt = model.digest()?;
        let verdict = if rebuilt == live { "matches live" } else { "DIFFERS from live" };
        all_match &= rebuilt == live;
        println!(
            "{} digest={} events={} head={} live={} {} ({:.2}s)",
            model.name(),
            rebuilt,
            events,
            head,
            live,
            verdict,
            started.elapsed().as_secs_f64()
        );
    }
    store.close()?;
    Ok(if all_match { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
