//! `agentcrm verify` and `agentcrm export`: the log, for auditors.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use event_store::verify::{Verdict, verify as verify_log};

#[derive(Args)]
pub(crate) struct ExportArgs {
    /// Data directory of the node.
    #[arg(long, default_value = "./data", env = "AGENTCRM_DATA_DIR")]
    data_dir: PathBuf,
    /// One JSON object per line: position, hashes and the event.
    #[arg(long, required = true)]
    jsonl: bool,
}

pub(crate) fn verify(data_dir: &Path) -> anyhow::Result<ExitCode> {
    let store = crate::open_existing(data_dir)?;
    let verdict = verify_log(&store.log).context("reading the log")?;
    store.close()?;
    match verdict {
        Verdict::Intact { records, head, head_hash } => {
            println!(
                "ok: {records} records, chain intact up to position {head} (head hash {head_hash})"
            );
            Ok(ExitCode::SUCCESS)
        }
        Verdict::Broken { position, reason } => {
            println!("broken at position {position}: {reason}");
            Ok(ExitCode::FAILURE)
        }
    }
}

pub(crate) fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let store = crate::open_existing(&args.data_dir)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for entry in store.log.raw_records(0) {
        let (position, record) = entry?;
        let event = record.to_event()?;
        let line = serde_json::json!({
            "position": position,
            "prev_hash": hex_string(&record.prev_hash),
            "hash": hex_string(&record.hash),
            "event": event.envelope.to_json(),
        });
        if writeln!(out, "{line}").is_err() {
            // The reader went away (e.g. `| head`): stop quietly.
            break;
        }
    }
    let _ = out.flush();
    drop(out);
    store.close()?;
    Ok(ExitCode::SUCCESS)
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
