//! What is durable, and holding back messages until what they rely on is.

use super::role::RoleState;
use super::{Output, PeerMessage, Persist, PersistId};
use crate::durable::Record;
use crate::ids::{OpIndex, ReplicaId};

impl super::Replica {
    /// Hands `what` to the driver to make durable; returns its id.
    pub(super) fn persist(&mut self, what: Persist) -> PersistId {
        let id = self.next_persist;
        self.next_persist += 1;
        if let Persist::Records(records) = &what {
            for record in records {
                if let Record::Vote { view, voted_for } = record {
                    self.persisted_vote = (*view, *voted_for);
                }
            }
            if let Some(last) = records.iter().rev().find_map(|r| match r {
                Record::Entry(e) => Some(e.index),
                _ => None,
            }) {
                self.index_marks.push_back((id, last));
            }
        }
        self.outputs.push_back(Output::Persist { id, what });
        id
    }

    /// Persists the current view and vote; returns the persist id.
    pub(super) fn persist_vote(&mut self) -> PersistId {
        self.persist(Persist::Records(vec![Record::Vote {
            view: self.view,
            voted_for: self.voted_for,
        }]))
    }

    /// Sends `message` once everything persisted so far is durable.
    pub(super) fn send_after_persist(&mut self, to: ReplicaId, message: PeerMessage) {
        let last = self.next_persist - 1;
        let out = Output::Send { to, message };
        if last <= self.durable_id {
            self.outputs.push_back(out);
        } else {
            self.held.push_back((last, out));
        }
    }

    pub(super) fn send_now(&mut self, to: ReplicaId, message: PeerMessage) {
        self.outputs.push_back(Output::Send { to, message });
    }

    pub(super) fn on_persisted(&mut self, id: PersistId) {
        if id <= self.durable_id {
            return;
        }
        assert!(id < self.next_persist, "persisted an id never handed out");
        self.durable_id = id;
        while let Some(&(mark, index)) = self.index_marks.front() {
            if mark > id {
                break;
            }
            self.durable_index = self.durable_index.max(index);
            self.index_marks.pop_front();
        }
        while self.held.front().is_some_and(|(mark, _)| *mark <= id) {
            let (_, out) = self.held.pop_front().expect("checked above");
            self.outputs.push_back(out);
        }
        self.on_snapshot_persisted(id);
        match self.role {
            RoleState::Candidate(_) => self.count_votes(),
            RoleState::Primary(_) => self.advance_commit(),
            RoleState::Backup { .. } => {}
        }
    }

    /// Log entries at `index` and above are gone: nothing about them may count as durable.
    pub(super) fn truncate_log(&mut self, index: OpIndex) {
        self.log.truncate_from(index);
        self.durable_only_up_to(index - 1);
    }

    /// Entries after `index` are no longer the ones persisted before: neither what is durable
    /// nor any pending persist may vouch for them.
    pub(super) fn durable_only_up_to(&mut self, index: OpIndex) {
        self.durable_index = self.durable_index.min(index);
        for (_, last) in self.index_marks.iter_mut() {
            *last = (*last).min(index);
        }
    }
}
