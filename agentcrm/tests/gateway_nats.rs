#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The distributed deployment as real processes on a real nats-server started
//! with `deploy/nats/nats-server.conf`: `agentcrm store`, `agentcrm agent
//! masking` and `agentcrm gateway`, each with its own data directory and its
//! own NATS user.
//!
//! - A signed webhook is accepted (202) and its masked interaction reaches the
//!   gateway's 360 view; the store's log never holds the raw email or phone.
//! - A customer created through the gateway is tokenized by the masking
//!   agent's vault: the same email in a later webhook becomes the same token,
//!   and the gateway's own data directory holds no personal data.
//! - With nats-server killed, webhooks and writes get 503 with `Retry-After`
//!   and a problem document, quickly; once it is back on the same port the
//!   gateway accepts again and nothing accepted is lost.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{agentcrm, post_signed};
use serde_json::json;
use tests::{NatsServer, Process, free_port, wait_for_port};

fn password(user: &str) -> String {
    format!("test-password-{user}")
}

/// The deploy configuration with test passwords in front of it (every user
/// the file names needs its variable).
fn start_server(dir: &Path) -> Option<NatsServer> {
    let deploy = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/nats/nats-server.conf");
    let mut config = String::new();
    for user in ["gateway", "masking", "sales", "support", "audit", "store"] {
        config.push_str(&format!(
            "NATS_{}_PASSWORD: \"{}\"\n",
            user.to_ascii_uppercase(),
            password(user)
        ));
    }
    config.push_str(&std::fs::read_to_string(deploy).unwrap());
    let path = dir.join("nats-server.conf");
    std::fs::write(&path, config).unwrap();
    NatsServer::start_with_config(Some(&path))
}

/// `agentcrm <service> …` as `user` on the test's server.
fn spawn_service(args: &[&str], server: &NatsServer, user: &str) -> Process {
    let url = server.url();
    let password = password(user);
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--nats-url", &url, "--nats-user", user, "--nats-password", &password]);
    Process::spawn(&all)
}

struct Gateway {
    port: u16,
    admin_key: String,
    secret: String,
}

impl Gateway {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn webhook(&self, client: &reqwest::Client, id: &str, data: serde_json::Value) -> u16 {
        let body = json!({"event_type": "interaction", "data": data});
        post_signed(client, &self.url("/crm/webhooks/interaction"), &self.secret, id, &body).await.0
    }

    async fn get(&self, client: &reqwest::Client, path: &str) -> (u16, serde_json::Value) {
        let response =
            client.get(self.url(path)).bearer_auth(&self.admin_key).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Polls `path` until `done` holds for its body.
    async fn wait_for(
        &self,
        client: &reqwest::Client,
        path: &str,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self.get(client, path).await;
            if status == 200 && done(&body) {
                return body;
            }
            assert!(Instant::now() < deadline, "{what}: last answer {status} {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The content of every interaction in a stopped store's log, and the whole export.
fn store_export(data: &Path) -> (Vec<String>, String) {
    let export = agentcrm(&["export", "--jsonl", "--data-dir", data.to_str().unwrap()]);
    let contents = export
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|record| record["event"]["event_type"] == "InteractionRecorded")
        .map(|record| record["event"]["payload"]["content"].as_str().unwrap().to_owned())
        .collect();
    (contents, export)
}

/// Every file under `dir`, read as bytes, concatenated.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            bytes.extend(all_bytes(&path));
        } else {
            bytes.extend(std::fs::read(&path).unwrap_or_default());
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_distributed_gateway_masks_through_the_vault_and_answers_503_without_nats() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut server) = start_server(dir.path()) else { return };
    let (store_dir, masking_dir, gateway_dir) =
        (dir.path().join("store"), dir.path().join("masking"), dir.path().join("gateway"));
    let gateway_data = gateway_dir.to_str().unwrap();
    let (admin_key, secret) = common::provision(&gateway_dir);
    let gateway = Gateway { port: free_port(), admin_key, secret };

    // One after the other, so the streams are set up once.
    let mut store =
        spawn_service(&["store", "--data-dir", store_dir.to_str().unwrap()], &server, "store");
    std::thread::sleep(Duration::from_millis(500));
    let _masking = spawn_service(
        &["agent", "masking", "--data-dir", masking_dir.to_str().unwrap()],
        &server,
        "masking",
    );
    std::thread::sleep(Duration::from_millis(500));
    let listen = format!("127.0.0.1:{}", gateway.port);
    let _gateway = spawn_service(
        &["gateway", "--data-dir", gateway_data, "--listen", &listen, "--vault-timeout-ms", "1500"],
        &server,
        "gateway",
    );
    assert!(wait_for_port(gateway.port, Duration::from_secs(20)), "the gateway did not listen");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();

    // (a) A webhook from a new sender: 202, then its masked interaction in
    // the gateway's 360 view, found by email through the vault.
    let first = json!({"email": "ann.lee@example.com", "name": "Ann Lee", "channel": "email",
        "content": "Ann Lee here: call 13812345678 or write to ann.lee@example.com"});
    assert_eq!(gateway.webhook(&client, "dist_1", first).await, 202);
    let page = gateway
        .wait_for(&client, "/api/v1/customers?email=ann.lee@example.com", "webhook", |page| {
            page["items"][0]["interaction_count"] == 1
        })
        .await;
    let ann = page["items"][0]["customer_id"].as_str().unwrap().to_owned();
    let (_, view) = gateway.get(&client, &format!("/api/v1/customers/{ann}/360")).await;
    assert_eq!(
        view["recent_interactions"][0]["content"],
        "<PERSON_1> here: call <PHONE_1> or write to <EMAIL_1>"
    );
    let (_, revealed) = gateway.get(&client, &format!("/api/v1/customers/{ann}?reveal=true")).await;
    assert_eq!(revealed["email"], "ann.lee@example.com");

    // (b) A customer created through the gateway gets the masking agent's
    // tokens: the profile's email is the token the agent uses for it later.
    let created = client
        .post(gateway.url("/api/v1/customers"))
        .bearer_auth(&gateway.admin_key)
        .json(&json!({"customer_id": "cus_bob", "name": "Bob Stone",
            "email": "bob.stone@example.com", "phone": "+86 139 0000 1111"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: serde_json::Value = created.json().await.unwrap();
    assert_eq!(created["email"], "<EMAIL_1>");
    let data = json!({"customer_id": "cus_bob", "channel": "chat",
        "content": "mia@example.org takes over from bob.stone@example.com"});
    assert_eq!(gateway.webhook(&client, "dist_2", data).await, 202);
    let view = gateway
        .wait_for(&client, "/api/v1/customers/cus_bob/360", "profile tokens", |view| {
            view["customer"]["interaction_count"] == 1
        })
        .await;
    assert_eq!(
        view["recent_interactions"][0]["content"],
        // A separate vault would number the emails in the order of the text.
        "<EMAIL_2> takes over from <EMAIL_1>"
    );
    let (_, found) = gateway.get(&client, "/api/v1/customers?phone=%2B8613900001111").await;
    assert_eq!(found["items"][0]["customer_id"], "cus_bob");

    // Forgetting goes to the masking agent's vault as well.
    let forget = || {
        client
            .post(gateway.url("/api/v1/customers/cus_bob/forget"))
            .bearer_auth(&gateway.admin_key)
            .send()
    };
    let forgotten: serde_json::Value = forget().await.unwrap().json().await.unwrap();
    assert_eq!(forgotten["already_forgotten"], false, "{forgotten}");
    assert_eq!(forgotten["key_destroyed"], true, "{forgotten}");
    let again: serde_json::Value = forget().await.unwrap().json().await.unwrap();
    assert_eq!(again["already_forgotten"], true, "{again}");
    let (_, bob) = gateway.get(&client, "/api/v1/customers/cus_bob/360?reveal=true").await;
    assert_eq!(bob["recent_interactions"][0]["content"], view["recent_interactions"][0]["content"]);
    assert_eq!(bob["customer"]["email"], "");

    // (c) Without NATS: 503 with Retry-After and a problem document, for a
    // webhook and for a write, within the configured timeouts.
    server.kill();
    let started = Instant::now();
    let down = json!({"customer_id": ann, "channel": "chat",
        "content": "back again, still 13812345678"});
    let body = json!({"event_type": "interaction", "data": down});
    let bytes = serde_json::to_vec(&body).unwrap();
    let timestamp = common::now();
    let response = client
        .post(gateway.url("/crm/webhooks/interaction"))
        .header("content-type", "application/json")
        .header("webhook-id", "dist_down")
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", common::sign(&gateway.secret, "dist_down", timestamp, &bytes))
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["status"], 503);
    let write = client
        .post(gateway.url("/api/v1/customers"))
        .bearer_auth(&gateway.admin_key)
        .json(&json!({"customer_id": "cus_down", "name": "Nobody Home"}))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 503);
    assert!(write.headers().contains_key("retry-after"));
    assert_eq!(write.headers()["content-type"], "application/problem+json");
    // Refused up front while disconnected, not after a publish timeout.
    assert!(started.elapsed() < Duration::from_secs(8), "503s took {:?}", started.elapsed());

    // Back on the same port: the sender's retry of the refused webhook is
    // accepted, and what is accepted arrives, once.
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    while gateway.webhook(&client, "dist_down", down.clone()).await != 202 {
        assert!(Instant::now() < deadline, "the gateway never accepted again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let path = format!("/api/v1/customers/{ann}/interactions");
    gateway
        .wait_for(&client, &path, "after the restart", |list| {
            list["items"].as_array().is_some_and(|items| {
                items.iter().any(|item| item["content"] == "back again, still <PHONE_1>")
            })
        })
        .await;

    // The store copied every accepted interaction, masked.
    let store_deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = store.interrupt().expect("the store did not stop");
        assert!(status.success(), "agentcrm store exited with {status}");
        let (contents, export) = store_export(&store_dir);
        if contents.iter().any(|content| content == "back again, still <PHONE_1>") {
            // Every webhook answered 202 is there, in the order accepted.
            let accepted = [
                "<PERSON_1> here: call <PHONE_1> or write to <EMAIL_1>",
                "<EMAIL_2> takes over from <EMAIL_1>",
                "back again, still <PHONE_1>",
            ];
            let kept: Vec<&str> = contents
                .iter()
                .map(String::as_str)
                .filter(|content| accepted.contains(content))
                .collect();
            assert_eq!(kept, accepted, "{contents:?}");
            for raw in [
                "ann.lee@example.com",
                "13812345678",
                "Ann Lee",
                "bob.stone@example.com",
                "mia@example.org",
            ] {
                assert!(!export.contains(raw), "{raw} in the store's log");
            }
            break;
        }
        assert!(Instant::now() < store_deadline, "the store lacks accepted events: {contents:?}");
        store =
            spawn_service(&["store", "--data-dir", store_dir.to_str().unwrap()], &server, "store");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The gateway keeps no personal data of its own.
    let gateway_bytes = all_bytes(&gateway_dir);
    for raw in ["ann.lee@example.com", "13812345678", "bob.stone@example.com", "Bob Stone"] {
        assert!(!contains(&gateway_bytes, raw), "{raw} in the gateway's data directory");
    }
}
