//! When the protocol promises progress, during the busy phase too.
//!
//! Safety is checked all along whatever happens; liveness only while the rules promise it.
//! [`promised`] is that condition, in one place: the engine asks it every
//! [`CHECK_EVERY`] of the busy phase with a [`Cluster`] picture, and once it has held
//! without a break, on an unchanged picture, for
//! [`SimOptions::busy_liveness_bound`](crate::SimOptions), every client request pending
//! since before then must have completed. The quiet phase (every
//! replica up, the network whole) is judged by the engine with its own bound.

use chat_core::ids::ReplicaId;
use chat_core::time::{Duration, Instant};

/// How often the busy phase looks at whether liveness is promised.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);

/// Which protocol's promise the replicas are held to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Promise {
    /// The majority protocol: progress while a majority of the configured replicas runs
    /// and can reach each other and the clients.
    Majority,
    /// Issue 8's two-crash protocol (NOTEBOOK, "The rules"): see [`promised`].
    TwoCrash,
}

/// A replica's process as the liveness rule sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Process {
    /// Running (not paused) since this instant: its current life began then.
    Running { since: Instant },
    /// Stopped (SIGSTOP) for now.
    Paused,
    /// Killed: its host refuses connections (evidence).
    Killed,
    /// Its host crashed or froze (silence), or it refused to start from a corrupt disk.
    Gone,
}

/// The latest established view, as the replicas report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EstablishedView {
    pub members: Vec<ReplicaId>,
    /// When the simulator first saw it established.
    pub since: Instant,
}

/// The cluster at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// Indexed by replica id.
    pub processes: Vec<Process>,
    /// No link is cut: between replicas, and between clients and replicas.
    pub network_whole: bool,
    /// Every fault so far in the run was a process crash (or a restart).
    pub crash_only: bool,
    /// The latest established view, if the protocol reports one.
    pub view: Option<EstablishedView>,
    /// Members of every higher view (accepted or voted for, not established) that a running
    /// replica holds: rule 8 waits for them too.
    pub higher_accepted: Vec<ReplicaId>,
    /// Members of the highest of those views: a survivor of the established view proposes
    /// only on that base, so it must be one of them (rule 1b).
    pub highest_accepted: Vec<ReplicaId>,
    /// Running replicas that are rejoining (restarted, or left out and not yet back in an
    /// established view): they exclude no one, so none of them is a survivor.
    pub rejoining: Vec<ReplicaId>,
}

/// Which rule promises progress now, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// A majority of the configured replicas runs and the network is whole (under the
    /// two-crash protocol, with a survivor of the latest established view among them).
    MajorityConnected,
    /// Crash-only schedule: a member of the latest established view has run since it was
    /// established, and the network is whole.
    SurvivorOfTheView,
    /// Every member of the latest established view runs: nobody needs excluding, or,
    /// without a survivor, rule 8's reunion.
    ViewRuns,
}

/// Whether `promise` says the cluster must make progress now, and by which rule.
///
/// Under the two-crash protocol, from the rules in NOTEBOOK ("The rules"):
/// - Commit needs every member of the established view V (rule 2), so a member that is
///   down must be excluded before anything commits again, by a replica that is not
///   rejoining: a *survivor*, a member of V that has run since V was established. A member
///   that restarted since is rejoining and proposes nothing but by rule 8 (rule 7); a
///   non-member is rejoining too. So without a survivor, only rule 8 is left.
/// - A survivor excludes the down members under 4(b) with a running majority of the
///   configured replicas, or under 4(a) alone in a crash-only schedule (every crash was
///   seen as a refusal while the survivor held a lease from it). With neither, a silent
///   member (host crash, pause) can only be waited for.
/// - Every member of V running promises progress: nobody needs excluding, and without a
///   survivor it is rule 8's reunion (rule 8 waits for every member of the highest
///   established view). A majority without a survivor is *not*
///   enough: a member that is down (say all went down and one stays down) is waited for.
/// - A replica stopped by a corrupted disk, or rebuilt on an empty one (`--rejoin`) and not
///   added back yet, holds nothing. If it is a member of V and there is no survivor, its
///   lost disk may have held committed entries nobody else has (it served alone, then lost
///   it): the rules rightly wait for it forever, so nothing is promised. With a survivor it
///   is a crash like any other (its host refuses connections).
/// - Every rule needs the network whole: a client cut off from the primary waits for the
///   heal whatever the protocol, and silence is never evidence.
///
/// - Rule 8's reunion also waits for every member of a *higher accepted* view a reachable
///   replica reports: such a view may have been established unseen (its last acceptance
///   lost in its proposer's crash), and a member may then have gone on alone on evidence
///   and committed what only its disk holds (crash-only seed 3579: r2 proposed {0, 2}, r0
///   accepted, r2 crashed, r0 later lost its disk). Without a survivor, nothing is promised
///   while such a member is not running.
/// - A survivor proposes only on the highest accepted view phase 1 reports, and only if it
///   is a member of it (rule 1b); a survivor left out of a higher unestablished view that a
///   running replica holds cannot exclude anyone, so it counts as no survivor: only rule 8's
///   reunion (by that view's rejoining proposer) is left, and it waits for every member of
///   that view (seed 84161: {0, 1, 2} established; r2 proposed {1, 2} leaving the cut-off
///   r0 out, crashed and restarted; r1 later lost its disk. {1, 2} may have been
///   established unseen, and r1 may then have left r2 out on evidence and committed alone).
/// - A member that is rejoining without a restart (left out, then accepted the view that
///   adds it back, and never heard that view established) is no survivor either: it
///   proposes nothing but rule 8's reunion (`host_crash,partition` seed 1458 of 2026-12-03:
///   r0, cut off and left out, accepted r1's {0, 1}; r1's host crashed and its disk was
///   lost; r0 cannot tell whether r1 went on alone, and waits for it).
pub fn promised(promise: Promise, cluster: &Cluster) -> Option<Why> {
    if !cluster.network_whole {
        return None;
    }
    let running =
        |r: &ReplicaId| matches!(cluster.processes[usize::from(*r)], Process::Running { .. });
    let n = cluster.processes.len();
    let majority = (0..n as ReplicaId).filter(running).count() > n / 2;
    let view = match (promise, &cluster.view) {
        (Promise::Majority, _) | (Promise::TwoCrash, None) => {
            return majority.then_some(Why::MajorityConnected)
        }
        (Promise::TwoCrash, Some(view)) => view,
    };
    let proposes_on_the_base =
        |m: ReplicaId| cluster.highest_accepted.is_empty() || cluster.highest_accepted.contains(&m);
    let survivor = view.members.iter().any(|&m| {
        matches!(cluster.processes[usize::from(m)], Process::Running { since } if since <= view.since)
            && proposes_on_the_base(m)
            && !cluster.rejoining.contains(&m)
    });
    let reunion_waits = !survivor && !cluster.higher_accepted.iter().all(running);
    if view.members.iter().all(running) && !reunion_waits {
        Some(Why::ViewRuns)
    } else if survivor && majority {
        Some(Why::MajorityConnected)
    } else if survivor && cluster.crash_only {
        Some(Why::SurvivorOfTheView)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(since: u64) -> Process {
        Process::Running {
            since: Instant(since),
        }
    }

    fn cluster(processes: Vec<Process>, view: &[ReplicaId], since: u64) -> Cluster {
        Cluster {
            processes,
            network_whole: true,
            crash_only: true,
            view: Some(EstablishedView {
                members: view.to_vec(),
                since: Instant(since),
            }),
            higher_accepted: Vec::new(),
            highest_accepted: Vec::new(),
            rejoining: Vec::new(),
        }
    }

    /// Seed 1458 (`host_crash,partition`): the only running member of the view is rejoining.
    #[test]
    fn a_rejoining_member_is_no_survivor() {
        let mut c = cluster(vec![running(0), Process::Killed, running(0)], &[0, 1], 5);
        c.crash_only = false;
        assert_eq!(
            promised(Promise::TwoCrash, &c),
            Some(Why::MajorityConnected)
        );
        c.rejoining = vec![0];
        assert_eq!(promised(Promise::TwoCrash, &c), None);
    }

    #[test]
    fn a_connected_majority_is_promised_under_both_protocols() {
        let mut c = cluster(vec![running(0), running(0), Process::Gone], &[0, 1, 2], 0);
        c.crash_only = false;
        for promise in [Promise::Majority, Promise::TwoCrash] {
            assert_eq!(promised(promise, &c), Some(Why::MajorityConnected));
        }
        c.network_whole = false;
        assert_eq!(promised(Promise::TwoCrash, &c), None);
        c.network_whole = true;
        c.processes[1] = Process::Paused;
        assert_eq!(promised(Promise::Majority, &c), None);
    }

    #[test]
    fn a_lone_survivor_is_promised_only_by_the_two_crash_protocol_after_crashes_only() {
        let mut c = cluster(
            vec![Process::Killed, running(0), Process::Killed],
            &[0, 1, 2],
            5,
        );
        assert_eq!(promised(Promise::Majority, &c), None);
        assert_eq!(
            promised(Promise::TwoCrash, &c),
            Some(Why::SurvivorOfTheView)
        );
        c.crash_only = false;
        assert_eq!(promised(Promise::TwoCrash, &c), None);
    }

    #[test]
    fn a_restarted_member_alone_waits_for_the_others() {
        // Replica 1 restarted after the view {0, 1} was established; 0 is down.
        let c = cluster(
            vec![Process::Killed, running(9), Process::Killed],
            &[0, 1],
            5,
        );
        assert_eq!(promised(Promise::TwoCrash, &c), None);
        // Both members back: rule 8's reunion.
        let c = cluster(vec![running(12), running(9), Process::Killed], &[0, 1], 5);
        assert_eq!(promised(Promise::TwoCrash, &c), Some(Why::ViewRuns));
        // Rule 8's fast path: the only member of the view resumes at once.
        let c = cluster(vec![running(12), Process::Killed, Process::Killed], &[0], 5);
        assert_eq!(promised(Promise::TwoCrash, &c), Some(Why::ViewRuns));
    }

    #[test]
    fn a_non_member_alone_is_not_promised() {
        let c = cluster(
            vec![running(0), Process::Killed, Process::Killed],
            &[1, 2],
            5,
        );
        assert_eq!(promised(Promise::TwoCrash, &c), None);
    }

    #[test]
    fn a_majority_without_a_survivor_waits_for_the_members_of_the_view() {
        // All three went down; 0 and 1 are back (rejoining), 2 is still down: rule 8
        // waits for 2, whatever the majority.
        let mut c = cluster(vec![running(9), running(9), Process::Killed], &[0, 1, 2], 5);
        c.crash_only = false;
        assert_eq!(
            promised(Promise::Majority, &c),
            Some(Why::MajorityConnected)
        );
        assert_eq!(promised(Promise::TwoCrash, &c), None);
        c.processes[2] = running(10);
        assert_eq!(promised(Promise::TwoCrash, &c), Some(Why::ViewRuns));
        // With a survivor the majority excludes 2 under 4(b).
        c.processes[0] = running(0);
        c.processes[2] = Process::Gone;
        assert_eq!(
            promised(Promise::TwoCrash, &c),
            Some(Why::MajorityConnected)
        );
    }

    #[test]
    fn a_member_stopped_for_good_is_needed_unless_a_survivor_excludes_it() {
        // Replica 2 served alone in {2}, then lost its disk: 0 and 1 restarted and hold
        // neither its entries nor leave to go on without it.
        let gone = Process::Gone;
        let mut c = cluster(vec![running(9), running(9), gone], &[2], 5);
        c.crash_only = false;
        assert_eq!(
            promised(Promise::Majority, &c),
            Some(Why::MajorityConnected)
        );
        assert_eq!(promised(Promise::TwoCrash, &c), None);
        c.crash_only = true;
        assert_eq!(promised(Promise::TwoCrash, &c), None);
        // The same loss in view {0, 1, 2} while 0 runs since the view: an ordinary crash.
        let mut c = cluster(vec![running(0), running(9), gone], &[0, 1, 2], 5);
        c.crash_only = false;
        assert_eq!(
            promised(Promise::TwoCrash, &c),
            Some(Why::MajorityConnected)
        );
        c.processes[1] = Process::Killed;
        assert_eq!(promised(Promise::TwoCrash, &c), None);
        c.crash_only = true;
        assert_eq!(
            promised(Promise::TwoCrash, &c),
            Some(Why::SurvivorOfTheView)
        );
        // A loss outside the view is nobody's concern.
        let c = cluster(vec![running(9), running(9), gone], &[0, 1], 5);
        assert_eq!(promised(Promise::TwoCrash, &c), Some(Why::ViewRuns));
    }

    #[test]
    fn a_reunion_waits_for_the_members_of_a_higher_accepted_view() {
        // Seed 3579 (crash-only): {2} established; 2 proposed {0, 2}, 0 accepted, 2 crashed
        // and restarted; then 0 lost its disk. Rule 8 waits for 0.
        let mut c = cluster(vec![Process::Gone, running(9), running(9)], &[2], 5);
        c.higher_accepted = vec![0, 2];
        assert_eq!(promised(Promise::TwoCrash, &c), None);
        c.processes[0] = running(10);
        assert_eq!(promised(Promise::TwoCrash, &c), Some(Why::ViewRuns));
        // A survivor of {2} does not wait (it is not rejoining).
        c.processes[0] = Process::Gone;
        c.processes[2] = running(0);
        assert_eq!(promised(Promise::TwoCrash, &c), Some(Why::ViewRuns));
    }

    #[test]
    fn a_survivor_left_out_of_a_higher_accepted_view_is_no_survivor() {
        // Seed 84161 (mixed faults): {0, 1, 2} established; r0 cut off, r2 proposed {1, 2}
        // leaving it out, crashed and restarted (rejoining); r1 then lost its disk. r0 runs
        // since the view but cannot propose on the base {1, 2}; rule 8 waits for r1.
        let mut c = cluster(vec![running(0), Process::Gone, running(9)], &[0, 1, 2], 0);
        c.crash_only = false;
        c.higher_accepted = vec![1, 2];
        c.highest_accepted = vec![1, 2];
        assert_eq!(promised(Promise::TwoCrash, &c), None);
        c.crash_only = true;
        assert_eq!(promised(Promise::TwoCrash, &c), None);
        // r1 back: the reunion re-forms {1, 2} with r0.
        c.processes[1] = running(10);
        assert_eq!(promised(Promise::TwoCrash, &c), Some(Why::ViewRuns));
        // A survivor that is a member of the higher view proposes on it as before.
        c.processes[1] = Process::Gone;
        c.higher_accepted = vec![0, 2];
        c.highest_accepted = vec![0, 2];
        c.crash_only = false;
        assert_eq!(
            promised(Promise::TwoCrash, &c),
            Some(Why::MajorityConnected)
        );
    }
}
