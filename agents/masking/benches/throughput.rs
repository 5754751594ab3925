//! Single-thread masking throughput on ~60-character CRM messages, half
//! with personal data and half without, against a naive baseline: three
//! regex replace passes (e-mail, 11-digit phone, 16-digit card) in the
//! style of a first prototype. Prints messages per second and the ratio.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use masking::{Detector, DetectorConfig, TokenTable, mask};
use regex::Regex;

const MESSAGES: [&str; 16] = [
    "Hi, can you send me the updated quote for the Pro plan today?",
    "我的手机号13812345678，请明天上午联系我，谢谢您的帮助！",
    "Please email the invoice to anna.schmidt@example.com asap ok",
    "订单已经发货了吗？我们下周一需要到货，请尽快确认一下。",
    "Call me at (415) 555-0123 after 3pm, I'm in meetings until then",
    "Thanks for the demo yesterday, the team liked the dashboards.",
    "卡号 4111 1111 1111 1111 扣款失败，请帮忙查看一下原因，谢谢",
    "Order #123456789 shipped on 2024-05-12, tracking to follow soon",
    "I'm Sarah Miller from Acme, following up on our call last week",
    "我是王伟，邮箱wang.wei@example.cn，想了解企业版的价格方案。",
    "Can we move the meeting to Thursday 10:30? Room 4B works too.",
    "IBAN DE89 3704 0044 0532 0130 00 for the refund of invoice 42",
    "The new version 2.3.1 fixed the export bug, thanks a lot team!",
    "客户反馈工单号 20240512001 还没有处理，请跟进一下进度情况。",
    "Please update my phone to +44 20 7946 0958 in your records.",
    "Price is $1,299.00 per seat per year, discount for 50+ seats.",
];

fn measure(duration: Duration, mut run_one: impl FnMut(&str)) -> f64 {
    // Warm up caches and lazily built tables before timing.
    for message in MESSAGES {
        run_one(message);
    }
    let start = Instant::now();
    let mut count = 0u64;
    while start.elapsed() < duration {
        for message in MESSAGES {
            run_one(message);
        }
        count += MESSAGES.len() as u64;
    }
    count as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let duration = Duration::from_secs(3);
    let detector = Detector::new(&DetectorConfig::default()).expect("built-in patterns compile");
    let names: [&str; 0] = [];

    let email = Regex::new(r"[\w.]+@[\w.]+").expect("literal pattern");
    let phone = Regex::new(r"\d{11}").expect("literal pattern");
    let card = Regex::new(r"\d{16}").expect("literal pattern");
    let baseline = measure(duration, |message| {
        let step = email.replace_all(message, "<EMAIL>");
        let step = phone.replace_all(&step, "<PHONE>");
        black_box(card.replace_all(&step, "<CARD>").into_owned());
    });

    let detect_only = measure(duration, |message| {
        black_box(detector.detect(message, &names));
    });

    let mask_rate = measure(duration, |message| {
        // A table per message, as the JSONL interface does: the cost of
        // minting tokens is part of the figure.
        let mut table = TokenTable::new();
        black_box(mask(&detector, message, &names, &mut table));
    });

    let average_chars =
        MESSAGES.iter().map(|message| message.chars().count()).sum::<usize>() / MESSAGES.len();
    println!(
        "masking throughput, one thread, {} messages of ~{average_chars} characters",
        MESSAGES.len()
    );
    println!("  baseline (3 naive regex replaces): {baseline:>12.0} messages/s");
    println!("  masking::Detector::detect:         {detect_only:>12.0} messages/s");
    println!("  masking::mask (detect + tokens):   {mask_rate:>12.0} messages/s");
    println!("  mask / baseline ratio:             {:>12.2}", mask_rate / baseline);
}
