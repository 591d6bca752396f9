//! Messages between replicas. Every message carries the sender's incarnation (rule 5), so
//! that a receiver can tell a new life of a peer from the one it knew (evidence, rule 4a).

use super::view::{Exclusion, Incarnation, Members, ViewDef};
use crate::durable::{Entry, SnapshotMeta};
use crate::ids::{OpIndex, ReplicaId, View};
use crate::time::Instant;
use serde::{Deserialize, Serialize};

/// A message and the incarnation of the process that sent it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerMessage {
    pub life: Incarnation,
    pub body: Body,
}

/// What a replica reports of its protocol state: in phase-1 answers and to rejoining
/// replicas (rules 7 and 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub promised: View,
    pub accepted: ViewDef,
    pub vote: bool,
    pub established: ViewDef,
    /// Restarted or excluded, not yet back in an established view.
    pub rejoining: bool,
    /// Restarted less than one promise ago: it neither votes nor accepts yet (rule 3).
    pub quiet: bool,
    pub log_end: OpIndex,
}

impl Report {
    /// The sender lost its disk and has accepted no view since
    /// ([`super::view::Durable::knows_no_view`]): what it reports is not what its earlier
    /// lives promised or accepted.
    pub fn knows_no_view(&self) -> bool {
        self.accepted.members.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// Lease renewal (rule 3), between members of each other's accepted view. `lagging`:
    /// from the primary of an established view, the members that have not acknowledged
    /// replication within the lag bound (rule 6): nobody renews its promise to them while
    /// they are reported. Empty from everyone else.
    Heartbeat { sent_at: Instant, lagging: Members },
    /// Answers a heartbeat: the sender's lease from us runs from `echo`, its send time.
    HeartbeatOk { echo: Instant },
    /// A rejoining replica (or a replica that is not a member of the sender's view) says
    /// where it stands; `answer`: reply with your own report.
    Hello { report: Report, answer: bool },
    /// Phase 1: promise me never to vote for, accept or acknowledge anything below `ballot`.
    /// `excluding`: whom the proposal means to leave out and why; a replica that would
    /// refuse phase 2 for it (it still promises a silent one) refuses phase 1 too, so a
    /// replica cut off from the others cannot fence a healthy primary.
    Prepare {
        ballot: View,
        excluding: Vec<(ReplicaId, Exclusion)>,
    },
    /// Phase-1 answer; `granted` false: `report.promised` is already as high.
    Promise {
        ballot: View,
        granted: bool,
        report: Report,
    },
    /// Phase 2: accept `view` (members) or vote for it (`voters`, rule 4b). Members accept
    /// once they durably hold the proposer's log up to `log_end` (carried by `Append`s of
    /// this ballot), and nothing after it.
    Propose {
        view: ViewDef,
        base: View,
        voters: Vec<ReplicaId>,
        excluded: Vec<(ReplicaId, Exclusion)>,
        log_end: OpIndex,
        log_end_view: View,
        sent_at: Instant,
    },
    /// Phase-2 answer (an acceptance or a vote); counts as a heartbeat answer (rule 3).
    Accepted { ballot: View, echo: Instant },
    /// Proposer or primary of `view` -> member: entries following `prev_index` (empty: a
    /// heartbeat of replication), the commit number, and whether `view` is established.
    Append {
        view: View,
        established: bool,
        prev_index: OpIndex,
        prev_view: View,
        entries: Vec<Entry>,
        commit: OpIndex,
    },
    /// Member -> proposer or primary, answering the `Append` that followed `prev_index`. `ok`:
    /// the log matches up to `index`, durably. Not ok: `index` hints where logs agree, and
    /// `view` is the member's promised ballot (higher than the sender's: it is fenced).
    AppendReply {
        view: View,
        ok: bool,
        index: OpIndex,
        prev_index: OpIndex,
    },
    /// Proposer or primary -> lagging member: a piece of a snapshot.
    SnapshotChunk {
        view: View,
        meta: SnapshotMeta,
        offset: u64,
        total_len: u64,
        /// In one piece (the same bytes as a sequence of `u8`, without serde's per-byte
        /// calls).
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Member -> proposer or primary: received the snapshot up to `offset` bytes (the whole
    /// length: durably installed).
    SnapshotReply {
        view: View,
        last_index: OpIndex,
        offset: u64,
    },
}

impl PeerMessage {
    /// The ballot the message is about, if any (for logging).
    pub fn view(&self) -> Option<View> {
        match &self.body {
            Body::Prepare { ballot, .. }
            | Body::Promise { ballot, .. }
            | Body::Accepted { ballot, .. } => Some(*ballot),
            Body::Propose { view, .. } => Some(view.ballot),
            Body::Append { view, .. }
            | Body::AppendReply { view, .. }
            | Body::SnapshotChunk { view, .. }
            | Body::SnapshotReply { view, .. } => Some(*view),
            Body::Heartbeat { .. } | Body::HeartbeatOk { .. } | Body::Hello { .. } => None,
        }
    }
}
