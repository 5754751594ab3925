//! Bad input from the command line or the disk gets one clear line and a
//! non-zero exit, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Node;
use tests::run_agentcrm;

fn assert_clear_failure(args: &[&str], expected: &str) {
    let (status, stdout, stderr) = run_agentcrm(args);
    assert!(!status.success(), "{args:?} succeeded: {stdout}");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    assert!(stderr.contains(expected), "{args:?}: expected {expected:?} in {stderr:?}");
}

#[test]
fn bad_arguments_missing_directories_and_unreachable_nats_fail_clearly() {
    assert_clear_failure(&["up", "--listen", "not-an-address"], "invalid value 'not-an-address'");
    assert_clear_failure(&["frobnicate"], "unrecognized subcommand");
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let missing = missing.to_str().unwrap();
    for command in ["verify", "replay"] {
        assert_clear_failure(&[command, "--data-dir", missing], "does not exist");
    }
    assert_clear_failure(&["export", "--jsonl", "--data-dir", missing], "does not exist");
    let data = dir.path().join("data");
    assert_clear_failure(
        &["store", "--nats-url", "nats://127.0.0.1:1", "--data-dir", data.to_str().unwrap()],
        "could not connect to NATS",
    );
}

#[tokio::test]
async fn a_directory_in_use_or_damaged_is_refused() {
    let mut node = Node::start();
    let client = reqwest::Client::new();
    for n in 0..20 {
        let response = client
            .post(node.url("/api/v1/customers"))
            .bearer_auth(&node.admin_key)
            .json(&serde_json::json!({"customer_id": format!("c{n}"), "name": "Someone"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    let data = node.data_str();
    assert_clear_failure(&["verify", "--data-dir", &data], "already opened by another process");
    node.stop();
    let (status, stdout, _) = run_agentcrm(&["verify", "--data-dir", &data]);
    assert!(status.success(), "{stdout}");

    // Overwrite sled's data file with garbage: sled alone would open it as an
    // empty database.
    let db = node.data_dir().join("db");
    let length = std::fs::metadata(&db).unwrap().len() as usize;
    std::fs::write(&db, vec![0x5a; length]).unwrap();
    assert_clear_failure(&["verify", "--data-dir", &data], "damaged");
    assert_clear_failure(&["up", "--data-dir", &data, "--listen", "127.0.0.1:0"], "damaged");
}
