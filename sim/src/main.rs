//! The soak: many random faulty seeds, in parallel over the cores.
//!
//! `cargo run -p chat-sim --release -- --seeds 100000 [--start S] [--threads T] [--inject crash,pause] [--max-clock-drift 0.01]`
//! Failures are listed at the end with the command that reproduces each; the exit status is
//! non-zero if any seed failed.

use chat_sim::{check, parse_drift, parse_mutations, Inject, RunSpec, SeedFailure};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Run many random faulty seeds of the chat simulator")]
struct Args {
    /// How many seeds to run.
    #[arg(long, default_value_t = 1000)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Deliberate protocol bugs (mutations), comma-separated (checker self-tests).
    #[arg(long, default_value = "")]
    mutation: String,
    /// A smaller client table, so that sessions are evicted.
    #[arg(long)]
    max_sessions: Option<u32>,
    /// Another number of replicas than 3.
    #[arg(long)]
    replicas: Option<u8>,
    /// Only these kinds of random fault, comma-separated: crash (kill -9: refusals),
    /// host_crash (silence), pause (within the pause bound), partition, cut, client_cut; or
    /// all (every kind within the fault model); long_pause (beyond the pause bound, outside
    /// the model) only when named, as in all,long_pause.
    #[arg(long, value_parser = Inject::parse)]
    inject: Option<Inject>,
    /// Bound of the replicas' clock drift, a fraction (default 0.01: ±1 %).
    #[arg(long, value_parser = parse_drift)]
    max_clock_drift: Option<f64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mutations = match parse_mutations(&args.mutation) {
        Ok(mutations) => mutations,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let bar = ProgressBar::new(args.seeds);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} seeds, {per_sec}, eta {eta} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    // Panics are reported as failures of their seed; keep them off the progress bar.
    std::panic::set_hook(Box::new(|_| {}));
    let next = AtomicU64::new(0);
    let failures: Mutex<Vec<SeedFailure>> = Mutex::new(Vec::new());
    let unjudged = AtomicU64::new(0);
    let rejoined = AtomicU64::new(0);
    let batched = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= args.seeds {
                    break;
                }
                let spec = RunSpec {
                    seed: args.start + i,
                    mutations,
                    max_sessions: args.max_sessions,
                    replicas: args.replicas,
                    inject: args.inject,
                    max_clock_drift: args.max_clock_drift,
                };
                match check(spec) {
                    Ok(report) => {
                        if report.stats.quiet_unpromised {
                            unjudged.fetch_add(1, Ordering::Relaxed);
                        }
                        if report.stats.empty_disk_rejoins > 0 {
                            rejoined.fetch_add(1, Ordering::Relaxed);
                        }
                        if report.stats.batched_inputs > 0 {
                            batched.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(failure) => {
                        bar.println(failure.to_string());
                        let mut all = failures.lock().expect("no poisoning: panics are caught");
                        all.push(failure);
                        bar.set_message(format!("{} failed", all.len()));
                    }
                }
                bar.inc(1);
            });
        }
    });
    bar.finish();
    let elapsed = started.elapsed().as_secs_f64();
    let mut failures = failures.into_inner().expect("no poisoning");
    failures.sort_by_key(|f| f.seed);
    println!(
        "{} seeds ({}..{}) in {elapsed:.1} s on {threads} threads: {:.1} seeds/s, {} failed; \
         {} passed with the quiet phase's liveness not judged (no progress promised); {} \
         passed with a replica rebuilt on an empty disk (--rejoin); {} passed with inputs \
         batched into one driver turn",
        args.seeds,
        args.start,
        args.start + args.seeds,
        args.seeds as f64 / elapsed,
        failures.len(),
        unjudged.load(Ordering::Relaxed),
        rejoined.load(Ordering::Relaxed),
        batched.load(Ordering::Relaxed)
    );
    for failure in &failures {
        println!("{failure}");
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
