//! The checkers can fail: with a deliberate protocol bug switched on in every replica, some
//! safety checker must reject a run within a bounded number of seeds. Each test prints how
//! many seeds it took. A run may also stop on an assertion inside the core, or fail on
//! liveness (which the protocol's own bugs can cause without any mutation): those are
//! counted and reported, but only a safety checker's failure (agreement, linearizability,
//! messages, invariants, recovery) counts as caught.

use chat_core::replica::Mutations;
use chat_sim::{check, parse_mutations, Inject, RunSpec};

/// Runs seeds 0.. with `mutations` until a checker fails; returns how many seeds that took.
fn seeds_until_caught(name: &str, mutations: Mutations, max_seeds: u64) -> u64 {
    seeds_until_caught_in(name, mutations, None, max_seeds)
}

/// As [`seeds_until_caught`], with only the kinds of random fault in `inject`.
fn seeds_until_caught_in(
    name: &str,
    mutations: Mutations,
    inject: Option<Inject>,
    max_seeds: u64,
) -> u64 {
    let (mut panics, mut liveness) = (0, 0);
    for seed in 0..max_seeds {
        let spec = RunSpec {
            mutations,
            inject,
            ..RunSpec::new(seed)
        };
        let Err(failure) = check(spec) else {
            continue;
        };
        if failure.message.starts_with("panicked") {
            panics += 1;
            continue;
        }
        if failure.message.starts_with("liveness") {
            liveness += 1;
            continue;
        }
        let first_line = failure.message.lines().next().unwrap_or_default();
        println!(
            "mutation {name}: caught after {} seeds (seed {seed}; earlier seeds: {panics} stopped on a core assertion, {liveness} failed on liveness): {first_line}",
            seed + 1
        );
        return seed + 1;
    }
    panic!(
        "mutation {name} was not caught by any safety checker in {max_seeds} seeds \
         ({panics} stopped on a core assertion, {liveness} failed on liveness)"
    );
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
/// seed 33 is the first to meet it.
#[test]
fn stale_reads_are_caught() {
    let mutations = Mutations {
        stale_reads: true,
        ..Mutations::default()
    };
    seeds_until_caught("stale_reads", mutations, 200);
}

// ----- issue 8's mutations: one rule of the two-crash protocol off each -----
//
// Each switch is named as `SIM_MUTATION` takes it. The counts are in NOTEBOOK.md.

/// Searches seeds for a safety checker's failure with the two-crash mutation `name`
/// switched on, under the random faults `inject` (`"all"`: every kind within the model).
/// Each budget is about the seeds the first catch took (NOTEBOOK.md) with some room.
fn two_crash_mutation_is_caught(name: &str, inject: &str, max_seeds: u64) -> u64 {
    let mutations = parse_mutations(name).unwrap_or_else(|e| panic!("mutation {name}: {e}"));
    let inject = Inject::parse(inject).expect("fault kinds");
    seeds_until_caught_in(name, mutations, Some(inject), max_seeds)
}

/// Rule 4(a): evidence of a crash counts only if it came while the proposer held a lease
/// from the crashed member. With core 28594c7 the first catch is seed 626 (208 before).
#[test]
fn evidence_without_lease_is_caught() {
    two_crash_mutation_is_caught("evidence_without_lease", "all", 700);
}

/// Rule 3: a restarted replica neither votes, accepts nor uses evidence for
/// L(1 + drift) + margin.
#[test]
fn restarted_acts_at_once_is_caught() {
    two_crash_mutation_is_caught("restarted_acts_at_once", "all", 100);
}

/// Rule 4(b) (trace T3): helpers first let their promise to the excluded member expire.
#[test]
#[ignore = "not caught in 1,000 soak seeds with core 76c4bdd, with or without only silent faults (seed 231 with e955657; NOTEBOOK.md)"]
fn silent_exclusion_while_promised_is_caught() {
    two_crash_mutation_is_caught(
        "silent_exclusion_while_promised",
        "host_crash,partition,cut",
        300,
    );
}

/// Rule 1a (trace F1): a phase-1 answer is a durable promise.
#[test]
#[ignore = "not caught by a safety checker in 1,000 soak seeds with core 76c4bdd (942 fail on liveness first; seed 288 with e955657; NOTEBOOK.md)"]
fn promise_nothing_is_caught() {
    two_crash_mutation_is_caught("promise_nothing", "all", 300);
}

/// Rule 1d (trace T1): nothing commits in a view before every member accepted it.
#[test]
fn act_before_established_is_caught() {
    two_crash_mutation_is_caught("act_before_established", "all", 50);
}

/// Rule 1c (trace T2): accept only once holding the proposer's whole log.
#[test]
fn accept_before_log_is_caught() {
    two_crash_mutation_is_caught("accept_before_log", "crash", 50);
}

/// Rule 8 (trace F4): the view-of-one fast path holds only if the replica's accepted view
/// is that established view of itself.
#[test]
#[ignore = "not caught by a safety checker in 1,000 crash-only soak seeds (NOTEBOOK.md, 2026-12-03)"]
fn view_of_one_ignores_accepted_is_caught() {
    two_crash_mutation_is_caught("view_of_one_ignores_accepted", "crash", 200);
}

/// Rule 1a: after a phase-1 answer, no acknowledgement of an older view's entries.
#[test]
#[ignore = "not caught in 1,000 soak seeds; the model finds it implied by other rules (NOTEBOOK.md, 2026-12-03)"]
fn still_acknowledge_is_caught() {
    two_crash_mutation_is_caught("still_acknowledge", "all", 200);
}

/// Rule 2: commit needs every member of the established view.
#[test]
fn commit_with_majority_is_caught() {
    two_crash_mutation_is_caught("commit_with_majority", "all", 100);
}

/// The busy-phase liveness check can fail: with a bound far below a request's round trip,
/// the first request pending while a majority runs and the network is whole is reported.
#[test]
fn busy_phase_liveness_check_fires() {
    let opts = chat_sim::SimOptions {
        busy_liveness_bound: chat_core::time::Duration::from_micros(1),
        ..chat_sim::SimOptions::for_seed(1)
    };
    let failure = chat_sim::run(opts).expect_err("a 1 us bound must be broken");
    assert_eq!(failure.checker, chat_sim::Checker::Liveness, "{failure}");
    assert!(
        failure.detail.contains("after liveness was promised"),
        "{failure}"
    );
}
