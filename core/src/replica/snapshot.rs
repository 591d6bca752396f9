//! Snapshots: taking our own, sending one to a lagging backup in chunks, receiving and
//! installing one from the primary.

use super::primary::SendState;
use super::{Body, Output, Persist};
use crate::durable::{Record, Snapshot, SnapshotMeta};
use crate::ids::{OpIndex, ReplicaId, View};
use crate::service::Service;

/// Bounds the encoding work of snapshots per entry applied (see [`interval`]): with
/// 25 MB of queued messages a snapshot every 10,000 entries took a fifth of the primary's
/// time and most of its 99th-percentile latency (NOTEBOOK, 2026-12-03, session 6). Half of
/// 256 gave 64 clients a tenth more throughput and halved their 99th percentile; the log
/// kept longer is paid for by smaller queued messages (NOTEBOOK, session 9).
const SNAPSHOT_BYTES_PER_ENTRY: u64 = 128;

/// Everything about snapshots a replica keeps.
#[derive(Debug)]
pub(super) struct Snapshots {
    /// The bytes of the snapshot our log starts after (`Log::base`), kept only while a lagging member or learner is being sent them: held for
    /// good, they were a quarter of a replica's memory (76 of 281 bytes per queued message).
    /// Without them, a transfer starts by taking a snapshot of our own.
    transfer: Option<Snapshot>,
    /// A transfer waits for our next snapshot: take it whatever `next_at` says.
    wanted: bool,
    /// A snapshot of our own handed to the driver ([`Output::Snapshot`]) and not yet
    /// reported written.
    pending: Option<SnapshotMeta>,
    /// Applied index at which to snapshot next.
    next_at: OpIndex,
    /// A snapshot arriving from the primary in chunks.
    incoming: Option<IncomingSnapshot>,
}

/// A snapshot arriving in chunks.
#[derive(Debug)]
struct IncomingSnapshot {
    meta: SnapshotMeta,
    total_len: u64,
    data: Vec<u8>,
}

/// Entries until the next snapshot after one of `len` bytes: `every`, or more for a large
/// state, so that taking snapshots (encoding the whole state, off the event loop but on the
/// same CPUs) costs at most [`SNAPSHOT_BYTES_PER_ENTRY`] bytes per entry applied.
fn interval(every: u64, len: usize) -> u64 {
    every.max(len as u64 / SNAPSHOT_BYTES_PER_ENTRY)
}

impl Snapshots {
    /// After the newest durable snapshot (`len` bytes, 0 if none), taken at `applied`.
    pub fn new(len: usize, applied: OpIndex, every: u64) -> Snapshots {
        Snapshots {
            transfer: None,
            wanted: false,
            pending: None,
            next_at: applied + interval(every, len),
            incoming: None,
        }
    }
}

/// Our own snapshot, to encode and write off the event loop (see [`Output::Snapshot`]). The
/// state is a clone that shares its structure with the live one, so taking it is cheap; the
/// encoding, which is not, happens in [`SnapshotJob::encode`], wherever the driver runs it.
#[derive(Clone, PartialEq, Eq)]
pub struct SnapshotJob {
    pub meta: SnapshotMeta,
    state: Service,
}

impl SnapshotJob {
    /// The snapshot's bytes: the slow part, linear in the state's size.
    pub fn encode(&self) -> Snapshot {
        Snapshot {
            meta: self.meta,
            data: self.state.snapshot(),
        }
    }
}

impl std::fmt::Debug for SnapshotJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The state can be large: traces show where the snapshot stands, not what it holds.
        f.debug_struct("SnapshotJob")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl super::Replica {
    /// Hands the driver a snapshot of the applied state to write, once enough entries piled
    /// up since the last one and every entry it covers is durable here (so that it may be
    /// written in any order with the log).
    pub(super) fn maybe_snapshot(&mut self) {
        let due = self.applied >= self.snapshots.next_at || self.snapshots.wanted;
        if self.snapshots.pending.is_some() || !due || self.applied > self.durable_index {
            return;
        }
        self.snapshots.wanted = false;
        let meta = SnapshotMeta {
            last_index: self.applied,
            last_view: self
                .log
                .view_at(self.applied)
                .expect("applied entries are in the log"),
        };
        self.snapshots.pending = Some(meta);
        self.outputs.push_back(Output::Snapshot(SnapshotJob {
            meta,
            state: self.service.clone(),
        }));
    }

    /// The driver wrote our own snapshot durably: space the next one by its size, drop the
    /// entries it covers, and have the driver delete them and older snapshots on disk.
    pub(super) fn on_snapshot_written(&mut self, snapshot: Snapshot) {
        if self.snapshots.pending != Some(snapshot.meta) {
            return; // Not the one we asked for (a driver bug, or from an earlier life).
        }
        self.snapshots.pending = None;
        let next_at =
            snapshot.meta.last_index + interval(self.opts.snapshot_every, snapshot.data.len());
        self.snapshots.next_at = self.snapshots.next_at.max(next_at);
        if snapshot.meta.last_index > self.log.base().last_index {
            let kept = self.log.compact_to(snapshot.meta);
            debug_assert!(kept, "our own snapshot is of our own committed log");
            self.persist(Persist::Compact(snapshot.meta));
        }
        // Otherwise a newer snapshot (installed from the primary) already covers it.
        let receivers = self.snapshot_receivers();
        if snapshot.meta == self.log.base() && !receivers.is_empty() {
            self.snapshots.transfer = Some(snapshot);
            for peer in receivers {
                self.send_append(peer);
            }
        }
    }

    /// Primary: the members and learners we are sending a snapshot.
    fn snapshot_receivers(&self) -> Vec<ReplicaId> {
        let Some(primary) = self.role.primary_ref() else {
            return Vec::new();
        };
        primary
            .recipients()
            .filter(|(_, p)| matches!(p.state, SendState::Snapshot { .. }))
            .map(|(r, _)| r)
            .collect()
    }

    /// Drops the snapshot's bytes once nobody is being sent them (after every heartbeat and
    /// finished transfer).
    pub(super) fn release_snapshot_bytes(&mut self) {
        let stale = self
            .snapshots
            .transfer
            .as_ref()
            .is_some_and(|s| s.meta != self.log.base());
        if stale || self.snapshot_receivers().is_empty() {
            self.snapshots.transfer = None;
        }
    }

    /// Primary: sends `peer` the piece of our snapshot from `offset`.
    pub(super) fn send_snapshot_chunk(&mut self, peer: ReplicaId, offset: u64) {
        let base = self.log.base();
        let Some(snapshot) = self.snapshots.transfer.as_ref().filter(|s| s.meta == base) else {
            // Our snapshot's bytes are not in memory: take a new one, and send it once it
            // is written (`on_snapshot_written`).
            self.snapshots.wanted = true;
            self.maybe_snapshot();
            return;
        };
        let total = snapshot.data.len() as u64;
        let start = offset.min(total) as usize;
        let end = (start + self.opts.snapshot_chunk_bytes.max(1)).min(snapshot.data.len());
        let message = self.message(Body::SnapshotChunk {
            view: self.state.accepted.ballot,
            meta: snapshot.meta,
            offset: start as u64,
            total_len: total,
            data: snapshot.data[start..end].to_vec(),
        });
        self.send_now(peer, message);
    }

    /// Primary: a backup acknowledged part (or all) of a snapshot.
    pub(super) fn on_snapshot_reply(
        &mut self,
        from: ReplicaId,
        view: View,
        last_index: OpIndex,
        offset: u64,
    ) {
        if !self.heard(from, view, true) {
            return;
        }
        let base = self.log.base();
        let total = self
            .snapshots
            .transfer
            .as_ref()
            .map_or(u64::MAX, |s| s.data.len() as u64);
        let Some(progress) = self.progress(from) else {
            return;
        };
        if !matches!(progress.state, SendState::Snapshot { .. }) || last_index != base.last_index {
            return; // Stale: about another snapshot, or a transfer already finished.
        }
        if offset >= total {
            progress.matched = progress.matched.max(last_index);
            progress.next = last_index + 1;
            progress.state = SendState::Probe;
            self.advance_commit();
            self.release_snapshot_bytes();
        } else {
            let before = match progress.state {
                SendState::Snapshot { offset } => offset,
                _ => 0,
            };
            progress.state = SendState::Snapshot { offset };
            if offset <= before {
                // No progress (the member refuses, or a copy): the heartbeat sends again,
                // rather than a chunk per refusal at once.
                return;
            }
            let now = self.now;
            if let Some(p) = self.role.as_primary().and_then(|p| p.proposal.as_mut()) {
                p.started = now; // A long catch-up is not a failure.
            }
        }
        self.send_append(from);
    }

    /// Backup: a piece of the primary's snapshot.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_snapshot_chunk(
        &mut self,
        from: ReplicaId,
        view: View,
        meta: SnapshotMeta,
        offset: u64,
        total_len: u64,
        data: Vec<u8>,
    ) {
        let reply = |replica: &Self, offset| {
            replica.message(Body::SnapshotReply {
                view: replica.state.promised.max(view),
                last_index: meta.last_index,
                offset,
            })
        };
        // A snapshot is committed state: a learner may take it too.
        if !self.follow(from, view, false) && !self.learn_from(from, view) {
            let message = reply(self, 0);
            self.send_after_persist(from, message);
            return;
        }
        if meta.last_index <= self.commit {
            // We hold all of it already: tell the primary to go on from there.
            self.snapshots.incoming = None;
            let message = reply(self, total_len);
            self.send_after_persist(from, message);
            return;
        }
        let same = self
            .snapshots
            .incoming
            .as_ref()
            .is_some_and(|s| s.meta == meta && s.total_len == total_len);
        if !same {
            if offset != 0 {
                let message = reply(self, 0);
                self.send_after_persist(from, message);
                return;
            }
            self.snapshots.incoming = Some(IncomingSnapshot {
                meta,
                total_len,
                data: Vec::new(),
            });
        }
        let incoming = self.snapshots.incoming.as_mut().expect("set above");
        let have = incoming.data.len() as u64;
        if offset != have || have + data.len() as u64 > total_len {
            let message = reply(self, have);
            self.send_after_persist(from, message);
            return;
        }
        incoming.data.extend_from_slice(&data);
        let mut have = incoming.data.len() as u64;
        if have == total_len {
            let incoming = self.snapshots.incoming.take().expect("set above");
            let snapshot = Snapshot {
                meta,
                data: incoming.data,
            };
            if !self.install_snapshot(snapshot) {
                have = 0; // Undecodable: ask for it again rather than claim we hold it.
            }
            let message = reply(self, have);
            self.send_after_persist(from, message);
            self.try_accept_pending();
            return;
        }
        let message = reply(self, have);
        self.send_after_persist(from, message);
    }

    /// Replaces our state by a committed snapshot from the primary; false if its bytes do not
    /// decode (impossible between honest replicas of one version).
    fn install_snapshot(&mut self, snapshot: Snapshot) -> bool {
        let Ok(service) = Service::restore(&snapshot.data) else {
            return false;
        };
        let meta = snapshot.meta;
        let len = snapshot.data.len();
        let old_commit = self.commit;
        if !self.log.compact_to(meta) {
            // Our entries from `meta.last_index` on came from another history. Drop them on
            // disk first: if we crash before the snapshot is durable, we restart with a
            // shorter log rather than with entries that contradict the snapshot.
            self.persist(Persist::Records(vec![Record::TruncateFrom(
                meta.last_index,
            )]));
            self.durable_only_up_to(old_commit);
        }
        let id = self.persist(Persist::Snapshot(snapshot));
        self.index_marks.push_back((id, meta.last_index));
        self.service = service;
        self.commit = meta.last_index;
        self.applied = meta.last_index;
        self.snapshots.transfer = None;
        self.snapshots.next_at = meta.last_index + interval(self.opts.snapshot_every, len);
        true
    }
}
