//! The replication protocol (issue 8's two-crash rules), as a sans-IO state machine.
//!
//! NOTEBOOK.md ("Two-crash protocol: rules, model, safety argument") gives the rules and their
//! safety argument; `sim/src/model` is their executable model. In short:
//! - A *view* is a ballot `(number, proposer)` and its members; its primary is the proposer.
//!   It is installed in two phases: `Prepare` -> `Promise` (a durable promise to accept,
//!   vote for and acknowledge nothing lower, reporting the highest view accepted and
//!   established), then `Propose` -> `Accepted`: members adopt the proposer's whole log
//!   durably before accepting. A view is *established* once every member accepted it (and,
//!   when it leaves someone out for silence, a majority of the configured replicas voted).
//! - An entry commits once *every* member of the established view holds it durably, so any
//!   member of the latest established view may carry on alone.
//! - Leaving a member out needs evidence that its process crashed (a refused connection, or a
//!   newer incarnation), gathered while holding a lease from it (rule 4a), or silence past its
//!   lease with a majority of the configured replicas (4b). Leases are pairwise, from
//!   heartbeats that echo the sender's `sent_at` (rule 3). A member that acknowledges no
//!   replication for a lease is reported lagging by the primary, and nobody promises it
//!   more, so 4(b) can leave it out (rule 6). The operator's `chat-admin remove` is evidence
//!   without a lease (`removal`).
//! - A restarted or excluded replica proposes nothing: the primary adds it back (rule 7); if
//!   everyone went down, the named proposer re-forms the last view once all its members are
//!   back (rule 8). A replica whose disk was lost (`Durable::lost`) knows no view: it never
//!   votes, counts as missing under rule 8, and a view keeps it only with a majority of the
//!   others' answers.
//! - Durable state and log are durable before any message that relies on them leaves.
//!
//! # Contract with the driver
//! - `handle(now, input)` for every input; `tick(now)` once `now >= poll_timeout()`.
//! - Then drain `poll_output()` until it returns `None` (after each input, or once after a
//!   batch of them: a batch's requests go out as one `Persist` and one `Append` per backup),
//!   and act on each output:
//!   - `Persist { id, what }`: make it durable after every earlier `Persist`, then call
//!     `handle(now, Input::Persisted(id))` (one call may cover many ids: group commit).
//!   - `Snapshot(job)`: run `job.encode()` and write the snapshot durably, off the event
//!     loop, in any order with `Persist`s; then `handle(now, Input::SnapshotWritten(..))`.
//!   - `Send`: send to the peer at any time; the core itself holds back every message that
//!     relies on state not yet durable, and releases it once `Persisted` covers that state.
//!     Nothing is sent before the process's new incarnation is durable (rule 5).
//!   - `Reply`, `Redirect`, `Event`: deliver to the client session, if it is connected here.
//!     Carry out what is pending before a session attaches (`ClientAttached`): an output made
//!     before must not reach it ahead of the backlog the attachment replays.
//! - `Input::PeerRefused(peer)`: a connection to the peer's configured address was refused
//!   (its process is gone: evidence, rule 4a). A connection that opened and then failed its
//!   handshake is not a refusal. `Input::Removed(peer)`: the operator's order, checked first
//!   with [`Replica::may_remove`].
//! - Time is only what `now` says; randomness comes from `Options::seed`, which must differ
//!   between process starts (it draws the incarnation's random id).
//! - [`Replica::status`] says whom a replica waits for (rule 8); the driver logs it.
//! - Tests and the simulator call [`Replica::check_invariants`] after every step.
//!
//! # Layout
//! - `view`: ballots, views, the durable protocol state. `lease`: leases, promises, evidence,
//!   pause detection. `role`: the role as an enum that owns each role's state.
//! - `proposal`: phases 1 and 2 on both sides, establishing, exclusion (rule 4), rejoin (7),
//!   everyone-down (8). `primary` / `backup`: ordering and replicating / adopting entries.
//! - `quorum`: the commit rule. `snapshot`: taking, sending, installing.
//! - `durability`: persist ids, and messages held until what they rely on is durable.
//! - `removal`: `chat-admin remove`, the operator's evidence.
//! - `timers`: every timer in one table. `invariants`: `check_invariants`.

mod backup;
mod durability;
mod invariants;
mod learner;
pub mod lease;
mod log;
mod message;
mod primary;
mod proposal;
mod quorum;
mod removal;
mod role;
mod snapshot;
#[cfg(test)]
mod tests;
mod timers;
pub mod view;

pub use lease::LeaseOptions;
pub use message::{Body, PeerMessage, Report};
pub use removal::RemoveRefused;
pub use snapshot::SnapshotJob;

use crate::chat::{AccountLock, Event, Limits, Reply};
use crate::durable::{Entry, EntryBody, Record, Recovered, Snapshot, SnapshotMeta};
use crate::ids::{ClientId, OpIndex, ReplicaId, RequestNo, View};
use crate::service::{Request, Service};
use crate::time::{Duration, Instant};
pub use invariants::InvariantViolation;
use invariants::StepStart;
use lease::Leases;
use log::Log;
use primary::HeldClient;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use role::RoleState;
use serde::{Deserialize, Serialize};
use snapshot::Snapshots;
use std::collections::{BTreeMap, VecDeque};
use timers::{Timer, Timers};
use view::{Durable, Incarnation, Members};

/// Fixed settings of one replica.
#[derive(Clone, Debug)]
pub struct Options {
    pub id: ReplicaId,
    pub replica_count: u8,
    /// How often heartbeats (leases, replication) go out.
    pub heartbeat_interval: Duration,
    /// A proposal that has not completed in this time is dropped; the next one waits a
    /// random time in `[election_timeout / 2, election_timeout)`.
    pub election_timeout: Duration,
    /// Leases, clock drift, the pause bound (rule 3).
    pub leases: LeaseOptions,
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
    /// Seed of the replica's own deterministic random numbers (jitter, incarnation id).
    pub seed: u64,
    pub limits: Limits,
    /// Deliberate protocol bugs, for showing that the simulator's checkers catch them.
    pub mutations: Mutations,
}

impl Options {
    /// Defaults for everything but identity, for tests and the simulator.
    pub fn new(id: ReplicaId, replica_count: u8) -> Options {
        Options {
            id,
            replica_count,
            heartbeat_interval: Duration::from_millis(50),
            election_timeout: Duration::from_millis(300),
            leases: LeaseOptions::default(),
            snapshot_every: 10_000,
            max_append_entries: 64,
            snapshot_chunk_bytes: 256 * 1024,
            max_append_bytes: 256 * 1024,
            seed: u64::from(id),
            limits: Limits::default(),
            mutations: Mutations::default(),
        }
    }
}

impl Options {
    /// Rule 6's bound: the primary reports a member lagging once it has acknowledged no
    /// replication for a whole lease. Heartbeats carry an `Append` every
    /// `heartbeat_interval`, so a healthy member acknowledges many times per lease; the
    /// report only stops promises to it from being renewed, so a member that catches up
    /// within the promise that is still running is not left out: it takes this bound plus
    /// a promise (about 2.3 s by default) of not acknowledging to be excluded.
    pub fn lag_bound(&self) -> Duration {
        self.leases.lease
    }
}

/// Deliberate bugs (mutations of the protocol), each off by default. Only the simulator's
/// checker tests turn them on. (Injected faults are the simulator's `FaultPlan`.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mutations {
    /// Commit once a majority of the view's members hold an entry, not every member.
    pub commit_with_majority: bool,
    /// Retried requests are applied again instead of answered from the client table.
    pub no_client_table: bool,
    /// The primary's applied state is read without the read rule (`Replica::account_lock`
    /// answers on any primary), so the password driver may decide from stale state.
    pub stale_reads: bool,
    /// A refusal or a newer incarnation counts as evidence without a lease from the peer.
    pub evidence_without_lease: bool,
    /// A restarted replica votes, accepts and uses evidence at once (no quiet interval, no
    /// rejoin through the primary).
    pub restarted_acts_at_once: bool,
    /// Rule 4(b) without letting the promise to the silent member expire.
    pub silent_exclusion_while_promised: bool,
    /// A phase-1 answer promises nothing (it is not recorded).
    pub promise_nothing: bool,
    /// The proposer acts as primary before every member accepted its view.
    pub act_before_established: bool,
    /// A member accepts a view before it holds the proposer's log.
    pub accept_before_log: bool,
    /// Rule 8's view-of-one fast path looks at the established view only, ignoring a higher
    /// accepted ballot: it takes its established view of one back as the accepted one and
    /// resumes in it (as the model's F4 mutation does).
    pub view_of_one_ignores_accepted: bool,
    /// A member still acknowledges entries of its accepted view after promising a higher
    /// ballot.
    pub still_acknowledge: bool,
}

impl Mutations {
    /// The switches by name, as the simulator's `SIM_MUTATION` and `--mutation` spell them.
    pub const NAMES: [&'static str; 11] = [
        "commit_with_majority",
        "no_client_table",
        "stale_reads",
        "evidence_without_lease",
        "restarted_acts_at_once",
        "silent_exclusion_while_promised",
        "promise_nothing",
        "act_before_established",
        "accept_before_log",
        "view_of_one_ignores_accepted",
        "still_acknowledge",
    ];

    /// Every switch, in the order of [`Mutations::NAMES`].
    fn switches(&mut self) -> [&mut bool; 11] {
        [
            &mut self.commit_with_majority,
            &mut self.no_client_table,
            &mut self.stale_reads,
            &mut self.evidence_without_lease,
            &mut self.restarted_acts_at_once,
            &mut self.silent_exclusion_while_promised,
            &mut self.promise_nothing,
            &mut self.act_before_established,
            &mut self.accept_before_log,
            &mut self.view_of_one_ignores_accepted,
            &mut self.still_acknowledge,
        ]
    }

    /// Turns on the switch called `name`; false if there is none.
    pub fn set(&mut self, name: &str) -> bool {
        match Self::NAMES.iter().position(|&n| n == name) {
            Some(i) => {
                *self.switches()[i] = true;
                true
            }
            None => false,
        }
    }

    /// The names of the switches that are on.
    pub fn names(&self) -> Vec<&'static str> {
        let mut copy = *self;
        Self::NAMES
            .into_iter()
            .zip(copy.switches())
            .filter(|(_, on)| **on)
            .map(|(name, _)| name)
            .collect()
    }
}

/// Identifies a [`Output::Persist`]; ids increase by one per output, from 1.
pub type PersistId = u64;

/// What to make durable, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Persist {
    /// Append these records to the write-ahead log.
    Records(Vec<Record>),
    /// Write this snapshot (one installed from the primary); once durable, log entries it
    /// covers may be deleted (keep the latest `Record::Protocol`).
    Snapshot(Snapshot),
    /// Our own snapshot through `meta` is durable ([`Input::SnapshotWritten`]): log entries
    /// it covers, and older snapshots, may be deleted (keep the latest `Record::Protocol`).
    Compact(SnapshotMeta),
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
    /// A connection to this peer's configured address was refused: its process is down
    /// (not merely silent). Evidence under rule 4(a).
    PeerRefused(ReplicaId),
    /// The [`Output::Snapshot`] job is done: this snapshot of ours is durable.
    SnapshotWritten(Snapshot),
    /// The operator declared this peer's host gone for good (`chat-admin remove`; see
    /// [`Replica::may_remove`]): evidence under rule 4(a) without a lease.
    Removed(ReplicaId),
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
    /// This replica went back to following (it was primary, or proposing a view): the same
    /// redirect, to every client session attached here. An idle client waits for pushes on
    /// its connection and asks nothing, so it would never hear a redirect of its own; told,
    /// it moves to the new primary and its pushes flow again.
    RedirectAttached {
        primary: Option<ReplicaId>,
    },
    /// A push or notice for a client session (see [`Event`]).
    Event(Event),
    /// Encode this snapshot of our own and write it durably, off the event loop and outside
    /// the order of `Persist`s (every entry it covers is durable already), then report
    /// `Input::SnapshotWritten`. One at a time: the next comes after that report.
    Snapshot(SnapshotJob),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Backup,
    /// Proposing a view (phase 1 or 2).
    Candidate,
    /// The primary of its established view.
    Primary,
}

/// A replica's view of itself, for `chat-admin status` and the simulator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub id: ReplicaId,
    pub role: Role,
    /// The ballot of the highest view accepted (`number << 8 | proposer`).
    pub view: View,
    pub primary: Option<ReplicaId>,
    pub commit: OpIndex,
    pub last_index: OpIndex,
    /// First index still in the log (entries before it are in the snapshot).
    pub log_start: OpIndex,
    /// Members of the highest view accepted.
    #[serde(default)]
    pub members: Vec<ReplicaId>,
    /// Whether that view is established (every member accepted it).
    #[serde(default)]
    pub established: bool,
    /// Restarted or excluded, and not yet back in an established view (rules 7, 8).
    #[serde(default)]
    pub rejoining: bool,
    /// Peers this replica holds an unexpired lease from.
    #[serde(default)]
    pub leases: Vec<ReplicaId>,
    /// Everyone went down (rule 8): the replicas it waits for before the view is re-formed
    /// (empty when not waiting).
    #[serde(default)]
    pub waiting_for: Vec<ReplicaId>,
}

impl Status {
    /// It lost its disk and has accepted no view since ([`view::Durable::knows_no_view`]).
    pub fn knows_no_view(&self) -> bool {
        self.members.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot restore replica state: {0}")]
pub struct RestoreError(pub String);

/// The latest report heard from a peer, and when.
#[derive(Clone, Copy, Debug)]
struct Heard {
    report: Report,
    at: Instant,
}

#[derive(Debug)]
pub struct Replica {
    opts: Options,
    rng: SmallRng,
    now: Instant,
    /// This process's incarnation (rule 5).
    life: Incarnation,

    // Durable state (as last handed to the driver; `durable_id` says how much is on disk).
    state: Durable,
    log: Log,

    // Volatile state.
    role: RoleState,
    /// Restarted or excluded and not yet back in an established view (rule 7).
    rejoining: bool,
    /// Whether this life accepted (or proposed) the view we hold: a restarted replica ends
    /// its rejoining only in a view accepted by this incarnation (rule 7).
    accepted_in_this_life: bool,
    leases: Leases,
    /// The latest report from each peer (rules 7 and 8).
    reports: BTreeMap<ReplicaId, Heard>,
    /// Acceptor: a proposal that passed its checks, waiting for the proposer's log.
    pending_accept: Option<proposal::PendingAccept>,
    /// When this replica first saw a reason to propose (suspects), for the stagger.
    suspect_since: Option<Instant>,
    /// No new proposal before this (backoff after a failed one).
    next_proposal_at: Instant,
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
    /// The last protocol state handed to the driver as a `Record::Protocol`, and its id.
    persisted_state: (Durable, PersistId),
    outputs: VecDeque<Output>,
    /// Client inputs that reached us as the proposer in phase 2 of our own view (adding or
    /// leaving out a member, or taking over), kept until it is established or we stop
    /// proposing it (`primary::release_held_clients`).
    held_clients: Vec<HeldClient>,
    /// Requests were ordered since the outputs were last taken: replicate them when they are.
    replicate_due: bool,
    /// Whether this replica was primary or proposing a view of its own at the end of the
    /// last step: when it goes back to following, its attached clients are told
    /// (`RedirectAttached`).
    serving_clients: bool,

    /// What `check_invariants` compares against: the state before the last step.
    step_start: StepStart,
}

impl Replica {
    /// Starts a replica from what it recovered from its disk. Its first output persists its
    /// new incarnation; nothing is sent before that is durable (rule 5).
    pub fn new(opts: Options, recovered: Recovered, now: Instant) -> Result<Replica, RestoreError> {
        assert!(opts.id < opts.replica_count, "replica id out of range");
        assert!(opts.replica_count <= 16, "at most 16 replicas");
        let (service, base, snapshot_len) = match recovered.snapshot {
            Some(snap) => {
                let service =
                    Service::restore(&snap.data).map_err(|e| RestoreError(e.to_string()))?;
                (service, snap.meta, snap.data.len())
            }
            None => (Service::new(), SnapshotMeta::default(), 0),
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
        let snapshots = Snapshots::new(snapshot_len, base.last_index, opts.snapshot_every);
        let mut state = recovered
            .protocol
            .unwrap_or_else(|| Durable::initial(opts.replica_count));
        // A replica that lived before lost the promises it made (rule 3) and its place in
        // the view may have been given away (rule 7).
        let restarted = state.incarnation > 0;
        state.incarnation += 1;
        let mut rng = SmallRng::seed_from_u64(opts.seed);
        let life = Incarnation {
            counter: state.incarnation,
            id: rng.gen(),
        };
        let me = opts.id;
        let peers = (0..opts.replica_count).filter(move |&r| r != me);
        let leases = Leases::start(opts.leases, peers, now, restarted, &opts.mutations);
        let mut replica = Replica {
            rng,
            now,
            life,
            state,
            log,
            role: RoleState::Backup { primary: None },
            rejoining: restarted && !opts.mutations.restarted_acts_at_once,
            accepted_in_this_life: false,
            leases,
            reports: BTreeMap::new(),
            pending_accept: None,
            suspect_since: None,
            next_proposal_at: now,
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
            persisted_state: (state, 0),
            outputs: VecDeque::new(),
            held_clients: Vec::new(),
            replicate_due: false,
            serving_clients: false,
            step_start: StepStart::default(),
            opts,
        };
        // What the first invariant check compares with: the state as recovered.
        replica.step_start = StepStart::of(&replica);
        replica.persist_state();
        if replica.rejoining && replica.may_resume_alone() {
            // Rule 8's fast path: the established view of one, itself.
            replica.rejoining = false;
            if replica.opts.mutations.view_of_one_ignores_accepted
                && replica.state.accepted != replica.state.established
            {
                replica.resume_in_established_view();
            }
        }
        if !replica.rejoining && replica.is_view_primary() {
            replica.become_primary_of_established();
        }
        replica.timers.arm(Timer::Heartbeat, now);
        Ok(replica)
    }

    pub fn handle(&mut self, now: Instant, input: Input) {
        self.begin_step(now);
        match input {
            Input::Peer { from, message } => self.on_peer(from, message),
            Input::Client(request) => self.on_client_request(request),
            Input::ClientAttached(client) => self.on_client_attached(client),
            Input::Persisted(id) => self.on_persisted(id),
            Input::SnapshotWritten(snapshot) => self.on_snapshot_written(snapshot),
            Input::Removed(peer) => self.on_removed(peer),
            Input::PeerRefused(peer) => {
                if !self.rejoining {
                    // Only new evidence restarts a proposal at once: a proposal that asks the
                    // refusing peer anyway (phase 1 of a silent exclusion asks everyone) would
                    // otherwise restart on every refusal without time passing.
                    let had_evidence = self.leases.has_evidence(peer);
                    self.leases.refused(peer, self.now);
                    if had_evidence {
                        self.maybe_propose();
                    } else {
                        self.on_evidence(peer);
                    }
                }
            }
        }
        self.end_step();
    }

    /// Time has passed: fire any timer that is due.
    pub fn tick(&mut self, now: Instant) {
        self.begin_step(now);
        for timer in Timer::ALL {
            if self.timers.is_due(timer, self.now) {
                match timer {
                    Timer::Heartbeat => self.on_heartbeat_timer(),
                    Timer::Retry => {
                        self.timers.disarm(Timer::Retry);
                        self.maybe_propose();
                    }
                }
            }
        }
        self.end_step();
    }

    /// After every input and tick: clients held for a proposal that ended are served, and
    /// if this replica went back to following (it was primary, or proposing a view of its
    /// own, and is a backup now), the clients attached here are sent on. A primary that
    /// proposes a view keeps them: it is about to serve again, within milliseconds.
    fn end_step(&mut self) {
        self.release_held_clients();
        let serving = !self.rejoining && !matches!(self.role, RoleState::Backup { .. });
        if self.serving_clients && !serving {
            let primary = self.redirect_hint();
            self.outputs.push_back(Output::RedirectAttached { primary });
        }
        self.serving_clients = serving;
    }

    /// Every step starts here: a clock that jumped past the pause bound since the last step
    /// means this process was stalled, so every lease it holds is dropped before it acts.
    fn begin_step(&mut self, now: Instant) {
        self.step_start = StepStart::of(self);
        self.now = self.now.max(now);
        self.leases.step(self.now);
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        if std::mem::take(&mut self.replicate_due) {
            self.replicate();
        }
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
            view: self.state.accepted.ballot,
            primary: self.known_primary(),
            commit: self.commit,
            last_index: self.log.last_index(),
            log_start: self.log.first_index(),
            members: self.state.accepted.members.iter().collect(),
            established: self.state.established == self.state.accepted,
            rejoining: self.rejoining,
            leases: self.leases.held(self.now),
            waiting_for: self.waiting_for(),
        }
    }

    /// The role alone (cheaper than [`Replica::status`]).
    pub fn role(&self) -> Role {
        self.role.role()
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
        let current = self.is_acting_primary()
            && (self.opts.mutations.stale_reads
                || (self.log.view_at(self.applied) == Some(self.state.accepted.ballot)
                    && !changes_pending()));
        current.then(|| self.service.account_lock(user))
    }

    fn on_peer(&mut self, from: ReplicaId, message: PeerMessage) {
        if from >= self.opts.replica_count || from == self.opts.id {
            return;
        }
        let life = message.life;
        let had_evidence = self.leases.has_evidence(from);
        self.leases.heard(from, life, self.now);
        match message.body {
            Body::Heartbeat { sent_at, lagging } => self.on_heartbeat(from, sent_at, lagging),
            Body::HeartbeatOk { echo } => self.leases.answered(from, life, echo),
            Body::Hello { report, answer } => self.on_hello(from, report, answer),
            Body::Prepare { ballot, excluding } => self.on_prepare(from, ballot, excluding),
            Body::Promise {
                ballot,
                granted,
                report,
            } => self.on_promise(from, ballot, granted, report),
            Body::Propose {
                view,
                base,
                voters,
                excluded,
                log_end,
                log_end_view,
                sent_at,
            } => self.on_propose(
                from,
                proposal::Proposed {
                    view,
                    base,
                    voters: voters.into_iter().collect(),
                    excluded,
                    log_end,
                    log_end_view,
                    sent_at,
                },
            ),
            Body::Accepted { ballot, echo } => self.on_accepted(from, life, ballot, echo),
            Body::Append {
                view,
                established,
                prev_index,
                prev_view,
                entries,
                commit,
            } => self.on_append(
                from,
                view,
                established,
                prev_index,
                prev_view,
                entries,
                commit,
            ),
            Body::AppendReply {
                view,
                ok,
                index,
                prev_index,
            } => self.on_append_reply(from, view, ok, index, prev_index),
            Body::SnapshotChunk {
                view,
                meta,
                offset,
                total_len,
                data,
            } => self.on_snapshot_chunk(from, view, meta, offset, total_len, data),
            Body::SnapshotReply {
                view,
                last_index,
                offset,
            } => self.on_snapshot_reply(from, view, last_index, offset),
        }
        if !had_evidence && self.leases.has_evidence(from) {
            self.on_evidence(from);
        }
    }

    /// Wraps a body with our incarnation.
    fn message(&self, body: Body) -> PeerMessage {
        PeerMessage {
            life: self.life,
            body,
        }
    }

    /// What we report of ourselves (phase-1 answers, `Hello`).
    fn report(&self) -> Report {
        Report {
            promised: self.state.promised,
            accepted: self.state.accepted,
            vote: self.state.vote,
            established: self.state.established,
            rejoining: self.rejoining,
            quiet: !self.leases.may_vote_or_accept(self.now),
            log_end: self.log.last_index(),
        }
    }

    /// The primary this replica would send clients to.
    fn known_primary(&self) -> Option<ReplicaId> {
        match &self.role {
            RoleState::Primary(p) if p.proposal.is_none() => Some(self.opts.id),
            RoleState::Backup { primary } => *primary,
            _ => None,
        }
    }

    /// Whom to send a client to: during a view change, not the primary we followed (it may
    /// be the one that crashed) but the proposer we last promised, who will be primary if
    /// its proposal succeeds (a failover takes milliseconds; a client told "the old primary"
    /// loses a round and a pause).
    fn redirect_hint(&self) -> Option<ReplicaId> {
        match &self.role {
            RoleState::Backup { .. } => {
                let latest = view::proposer(self.state.promised);
                (latest != self.opts.id).then_some(latest)
            }
            _ => self.known_primary(),
        }
    }

    /// Whether this replica is the proposer of its accepted view, promised nothing higher,
    /// and that view is established (the model's `acting_primary`, before the role).
    fn is_view_primary(&self) -> bool {
        let s = &self.state;
        s.accepted.primary() == self.opts.id
            && s.established == s.accepted
            && !s.vote
            && s.promised == s.accepted.ballot
            && s.accepted.members.contains(self.opts.id)
    }

    fn is_acting_primary(&self) -> bool {
        !self.rejoining && matches!(&self.role, RoleState::Primary(p) if p.proposal.is_none())
    }

    /// Whether we are in phase 2 of our own view, about to act as its primary.
    fn is_proposing_primary(&self) -> bool {
        !self.rejoining && matches!(&self.role, RoleState::Primary(p) if p.proposal.is_some())
    }

    /// Whether this replica is a member of its accepted view (not a voter, not excluded).
    fn is_member(&self) -> bool {
        !self.state.vote && self.state.accepted.members.contains(self.opts.id)
    }

    fn members(&self) -> Members {
        self.state.accepted.members
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
            let applied = if self.opts.mutations.no_client_table {
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
}
