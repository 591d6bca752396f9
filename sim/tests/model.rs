//! The exhaustive model of the two-crash protocol (`sim/src/model`, rules in NOTEBOOK.md):
//! with every rule in place it finds no violation at a representative bound, and with each
//! rule switched off ([`Mutation`]) it finds the counterexample of the trace that rule fixes.
//! F4, R1, R3 and RestartedVotesAtOnce need bounds beyond this test's budget, and F2 and
//! StillAcks are implied by other rules (NOTEBOOK.md, "Two-crash protocol").
//! Bigger bounds: `cargo run -p chat-sim --release --bin chat-model` (sim/README.md).

use chat_sim::model::{explore, format_trace, Bounds, Mutation, Outcome, ProtocolModel};

fn report(label: &str, outcome: &Outcome) {
    println!(
        "{label}: {} states, depth {}, {:.1} s",
        outcome.unique_states,
        outcome.max_depth,
        outcome.elapsed.as_secs_f64()
    );
    for (property, path) in &outcome.violations {
        println!("violated: {property}\n{}", format_trace(path));
    }
}

/// A cap on the states generated, so that a bound set too big fails instead of eating the
/// machine's memory.
const CAP: usize = 8_000_000;

fn all_rules_hold(bounds: Bounds, failover: bool) {
    let outcome = explore(ProtocolModel::new(bounds, None), 1, false, Some(CAP));
    report("all rules", &outcome);
    assert!(
        outcome.total_states < CAP,
        "the bound was not explored whole"
    );
    assert!(
        outcome.violations.is_empty(),
        "a violation with every rule in place (traces above)"
    );
    assert!(
        outcome.failover_reached || !failover,
        "the survivor never committed right after the others crashed"
    );
}

/// Explores with `mutation` until the first safety violation, which it must find.
fn caught(mutation: Mutation, bounds: Bounds) {
    let outcome = explore(
        ProtocolModel::new(bounds, Some(mutation)),
        1,
        true,
        Some(CAP),
    );
    report(&mutation.name(), &outcome);
    assert!(
        !outcome.violations.is_empty(),
        "{mutation:?}: no violation found"
    );
}

/// Two crashes (one may be silent), no restart, leases of one tick, two ticks.
fn crashes() -> Bounds {
    Bounds::test3()
}

/// Replica 2 starts excluded, waiting to rejoin; one restart.
fn rejoins() -> Bounds {
    Bounds::rejoin3()
}

#[test]
fn all_rules_hold_with_three_replicas() {
    all_rules_hold(Bounds::test3(), true);
}

#[test]
fn all_rules_hold_with_five_replicas() {
    all_rules_hold(Bounds::small5(), false);
}

#[test]
fn t1_acting_in_a_view_not_every_member_accepted() {
    caught(Mutation::T1, rejoins());
}

#[test]
fn t2_accepting_before_holding_the_log() {
    caught(Mutation::T2, crashes());
}

#[test]
fn t3_excluding_a_silent_member_while_promising_it() {
    caught(Mutation::T3, crashes());
}

#[test]
fn f1_a_phase_one_answer_that_promises_nothing() {
    caught(Mutation::F1, crashes());
}

/// F3 is a liveness trace: waiting out promises to crashed members, the survivor cannot
/// commit right after the second crash (it can only after a promise interval).
#[test]
fn f3_waiting_out_promises_to_crashed_members() {
    let bounds = Bounds {
        max_time: 0,
        max_silent: 0,
        ..Bounds::test3()
    };
    let correct = explore(
        ProtocolModel::new(bounds.clone(), None),
        1,
        false,
        Some(CAP),
    );
    report("all rules, crash only", &correct);
    assert!(correct.failover_reached && correct.violations.is_empty());
    let outcome = explore(
        ProtocolModel::new(bounds, Some(Mutation::F3)),
        1,
        false,
        Some(CAP),
    );
    report("F3", &outcome);
    assert!(outcome.violations.is_empty());
    assert!(
        !outcome.failover_reached,
        "F3: the survivor still failed over at once"
    );
}

#[test]
fn r2_a_duplicate_process_posing_as_a_new_incarnation() {
    caught(Mutation::R2, crashes());
}

#[test]
fn m1_inheriting_exclusions_of_an_unestablished_base() {
    caught(Mutation::M1, crashes());
}

#[test]
fn evidence_without_a_lease() {
    caught(Mutation::EvidenceWithoutLease, crashes());
}

#[test]
fn commit_with_a_majority_of_the_view() {
    caught(Mutation::CommitWithMajority, crashes());
}
