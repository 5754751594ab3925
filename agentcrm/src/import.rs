//! `agentcrm import customers.csv`: the strangler path from a legacy CRM.
//!
//! Columns are recognised by header (HubSpot and Salesforce export names
//! included). Each row is upserted by normalised email, then phone, through
//! the vault's keyed index: a known customer gets a `CustomerProfileChanged`
//! with only the fields that differ (appended at its current revision), a new
//! one a `CustomerRegistered` with an id derived from its email or phone, so a
//! second run of the same file changes nothing. Personal fields are tokenised
//! before any event is written. Runs on a stopped node.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use agent_kit::vault::{LookupKind, PiiVault, ProfileFields};
use agent_kit::{Bus, BusError, EmbeddedBus};
use anyhow::Context;
use bus_schema::{
    Actor, ActorKind, CustomerProfileChanged, CustomerRegistered, EventEnvelope, EventPayload,
    ExpectedRevision, StreamId,
};
use clap::Args;
use event_store::customer360::Customer360;
use masking::MaskingVault;
use masking::service::{normalise_email, normalise_phone};
use uuid::Uuid;

#[derive(Args)]
pub(crate) struct ImportArgs {
    /// The CSV export (header row first).
    csv: PathBuf,
    /// Data directory of the (stopped) node.
    #[arg(long, default_value = "./data", env = "AGENTCRM_DATA_DIR")]
    data_dir: PathBuf,
    /// Print what would change; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// The import's name, recorded as the actor of its events.
    #[arg(long, default_value = "csv-import")]
    actor: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Column {
    Id,
    Name,
    FirstName,
    LastName,
    Email,
    Phone,
    Company,
    Owner,
    Stage,
}

/// The column a header names, if any: ours, HubSpot's and Salesforce's.
fn column(header: &str) -> Option<Column> {
    let key: String =
        header.trim().to_lowercase().chars().filter(|c| c.is_alphanumeric()).collect();
    Some(match key.as_str() {
        "customerid" | "id" | "recordid" | "contactid" => Column::Id,
        "name" | "fullname" | "contactname" => Column::Name,
        "firstname" => Column::FirstName,
        "lastname" => Column::LastName,
        "email" | "emailaddress" | "email1" => Column::Email,
        "phone" | "phonenumber" | "mobile" | "mobilephone" | "mobilephonenumber" => Column::Phone,
        "company" | "companyname" | "account" | "accountname" | "associatedcompany" => {
            Column::Company
        }
        "owner" | "contactowner" | "hubspotowner" | "ownername" | "leadowner" => Column::Owner,
        "stage" | "lifecyclestage" | "leadstatus" | "status" => Column::Stage,
        _ => return None,
    })
}

#[derive(Debug, Default, Clone, PartialEq)]
struct Row {
    id: Option<String>,
    name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    company: Option<String>,
    owner: Option<String>,
    stage: Option<String>,
}

fn read_row(columns: &[Option<Column>], record: &csv::StringRecord) -> Result<Row, String> {
    let mut row = Row::default();
    let (mut first, mut last) = (None, None);
    for (column, value) in columns.iter().zip(record.iter()) {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        let slot = match column {
            Some(Column::Id) => &mut row.id,
            Some(Column::Name) => &mut row.name,
            Some(Column::FirstName) => &mut first,
            Some(Column::LastName) => &mut last,
            Some(Column::Email) => &mut row.email,
            Some(Column::Phone) => &mut row.phone,
            Some(Column::Company) => &mut row.company,
            Some(Column::Owner) => &mut row.owner,
            Some(Column::Stage) => &mut row.stage,
            None => continue,
        };
        *slot = Some(value.to_owned());
    }
    if row.name.is_none() {
        let joined = [first, last].into_iter().flatten().collect::<Vec<_>>().join(" ");
        row.name = Some(joined).filter(|name| !name.is_empty());
    }
    if row.name.is_none() {
        return Err("no name".into());
    }
    if let Some(email) = &row.email {
        let email = normalise_email(email);
        let valid = email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !email.contains(char::is_whitespace)
        });
        if !valid {
            return Err(format!("email {email:?} is not an email address"));
        }
        row.email = Some(email);
    }
    if let Some(phone) = &row.phone {
        let digits = normalise_phone(phone).trim_start_matches('+').len();
        if !(5..=20).contains(&digits) {
            return Err(format!("phone {phone:?} is not a phone number"));
        }
    }
    if row.email.is_none() && row.phone.is_none() && row.id.is_none() {
        return Err("needs an email, a phone or an id to match on".into());
    }
    if let Some(id) = &row.id {
        bus_schema::stream::validate_id("customer_id", id).map_err(|error| error.to_string())?;
    }
    Ok(row)
}

/// A new customer's id: derived from what identifies them, so a re-run finds
/// the same id.
fn derived_id(row: &Row) -> String {
    if let Some(id) = &row.id {
        return id.clone();
    }
    let basis = match (&row.email, &row.phone) {
        (Some(email), _) => format!("email:{email}"),
        (None, Some(phone)) => format!("phone:{}", normalise_phone(phone)),
        (None, None) => String::new(),
    };
    format!("cus_{}", Uuid::new_v5(&Uuid::NAMESPACE_OID, basis.as_bytes()).simple())
}

enum Change {
    Register(String),
    Update { customer_id: String, revision: u64, fields: Vec<&'static str> },
    Unchanged,
}

#[derive(Default)]
struct Report {
    created: usize,
    updated: usize,
    unchanged: usize,
    rejected: Vec<(u64, String)>,
}

pub(crate) fn run(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(&args.csv)
        .with_context(|| format!("reading {}", args.csv.display()))?;
    let columns: Vec<Option<Column>> = reader.headers()?.iter().map(column).collect();
    if !columns.contains(&Some(Column::Email)) && !columns.contains(&Some(Column::Phone)) {
        anyhow::bail!("no email or phone column found in the header");
    }
    // Line numbers come from byte offsets: the reader's own line counter is
    // off by one on CRLF files.
    let bytes =
        std::fs::read(&args.csv).with_context(|| format!("reading {}", args.csv.display()))?;
    let newlines: Vec<u64> = bytes
        .iter()
        .enumerate()
        .filter(|(_, byte)| **byte == b'\n')
        .map(|(at, _)| at as u64)
        .collect();
    let line_of = |offset: u64| {
        // A record may be reported as starting on the `\n` of a CRLF pair.
        let mut offset = offset as usize;
        while bytes.get(offset).is_some_and(|byte| *byte == b'\r' || *byte == b'\n') {
            offset += 1;
        }
        newlines.partition_point(|at| (*at as usize) < offset) as u64 + 1
    };
    let total = newlines.len();
    let store = crate::open_or_create(&args.data_dir)?;
    let runtime = crate::runtime()?;
    let result = runtime.block_on(async {
        let log = store.log_dyn();
        store.read_models.catch_up(&log).context("bringing read models up to date")?;
        let bus = EmbeddedBus::new(log, store.checkpoints.clone());
        // The node's vault, the one `up` and its masking agent use.
        let vault = crate::agent_cmd::open_vault(&store)?;
        let progress = indicatif::ProgressBar::new(total.saturating_sub(1) as u64);
        progress.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows {per_sec} {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let actor = Actor::new(ActorKind::Import, args.actor.clone());
        let mut report = Report::default();
        // Rows already written in this run, for files that repeat a customer.
        let mut written: HashMap<String, Customer360> = HashMap::new();
        for record in reader.records() {
            progress.inc(1);
            let record = match record {
                Ok(record) => record,
                Err(error) => {
                    let line = error.position().map_or(0, |position| line_of(position.byte()));
                    report.rejected.push((line, error.to_string()));
                    continue;
                }
            };
            let line = record.position().map_or(0, |position| line_of(position.byte()));
            let row = match read_row(&columns, &record) {
                Ok(row) => row,
                Err(reason) => {
                    report.rejected.push((line, reason));
                    continue;
                }
            };
            let change = plan(&store, &vault, &written, &row).await?;
            match &change {
                Change::Unchanged => report.unchanged += 1,
                Change::Register(id) => {
                    report.created += 1;
                    if args.dry_run {
                        progress.suspend(|| println!("line {line}: create {id}"));
                    }
                }
                Change::Update { customer_id, fields, .. } => {
                    report.updated += 1;
                    if args.dry_run {
                        progress.suspend(|| {
                            println!("line {line}: update {customer_id}: {}", fields.join(", "));
                        });
                    }
                }
            }
            if !args.dry_run
                && let Some(row) = apply(&bus, &vault, &actor, change, &row).await?
            {
                written.insert(row.customer_id.clone(), row);
            }
        }
        progress.finish_and_clear();
        anyhow::Ok(report)
    });
    store.close().context("closing the event log")?;
    let report = result?;
    let verb = if args.dry_run { "would be" } else { "were" };
    println!(
        "{} created, {} updated, {} unchanged, {} rejected ({verb} written)",
        report.created,
        report.updated,
        report.unchanged,
        report.rejected.len()
    );
    for (line, reason) in &report.rejected {
        println!("rejected line {line}: {reason}");
    }
    Ok(ExitCode::SUCCESS)
}

/// What a row means against what is stored.
async fn plan(
    store: &event_store::SledStore,
    vault: &MaskingVault,
    written: &HashMap<String, Customer360>,
    row: &Row,
) -> anyhow::Result<Change> {
    let mut existing = None;
    if let Some(email) = &row.email {
        existing = vault.lookup(LookupKind::Email, email).await?;
    }
    if existing.is_none()
        && let Some(phone) = &row.phone
    {
        existing = vault.lookup(LookupKind::Phone, phone).await?;
    }
    let customer_id = existing.unwrap_or_else(|| derived_id(row));
    let current = match written.get(&customer_id) {
        Some(row) => Some(row.clone()),
        None => store.read_models.customer360.get(&customer_id)?,
    };
    let Some(current) = current.filter(|current| current.registered) else {
        return Ok(Change::Register(customer_id));
    };
    let mut fields = Vec::new();
    let personal = [
        ("name", &row.name, &current.name),
        ("email", &row.email, &current.email),
        ("phone", &row.phone, &current.phone),
    ];
    for (field, new, stored) in personal {
        if let Some(new) = new {
            let clear = vault.reveal(&customer_id, stored).await?;
            let same = match field {
                "email" => normalise_email(&clear) == normalise_email(new),
                "phone" => normalise_phone(&clear) == normalise_phone(new),
                _ => clear.trim() == new.trim(),
            };
            if !same {
                fields.push(field);
            }
        }
    }
    for (field, new, stored) in [
        ("company", &row.company, &current.company),
        ("owner", &row.owner, &current.owner),
        ("stage", &row.stage, &current.stage),
    ] {
        if new.as_ref().is_some_and(|new| new != stored) {
            fields.push(field);
        }
    }
    Ok(if fields.is_empty() {
        Change::Unchanged
    } else {
        Change::Update { customer_id, revision: current.revision, fields }
    })
}

/// Writes a planned change; returns the customer's row as it now is.
async fn apply(
    bus: &EmbeddedBus,
    vault: &MaskingVault,
    actor: &Actor,
    change: Change,
    row: &Row,
) -> anyhow::Result<Option<Customer360>> {
    let pick = |fields: &[&str], name: &str, value: &Option<String>| {
        if fields.contains(&name) { value.clone() } else { None }
    };
    let (customer_id, expected, fields): (String, ExpectedRevision, Vec<&str>) = match &change {
        Change::Unchanged => return Ok(None),
        Change::Register(id) => (id.clone(), ExpectedRevision::NoStream, Vec::new()),
        Change::Update { customer_id, revision, fields } => {
            (customer_id.clone(), ExpectedRevision::Exact(*revision), fields.clone())
        }
    };
    let registering = matches!(change, Change::Register(_));
    let personal = if registering {
        ProfileFields { name: row.name.clone(), email: row.email.clone(), phone: row.phone.clone() }
    } else {
        ProfileFields {
            name: pick(&fields, "name", &row.name),
            email: pick(&fields, "email", &row.email),
            phone: pick(&fields, "phone", &row.phone),
        }
    };
    let tokens = vault.tokenize_profile(&customer_id, personal).await?;
    let payload = if registering {
        EventPayload::CustomerRegistered(CustomerRegistered {
            customer_id: customer_id.clone(),
            name: tokens.name.unwrap_or_default(),
            email: tokens.email.unwrap_or_default(),
            phone: tokens.phone.unwrap_or_default(),
            company: row.company.clone().unwrap_or_default(),
            owner: row.owner.clone().unwrap_or_default(),
            stage: row.stage.clone().unwrap_or_default(),
        })
    } else {
        EventPayload::CustomerProfileChanged(CustomerProfileChanged {
            customer_id: customer_id.clone(),
            name: tokens.name,
            email: tokens.email,
            phone: tokens.phone,
            company: pick(&fields, "company", &row.company),
            owner: pick(&fields, "owner", &row.owner),
            stage: pick(&fields, "stage", &row.stage),
        })
    };
    let stream = StreamId::customer(&customer_id)?;
    let event = EventEnvelope::new(stream.clone(), actor.clone(), payload.clone());
    let outcome = match bus.append(&stream, expected, vec![event.clone()]).await {
        Ok(outcome) => outcome,
        // A stream with interactions but no registration: register at its revision.
        Err(BusError::Conflict { actual, .. }) if registering => {
            bus.append(&stream, ExpectedRevision::Exact(actual), vec![event.clone()]).await?
        }
        Err(error) => return Err(error.into()),
    };
    let projection = event_store::customer360::Customer360Projection;
    let recorded = bus_schema::RecordedEvent { position: outcome.revision(), envelope: event };
    // The stream as stored, or at least the event just appended.
    let folded = bus
        .read_stream(&stream)
        .await
        .ok()
        .filter(|events| !events.is_empty())
        .unwrap_or_else(|| vec![recorded]);
    let mut state = None;
    for event in folded {
        event_store::projection::Projection::apply(&projection, &mut state, event);
    }
    Ok(state)
}
