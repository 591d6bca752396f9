//! The backup's side: accepting entries and snapshots from the primary of its view.

use super::{PeerMessage, Persist, Role};
use crate::durable::{Entry, Record, Snapshot, SnapshotMeta};
use crate::ids::{OpIndex, ReplicaId, View};
use crate::service::Service;

/// A snapshot arriving in chunks.
#[derive(Debug)]
pub(super) struct IncomingSnapshot {
    meta: SnapshotMeta,
    total_len: u64,
    data: Vec<u8>,
}

impl super::Replica {
    /// Accepts a message from the primary of `view`: returns false if it is from an older view
    /// (the sender is told our view, so it steps down).
    fn follow(&mut self, from: ReplicaId, view: View) -> bool {
        if view < self.view {
            return false;
        }
        if view > self.view {
            self.adopt_view(view);
        }
        assert_ne!(
            self.role,
            Role::Primary,
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
        let reply = |replica: &Self, offset| PeerMessage::SnapshotReply {
            view: replica.view,
            last_index: meta.last_index,
            offset,
        };
        if !self.follow(from, view) {
            let message = reply(self, 0);
            self.send_after_persist(from, message);
            return;
        }
        if meta.last_index <= self.commit {
            // We hold all of it already: tell the primary to go on from there.
            self.incoming = None;
            let message = reply(self, total_len);
            self.send_after_persist(from, message);
            return;
        }
        let same = self
            .incoming
            .as_ref()
            .is_some_and(|s| s.meta == meta && s.total_len == total_len);
        if !same {
            if offset != 0 {
                let message = reply(self, 0);
                self.send_after_persist(from, message);
                return;
            }
            self.incoming = Some(IncomingSnapshot {
                meta,
                total_len,
                data: Vec::new(),
            });
        }
        let incoming = self.incoming.as_mut().expect("set above");
        let have = incoming.data.len() as u64;
        if offset != have || have + data.len() as u64 > total_len {
            let message = reply(self, have);
            self.send_after_persist(from, message);
            return;
        }
        incoming.data.extend_from_slice(&data);
        let mut have = incoming.data.len() as u64;
        if have == total_len {
            let incoming = self.incoming.take().expect("set above");
            let snapshot = Snapshot {
                meta,
                data: incoming.data,
            };
            if !self.install_snapshot(snapshot) {
                have = 0; // Undecodable: ask for it again rather than claim we hold it.
            }
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
        let id = self.persist(Persist::Snapshot(snapshot.clone()));
        self.index_marks.push_back((id, meta.last_index));
        self.service = service;
        self.commit = meta.last_index;
        self.applied = meta.last_index;
        self.snapshot = Some(snapshot);
        self.snapshot_pending = None;
        self.next_snapshot_at = meta.last_index + self.opts.snapshot_every;
        true
    }
}
