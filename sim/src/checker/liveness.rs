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
    /// Issue 8's two-crash protocol: the majority promise (rule 4(b) excludes the silent
    /// minority once its leases lapse) and, in crash-only schedules, progress whenever one
    /// member of the latest established view runs (rule 4(a): every other member's crash
    /// left evidence under a lease).
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
}

/// Which rule promises progress now, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// A majority of the configured replicas runs and the network is whole.
    MajorityConnected,
    /// Crash-only schedule: a member of the latest established view has run since it was
    /// established, or every member runs (rule 8's reunion), and the network is whole.
    SurvivorOfTheView,
}

/// Whether `promise` says the cluster must make progress now, and by which rule.
pub fn promised(promise: Promise, cluster: &Cluster) -> Option<Why> {
    // Every rule needs the network whole: a client cut off from the primary waits for the
    // heal whatever the protocol, and silence is never evidence.
    if !cluster.network_whole {
        return None;
    }
    let running =
        |r: &ReplicaId| matches!(cluster.processes[usize::from(*r)], Process::Running { .. });
    let n = cluster.processes.len();
    let up = (0..n as ReplicaId).filter(running).count();
    if up > n / 2 {
        return Some(Why::MajorityConnected);
    }
    if promise != Promise::TwoCrash || !cluster.crash_only {
        return None;
    }
    let view = cluster.view.as_ref()?;
    // A member that restarted since the view was established is rejoining: alone it waits
    // for the others (rule 8), so it does not count as a survivor.
    let survivor = view.members.iter().any(|&m| {
        matches!(cluster.processes[usize::from(m)], Process::Running { since } if since <= view.since)
    });
    let reunion = view.members.iter().all(running);
    (survivor || reunion).then_some(Why::SurvivorOfTheView)
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
        }
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
        assert_eq!(
            promised(Promise::TwoCrash, &c),
            Some(Why::MajorityConnected)
        );
        let c = cluster(vec![running(12), Process::Killed, Process::Killed], &[0], 5);
        assert_eq!(
            promised(Promise::TwoCrash, &c),
            Some(Why::SurvivorOfTheView)
        );
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
}
