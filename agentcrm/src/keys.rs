//! `agentcrm keys`: API keys on a stopped node (a running one offers the same
//! under `/api/v1/keys`). A key is printed once; only its hash is stored.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use gateway::auth::Role;
use gateway::keys::ApiKeys;

#[derive(Args)]
pub(crate) struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
    /// Data directory of the node.
    #[arg(long, global = true, default_value = "./data", env = "AGENTCRM_DATA_DIR")]
    data_dir: std::path::PathBuf,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print it (the only time it is shown).
    Create {
        /// admin, sales, support, auditor or integration.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Who holds it: the actor recorded on what the key writes.
        #[arg(long)]
        name: String,
    },
    /// List key names and roles.
    List,
    /// Revoke a key by name.
    Revoke { name: String },
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| {
        format!("unknown role `{text}`: admin, sales, support, auditor, integration")
    })
}

pub(crate) fn run(args: KeysArgs) -> anyhow::Result<ExitCode> {
    let store = crate::open_or_create(&args.data_dir)?;
    let keys = ApiKeys::new(store.table(gateway::keys::KEYS_TABLE)?);
    let result: anyhow::Result<()> = match args.command {
        KeysCommand::Create { role, name } => keys
            .create(&name, role)
            .map(|(key, _)| {
                println!("{key}");
                eprintln!("Key `{name}` ({}) created; it is not shown again", role.as_str());
            })
            .map_err(Into::into),
        KeysCommand::List => keys
            .list()
            .map(|records| {
                for record in records {
                    println!(
                        "{}\t{}\tcreated {}",
                        record.name,
                        record.role.as_str(),
                        record.created_at.to_rfc3339()
                    );
                }
            })
            .map_err(Into::into),
        KeysCommand::Revoke { name } => keys.revoke(&name).map_err(Into::into),
    };
    store.close().context("closing the data directory")?;
    result.map(|()| ExitCode::SUCCESS)
}
