//! View changes: candidates, votes, becoming primary, and stepping down.

use super::primary::Primary;
use super::role::{Candidate, RoleState};
use super::timers::Timer;
use super::PeerMessage;
use crate::durable::EntryBody;
use crate::ids::{OpIndex, ReplicaId, View};
use std::collections::BTreeSet;

impl super::Replica {
    /// No primary heard for an election timeout: ask for votes in the next view.
    pub(super) fn start_election(&mut self) {
        self.view += 1;
        self.voted_for = Some(self.opts.id);
        let own_vote = self.persist_vote();
        self.role = RoleState::Candidate(Candidate {
            votes: BTreeSet::from([self.opts.id]),
            own_vote,
        });
        let request = PeerMessage::RequestVote {
            view: self.view,
            last_index: self.log.last_index(),
            last_view: self.log.last_view(),
        };
        for peer in self.peers().collect::<Vec<_>>() {
            self.send_after_persist(peer, request.clone());
        }
        self.reset_election_timer();
        self.count_votes();
    }

    /// A quorum of votes, our own durable among them, makes us primary.
    pub(super) fn count_votes(&mut self) {
        if let RoleState::Candidate(c) = &self.role {
            if self.durable_id >= c.own_vote && self.quorum.is_reached(c.votes.len()) {
                self.become_primary();
            }
        }
    }

    pub(super) fn on_request_vote(
        &mut self,
        from: ReplicaId,
        view: View,
        last_index: OpIndex,
        last_view: View,
    ) {
        if view > self.view {
            self.adopt_view(view);
        }
        // Raft's election restriction: only a log at least as up to date as ours can hold
        // every entry we helped commit.
        let up_to_date = (last_view, last_index) >= (self.log.last_view(), self.log.last_index());
        let grant = view == self.view
            && self.voted_for.is_none_or(|v| v == from)
            && (up_to_date || self.opts.faults.vote_for_shorter_log);
        if grant && self.voted_for.is_none() {
            self.voted_for = Some(from);
            self.persist_vote();
            self.reset_election_timer();
        }
        let reply = PeerMessage::VoteReply {
            view: self.view,
            granted: grant,
        };
        self.send_after_persist(from, reply);
    }

    pub(super) fn on_vote_reply(&mut self, from: ReplicaId, view: View, granted: bool) {
        if view > self.view {
            self.adopt_view(view);
        } else if view == self.view && granted {
            if let RoleState::Candidate(c) = &mut self.role {
                c.votes.insert(from);
                self.count_votes();
            }
        }
    }

    fn become_primary(&mut self) {
        let peers: Vec<ReplicaId> = self.peers().collect();
        let mut primary = Primary::new(&peers, self.log.last_index() + 1, self.now);
        // Requests already in the uncommitted log are not ordered twice.
        for entry in self.log.entries_after(self.commit) {
            if let EntryBody::Request(r) = &entry.body {
                primary.pending.insert(r.client, r.request);
            }
        }
        self.role = RoleState::Primary(primary);
        self.timers.disarm(Timer::Election);
        // An entry of our own view commits every earlier entry with it (Raft §5.4.2).
        self.append_entry(EntryBody::Noop);
        self.on_heartbeat_timer();
    }

    /// Adopts a higher view as a backup, with no vote cast in it yet. The election timer
    /// keeps running: hearing of a view is not hearing from its primary.
    pub(super) fn adopt_view(&mut self, view: View) {
        debug_assert!(view > self.view);
        self.view = view;
        self.voted_for = None;
        self.persist_vote();
        self.step_down(None);
    }

    /// Follows `primary` (if known) as a backup; restarts the election timer.
    pub(super) fn become_backup(&mut self, primary: Option<ReplicaId>) {
        self.step_down(primary);
        self.reset_election_timer();
    }

    /// Becomes a backup of `primary`, dropping a candidate's or primary's state.
    fn step_down(&mut self, primary: Option<ReplicaId>) {
        if !matches!(self.role, RoleState::Backup { .. }) {
            self.timers.disarm(Timer::Heartbeat);
            self.reset_election_timer();
        }
        self.role = RoleState::Backup { primary };
    }
}
