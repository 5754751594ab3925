#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The boundary by permission, against a real nats-server started with
//! `deploy/nats/nats-server.conf`: the gateway user publishes raw intake, the
//! masking user consumes it, and the sales agent's user is refused on
//! `crm.ingest.>` both ways (core publish and subscribe, and the CRM_INGEST
//! work queue). The vault service answers the gateway only, and each user's
//! replies arrive under its own inbox prefix that no other user may read.

use std::time::Duration;

use std::sync::Arc;

use agent_kit::intake::{Intake, NatsIntake};
use agent_kit::vault::{NatsPiiVault, PiiVault, ProfileFields};
use agent_kit::{BusError, NatsBus, NatsOptions, Shutdown};
use bus_schema::{Actor, ActorKind, RawIntake};
use futures::StreamExt;
use masking::MaskingVault;
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
    // `flush` only writes to the socket; the server handles each connection
    // on its own, so the gateway's publish could overtake masking's SUB. A
    // request on masking's connection answers only after the server has read
    // everything masking sent before it.
    NatsIntake::connect(&masking).await.unwrap();

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_gateway_reaches_the_vault_and_replies_stay_private() {
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = start_server(dir.path()) else { return };
    let short = Duration::from_millis(750);
    let gateway = connect(&server, "gateway").await;
    let masking = connect(&server, "masking").await;
    let sales = connect(&server, "sales").await;

    let shutdown = Shutdown::new();
    let vault = Arc::new(MaskingVault::temporary().unwrap());
    let service = {
        let (masking, vault, shutdown) = (masking.clone(), vault.clone(), shutdown.clone());
        tokio::spawn(async move { masking::vault_service::serve(&masking, vault, shutdown).await })
    };

    // Sales listens where the gateway's replies and the vault's requests go;
    // the server refuses both subscriptions. The gateway's own tap on its
    // inbox is the positive control.
    let mut sales_inbox_tap = sales.client().subscribe("_INBOX_gateway.>").await.unwrap();
    let mut sales_vault_tap = sales.client().subscribe("crm.vault.>").await.unwrap();
    let mut gateway_inbox_tap = gateway.client().subscribe("_INBOX_gateway.>").await.unwrap();
    sales.client().flush().await.unwrap();
    gateway.client().flush().await.unwrap();

    let profile = ProfileFields {
        name: Some("Ann Lee".into()),
        email: Some("ann.lee@example.com".into()),
        phone: None,
    };
    let from_gateway = NatsPiiVault::new(gateway.client().clone(), Duration::from_secs(2));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let tokens = loop {
        // The service subscribes in its own task: wait until it answers.
        match from_gateway.tokenize_profile("cus_ann", profile.clone()).await {
            Ok(tokens) => break tokens,
            Err(error) if std::time::Instant::now() < deadline => {
                eprintln!("waiting for the vault service: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("the vault service never answered: {error}"),
        }
    };
    assert_eq!(tokens.email.as_deref(), Some("<EMAIL_1>"));
    let revealed = from_gateway.reveal("cus_ann", "<PERSON_1> <EMAIL_1>").await.unwrap();
    assert_eq!(revealed, "Ann Lee ann.lee@example.com");
    let found =
        from_gateway.lookup(agent_kit::vault::LookupKind::Email, "ann.lee@example.com").await;
    assert_eq!(found.unwrap().as_deref(), Some("cus_ann"));

    // The gateway sees its replies (and the reveal in the clear) on its inbox;
    // sales sees neither the replies nor the requests.
    let mut replies = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout(short, gateway_inbox_tap.next()).await {
        replies.push(String::from_utf8_lossy(&message.payload).into_owned());
    }
    assert!(replies.iter().any(|reply| reply.contains("ann.lee@example.com")), "{replies:?}");
    assert!(
        !matches!(tokio::time::timeout(short, sales_inbox_tap.next()).await, Ok(Some(_))),
        "sales read the gateway's replies"
    );
    assert!(
        !matches!(tokio::time::timeout(short, sales_vault_tap.next()).await, Ok(Some(_))),
        "sales read vault requests"
    );

    // Sales may not ask the vault anything, reveal least of all: its request
    // never reaches the service, so it times out as unavailable.
    let from_sales = NatsPiiVault::new(sales.client().clone(), Duration::from_secs(1));
    let refused = from_sales.reveal("cus_ann", "<EMAIL_1>").await;
    assert!(matches!(refused, Err(BusError::Unavailable(_))), "{refused:?}");
    let refused = from_sales.forget("cus_ann").await;
    assert!(matches!(refused, Err(BusError::Unavailable(_))), "{refused:?}");
    assert!(!vault.is_forgotten("cus_ann").unwrap());

    shutdown.trigger();
    service.await.unwrap().unwrap();
}
