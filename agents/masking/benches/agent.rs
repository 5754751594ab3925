//! Masking agent throughput: raw intake already queued in a durable sled
//! store (group commit with `fdatasync`, as `agentcrm up` runs it), drained by
//! the agent into masked, durable canonical events. Prints masked events per
//! second. ~60-character messages, half with personal data, spread over
//! `CUSTOMERS` customers given by id and some first seen by email.
//!
//!     cargo bench -p masking --bench agent
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_kit::intake::{EmbeddedIntake, Intake};
use agent_kit::{EmbeddedBus, Shutdown};
use bus_schema::{Actor, ActorKind, RawIntake};
use event_store::{SledOptions, SledStore};
use masking::{Detector, DetectorConfig, MaskingAgent, MaskingVault};
use uuid::Uuid;

const MESSAGES: [&str; 8] = [
    "Hi, can you send me the updated quote for the Pro plan today?",
    "我的手机号13812345678，请明天上午联系我，谢谢您的帮助！",
    "Please email the invoice to anna.schmidt@example.com asap ok",
    "订单已经发货了吗？我们下周一需要到货，请尽快确认一下。",
    "Call me at (415) 555-0123 after 3pm, I'm in meetings until then",
    "Thanks for the demo yesterday, the team liked the dashboards.",
    "卡号 4111 1111 1111 1111 扣款失败，请帮忙查看一下原因，谢谢",
    "Can we move the meeting to Thursday 10:30? Room 4B works too.",
];
const CUSTOMERS: usize = 1000;

fn main() {
    let count: usize =
        std::env::var("MESSAGES").ok().and_then(|value| value.parse().ok()).unwrap_or(50_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("data"), SledOptions::default()).unwrap();
        let intake = Arc::new(EmbeddedIntake::new(store.log.clone()));
        let queued = Instant::now();
        for chunk in (0..count).collect::<Vec<_>>().chunks(512) {
            let accepts = chunk.iter().map(|&index| {
                let data = if index % 10 == 0 {
                    serde_json::json!({"email": format!("buyer{}@example.com", index % CUSTOMERS),
                        "channel": "email", "content": MESSAGES[index % MESSAGES.len()]})
                } else {
                    serde_json::json!({"customer_id": format!("cus_{}", index % CUSTOMERS),
                        "channel": "chat", "content": MESSAGES[index % MESSAGES.len()]})
                };
                intake.accept(RawIntake {
                    event_id: Uuid::now_v7(),
                    source: "bench".into(),
                    delivery_id: None,
                    received_at: chrono::Utc::now(),
                    event_type: "interaction".into(),
                    data_json: data.to_string(),
                    actor: Actor::new(ActorKind::Integration, "bench"),
                })
            });
            for result in futures::future::join_all(accepts).await {
                result.unwrap();
            }
        }
        eprintln!("queued {count} raw items in {:.2}s", queued.elapsed().as_secs_f64());

        let vault = Arc::new(MaskingVault::open(store.table("vault").unwrap()).unwrap());
        let bus = Arc::new(EmbeddedBus::new(store.log_dyn(), store.checkpoints.clone()));
        let detector = Arc::new(Detector::new(&DetectorConfig::default()).unwrap());
        let agent = MaskingAgent::new(bus, vault, detector);
        let metrics = agent.metrics();
        let shutdown = Shutdown::new();
        let started = Instant::now();
        let task = tokio::spawn(agent.run(intake.clone(), shutdown.clone()));
        let queue = store.log.intake();
        while !queue.is_empty() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let elapsed = started.elapsed().as_secs_f64();
        shutdown.trigger();
        task.await.unwrap().unwrap();
        let metrics = metrics.snapshot();
        assert_eq!(metrics.intake_received_total as usize, count);
        println!(
            "masking agent: {count} raw items -> {} durable masked events ({} registrations) \
             in {elapsed:.2}s = {:.0} items/s ({} values masked)",
            metrics.events_appended_total,
            metrics.customers_registered_total,
            count as f64 / elapsed,
            metrics.entities_masked_total,
        );
        store.close().unwrap();
    });
}
