//! `kill -9` under load loses nothing acknowledged: embedded (`agentcrm up`) and
//! distributed (the event-store service, then nats-server itself).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_kit::{Bus, NatsBus, NatsOptions};
use bus_schema::{
    Actor, ActorKind, Channel, EventEnvelope, EventPayload, ExpectedRevision, InteractionRecorded,
    StreamId,
};
use common::{Node, agentcrm};
use tests::{NatsServer, Process, run_agentcrm};

/// Every read model rebuilt from scratch must equal the live one.
fn assert_replay_matches(data: &str) {
    let (status, stdout, stderr) = run_agentcrm(&["replay", "--quiet", "--data-dir", data]);
    assert!(status.success(), "replay failed: {stdout}{stderr}");
    assert!(stdout.lines().all(|line| line.contains("matches live")), "{stdout}");
    let (status, stdout, _) = run_agentcrm(&["verify", "--data-dir", data]);
    assert!(status.success(), "verify failed: {stdout}");
}

/// (event id, customer id) of every record in a stopped node's log.
fn logged(data: &str) -> Vec<(String, String)> {
    agentcrm(&["export", "--jsonl", "--data-dir", data])
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .map(|record| {
            let event = &record["event"];
            (
                event["event_id"].as_str().unwrap().to_owned(),
                event["payload"]["customer_id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_up_under_load_loses_no_acknowledged_write() {
    let mut node = Node::start();
    let client = reqwest::Client::new();
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for writer in 0..8 {
        let (client, acknowledged) = (client.clone(), acknowledged.clone());
        let (url, key) = (node.url("/api/v1/customers"), node.admin_key.clone());
        writers.push(tokio::spawn(async move {
            for n in 0.. {
                let customer_id = format!("crash_{writer}_{n}");
                let body = serde_json::json!({
                    "customer_id": customer_id, "name": "Load Test", "company": "Acme", "stage": "lead"
                });
                match client.post(&url).bearer_auth(&key).json(&body).send().await {
                    Ok(response) if response.status() == 201 => {
                        acknowledged.lock().unwrap().push(customer_id)
                    }
                    Ok(response) => panic!("unexpected status {}", response.status()),
                    // The node was killed: this request was never answered.
                    Err(_) => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    node.kill9();
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() > 20, "too little load to prove anything: {}", acknowledged.len());

    // Restart; once the live read models stop moving, note their digests.
    node.up();
    let live = live_digests(&node, &client).await;
    node.stop();
    let data = node.data_str();
    let registered: HashMap<String, usize> =
        logged(&data).into_iter().fold(HashMap::new(), |mut counts, (_, customer)| {
            *counts.entry(customer).or_default() += 1;
            counts
        });
    for customer in &acknowledged {
        assert_eq!(
            registered.get(customer),
            Some(&1),
            "{customer} acknowledged but stored {:?} times",
            registered.get(customer)
        );
    }
    assert_replay_matches(&data);
    let (_, stdout, _) = run_agentcrm(&["replay", "--quiet", "--data-dir", &data]);
    for (name, digest) in live {
        let line = stdout.lines().find(|line| line.starts_with(&name)).unwrap();
        assert!(line.contains(&format!("digest={digest}")), "{name}: live {digest}, replay {line}");
    }
}

/// The running node's read model digests, once two reads a moment apart agree.
async fn live_digests(node: &Node, client: &reqwest::Client) -> Vec<(String, String)> {
    let mut previous = Vec::new();
    for _ in 0..100 {
        let models: serde_json::Value = client
            .get(node.url("/api/v1/read-models"))
            .bearer_auth(&node.admin_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let digests: Vec<(String, String)> = models
            .as_array()
            .unwrap()
            .iter()
            .map(|model| {
                (
                    model["name"].as_str().unwrap().to_owned(),
                    model["digest"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        if digests == previous {
            return digests;
        }
        previous = digests;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("read models never settled")
}

fn event(customer: &str, n: usize) -> EventEnvelope {
    EventEnvelope::new(
        StreamId::customer(customer).unwrap(),
        Actor::new(ActorKind::Integration, "crash-test"),
        EventPayload::InteractionRecorded(InteractionRecorded {
            interaction_id: format!("int_{n}"),
            customer_id: customer.into(),
            channel: Channel::Web,
            content: format!("visit {n}"),
            sentiment_score: None,
            occurred_at: chrono::Utc::now(),
            source: "crash-test".into(),
        }),
    )
}

/// Publishes from several tasks until stopped; returns the acknowledged ids.
fn publish_load(
    bus: NatsBus,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<String>>> {
    (0..8)
        .map(|writer| {
            let (bus, stop) = (bus.clone(), stop.clone());
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                let customer = format!("nats{writer}");
                let stream = StreamId::customer(&customer).unwrap();
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let event = event(&customer, n);
                    let id = event.event_id.to_string();
                    let publish = bus.append(&stream, ExpectedRevision::Any, vec![event]);
                    if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), publish).await {
                        acknowledged.push(id);
                    }
                }
                acknowledged
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_store_then_nats_loses_no_acknowledged_event() {
    let Some(mut nats) = NatsServer::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").to_str().unwrap().to_owned();
    let url = nats.url();
    let store_args = ["store", "--nats-url", url.as_str(), "--data-dir", data.as_str()];
    let mut store = Process::spawn(&store_args);
    let bus = NatsBus::connect(NatsOptions::new(nats.url())).await.unwrap();

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks = publish_load(bus.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    store.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    nats.kill();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.extend(task.await.unwrap());
    }
    assert!(acknowledged.len() > 50, "too little load to prove anything: {}", acknowledged.len());

    // Both come back; the store catches up from its durable consumer.
    nats.restart();
    let mut store = Process::spawn(&store_args);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let bus = NatsBus::connect(NatsOptions::new(nats.url())).await.unwrap();
    let last = {
        let mut last = 0;
        for writer in 0..8 {
            let stream = StreamId::customer(&format!("nats{writer}")).unwrap();
            last = last.max(bus.stream_revision(&stream).await.unwrap());
        }
        last
    };
    // Wait until the store's live read model has folded the stream's last event.
    let mut caught_up = false;
    while std::time::Instant::now() < deadline && !caught_up {
        tokio::time::sleep(Duration::from_millis(200)).await;
        store.interrupt();
        let (status, stdout, _) = run_agentcrm(&["verify", "--data-dir", &data]);
        caught_up = status.success()
            && stdout
                .split("up to position ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .and_then(|head| head.parse::<u64>().ok())
                .is_some_and(|head| head >= last);
        if !caught_up {
            store = Process::spawn(&store_args);
        }
    }
    assert!(caught_up, "the store did not catch up to position {last}");
    drop(store);

    let stored: Vec<String> = logged(&data).into_iter().map(|(id, _)| id).collect();
    let unique: BTreeSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "an event was stored twice");
    for id in &acknowledged {
        assert!(unique.contains(id), "acknowledged event {id} is missing");
    }
    assert_replay_matches(&data);
}
