#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]
//! A node under test: `agentcrm up` on a free port with its own data
//! directory, an admin key and the default source's secret.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway::signature::WebhookSecret;
use tests::{Process, free_port, run_agentcrm, wait_for_port};

pub struct Node {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub admin_key: String,
    pub default_secret: String,
    /// Arguments of `agentcrm up` beyond the data directory and address.
    pub up_args: Vec<String>,
    process: Option<Process>,
}

/// Runs `agentcrm` and returns its stdout, trimmed; panics on failure.
pub fn agentcrm(args: &[&str]) -> String {
    let (status, stdout, stderr) = run_agentcrm(args);
    assert!(status.success(), "agentcrm {args:?} failed: {stderr}");
    stdout.trim().to_owned()
}

/// Creates an admin key and the default webhook source in a data
/// directory; returns the key and the source's secret.
pub fn provision(data: &std::path::Path) -> (String, String) {
    let data = data.to_str().unwrap();
    let admin_key =
        agentcrm(&["keys", "create", "--role", "admin", "--name", "root", "--data-dir", data]);
    let secret = agentcrm(&["sources", "add", "default", "--data-dir", data]);
    (admin_key, secret)
}

impl Node {
    /// A fresh data directory with an admin key and the default source, and
    /// `agentcrm up` running on it.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// The same, with more arguments for `agentcrm up`.
    pub fn start_with(up_args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (admin_key, default_secret) = provision(&data);
        let mut node = Self {
            dir,
            port: free_port(),
            admin_key,
            default_secret,
            up_args: up_args.iter().map(|arg| (*arg).to_owned()).collect(),
            process: None,
        };
        node.up();
        node
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn data_str(&self) -> String {
        self.data_dir().to_str().unwrap().to_owned()
    }

    pub fn up(&mut self) {
        let listen = format!("127.0.0.1:{}", self.port);
        let data = self.data_str();
        let mut args = vec!["up", "--data-dir", &data, "--listen", &listen];
        args.extend(self.up_args.iter().map(String::as_str));
        self.process = Some(Process::spawn(&args));
        assert!(wait_for_port(self.port, Duration::from_secs(20)), "agentcrm up did not listen");
    }

    pub fn kill9(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill9();
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let status = process.interrupt().expect("agentcrm up did not stop");
            assert!(status.success(), "agentcrm up exited with {status}");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Creates a key of `role` through the API.
    pub async fn key(&self, client: &reqwest::Client, name: &str, role: &str) -> String {
        let response = client
            .post(self.url("/api/v1/keys"))
            .bearer_auth(&self.admin_key)
            .json(&serde_json::json!({"name": name, "role": role}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: serde_json::Value = response.json().await.unwrap();
        body["key"].as_str().unwrap().to_owned()
    }
}

/// Signs a body as a Standard Webhooks sender would.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    WebhookSecret::parse(secret).unwrap().sign(id, timestamp, body)
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Posts a signed webhook; returns status and JSON body.
pub async fn post_signed(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    id: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = send_signed(client, url, secret, id, body).await.unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

/// Sends a webhook signed now with `secret` under delivery id `id`.
pub async fn send_signed(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    id: &str,
    body: &serde_json::Value,
) -> reqwest::Result<reqwest::Response> {
    let bytes = serde_json::to_vec(body).unwrap();
    let timestamp = now();
    client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", sign(secret, id, timestamp, &bytes))
        .body(bytes)
        .send()
        .await
}

/// The seed article's example payload.
pub fn seed_example() -> serde_json::Value {
    serde_json::json!({
        "event_type": "interaction",
        "data": {
            "interaction_id": "int_001",
            "customer_id": "cus_12345",
            "channel": "email",
            "content": "我对你们的新服务非常感兴趣!",
            "sentiment_score": 0.8
        }
    })
}

/// Event ids waiting in a stopped node's intake queue.
pub fn intake_event_ids(data_dir: &Path) -> Vec<String> {
    agentcrm(&["intake", "list", "--data-dir", data_dir.to_str().unwrap()])
        .lines()
        .filter_map(|line| line.split('\t').nth(1).map(str::to_owned))
        .collect()
}

/// Event ids in a stopped node's log.
pub fn log_event_ids(data_dir: &Path) -> Vec<String> {
    agentcrm(&["export", "--jsonl", "--data-dir", data_dir.to_str().unwrap()])
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|record| record["event"]["event_id"].as_str().map(str::to_owned))
        .collect()
}
