//! The replication protocol: primary-backup with view changes, as a sans-IO state machine.
//!
//! (API skeleton: being written.)

mod message;

pub use message::PeerMessage;

use crate::chat::{Event, Limits, Reply};
use crate::durable::{Record, Recovered, Snapshot};
use crate::ids::{ClientId, OpIndex, ReplicaId, RequestNo, View};
use crate::service::Request;
use crate::time::{Duration, Instant};
use serde::{Deserialize, Serialize};

/// Fixed settings of one replica.
#[derive(Clone, Debug)]
pub struct Options {
    pub id: ReplicaId,
    pub replica_count: u8,
    /// How often an idle primary sends heartbeats.
    pub heartbeat_interval: Duration,
    /// A backup that hears nothing from a primary for a random time in
    /// `[election_timeout, 2 * election_timeout)` starts a view change.
    pub election_timeout: Duration,
    /// Take a snapshot (and compact the log) after this many entries past the last one.
    pub snapshot_every: u64,
    /// Most entries in one `Append` message.
    pub max_append_entries: usize,
    /// Snapshot bytes per `SnapshotChunk` (keep well under the frame limit).
    pub snapshot_chunk_bytes: usize,
    /// Seed of the replica's own deterministic random numbers (election jitter).
    pub seed: u64,
    pub limits: Limits,
    /// Deliberate protocol bugs, for showing that the simulator's checkers catch them.
    pub faults: Faults,
}

/// Deliberate bugs, each off by default. Only the simulator's checker tests turn them on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// The primary commits an entry once it has appended it, without a majority.
    pub commit_without_majority: bool,
    /// Votes are granted whatever the candidate's log.
    pub vote_for_shorter_log: bool,
    /// Retried requests are applied again instead of answered from the client table.
    pub no_client_table: bool,
}

/// Identifies a [`Output::Persist`]; ids increase by one per output.
pub type PersistId = u64;

/// What to make durable, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Persist {
    /// Append these records to the write-ahead log.
    Records(Vec<Record>),
    /// Write this snapshot; once durable, log entries it covers may be deleted (keep the
    /// latest `Record::Vote`).
    Snapshot(Snapshot),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Peer { from: ReplicaId, message: PeerMessage },
    Client(Request),
    /// A client (re)connected here: if primary, its unacknowledged pushes are pushed again.
    ClientAttached(ClientId),
    /// Every `Persist` output up to and including this id is durable.
    Persisted(PersistId),
    /// A connection to this peer was refused: its process is down (not merely silent).
    PeerRefused(ReplicaId),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Send { to: ReplicaId, message: PeerMessage },
    /// Make this durable, after every earlier `Persist`, then report `Input::Persisted(id)`.
    Persist { id: PersistId, what: Persist },
    Reply { client: ClientId, request: RequestNo, reply: Reply },
    /// Not the primary: the client should try `primary` (if known) or another replica.
    Redirect { client: ClientId, primary: Option<ReplicaId> },
    /// A push or notice for a client session (see [`Event`]).
    Event(Event),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Backup,
    Candidate,
    Primary,
}

/// A replica's view of itself, for `chat-admin status` and the simulator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub id: ReplicaId,
    pub role: Role,
    pub view: View,
    pub primary: Option<ReplicaId>,
    pub commit: OpIndex,
    pub last_index: OpIndex,
    /// First index still in the log (entries before it are in the snapshot).
    pub log_start: OpIndex,
}

#[derive(Debug)]
pub struct Replica {}

#[derive(Debug, thiserror::Error)]
#[error("cannot restore replica state: {0}")]
pub struct RestoreError(pub String);

impl Replica {
    pub fn new(_options: Options, _recovered: Recovered, _now: Instant) -> Result<Replica, RestoreError> {
        todo!()
    }
    pub fn handle(&mut self, _now: Instant, _input: Input) {
        todo!()
    }
    /// Time has passed: fire any timer that is due.
    pub fn tick(&mut self, _now: Instant) {
        todo!()
    }
    pub fn poll_output(&mut self) -> Option<Output> {
        todo!()
    }
    /// When `tick` must be called next at the latest.
    pub fn poll_timeout(&self) -> Instant {
        todo!()
    }
    pub fn status(&self) -> Status {
        todo!()
    }
    pub fn commit_index(&self) -> OpIndex {
        todo!()
    }
    /// A log entry still held in memory (not compacted), committed or not.
    pub fn entry(&self, _index: OpIndex) -> Option<&crate::durable::Entry> {
        todo!()
    }
    /// (last applied index, digest of the service state there).
    pub fn applied_digest(&self) -> (OpIndex, u32) {
        todo!()
    }
}
