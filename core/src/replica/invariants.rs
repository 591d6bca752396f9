//! Invariants a replica keeps after every step, checked by tests and the simulator.

use super::role::RoleState;
use super::timers::Timer;
use crate::ids::{OpIndex, ReplicaId, View};
use std::collections::BTreeSet;

/// A replica broke one of its own invariants (a bug): what, in words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("replica {replica}: {what}")]
pub struct InvariantViolation {
    pub replica: ReplicaId,
    pub what: String,
}

/// The state before the last `handle`/`tick`, for invariants about steps (what may never go
/// back or change within a view).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct StepStart {
    view: View,
    voted_for: Option<ReplicaId>,
    commit: OpIndex,
}

impl StepStart {
    pub fn of(replica: &super::Replica) -> StepStart {
        StepStart {
            view: replica.view,
            voted_for: replica.voted_for,
            commit: replica.commit,
        }
    }
}

impl super::Replica {
    /// Checks the replica's invariants (cheap: no walk over the log):
    /// - applied ≤ commit ≤ last index, and the snapshot point ≤ applied;
    /// - a compacted log starts right after the snapshot kept to send;
    /// - durable ≤ last index; no entry of a view above ours;
    /// - the view and vote in memory are the ones last handed to the driver to persist;
    /// - within the last step, the view and the commit index did not go back and no second
    ///   vote was cast in one view;
    /// - the role agrees with its state and its timers.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let fail = |what: String| {
            Err(InvariantViolation {
                replica: self.opts.id,
                what,
            })
        };
        let last = self.log.last_index();
        let base = self.log.base().last_index;
        if !(base <= self.applied && self.applied <= self.commit && self.commit <= last) {
            return fail(format!(
                "snapshot {base} ≤ applied {} ≤ commit {} ≤ last {last} does not hold",
                self.applied, self.commit
            ));
        }
        if base > 0 && self.snapshots.latest_meta() != Some(self.log.base()) {
            return fail(format!(
                "the log starts after {base} but not at our snapshot"
            ));
        }
        if self.durable_index > last {
            return fail(format!("durable {} beyond last {last}", self.durable_index));
        }
        if self.log.last_view() > self.view {
            return fail(format!(
                "an entry of view {} in view {}",
                self.log.last_view(),
                self.view
            ));
        }
        if self.persisted_vote != (self.view, self.voted_for) {
            return fail(format!(
                "view and vote {:?} not handed to the driver (last persisted {:?})",
                (self.view, self.voted_for),
                self.persisted_vote
            ));
        }
        let before = self.step_start;
        if self.view < before.view || self.commit < before.commit {
            return fail(format!(
                "went back: view {} -> {}, commit {} -> {}",
                before.view, self.view, before.commit, self.commit
            ));
        }
        if self.view == before.view
            && before.voted_for.is_some()
            && self.voted_for != before.voted_for
        {
            return fail(format!(
                "two votes in view {}: {:?} then {:?}",
                self.view, before.voted_for, self.voted_for
            ));
        }
        self.check_role().or_else(fail)
    }

    fn check_role(&self) -> Result<(), String> {
        let me = self.opts.id;
        let election = self.timers.is_armed(Timer::Election);
        let heartbeat = self.timers.is_armed(Timer::Heartbeat);
        match &self.role {
            RoleState::Backup { primary } => {
                if *primary == Some(me) {
                    return Err("a backup follows itself".into());
                }
                if !election || heartbeat {
                    return Err("a backup runs the election timer only".into());
                }
            }
            RoleState::Candidate(c) => {
                if self.voted_for != Some(me) || !c.votes.contains(&me) {
                    return Err("a candidate that did not vote for itself".into());
                }
                if !election || heartbeat {
                    return Err("a candidate runs the election timer only".into());
                }
            }
            RoleState::Primary(p) => {
                if self.voted_for != Some(me) {
                    return Err("a primary that did not vote for itself".into());
                }
                if election || !heartbeat {
                    return Err("a primary runs the heartbeat timer only".into());
                }
                let peers: BTreeSet<ReplicaId> = self.peers().collect();
                if !p.peers.keys().copied().eq(peers) {
                    return Err("a primary tracks other replicas than its peers".into());
                }
                let last = self.log.last_index();
                if let Some((peer, _)) = p
                    .peers
                    .iter()
                    .find(|(_, g)| g.matched > last || g.next > last + 1)
                {
                    return Err(format!("progress of {peer} beyond our log's end {last}"));
                }
            }
        }
        Ok(())
    }
}
