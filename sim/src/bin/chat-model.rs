//! The exhaustive model of the two-crash protocol at a chosen bound (see `sim/README.md`).
//!
//! `cargo run -p chat-sim --release --bin chat-model -- [--bound NAME]
//! [--mutation NAME|all] [--threads T]`

use chat_sim::model::{explore, format_trace, Bounds, Mutation, ProtocolModel};
use clap::Parser;
use std::process::ExitCode;

#[derive(Parser)]
#[command(about = "Model-check the two-crash replication protocol exhaustively")]
struct Args {
    /// The bound: test3 (cargo test's), full3 (the long run), rejoin3 (replica 2 starts
    /// excluded), small5 (five replicas), lag3 (rule 6: a cut, fair heartbeats), or a targeted bound that starts near a trace: f4,
    /// r1, r3, restarted, amnesiac-votes, amnesiac-unwitnessed, amnesiac-recovers
    /// (`sim/src/model/starts.rs`).
    #[arg(long, default_value = "full3")]
    bound: String,
    /// Switch one rule off (a mutation name), or `all` to run every mutation in turn.
    #[arg(long)]
    mutation: Option<String>,
    /// Checker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Override the clock bound (ticks).
    #[arg(long)]
    max_time: Option<u8>,
    /// Override the lease length (ticks).
    #[arg(long)]
    lease: Option<u8>,
    /// Override the number of client values.
    #[arg(long)]
    max_values: Option<u8>,
    /// Override the number of crashes.
    #[arg(long)]
    max_crashes: Option<u8>,
    /// Override the number of restarts.
    #[arg(long)]
    max_restarts: Option<u8>,
    /// Override the highest ballot number.
    #[arg(long)]
    max_ballot: Option<u8>,
    /// Stop after about this many states (a partial run, to measure the rate).
    #[arg(long)]
    target_states: Option<usize>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let Some(mut bounds) = Bounds::named(&args.bound) else {
        eprintln!(
            "unknown bound {:?}: {}",
            args.bound,
            Bounds::NAMES.join(", ")
        );
        return ExitCode::FAILURE;
    };
    if let Some(t) = args.max_time {
        bounds.max_time = t;
    }
    if let Some(v) = args.lease {
        bounds.lease = v;
    }
    if let Some(v) = args.max_values {
        bounds.max_values = v;
    }
    if let Some(v) = args.max_crashes {
        bounds.max_crashes = v;
    }
    if let Some(v) = args.max_restarts {
        bounds.max_restarts = v;
    }
    if let Some(v) = args.max_ballot {
        bounds.max_ballot = v;
    }
    let mutations: Vec<Option<Mutation>> = match args.mutation.as_deref() {
        None => vec![None],
        Some("all") => Mutation::ALL.into_iter().map(Some).collect(),
        Some(name) => match Mutation::parse(name) {
            Some(m) => vec![Some(m)],
            None => {
                let names: Vec<String> = Mutation::ALL.iter().map(|m| m.name()).collect();
                eprintln!("unknown mutation {name:?}; known: {}", names.join(", "));
                return ExitCode::FAILURE;
            }
        },
    };
    println!("bound: {bounds:?}");
    let mut ok = true;
    for mutation in mutations {
        let model = ProtocolModel::new(bounds.clone(), mutation);
        let outcome = explore(model, args.threads, mutation.is_some(), args.target_states);
        let label = mutation.map_or("all rules".to_string(), |m| m.name());
        println!(
            "{label}: {} states, depth {}, {:.1} s, failover reached: {}, cut resolved: {}",
            outcome.unique_states,
            outcome.max_depth,
            outcome.elapsed.as_secs_f64(),
            outcome.failover_reached,
            outcome.lag_exclusion_reached
        );
        for (property, path) in &outcome.violations {
            println!("  violated: {property}\n{}", format_trace(path));
        }
        // A mutation is found by a safety violation, F3 (a liveness trace) by the failover
        // it prevents; the rules pass with no violation.
        let expected = mutation.is_some();
        let found = !outcome.violations.is_empty()
            || (mutation == Some(Mutation::F3) && !outcome.failover_reached)
            || (mutation == Some(Mutation::NoLagReport) && !outcome.lag_exclusion_reached);
        if found != expected {
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
