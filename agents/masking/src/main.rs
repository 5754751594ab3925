//! `masking`: the masking agent's command line. `masking mask` reads JSONL
//! requests on stdin and writes masked JSONL on stdout.

use std::io::{self, BufReader, BufWriter};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use masking::{Detector, DetectorConfig, JsonlOptions, mask_jsonl_with};

#[derive(Parser)]
#[command(name = "masking", about = "Mask personal data in CRM text")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Mask `{"text": …}` lines from stdin into `{"masked": …, "entities": […]}` lines on stdout.
    Mask {
        /// Detector configuration (JSON: `{"custom_patterns": [{"name", "pattern"}]}`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Restore every masked text and add `"roundtrip": true|false` to each line;
        /// the count of failures goes to stderr and makes the exit status 1.
        #[arg(long)]
        roundtrip: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Mask { config, roundtrip } => {
            let config = match config {
                Some(path) => {
                    let raw = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    serde_json::from_str(&raw)
                        .with_context(|| format!("parsing {}", path.display()))?
                }
                None => DetectorConfig::default(),
            };
            let detector = Detector::new(&config).context("building the detector")?;
            let stdin = BufReader::new(io::stdin().lock());
            let stdout = BufWriter::new(io::stdout().lock());
            let summary = mask_jsonl_with(stdin, stdout, &detector, JsonlOptions { roundtrip })
                .context("masking stdin to stdout")?;
            if roundtrip {
                eprintln!("roundtrip failures: {}", summary.roundtrip_failures);
                if summary.roundtrip_failures > 0 {
                    std::process::exit(1);
                }
            }
            Ok(())
        }
    }
}
