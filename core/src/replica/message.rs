//! Messages between replicas.

use crate::durable::{Entry, SnapshotMeta};
use crate::ids::{OpIndex, View};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerMessage {
    /// Primary -> backup: entries following `prev_index` (empty: a heartbeat), and the
    /// primary's commit number.
    Append {
        view: View,
        prev_index: OpIndex,
        prev_view: View,
        entries: Vec<Entry>,
        commit: OpIndex,
    },
    /// Backup -> primary, answering the `Append` that followed `prev_index`. `ok`: the
    /// backup's log matches the primary's up to `index`, durably. Not ok: the entries did not
    /// follow; `index` hints where the logs still agree.
    AppendReply {
        view: View,
        ok: bool,
        index: OpIndex,
        prev_index: OpIndex,
    },
    /// Candidate -> all: vote for me in `view`; my log ends at (`last_index`, `last_view`).
    RequestVote {
        view: View,
        last_index: OpIndex,
        last_view: View,
    },
    VoteReply {
        view: View,
        granted: bool,
    },
    /// Primary -> lagging backup: a piece of a snapshot (state transfer when the entries it
    /// needs were compacted away).
    SnapshotChunk {
        view: View,
        meta: SnapshotMeta,
        offset: u64,
        total_len: u64,
        data: Vec<u8>,
    },
    /// Backup -> primary: received the snapshot up to `offset` bytes (when `offset` equals the
    /// total length, the snapshot is durably installed).
    SnapshotReply {
        view: View,
        last_index: OpIndex,
        offset: u64,
    },
}

impl PeerMessage {
    pub fn view(&self) -> View {
        match self {
            PeerMessage::Append { view, .. }
            | PeerMessage::AppendReply { view, .. }
            | PeerMessage::RequestVote { view, .. }
            | PeerMessage::VoteReply { view, .. }
            | PeerMessage::SnapshotChunk { view, .. }
            | PeerMessage::SnapshotReply { view, .. } => *view,
        }
    }
}
