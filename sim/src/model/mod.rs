//! An exhaustive model of the two-crash protocol (issue 8, rules in NOTEBOOK.md), checked
//! with `stateright`. It finds no violation with every rule in place, and each
//! [`Mutation`] — one rule switched off — leads it to a counterexample.
//!
//! **What it abstracts.**
//! - *Time*: one global clock in ticks ([`Action::Tick`]). A lease from a peer runs to the
//!   tick of its grant plus `lease`; the peer's promise runs exactly as long. Rule 3's
//!   `L·(1 + drift) + margin` is what makes this equality hold on real clocks (a lease on a
//!   slow clock never outlives the promise on a fast one; the margin covers the pause
//!   bound and the check-to-act delay), so the model keeps the equality and the drift
//!   argument stays arithmetic (NOTEBOOK.md). Actions are atomic: a check and the action it
//!   allows happen in the same tick.
//! - *Heartbeats*: a renewal ([`Action::Renew`]) grants both leases and promises of a pair
//!   at once; a partition is the absence of renewals and deliveries.
//! - *Phase 1* is one atomic step per voter (its durable promise and the proposer's receipt
//!   of the answer): a late answer is indistinguishable from a proposer that waits.
//! - *Phase 2* goes through the network (a set: any message may be delivered any number
//!   of times, in any order, or never), so lost, duplicated, reordered and retransmitted
//!   proposals and acceptances are all covered, with the send time each copy carries.
//! - *Replication*: the primary brings one member up to its whole log in one step and
//!   learns the member's durable acknowledgement at once (a late acknowledgement only
//!   delays a commit). A proposal carries the proposer's whole log (catch-up).
//! - *Crashes*: a process crash leaves an address that refuses (evidence), a host crash
//!   leaves silence; a restart is a new incarnation that keeps the durable state (ballots,
//!   views, log) and loses the volatile one (leases, promises, evidence, proposals).
//! - *Client values* are unique small numbers, so a conflict shows as two values at one
//!   index.
//! - *Disk loss* ([`Action::LoseDisk`], `chat-server --rejoin`): a restart that also loses
//!   the durable state; the replica knows no view (core `Durable::lost`), its phase-1
//!   answer is a promise that never counts towards a majority nor as a vote, a view that
//!   keeps or adds it needs a counted majority's answers, and rule 8 counts it as missing.
//! - *Rule 6* (lag reports) only withholds renewals, which the model otherwise leaves to
//!   the adversary; it is modelled only in bounds with a cut (`Bounds::cut`), where
//!   heartbeats are fair, as the reachability check [`LAG_EXCLUSION`].
//! - *Targeted bounds* start from a reachable state near a trace ([`Start`]: a prefix of
//!   steps from the first view, each enabled under the full rules).
//!
//! The properties ([`ProtocolModel::properties`]): no two values committed at one index;
//! every value committed in a view is held by every accepting member of every later
//! established view; at most one primary at a time can commit (acting, and no member of
//! its view promised a higher ballot); and, as a reachability check, immediate failover:
//! with every other replica crashed one after the other (refusals, no restart), the
//! survivor commits a new value in the very tick of the last crash; with a cut between the
//! primary and a member, a view without one side commits (rule 6).
//!
//! **A flaw of the NOTEBOOK's rules found by this model** (2026-12-03): evidence against an
//! old incarnation of a replica could still be used after its new incarnation was promised.
//! `core` spent such evidence when the new incarnation spoke again (`Leases::heard`); rule
//! 4(a) now says so, and the model has it ([`Mutation::StaleEvidence`] takes it out;
//! `sim/tests/model.rs`, `stale_evidence_is_caught`).

mod rules;
mod starts;
mod state;

pub use rules::Action;
pub use starts::Start;
pub use state::*;

use stateright::{Checker, HasDiscoveries, Model, Path, Property};
use std::time::{Duration, Instant};

/// The size of the explored world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub replicas: u8,
    /// Ticks of the global clock.
    pub max_time: Time,
    /// Lease (and promise) length in ticks.
    pub lease: Time,
    /// Client values ordered in the whole run.
    pub max_values: u8,
    /// Ballot numbers (the initial view is 1).
    pub max_ballot: u8,
    /// Crashes of either kind, and how many of them may be silent.
    pub max_crashes: u8,
    pub max_silent: u8,
    pub max_restarts: u8,
    /// Replicas outside the initial view (excluded earlier, waiting to rejoin): a world
    /// where rejoins happen without spending ballots on the exclusion first.
    pub initially_out: Mask,
    /// Restarts on an empty disk (`chat-server --rejoin`), counted in `max_restarts` too.
    pub max_lost_disks: u8,
    /// Where the search starts (a targeted bound starts near a trace).
    pub start: Start,
    /// Rule 6's liveness check: two replicas that can never exchange anything (a cut),
    /// every other pair of members renews at every tick (fair heartbeats), and the primary
    /// reports a member that acknowledged no replication for a lease as lagging (members
    /// stop renewing their promise to it). Empty in every other bound: there renewals are
    /// the adversary's choice, so rule 6, which only withholds renewals, adds no behaviour.
    pub cut: Mask,
}

impl Bounds {
    /// The bound `cargo test` explores for the full rule set (3 replicas): leases of one
    /// tick, so that they lapse within the two ticks explored.
    pub fn test3() -> Bounds {
        Bounds {
            replicas: 3,
            max_time: 1,
            lease: 1,
            max_values: 1,
            max_ballot: 3,
            max_crashes: 2,
            max_silent: 1,
            max_restarts: 0,
            initially_out: 0,
            max_lost_disks: 0,
            start: Start::Initial,
            cut: 0,
        }
    }

    /// Rule 6: 0 (the primary) and 1 are cut off from each other, 2 hears both and
    /// renews with both at every tick; no crash. The members can leave one side of the cut
    /// out and commit only through rule 6 ([`LAG_EXCLUSION`]).
    pub fn lag3() -> Bounds {
        Bounds {
            max_time: 3,
            lease: 1,
            max_values: 1,
            max_ballot: 3,
            max_crashes: 0,
            max_silent: 0,
            max_restarts: 0,
            cut: bit(0) | bit(1),
            ..Bounds::test3()
        }
    }

    /// The bound of the long run (3 replicas): restarts, longer leases, more time.
    pub fn full3() -> Bounds {
        Bounds {
            max_time: 2,
            lease: 2,
            max_restarts: 1,
            ..Bounds::test3()
        }
    }

    /// Replica 2 starts outside the view, waiting to rejoin; restarts (3 replicas).
    pub fn rejoin3() -> Bounds {
        Bounds {
            max_time: 2,
            lease: 2,
            max_restarts: 1,
            initially_out: bit(2),
            ..Bounds::test3()
        }
    }

    /// Five replicas at a small bound: two crashes in the first tick, one view change.
    pub fn small5() -> Bounds {
        Bounds {
            replicas: 5,
            max_time: 0,
            lease: 1,
            max_values: 1,
            max_ballot: 2,
            max_crashes: 2,
            max_silent: 0,
            max_restarts: 0,
            initially_out: 0,
            max_lost_disks: 0,
            start: Start::Initial,
            cut: 0,
        }
    }

    /// F4's targeted bound: from [`Start::ViewOfOne`] (0 alone, 1 restarted and waiting, at
    /// t=1), two more crashes and restarts, ballots up to 4 (0 adds 1, then a re-formed
    /// view), one more tick.
    pub fn f4() -> Bounds {
        Bounds {
            max_time: 2,
            lease: 1,
            max_values: 1,
            max_ballot: 4,
            max_crashes: 4,
            max_silent: 0,
            max_restarts: 3,
            start: Start::ViewOfOne,
            ..Bounds::test3()
        }
    }

    /// R1's targeted bound: from [`Start::TwoMembers`] (b2.0{0,1}, 2 restarted and
    /// waiting, t=1), two client values, two more view changes, two more crashes, one
    /// more tick.
    pub fn r1() -> Bounds {
        Bounds {
            max_time: 2,
            lease: 1,
            max_values: 2,
            max_ballot: 4,
            max_crashes: 3,
            max_silent: 1,
            max_restarts: 1,
            start: Start::TwoMembers,
            ..Bounds::test3()
        }
    }

    /// R3's bound from the first view of `rejoin3` (2 outside), so that the primary's
    /// proposal to add 2 is accepted by both others and can be retransmitted a tick later;
    /// two client values (the trace ends with two primaries committing index 1), no
    /// restart. Too big for `cargo test`; [`Bounds::r3_adding`] is its targeted part.
    pub fn r3() -> Bounds {
        Bounds {
            max_time: 1,
            lease: 1,
            max_values: 2,
            max_ballot: 3,
            max_crashes: 2,
            max_silent: 0,
            max_restarts: 0,
            initially_out: bit(2),
            ..Bounds::test3()
        }
    }

    /// [`Bounds::r3`] from [`Start::AddingTwo`]: the proposal to add 2 sent and accepted.
    pub fn r3_adding() -> Bounds {
        Bounds {
            start: Start::AddingTwo,
            ..Bounds::r3()
        }
    }

    /// [`Bounds::restarted`] with a third ballot number: the stale-evidence trace with the
    /// restarted member added back through a view change (as `core` does).
    pub fn stale_evidence() -> Bounds {
        Bounds {
            max_ballot: 4,
            ..Bounds::restarted()
        }
    }

    /// [`Bounds::restarted`] from [`Start::StaleEvidence`] (no tick left): small enough for
    /// `cargo test` to check rule 4(a)'s spending of evidence near the stale-evidence trace.
    pub fn stale() -> Bounds {
        Bounds {
            start: Start::StaleEvidence,
            ..Bounds::restarted()
        }
    }

    /// The quiet interval's targeted bound: from [`Start::RestartedMidLease`] (2 restarted
    /// at t=1 while 0 and 1 hold leases from its old incarnation), two more ticks.
    pub fn restarted() -> Bounds {
        Bounds {
            max_time: 2,
            lease: 1,
            max_values: 1,
            max_ballot: 3,
            max_crashes: 3,
            max_silent: 1,
            max_restarts: 1,
            start: Start::RestartedMidLease,
            ..Bounds::test3()
        }
    }

    /// Disk loss, a vote from an amnesiac: from [`Start::VotedOut`], 2 may lose its disk.
    pub fn amnesiac_votes() -> Bounds {
        Bounds {
            max_time: 2,
            lease: 1,
            max_values: 2,
            max_ballot: 3,
            max_crashes: 2,
            max_silent: 1,
            max_restarts: 1,
            max_lost_disks: 1,
            initially_out: bit(2),
            start: Start::VotedOut,
            ..Bounds::test3()
        }
    }

    /// Disk loss, the reviewer's trace: from [`Start::LeftOutPrimary`], a disk loss and a
    /// silent crash, a second client value.
    pub fn amnesiac_unwitnessed() -> Bounds {
        Bounds {
            max_time: 2,
            lease: 1,
            max_values: 2,
            max_ballot: 3,
            max_crashes: 2,
            max_silent: 1,
            max_restarts: 1,
            max_lost_disks: 1,
            initially_out: bit(2),
            start: Start::LeftOutPrimary,
            ..Bounds::test3()
        }
    }

    /// Disk loss under rule 8: from [`Start::AloneWithEntry`], everyone restarts, the
    /// survivor on an empty disk.
    pub fn amnesiac_recovers() -> Bounds {
        Bounds {
            max_time: 1,
            lease: 1,
            max_values: 2,
            max_ballot: 3,
            max_crashes: 3,
            max_silent: 0,
            max_restarts: 3,
            max_lost_disks: 1,
            start: Start::AloneWithEntry,
            ..Bounds::test3()
        }
    }

    /// A targeted bound by name (the `chat-model --bound` names).
    pub fn named(name: &str) -> Option<Bounds> {
        Some(match name {
            "test3" => Bounds::test3(),
            "full3" => Bounds::full3(),
            "rejoin3" => Bounds::rejoin3(),
            "small5" => Bounds::small5(),
            "lag3" => Bounds::lag3(),
            "f4" => Bounds::f4(),
            "r1" => Bounds::r1(),
            "r3" => Bounds::r3(),
            "r3-adding" => Bounds::r3_adding(),
            "restarted" => Bounds::restarted(),
            "stale-evidence" => Bounds::stale_evidence(),
            "stale" => Bounds::stale(),
            "amnesiac-votes" => Bounds::amnesiac_votes(),
            "amnesiac-unwitnessed" => Bounds::amnesiac_unwitnessed(),
            "amnesiac-recovers" => Bounds::amnesiac_recovers(),
            _ => return None,
        })
    }

    pub const NAMES: [&'static str; 15] = [
        "test3",
        "full3",
        "rejoin3",
        "small5",
        "lag3",
        "f4",
        "r1",
        "r3",
        "r3-adding",
        "restarted",
        "stale-evidence",
        "stale",
        "amnesiac-votes",
        "amnesiac-unwitnessed",
        "amnesiac-recovers",
    ];
}

/// One rule switched off, named after the trace of issue 8 its fix prevents (or, for the
/// extra ones, after the rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// T1: a view counts as established once a majority accepted it, not every member.
    T1,
    /// T2: a member accepts a view before it holds the proposer's whole log.
    T2,
    /// T3: rule 4(b) without letting the promise to the excluded member expire.
    T3,
    /// F1: a phase-1 answer promises nothing.
    F1,
    /// F2: a replica accepts a proposal whose base is below its own accepted ballot.
    F2,
    /// F3: helpers wait out their promise even to a member proven crashed.
    F3,
    /// F4: the view-of-one fast path looks only at its highest established view, and
    /// resumes as that view's primary (its own later proposal, and the promise it made
    /// itself for it, forgotten).
    F4,
    /// F4 with the promise kept: the fast path's check alone is dropped; rule 2's acting
    /// condition (`promised == accepted.ballot`) still keeps it from acting.
    F4KeepsPromise,
    /// R1: any member, not only the primary, proposes to add a returning replica.
    R1,
    /// R2: a duplicate process says hello before binding its listener (no rule 5).
    R2,
    /// R3: an acceptance extends the lease from the latest copy's send time.
    R3,
    /// M1 (found by this model): a proposal inherits the exclusions of an unestablished
    /// base instead of justifying each member of the highest established view it leaves
    /// out.
    M1,
    /// Evidence used without an unexpired lease from the crashed member.
    EvidenceWithoutLease,
    /// A restarted replica votes and accepts at once.
    RestartedVotesAtOnce,
    /// A phase-1 answer still acknowledges entries of the older view.
    StillAcks,
    /// Commit with a majority of the view instead of every member.
    CommitWithMajority,
    /// Disk loss: the answer of a replica that knows no view counts towards rule 4(b)'s
    /// majority, and it may vote.
    AmnesiacVotes,
    /// Disk loss: a view that keeps or adds a replica that knows no view is formed without
    /// the answers of a counted majority (no `witnessed` check).
    AmnesiacUnwitnessed,
    /// Disk loss: rule 8 counts a replica that knows no view as reached.
    AmnesiacRecovers,
    /// Rule 6 off: the primary never reports a member lagging (a liveness mutation).
    NoLagReport,
    /// Rule 4(a)'s spending of evidence off: evidence against an old incarnation outlives
    /// a second message from the newer one (the stale-evidence trace, found by this model).
    StaleEvidence,
    /// A learner (`Action::Teach`) takes the primary's whole log, uncommitted entries too.
    LearnsUncommitted,
    /// A learner takes entries without promising the primary's ballot, whatever it
    /// promised before.
    LearnsWithoutPromise,
}

impl Mutation {
    pub const ALL: [Mutation; 23] = [
        Mutation::T1,
        Mutation::T2,
        Mutation::T3,
        Mutation::F1,
        Mutation::F2,
        Mutation::F3,
        Mutation::F4,
        Mutation::F4KeepsPromise,
        Mutation::R1,
        Mutation::R2,
        Mutation::R3,
        Mutation::M1,
        Mutation::EvidenceWithoutLease,
        Mutation::RestartedVotesAtOnce,
        Mutation::StillAcks,
        Mutation::CommitWithMajority,
        Mutation::AmnesiacVotes,
        Mutation::AmnesiacUnwitnessed,
        Mutation::AmnesiacRecovers,
        Mutation::NoLagReport,
        Mutation::StaleEvidence,
        Mutation::LearnsUncommitted,
        Mutation::LearnsWithoutPromise,
    ];

    pub fn name(self) -> String {
        format!("{self:?}")
    }

    pub fn parse(name: &str) -> Option<Mutation> {
        Mutation::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }
}

pub const AGREEMENT: &str = "no two values committed at one index";
pub const DURABILITY: &str = "later established views hold every committed value";
pub const ONE_PRIMARY: &str = "at most one primary can commit";
pub const FAILOVER: &str = "survivor commits at once after the others crash";
pub const LAG_EXCLUSION: &str = "a member cut off from the primary is left out and the rest commit";

/// The protocol under `bounds`, with at most one rule switched off.
#[derive(Clone, Debug)]
pub struct ProtocolModel {
    pub bounds: Bounds,
    pub mutation: Option<Mutation>,
}

impl ProtocolModel {
    pub fn new(bounds: Bounds, mutation: Option<Mutation>) -> ProtocolModel {
        assert!((2..=MAX_REPLICAS as u8).contains(&bounds.replicas));
        assert!(
            !has(bounds.initially_out, 0),
            "replica 0 is the initial primary"
        );
        ProtocolModel { bounds, mutation }
    }

    /// Plays `steps` (as [`Action`] displays them) from the start state, each of which
    /// must be enabled: the state reached, or the first step that is not enabled.
    pub fn replay(&self, steps: &[&str]) -> Result<State, String> {
        let mut s = self.start_state();
        for step in steps {
            let mut enabled = Vec::new();
            self.enabled(&s, &mut enabled);
            let action = enabled
                .into_iter()
                .find(|a| a.to_string() == *step)
                .ok_or_else(|| format!("{step:?} is not enabled at t={}", s.now))?;
            s = self
                .apply(&s, action)
                .ok_or_else(|| format!("{step:?} fails its checks"))?;
        }
        Ok(s)
    }

    /// Primaries that could commit now: acting, and no member of their view promised a
    /// higher ballot.
    pub fn unfenced_primaries(&self, s: &State) -> usize {
        (0..self.bounds.replicas)
            .filter(|&p| {
                let view = s.replicas[p as usize].accepted;
                self.acting_primary(s, p)
                    && ids(view.members).all(|m| s.replicas[m as usize].promised <= view.ballot)
            })
            .count()
    }
}

impl Model for ProtocolModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![self.start_state()]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        self.enabled(state, actions);
    }

    fn next_state(&self, state: &State, action: Action) -> Option<State> {
        self.apply(state, action)
    }

    fn format_action(&self, action: &Action) -> String {
        action.to_string()
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(AGREEMENT, |_, s: &State| !s.conflict),
            Property::always(DURABILITY, |_, s: &State| !s.lost),
            Property::always(ONE_PRIMARY, |m: &ProtocolModel, s: &State| {
                m.unfenced_primaries(s) <= 1
            }),
            Property::sometimes(FAILOVER, |_, s: &State| s.fast_failover),
            Property::sometimes(LAG_EXCLUSION, |_, s: &State| s.cut_resolved),
        ]
    }
}

/// What one exhaustive run found.
pub struct Outcome {
    pub unique_states: usize,
    /// States generated, repeats included (the `target_states` cap counts these).
    pub total_states: usize,
    pub max_depth: usize,
    pub elapsed: Duration,
    /// Safety properties violated, each with its shortest trace.
    pub violations: Vec<(&'static str, Path<State, Action>)>,
    /// Whether the failover reachability check found its example.
    pub failover_reached: bool,
    /// Whether rule 6's reachability check found its example (bounds with a cut).
    pub lag_exclusion_reached: bool,
}

/// Explores every state under the model's bounds (breadth first, so traces are shortest),
/// stopping at the first safety violation when `stop_at_violation`.
pub fn explore(
    model: ProtocolModel,
    threads: usize,
    stop_at_violation: bool,
    target_states: Option<usize>,
) -> Outcome {
    let started = Instant::now();
    let mut builder = model.checker().threads(threads);
    if let Some(target) = target_states {
        builder = builder.target_state_count(target);
    }
    if stop_at_violation {
        builder = builder.finish_when(HasDiscoveries::AnyFailures);
    }
    let checker = builder.spawn_bfs().join();
    let mut discoveries = checker.discoveries();
    let failover_reached = discoveries.remove(FAILOVER).is_some();
    let lag_exclusion_reached = discoveries.remove(LAG_EXCLUSION).is_some();
    let mut violations: Vec<_> = discoveries.into_iter().collect();
    violations.sort_by_key(|(name, _)| *name);
    Outcome {
        unique_states: checker.unique_state_count(),
        total_states: checker.state_count(),
        max_depth: checker.max_depth(),
        elapsed: started.elapsed(),
        violations,
        failover_reached,
        lag_exclusion_reached,
    }
}

/// A trace as numbered steps, each with the tick it happened in.
pub fn format_trace(path: &Path<State, Action>) -> String {
    let mut out = String::new();
    let mut step = 0;
    for (state, action) in path.clone().into_vec() {
        if let Some(action) = action {
            if matches!(action, Action::Tick) {
                continue;
            }
            step += 1;
            out += &format!("{step:>3}. t={} {action}\n", state.now);
        }
    }
    out
}
