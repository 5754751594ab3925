#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Personal data never crosses the boundary, end to end: signed webhooks whose
//! content holds an email, phones, a card, a Chinese ID, an IBAN and names go
//! through a real `agentcrm up`; once the 360 view shows them masked, the node
//! is stopped and none of the raw values may appear in `agentcrm export`, in
//! the process's own output (logs at debug level). An admin can still reveal
//! them through the API.
//!
//! The stronger check — no raw value anywhere in the data directory's files —
//! is `raw_values_are_gone_from_the_data_files`, ignored for now: the embedded
//! intake queue stores raw webhooks in sled, and sled is log-structured, so a
//! removed item's bytes stay in its data file until sled reuses that segment
//! (see docs/MASKING.md, "Known limits").

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{agentcrm, post_signed};
use serde_json::json;
use tests::{agentcrm_binary, free_port, wait_for_port};

const RAW_VALUES: &[&str] = &[
    "li.na@example.cn",
    "13912345678",
    "11010519491231002X",
    "4111 1111 1111 1111",
    "zoe.b@example.org",
    "+44 20 7946 0958",
    "DE89 3704 0044 0532 0130 00",
    "李娜",
    "Sarah Miller",
];

/// `agentcrm up` with its stdout and stderr in files.
struct LoggedNode {
    child: Child,
}

impl LoggedNode {
    fn start(data: &Path, port: u16, logs: &Path) -> Self {
        let stdout = std::fs::File::create(logs.join("stdout.log")).unwrap();
        let stderr = std::fs::File::create(logs.join("stderr.log")).unwrap();
        let child = Command::new(agentcrm_binary())
            .args(["up", "--data-dir", data.to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap();
        assert!(wait_for_port(port, Duration::from_secs(20)), "agentcrm up did not listen");
        Self { child }
    }

    /// Ctrl-C, then the exit status.
    fn stop(mut self) {
        let status =
            Command::new("kill").args(["-INT", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "agentcrm up exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("agentcrm up did not stop");
    }
}

impl Drop for LoggedNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|entry| entry.unwrap().path()));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|window| window == needle)
        {
            found.push(path.display().to_string());
        }
    }
    found
}

/// The JSON answer, `Null` for a 404 (not there yet).
async fn get(client: &reqwest::Client, url: String, key: &str) -> serde_json::Value {
    let response = client.get(url).bearer_auth(key).send().await.unwrap();
    if response.status() == 404 {
        return serde_json::Value::Null;
    }
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// What a stopped node left behind.
struct Evidence {
    dir: tempfile::TempDir,
    export: String,
    stdout: String,
    stderr: String,
}

/// Runs the webhooks through a node, checks the masked and revealed views,
/// stops the node and collects its export and logs.
async fn run_node() -> Evidence {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_str = data.to_str().unwrap();
    let admin =
        agentcrm(&["keys", "create", "--role", "admin", "--name", "root", "--data-dir", data_str]);
    let secret = agentcrm(&["sources", "add", "default", "--data-dir", data_str]);
    let port = free_port();
    let node = LoggedNode::start(&data, port, dir.path());
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();

    let webhooks = [
        json!({"event_type": "interaction", "data": {
            "email": "Li.Na@Example.cn", "name": "李娜", "channel": "email",
            "content": "我是李娜，手机13912345678，身份证11010519491231002X，卡号4111 1111 1111 1111 扣款失败"}}),
        json!({"event_type": "interaction.chat", "data": {
            "customer_id": "cus_e2e", "sentiment_score": -0.4,
            "content": "I'm Sarah Miller, call me at +44 20 7946 0958 or mail zoe.b@example.org, refund to IBAN DE89 3704 0044 0532 0130 00"}}),
        json!({"event_type": "ticket.opened", "data": {
            "email": "li.na@example.cn", "ticket_id": "T-7", "status": "open",
            "content": "请回电13912345678"}}),
    ];
    for (index, body) in webhooks.iter().enumerate() {
        let (status, answer) = post_signed(
            &client,
            &format!("{base}/crm/webhooks/interaction"),
            &secret,
            &format!("e2e_{index}"),
            body,
        )
        .await;
        assert_eq!(status, 202, "{answer}");
    }

    // The customer first seen by email is found through the vault's index.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (li_na, zoe) = loop {
        let page =
            get(&client, format!("{base}/api/v1/customers?email=li.na@example.cn"), &admin).await;
        let zoe = get(&client, format!("{base}/api/v1/customers/cus_e2e/360"), &admin).await;
        let li_na = page["items"].as_array().and_then(|items| items.first()).cloned();
        if let Some(li_na) = li_na
            && li_na["interaction_count"] == 2
            && zoe["customer"]["interaction_count"] == 1
        {
            break (li_na, zoe);
        }
        assert!(Instant::now() < deadline, "the interactions never reached the 360 view");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let li_na_id = li_na["customer_id"].as_str().unwrap().to_owned();
    assert!(li_na_id.starts_with("cus_"), "{li_na}");
    assert_eq!(
        (li_na["name"].as_str(), li_na["email"].as_str()),
        (Some("<PERSON_1>"), Some("<EMAIL_1>"))
    );
    let view = get(&client, format!("{base}/api/v1/customers/{li_na_id}/360"), &admin).await;
    let contents: Vec<&str> = view["recent_interactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        [
            "我是<PERSON_1>，手机<PHONE_1>，身份证<CN_ID_1>，卡号<CREDIT_CARD_1> 扣款失败",
            "[ticket T-7 opened, status open] 请回电<PHONE_1>",
        ]
    );
    let zoe_content = zoe["recent_interactions"][0]["content"].as_str().unwrap();
    assert_eq!(
        zoe_content,
        "I'm <PERSON_1>, call me at <PHONE_1> or mail <EMAIL_1>, refund to IBAN <IBAN_1>"
    );
    // Someone allowed to see personal data gets the originals back.
    let revealed =
        get(&client, format!("{base}/api/v1/customers/cus_e2e/360?reveal=true"), &admin).await;
    assert_eq!(revealed["recent_interactions"][0]["content"], webhooks[1]["data"]["content"]);

    node.stop();
    let export = agentcrm(&["export", "--jsonl", "--data-dir", data_str]);
    assert_eq!(export.lines().count(), 4, "a registration and three interactions: {export}");
    let stdout = std::fs::read_to_string(dir.path().join("stdout.log")).unwrap();
    let stderr = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    assert!(stderr.contains("Masking agent started"), "debug logs were captured: {stderr}");
    Evidence { dir, export, stdout, stderr }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_raw_value_reaches_the_log_or_the_logs() {
    let evidence = run_node().await;
    let mut leaks = Vec::new();
    for value in RAW_VALUES {
        for (name, text) in [
            ("export", &evidence.export),
            ("stdout", &evidence.stdout),
            ("stderr", &evidence.stderr),
        ] {
            if text.contains(value) {
                leaks.push(format!("{value:?} in {name}"));
            }
        }
    }
    assert!(leaks.is_empty(), "raw personal data found: {leaks:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "raw intake bytes stay in sled's data file after the item is removed; see docs/MASKING.md"]
async fn raw_values_are_gone_from_the_data_files() {
    let evidence = run_node().await;
    let mut leaks = Vec::new();
    for value in RAW_VALUES {
        for file in files_containing(&evidence.dir.path().join("data"), value.as_bytes()) {
            leaks.push(format!("{value:?} in {file}"));
        }
    }
    assert!(leaks.is_empty(), "raw personal data found: {leaks:#?}");
}
