#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `agentcrm forget`: crypto-shredding on a real node. After it the vault can
//! no longer reveal the customer's tokens, the look-up by email finds nobody,
//! the log has one more event (`CustomerForgotten`) and still replays and
//! verifies; a running node's data directory is refused with a clear error.
//! The same through the API on a running node: `POST
//! /api/v1/customers/{id}/forget`, admin only, idempotent.

mod common;

use std::time::{Duration, Instant};

use common::{Node, agentcrm, post_signed};
use serde_json::json;
use tests::run_agentcrm;

async fn get(client: &reqwest::Client, node: &Node, path: &str) -> serde_json::Value {
    let response = client.get(node.url(path)).bearer_auth(&node.admin_key).send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_shreds_the_key_and_keeps_the_log_verifiable() {
    let mut node = Node::start();
    let client = reqwest::Client::new();
    let body = json!({"event_type": "interaction", "data": {
        "email": "ann.lee@example.com", "name": "Ann Lee", "channel": "phone",
        "content": "Ann Lee here, my new number is 13812345678"}});
    let url = node.url("/crm/webhooks/interaction");
    let (status, _) = post_signed(&client, &url, &node.default_secret, "forget_1", &body).await;
    assert_eq!(status, 202);

    let deadline = Instant::now() + Duration::from_secs(20);
    let customer = loop {
        let page = get(&client, &node, "/api/v1/customers?email=ann.lee@example.com").await;
        if let Some(row) = page["items"].as_array().and_then(|items| items.first())
            && row["interaction_count"] == 1
        {
            break row["customer_id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "the interaction never reached the 360 view");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let path = format!("/api/v1/customers/{customer}/360?reveal=true");
    let before = get(&client, &node, &path).await;
    assert_eq!(before["customer"]["email"], "ann.lee@example.com");
    assert_eq!(before["recent_interactions"][0]["content"], body["data"]["content"]);

    // The node holds the data directory: forget refuses and says why.
    let (status, _, stderr) = run_agentcrm(&["forget", &customer, "--data-dir", &node.data_str()]);
    assert!(!status.success());
    assert!(stderr.contains("stop `agentcrm up` first"), "{stderr}");

    node.stop();
    let out =
        agentcrm(&["forget", &customer, "--data-dir", &node.data_str(), "--reason", "ticket T-42"]);
    assert!(out.contains("key destroyed") && out.contains("look-up entries removed: 1"), "{out}");
    // Again: nothing left to destroy, the event is stored once.
    let out = agentcrm(&["forget", &customer, "--data-dir", &node.data_str()]);
    assert!(out.contains("no key was left") && out.contains("already recorded"), "{out}");
    let (status, _, _) = run_agentcrm(&["forget", "cus_nobody", "--data-dir", &node.data_str()]);
    assert!(!status.success());

    let (status, stdout, stderr) =
        run_agentcrm(&["replay", "--quiet", "--data-dir", &node.data_str()]);
    assert!(status.success(), "replay: {stdout} {stderr}");
    assert!(stdout.contains("matches live"), "{stdout}");
    let (status, stdout, _) = run_agentcrm(&["verify", "--data-dir", &node.data_str()]);
    assert!(status.success() && stdout.starts_with("ok: 3 records"), "{stdout}");
    let export = agentcrm(&["export", "--jsonl", "--data-dir", &node.data_str()]);
    let types: Vec<String> = export
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .map(|record| record["event"]["event_type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types, ["CustomerRegistered", "InteractionRecorded", "CustomerForgotten"]);
    for raw in ["ann.lee@example.com", "Ann Lee", "13812345678"] {
        assert!(!export.contains(raw), "{raw} in the export");
    }

    node.up();
    let after = get(&client, &node, &path).await;
    assert_eq!(after["customer"]["email"], "");
    assert_eq!(after["customer"]["name"], "");
    assert_eq!(
        after["recent_interactions"][0]["content"],
        "<PERSON_1> here, my new number is <PHONE_1>"
    );
    let page = get(&client, &node, "/api/v1/customers?email=ann.lee@example.com").await;
    assert_eq!(page["items"], json!([]));
    node.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_through_the_api_is_admin_only_and_idempotent() {
    let mut node = Node::start();
    let client = reqwest::Client::new();
    let created = client
        .post(node.url("/api/v1/customers"))
        .bearer_auth(&node.admin_key)
        .json(&json!({"customer_id": "cus_api", "name": "Ann Lee",
            "email": "ann.api@example.com", "phone": "13812345678"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let body = json!({"event_type": "interaction", "data": {"customer_id": "cus_api",
        "channel": "chat", "content": "Ann Lee: write to ann.api@example.com"}});
    let url = node.url("/crm/webhooks/interaction");
    let (status, _) = post_signed(&client, &url, &node.default_secret, "api_forget_1", &body).await;
    assert_eq!(status, 202);
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&client, &node, "/api/v1/customers/cus_api").await["interaction_count"] != 1 {
        assert!(Instant::now() < deadline, "the interaction never reached the 360 view");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let forget = |key: &str, body: Option<serde_json::Value>, customer: &str| {
        let mut request = client
            .post(node.url(&format!("/api/v1/customers/{customer}/forget")))
            .bearer_auth(key.to_owned());
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };
    let sales = node.key(&client, "alice", "sales").await;
    assert_eq!(forget(&sales, None, "cus_api").await.unwrap().status(), 403);
    let refused = forget(&node.admin_key, Some(json!({"why": "x"})), "cus_api").await.unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(forget(&node.admin_key, None, "cus_nobody").await.unwrap().status(), 404);

    let reason = json!({"reason": "erasure request sent from ann.api@example.com"});
    let response = forget(&node.admin_key, Some(reason), "cus_api").await.unwrap();
    assert_eq!(response.status(), 200);
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let first: serde_json::Value = response.json().await.unwrap();
    assert_eq!(first["already_forgotten"], false);
    assert_eq!(first["key_destroyed"], true);
    assert_eq!(etag, format!("\"{}\"", first["revision"]));

    let after = get(&client, &node, "/api/v1/customers/cus_api/360?reveal=true").await;
    assert_eq!(after["customer"]["email"], "");
    assert_eq!(after["customer"]["name"], "");
    assert_eq!(after["recent_interactions"][0]["content"], "<PERSON_1>: write to <EMAIL_1>");
    let page = get(&client, &node, "/api/v1/customers?email=ann.api@example.com").await;
    assert_eq!(page["items"], json!([]));

    // Again: nothing destroyed, nothing recorded, the same revision.
    let response = forget(&node.admin_key, None, "cus_api").await.unwrap();
    assert_eq!(response.status(), 200);
    let second: serde_json::Value = response.json().await.unwrap();
    assert_eq!(second["already_forgotten"], true);
    assert_eq!(second["key_destroyed"], false);
    assert_eq!(second["revision"], first["revision"]);

    node.stop();
    let export = agentcrm(&["export", "--jsonl", "--data-dir", &node.data_str()]);
    let forgotten: Vec<serde_json::Value> = export
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["event"].clone())
        .filter(|event| event["event_type"] == "CustomerForgotten")
        .collect();
    assert_eq!(forgotten.len(), 1, "{export}");
    assert_eq!(forgotten[0]["actor"], json!({"kind": "human", "id": "root"}));
    assert_eq!(forgotten[0]["payload"]["reason"], "erasure request sent from <EMAIL_1>");
    for raw in ["ann.api@example.com", "Ann Lee", "13812345678"] {
        assert!(!export.contains(raw), "{raw} in the export");
    }
    let (status, stdout, _) = run_agentcrm(&["verify", "--data-dir", &node.data_str()]);
    assert!(status.success(), "{stdout}");
}
