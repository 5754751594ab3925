//! Single-thread masking throughput against a naive baseline: three regex
//! replace passes (e-mail, 11-digit phone, 16-digit card) in the style of a
//! first prototype. Prints messages per second and the ratio.
//!
//! The messages come from JSON-lines files of `{"text": …}` named on the
//! command line; with none, `bench/masking/short.jsonl` (sixteen ~60-character
//! CRM messages in English and Chinese, half with personal data). With
//! `--json` one JSON line per file goes to stdout, for
//! `bench/masking/evaluate.py` to put next to Presidio's rate on the same
//! messages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use masking::{Detector, DetectorConfig, TokenTable, mask};
use regex::Regex;

fn measure(messages: &[String], duration: Duration, mut run_one: impl FnMut(&str)) -> f64 {
    // Warm up caches and lazily built tables before timing.
    for message in messages {
        run_one(message);
    }
    let start = Instant::now();
    let mut count = 0u64;
    while start.elapsed() < duration {
        for message in messages {
            run_one(message);
        }
        count += messages.len() as u64;
    }
    count as f64 / start.elapsed().as_secs_f64()
}

fn load(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            value["text"].as_str().expect("a `text` field").to_owned()
        })
        .collect()
}

fn main() {
    let mut json = false;
    let mut files: Vec<PathBuf> = Vec::new();
    for argument in std::env::args().skip(1) {
        match argument.as_str() {
            "--json" => json = true,
            // `cargo bench` passes `--bench` to every bench program.
            "--bench" => {}
            path => files.push(PathBuf::from(path)),
        }
    }
    if files.is_empty() {
        files.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/masking/short.jsonl"));
    }
    let duration = Duration::from_secs(3);
    let detector = Detector::new(&DetectorConfig::default()).expect("built-in patterns compile");
    let names: [&str; 0] = [];
    let email = Regex::new(r"[\w.]+@[\w.]+").expect("literal pattern");
    let phone = Regex::new(r"\d{11}").expect("literal pattern");
    let card = Regex::new(r"\d{16}").expect("literal pattern");

    for file in files {
        let messages = load(&file);
        let baseline = measure(&messages, duration, |message| {
            let step = email.replace_all(message, "<EMAIL>");
            let step = phone.replace_all(&step, "<PHONE>");
            black_box(card.replace_all(&step, "<CARD>").into_owned());
        });
        let detect_only = measure(&messages, duration, |message| {
            black_box(detector.detect(message, &names));
        });
        let mask_rate = measure(&messages, duration, |message| {
            // A table per message, as the JSONL interface does: the cost of
            // minting tokens is part of the figure.
            let mut table = TokenTable::new();
            black_box(mask(&detector, message, &names, &mut table));
        });
        let average_chars = messages.iter().map(|message| message.chars().count()).sum::<usize>()
            / messages.len().max(1);
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "file": file.file_name().map(|name| name.to_string_lossy().into_owned()),
                    "messages": messages.len(),
                    "average_chars": average_chars,
                    "baseline_per_s": baseline,
                    "detect_per_s": detect_only,
                    "mask_per_s": mask_rate,
                })
            );
            continue;
        }
        println!(
            "masking throughput, one thread, {} messages of ~{average_chars} characters ({})",
            messages.len(),
            file.display()
        );
        println!("  baseline (3 naive regex replaces): {baseline:>12.0} messages/s");
        println!("  masking::Detector::detect:         {detect_only:>12.0} messages/s");
        println!("  masking::mask (detect + tokens):   {mask_rate:>12.0} messages/s");
        println!("  mask / baseline ratio:             {:>12.2}", mask_rate / baseline);
    }
}
