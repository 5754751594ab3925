//! The event log contract, run against the sled log and the in-memory log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use bus_schema::{
    ActivityKind, ActivityLogged, Actor, ActorKind, Channel, CustomerRegistered, EventEnvelope,
    EventPayload, ExpectedRevision, InteractionRecorded, StreamId,
};
use chrono::Utc;
use event_store::log::{AppendError, StreamAppend};
use event_store::verify::{Verdict, verify};
use event_store::{
    CatchUpSubscription, EventLog, MemoryEventLog, ReadModels, SledEventLog, SledOptions, SledStore,
};

fn customer(id: &str) -> StreamId {
    StreamId::customer(id).unwrap()
}

fn registered(id: &str) -> EventEnvelope {
    EventEnvelope::new(
        customer(id),
        Actor::new(ActorKind::Human, "alice"),
        EventPayload::CustomerRegistered(CustomerRegistered {
            customer_id: id.into(),
            name: format!("Customer {id}"),
            email: String::new(),
            phone: String::new(),
            company: "Acme".into(),
            owner: "alice".into(),
            stage: "lead".into(),
        }),
    )
}

fn interaction(id: &str, n: usize) -> EventEnvelope {
    EventEnvelope::new(
        customer(id),
        Actor::new(ActorKind::Integration, "default"),
        EventPayload::InteractionRecorded(InteractionRecorded {
            interaction_id: format!("int_{n}"),
            customer_id: id.into(),
            channel: Channel::Email,
            content: format!("message {n}"),
            sentiment_score: Some((n % 3) as f64 / 3.0 - 0.5),
            occurred_at: Utc::now(),
            source: "default".into(),
        }),
    )
}

/// Appends interactions `ns` of customer `c1`, one append (one group) each.
async fn append_one_by_one(log: &dyn EventLog, ns: std::ops::Range<usize>) {
    for n in ns {
        log.append(&customer("c1"), ExpectedRevision::Any, vec![interaction("c1", n)])
            .await
            .unwrap();
    }
}

fn activity(id: &str) -> EventEnvelope {
    EventEnvelope::new(
        customer(id),
        Actor::new(ActorKind::Integration, "default"),
        EventPayload::ActivityLogged(ActivityLogged {
            activity_id: uuid::Uuid::now_v7().to_string(),
            customer_id: id.into(),
            kind: ActivityKind::LinkClicked,
            detail: String::new(),
            occurred_at: Utc::now(),
        }),
    )
}

fn sled_log() -> (tempfile::TempDir, Arc<SledEventLog>) {
    let dir = tempfile::tempdir().unwrap();
    let log = SledEventLog::open(dir.path(), SledOptions::default()).unwrap();
    (dir, Arc::new(log))
}

fn logs() -> Vec<(&'static str, Option<tempfile::TempDir>, Arc<dyn EventLog>)> {
    let (dir, log) = sled_log();
    vec![("memory", None, Arc::new(MemoryEventLog::new())), ("sled", Some(dir), log)]
}

#[tokio::test]
async fn appends_read_back_in_order_with_revisions() {
    for (name, _dir, log) in logs() {
        let stream = customer("c1");
        let first =
            log.append(&stream, ExpectedRevision::NoStream, vec![registered("c1")]).await.unwrap();
        assert_eq!(first.positions, vec![1], "{name}");
        let other = log
            .append(&customer("c2"), ExpectedRevision::Any, vec![registered("c2")])
            .await
            .unwrap();
        assert_eq!(other.positions, vec![2]);
        let next = log
            .append(
                &stream,
                ExpectedRevision::Exact(1),
                vec![interaction("c1", 1), interaction("c1", 2)],
            )
            .await
            .unwrap();
        assert_eq!(next.positions, vec![3, 4]);
        assert_eq!(log.stream_revision(&stream).unwrap(), 4);
        assert_eq!(log.head(), 4);
        let positions: Vec<_> =
            log.read_stream(&stream, 0, 100).unwrap().iter().map(|e| e.position).collect();
        assert_eq!(positions, vec![1, 3, 4], "{name}");
        let positions: Vec<_> =
            log.read_stream(&stream, 3, 100).unwrap().iter().map(|e| e.position).collect();
        assert_eq!(positions, vec![3, 4]);
        let all: Vec<_> = log.read_all(2, 2).unwrap().iter().map(|e| e.position).collect();
        assert_eq!(all, vec![2, 3]);
    }
}

#[tokio::test]
async fn stale_revision_conflicts_with_the_actual_one_and_writes_nothing() {
    for (name, _dir, log) in logs() {
        let stream = customer("c1");
        log.append(&stream, ExpectedRevision::NoStream, vec![registered("c1")]).await.unwrap();
        let error = log
            .append(&stream, ExpectedRevision::NoStream, vec![interaction("c1", 1)])
            .await
            .unwrap_err();
        assert!(matches!(error, AppendError::Conflict { actual: 1, .. }), "{name}: {error}");
        let error = log
            .append(&stream, ExpectedRevision::Exact(7), vec![interaction("c1", 1)])
            .await
            .unwrap_err();
        assert_eq!(error.actual_revision(), Some(1));
        assert_eq!(log.head(), 1, "{name}");
    }
}

#[tokio::test]
async fn one_append_to_many_streams_settles_each_stream_on_its_own() {
    for (name, _dir, log) in logs() {
        log.append(&customer("c1"), ExpectedRevision::NoStream, vec![registered("c1")])
            .await
            .unwrap();
        let retried = interaction("c3", 1);
        let appends = vec![
            StreamAppend {
                stream: customer("c1"),
                expected: ExpectedRevision::Exact(1),
                events: vec![interaction("c1", 1), interaction("c1", 2)],
            },
            // Stale: c1 is at 1, not empty. Refused alone.
            StreamAppend {
                stream: customer("c1"),
                expected: ExpectedRevision::NoStream,
                events: vec![interaction("c1", 3)],
            },
            // An event of another stream: invalid, refused alone.
            StreamAppend {
                stream: customer("c2"),
                expected: ExpectedRevision::Any,
                events: vec![interaction("c9", 1)],
            },
            StreamAppend {
                stream: customer("c3"),
                expected: ExpectedRevision::NoStream,
                events: vec![registered("c3"), retried.clone()],
            },
            StreamAppend {
                stream: customer("c4"),
                expected: ExpectedRevision::Any,
                events: vec![],
            },
        ];
        let outcomes = log.append_many(appends).await.unwrap();
        assert_eq!(outcomes.len(), 5, "{name}");
        assert_eq!(outcomes[0].as_ref().unwrap().positions, vec![2, 3], "{name}");
        assert!(matches!(outcomes[1], Err(AppendError::Conflict { actual: 3, .. })), "{name}");
        assert!(matches!(outcomes[2], Err(AppendError::Invalid(_))), "{name}");
        assert_eq!(outcomes[3].as_ref().unwrap().positions, vec![4, 5], "{name}");
        assert!(outcomes[4].as_ref().unwrap().positions.is_empty(), "{name}");
        assert_eq!(log.head(), 5, "{name}");
        assert_eq!(log.stream_revision(&customer("c1")).unwrap(), 3, "{name}");
        assert_eq!(log.stream_revision(&customer("c2")).unwrap(), 0, "{name}");
        assert_eq!(log.read_stream(&customer("c3"), 0, 10).unwrap().len(), 2, "{name}");

        // Sent again (a redelivery): the stored events come back as duplicates.
        let again = log
            .append_many(vec![StreamAppend {
                stream: customer("c3"),
                expected: ExpectedRevision::Any,
                events: vec![retried],
            }])
            .await
            .unwrap();
        let outcome = again[0].as_ref().unwrap();
        assert!(outcome.duplicate, "{name}");
        assert_eq!(outcome.positions, vec![5], "{name}");
        assert_eq!(log.head(), 5, "{name}");
    }
}

#[tokio::test]
async fn the_same_event_twice_is_stored_once() {
    for (name, _dir, log) in logs() {
        let stream = customer("c1");
        let event = registered("c1");
        let first =
            log.append(&stream, ExpectedRevision::NoStream, vec![event.clone()]).await.unwrap();
        // A retry after a lost acknowledgement: the revision moved, yet the answer
        // is the original position, not a conflict.
        let again =
            log.append(&stream, ExpectedRevision::NoStream, vec![event.clone()]).await.unwrap();
        assert!(again.duplicate, "{name}");
        assert_eq!(again.positions, first.positions);
        let at = log.append_at(vec![(10, event.clone())]).await.unwrap();
        assert!(at[0].duplicate);
        assert_eq!(log.head(), 1);
        let mixed =
            log.append(&stream, ExpectedRevision::Any, vec![event, interaction("c1", 1)]).await;
        assert!(matches!(mixed, Err(AppendError::PartialDuplicate { .. })), "{name}");
        // One id twice inside one append is refused, naming the field, and
        // writes nothing.
        let twice = interaction("c1", 2);
        let error = log
            .append(&stream, ExpectedRevision::Any, vec![twice.clone(), twice])
            .await
            .unwrap_err();
        let AppendError::Invalid(error) = error else { panic!("{name}: {error}") };
        assert_eq!(error.field, "event_id", "{name}");
        assert_eq!(log.head(), 1, "{name}");
    }
}

#[tokio::test]
async fn idempotency_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let event = registered("c1");
    {
        let log = SledEventLog::open(dir.path(), SledOptions::default()).unwrap();
        log.append(&customer("c1"), ExpectedRevision::NoStream, vec![event.clone()]).await.unwrap();
        log.close().unwrap();
    }
    let log = SledEventLog::open(dir.path(), SledOptions::default()).unwrap();
    let again =
        log.append(&customer("c1"), ExpectedRevision::Any, vec![event.clone()]).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.positions, vec![1]);
    assert_eq!(log.head(), 1);
    assert_eq!(log.position_of(event.event_id).unwrap(), Some(1));
}

#[tokio::test]
async fn events_for_another_stream_are_refused() {
    for (_, _dir, log) in logs() {
        let error = log
            .append(&customer("c1"), ExpectedRevision::Any, vec![registered("c2")])
            .await
            .unwrap_err();
        assert!(matches!(error, AppendError::Invalid(ref e) if e.field == "stream"), "{error}");
    }
}

#[tokio::test]
async fn replicated_positions_keep_gaps_and_refuse_going_back() {
    for (name, _dir, log) in logs() {
        let first = registered("c1");
        log.append_at(vec![(5, first.clone())]).await.unwrap();
        let outcomes = log.append_at(vec![(6, first), (9, interaction("c1", 1))]).await.unwrap();
        assert!(outcomes[0].duplicate && !outcomes[1].duplicate, "{name}");
        assert_eq!(log.stream_revision(&customer("c1")).unwrap(), 9, "{name}");
        let error =
            log.append_at(vec![(12, registered("c3")), (7, registered("c2"))]).await.unwrap_err();
        assert!(matches!(error, AppendError::OutOfOrder { position: 7, head: 12 }), "{name}");
        assert_eq!(log.head(), 9, "{name}: a refused batch wrote something");
        let all: Vec<_> = log.read_all(0, 10).unwrap().iter().map(|e| e.position).collect();
        assert_eq!(all, vec![5, 9]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_never_lose_an_update() {
    for (name, _dir, log) in logs() {
        let stream = customer("hot");
        let writers = 16;
        let per_writer = 20;
        let mut tasks = Vec::new();
        for writer in 0..writers {
            let log = log.clone();
            let stream = stream.clone();
            tasks.push(tokio::spawn(async move {
                let mut wins = Vec::new();
                let mut conflicts = 0;
                while wins.len() < per_writer {
                    let revision = log.stream_revision(&stream).unwrap();
                    let expected = ExpectedRevision::from_revision(revision);
                    match log.append(&stream, expected, vec![interaction("hot", writer)]).await {
                        Ok(outcome) => wins.push((revision, outcome.revision())),
                        Err(AppendError::Conflict { actual, .. }) => {
                            assert_ne!(actual, revision);
                            conflicts += 1;
                        }
                        Err(other) => panic!("{other}"),
                    }
                }
                (wins, conflicts)
            }));
        }
        let mut based_on = BTreeSet::new();
        for task in tasks {
            let (wins, _) = task.await.unwrap();
            for (revision, _) in wins {
                // Exactly one writer wins each revision.
                assert!(based_on.insert(revision), "{name}: two writers won revision {revision}");
            }
        }
        let events = log.read_stream(&stream, 0, usize::MAX).unwrap();
        assert_eq!(events.len(), writers * per_writer, "{name}: lost updates");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_subscription_switches_to_live_without_gap_or_duplicate() {
    for (name, _dir, log) in logs() {
        append_one_by_one(&*log, 0..300).await;
        let writer = {
            let log = log.clone();
            tokio::spawn(async move {
                append_one_by_one(&*log, 300..600).await;
            })
        };
        let mut subscription = CatchUpSubscription::new(log.clone(), 0);
        let mut expected = 1;
        while expected <= 600 {
            let event = subscription.next().await.unwrap().unwrap();
            assert_eq!(event.position, expected, "{name}");
            expected += 1;
        }
        writer.await.unwrap();
        assert!(subscription.try_next().unwrap().is_none());
    }
}

#[tokio::test]
async fn a_changed_byte_breaks_verify_at_that_position() {
    let (_dir, log) = sled_log();
    append_one_by_one(&*log, 0..10).await;
    assert!(matches!(verify(&log).unwrap(), Verdict::Intact { records: 10, head: 10, .. }));
    change_one_byte_and_verify(&log, 6);
}

/// Flips one byte of the stored record at `at` and expects `verify` to name it.
fn change_one_byte_and_verify(log: &SledEventLog, at: u64) {
    let (_, record) = log.raw_records(at).next().unwrap().unwrap();
    let mut bytes = record.encode();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x01;
    log.overwrite_record_for_test(at, &bytes).unwrap();
    match verify(log).unwrap() {
        Verdict::Broken { position, .. } => assert_eq!(position, at),
        intact => panic!("tampering went unnoticed: {intact:?}"),
    }
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_directory() {
    let (dir, _log) = sled_log();
    match SledEventLog::open(dir.path(), SledOptions::default()) {
        Err(event_store::StoreError::Locked { .. }) => {}
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("opened twice"),
    }
    let missing = dir.path().join("nope");
    let options = SledOptions { create: false, ..SledOptions::default() };
    assert!(matches!(
        SledEventLog::open(&missing, options),
        Err(event_store::StoreError::Missing { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_read_models_equal_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), SledOptions::default()).unwrap();
    let log = store.log_dyn();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let runner = tokio::spawn(store.read_models.clone().run(log.clone(), shutdown));
    for c in 0..20 {
        let id = format!("c{c}");
        log.append(&customer(&id), ExpectedRevision::NoStream, vec![registered(&id)])
            .await
            .unwrap();
        for n in 0..5 {
            log.append(
                &customer(&id),
                ExpectedRevision::Any,
                vec![interaction(&id, n), activity(&id)],
            )
            .await
            .unwrap();
        }
    }
    store.read_models.customer360.wait_for(log.head()).await;
    let row = store.read_models.customer360.get("c3").unwrap().unwrap();
    assert_eq!(row.interaction_count, 5);
    assert_eq!(row.recent_interactions.len(), 5);
    assert_eq!(row.activity_counts["link_clicked"], 5);
    assert_eq!(row.revision, log.stream_revision(&customer("c3")).unwrap());
    let live = store.read_models.customer360.digest().unwrap();
    stop.send(true).unwrap();
    runner.await.unwrap().unwrap();

    let fresh = ReadModels::temporary().unwrap();
    fresh.customer360.rebuild(&log, &mut |_| {}).unwrap();
    assert_eq!(fresh.customer360.digest().unwrap(), live);
    store.read_models.customer360.rebuild(&log, &mut |_| {}).unwrap();
    assert_eq!(store.read_models.customer360.digest().unwrap(), live);
}

#[tokio::test]
async fn a_log_shorter_than_what_was_durable_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = SledEventLog::open(dir.path(), SledOptions::default()).unwrap();
        append_one_by_one(&log, 0..10).await;
        log.close().unwrap();
    }
    // sled opens an emptied data file as an empty database.
    std::fs::write(dir.path().join("db"), b"").unwrap();
    match SledEventLog::open(dir.path(), SledOptions::default()) {
        Err(event_store::StoreError::Damaged { reason, .. }) => {
            assert!(reason.contains("position 10 was durable"), "{reason}")
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(log) => panic!("opened a damaged log with head {}", log.head()),
    }
}

#[tokio::test]
async fn indexes_lost_in_a_crash_are_rebuilt_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let first = registered("c1");
    {
        let log = SledEventLog::open(dir.path(), SledOptions::default()).unwrap();
        log.append(&customer("c1"), ExpectedRevision::NoStream, vec![first.clone()]).await.unwrap();
        append_one_by_one(&log, 0..20).await;
        log.close().unwrap();
    }
    // Drop every index entry and the index checkpoint, as if the indexer never ran.
    {
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("events").unwrap();
        let doomed: Vec<_> = tree
            .iter()
            .keys()
            .map(Result::unwrap)
            .filter(|key| matches!(key.first(), Some(b'S' | b'I' | b'X')))
            .collect();
        assert!(doomed.len() > 40);
        for key in doomed {
            tree.remove(key).unwrap();
        }
        db.flush().unwrap();
    }
    let log = SledEventLog::open(dir.path(), SledOptions::default()).unwrap();
    assert_eq!(log.read_stream(&customer("c1"), 0, 100).unwrap().len(), 21);
    assert_eq!(log.stream_revision(&customer("c1")).unwrap(), 21);
    assert_eq!(log.position_of(first.event_id).unwrap(), Some(1));
    let again = log.append(&customer("c1"), ExpectedRevision::Any, vec![first]).await.unwrap();
    assert!(again.duplicate);
}

#[tokio::test]
async fn the_front_of_an_unacknowledged_group_is_dropped_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = SledEventLog::open(dir.path(), SledOptions::default()).unwrap();
        append_one_by_one(&log, 0..3).await;
        log.enqueue_intake(uuid::Uuid::now_v7(), true, b"first".to_vec()).await.unwrap();
        log.close().unwrap();
    }
    // A group is written to sled key by key and made durable by the
    // write-ahead log afterwards: a crash in between can leave its first keys
    // in sled (a record past the head) and nothing in the write-ahead log.
    // Earlier versions also wrote intake items that way, each before its
    // sequence (`N`).
    {
        let db = sled::open(dir.path()).unwrap();
        let events = db.open_tree("events").unwrap();
        let mut key = vec![b'L'];
        let third = events.get([&key[..], &3u64.to_be_bytes()].concat()).unwrap().unwrap();
        key.extend_from_slice(&4u64.to_be_bytes());
        events.insert(key, third).unwrap();
        let intake = db.open_tree("intake").unwrap();
        intake.insert([&[b'Q'][..], &2u64.to_be_bytes()].concat(), b"orphan".to_vec()).unwrap();
        db.flush().unwrap();
    }
    let log = SledEventLog::open(dir.path(), SledOptions::default()).unwrap();
    assert_eq!(log.head(), 3);
    assert_eq!(log.read_all(0, 100).unwrap().len(), 3);
    assert_eq!(log.raw_records(0).count(), 3, "the record past the head is gone");
    assert!(matches!(verify(&log).unwrap(), Verdict::Intact { records: 3, .. }));
    // The orphan item was never counted: only durable items are handed out.
    log.enqueue_intake(uuid::Uuid::now_v7(), true, b"second".to_vec()).await.unwrap();
    let pending: Vec<Vec<u8>> =
        log.intake().pending(0, 10).unwrap().into_iter().map(|(_, item)| item).collect();
    assert_eq!(pending, [b"first".to_vec(), b"second".to_vec()]);
}

#[tokio::test]
async fn intake_items_are_idempotent_by_event_id_and_only_waiting_ones_are_spilled() {
    let dir = tempfile::tempdir().unwrap();
    let (waits, masked, unkeyed) =
        (uuid::Uuid::now_v7(), uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let intake_keys = |log: &SledEventLog| log.db().open_tree("intake").unwrap().len();
    let spill_files = || spill_files(dir.path());
    {
        let log = SledEventLog::open(dir.path(), SledOptions::default()).unwrap();
        assert!(!log.enqueue_intake(waits, true, b"waits".to_vec()).await.unwrap().duplicate);
        assert!(log.enqueue_intake(waits, true, b"again".to_vec()).await.unwrap().duplicate);
        assert!(!log.enqueue_intake(masked, true, b"masked".to_vec()).await.unwrap().duplicate);
        // Without deduplication, the same id is queued twice.
        for _ in 0..2 {
            let receipt = log.enqueue_intake(unkeyed, false, b"unkeyed".to_vec()).await;
            assert!(!receipt.unwrap().duplicate);
        }
        let queue = log.intake();
        let pending = queue.pending(0, 10).unwrap();
        assert_eq!(pending.len(), 4);
        // The masking agent appends the masked event under the item's id,
        // then acknowledges the item.
        let mut event = interaction("c1", 0);
        event.event_id = masked;
        log.append(&customer("c1"), ExpectedRevision::Any, vec![event]).await.unwrap();
        queue.remove(pending[1].0).unwrap();
        assert!(log.enqueue_intake(masked, true, b"retry".to_vec()).await.unwrap().duplicate);
        queue.remove(pending[2].0).unwrap();
        queue.remove(pending[3].0).unwrap();
        assert!(spill_files().is_empty(), "nothing is spilled before a checkpoint");
        // Closing checkpoints: the one item still waiting is spilled.
        log.close().unwrap();
    }
    assert_eq!(spill_files().len(), 1);
    let log = SledEventLog::open(dir.path(), SledOptions::default()).unwrap();
    assert_eq!(intake_keys(&log), 0, "sled never holds an intake item");
    let queue = log.intake();
    let pending = queue.pending(0, 10).unwrap();
    assert_eq!(pending.iter().map(|(_, item)| item.as_slice()).collect::<Vec<_>>(), [b"waits"]);
    assert!(log.enqueue_intake(waits, true, b"after".to_vec()).await.unwrap().duplicate);
    assert!(log.enqueue_intake(masked, true, b"after".to_vec()).await.unwrap().duplicate);
    // A new item queues behind the one still waiting.
    let receipt = log.enqueue_intake(uuid::Uuid::now_v7(), true, b"new".to_vec()).await.unwrap();
    assert!(!receipt.duplicate);
    let sequences: Vec<u64> = queue.pending(0, 10).unwrap().iter().map(|(s, _)| *s).collect();
    assert_eq!(sequences, [1, 2]);
    for sequence in sequences {
        queue.remove(sequence).unwrap();
    }
    assert!(spill_files().is_empty(), "a spill file goes with its last item");
    assert!(queue.is_empty());
}

#[tokio::test]
async fn a_spilled_item_masked_before_a_crash_is_not_handed_out_again() {
    let dir = tempfile::tempdir().unwrap();
    let (masked, waits) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    {
        let log = SledEventLog::open(dir.path(), SledOptions::default()).unwrap();
        log.enqueue_intake(masked, true, b"masked".to_vec()).await.unwrap();
        log.enqueue_intake(waits, true, b"waits".to_vec()).await.unwrap();
        log.close().unwrap();
    }
    let kept = spill_files(dir.path());
    assert_eq!(kept.len(), 1);
    let copy = dir.path().join("spill.copy");
    std::fs::copy(&kept[0], &copy).unwrap();
    {
        let log = SledEventLog::open(dir.path(), SledOptions::default()).unwrap();
        let queue = log.intake();
        let pending = queue.pending(0, 10).unwrap();
        let mut event = interaction("c1", 0);
        event.event_id = masked;
        log.append(&customer("c1"), ExpectedRevision::Any, vec![event]).await.unwrap();
        queue.remove(pending[0].0).unwrap();
        log.close().unwrap();
    }
    // As if the process died before the acknowledgement reached the file:
    // the file still lists the masked item.
    std::fs::rename(&copy, &kept[0]).unwrap();
    let log = SledEventLog::open(dir.path(), SledOptions::default()).unwrap();
    let pending = log.intake().pending(0, 10).unwrap();
    assert_eq!(pending.iter().map(|(_, item)| item.as_slice()).collect::<Vec<_>>(), [b"waits"]);
    assert!(log.enqueue_intake(masked, true, b"retry".to_vec()).await.unwrap().duplicate);
    let receipt = log.enqueue_intake(uuid::Uuid::now_v7(), true, b"new".to_vec()).await.unwrap();
    assert!(!receipt.duplicate);
    let sequences: Vec<u64> =
        log.intake().pending(0, 10).unwrap().iter().map(|(s, _)| *s).collect();
    assert_eq!(sequences, [2, 3], "sequences go on after the dropped item");

    // A damaged spill file stops the open rather than losing items silently.
    log.close().unwrap();
    drop(log);
    let file = spill_files(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let error = SledEventLog::open(dir.path(), SledOptions::default()).err().unwrap();
    assert!(error.to_string().contains("spill"), "{error}");
}

#[tokio::test]
async fn a_spill_written_in_many_slices_reads_back_whole_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    // About 1.4 MiB of items: several of the spill's 256 KiB slices, with
    // items of uneven sizes across the slice boundaries.
    let items: Vec<Vec<u8>> =
        (0..2_000).map(|n| format!("{n:05}").repeat(100 + n % 97).into_bytes()).collect();
    {
        let log = SledEventLog::open(dir.path(), SledOptions::default()).unwrap();
        for item in &items {
            log.enqueue_intake(uuid::Uuid::now_v7(), true, item.clone()).await.unwrap();
        }
        log.close().unwrap();
    }
    let kept = spill_files(dir.path());
    assert_eq!(kept.len(), 1);
    assert!(std::fs::metadata(&kept[0]).unwrap().len() > 5 * (256 << 10));
    let log = SledEventLog::open(dir.path(), SledOptions::default()).unwrap();
    let pending = log.intake().pending(0, 10_000).unwrap();
    let sequences: Vec<u64> = pending.iter().map(|(sequence, _)| *sequence).collect();
    assert_eq!(sequences, (1..=2_000).collect::<Vec<u64>>());
    let read: Vec<Vec<u8>> = pending.into_iter().map(|(_, item)| item).collect();
    assert!(read == items, "every item comes back byte for byte");
}

fn spill_files(data_dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(data_dir.join("intake")) else { return Vec::new() };
    let mut files: Vec<_> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "spill"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn records_of_one_group_are_read_tampered_and_recovered_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<EventEnvelope> = (0..150).map(|n| interaction("c1", n)).collect();
    {
        let log = SledEventLog::open(dir.path(), SledOptions::default()).unwrap();
        log.append(&customer("c2"), ExpectedRevision::Any, vec![interaction("c2", 0)])
            .await
            .unwrap();
        // One append is one group: more records than one block holds.
        let outcome =
            log.append(&customer("c1"), ExpectedRevision::Any, events.clone()).await.unwrap();
        assert_eq!(outcome.positions, (2..=151).collect::<Vec<u64>>());
        log.close().unwrap();
    }
    let log = SledEventLog::open(dir.path(), SledOptions::default()).unwrap();
    assert_eq!(log.head(), 151);
    for (n, event) in events.iter().enumerate() {
        assert_eq!(log.position_of(event.event_id).unwrap(), Some(n as u64 + 2));
    }
    let middle = log.read_stream(&customer("c1"), 70, 3).unwrap();
    let ids: Vec<_> = middle.iter().map(|event| event.envelope.event_id).collect();
    assert_eq!(ids, [events[68].event_id, events[69].event_id, events[70].event_id]);
    let all = log.read_all(66, 1000).unwrap();
    assert_eq!(all.first().map(|event| event.position), Some(66));
    assert_eq!(all.len(), 86);
    let raw: Vec<u64> = log.raw_records(100).map(|entry| entry.unwrap().0).collect();
    assert_eq!(raw, (100..=151).collect::<Vec<u64>>());
    let mut scanned = Vec::new();
    log.scan(40, &mut |event| {
        scanned.push(event.position);
        Ok(())
    })
    .unwrap();
    assert_eq!(scanned, (40..=151).collect::<Vec<u64>>());
    assert!(matches!(verify(&log).unwrap(), Verdict::Intact { records: 151, head: 151, .. }));

    // A changed byte inside a block is found, and named, at its own record.
    change_one_byte_and_verify(&log, 100);
}

#[tokio::test]
async fn a_rebuild_keeps_only_the_rows_the_log_makes() {
    let log: Arc<dyn EventLog> = Arc::new(MemoryEventLog::new());
    for id in ["c1", "c3"] {
        log.append(&customer(id), ExpectedRevision::NoStream, vec![registered(id)]).await.unwrap();
    }
    let db = sled::Config::new().temporary(true).open().unwrap();
    let models = ReadModels::open(&db).unwrap();
    // Rows a rebuild must drop, before, between and after the real ones.
    let rows = db.open_tree("rm.customer360").unwrap();
    for ghost in ["c0", "c2", "c9"] {
        rows.insert([&b"R"[..], ghost.as_bytes()].concat(), b"{}".to_vec()).unwrap();
    }
    models.customer360.rebuild(&log, &mut |_| {}).unwrap();
    let keys: Vec<String> = models.customer360.rows_after(None).map(|row| row.unwrap().0).collect();
    assert_eq!(keys, ["c1", "c3"]);
    assert_eq!(models.customer360.checkpoint(), 2);

    let fresh = ReadModels::temporary().unwrap();
    fresh.customer360.rebuild(&log, &mut |_| {}).unwrap();
    assert_eq!(fresh.customer360.digest().unwrap(), models.customer360.digest().unwrap());
}

#[tokio::test]
async fn a_block_reaching_past_the_head_is_cut_back_to_it_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let second_hash = {
        let log = SledEventLog::open(dir.path(), SledOptions::default()).unwrap();
        let events = (0..3).map(|n| interaction("c1", n)).collect();
        log.append(&customer("c1"), ExpectedRevision::Any, events).await.unwrap();
        let (_, second) = log.raw_records(2).next().unwrap().unwrap();
        log.close().unwrap();
        second.hash
    };
    // A head that stops inside the block, as if its last records were never
    // acknowledged (and no high-water mark says otherwise).
    std::fs::remove_file(dir.path().join("agentcrm-log-head")).unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        let mut head = 2u64.to_be_bytes().to_vec();
        head.extend_from_slice(&second_hash);
        db.open_tree("events").unwrap().insert(b"H", head).unwrap();
        db.flush().unwrap();
    }
    let log = SledEventLog::open(dir.path(), SledOptions::default()).unwrap();
    assert_eq!(log.head(), 2);
    assert_eq!(log.raw_records(0).count(), 2, "the record past the head is gone");
    assert!(matches!(verify(&log).unwrap(), Verdict::Intact { records: 2, head: 2, .. }));
    let next = log
        .append(&customer("c1"), ExpectedRevision::Any, vec![interaction("c1", 9)])
        .await
        .unwrap();
    assert_eq!(next.positions, [3]);
    assert!(matches!(verify(&log).unwrap(), Verdict::Intact { records: 3, head: 3, .. }));
}

#[tokio::test]
async fn a_full_intake_refuses_until_the_agent_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let options = SledOptions { intake_limit_bytes: 1000, ..SledOptions::default() };
    let log = SledEventLog::open(dir.path(), options).unwrap();
    let item = vec![b'x'; 400];
    for _ in 0..2 {
        log.enqueue_intake(uuid::Uuid::now_v7(), true, item.clone()).await.unwrap();
    }
    let refused = log.enqueue_intake(uuid::Uuid::now_v7(), true, item.clone()).await;
    assert!(
        matches!(refused, Err(event_store::log::AppendError::Backlog { bytes: 1000 })),
        "{refused:?}"
    );
    // The log itself goes on, and an acknowledged item makes room.
    append_one_by_one(&log, 0..1).await;
    let queue = log.intake();
    assert_eq!(queue.len(), 2);
    queue.remove(queue.pending(0, 1).unwrap()[0].0).unwrap();
    log.enqueue_intake(uuid::Uuid::now_v7(), true, item).await.unwrap();
    assert_eq!(queue.len(), 2);
}

/// The thread `indexer_thread_start` ran on, by name.
static INDEXER_HOOK_THREAD: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

fn note_indexer_hook_thread() {
    *INDEXER_HOOK_THREAD.lock().unwrap() = std::thread::current().name().map(str::to_owned);
}

#[tokio::test]
async fn the_indexer_start_hook_runs_on_the_indexer_thread_and_indexing_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let options = SledOptions {
        indexer_thread_start: Some(note_indexer_hook_thread),
        ..SledOptions::default()
    };
    let log = SledEventLog::open(dir.path(), options).unwrap();
    append_one_by_one(&log, 0..300).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while INDEXER_HOOK_THREAD.lock().unwrap().is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(INDEXER_HOOK_THREAD.lock().unwrap().as_deref(), Some("event-log-indexer"));
    // The stream reads whole while the indexer works and after a reopen.
    assert_eq!(log.read_stream(&customer("c1"), 0, 1000).unwrap().len(), 300);
    log.close().unwrap();
    drop(log);
    let log = SledEventLog::open(dir.path(), SledOptions::default()).unwrap();
    assert_eq!(log.read_stream(&customer("c1"), 0, 1000).unwrap().len(), 300);
}

/// The flusher waits for more commits only while they keep coming: neither a
/// lone writer nor writers that all wait for the group are held for the whole
/// interval, however long it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commits_wait_for_more_only_while_more_come() {
    let dir = tempfile::tempdir().unwrap();
    let options = SledOptions {
        group_commit_interval: std::time::Duration::from_secs(30),
        ..SledOptions::default()
    };
    let log = Arc::new(SledEventLog::open(dir.path(), options).unwrap());
    let limit = std::time::Duration::from_secs(20);
    tokio::time::timeout(limit, append_one_by_one(log.as_ref(), 0..50))
        .await
        .expect("a lone writer was held back");
    let writers = (0..16).map(|writer| {
        let log = log.clone();
        tokio::spawn(async move {
            for n in 0..20 {
                let event = interaction(&format!("w{writer}"), n);
                let stream = event.stream.clone();
                log.append(&stream, ExpectedRevision::Any, vec![event]).await.unwrap();
            }
        })
    });
    let all = futures::future::join_all(writers);
    for result in tokio::time::timeout(limit, all).await.expect("waiting writers were held back") {
        result.unwrap();
    }
    assert_eq!(log.head(), 50 + 16 * 20);
}
