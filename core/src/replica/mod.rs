//! The replication protocol: primary-backup with view changes, as a sans-IO state machine.
//!
//! The design is Raft's (Ongaro and Ousterhout, 2014) in Viewstamped Replication's words: a
//! *view* is a term, the *primary* is the leader, *backups* are followers. NOTEBOOK.md gives
//! the safety argument. In short:
//! - A primary orders requests into its log and commits an entry of its own view once a
//!   majority (itself included) holds it durably; committing it commits everything before it.
//! - A replica votes once per view, only for a candidate whose log is at least as up to date
//!   as its own, so every primary holds every committed entry.
//! - View, vote and log are durable before any message that relies on them leaves.
//!
//! # Contract with the driver
//! - `handle(now, input)` for every input; `tick(now)` once `now >= poll_timeout()`.
//! - After either, drain `poll_output()` until it returns `None`, and act on each output:
//!   - `Persist { id, what }`: make it durable after every earlier `Persist`, then call
//!     `handle(now, Input::Persisted(id))` (one call may cover many ids: group commit).
//!   - `Send`: send to the peer at any time; the core itself holds back every message that
//!     relies on state not yet durable, and releases it once `Persisted` covers that state.
//!   - `Reply`, `Redirect`, `Event`: deliver to the client session, if it is connected here.
//! - Time is only what `now` says; randomness comes from `Options::seed`.
//! - Tests and the simulator call [`Replica::check_invariants`] after every step.
//!
//! # Layout
//! - `role`: the role as an enum that owns each role's state (backup, candidate, primary).
//! - `election`: candidates, votes, becoming primary, stepping down.
//! - `primary` / `backup`: ordering and replicating / accepting entries.
//! - `quorum`: who decides, and the commit rule. `snapshot`: taking, sending, installing.
//! - `durability`: persist ids, and messages held until what they rely on is durable.
//! - `timers`: every timer in one table. `invariants`: `check_invariants`.

mod backup;
mod durability;
mod election;
mod invariants;
mod log;
mod message;
mod primary;
mod quorum;
mod role;
mod snapshot;
#[cfg(test)]
mod tests;
mod timers;

pub use message::PeerMessage;

use crate::chat::{AccountLock, Event, Limits, Reply};
use crate::durable::{Entry, EntryBody, Record, Recovered, Snapshot, SnapshotMeta};
use crate::ids::{ClientId, OpIndex, ReplicaId, RequestNo, View};
use crate::service::{Request, Service};
use crate::time::{Duration, Instant};
pub use invariants::InvariantViolation;
use invariants::StepStart;
use log::Log;
use quorum::Quorum;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use role::RoleState;
use serde::{Deserialize, Serialize};
use snapshot::Snapshots;
use std::collections::VecDeque;
use timers::{Timer, Timers};

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
    /// About how many bytes of entries one `Append` carries (keep well under the frame
    /// limit). Requests over half of it are refused before ordering, so that one entry always
    /// fits.
    pub max_append_bytes: usize,
    /// Seed of the replica's own deterministic random numbers (election jitter).
    pub seed: u64,
    pub limits: Limits,
    /// Deliberate protocol bugs, for showing that the simulator's checkers catch them.
    pub faults: Faults,
}

impl Options {
    /// Defaults for everything but identity, for tests and the simulator.
    pub fn new(id: ReplicaId, replica_count: u8) -> Options {
        Options {
            id,
            replica_count,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(1000),
            snapshot_every: 10_000,
            max_append_entries: 64,
            snapshot_chunk_bytes: 256 * 1024,
            max_append_bytes: 256 * 1024,
            seed: u64::from(id),
            limits: Limits::default(),
            faults: Faults::default(),
        }
    }
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
    /// The primary's applied state is read without the read rule (`Replica::account_lock`
    /// answers on any primary), so the password driver may decide from stale state.
    pub stale_reads: bool,
}

/// Identifies a [`Output::Persist`]; ids increase by one per output, from 1.
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
    Peer {
        from: ReplicaId,
        message: PeerMessage,
    },
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
    Send {
        to: ReplicaId,
        message: PeerMessage,
    },
    /// Make this durable, after every earlier `Persist`, then report `Input::Persisted(id)`.
    Persist {
        id: PersistId,
        what: Persist,
    },
    Reply {
        client: ClientId,
        request: RequestNo,
        reply: Reply,
    },
    /// Not the primary: the client should try `primary` (if known) or another replica.
    Redirect {
        client: ClientId,
        primary: Option<ReplicaId>,
    },
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

#[derive(Debug, thiserror::Error)]
#[error("cannot restore replica state: {0}")]
pub struct RestoreError(pub String);

#[derive(Debug)]
pub struct Replica {
    opts: Options,
    rng: SmallRng,
    now: Instant,
    quorum: Quorum,

    // Durable state (as last handed to the driver; `durable_id` says how much is on disk).
    view: View,
    voted_for: Option<ReplicaId>,
    log: Log,

    // Volatile state.
    role: RoleState,
    commit: OpIndex,
    applied: OpIndex,
    service: Service,
    snapshots: Snapshots,
    timers: Timers,

    // Persistence plumbing (see `durability.rs`).
    next_persist: PersistId,
    durable_id: PersistId,
    /// (persist id, last log index it wrote): turns `Persisted` into "log durable up to".
    index_marks: VecDeque<(PersistId, OpIndex)>,
    /// Every log entry up to here is durable on this replica.
    durable_index: OpIndex,
    /// Messages that may leave once the persist id they carry is durable.
    held: VecDeque<(PersistId, Output)>,
    /// The last (view, vote) handed to the driver as a `Record::Vote`.
    persisted_vote: (View, Option<ReplicaId>),
    outputs: VecDeque<Output>,

    /// What `check_invariants` compares against: the state before the last step.
    step_start: StepStart,
}

impl Replica {
    /// Starts a replica from what it recovered from its disk.
    pub fn new(opts: Options, recovered: Recovered, now: Instant) -> Result<Replica, RestoreError> {
        assert!(opts.id < opts.replica_count, "replica id out of range");
        let (service, base, snapshot) = match recovered.snapshot {
            Some(snap) => {
                let service =
                    Service::restore(&snap.data).map_err(|e| RestoreError(e.to_string()))?;
                (service, snap.meta, Some(snap))
            }
            None => (Service::new(), SnapshotMeta::default(), None),
        };
        if let Some(first) = recovered.entries.first() {
            if first.index != base.last_index + 1 {
                return Err(RestoreError(format!(
                    "log starts at {} but the snapshot ends at {}",
                    first.index, base.last_index
                )));
            }
        }
        let log = Log::new(base, recovered.entries);
        let durable_index = log.last_index();
        let snapshots = Snapshots::new(snapshot, base.last_index + opts.snapshot_every);
        let mut replica = Replica {
            rng: SmallRng::seed_from_u64(opts.seed),
            quorum: Quorum::majority(opts.replica_count),
            opts,
            now,
            view: recovered.view,
            voted_for: recovered.voted_for,
            log,
            role: RoleState::Backup { primary: None },
            commit: base.last_index,
            applied: base.last_index,
            service,
            snapshots,
            timers: Timers::new(),
            next_persist: 1,
            durable_id: 0,
            index_marks: VecDeque::new(),
            durable_index,
            held: VecDeque::new(),
            persisted_vote: (recovered.view, recovered.voted_for),
            outputs: VecDeque::new(),
            step_start: StepStart::default(),
        };
        replica.reset_election_timer();
        replica.step_start = StepStart::of(&replica);
        Ok(replica)
    }

    pub fn handle(&mut self, now: Instant, input: Input) {
        self.step_start = StepStart::of(self);
        self.now = self.now.max(now);
        match input {
            Input::Peer { from, message } => self.on_peer(from, message),
            Input::Client(request) => self.on_client_request(request),
            Input::ClientAttached(client) => self.on_client_attached(client),
            Input::Persisted(id) => self.on_persisted(id),
            // Crash evidence is not needed for the majority protocol: silence and refusal
            // are treated alike.
            Input::PeerRefused(_) => {}
        }
    }

    /// Time has passed: fire any timer that is due.
    pub fn tick(&mut self, now: Instant) {
        self.step_start = StepStart::of(self);
        self.now = self.now.max(now);
        for timer in Timer::ALL {
            if self.timers.is_due(timer, self.now) {
                match timer {
                    Timer::Election => self.start_election(),
                    Timer::Heartbeat => self.on_heartbeat_timer(),
                }
            }
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When `tick` must be called next at the latest: the earliest armed timer.
    pub fn poll_timeout(&self) -> Instant {
        self.timers.next()
    }

    pub fn status(&self) -> Status {
        Status {
            id: self.opts.id,
            role: self.role.role(),
            view: self.view,
            primary: self.role.primary(self.opts.id),
            commit: self.commit,
            last_index: self.log.last_index(),
            log_start: self.log.first_index(),
        }
    }

    pub fn commit_index(&self) -> OpIndex {
        self.commit
    }

    /// A log entry still held in memory (not compacted), committed or not.
    pub fn entry(&self, index: OpIndex) -> Option<&Entry> {
        self.log.get(index)
    }

    /// The last applied index (cheap, unlike [`Replica::applied_digest`]).
    pub fn applied_index(&self) -> OpIndex {
        self.applied
    }

    /// Chat messages waiting in queues in the applied state (walks the accounts: sample it).
    pub fn queued_messages(&self) -> crate::chat::QueueTotals {
        self.service.queued()
    }

    /// (last applied index, digest of the service state there).
    pub fn applied_digest(&self) -> (OpIndex, u32) {
        (self.applied, self.service.digest())
    }

    /// Largest request ordered (see [`Options::max_append_bytes`]).
    pub fn max_request_bytes(&self) -> usize {
        self.opts.max_append_bytes / 2
    }

    /// Whether `user` exists in the applied state, and with which password hash, for the
    /// primary's password driver (`crate::password::request`) — or `None` while that state
    /// may be stale for it. The read rule (NOTEBOOK.md, safety argument point 6): only a
    /// primary that has applied an entry of its own view, with no entry that may change the
    /// account ([`crate::chat::Op::may_change_account`]) ordered and not yet applied. The
    /// driver asks again later, and orders its decision in the same turn as its last read.
    pub fn account_lock(&self, user: &str) -> Option<AccountLock> {
        let changes_pending = || {
            self.log.entries_after(self.applied).any(|entry| {
                matches!(&entry.body, EntryBody::Request(r) if r.op.may_change_account(user))
            })
        };
        let current = self.role.is_primary()
            && (self.opts.faults.stale_reads
                || (self.log.view_at(self.applied) == Some(self.view) && !changes_pending()));
        current.then(|| self.service.account_lock(user))
    }

    fn on_peer(&mut self, from: ReplicaId, message: PeerMessage) {
        if from >= self.opts.replica_count || from == self.opts.id {
            return;
        }
        match message {
            PeerMessage::Append {
                view,
                prev_index,
                prev_view,
                entries,
                commit,
            } => self.on_append(from, view, prev_index, prev_view, entries, commit),
            PeerMessage::AppendReply {
                view,
                ok,
                index,
                prev_index,
            } => self.on_append_reply(from, view, ok, index, prev_index),
            PeerMessage::RequestVote {
                view,
                last_index,
                last_view,
            } => self.on_request_vote(from, view, last_index, last_view),
            PeerMessage::VoteReply { view, granted } => self.on_vote_reply(from, view, granted),
            PeerMessage::SnapshotChunk {
                view,
                meta,
                offset,
                total_len,
                data,
            } => self.on_snapshot_chunk(from, view, meta, offset, total_len, data),
            PeerMessage::SnapshotReply {
                view,
                last_index,
                offset,
            } => self.on_snapshot_reply(from, view, last_index, offset),
        }
    }

    fn peers(&self) -> impl Iterator<Item = ReplicaId> {
        let me = self.opts.id;
        (0..self.opts.replica_count).filter(move |&r| r != me)
    }

    /// Applies committed entries in order; the primary answers clients and pushes events.
    fn apply_committed(&mut self) {
        while self.applied < self.commit {
            let index = self.applied + 1;
            let entry = self
                .log
                .get(index)
                .expect("committed entries are in the log")
                .clone();
            self.applied = index;
            let request = match entry.body {
                EntryBody::Request(request) => request,
                EntryBody::Time(now) => {
                    self.service.advance_clock(now);
                    continue;
                }
                EntryBody::Noop => continue,
            };
            let applied = if self.opts.faults.no_client_table {
                self.service
                    .apply_without_client_table(&self.opts.limits, index, &request)
            } else {
                self.service.apply(&self.opts.limits, index, &request)
            };
            if let Some(primary) = self.role.as_primary() {
                primary.pending.remove(&request.client);
                if let Some(reply) = applied.reply {
                    self.outputs.push_back(Output::Reply {
                        client: request.client,
                        request: request.request,
                        reply,
                    });
                }
                self.outputs
                    .extend(applied.events.into_iter().map(Output::Event));
            }
        }
        self.maybe_snapshot();
    }

    fn reset_election_timer(&mut self) {
        let base = self.opts.election_timeout.as_micros() as u64;
        let jitter = self.rng.gen_range(0..base.max(1));
        let at = self.now + Duration::from_micros(base + jitter);
        self.timers.arm(Timer::Election, at);
    }
}
