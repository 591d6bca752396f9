//! The checkers can fail: with a deliberate protocol bug switched on in every replica, some
//! checker must reject a run within a few seeds. Each test prints how many seeds it took.
//! (A run may also stop on an assertion inside the core; that is reported, but only a
//! checker failure counts here.)

use chat_core::replica::Faults;
use chat_sim::{check, RunSpec};

/// Runs seeds 0.. with `faults` until a checker fails; returns how many seeds that took.
fn seeds_until_caught(name: &str, faults: Faults, max_seeds: u64) -> u64 {
    let mut panics = 0;
    for seed in 0..max_seeds {
        let spec = RunSpec {
            faults,
            ..RunSpec::new(seed)
        };
        let Err(failure) = check(spec) else {
            continue;
        };
        if failure.message.starts_with("panicked") {
            panics += 1;
            continue;
        }
        let first_line = failure.message.lines().next().unwrap_or_default();
        println!(
            "fault {name}: caught after {} seeds (seed {seed}; {panics} earlier seeds stopped on a core assertion): {first_line}",
            seed + 1
        );
        return seed + 1;
    }
    panic!("fault {name} was not caught by any checker in {max_seeds} seeds");
}

#[test]
fn commit_without_majority_is_caught() {
    let faults = Faults {
        commit_without_majority: true,
        ..Faults::default()
    };
    seeds_until_caught("commit_without_majority", faults, 100);
}

#[test]
fn vote_for_shorter_log_is_caught() {
    let faults = Faults {
        vote_for_shorter_log: true,
        ..Faults::default()
    };
    seeds_until_caught("vote_for_shorter_log", faults, 100);
}

#[test]
fn no_client_table_is_caught() {
    let faults = Faults {
        no_client_table: true,
        ..Faults::default()
    };
    seeds_until_caught("no_client_table", faults, 100);
}

/// Since the simulated clients run the core session, the lag a stale read needs is rarer:
/// seed 153 is the first to meet it.
#[test]
fn stale_reads_are_caught() {
    let faults = Faults {
        stale_reads: true,
        ..Faults::default()
    };
    seeds_until_caught("stale_reads", faults, 200);
}
