//! The checkers can fail: with a deliberate protocol bug switched on in every replica, some
//! safety checker must reject a run within a bounded number of seeds. Each test prints how
//! many seeds it took. A run may also stop on an assertion inside the core, or fail on
//! liveness (which the protocol's own bugs can cause without any mutation): those are
//! counted and reported, but only a safety checker's failure (agreement, linearizability,
//! messages, invariants, recovery) counts as caught.

use chat_core::ids::ReplicaId;
use chat_core::replica::{Mutations, Role, Status};
use chat_core::time::Duration;
use chat_sim::{
    check, parse_mutations, Checker, Failure, Inject, RunSpec, Sim, SimOptions, Step, Target,
};
use std::ops::Range;

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
/// seed 2 is the first to meet it (since snapshots are written in the background, 2026-12-03).
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
/// from the crashed member. Random seeds rarely meet it (with every fault kind the first
/// catch was seed 1027, and since drivers carry out outputs in batches none in 1,000 seeds
/// of `host_crash,partition`); [`refusals_long_after_the_leases`] plays it: caught at its
/// first seed (agreement), and the same seeds pass with the mutation off.
#[test]
fn evidence_without_lease_is_caught() {
    let mutations = parse_mutations("evidence_without_lease").expect("a mutation");
    scenario_until_caught("evidence_without_lease", 0..5, |seed| {
        refusals_long_after_the_leases(seed, mutations)
    });
}

#[test]
fn refusals_long_after_the_leases_pass_without_mutations() -> Result<(), Failure> {
    for seed in 0..5 {
        refusals_long_after_the_leases(seed, Mutations::default())?;
    }
    Ok(())
}

/// Rule 4(a)'s lease, played out: the primary `p` is cut off; the other two exclude it for
/// silence and commit in their new view, and the partition lasts 2 s more, long after `p`'s
/// leases from them ran out. Then both are killed and the partition heals, so `p` gets
/// refusals from both. Without a lease they are no evidence, and `p` waits for the others;
/// taken as evidence (the mutation), `p` goes on alone from its old log and commits something
/// else at an index the new view committed.
fn refusals_long_after_the_leases(seed: u64, mutations: Mutations) -> Result<(), Failure> {
    let opts = SimOptions {
        mutations,
        ..SimOptions::scripted(seed)
    };
    primary_cut_off_then_the_others_crash(opts, secs(2))
}

/// Rule 3: a restarted replica neither votes, accepts nor uses evidence for
/// L(1 + drift) + margin.
#[test]
fn restarted_acts_at_once_is_caught() {
    two_crash_mutation_is_caught("restarted_acts_at_once", "all", 100);
}

/// Rule 4(b) (trace T3): helpers first let their promise to the excluded member expire.
/// Random seeds rarely meet it (none in 1,000 with core 76c4bdd): the helpers wait for their
/// own lease from the silent member instead, which lapses about when the silent member's
/// leases from them do, so the window in which the excluded one still holds a lease is a
/// heartbeat interval and the clocks' drift wide. The scenario [`t3_then_the_majority_crashes`]
/// opens it (drift bound 10 %) and uses it; the same seeds pass with the mutation off
/// ([`t3_then_the_majority_crashes_passes_without_mutations`]).
#[test]
fn silent_exclusion_while_promised_is_caught() {
    let mutations = parse_mutations("silent_exclusion_while_promised").expect("a mutation");
    scenario_until_caught("silent_exclusion_while_promised", T3_SEEDS, |seed| {
        t3_then_the_majority_crashes(seed, mutations)
    });
}

/// Rule 1a (trace F1): a phase-1 answer is a durable promise. Under every kind of fault
/// most seeds fail on liveness first (the mutation stalls view changes); partitions and
/// one-way cuts alone make two proposers that share a voter common: with core a6e6518 the
/// first catch was seed 51 (agreement: the old primary's view and a view formed through the
/// voter that promised nothing both committed index 261), then 141, 313; the same 100 seeds
/// pass without the mutation (NOTEBOOK.md, 2026-12-03, "The four uncaught mutations").
/// A rare one, and the first seed moves whenever the schedules do: with partitions alone it
/// was seed 378 in session 7 (the server's large `Append`s), 758 with learners (session 8),
/// and 1480 since a replica proposes a silent exclusion only when it heard lately from a
/// majority of the configured replicas (fewer proposals meet); 4 of the first 4,000 seeds
/// catch it (1480, 1892, 1901, 3031). Most seeds fail on liveness first. A scripted F1 (a
/// cut between the primary and a backup, `two_crash.rs`) did not catch it in 200 seeds: the
/// voter's acceptance promises, so two proposals meet it in an order that fences one of them
/// unless entries and phase-1 answers interleave just so.
#[test]
fn promise_nothing_is_caught() {
    two_crash_mutation_is_caught("promise_nothing", "partition", 1_600);
}

/// Rule 1d (trace T1): nothing commits in a view before every member accepted it.
#[test]
fn act_before_established_is_caught() {
    two_crash_mutation_is_caught("act_before_established", "all", 50);
}

/// Rule 1c (trace T2): accept only once holding the proposer's whole log. Since learners
/// (session 8) a returning replica mostly holds the log before it is asked to accept, and
/// since snapshots are taken afresh for a transfer, the first catch with crashes alone
/// moved from within 50 seeds to seed 102 (then 126, 275); earlier seeds mostly stop on the
/// core's own assertion that a committed entry conflicts, which does not count here.
#[test]
fn accept_before_log_is_caught() {
    two_crash_mutation_is_caught("accept_before_log", "crash", 200);
}

/// Rule 8 (trace F4): the view-of-one fast path holds only if the replica's accepted view
/// is that established view of itself. The mutation resumes in the established view of one
/// as the model's F4 does, forgetting the higher accepted ballot and its promise; the
/// invariant check right after the start finds the protocol state gone back (crash-only:
/// 29 of the first 300 seeds, the first at seed 12; with every fault kind, where a lone
/// survivor's restart with an unfinished rejoin is rarer, 3 of 300, the first at 124).
/// [`f4_at_its_point_catches_view_of_one_ignores_accepted`] shows it at F4's exact point.
#[test]
fn view_of_one_ignores_accepted_is_caught() {
    two_crash_mutation_is_caught("view_of_one_ignores_accepted", "crash", 100);
}

/// Rule 1a: after a phase-1 answer, no acknowledgement of an older view's entries. The
/// harm is implied away by other rules (the model finds no violation in its whole bound,
/// NOTEBOOK.md 2026-12-02): a commit in the older view needs the later view's proposer,
/// who stops acknowledging it when it accepts its own proposal and whose log the later view
/// takes. So no agreement or durability checker can see it; `check_invariants` checks the
/// promise itself on every acknowledgement, and fails most seeds (199 of the first 300 of
/// `all`, seed 0 among them).
#[test]
fn still_acknowledge_is_caught() {
    two_crash_mutation_is_caught("still_acknowledge", "all", 50);
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

// ----- scenarios for the mutations random seeds do not catch -----

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

/// As `sim/tests/two_crash.rs`'s: how long the cluster may take to serve again after a
/// fault it tolerates.
const SERVES: Step = Step::ServesWithin(Duration::from_secs(3));

/// Plays `scenario` for each seed until a safety checker fails (a liveness failure does not
/// count); returns that seed.
fn scenario_until_caught(
    name: &str,
    seeds: Range<u64>,
    scenario: impl Fn(u64) -> Result<(), Failure>,
) -> u64 {
    let mut liveness = 0;
    for seed in seeds.clone() {
        let Err(failure) = scenario(seed) else {
            continue;
        };
        if failure.checker == Checker::Liveness {
            liveness += 1;
            continue;
        }
        let first_line = failure.to_string();
        let first_line = first_line.lines().next().unwrap_or_default();
        println!(
            "mutation {name}: caught at seed {seed} of {seeds:?} ({liveness} earlier failed on liveness): {first_line}"
        );
        return seed;
    }
    panic!("mutation {name} was not caught by a safety checker in seeds {seeds:?} ({liveness} failed on liveness)");
}

/// The seeds of [`t3_then_the_majority_crashes`]: with core a6e6518 and the mutation on, 9 of
/// the first 40 fail on agreement, the first at seed 1; all 40 pass with it off.
const T3_SEEDS: Range<u64> = 0..20;

/// A scripted run a second in, once it has a primary: the sim and that primary.
fn with_a_primary(opts: SimOptions) -> Result<(Sim, ReplicaId), Failure> {
    let mut sim = Sim::new(opts);
    sim.run_for(secs(1))?;
    assert!(
        sim.wait_for(secs(5), |s| s.primary().is_some())?,
        "no primary elected"
    );
    let p = sim.primary().expect("just checked");
    Ok((sim, p))
}

/// Trace T3's danger, played out (rules 3 and 4(b)): the primary `p` is cut off; the other
/// two exclude it for silence and commit in their new view; at that moment both are killed
/// and the partition heals, so `p` gets refusals from both. It may exclude them on that
/// evidence only while it holds a lease from each (4(a)), and the others' promises to `p`
/// outlast `p`'s leases from them — unless they helped exclude it while still promising
/// (the mutation): then `p` goes on alone and commits something else at the same index.
/// The clocks may drift 10 % (the protocol is told the bound): that widens the mutation's
/// window from a heartbeat interval to about 200 ms. The other two come back later.
fn t3_then_the_majority_crashes(seed: u64, mutations: Mutations) -> Result<(), Failure> {
    let opts = SimOptions {
        max_clock_drift: 0.1,
        mutations,
        ..SimOptions::scripted(seed)
    };
    primary_cut_off_then_the_others_crash(opts, Duration::ZERO)
}

/// The primary `p` is cut off from the other two; once they commit in a view of their own
/// and `linger` has passed, both are killed and the partition heals, so `p` is refused by
/// both; they come back 2 s later.
fn primary_cut_off_then_the_others_crash(
    opts: SimOptions,
    linger: Duration,
) -> Result<(), Failure> {
    let seed = opts.seed;
    let (mut sim, p) = with_a_primary(opts)?;
    let others: Vec<ReplicaId> = (0..3).filter(|&r| r != p).collect();
    sim.partition(&[&[p], &others]);
    let committed = sim.committed();
    let moved_on = |s: &Sim| s.committed() > committed && s.primary().is_some_and(|q| q != p);
    assert!(
        sim.wait_for(secs(5), moved_on)?,
        "seed {seed}: the majority side did not commit in a view of its own"
    );
    sim.run_for(linger)?;
    for &r in &others {
        sim.crash(r);
    }
    sim.heal();
    sim.run_for(secs(2))?;
    for &r in &others {
        sim.restart(r)?;
    }
    sim.play(&[SERVES])?;
    sim.finish()?;
    Ok(())
}

#[test]
fn t3_then_the_majority_crashes_passes_without_mutations() -> Result<(), Failure> {
    for seed in T3_SEEDS {
        t3_then_the_majority_crashes(seed, Mutations::default())?;
    }
    Ok(())
}

/// Trace F4 at its exact point (rule 8): the survivor `s` of two kills serves alone, `x`
/// restarts and `s` adds it back; the moment `x` has accepted `{s, x}` (before `s` heard),
/// both are killed. `s` restarts alone, `x` 2 s later; then `s` is killed and restarted once
/// more. Returns `s`'s status just after its first restart, or `None` if `s` heard of the
/// acceptance first in this seed (the point was missed).
fn f4_at_the_pending_rejoin(seed: u64, mutations: Mutations) -> Result<Option<Status>, Failure> {
    let (mut sim, x) = with_a_primary(SimOptions {
        mutations,
        ..SimOptions::scripted(seed)
    })?;
    sim.play(&[
        Step::Kill(Target::Primary),
        Step::Wait(ms(50)),
        Step::Kill(Target::Primary),
        SERVES,
    ])?;
    let s = sim.primary().expect("served");
    sim.restart(x)?;
    let adding = |sim: &Sim| {
        sim.status(s)
            .is_some_and(|st| st.members.len() == 2 && !st.established)
    };
    assert!(
        sim.wait_for(secs(5), adding)?,
        "seed {seed}: {s} never proposed to add {x}"
    );
    let proposal = sim.status(s).expect("up").view;
    let accepted = |sim: &Sim| sim.status(x).is_some_and(|st| st.view == proposal);
    assert!(
        sim.wait_for(secs(1), accepted)?,
        "seed {seed}: {x} never accepted"
    );
    if sim.status(s).expect("up").established {
        return Ok(None);
    }
    sim.crash(s);
    sim.crash(x);
    sim.run_for(ms(500))?;
    sim.restart(s)?;
    let restarted = sim.status(s).expect("just restarted");
    sim.run_for(secs(2))?;
    sim.restart(x)?;
    sim.play(&[SERVES])?;
    sim.crash(s);
    sim.run_for(ms(500))?;
    sim.restart(s)?;
    sim.play(&[SERVES])?;
    sim.finish()?;
    Ok(Some(restarted))
}

/// The mutation `view_of_one_ignores_accepted` at F4's exact point: without it the restarted
/// `s` rejoins and waits for `x`; with it `s` resumes alone in its old view of one, and its
/// next restart finds the durable promise gone back.
#[test]
fn f4_at_its_point_catches_view_of_one_ignores_accepted() -> Result<(), Failure> {
    let mutations = parse_mutations("view_of_one_ignores_accepted").expect("a mutation");
    let mut reached = 0;
    for seed in 0..8 {
        let Some(off) = f4_at_the_pending_rejoin(seed, Mutations::default())? else {
            continue;
        };
        reached += 1;
        assert!(off.rejoining && off.role != Role::Primary, "{off:?}");
        let caught = f4_at_the_pending_rejoin(seed, mutations).expect_err("caught");
        assert_eq!(caught.checker, Checker::Invariants, "{caught}");
        assert!(caught.detail.contains("went back"), "{caught}");
    }
    assert!(reached >= 3, "F4's point reached in {reached} of 8 seeds");
    Ok(())
}
