#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The gateway's webhooks over real HTTP against `agentcrm up`: the seed's
//! contract, Standard Webhooks signatures, bad input, idempotent retries (also
//! across a restart), `kill -9` in the middle of a burst, and a full intake.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use common::{
    Node, intake_event_ids, log_event_ids, now, post_signed, seed_example, send_signed, sign,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_contract_signatures_and_bad_input() {
    let mut node = Node::start();
    let client = reqwest::Client::new();
    let seed_url = node.url("/crm/webhooks/interaction");

    // The seed's example payload, signed with the default source's secret.
    let (status, body) =
        post_signed(&client, &seed_url, &node.default_secret, "msg_seed_1", &seed_example()).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "received");
    let first_id = body["event_id"].as_str().unwrap().to_owned();

    // Empty data: 400 as in the seed, naming the field.
    let empty = json!({"event_type": "interaction", "data": {}});
    let (status, body) =
        post_signed(&client, &seed_url, &node.default_secret, "msg_empty", &empty).await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["field"], "data");

    // Signature failures: 401 and nothing stored.
    let bytes = serde_json::to_vec(&seed_example()).unwrap();
    let timestamp = now();
    let good = sign(&node.default_secret, "msg_x", timestamp, &bytes);
    let wrong_secret = sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_x", timestamp, &bytes);
    let stale = sign(&node.default_secret, "msg_x", timestamp - 600, &bytes);
    let mut tampered = bytes.clone();
    tampered.extend_from_slice(b" ");
    for (name, body, ts, signature) in [
        ("tampered body", tampered.clone(), timestamp, good.clone()),
        ("wrong secret", bytes.clone(), timestamp, wrong_secret),
        ("stale timestamp", bytes.clone(), timestamp - 600, stale),
    ] {
        let response = client
            .post(&seed_url)
            .header("content-type", "application/json")
            .header("webhook-id", "msg_x")
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{name}");
        assert_eq!(response.headers()["content-type"], "application/problem+json");
    }
    let unsigned = client.post(&seed_url).json(&seed_example()).send().await.unwrap();
    assert_eq!(unsigned.status(), 401);

    // Bad input: each a problem naming the field; the server keeps serving.
    let cases = [
        (
            json!({"event_type": "interaction", "data": {"customer_id": "c1", "channel": "fax", "content": "x"}}),
            "data.channel",
        ),
        (
            json!({"event_type": "interaction", "data": {"customer_id": "c1", "channel": "email", "content": "x", "sentiment_score": 1.5}}),
            "data.sentiment_score",
        ),
        (
            json!({"event_type": "interaction", "data": {"customer_id": "c1", "channel": "email", "content": 5}}),
            "data.content",
        ),
        (json!({"event_type": "teleport", "data": {"customer_id": "c1"}}), "event_type"),
        (json!({"event_type": 7, "data": {"customer_id": "c1"}}), "event_type"),
    ];
    for (index, (body, field)) in cases.into_iter().enumerate() {
        let (status, problem) =
            post_signed(&client, &seed_url, &node.default_secret, &format!("bad_{index}"), &body)
                .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    let malformed = b"{\"event_type\": \"interaction\", \"data\": {".to_vec();
    let ts = now();
    let response = client
        .post(&seed_url)
        .header("content-type", "application/json")
        .header("webhook-id", "bad_json")
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sign(&node.default_secret, "bad_json", ts, &malformed))
        .body(malformed)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let text = b"hello".to_vec();
    let response = client
        .post(&seed_url)
        .header("content-type", "text/plain")
        .header("webhook-id", "bad_type")
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sign(&node.default_secret, "bad_type", ts, &text))
        .body(text)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let huge = vec![b'x'; 2 * 1024 * 1024];
    // The server answers 413 before reading the whole body and closes that
    // connection: send it on a client of its own, so no later request reuses it.
    let response = reqwest::Client::new()
        .post(&seed_url)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    // A named source has its own secret: the default secret does not sign for it.
    let created = client
        .post(node.url("/api/v1/sources"))
        .bearer_auth(&node.admin_key)
        .json(&json!({"name": "hubspot"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let hubspot: serde_json::Value = created.json().await.unwrap();
    let hubspot_secret = hubspot["secret"].as_str().unwrap();
    let hubspot_url = node.url("/api/v1/webhooks/hubspot");
    let activity = json!({"event_type": "email_opened", "data": {"email": "ann@example.com"}});
    let (status, _) =
        post_signed(&client, &hubspot_url, &node.default_secret, "hs_1", &activity).await;
    assert_eq!(status, 401);
    let (status, _) = post_signed(&client, &hubspot_url, hubspot_secret, "hs_1", &activity).await;
    assert_eq!(status, 202);

    // A retry with the same webhook-id: the first event id, nothing new.
    let (status, body) =
        post_signed(&client, &seed_url, &node.default_secret, "msg_seed_1", &seed_example()).await;
    assert_eq!(status, 202);
    assert_eq!(body["event_id"], first_id.as_str());
    assert_eq!(body["duplicate"], true);

    // ... also after a restart.
    node.stop();
    node.up();
    let (status, body) =
        post_signed(&client, &seed_url, &node.default_secret, "msg_seed_1", &seed_example()).await;
    assert_eq!(status, 202);
    assert_eq!(body["event_id"], first_id.as_str());
    node.stop();

    // Each accepted webhook is stored once: still queued, or masked into the
    // log by the masking agent (which also registers the customer it first
    // sees by email).
    let data = node.data_str();
    let masked = common::agentcrm(&["export", "--jsonl", "--data-dir", &data])
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|record| record["event"]["event_type"] != "CustomerRegistered")
        .map(|record| record["event"]["event_id"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>();
    let stored: Vec<String> =
        intake_event_ids(&node.data_dir()).into_iter().chain(masked).collect();
    assert_eq!(stored.len(), 2, "the seed example and the hubspot activity: {stored:?}");
    assert_eq!(stored.iter().filter(|id| **id == first_id).count(), 1);
}

/// Several clients send signed webhooks; the node is SIGKILLed mid-burst. Every
/// webhook answered 2xx must be in the log exactly once after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_burst_loses_no_acknowledged_webhook() {
    let mut node = Node::start();
    let client = reqwest::Client::new();
    let url = node.url("/crm/webhooks/interaction");
    let acknowledged: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    // What else the senders saw before the kill, for the failure message.
    let refused: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut senders = Vec::new();
    for sender in 0..8 {
        let (client, url, secret, acknowledged) =
            (client.clone(), url.clone(), node.default_secret.clone(), acknowledged.clone());
        let (refused, killed) = (refused.clone(), killed.clone());
        senders.push(tokio::spawn(async move {
            let refuse = |what: String| *refused.lock().unwrap().entry(what).or_default() += 1;
            for sequence in 0..100_000 {
                let id = format!("burst_{sender}_{sequence}");
                let body = json!({"event_type": "interaction", "data": {
                    "customer_id": format!("cus_{sender}"), "channel": "chat",
                    "content": format!("message {sequence}")}});
                let sent = send_signed(&client, &url, &secret, &id, &body).await;
                let response = match sent {
                    Ok(response) => response,
                    Err(_) if killed.load(std::sync::atomic::Ordering::SeqCst) => return,
                    Err(error) => {
                        refuse(format!("send: {error}"));
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                };
                if !response.status().is_success() {
                    refuse(format!("status {}", response.status()));
                    continue;
                }
                let Ok(answer) = response.json::<serde_json::Value>().await else {
                    if killed.load(std::sync::atomic::Ordering::SeqCst) {
                        return;
                    }
                    refuse("an unreadable answer".into());
                    continue;
                };
                let event_id = answer["event_id"].as_str().unwrap().to_owned();
                acknowledged.lock().unwrap().insert(id, event_id);
            }
        }));
    }
    // Let the burst run until enough is acknowledged (however loaded the
    // machine), then kill without any shutdown hook.
    let burst_deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    while acknowledged.lock().unwrap().len() < 200 && std::time::Instant::now() < burst_deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    killed.store(true, std::sync::atomic::Ordering::SeqCst);
    node.kill9();
    for sender in senders {
        sender.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let refused = refused.lock().unwrap().clone();
    assert!(acknowledged.len() > 100, "too few acknowledged: {}; {refused:?}", acknowledged.len());

    // Restart (recovery) and let the masking agent drain the intake: an item
    // whose masked event was appended just before the kill may come back to the
    // queue (its removal was not durable yet) and is masked again, which the
    // log's event-id index turns into a no-op. Then stop and read the log.
    node.up();
    let mut expected: HashMap<String, u64> = HashMap::new();
    for delivery in acknowledged.keys() {
        let sender = delivery.split('_').nth(1).unwrap();
        *expected.entry(format!("cus_{sender}")).or_default() += 1;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    for (customer, at_least) in &expected {
        loop {
            let view: serde_json::Value = client
                .get(node.url(&format!("/api/v1/customers/{customer}/360")))
                .bearer_auth(&node.admin_key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let count = view["customer"]["interaction_count"].as_u64().unwrap_or(0);
            if count >= *at_least {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{customer}: {count} of {at_least} masked"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    node.stop();
    let queued = intake_event_ids(&node.data_dir());
    let mut stored: HashMap<String, usize> = HashMap::new();
    for id in log_event_ids(&node.data_dir()) {
        *stored.entry(id).or_default() += 1;
    }
    // Nothing is in the log twice; every acknowledged webhook is in the log or,
    // not masked yet, still waiting in the durable intake (a webhook that was
    // made durable but not answered before the kill may be ahead of it).
    for (id, count) in &stored {
        assert_eq!(*count, 1, "{id} is in the log {count} times");
    }
    let queued: HashSet<String> = queued.into_iter().collect();
    let mut missing = Vec::new();
    for (delivery, event_id) in &acknowledged {
        if !stored.contains_key(event_id) && !queued.contains(event_id) {
            missing.push(delivery.clone());
        }
    }
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    let unique: HashSet<_> = acknowledged.values().collect();
    assert_eq!(unique.len(), acknowledged.len());
    eprintln!("{} acknowledged webhooks all stored exactly once", acknowledged.len());
}

/// With a 1 KiB intake, a burst fills it: the overflow gets 503 with
/// `Retry-After` and a problem naming the backlog, and stores nothing. Retried
/// later, every delivery is accepted, and each lands in the log once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_intake_answers_503_and_loses_nothing() {
    let mut node = Node::start_with(&["--intake-limit-kib", "1"]);
    let client = reqwest::Client::new();
    let url = node.url("/crm/webhooks/interaction");
    let send = |id: String| {
        let (client, url, secret) = (client.clone(), url.clone(), node.default_secret.clone());
        async move {
            let body = json!({"event_type": "interaction", "data": {
                "customer_id": "cus_full", "channel": "chat", "content": format!("hello {id}")}});
            let response = send_signed(&client, &url, &secret, &id, &body).await.unwrap();
            let status = response.status().as_u16();
            let retry_after = response.headers().get("retry-after").cloned();
            let content_type = response.headers().get("content-type").cloned();
            let answer: serde_json::Value = response.json().await.unwrap();
            (id, status, retry_after, content_type, answer)
        }
    };

    let burst = (0..64).map(|n| send(format!("full_{n}")));
    let answers = futures::future::join_all(burst).await;
    let mut accepted: HashMap<String, String> = HashMap::new();
    let mut refused = Vec::new();
    for (id, status, retry_after, content_type, answer) in answers {
        match status {
            202 => {
                accepted.insert(id, answer["event_id"].as_str().unwrap().to_owned());
            }
            503 => {
                assert!(retry_after.is_some(), "a 503 says when to retry");
                assert_eq!(content_type.unwrap(), "application/problem+json");
                let detail = answer["detail"].as_str().unwrap();
                assert!(detail.contains("backlog is full"), "{detail}");
                refused.push(id);
            }
            other => panic!("unexpected {other}: {answer}"),
        }
    }
    assert!(!accepted.is_empty(), "the first deliveries fit");
    assert!(!refused.is_empty(), "64 deliveries at once overflow 1 KiB");

    // The node goes on: once the masking agent catches up, the refused
    // deliveries are accepted when retried.
    for id in refused {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let (id, status, _, _, answer) = send(id.clone()).await;
            if status == 202 {
                assert_ne!(answer["duplicate"], true, "a refused delivery was not stored");
                accepted.insert(id, answer["event_id"].as_str().unwrap().to_owned());
                break;
            }
            assert_eq!(status, 503, "{answer}");
            assert!(std::time::Instant::now() < deadline, "{id} still refused");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    assert_eq!(accepted.len(), 64);
    node.stop();

    let stored: Vec<String> = intake_event_ids(&node.data_dir())
        .into_iter()
        .chain(log_event_ids(&node.data_dir()))
        .collect();
    for (id, event_id) in &accepted {
        let copies = stored.iter().filter(|stored| *stored == event_id).count();
        assert_eq!(copies, 1, "{id} is stored {copies} times");
    }
}
