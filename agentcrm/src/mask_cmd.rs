//! `agentcrm mask`: JSON lines `{"text": …}` on stdin, `{"masked": …,
//! "entities": [{"start", "end", "type", "score"}]}` on stdout, offsets in
//! Unicode code points. Each line is masked on its own (its own token table);
//! nothing is stored.

use std::io::{self, BufReader, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use masking::{JsonlOptions, mask_jsonl_with};

#[derive(Args)]
pub(crate) struct MaskArgs {
    /// Detector configuration (JSON: `{"custom_patterns": [{"name", "pattern"}]}`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Also restore each masked text and add `"roundtrip": true|false`; any
    /// failure makes the exit status non-zero.
    #[arg(long)]
    roundtrip: bool,
}

pub(crate) fn run(args: MaskArgs) -> anyhow::Result<ExitCode> {
    let detector = crate::agent_cmd::load_detector(args.config.as_deref())?;
    let stdin = BufReader::new(io::stdin().lock());
    let stdout = BufWriter::new(io::stdout().lock());
    let summary =
        mask_jsonl_with(stdin, stdout, &detector, JsonlOptions { roundtrip: args.roundtrip })
            .context("masking stdin to stdout")?;
    if summary.errors > 0 {
        eprintln!("{} malformed lines answered with an error", summary.errors);
    }
    if args.roundtrip && summary.roundtrip_failures > 0 {
        eprintln!("roundtrip failures: {}", summary.roundtrip_failures);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
