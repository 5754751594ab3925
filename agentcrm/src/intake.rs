//! `agentcrm intake list`: what waits in the embedded intake queue, for
//! operators and for crash tests (run it on a stopped node). Prints one line
//! per item: sequence, event id, source, delivery id, event type. Raw content
//! is never printed.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use bus_schema::RawIntake;
use clap::{Args, Subcommand};

#[derive(Args)]
pub(crate) struct IntakeArgs {
    #[command(subcommand)]
    command: IntakeCommand,
    /// Data directory of the node.
    #[arg(long, global = true, default_value = "./data", env = "AGENTCRM_DATA_DIR")]
    data_dir: std::path::PathBuf,
}

#[derive(Subcommand)]
enum IntakeCommand {
    /// List queued submissions (tab-separated).
    List,
}

pub(crate) fn run(args: IntakeArgs) -> anyhow::Result<ExitCode> {
    let store = crate::open_existing(&args.data_dir)?;
    let IntakeCommand::List = args.command;
    let items = store.log.intake().pending(0, usize::MAX).context("reading the intake queue")?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (sequence, bytes) in items {
        let line = match RawIntake::decode(&bytes) {
            Ok(intake) => format!(
                "{sequence}\t{}\t{}\t{}\t{}",
                intake.event_id,
                intake.source,
                intake.delivery_id.unwrap_or_default(),
                intake.event_type
            ),
            Err(error) => format!("{sequence}\tundecodable: {error}"),
        };
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    let _ = out.flush();
    drop(out);
    store.close()?;
    Ok(ExitCode::SUCCESS)
}
