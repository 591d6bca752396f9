//! The backup's side: accepting entries from the primary of its view.

use super::role::RoleState;
use super::{PeerMessage, Persist};
use crate::durable::{Entry, Record};
use crate::ids::{OpIndex, ReplicaId, View};

impl super::Replica {
    /// Accepts a message from the primary of `view`: returns false if it is from an older view
    /// (the sender is told our view, so it steps down).
    pub(super) fn follow(&mut self, from: ReplicaId, view: View) -> bool {
        if view < self.view {
            return false;
        }
        if view > self.view {
            self.adopt_view(view);
        }
        assert!(
            !matches!(self.role, RoleState::Primary(_)),
            "two primaries in view {view}: {} and {from}",
            self.opts.id
        );
        self.become_backup(Some(from));
        true
    }

    pub(super) fn on_append(
        &mut self,
        from: ReplicaId,
        view: View,
        prev_index: OpIndex,
        prev_view: View,
        entries: Vec<Entry>,
        commit: OpIndex,
    ) {
        let reply = |replica: &Self, ok, index| PeerMessage::AppendReply {
            view: replica.view,
            ok,
            index,
            prev_index,
        };
        if !self.follow(from, view) {
            let message = reply(self, false, self.log.last_index());
            self.send_after_persist(from, message);
            return;
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
        self.send_after_persist(from, message);
        let commit = commit.min(last_verified);
        if commit > self.commit {
            self.commit = commit;
            self.apply_committed();
        }
    }
}
