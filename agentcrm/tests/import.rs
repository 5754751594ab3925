#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `agentcrm import`: a 10k-row HubSpot export imported twice leaves 10k
//! customers; a changed row updates only what changed; Salesforce headers are
//! recognised; bad rows are reported with their line numbers.

mod common;

use std::fmt::Write as _;

use common::agentcrm;

fn event_types(data_dir: &str) -> Vec<String> {
    agentcrm(&["export", "--jsonl", "--data-dir", data_dir])
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            record["event"]["event_type"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn importing_the_same_file_twice_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let mut hubspot = String::from(
        "First Name,Last Name,Email,Phone Number,Company Name,Contact owner,Lifecycle Stage\r\n",
    );
    for i in 0..10_000 {
        writeln!(
            hubspot,
            "Ann{i},Lee,Ann{i}@Example.com,+86 138{i:08},Acme {},alice,lead\r",
            i % 97
        )
        .unwrap();
    }
    hubspot.push_str("No,Email,not-an-email,,Acme,,\r\n");
    hubspot.push_str(",,,,,,\r\n");
    let file = dir.path().join("hubspot.csv");
    std::fs::write(&file, &hubspot).unwrap();
    let file = file.to_str().unwrap();

    let first = agentcrm(&["import", file, "--data-dir", data]);
    assert!(first.starts_with("10000 created, 0 updated, 0 unchanged, 2 rejected"), "{first}");
    assert!(first.contains("rejected line 10002: email \"not-an-email\""), "{first}");
    assert!(first.contains("rejected line 10003: no name"), "{first}");
    let second = agentcrm(&["import", file, "--data-dir", data]);
    assert!(second.starts_with("0 created, 0 updated, 10000 unchanged"), "{second}");
    let types = event_types(data);
    assert_eq!(types.len(), 10_000);
    assert!(types.iter().all(|t| t == "CustomerRegistered"));

    // One changed owner, matched by phone only (no email column): one update,
    // shown by --dry-run first, and nothing written by it.
    let salesforce = "FirstName,LastName,MobilePhone,Account Name,Owner Name\n\
                      Ann5,Lee,+86 13800000005,Acme 5,bob\n";
    let file = dir.path().join("salesforce.csv");
    std::fs::write(&file, salesforce).unwrap();
    let file = file.to_str().unwrap();
    let dry = agentcrm(&["import", file, "--data-dir", data, "--dry-run"]);
    assert!(dry.contains("update cus_") && dry.contains(": owner"), "{dry}");
    assert_eq!(event_types(data).len(), 10_000);
    let applied = agentcrm(&["import", file, "--data-dir", data]);
    assert!(applied.starts_with("0 created, 1 updated, 0 unchanged"), "{applied}");
    let types = event_types(data);
    assert_eq!(types.len(), 10_001);
    assert_eq!(types.last().map(String::as_str), Some("CustomerProfileChanged"));

    // No raw personal data reached the log.
    let export = agentcrm(&["export", "--jsonl", "--data-dir", data]);
    assert!(!export.contains("ann5@example.com") && !export.contains("Ann5"));
}
