//! `agentcrm sources`: webhook sources and their `whsec_` secrets, on a
//! stopped node (a running one offers the same under `/api/v1/sources`).

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use gateway::sources::Sources;

#[derive(Args)]
pub(crate) struct SourcesArgs {
    #[command(subcommand)]
    command: SourcesCommand,
    /// Data directory of the node.
    #[arg(long, global = true, default_value = "./data", env = "AGENTCRM_DATA_DIR")]
    data_dir: std::path::PathBuf,
}

#[derive(Subcommand)]
enum SourcesCommand {
    /// Create a source and print its secret.
    Add {
        name: String,
        /// Also accept requests without signature headers (legacy senders that
        /// cannot sign). A signature that is present is still checked.
        #[arg(long)]
        allow_unsigned: bool,
    },
    /// Print a source's secret again.
    Secret { name: String },
    /// List the sources.
    List,
}

pub(crate) fn run(args: SourcesArgs) -> anyhow::Result<ExitCode> {
    let store = crate::open_or_create(&args.data_dir)?;
    let sources = Sources::new(store.table(gateway::sources::SOURCES_TABLE)?);
    let result = match args.command {
        SourcesCommand::Add { name, allow_unsigned } => {
            let record = sources.add(&name, allow_unsigned)?;
            println!("{}", record.secrets.first().map_or("", String::as_str));
            eprintln!("Source `{name}` receives webhooks at POST /api/v1/webhooks/{name}");
            Ok(())
        }
        SourcesCommand::Secret { name } => {
            let record = sources.record(&name)?;
            println!("{}", record.secrets.first().map_or("", String::as_str));
            Ok(())
        }
        SourcesCommand::List => {
            for record in sources.list()? {
                println!(
                    "{}\t{}\tcreated {}",
                    record.name,
                    if record.allow_unsigned { "signed or unsigned" } else { "signed" },
                    record.created_at.to_rfc3339()
                );
            }
            Ok(())
        }
    };
    store.close().context("closing the data directory")?;
    result.map(|()| ExitCode::SUCCESS)
}
