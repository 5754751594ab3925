//! The masking agent over the embedded bus (a temporary sled store): raw
//! intake in, masked canonical events out, idempotent redelivery, customers
//! resolved by email, forgotten customers, and — as a property over generated
//! messages — no detected raw value in any appended event or in the customer
//! 360 read model.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use agent_kit::intake::{EmbeddedIntake, Intake};
use agent_kit::vault::{LookupKind, PiiVault};
use agent_kit::{EmbeddedBus, Shutdown};
use bus_schema::{Actor, ActorKind, EventPayload, RawIntake};
use chrono::Utc;
use event_store::{SledOptions, SledStore};
use masking::{Detector, DetectorConfig, MaskingAgent, MaskingVault, MetricsSnapshot};
use proptest::prelude::*;
use serde_json::json;
use uuid::Uuid;

mod support;

static DETECTOR: LazyLock<Arc<Detector>> =
    LazyLock::new(|| Arc::new(Detector::new(&DetectorConfig::default()).unwrap()));

/// A store, the agent running on it, and a way to feed it.
struct Node {
    _dir: tempfile::TempDir,
    store: SledStore,
    vault: Arc<MaskingVault>,
    intake: Arc<EmbeddedIntake>,
    shutdown: Shutdown,
    metrics: Arc<masking::Metrics>,
    agent: Option<MaskingAgent>,
    task: Option<tokio::task::JoinHandle<Result<(), agent_kit::BusError>>>,
}

impl Node {
    fn start() -> Self {
        let mut node = Self::open();
        node.run();
        node
    }

    /// A store and an agent that does not run yet: what is sent meanwhile
    /// waits in the intake.
    fn open() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("data"), SledOptions::default()).unwrap();
        let vault = Arc::new(MaskingVault::open(store.table("vault").unwrap()).unwrap());
        let bus = Arc::new(EmbeddedBus::new(store.log_dyn(), store.checkpoints.clone()));
        let intake = Arc::new(EmbeddedIntake::new(store.log.clone()));
        let agent = MaskingAgent::new(bus, vault.clone(), DETECTOR.clone());
        let metrics = agent.metrics();
        let shutdown = Shutdown::new();
        Self { _dir: dir, store, vault, intake, shutdown, metrics, agent: Some(agent), task: None }
    }

    fn run(&mut self) {
        let agent = self.agent.take().expect("the agent runs once");
        self.task = Some(tokio::spawn(agent.run(self.intake.clone(), self.shutdown.clone())));
    }

    async fn send(&self, event_id: Uuid, event_type: &str, data: serde_json::Value) {
        let intake = RawIntake {
            event_id,
            source: "default".into(),
            delivery_id: None,
            received_at: Utc::now(),
            event_type: event_type.into(),
            data_json: data.to_string(),
            actor: Actor::new(ActorKind::Integration, "default"),
        };
        self.intake.accept(intake).await.unwrap();
    }

    /// Waits until `count` items were taken and the queue is empty.
    async fn settle(&self, count: u64) -> MetricsSnapshot {
        let queue = self.store.log.intake();
        for _ in 0..1000 {
            let metrics = self.metrics.snapshot();
            if metrics.intake_received_total >= count && queue.is_empty() {
                return metrics;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the agent did not drain the intake: {:?}", self.metrics.snapshot());
    }

    fn events(&self) -> Vec<bus_schema::EventEnvelope> {
        use event_store::EventLog;
        self.store.log.read_all(0, usize::MAX).unwrap().into_iter().map(|e| e.envelope).collect()
    }

    async fn stop(self) -> SledStore {
        self.shutdown.trigger();
        if let Some(task) = self.task {
            task.await.unwrap().unwrap();
        }
        self.store
    }
}

fn interaction(customer: &str, content: &str) -> serde_json::Value {
    json!({"customer_id": customer, "channel": "email", "content": content})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masks_registers_by_email_and_appends_redeliveries_once() {
    // Items taken as they arrive, then all three in one batch.
    masks_registers_and_deduplicates(Node::start()).await;
    masks_registers_and_deduplicates(Node::open()).await;
}

async fn masks_registers_and_deduplicates(mut node: Node) {
    let first = Uuid::now_v7();
    node.send(
        first,
        "interaction",
        json!({"email": "Zhang.Wei@Example.cn", "name": "王伟", "channel": "chat",
               "content": "我是王伟，手机13812345678，邮箱zhang.wei@example.cn"}),
    )
    .await;
    // The same item again (a redelivery) and a second message by the same email.
    node.send(
        first,
        "interaction",
        json!({"email": "zhang.wei@example.cn", "channel": "chat", "content": "again"}),
    )
    .await;
    node.send(
        Uuid::now_v7(),
        "email_opened",
        json!({"email": "zhang.wei@example.cn", "detail": "opened 13812345678"}),
    )
    .await;
    if node.task.is_none() {
        node.run();
    }
    let metrics = node.settle(3).await;
    assert_eq!(metrics.duplicates_total, 1, "{metrics:?}");
    assert_eq!(metrics.customers_registered_total, 1, "{metrics:?}");

    let events = node.events();
    let types: Vec<&str> = events.iter().map(|event| event.event_type()).collect();
    assert_eq!(types, ["CustomerRegistered", "InteractionRecorded", "ActivityLogged"]);
    let customer = events[0].payload.customer_id().unwrap().to_owned();
    assert!(customer.starts_with("cus_"));
    let EventPayload::CustomerRegistered(registered) = &events[0].payload else { panic!() };
    assert_eq!((registered.name.as_str(), registered.email.as_str()), ("<PERSON_1>", "<EMAIL_1>"));
    let EventPayload::InteractionRecorded(recorded) = &events[1].payload else { panic!() };
    assert_eq!(recorded.content, "我是<PERSON_1>，手机<PHONE_1>，邮箱<EMAIL_1>");
    assert_eq!(events[1].event_id, first);
    assert_eq!(events[1].actor, Actor::new(ActorKind::Integration, "default"));
    assert_eq!(events[0].causation_id, Some(first));
    let EventPayload::ActivityLogged(activity) = &events[2].payload else { panic!() };
    assert_eq!(activity.detail, "opened <PHONE_1>");
    assert_eq!(activity.customer_id, customer);

    // The gateway's view of the same vault.
    let found = node.vault.lookup(LookupKind::Email, "zhang.wei@example.cn").await.unwrap();
    assert_eq!(found.as_deref(), Some(customer.as_str()));
    assert_eq!(
        node.vault.reveal(&customer, &recorded.content).await.unwrap(),
        "我是王伟，手机13812345678，邮箱zhang.wei@example.cn"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_and_forgotten_items_are_dropped_without_stopping_the_agent() {
    let node = Node::start();
    node.send(
        Uuid::now_v7(),
        "teleport",
        json!({"customer_id": "c1", "content": "ann@example.com"}),
    )
    .await;
    node.send(
        Uuid::now_v7(),
        "interaction",
        json!({"customer_id": "c1", "channel": "fax", "content": "x"}),
    )
    .await;
    node.send(Uuid::now_v7(), "interaction", interaction("c1", "write to ann@example.com")).await;
    node.settle(3).await;
    node.vault.forget("c1").unwrap();
    node.send(Uuid::now_v7(), "interaction", interaction("c1", "new mail: bob@example.com")).await;
    let metrics = node.settle(4).await;
    assert_eq!(metrics.intake_dropped_total, 3, "{metrics:?}");
    let events = node.events();
    assert_eq!(events.len(), 1);
    let EventPayload::InteractionRecorded(recorded) = &events[0].payload else { panic!() };
    assert_eq!(recorded.content, "write to <EMAIL_1>");
    assert_eq!(node.vault.reveal("c1", &recorded.content).await.unwrap(), "write to <EMAIL_1>");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_takes_what_was_left() {
    let node = Node::start();
    node.shutdown.trigger();
    let Node { _dir, store, vault, intake, task, .. } = node;
    task.unwrap().await.unwrap().unwrap();
    // Accepted while no agent runs.
    for index in 0..20 {
        let data = interaction(&format!("c{}", index % 3), &format!("call 1381234{index:04}"));
        let raw = RawIntake {
            event_id: Uuid::now_v7(),
            source: "default".into(),
            delivery_id: None,
            received_at: Utc::now(),
            event_type: "interaction".into(),
            data_json: data.to_string(),
            actor: Actor::new(ActorKind::Integration, "default"),
        };
        intake.accept(raw).await.unwrap();
    }
    let bus = Arc::new(EmbeddedBus::new(store.log_dyn(), store.checkpoints.clone()));
    let agent = MaskingAgent::new(bus, vault, DETECTOR.clone()).with_batch(7);
    let metrics = agent.metrics();
    let shutdown = Shutdown::new();
    let task = tokio::spawn(agent.run(intake.clone(), shutdown.clone()));
    let queue = store.log.intake();
    for _ in 0..1000 {
        if queue.is_empty() && metrics.snapshot().events_appended_total == 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(metrics.snapshot().events_appended_total, 20);
    shutdown.trigger();
    task.await.unwrap().unwrap();
    use event_store::EventLog;
    let events = store.log.read_all(0, usize::MAX).unwrap();
    // Each customer's interactions are in the order they were accepted.
    for customer in ["c0", "c1", "c2"] {
        let contents: Vec<String> = events
            .iter()
            .filter(|event| event.envelope.payload.customer_id() == Some(customer))
            .map(|event| match &event.envelope.payload {
                EventPayload::InteractionRecorded(recorded) => recorded.content.clone(),
                _ => String::new(),
            })
            .collect();
        let expected: Vec<String> =
            (1..=contents.len()).map(|number| format!("call <PHONE_{number}>")).collect();
        assert_eq!(contents, expected, "{customer}");
    }
}

/// Pieces of CRM messages: personal data in the formats detected, and filler.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        9 => support::pii_value(),
        1 => "(I'm|my name is|我是|联系人：) ?(John Smith|Anna|王伟|欧阳娜娜)",
        1 => "(手机号|电话|call me at|Order #|工单号 )",
        1 => "<(EMAIL|PHONE|PERSON)_[0-9]{1,2}>",
        1 => "[ ,.，。：:\\-]{1,3}",
        1 => "[a-zA-Z]{1,10}",
        1 => "[\\u{4e00}-\\u{9fa5}]{1,6}",
    ]
}

fn message() -> impl Strategy<Value = (String, Option<String>, usize)> {
    (
        prop::collection::vec(piece(), 1..10).prop_map(|pieces| pieces.join(" ")),
        prop::option::of("[a-z]{1,8}@[a-z]{2,8}\\.com"),
        0usize..3,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Through the whole agent path: no value the detector finds in a raw
    /// message (nor the sender's email) appears in the event made from it,
    /// encoded as JSON, nor in that interaction or profile in the customer 360
    /// read model.
    #[test]
    fn no_detected_value_reaches_the_log_or_the_read_model(
        messages in prop::collection::vec(message(), 1..8),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let node = Node::start();
            // Event id → the raw values that must not appear in its event.
            let mut secrets: HashMap<String, Vec<String>> = HashMap::new();
            let mut emails: Vec<String> = Vec::new();
            for (content, email, customer) in &messages {
                let event_id = Uuid::now_v7();
                let values = secrets.entry(event_id.to_string()).or_default();
                for entity in DETECTOR.detect(content, &[] as &[&str]) {
                    values.push(content[entity.start..entity.end].to_owned());
                }
                let mut data = json!({"channel": "chat", "content": content});
                match email {
                    Some(email) => {
                        values.push(email.clone());
                        emails.push(email.clone());
                        data["email"] = email.clone().into();
                    }
                    None => data["customer_id"] = format!("c{customer}").into(),
                }
                node.send(event_id, "interaction", data).await;
            }
            node.settle(messages.len() as u64).await;
            let events = node.events();
            let store = node.stop().await;
            let log = store.log_dyn();
            store.read_models.catch_up(&log).unwrap();
            prop_assert_eq!(
                events.iter().filter(|e| e.event_type() == "InteractionRecorded").count(),
                messages.len()
            );
            let none = Vec::new();
            for event in &events {
                let json = event.to_json().to_string();
                let values = match event.event_type() {
                    "CustomerRegistered" => &emails,
                    _ => secrets.get(&event.event_id.to_string()).unwrap_or(&none),
                };
                for value in values {
                    prop_assert!(!json.contains(value.as_str()), "{value:?} leaked into {json}");
                }
            }
            for row in store.read_models.customer360.rows_after(None) {
                let (_, row) = row.unwrap();
                for email in &emails {
                    let profile = format!("{} {} {}", row.name, row.email, row.phone);
                    prop_assert!(!profile.contains(email.as_str()), "{email:?} in {profile}");
                }
                for interaction in &row.recent_interactions {
                    let values = secrets.get(&interaction.interaction_id).unwrap_or(&none);
                    for value in values {
                        prop_assert!(
                            !interaction.content.contains(value.as_str()),
                            "{value:?} leaked into the 360 view: {}", interaction.content
                        );
                    }
                }
            }
            Ok(())
        })?;
    }
}

/// The embedded intake, with arrivals added to its load as if a burst of
/// webhooks came in, and its waiting bytes reported at the limit on demand.
struct BurstIntake {
    inner: Arc<EmbeddedIntake>,
    arrivals: Arc<std::sync::atomic::AtomicU64>,
    full: bool,
}

#[async_trait::async_trait]
impl Intake for BurstIntake {
    async fn accept(
        &self,
        intake: RawIntake,
    ) -> Result<event_store::intake::IntakeReceipt, agent_kit::BusError> {
        self.inner.accept(intake).await
    }

    async fn subscribe(
        &self,
    ) -> Result<Box<dyn agent_kit::intake::IntakeSubscription>, agent_kit::BusError> {
        self.inner.subscribe().await
    }

    fn load(&self) -> Option<agent_kit::intake::IntakeLoad> {
        let mut load = self.inner.load()?;
        load.accepted += self.arrivals.load(std::sync::atomic::Ordering::Relaxed);
        if self.full {
            load.waiting_bytes = load.limit_bytes;
        }
        Some(load)
    }
}

/// Runs the agent over a [`BurstIntake`] while a simulated burst of about
/// 10,000 webhooks per second goes on, sends `count` real items into it, and
/// returns the node, the burst's switch and the agent's metrics.
async fn under_burst(
    policy: masking::BurstYield,
    full: bool,
    count: usize,
) -> (Node, Arc<std::sync::atomic::AtomicBool>, Arc<masking::Metrics>) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let mut node = Node::open();
    let agent = node.agent.take().unwrap().with_burst_yield(Some(policy));
    let metrics = agent.metrics();
    let arrivals = Arc::new(AtomicU64::new(0));
    let bursting = Arc::new(AtomicBool::new(true));
    let (bump, on) = (arrivals.clone(), bursting.clone());
    tokio::spawn(async move {
        while on.load(Ordering::Relaxed) {
            bump.fetch_add(100, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let intake = Arc::new(BurstIntake { inner: node.intake.clone(), arrivals, full });
    node.task = Some(tokio::spawn(agent.run(intake, node.shutdown.clone())));
    // The idle agent samples the load: the burst is known before items come.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for index in 0..count {
        node.send(Uuid::now_v7(), "interaction", interaction(&format!("b{index}"), "hello")).await;
    }
    (node, bursting, metrics)
}

async fn appended(metrics: &masking::Metrics, count: u64) -> bool {
    for _ in 0..1000 {
        if metrics.snapshot().events_appended_total >= count {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_webhooks_is_masked_once_it_ends() {
    let policy = masking::BurstYield { above_per_second: 1_000, max_wait: Duration::from_secs(60) };
    let (node, bursting, metrics) = under_burst(policy, false, 30).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let during = metrics.snapshot();
    assert_eq!(during.events_appended_total, 0, "masked during the burst: {during:?}");
    assert_eq!(during.burst_waits_total, 1);
    assert_eq!(node.store.log.intake().len(), 30, "every accepted item waits");
    bursting.store(false, std::sync::atomic::Ordering::Relaxed);
    assert!(appended(&metrics, 30).await, "not masked after the burst: {:?}", metrics.snapshot());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_longer_than_the_wait_is_masked_while_it_goes_on() {
    let policy =
        masking::BurstYield { above_per_second: 1_000, max_wait: Duration::from_millis(300) };
    let (node, bursting, metrics) = under_burst(policy, false, 30).await;
    assert!(appended(&metrics, 30).await, "the wait was not bounded: {:?}", metrics.snapshot());
    assert!(metrics.snapshot().burst_waits_total >= 1);
    bursting.store(false, std::sync::atomic::Ordering::Relaxed);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intake_filling_up_is_masked_during_a_burst() {
    let policy = masking::BurstYield { above_per_second: 1_000, max_wait: Duration::from_secs(60) };
    let (node, bursting, metrics) = under_burst(policy, true, 30).await;
    assert!(appended(&metrics, 30).await, "waited with a full intake: {:?}", metrics.snapshot());
    assert_eq!(metrics.snapshot().burst_waits_total, 0);
    bursting.store(false, std::sync::atomic::Ordering::Relaxed);
    node.stop().await;
}
