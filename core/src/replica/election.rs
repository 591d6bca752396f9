//! View changes: candidates, votes, and becoming primary.

use super::primary::Primary;
use super::{PeerMessage, Role};
use crate::durable::EntryBody;
use crate::ids::{OpIndex, ReplicaId, View};
use std::collections::BTreeSet;

impl super::Replica {
    /// No primary heard for an election timeout: ask for votes in the next view.
    pub(super) fn start_election(&mut self) {
        self.view += 1;
        self.voted_for = Some(self.opts.id);
        self.role = Role::Candidate;
        self.primary = None;
        self.leader = None;
        self.votes = BTreeSet::from([self.opts.id]);
        self.persist_vote();
        self.own_vote = self.next_persist - 1;
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

    /// A majority of votes, our own durable among them, makes us primary.
    pub(super) fn count_votes(&mut self) {
        if self.role == Role::Candidate
            && self.durable_id >= self.own_vote
            && self.votes.len() >= self.majority()
        {
            self.become_primary();
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
        } else if view == self.view && granted && self.role == Role::Candidate {
            self.votes.insert(from);
            self.count_votes();
        }
    }

    fn become_primary(&mut self) {
        self.role = Role::Primary;
        self.primary = Some(self.opts.id);
        self.votes.clear();
        let peers: Vec<ReplicaId> = self.peers().collect();
        let mut leader = Primary::new(&peers, self.log.last_index() + 1, self.now);
        // Requests already in the uncommitted log are not ordered twice.
        for entry in self.log.entries_after(self.commit) {
            if let EntryBody::Request(r) = &entry.body {
                leader.pending.insert(r.client, r.request);
            }
        }
        self.leader = Some(leader);
        // An entry of our own view commits every earlier entry with it (Raft §5.4.2).
        self.append_entry(EntryBody::Noop);
        self.on_heartbeat_timer();
    }
}
