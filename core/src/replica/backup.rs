//! The member's side: adopting the log of the proposer or primary of its view.

use super::role::RoleState;
use super::{Body, Persist};
use crate::durable::{Entry, Record};
use crate::ids::{OpIndex, ReplicaId, View};

impl super::Replica {
    /// Whether we take log entries (or a snapshot) from `from` for ballot `view` as a member
    /// (else perhaps as a learner, `learner::learn_from`): it is the
    /// proposer of the view we accepted, or of a proposal we checked and wait to accept, and
    /// we promised nothing higher (rule 1: never acknowledge an entry of a lower-ballot view
    /// after a phase-1 answer). An established view's primary is followed: its heartbeat
    /// tells us the view is established and ends our rejoining (rule 7) if we accepted that
    /// view in this life.
    pub(super) fn follow(&mut self, from: ReplicaId, view: View, established: bool) -> bool {
        if super::view::proposer(view) != from {
            return false;
        }
        let ours = self.state.accepted.ballot == view && self.is_member();
        let pending = self
            .pending_accept
            .as_ref()
            .is_some_and(|p| p.view.ballot == view);
        let fenced = self.state.promised > view && !self.opts.mutations.still_acknowledge;
        if fenced || !(ours || pending) {
            return false;
        }
        // A rejoining replica comes back only in a view this incarnation accepted: an
        // `Append` of a view its earlier life accepted may come from a primary that is
        // leaving that life out on evidence of its crash (soak seed 394).
        if ours && established && (!self.rejoining || self.accepted_in_this_life) {
            if self.state.established != self.state.accepted {
                self.state.established = self.state.accepted;
                self.persist_state();
                self.forget_excluded();
            }
            self.rejoining = false;
            if !matches!(self.role, RoleState::Backup { primary: Some(p) } if p == from) {
                self.step_down(Some(from));
            }
        }
        true
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_append(
        &mut self,
        from: ReplicaId,
        view: View,
        established: bool,
        prev_index: OpIndex,
        prev_view: View,
        entries: Vec<Entry>,
        commit: OpIndex,
    ) {
        let reply = |replica: &Self, ok, index| {
            replica.message(Body::AppendReply {
                view: if ok { view } else { replica.state.promised },
                ok,
                index,
                prev_index,
            })
        };
        let learner = !self.follow(from, view, established);
        if learner && !(established && self.learn_from(from, view)) {
            let message = reply(self, false, self.log.last_index());
            self.send_after_persist(from, message);
            return;
        }
        let mut entries = entries;
        if learner {
            // A learner takes committed entries only (`learner`).
            entries.retain(|e| e.index <= commit);
        }
        if prev_index > self.log.last_index() {
            let message = reply(self, false, self.log.last_index());
            self.send_after_persist(from, message);
            return;
        }
        let base = self.log.base().last_index;
        if prev_index >= base {
            let ours = self.log.view_at(prev_index).expect("within the log");
            if ours != prev_view {
                // Skip back over our whole conflicting view in one step; committed entries
                // always agree, so never below the commit point.
                let mut hint = prev_index - 1;
                while hint > self.commit.max(base) && self.log.view_at(hint) == Some(ours) {
                    hint -= 1;
                }
                let message = reply(self, false, hint);
                self.send_after_persist(from, message);
                return;
            }
        }
        let last_verified = prev_index + entries.len() as u64;
        let mut records = Vec::new();
        for entry in entries {
            if entry.index <= base {
                continue; // Covered by our snapshot: committed, so it agrees.
            }
            match self.log.view_at(entry.index) {
                Some(v) if v == entry.view => continue,
                Some(_) => {
                    assert!(entry.index > self.commit, "a committed entry conflicts");
                    self.truncate_log(entry.index);
                    records.push(Record::TruncateFrom(entry.index));
                }
                None => {}
            }
            self.log.append(entry.clone());
            records.push(Record::Entry(entry));
        }
        if !records.is_empty() {
            self.persist(Persist::Records(records));
        }
        let message = reply(self, true, last_verified);
        self.step_start.acknowledged(view, self.state.promised);
        self.send_after_persist(from, message);
        let commit = commit.min(last_verified);
        if commit > self.commit {
            self.commit = commit;
            self.apply_committed();
        }
        self.try_accept_pending();
    }
}
