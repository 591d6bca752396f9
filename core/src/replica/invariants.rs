//! Invariants a replica keeps after every step, checked by tests and the simulator.

use super::role::RoleState;
use super::timers::Timer;
use super::view::Durable;
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
    state: Option<Durable>,
    commit: OpIndex,
    /// An acknowledgement made in this step of entries of a ballot below the one promised
    /// then: (that ballot, the promised one).
    acked_below_promise: Option<(View, View)>,
}

impl StepStart {
    pub fn of(replica: &super::Replica) -> StepStart {
        StepStart {
            state: Some(replica.state),
            commit: replica.commit,
            acked_below_promise: None,
        }
    }

    /// Notes that entries of `view` were acknowledged while `promised` was promised.
    pub fn acknowledged(&mut self, view: View, promised: View) {
        if view < promised {
            self.acked_below_promise = Some((view, promised));
        }
    }
}

impl super::Replica {
    /// Checks the replica's invariants (cheap: no walk over the log):
    /// - applied ≤ commit ≤ last index, and the snapshot point ≤ applied;
    /// - durable ≤ last index; no entry of a ballot above the one promised;
    /// - accepted ≤ promised, established ≤ accepted; the protocol state in memory is the
    ///   one last handed to the driver to persist;
    /// - within the last step, promised, accepted, established and the commit index did not
    ///   go back, no second, different view was accepted at one ballot, and no entry of a
    ///   ballot below the one promised was acknowledged (rule 1a's promise);
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
        if self.durable_index > last {
            return fail(format!("durable {} beyond last {last}", self.durable_index));
        }
        let s = &self.state;
        if self.log.last_view() > s.promised && !self.opts.mutations.promise_nothing {
            return fail(format!(
                "an entry of ballot {} with ballot {} promised",
                self.log.last_view(),
                s.promised
            ));
        }
        if s.accepted.ballot > s.promised || s.established.ballot > s.accepted.ballot {
            return fail(format!("out of order: {s:?}"));
        }
        if self.persisted_state.0 != self.state {
            return fail(format!(
                "protocol state {:?} not handed to the driver (last persisted {:?})",
                self.state, self.persisted_state.0
            ));
        }
        if let Some((view, promised)) = self.step_start.acked_below_promise {
            return fail(format!(
                "acknowledged entries of ballot {view} with ballot {promised} promised"
            ));
        }
        if let Some(before) = self.step_start.state {
            let back = s.promised < before.promised
                || s.accepted.ballot < before.accepted.ballot
                || s.established.ballot < before.established.ballot
                || self.commit < self.step_start.commit;
            if back {
                return fail(format!(
                    "went back: {before:?} commit {} -> {s:?} commit {}",
                    self.step_start.commit, self.commit
                ));
            }
            if s.accepted.ballot == before.accepted.ballot && s.accepted != before.accepted {
                return fail(format!(
                    "two views at one ballot: {:?} then {:?}",
                    before.accepted, s.accepted
                ));
            }
        }
        self.check_role().or_else(fail)
    }

    fn check_role(&self) -> Result<(), String> {
        let me = self.opts.id;
        if !self.timers.is_armed(Timer::Heartbeat) {
            return Err("the heartbeat timer is not armed".into());
        }
        match &self.role {
            RoleState::Backup { primary } => {
                if *primary == Some(me) {
                    return Err("a backup follows itself".into());
                }
            }
            RoleState::Preparing(p) => {
                if self.state.promised != p.ballot {
                    return Err("preparing a ballot we did not promise ourselves".into());
                }
            }
            RoleState::Primary(p) => {
                let s = &self.state;
                if s.accepted.primary() != me || s.vote || !s.accepted.members.contains(me) {
                    return Err("a primary of a view it did not propose or is not in".into());
                }
                if p.proposal.is_none()
                    && s.established != s.accepted
                    && !self.opts.mutations.act_before_established
                {
                    return Err("acting in a view that is not established".into());
                }
                let peers: BTreeSet<ReplicaId> =
                    s.accepted.members.iter().filter(|&m| m != me).collect();
                if !p.peers.keys().copied().eq(peers) {
                    return Err("a primary tracks other replicas than its members".into());
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
