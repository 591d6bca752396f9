//! A run is a pure function of its options: the same seed gives the same trace, event for
//! event (a hash of every event, with its time).

use chat_sim::{run, SimOptions};

fn traced(seed: u64) -> chat_sim::Report {
    let opts = SimOptions {
        trace_digest: true,
        ..SimOptions::for_seed(seed)
    };
    run(opts).unwrap_or_else(|failure| panic!("seed {seed}: {failure}"))
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    for seed in [3, 1234] {
        let first = traced(seed);
        let second = traced(seed);
        assert!(first.trace_digest.is_some());
        assert_eq!(first, second, "seed {seed} ran differently twice");
    }
}

#[test]
fn different_seeds_give_different_traces() {
    assert_ne!(traced(5).trace_digest, traced(6).trace_digest);
}
