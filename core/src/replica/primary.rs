//! The proposer's and primary's side: ordering client requests, replicating (in phase 2 to
//! bring members to the proposer's log, then in the established view), committing.

use super::learner::Learner;
use super::proposal::Proposal;
use super::role::RoleState;
use super::view::Members;
use super::{quorum, Body, Output, Persist};
use crate::chat::{ChatError, Event, Reply};
use crate::durable::{Entry, EntryBody, Record};
use crate::ids::{ClientId, OpIndex, ReplicaId, RequestNo, View};
use crate::service::{Lookup, Request};
use crate::time::{Duration, Instant};
use std::collections::BTreeMap;

/// What a proposer in phase 2, then the primary, tracks for its view.
#[derive(Debug)]
pub(super) struct PrimaryState {
    /// Phase 2 in progress: the view is not established yet, nothing commits.
    pub(super) proposal: Option<Proposal>,
    /// Replication progress of every other member of the view.
    pub(super) peers: BTreeMap<ReplicaId, Progress>,
    /// Returning replicas outside the view that take our committed log (`learner`).
    pub(super) learners: BTreeMap<ReplicaId, Learner>,
    /// Requests ordered in the log and not yet applied: client -> request number.
    pub pending: BTreeMap<ClientId, RequestNo>,
    /// The clock last put in the log in this view (`EntryBody::Time`).
    stamped: Option<Instant>,
}

/// Replication progress of one backup (in the manner of raft-rs's progress states).
#[derive(Debug)]
pub(super) struct Progress {
    /// Next index to send.
    pub(super) next: OpIndex,
    /// Highest index known to match ours durably on the backup.
    pub(super) matched: OpIndex,
    /// `matched` at the previous heartbeat: no progress in between means a lost message.
    matched_at_heartbeat: OpIndex,
    pub(super) state: SendState,
    /// When it last acknowledged replication (an `AppendReply` that matched, a
    /// `SnapshotReply`, an acceptance), or when we started tracking it: rule 6's clock.
    pub(super) acked_at: Instant,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum SendState {
    /// Entries stream ahead of acknowledgements (`next` moves on as they are sent).
    Replicate,
    /// Looking for where the logs agree: one `Append` at a time, from `next`.
    Probe,
    /// Sending a snapshot; the backup has acknowledged `offset` bytes.
    Snapshot { offset: u64 },
}

impl PrimaryState {
    pub fn new(
        peers: impl IntoIterator<Item = ReplicaId>,
        next: OpIndex,
        proposal: Option<Proposal>,
        now: Instant,
    ) -> PrimaryState {
        PrimaryState {
            proposal,
            peers: peers
                .into_iter()
                .map(|p| (p, Progress::new(next, now)))
                .collect(),
            learners: BTreeMap::new(),
            pending: BTreeMap::new(),
            stamped: None,
        }
    }

    /// The progress of a member or a learner.
    fn progress(&mut self, peer: ReplicaId) -> Option<&mut Progress> {
        if self.peers.contains_key(&peer) {
            return self.peers.get_mut(&peer);
        }
        self.learners.get_mut(&peer).map(|l| &mut l.progress)
    }

    /// Members and learners, everyone we send entries to, with their progress.
    pub(super) fn recipients(&self) -> impl Iterator<Item = (ReplicaId, &Progress)> {
        let learners = self.learners.iter().map(|(&r, l)| (r, &l.progress));
        self.peers.iter().map(|(&r, p)| (r, p)).chain(learners)
    }
}

impl Progress {
    /// Probing from `next`, nothing known to match yet.
    pub(super) fn new(next: OpIndex, now: Instant) -> Progress {
        Progress {
            next,
            matched: 0,
            matched_at_heartbeat: 0,
            state: SendState::Probe,
            acked_at: now,
        }
    }
}

/// How far entries may run ahead of a backup's acknowledgements.
const WINDOW_APPENDS: u64 = 4;

/// How often, at most, the primary puts its clock into the log (before a request).
const STAMP_EVERY: Duration = Duration::from_secs(1);

/// What a primary does with a client request.
enum Decision {
    Redirect,
    Reply(Reply),
    /// A retry of a request already ordered (the reply comes when it commits) or older than
    /// the client's last one.
    Ignore,
    Order,
}

/// The most client inputs kept during our own phase 2; past it they are redirected.
const MAX_HELD_CLIENTS: usize = 4096;

/// A client input kept while our own view is in phase 2.
#[derive(Debug)]
pub(super) enum HeldClient {
    Request(Request),
    Attached(ClientId),
}

impl super::Replica {
    pub(super) fn on_client_request(&mut self, request: Request) {
        if self.holds_clients() {
            self.held_clients.push(HeldClient::Request(request));
            return;
        }
        match self.decide(&request) {
            Decision::Redirect => self.redirect(request.client),
            Decision::Reply(reply) => self.reply(request.client, request.request, reply),
            Decision::Ignore => {}
            Decision::Order => {
                self.stamp_time();
                self.append_entry(EntryBody::Request(request));
                // Sent when the driver takes the outputs: the requests of one batch of inputs
                // go to each backup in one `Append`.
                self.replicate_due = true;
            }
        }
    }

    fn decide(&self, request: &Request) -> Decision {
        if !self.is_acting_primary() {
            return Decision::Redirect;
        }
        let Some(primary) = self.role.primary_ref() else {
            return Decision::Redirect;
        };
        let size = postcard::experimental::serialized_size(request).unwrap_or(usize::MAX);
        let max = self.max_request_bytes();
        if size > max {
            return Decision::Reply(Reply::Error(ChatError::RequestTooLarge { max: max as u32 }));
        }
        let lookup = if self.opts.mutations.no_client_table {
            Lookup::New
        } else {
            self.service.lookup(request.client, request.request)
        };
        match lookup {
            Lookup::Done(reply) => Decision::Reply(reply),
            Lookup::Stale => Decision::Ignore,
            Lookup::New if primary.pending.get(&request.client) == Some(&request.request) => {
                Decision::Ignore
            }
            Lookup::New => Decision::Order,
        }
    }

    /// As the proposer in phase 2 of our own view, keeps what a client asks until the view
    /// is established, rather than send the client away: it would only try the others and
    /// come back, pausing longer each round (a view change that adds a member back after a
    /// large catch-up took 40-230 ms, and clients' gaps were twice that).
    fn holds_clients(&self) -> bool {
        self.is_proposing_primary() && self.held_clients.len() < MAX_HELD_CLIENTS
    }

    /// After every step: once we are no longer proposing, what was held is handled as if it
    /// arrived now (ordered if we are the primary of the established view, else redirected).
    pub(super) fn release_held_clients(&mut self) {
        if self.held_clients.is_empty() || self.is_proposing_primary() {
            return;
        }
        for what in std::mem::take(&mut self.held_clients) {
            match what {
                HeldClient::Request(request) => self.on_client_request(request),
                HeldClient::Attached(client) => self.on_client_attached(client),
            }
        }
    }

    pub(super) fn on_client_attached(&mut self, client: ClientId) {
        if self.holds_clients() {
            // Only its latest attachment replays the session's pushes, once.
            self.held_clients
                .retain(|held| !matches!(held, HeldClient::Attached(c) if *c == client));
            self.held_clients.push(HeldClient::Attached(client));
            return;
        }
        if !self.is_acting_primary() {
            self.redirect(client);
            return;
        }
        // At most a page again, oldest first: a long backlog must not flood the connection
        // (the rest stays queued for `6|`).
        let page = self.opts.limits.deliver_max as usize;
        for message in self.service.unacked_pushes(client).into_iter().take(page) {
            self.outputs
                .push_back(Output::Event(Event::Push { client, message }));
        }
    }

    fn redirect(&mut self, client: ClientId) {
        let primary = self.redirect_hint();
        self.outputs.push_back(Output::Redirect { client, primary });
    }

    fn reply(&mut self, client: ClientId, request: RequestNo, reply: Reply) {
        self.outputs.push_back(Output::Reply {
            client,
            request,
            reply,
        });
    }

    /// Puts our clock into the log before the next request if it moved on by [`STAMP_EVERY`]
    /// since this view's last stamp: the service's only source of time.
    fn stamp_time(&mut self) {
        let now = self.now;
        let Some(primary) = self.role.as_primary() else {
            return;
        };
        if primary
            .stamped
            .is_some_and(|at| now.saturating_sub(at) < STAMP_EVERY)
        {
            return;
        }
        primary.stamped = Some(now);
        self.append_entry(EntryBody::Time(now));
    }

    /// Appends an entry of the current view to our log and to our disk; a request is
    /// pending until it is applied.
    pub(super) fn append_entry(&mut self, body: EntryBody) {
        if let (EntryBody::Request(r), Some(primary)) = (&body, self.role.as_primary()) {
            primary.pending.insert(r.client, r.request);
        }
        let entry = Entry {
            index: self.log.last_index() + 1,
            view: self.state.accepted.ballot,
            body,
        };
        self.log.append(entry.clone());
        self.persist(Persist::Records(vec![Record::Entry(entry)]));
    }

    /// Streams new entries to every backup that keeps up, as far as the window allows (to a
    /// learner, committed entries only).
    pub(super) fn replicate(&mut self) {
        let RoleState::Primary(primary) = &self.role else {
            return;
        };
        let window = WINDOW_APPENDS * self.opts.max_append_entries as u64;
        let recipients: Vec<ReplicaId> = primary.recipients().map(|(r, _)| r).collect();
        for peer in recipients {
            let last = self.sendable_end(peer);
            let ready = |p: &Progress| {
                let in_flight = p.next.saturating_sub(p.matched + 1);
                p.state == SendState::Replicate && p.next <= last && in_flight < window
            };
            while let Some(next) = self.progress(peer).filter(|p| ready(p)).map(|p| p.next) {
                self.send_append(peer);
                if self.progress(peer).is_none_or(|p| p.next == next) {
                    break; // Nothing was sent that moves it on.
                }
            }
        }
    }

    /// The last entry `peer` may be sent: our last, or our commit point for a learner.
    fn sendable_end(&self, peer: ReplicaId) -> OpIndex {
        let learner = self
            .role
            .primary_ref()
            .is_some_and(|p| p.learners.contains_key(&peer));
        if learner {
            self.commit
        } else {
            self.log.last_index()
        }
    }

    /// Heartbeat of a proposer or primary: replication to every member and learner, and the
    /// check for lost messages.
    pub(super) fn primary_heartbeat(&mut self) {
        let Some(primary) = self.role.as_primary() else {
            return;
        };
        let learners = primary.learners.values_mut().map(|l| &mut l.progress);
        for progress in primary.peers.values_mut().chain(learners) {
            let stalled = progress.state == SendState::Replicate
                && progress.matched + 1 < progress.next
                && progress.matched == progress.matched_at_heartbeat;
            if stalled {
                // Nothing acknowledged for a whole heartbeat: assume a loss, find out.
                progress.state = SendState::Probe;
                progress.next = progress.matched + 1;
            }
            progress.matched_at_heartbeat = progress.matched;
        }
        let recipients: Vec<ReplicaId> = primary.recipients().map(|(r, _)| r).collect();
        for peer in recipients {
            self.send_append(peer);
        }
    }

    /// A primary's progress record of `peer` (a member or a learner); `None` if we are not
    /// primary.
    pub(super) fn progress(&mut self, peer: ReplicaId) -> Option<&mut Progress> {
        self.role.as_primary()?.progress(peer)
    }

    /// Sends `peer` what it needs next: entries from its `next`, a heartbeat, or a snapshot
    /// chunk when those entries were compacted away.
    pub(super) fn send_append(&mut self, peer: ReplicaId) {
        let base = self.log.base();
        let Some(progress) = self.progress(peer) else {
            return;
        };
        if progress.next <= base.last_index && !matches!(progress.state, SendState::Snapshot { .. })
        {
            progress.state = SendState::Snapshot { offset: 0 };
        }
        if let SendState::Snapshot { offset } = progress.state {
            self.send_snapshot_chunk(peer, offset);
            return;
        }
        let next = progress.next;
        let replicating = progress.state == SendState::Replicate;
        let prev_index = next - 1;
        let prev_view = self
            .log
            .view_at(prev_index)
            .expect("prev entry is in the log");
        let most = (self.sendable_end(peer) + 1).saturating_sub(next);
        let entries = self.log.slice(
            next,
            self.opts.max_append_entries.min(most as usize),
            self.opts.max_append_bytes,
        );
        if let (true, Some(last), Some(progress)) =
            (replicating, entries.last(), self.progress(peer))
        {
            progress.next = last.index + 1;
        }
        let established = self
            .role
            .primary_ref()
            .is_some_and(|p| p.proposal.is_none());
        let message = self.message(Body::Append {
            view: self.state.accepted.ballot,
            established,
            prev_index,
            prev_view,
            entries,
            commit: self.commit,
        });
        // Our acceptance of the view is durable before any `Propose` leaves, and an
        // `Append` of this ballot is refused by anyone who has not seen the proposal; our
        // own entries need not be durable before a member stores them.
        self.send_now(peer, message);
    }

    /// A replication answer from `from` about `view`: returns whether it is for us as the
    /// proposer or primary of that view. A refusal from a member that promised a higher
    /// ballot fences us: we stop acting and step down.
    pub(super) fn heard(&mut self, from: ReplicaId, view: View, ok: bool) -> bool {
        if let Some(primary) = self.role.as_primary() {
            if !ok && primary.learners.contains_key(&from) && view > self.state.accepted.ballot {
                // A learner that promised a higher ballot meanwhile: it does not fence us (it
                // is no member), and it cannot learn from us.
                primary.learners.remove(&from);
                return false;
            }
        }
        if view > self.state.accepted.ballot && !ok {
            if self.role.primary_ref().is_some() {
                self.step_down(None);
            }
            return false;
        }
        if view != self.state.accepted.ballot {
            return false;
        }
        let now = self.now;
        let Some(progress) = self.progress(from) else {
            return false;
        };
        if ok {
            progress.acked_at = now;
        }
        true
    }

    /// Rule 6: the members of our established view that acknowledged no replication within
    /// the lag bound (empty unless we are its acting primary). Nobody renews its promise to
    /// them while we report them, so that a member that still talks to some replica but not
    /// to us (a cut between two replicas that both reach the third) can be left out by rule
    /// 4(b), instead of stalling every commit until the cut heals.
    pub(super) fn lagging(&self) -> Members {
        let bound = self.opts.lag_bound();
        match &self.role {
            RoleState::Primary(p) if p.proposal.is_none() && self.is_acting_primary() => p
                .peers
                .iter()
                .filter(|(_, progress)| self.now.saturating_sub(progress.acked_at) > bound)
                .map(|(&peer, _)| peer)
                .collect(),
            _ => Members::default(),
        }
    }

    pub(super) fn on_append_reply(
        &mut self,
        from: ReplicaId,
        view: View,
        ok: bool,
        index: OpIndex,
        prev_index: OpIndex,
    ) {
        if !self.heard(from, view, ok) {
            return;
        }
        let last_index = self.sendable_end(from);
        let Some(progress) = self.progress(from) else {
            return;
        };
        if matches!(progress.state, SendState::Snapshot { .. }) {
            return; // Answers to appends sent before the snapshot: the snapshot decides.
        }
        if ok {
            let advanced = index > progress.matched;
            progress.matched = progress.matched.max(index);
            if advanced {
                let now = self.now;
                self.proposal_progressed(now);
            }
            let Some(progress) = self.progress(from) else {
                return;
            };
            if progress.state == SendState::Probe {
                progress.state = SendState::Replicate;
            }
            progress.next = progress.next.max(progress.matched + 1);
            self.advance_commit();
            if self.progress(from).is_some_and(|p| p.next <= last_index) {
                self.send_append(from);
            }
            return;
        }
        if prev_index == progress.matched && progress.state == SendState::Replicate {
            // An append that overtook the one before it was refused, and the backup holds
            // that one now: send what was refused again at once, rather than leave it to
            // the heartbeat's probe (a stall of a heartbeat interval).
            progress.next = prev_index + 1;
            self.send_append(from);
            return;
        }
        let stale = prev_index <= progress.matched
            || (progress.state == SendState::Probe && prev_index + 1 != progress.next);
        if stale {
            return;
        }
        // Resume where the logs still agree: at most the backup's hint, never below what
        // it matched, and strictly lower than the rejected point.
        progress.state = SendState::Probe;
        progress.next = (index + 1).min(prev_index).max(progress.matched + 1);
        self.send_append(from);
    }

    /// A member caught up further with our proposal's log: the proposal is alive.
    fn proposal_progressed(&mut self, now: Instant) {
        if let Some(p) = self.role.as_primary().and_then(|p| p.proposal.as_mut()) {
            p.started = now;
        }
    }

    /// Commits the highest entry of our established view that every member holds durably.
    pub(super) fn advance_commit(&mut self) {
        let RoleState::Primary(primary) = &self.role else {
            return;
        };
        if primary.proposal.is_some() {
            return; // Nothing commits in a view that is not established.
        }
        let mut held: Vec<OpIndex> = primary.peers.values().map(|p| p.matched).collect();
        held.push(self.durable_index);
        if let Some(commit) = quorum::commit_point(
            held,
            &self.log,
            self.state.accepted.ballot,
            self.commit,
            self.opts.mutations.commit_with_majority,
        ) {
            self.commit = commit;
            self.apply_committed();
            // Learners take entries up to the commit point only: more are due now.
            self.replicate_due |= self
                .role
                .primary_ref()
                .is_some_and(|p| !p.learners.is_empty());
        }
    }
}
