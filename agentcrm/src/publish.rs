//! `agentcrm publish`: put events from another system onto the bus, from JSON
//! (one envelope, or one per line), validated against the contract first.
//!
//! Embedded: appends to the log in `--data-dir` (a stopped node). Distributed:
//! publishes to JetStream at `--nats-url`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use agent_kit::{Bus, EmbeddedBus, NatsBus, NatsOptions};
use anyhow::Context;
use bus_schema::{EventEnvelope, ExpectedRevision};
use clap::Args;

#[derive(Args)]
pub(crate) struct PublishArgs {
    /// JSON file with one envelope, or one envelope per line; `-` for stdin.
    #[arg(default_value = "-")]
    input: PathBuf,
    /// Publish to this NATS server (distributed mode).
    #[arg(long, conflicts_with = "data_dir")]
    nats_url: Option<String>,
    /// Append to the log of this stopped node (embedded mode).
    #[arg(long, env = "AGENTCRM_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Only check the events against the contract; publish nothing.
    #[arg(long)]
    check: bool,
}

/// Parses the input into envelopes; an error names the line and the field.
fn parse(text: &str) -> anyhow::Result<Vec<EventEnvelope>> {
    let trimmed = text.trim();
    let values: Vec<(usize, serde_json::Value)> = match serde_json::from_str(trimmed) {
        Ok(serde_json::Value::Array(items)) => {
            items.into_iter().enumerate().map(|(i, v)| (i + 1, v)).collect()
        }
        Ok(value) => vec![(1, value)],
        Err(_) => trimmed
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(index, line)| {
                serde_json::from_str(line)
                    .map(|value| (index + 1, value))
                    .with_context(|| format!("line {}: not JSON", index + 1))
            })
            .collect::<anyhow::Result<_>>()?,
    };
    values
        .into_iter()
        .map(|(number, value)| {
            EventEnvelope::from_json(value).map_err(|error| match error.field() {
                Some(field) => anyhow::anyhow!("event {number}: field `{field}`: {error}"),
                None => anyhow::anyhow!("event {number}: {error}"),
            })
        })
        .collect()
}

pub(crate) fn run(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let mut text = String::new();
    if args.input.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).context("reading stdin")?;
    } else {
        text = std::fs::read_to_string(&args.input)
            .with_context(|| format!("reading {}", args.input.display()))?;
    }
    let events = parse(&text)?;
    if args.check {
        println!("{} event(s) fit the contract", events.len());
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = crate::runtime()?;
    match (&args.nats_url, &args.data_dir) {
        (Some(url), _) => runtime.block_on(async {
            let bus = NatsBus::connect(NatsOptions::new(url)).await?;
            append_all(&bus, events).await
        }),
        (None, Some(data_dir)) => {
            let store = crate::open_existing(data_dir)?;
            let bus = EmbeddedBus::new(store.log_dyn(), store.checkpoints.clone());
            let result = runtime.block_on(append_all(&bus, events));
            store.close().context("closing the event log")?;
            result
        }
        (None, None) => anyhow::bail!("say where to publish: --nats-url or --data-dir"),
    }?;
    Ok(ExitCode::SUCCESS)
}

async fn append_all(bus: &dyn Bus, events: Vec<EventEnvelope>) -> anyhow::Result<()> {
    for event in events {
        let (event_id, stream) = (event.event_id, event.stream.clone());
        let outcome = bus
            .append(&stream, ExpectedRevision::Any, vec![event])
            .await
            .with_context(|| format!("publishing {event_id}"))?;
        let note = if outcome.duplicate { " (already stored)" } else { "" };
        println!("{event_id}\t{stream}\t{}{note}", outcome.revision());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_event_and_field() {
        let good = r#"{"event_type":"ActivityLogged","actor":{"kind":"integration","id":"erp"},
            "payload":{"activity_id":"a1","customer_id":"c1","kind":"replied","occurred_at":"2026-01-01T00:00:00Z"}}"#;
        assert_eq!(parse(good).unwrap().len(), 1);
        let bad = good.replace("replied", "waved").replace('\n', " ");
        let two = format!("{}\n{bad}\n", good.replace('\n', " "));
        let error = parse(&two).unwrap_err().to_string();
        assert!(error.starts_with("event 2"), "{error}");
        let error = parse(&good.replace("\"c1\"", "\"a.b\"")).unwrap_err().to_string();
        assert!(error.contains("payload.customer_id"), "{error}");
    }
}
