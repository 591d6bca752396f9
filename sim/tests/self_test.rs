//! The checkers can fail: with a deliberate protocol bug switched on in every replica, some
//! checker must reject a run within a few seeds. Each test prints how many seeds it took.
//! (A run may also stop on an assertion inside the core; that is reported, but only a
//! checker failure counts here.)

use chat_core::replica::Mutations;
use chat_sim::{check, RunSpec};

/// Runs seeds 0.. with `mutations` until a checker fails; returns how many seeds that took.
fn seeds_until_caught(name: &str, mutations: Mutations, max_seeds: u64) -> u64 {
    let mut panics = 0;
    for seed in 0..max_seeds {
        let spec = RunSpec {
            mutations,
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
fn commit_with_majority_is_caught() {
    let mutations = Mutations {
        commit_with_majority: true,
        ..Mutations::default()
    };
    seeds_until_caught("commit_with_majority", mutations, 100);
}

#[test]
fn accept_before_log_is_caught() {
    let mutations = Mutations {
        accept_before_log: true,
        ..Mutations::default()
    };
    seeds_until_caught("accept_before_log", mutations, 100);
}

#[test]
fn no_client_table_is_caught() {
    let mutations = Mutations {
        no_client_table: true,
        ..Mutations::default()
    };
    seeds_until_caught("no_client_table", mutations, 100);
}

/// Since the simulated clients run the core session, the lag a stale read needs is rarer:
/// seed 153 is the first to meet it.
#[test]
fn stale_reads_are_caught() {
    let mutations = Mutations {
        stale_reads: true,
        ..Mutations::default()
    };
    seeds_until_caught("stale_reads", mutations, 200);
}
