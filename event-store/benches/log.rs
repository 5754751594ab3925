//! Event-log benchmarks, each next to a raw-sled baseline measured in the same run.
//!
//! Run: `cargo bench -p event-store --bench log` (add `-- --events 1000000` to
//! change the replay size). Results go to stdout as a Markdown table; record them
//! in docs/BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use bus_schema::{
    Actor, ActorKind, Channel, EventEnvelope, EventPayload, ExpectedRevision, InteractionRecorded,
    StreamId,
};
use event_store::{EventLog, ReadModels, SledEventLog, SledOptions};

// The same allocator as the `agentcrm` binary: glibc's malloc spends half of a
// replay freeing, on the folding thread, what the decoding threads allocated.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CONTENT: &str = "Hello, we looked at the proposal you sent last week and the team is \
    interested in the premium plan. Could you share the price for 50 seats, the contract \
    terms, and whether onboarding is included? We would like to decide before the end of \
    the quarter. Thanks, <PERSON_1> (<EMAIL_1>)";

fn event(customer: usize, n: usize) -> EventEnvelope {
    let id = format!("cus_{customer}");
    EventEnvelope::new(
        StreamId::customer(&id).unwrap(),
        Actor::new(ActorKind::Integration, "bench"),
        EventPayload::InteractionRecorded(InteractionRecorded {
            interaction_id: format!("int_{n}"),
            customer_id: id,
            channel: Channel::Email,
            content: CONTENT.into(),
            sentiment_score: Some(0.4),
            occurred_at: chrono::Utc::now(),
            source: "bench".into(),
        }),
    )
}

fn bench_dir(name: &str) -> tempfile::TempDir {
    // Under target/, on the real disk (not a tmpfs), like a node's data directory.
    let base = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    std::fs::create_dir_all(&base).unwrap();
    tempfile::Builder::new().prefix(name).tempdir_in(base).unwrap()
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| match entry.metadata() {
                    Ok(meta) if meta.is_dir() => dir_size(&entry.path()),
                    Ok(meta) => meta.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Durable appends through the log: `writers` tasks, `total` events in all.
fn durable_appends(runtime: &tokio::runtime::Runtime, writers: usize, total: usize) -> f64 {
    let dir = bench_dir("append");
    let log: Arc<dyn EventLog> =
        Arc::new(SledEventLog::open(dir.path(), SledOptions::default()).unwrap());
    let per_writer = total / writers;
    let started = Instant::now();
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for writer in 0..writers {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..per_writer {
                    let event = event(writer * 1_000_000 + n % 100, n);
                    let stream = event.stream.clone();
                    log.append(&stream, ExpectedRevision::Any, vec![event]).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
    (per_writer * writers) as f64 / started.elapsed().as_secs_f64()
}

/// Raw sled: one insert per event, with a `flush()` after each (or none).
fn raw_sled(total: usize, flush_each: bool) -> f64 {
    let dir = bench_dir("raw");
    let db = sled::Config::new().path(dir.path()).cache_capacity(64 << 20).open().unwrap();
    let tree = db.open_tree("events").unwrap();
    let started = Instant::now();
    for n in 0..total {
        let bytes = event(n % 100, n).encode();
        tree.insert((n as u64).to_be_bytes(), bytes).unwrap();
        if flush_each {
            db.flush().unwrap();
        }
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn replay(runtime: &tokio::runtime::Runtime, events: usize) -> Replay {
    // `REPLAY_DIR` keeps the filled log between runs (profiling the read side).
    let kept = std::env::var("REPLAY_DIR").ok().map(std::path::PathBuf::from);
    let temporary = bench_dir("replay");
    let dir_path = kept.clone().unwrap_or_else(|| temporary.path().to_owned());
    let refill = kept.as_ref().is_none_or(|path| !path.join("db").exists());
    // Filling without fsync: only the read side is measured here.
    let options = SledOptions { fsync: false, ..SledOptions::default() };
    let db = event_store::sled_log::open_db(&dir_path, &options).unwrap();
    let models = ReadModels::open(&db).unwrap();
    let log = Arc::new(SledEventLog::with_db(db.clone(), &dir_path, options.clone()).unwrap());
    let fill = Instant::now();
    runtime.block_on(async {
        if !refill {
            return;
        }
        let mut tasks = Vec::new();
        for writer in 0..64 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = writer;
                while n < events {
                    let event = event(n % 10_000, n);
                    let stream = event.stream.clone();
                    log.append(&stream, ExpectedRevision::Any, vec![event]).await.unwrap();
                    n += 64;
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
    eprintln!("filled {events} events in {:.1}s", fill.elapsed().as_secs_f64());
    log.close().unwrap();
    let events = usize::try_from(log.head()).unwrap();
    let bytes_per_event = dir_size(&dir_path) as f64 / events as f64;

    // Baseline: the same records in a plain sled tree, one key per event,
    // scanned and decoded on one thread.
    let raw_temporary = bench_dir("replay-raw");
    let raw_dir = kept
        .as_ref()
        .map_or_else(|| raw_temporary.path().to_owned(), |path| path.with_extension("raw"));
    let raw_db = sled::Config::new().path(&raw_dir).cache_capacity(64 << 20).open().unwrap();
    let raw_tree = raw_db.open_tree("events").unwrap();
    if raw_tree.len() != events {
        raw_tree.clear().unwrap();
        for entry in log.raw_records(0) {
            let (position, record) = entry.unwrap();
            raw_tree.insert(position.to_be_bytes(), record.encode()).unwrap();
        }
        raw_db.flush().unwrap();
    }
    let started = Instant::now();
    let scanned_bytes: usize = raw_tree.iter().map(|entry| entry.unwrap().1.len()).sum();
    eprintln!(
        "raw sled scan alone (no decode): {:.0} events/s ({scanned_bytes} bytes)",
        events as f64 / started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let mut decoded = 0usize;
    for entry in raw_tree.iter() {
        let (key, value) = entry.unwrap();
        let position = u64::from_be_bytes(key[..].try_into().unwrap());
        let event = event_store::record::decode_event(position, &value).unwrap();
        decoded += usize::from(event.position > 0);
    }
    let raw_rate = decoded as f64 / started.elapsed().as_secs_f64();
    // The log's own blocks, read and decoded on one thread.
    let started = Instant::now();
    let mut own = 0;
    loop {
        let read = log.read_all(own as u64 + 1, 4096).unwrap().len();
        if read == 0 {
            break;
        }
        own += read;
    }
    eprintln!(
        "the log's blocks, scan + decode on one thread: {:.0} events/s",
        own as f64 / started.elapsed().as_secs_f64()
    );

    let log_dyn: Arc<dyn EventLog> = log.clone();
    let started = Instant::now();
    let mut scanned = 0usize;
    log_dyn
        .scan(0, &mut |_| {
            scanned += 1;
            Ok(())
        })
        .unwrap();
    eprintln!(
        "parallel scan + decode alone: {:.0} events/s",
        scanned as f64 / started.elapsed().as_secs_f64()
    );
    // Replay as `agentcrm replay` does it on a node: the live read model is
    // up to date, and is rebuilt from position 0. Three times; the median.
    models.customer360.catch_up(&log_dyn).unwrap();
    let mut rates: Vec<f64> = (0..3)
        .map(|_| {
            let started = Instant::now();
            let folded = models.customer360.rebuild(&log_dyn, &mut |_| {}).unwrap();
            folded as f64 / started.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    eprintln!("replays over the live read model: {rates:.0?} events/s");
    // A first build: the same fold into a read model with no rows yet.
    let empty_dir = bench_dir("replay-empty");
    let empty_db = event_store::sled_log::open_db(empty_dir.path(), &options).unwrap();
    let empty = ReadModels::open(&empty_db).unwrap();
    let started = Instant::now();
    let folded = empty.customer360.rebuild(&log_dyn, &mut |_| {}).unwrap();
    let first_build = folded as f64 / started.elapsed().as_secs_f64();
    Replay { raw_rate, replay_rate: rates[1], first_build, bytes_per_event, rss: peak_rss_mib() }
}

struct Replay {
    raw_rate: f64,
    replay_rate: f64,
    first_build: f64,
    bytes_per_event: f64,
    rss: f64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let events = args
        .windows(2)
        .find(|pair| pair[0] == "--events")
        .and_then(|pair| pair[1].parse().ok())
        .unwrap_or(1_000_000usize);
    let appends = 20_000;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    if args.iter().any(|arg| arg == "--replay-only") {
        let Replay { raw_rate, replay_rate, first_build, bytes_per_event, rss } =
            replay(&runtime, events);
        println!(
            "replay {replay_rate:.0}/s first build {first_build:.0}/s raw {raw_rate:.0}/s bytes/event {bytes_per_event:.0} rss {rss:.0} MiB"
        );
        return;
    }

    let raw_flush = raw_sled(appends / 4, true);
    let raw_none = raw_sled(appends * 5, false);
    let one = durable_appends(&runtime, 1, appends / 4);
    let many = durable_appends(&runtime, 64, appends * 5);
    let Replay { raw_rate, replay_rate, first_build, bytes_per_event, rss } =
        replay(&runtime, events);

    println!("| measurement | AgentCRM | baseline (same run) | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| durable appends/s, 1 writer (fsync per batch) | {one:.0} | raw sled insert + flush() per event: {raw_flush:.0} | {:.2}x |",
        one / raw_flush
    );
    println!(
        "| durable appends/s, 64 writers (group commit + fdatasync) | {many:.0} | raw sled insert, no flush: {raw_none:.0} | {:.2}x |",
        many / raw_none
    );
    println!(
        "| replay events/s over {events} events (customer 360 rebuilt over the live model, median of 3) | {replay_rate:.0} | raw sled scan + decode, one key per event: {raw_rate:.0} | {:.2}x |",
        replay_rate / raw_rate
    );
    println!(
        "| first build events/s (the same fold into an empty read model) | {first_build:.0} | raw sled scan + decode, one key per event: {raw_rate:.0} | {:.2}x |",
        first_build / raw_rate
    );
    println!("| bytes on disk per event | {bytes_per_event:.0} | | |");
    println!("| peak RSS (MiB) | {rss:.0} | | |");
}
