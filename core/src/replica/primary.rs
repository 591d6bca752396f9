//! The primary's side: ordering client requests, replicating, committing, state transfer.

use super::{Output, PeerMessage, Persist, Role};
use crate::chat::{ChatError, Event, Reply};
use crate::durable::{Entry, EntryBody, Record};
use crate::ids::{ClientId, OpIndex, ReplicaId, RequestNo, View};
use crate::service::{Lookup, Request};
use crate::time::{Duration, Instant};
use std::collections::BTreeMap;

/// What a primary tracks for its view.
#[derive(Debug)]
pub(super) struct Primary {
    peers: BTreeMap<ReplicaId, Progress>,
    /// Requests ordered in the log and not yet applied: client -> request number.
    pub pending: BTreeMap<ClientId, RequestNo>,
    /// The clock last put in the log in this view (`EntryBody::Time`).
    stamped: Option<Instant>,
}

/// Replication progress of one backup (in the manner of raft-rs's progress states).
#[derive(Debug)]
struct Progress {
    /// Next index to send.
    next: OpIndex,
    /// Highest index known to match ours durably on the backup.
    matched: OpIndex,
    /// `matched` at the previous heartbeat: no progress in between means a lost message.
    matched_at_heartbeat: OpIndex,
    state: SendState,
    last_heard: Instant,
}

#[derive(Debug, PartialEq, Eq)]
enum SendState {
    /// Entries stream ahead of acknowledgements (`next` moves on as they are sent).
    Replicate,
    /// Looking for where the logs agree: one `Append` at a time, from `next`.
    Probe,
    /// Sending a snapshot; the backup has acknowledged `offset` bytes.
    Snapshot { offset: u64 },
}

impl Primary {
    pub fn new(peers: &[ReplicaId], next: OpIndex, now: Instant) -> Primary {
        let progress = |_| Progress {
            next,
            matched: 0,
            matched_at_heartbeat: 0,
            state: SendState::Probe,
            last_heard: now,
        };
        Primary {
            peers: peers.iter().map(|&p| (p, progress(p))).collect(),
            pending: BTreeMap::new(),
            stamped: None,
        }
    }
}

/// How far entries may run ahead of a backup's acknowledgements.
const WINDOW_APPENDS: u64 = 4;

/// How often, at most, the primary puts its clock into the log (before a request).
const STAMP_EVERY: Duration = Duration::from_secs(1);

impl super::Replica {
    pub(super) fn on_client_request(&mut self, request: Request) {
        if self.role != Role::Primary {
            self.outputs.push_back(Output::Redirect {
                client: request.client,
                primary: self.primary,
            });
            return;
        }
        let size = postcard::experimental::serialized_size(&request).unwrap_or(usize::MAX);
        let max = self.max_request_bytes();
        if size > max {
            let reply = Reply::Error(ChatError::RequestTooLarge { max: max as u32 });
            self.reply(request.client, request.request, reply);
            return;
        }
        let lookup = if self.opts.faults.no_client_table {
            Lookup::New
        } else {
            self.service.lookup(request.client, request.request)
        };
        match lookup {
            Lookup::Done(reply) => self.reply(request.client, request.request, reply),
            Lookup::Stale => {}
            Lookup::New => {
                let leader = self.leader.as_mut().expect("primary state");
                if leader.pending.get(&request.client) == Some(&request.request) {
                    return; // Already ordered: the reply comes when it commits.
                }
                leader.pending.insert(request.client, request.request);
                self.stamp_time();
                self.append_entry(EntryBody::Request(request));
                self.replicate();
            }
        }
    }

    pub(super) fn on_client_attached(&mut self, client: ClientId) {
        if self.role != Role::Primary {
            let primary = self.primary;
            self.outputs.push_back(Output::Redirect { client, primary });
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
        let leader = self.leader.as_mut().expect("primary state");
        if leader
            .stamped
            .is_some_and(|at| now.saturating_sub(at) < STAMP_EVERY)
        {
            return;
        }
        leader.stamped = Some(now);
        self.append_entry(EntryBody::Time(now));
    }

    /// Appends an entry of the current view to our log and to our disk.
    pub(super) fn append_entry(&mut self, body: EntryBody) {
        let entry = Entry {
            index: self.log.last_index() + 1,
            view: self.view,
            body,
        };
        self.log.append(entry.clone());
        self.persist(Persist::Records(vec![Record::Entry(entry)]));
        if self.opts.faults.commit_without_majority {
            self.commit = self.log.last_index();
            self.apply_committed();
        }
    }

    /// Streams new entries to every backup that keeps up.
    fn replicate(&mut self) {
        for peer in self.peers().collect::<Vec<_>>() {
            let progress = &self.leader.as_ref().expect("primary state").peers[&peer];
            let in_flight = progress.next.saturating_sub(progress.matched + 1);
            let window = WINDOW_APPENDS * self.opts.max_append_entries as u64;
            if progress.state == SendState::Replicate
                && progress.next <= self.log.last_index()
                && in_flight < window
            {
                self.send_append(peer);
            }
        }
    }

    pub(super) fn on_heartbeat_timer(&mut self) {
        self.heartbeat_due = self.now + self.opts.heartbeat_interval;
        if !self.hears_majority() {
            // Check quorum: a primary cut off from a majority stops acting as one, so
            // clients look for the new primary. (It could not commit anyway.)
            self.become_backup(None);
            return;
        }
        for peer in self.peers().collect::<Vec<_>>() {
            let progress = self.progress(peer);
            let stalled = progress.state == SendState::Replicate
                && progress.matched + 1 < progress.next
                && progress.matched == progress.matched_at_heartbeat;
            if stalled {
                // Nothing acknowledged for a whole heartbeat: assume a loss, find out.
                progress.state = SendState::Probe;
                progress.next = progress.matched + 1;
            }
            progress.matched_at_heartbeat = progress.matched;
            self.send_append(peer);
        }
    }

    fn hears_majority(&self) -> bool {
        let leader = self.leader.as_ref().expect("primary state");
        let heard = leader
            .peers
            .values()
            .filter(|p| self.now.saturating_sub(p.last_heard) < self.opts.election_timeout)
            .count();
        heard + 1 >= self.majority()
    }

    fn progress(&mut self, peer: ReplicaId) -> &mut Progress {
        self.leader
            .as_mut()
            .expect("primary state")
            .peers
            .get_mut(&peer)
            .expect("known peer")
    }

    /// Sends `peer` what it needs next: entries from its `next`, a heartbeat, or a snapshot
    /// chunk when those entries were compacted away.
    fn send_append(&mut self, peer: ReplicaId) {
        let base = self.log.base();
        let progress = self.progress(peer);
        if progress.next <= base.last_index && !matches!(progress.state, SendState::Snapshot { .. })
        {
            progress.state = SendState::Snapshot { offset: 0 };
        }
        if let SendState::Snapshot { offset } = progress.state {
            self.send_snapshot_chunk(peer, offset);
            return;
        }
        let next = progress.next;
        let prev_index = next - 1;
        let prev_view = self
            .log
            .view_at(prev_index)
            .expect("prev entry is in the log");
        let entries = self.log.slice(
            next,
            self.opts.max_append_entries,
            self.opts.max_append_bytes,
        );
        let progress = self.progress(peer);
        if progress.state == SendState::Replicate {
            if let Some(last) = entries.last() {
                progress.next = last.index + 1;
            }
        }
        let message = PeerMessage::Append {
            view: self.view,
            prev_index,
            prev_view,
            entries,
            commit: self.commit,
        };
        // The view is durable (we were elected with our own durable vote), and our own
        // entries need not be durable here before a backup stores them.
        self.send_now(peer, message);
    }

    fn send_snapshot_chunk(&mut self, peer: ReplicaId, offset: u64) {
        let snapshot = self
            .snapshot
            .as_ref()
            .expect("a compacted log has its snapshot at hand");
        debug_assert_eq!(snapshot.meta, self.log.base());
        let total = snapshot.data.len() as u64;
        let start = offset.min(total) as usize;
        let end = (start + self.opts.snapshot_chunk_bytes.max(1)).min(snapshot.data.len());
        let message = PeerMessage::SnapshotChunk {
            view: self.view,
            meta: snapshot.meta,
            offset: start as u64,
            total_len: total,
            data: snapshot.data[start..end].to_vec(),
        };
        self.send_now(peer, message);
    }

    /// A message from `from` in our view reached us: it is alive and follows us.
    fn heard(&mut self, from: ReplicaId, view: View) -> bool {
        if view > self.view {
            self.adopt_view(view);
            return false;
        }
        if self.role != Role::Primary || view < self.view {
            return false;
        }
        self.progress(from).last_heard = self.now;
        true
    }

    pub(super) fn on_append_reply(
        &mut self,
        from: ReplicaId,
        view: View,
        ok: bool,
        index: OpIndex,
        prev_index: OpIndex,
    ) {
        if !self.heard(from, view) {
            return;
        }
        let last_index = self.log.last_index();
        let progress = self.progress(from);
        if matches!(progress.state, SendState::Snapshot { .. }) {
            return; // Answers to appends sent before the snapshot: the snapshot decides.
        }
        if ok {
            progress.matched = progress.matched.max(index);
            if progress.state == SendState::Probe {
                progress.state = SendState::Replicate;
            }
            progress.next = progress.next.max(progress.matched + 1);
            self.advance_commit();
            if self.progress(from).next <= last_index {
                self.send_append(from);
            }
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

    pub(super) fn on_snapshot_reply(
        &mut self,
        from: ReplicaId,
        view: View,
        last_index: OpIndex,
        offset: u64,
    ) {
        if !self.heard(from, view) {
            return;
        }
        let base = self.log.base();
        let total = self.snapshot.as_ref().map_or(0, |s| s.data.len() as u64);
        let progress = self.progress(from);
        if !matches!(progress.state, SendState::Snapshot { .. }) || last_index != base.last_index {
            return; // Stale: about another snapshot, or a transfer already finished.
        }
        if offset >= total {
            progress.matched = progress.matched.max(last_index);
            progress.next = last_index + 1;
            progress.state = SendState::Probe;
            self.advance_commit();
        } else {
            progress.state = SendState::Snapshot { offset };
        }
        self.send_append(from);
    }

    /// Commits the highest entry of our view that a majority holds durably.
    pub(super) fn advance_commit(&mut self) {
        let leader = self.leader.as_ref().expect("primary state");
        let mut matched: Vec<OpIndex> = leader.peers.values().map(|p| p.matched).collect();
        matched.push(self.durable_index);
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = matched[self.majority() - 1];
        if candidate > self.commit && self.log.view_at(candidate) == Some(self.view) {
            self.commit = candidate;
            self.apply_committed();
        }
    }
}
