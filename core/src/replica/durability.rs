//! What is durable, and holding back messages until what they rely on is.

use super::role::RoleState;
use super::{Output, PeerMessage, Persist, PersistId};
use crate::durable::Record;
use crate::ids::{OpIndex, ReplicaId};

impl super::Replica {
    /// Hands `what` to the driver to make durable; returns its id. Records join the
    /// previous `Persist` while it is the last output not yet taken by the driver, so that
    /// everything one batch of inputs writes is one write (and one sync).
    pub(super) fn persist(&mut self, what: Persist) -> PersistId {
        let Persist::Records(records) = what else {
            return self.push_persist(what);
        };
        let joins = matches!(
            self.outputs.back(),
            Some(Output::Persist {
                what: Persist::Records(_),
                ..
            })
        );
        let id = if joins {
            self.next_persist - 1
        } else {
            self.next_persist
        };
        for record in &records {
            if let Record::Protocol(state) = record {
                self.persisted_state = (*state, id);
            }
        }
        if let Some(last) = records.iter().rev().find_map(|r| match r {
            Record::Entry(e) => Some(e.index),
            _ => None,
        }) {
            match self.index_marks.back_mut() {
                Some((mark, index)) if *mark == id => *index = last,
                _ => self.index_marks.push_back((id, last)),
            }
        }
        match self.outputs.back_mut() {
            Some(Output::Persist {
                what: Persist::Records(queued),
                ..
            }) if joins => {
                queued.extend(records);
                id
            }
            _ => self.push_persist(Persist::Records(records)),
        }
    }

    fn push_persist(&mut self, what: Persist) -> PersistId {
        let id = self.next_persist;
        self.next_persist += 1;
        self.outputs.push_back(Output::Persist { id, what });
        id
    }

    /// Persists the protocol state (if it changed); returns the persist id that covers it.
    pub(super) fn persist_state(&mut self) -> PersistId {
        if self.persisted_state.0 == self.state && self.persisted_state.1 != 0 {
            return self.persisted_state.1;
        }
        self.persist(Persist::Records(vec![Record::Protocol(self.state)]))
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

    /// Sends `message` now, unless our incarnation (persist id 1) is not durable yet: no
    /// process speaks before its incarnation is on disk (rule 5).
    pub(super) fn send_now(&mut self, to: ReplicaId, message: PeerMessage) {
        let out = Output::Send { to, message };
        if self.durable_id == 0 {
            self.held.push_back((1, out));
        } else {
            self.outputs.push_back(out);
        }
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
        match &self.role {
            RoleState::Primary(p) if p.proposal.is_some() => self.maybe_establish(),
            RoleState::Primary(_) => self.advance_commit(),
            RoleState::Preparing(_) => self.maybe_finish_phase_one(),
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
