//! One suite, both buses: the embedded bus (sled and in-memory log) and the NATS
//! JetStream bus against a real nats-server must give `ExpectedRevision`,
//! idempotency and durable subscriptions the same meaning.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use agent_kit::{Bus, BusError, EmbeddedBus, NatsBus, NatsOptions, Shutdown};
use bus_schema::subjects;
use bus_schema::{
    Actor, ActorKind, Channel, EventEnvelope, EventPayload, ExpectedRevision, InteractionRecorded,
    StreamId,
};
use event_store::checkpoints::Checkpoints;
use event_store::{EventLog, SledEventLog, SledOptions};
use proptest::prelude::*;
use tests::NatsServer;

fn event(customer: &str, n: usize) -> EventEnvelope {
    EventEnvelope::new(
        StreamId::customer(customer).unwrap(),
        Actor::new(ActorKind::Agent, "test"),
        EventPayload::InteractionRecorded(InteractionRecorded {
            interaction_id: format!("int_{n}"),
            customer_id: customer.into(),
            channel: Channel::Chat,
            content: format!("message {n}"),
            sentiment_score: None,
            occurred_at: chrono::Utc::now(),
            source: "test".into(),
        }),
    )
}

/// A bus of each kind; the NATS one only where a nats-server is installed.
struct Buses {
    buses: Vec<(&'static str, Arc<dyn Bus>)>,
    _dir: tempfile::TempDir,
    _nats: Option<NatsServer>,
}

async fn buses() -> Buses {
    let dir = tempfile::tempdir().unwrap();
    let db = event_store::sled_log::open_db(dir.path(), &SledOptions::default()).unwrap();
    let checkpoints = Checkpoints::open(&db).unwrap();
    let log = SledEventLog::with_db(db, dir.path(), SledOptions::default()).unwrap();
    let mut buses: Vec<(&'static str, Arc<dyn Bus>)> = vec![
        ("embedded-memory", Arc::new(EmbeddedBus::in_memory())),
        ("embedded-sled", Arc::new(EmbeddedBus::new(Arc::new(log), checkpoints))),
    ];
    let nats = NatsServer::start();
    if let Some(server) = &nats {
        let bus = NatsBus::connect(NatsOptions::new(server.url())).await.unwrap();
        buses.push(("nats", Arc::new(bus)));
    }
    Buses { buses, _dir: dir, _nats: nats }
}

/// `writers` tasks each append `per_writer` events to one stream, every time with
/// the revision they just read. Returns (revisions won, events in the stream).
async fn race(
    bus: Arc<dyn Bus>,
    stream: &str,
    writers: usize,
    per_writer: usize,
) -> (Vec<u64>, usize) {
    let stream_id = StreamId::customer(stream).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let bus = bus.clone();
        let stream_id = stream_id.clone();
        let stream = stream.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut won = Vec::new();
            let mut n = 0;
            while won.len() < per_writer {
                n += 1;
                let revision = bus.stream_revision(&stream_id).await.unwrap();
                let expected = ExpectedRevision::from_revision(revision);
                match bus.append(&stream_id, expected, vec![event(&stream, n)]).await {
                    Ok(_) => won.push(revision),
                    Err(BusError::Conflict { actual, .. }) => assert_ne!(actual, revision),
                    Err(other) => panic!("{other}"),
                }
            }
            won
        }));
    }
    let mut won = Vec::new();
    for task in tasks {
        won.extend(task.await.unwrap());
    }
    let stored = bus.read_stream(&stream_id).await.unwrap().len();
    (won, stored)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Exactly one writer wins each revision; the losers see `Conflict`; nothing
    /// is lost. In every mode.
    #[test]
    fn concurrent_writers_never_lose_an_update(writers in 2usize..6, per_writer in 1usize..6) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
        runtime.block_on(async {
            let buses = buses().await;
            for (name, bus) in &buses.buses {
                let stream = format!("race-{}", uuid::Uuid::now_v7().simple());
                let (won, stored) = race(bus.clone(), &stream, writers, per_writer).await;
                let distinct: BTreeSet<_> = won.iter().collect();
                prop_assert_eq!(distinct.len(), won.len(), "{}: a revision was won twice", name);
                prop_assert_eq!(stored, writers * per_writer, "{}: lost updates", name);
            }
            Ok(())
        })?;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_report_the_actual_revision_in_every_mode() {
    let buses = buses().await;
    for (name, bus) in &buses.buses {
        let stream = StreamId::customer("occ").unwrap();
        let first =
            bus.append(&stream, ExpectedRevision::NoStream, vec![event("occ", 1)]).await.unwrap();
        let revision = first.revision();
        let error = bus
            .append(&stream, ExpectedRevision::NoStream, vec![event("occ", 2)])
            .await
            .unwrap_err();
        assert_eq!(error.actual_revision(), Some(revision), "{name}: {error}");
        let error = bus
            .append(&stream, ExpectedRevision::Exact(revision + 100), vec![event("occ", 2)])
            .await
            .unwrap_err();
        assert_eq!(error.actual_revision(), Some(revision), "{name}");
        let second = bus
            .append(
                &stream,
                ExpectedRevision::Exact(revision),
                vec![event("occ", 3), event("occ", 4)],
            )
            .await
            .unwrap();
        assert_eq!(second.positions.len(), 2);
        assert_eq!(bus.stream_revision(&stream).await.unwrap(), second.revision(), "{name}");
        assert_eq!(bus.read_stream(&stream).await.unwrap().len(), 3, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_twice_is_appended_once_in_every_mode() {
    let buses = buses().await;
    for (name, bus) in &buses.buses {
        let stream = StreamId::customer("dup").unwrap();
        let once = event("dup", 1);
        let first = bus.append(&stream, ExpectedRevision::Any, vec![once.clone()]).await.unwrap();
        let again = bus.append(&stream, ExpectedRevision::Any, vec![once]).await.unwrap();
        assert!(again.duplicate, "{name}");
        assert_eq!(again.positions, first.positions, "{name}");
        assert_eq!(bus.read_stream(&stream).await.unwrap().len(), 1, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_subscriptions_resume_after_the_last_ack_in_every_mode() {
    let buses = buses().await;
    for (name, bus) in &buses.buses {
        let customer = format!("sub{}", uuid::Uuid::now_v7().simple());
        let stream = StreamId::customer(&customer).unwrap();
        for n in 0..5 {
            bus.append(&stream, ExpectedRevision::Any, vec![event(&customer, n)]).await.unwrap();
        }
        let filter = subjects::event(&stream);
        let consumer = format!("c-{customer}");
        let mut positions = Vec::new();
        {
            let mut subscription = bus.subscribe(&consumer, &filter).await.unwrap();
            for _ in 0..3 {
                let delivery = subscription.next().await.unwrap().unwrap();
                positions.push(delivery.event.position);
                delivery.ack().await.unwrap();
            }
        }
        // Give the server time to register the acks before the consumer resumes.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut subscription = bus.subscribe(&consumer, &filter).await.unwrap();
        for _ in 0..2 {
            let delivery = subscription.next().await.unwrap().unwrap();
            positions.push(delivery.event.position);
            delivery.ack().await.unwrap();
        }
        let expected: Vec<_> =
            bus.read_stream(&stream).await.unwrap().iter().map(|e| e.position).collect();
        assert_eq!(positions, expected, "{name}");
    }
}

/// Past JetStream's duplicate window the stream takes a repeated event again; the
/// event-store service still stores it once, also across a restart of the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_keeps_one_copy_after_the_dedup_window() {
    let Some(server) = NatsServer::start() else { return };
    let mut options = NatsOptions::new(server.url());
    options.duplicate_window = Duration::from_secs(1);
    let bus = NatsBus::connect(options).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stream = StreamId::customer("window").unwrap();
    let repeated = event("window", 1);

    let first = bus.append(&stream, ExpectedRevision::Any, vec![repeated.clone()]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let second = bus.append(&stream, ExpectedRevision::Any, vec![repeated.clone()]).await.unwrap();
    assert!(!second.duplicate, "JetStream should have forgotten the id by now");
    assert_ne!(first.positions, second.positions);
    bus.append(&stream, ExpectedRevision::Any, vec![event("window", 2)]).await.unwrap();

    for round in 0..2 {
        let log: Arc<dyn EventLog> =
            Arc::new(SledEventLog::open(dir.path(), SledOptions::default()).unwrap());
        let shutdown = Shutdown::new();
        let service = {
            let (bus, log, shutdown) = (bus.clone(), log.clone(), shutdown.clone());
            tokio::spawn(async move { agent_kit::store_service::run(&bus, log, shutdown).await })
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while log.head() < 3 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.trigger();
        service.await.unwrap().unwrap();
        let stored = log.read_stream(&stream, 0, 100).unwrap();
        let ids: Vec<_> = stored.iter().map(|e| e.envelope.event_id).collect();
        assert_eq!(ids.len(), 2, "round {round}: {ids:?}");
        assert_eq!(ids.iter().filter(|id| **id == repeated.event_id).count(), 1);
        assert_eq!(log.position_of(repeated.event_id).unwrap(), first.positions.first().copied());
        drop(log);
    }
}
