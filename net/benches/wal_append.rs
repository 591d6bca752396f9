//! Appends to the write-ahead log with and without segment preallocation: 100-byte records,
//! each appended and synced alone (one client's worst case), in rounds that alternate the two
//! settings so that a change in the machine's load falls on both. Prints the figures.
//!
//! `cargo bench -p chat-net --bench wal_append [-- ROUNDS RECORDS]` (default 6 rounds of
//! 2,000 records each), in a temporary directory on the current file system (`TMPDIR`).

use chat_core::chat::Op;
use chat_core::durable::{Entry, EntryBody, Record};
use chat_core::service::Request;
use chat_net::storage::{Storage, StorageOptions};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rounds = args.first().copied().unwrap_or(6);
    let records = args.get(1).copied().unwrap_or(2_000);
    let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for (i, preallocate) in [false, true].into_iter().enumerate() {
            // Swap the order every round.
            let preallocate = preallocate ^ (round % 2 == 1);
            let i = i ^ (round % 2);
            times[i].extend(run(preallocate, records));
        }
    }
    println!("{rounds} rounds of {records} appends of a 100-byte entry, each synced alone");
    println!("preallocate  appends/s   p50 us   p90 us   p99 us");
    for (i, name) in ["no", "yes"].iter().enumerate() {
        let t = &mut times[i];
        t.sort_unstable();
        let total: Duration = t.iter().sum();
        let q = |p: f64| t[((p * t.len() as f64) as usize).min(t.len() - 1)].as_micros();
        println!(
            "{name:<11} {:>10.0} {:>8} {:>8} {:>8}",
            t.len() as f64 / total.as_secs_f64(),
            q(0.5),
            q(0.9),
            q(0.99)
        );
    }
}

/// Appends and syncs `records` entries one at a time in a fresh directory.
fn run(preallocate: bool, records: usize) -> Vec<Duration> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let opts = StorageOptions {
        preallocate,
        ..StorageOptions::default()
    };
    let (mut storage, _, _) = Storage::open(dir.path(), opts).expect("open storage");
    (1..=records as u64)
        .map(|index| {
            let record = Record::Entry(Entry {
                index,
                view: 1,
                body: EntryBody::Request(Request {
                    client: 7,
                    request: index,
                    op: Op::Send {
                        to: "bob".into(),
                        text: "x".repeat(100),
                    },
                }),
            });
            let started = Instant::now();
            storage.append(&[record]).expect("append");
            storage.sync().expect("sync");
            started.elapsed()
        })
        .collect()
}
