#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The boundary by permission, against a real nats-server started with
//! `deploy/nats/nats-server.conf`: the gateway user publishes raw intake, the
//! masking user consumes it, and the sales agent's user is refused on
//! `crm.ingest.>` both ways (core publish and subscribe, and the CRM_INGEST
//! work queue).

use std::time::Duration;

use agent_kit::intake::{Intake, NatsIntake};
use agent_kit::{NatsBus, NatsOptions};
use bus_schema::{Actor, ActorKind, RawIntake};
use futures::StreamExt;
use tests::NatsServer;
use uuid::Uuid;

const USERS: [&str; 6] = ["gateway", "masking", "sales", "support", "audit", "store"];

fn password(user: &str) -> String {
    format!("test-password-{user}")
}

/// The deploy configuration with test passwords defined in front of it (the
/// file reads them as variables; nats-server resolves variables defined in
/// the same file).
fn start_server(dir: &std::path::Path) -> Option<NatsServer> {
    let deploy = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/nats/nats-server.conf");
    let mut config = String::new();
    for user in USERS {
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

async fn connect(server: &NatsServer, user: &str) -> NatsBus {
    let mut options = NatsOptions::new(server.url());
    options.user = Some((user.to_owned(), password(user)));
    options.client_name = format!("test-{user}");
    NatsBus::connect(options).await.unwrap_or_else(|error| panic!("{user}: {error}"))
}

fn raw(content: &str) -> RawIntake {
    RawIntake {
        event_id: Uuid::now_v7(),
        source: "x".into(),
        delivery_id: None,
        received_at: chrono::Utc::now(),
        event_type: "interaction".into(),
        data_json: serde_json::json!({"customer_id": "c1", "channel": "chat", "content": content})
            .to_string(),
        actor: Actor::new(ActorKind::Integration, "x"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_gateway_publishes_and_only_masking_consumes_raw_intake() {
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = start_server(dir.path()) else { return };
    let short = Duration::from_millis(750);

    // A wrong password is refused outright.
    let mut options = NatsOptions::new(server.url());
    options.user = Some(("sales".into(), "guess".into()));
    assert!(NatsBus::connect(options).await.is_err());

    let gateway = connect(&server, "gateway").await;
    let gateway_intake = NatsIntake::connect(&gateway).await.unwrap();
    let masking = connect(&server, "masking").await;
    let masking_intake = NatsIntake::connect(&masking).await.unwrap();
    let sales = connect(&server, "sales").await;

    // Core subscriptions on crm.ingest.>: masking's is allowed (the positive
    // control), sales' is refused by the server and never sees a message.
    let mut masking_tap = masking.client().subscribe("crm.ingest.>").await.unwrap();
    let mut sales_tap = sales.client().subscribe("crm.ingest.>").await.unwrap();
    masking.client().flush().await.unwrap();
    sales.client().flush().await.unwrap();

    // The gateway publishes raw intake; the work queue acknowledges it.
    let accepted = raw("call me at 13812345678");
    let receipt = gateway_intake.accept(accepted.clone()).await.unwrap();
    assert_eq!(receipt.event_id, accepted.event_id);

    let tapped = tokio::time::timeout(Duration::from_secs(5), masking_tap.next()).await;
    assert!(matches!(tapped, Ok(Some(_))), "masking may subscribe to crm.ingest.>");
    let sales_saw = tokio::time::timeout(short, sales_tap.next()).await;
    assert!(!matches!(sales_saw, Ok(Some(_))), "sales received raw intake");

    // Sales publishing raw intake is refused: nothing reaches the queue.
    sales.client().publish("crm.ingest.x", b"forged".to_vec().into()).await.unwrap();
    sales.client().flush().await.unwrap();
    // Sales cannot reach the CRM_INGEST work queue through JetStream either.
    let sales_intake = tokio::time::timeout(Duration::from_secs(15), NatsIntake::connect(&sales));
    assert!(!matches!(sales_intake.await, Ok(Ok(_))), "sales may not set up or read CRM_INGEST");

    // The masking user consumes the gateway's item, and only that one.
    let mut subscription = masking_intake.subscribe().await.unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(5), subscription.next())
        .await
        .expect("masking received nothing")
        .unwrap()
        .unwrap();
    assert_eq!(delivery.intake, accepted);
    delivery.ack().await.unwrap();
    let next = tokio::time::timeout(short, subscription.next()).await;
    assert!(next.is_err(), "a forged or second item reached the queue");

    // The gateway itself cannot consume raw intake.
    let gateway_reads = tokio::time::timeout(Duration::from_secs(15), gateway_intake.subscribe());
    assert!(!matches!(gateway_reads.await, Ok(Ok(_))), "the gateway may not consume CRM_INGEST");
}
