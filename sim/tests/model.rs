//! The exhaustive model of the two-crash protocol (`sim/src/model`, rules in NOTEBOOK.md):
//! with every rule in place it finds no violation at a representative bound, and with each
//! rule switched off ([`Mutation`]) it finds the counterexample of the trace that rule fixes.
//! F4, R3 and the disk-loss mutations are caught on *targeted* bounds, which start from a
//! reachable state near their trace (`sim/src/model/starts.rs`); F2, StillAcks, R1 and
//! F4KeepsPromise are implied by other rules at the bounds explored, and
//! RestartedVotesAtOnce is caught only through the stale-evidence trace below (notes:
//! NOTEBOOK.md, "Two-crash protocol", and the 2026-12-03 session-6 entry).
//! Bigger bounds: `cargo run -p chat-sim --release --bin chat-model` (sim/README.md).

use chat_sim::model::{explore, format_trace, Bounds, Mutation, Outcome, ProtocolModel};

/// A targeted bound's start: the steps played from the first view.
fn print_start(bounds: &Bounds) {
    if !bounds.start.prefix().is_empty() {
        println!(
            "start {:?}: {}",
            bounds.start,
            bounds.start.prefix().join("; ")
        );
    }
}

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
    print_start(&bounds);
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
    print_start(&bounds);
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

/// Explores the whole bound with `mutation` and finds nothing: the rule it removes is
/// implied by the others there.
fn harmless(mutation: Mutation, bounds: Bounds) {
    print_start(&bounds);
    let outcome = explore(
        ProtocolModel::new(bounds, Some(mutation)),
        1,
        false,
        Some(CAP),
    );
    report(&mutation.name(), &outcome);
    assert!(outcome.total_states < CAP, "not explored whole");
    assert!(
        outcome.violations.is_empty(),
        "{mutation:?}: a violation (traces above)"
    );
}

// ----- targeted bounds (sim/src/model/starts.rs) -----

/// F4: 0 alone in b2.0{0} proposes adding 1, crashes before hearing 1's acceptance and
/// restarts; the draft's fast path resumes it in {0}, where it commits; after another
/// restart rule 8 names 1 (it holds the highest accepted view, b3.0{0,1}), whose log lacks
/// the value.
#[test]
fn f4_view_of_one_fast_path_ignores_its_accepted_proposal() {
    caught(Mutation::F4, Bounds::f4());
}

#[test]
fn all_rules_hold_from_a_view_of_one() {
    all_rules_hold(Bounds::f4(), false);
}

/// Dropping only the fast path's check (its promise kept) is harmless: rule 2's acting
/// condition (`promised == accepted.ballot`) keeps the resumed replica from acting.
#[test]
fn f4_with_its_promise_kept_is_harmless() {
    harmless(Mutation::F4KeepsPromise, Bounds::f4());
}

/// R3: 0's proposal to add 2 is accepted by 1 and 2 (copy sent at t=0) and retransmitted
/// at t=1; crediting the acceptances from t=1 gives 0 leases that outlive 1's and 2's
/// promises: they leave 0 out and commit, crash, and 0 leaves both out on the refusals.
/// The same bound from the first view (`--bound r3`) is in the notes.
#[test]
fn r3_lease_credited_from_a_later_copy() {
    caught(Mutation::R3, Bounds::r3_adding());
}

#[test]
fn all_rules_hold_while_adding_a_replica() {
    all_rules_hold(Bounds::r3_adding(), false);
}

/// Disk loss: 2 voted for b2.0{0} leaving 1 out, lost its disk and votes for 1's rival
/// b2.1{1} leaving 0 out: two majorities.
#[test]
fn amnesiac_voting_for_a_rival_exclusion() {
    caught(Mutation::AmnesiacVotes, Bounds::amnesiac_votes());
}

#[test]
fn all_rules_hold_after_a_vote_and_a_disk_loss() {
    all_rules_hold(Bounds::amnesiac_votes(), false);
}

/// Disk loss, the reviewer's trace: 1 committed in b3.1{1,2}, lost its disk; 2 is down; 0,
/// never told it was left out, adds 1 back into b2.0{0,1} with only 1's (empty) answer.
#[test]
fn amnesiac_kept_without_a_counted_majority() {
    caught(
        Mutation::AmnesiacUnwitnessed,
        Bounds::amnesiac_unwitnessed(),
    );
}

#[test]
fn all_rules_hold_for_a_primary_left_out_unaware() {
    all_rules_hold(Bounds::amnesiac_unwitnessed(), false);
}

/// Disk loss under rule 8: 0 committed alone, lost its disk; the others re-form the first
/// view with it as if it were back.
#[test]
fn amnesiac_counted_as_reached_after_everyone_went_down() {
    caught(Mutation::AmnesiacRecovers, Bounds::amnesiac_recovers());
}

#[test]
fn all_rules_hold_when_the_survivor_loses_its_disk() {
    all_rules_hold(Bounds::amnesiac_recovers(), false);
}

// ----- the stale-evidence flaw (found this session) -----

/// The trace with the restarted member simply caught up (rule 7 as NOTEBOOK.md words it).
const STALE_EVIDENCE: [&str; 17] = [
    "1 hears a newer incarnation of 2",
    "clock ticks",
    "0 and 1 renew leases",
    "0 replicates to 2",
    "0 and 2 renew leases",
    "0 crashes (its address refuses)",
    "2 is refused by 0's address",
    "2 proposes to exclude proven {0} silent {}",
    "1 accepts b2.2{1,2} (copy sent at 2)",
    "2 receives 1's acceptance of b2.2 (echo 2)",
    "2 replicates to 1",
    "1 proposes to exclude proven {2} silent {}",
    "1 appends a client value",
    "1 commits its next index",
    "1 crashes (its address refuses)",
    "2 is refused by 1's address",
    "2 proposes to exclude proven {1} silent {}",
];

/// The same with the restarted member added back through a view change, as `core` does.
const STALE_EVIDENCE_CORE: [&str; 20] = [
    "1 hears a newer incarnation of 2",
    "clock ticks",
    "0 proposes to add 2",
    "1 accepts b2.0{0,1,2} (copy sent at 2)",
    "2 accepts b2.0{0,1,2} (copy sent at 2)",
    "0 receives 1's acceptance of b2.0 (echo 2)",
    "0 receives 2's acceptance of b2.0 (echo 2)",
    "0 replicates to 2",
    "0 and 2 renew leases",
    "0 crashes (its address refuses)",
    "2 is refused by 0's address",
    "2 proposes to exclude proven {0} silent {}",
    "1 accepts b3.2{1,2} (copy sent at 2)",
    "2 receives 1's acceptance of b3.2 (echo 2)",
    "2 replicates to 1",
    "1 proposes to exclude proven {2} silent {}",
    "1 appends a client value",
    "1 commits its next index",
    "1 crashes (its address refuses)",
    "2 is refused by 1's address",
];

/// **The stale-evidence trace** (found by this model, 2026-12-03; rule 4(a) now spends
/// evidence, `Mutation::StaleEvidence` takes that out): 1 holds evidence against 2's old
/// incarnation (it heard the new one under a lease from the old), then accepts the new
/// incarnation's proposal (a promise to it, and a lease for it), then leaves 2 out under
/// 4(a) with the old evidence, waiving that promise (F3's waiver), and commits alone; 2,
/// holding the lease from 1's acceptance, is refused by 1's address and leaves 1 out in
/// turn: a later established view without the committed value. Both replays (the trace,
/// and the path `core` takes to re-add the restarted replica) are checked step by step;
/// with the rule, 1's acceptance spends its evidence and step 12 (1 leaves 2 out as proven
/// crashed) is not enabled.
#[test]
fn stale_evidence_is_caught() {
    let mutation = Some(Mutation::StaleEvidence);
    let model = ProtocolModel::new(Bounds::restarted(), mutation);
    print_start(&model.bounds);
    let end = model.replay(&STALE_EVIDENCE).expect("every step enabled");
    println!("{}", STALE_EVIDENCE.join("\n"));
    assert!(end.lost, "without the rule a committed value is lost");

    let core = ProtocolModel::new(Bounds::stale_evidence(), mutation);
    let mut steps = STALE_EVIDENCE_CORE.to_vec();
    let before = core.replay(&steps).expect("every step enabled");
    assert!(!before.lost);
    steps.push("2 proposes to exclude proven {1} silent {}");
    let end = core.replay(&steps).expect("every step enabled");
    assert!(end.lost, "the re-add path loses a committed value too");

    let rules = ProtocolModel::new(Bounds::restarted(), None);
    let err = rules
        .replay(&STALE_EVIDENCE)
        .expect_err("rule 4(a) stops it");
    println!("with every rule: {err}");
    assert!(err.contains("1 proposes to exclude proven {2}"), "{err}");

    // Exhaustively from half-way (`Start::StaleEvidence`): without the rule a violation,
    // with it the whole bound passes.
    let bounds = Bounds::stale();
    print_start(&bounds);
    let mutated = explore(
        ProtocolModel::new(bounds.clone(), mutation),
        1,
        false,
        Some(CAP),
    );
    report("StaleEvidence", &mutated);
    assert!(!mutated.violations.is_empty());
    let all = explore(ProtocolModel::new(bounds, None), 1, false, Some(CAP));
    report("all rules", &all);
    assert!(all.total_states < CAP && all.violations.is_empty());
}

// ----- rule 6: lag reports (a liveness rule) -----

/// Rule 6 only withholds renewals, which the other bounds leave to the adversary anyway, so
/// it can only matter for liveness. `lag3` makes heartbeats fair (every pair of members
/// that can renew does, every tick) and cuts 0 (the primary) off from 1: 2 hears both and
/// keeps promising both, so without rule 6 nobody can ever be left out for silence
/// (4(b) waits for 2's promise) and nothing commits; with it, 0 reports 1 lagging, 2 stops
/// renewing its promise to 1, and {0, 2} is formed and commits.
#[test]
fn rule6_a_member_cut_off_from_the_primary_is_left_out_and_the_rest_commit() {
    let outcome = explore(
        ProtocolModel::new(Bounds::lag3(), None),
        1,
        false,
        Some(CAP),
    );
    report("all rules, cut 0|1", &outcome);
    assert!(outcome.total_states < CAP && outcome.violations.is_empty());
    assert!(outcome.lag_exclusion_reached, "the cut never resolved");
    let steps = [
        "clock ticks",
        "0 reports 1 lagging",
        "clock ticks",
        "0 proposes to exclude proven {} silent {1}",
        "2 accepts b2.0{0,2} (copy sent at 2)",
        "0 receives 2's acceptance of b2.0 (echo 2)",
        "0 appends a client value",
        "0 replicates to 2",
        "0 commits its next index",
    ];
    let model = ProtocolModel::new(Bounds::lag3(), None);
    let end = model.replay(&steps).expect("every step enabled");
    println!("{}", steps.join("\n"));
    assert!(end.cut_resolved);
    let outcome = explore(
        ProtocolModel::new(Bounds::lag3(), Some(Mutation::NoLagReport)),
        1,
        false,
        Some(CAP),
    );
    report("NoLagReport", &outcome);
    assert!(outcome.violations.is_empty());
    assert!(
        !outcome.lag_exclusion_reached,
        "without rule 6 the cut still resolved"
    );
}
