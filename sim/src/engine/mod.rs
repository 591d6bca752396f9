//! The engine: replicas, clients, network and disks on one virtual clock.
//!
//! Events wait in a queue ordered by (time, sequence number), so equal times resolve in the
//! order the events were made; replica timers are not queued but taken from each replica's
//! `poll_timeout()` (set in the replica's own clock, see [`crate::clock`]), and fire before
//! queued events of the same time. Every random choice comes from one generator seeded from
//! the run's seed, and only ordered containers are iterated, so a run is a pure function of
//! its options.
//!
//! After every step the engine reads each live replica's commit index and reports newly
//! committed entries to the agreement checker (see [`crate::checker::agreement`]).

mod faults;
mod liveness;
mod quiet;
mod scenario;

pub use scenario::{Step, Target};

use crate::checker::agreement::CommitLog;
use crate::checker::liveness::{Cluster, EstablishedView};
use crate::checker::{Checker, Failure};
use crate::client::{Client, Ctx};
use crate::clock::Clock;
use crate::disk::{Disk, DiskError};
use crate::history::History;
use crate::network::{ConnId, Direction, Network, Node};
use crate::options::{FaultPlan, SimOptions};
use crate::trace::Trace;
use crate::workload::Workload;
use chat_core::client::{self as session, ConnId as SessionConn};
use chat_core::durable::Snapshot;
use chat_core::ids::{ClientId, OpIndex, ReplicaId, View};
use chat_core::password::request::{Next, PasswordRequest};
use chat_core::password::HashCost;
use chat_core::replica::view::Durable;
use chat_core::replica::{Body, Input, Options, Output, PeerMessage, PersistId, Replica, Role};
use chat_core::route::Route;
use chat_core::time::{Duration, Instant};
use chat_core::wire::{ClientToServer, ServerToClient};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};

/// Replica timing in the simulator: short, so that a run sees many view changes.
const HEARTBEAT: Duration = Duration::from_millis(50);
const ELECTION_TIMEOUT: Duration = Duration::from_millis(300);

/// A password login that waits for the read rule asks again after this long.
const PASSWORD_WAIT: Duration = Duration::from_millis(2);

/// Every step of a replica is followed by its own invariant check.
fn check_invariants(now: Instant, replica: &Replica) -> Result<(), Failure> {
    replica
        .check_invariants()
        .map_err(|e| Failure::new(Checker::Invariants, now, e.to_string()))
}

/// A replica whose `poll_timeout()` stays at or before `now` after this many ticks at one
/// instant would spin forever.
const MAX_TICKS_AT_ONE_INSTANT: u32 = 1_000;

#[derive(Debug)]
enum Event {
    Peer {
        to: ReplicaId,
        from: ReplicaId,
        message: PeerMessage,
    },
    /// `peer` refused a connection from `to` (it is down).
    PeerRefused {
        to: ReplicaId,
        life: u64,
        peer: ReplicaId,
    },
    ToReplica {
        conn: ConnId,
        message: ClientToServer,
    },
    /// A password request at replica `replica` waits for the read rule: ask again.
    PasswordWait {
        replica: ReplicaId,
        life: u64,
        request: PasswordRequest,
    },
    ToClient {
        conn: ConnId,
        session: ClientId,
        message: ServerToClient,
    },
    /// The connection was refused (replica down) or reset (replica crashed).
    ConnRefused {
        slot: usize,
        conn: ConnId,
    },
    DiskSynced {
        replica: ReplicaId,
        life: u64,
    },
    /// The background job writing a snapshot of the replica's own finished.
    SnapshotWritten {
        replica: ReplicaId,
        life: u64,
        snapshot: Snapshot,
    },
    ClientStart {
        slot: usize,
    },
    /// Client `slot`'s timers (its session's and its user's); only the latest token counts.
    ClientWake {
        slot: usize,
        token: u64,
    },
    FaultTick,
    Restart {
        replica: ReplicaId,
    },
    /// The driver's turn ends: carry out what the replica output (`FaultPlan::driver_turn`).
    Drain {
        replica: ReplicaId,
        life: u64,
    },
    /// The paused replica carries on (if it is still in that life).
    Resume {
        replica: ReplicaId,
        life: u64,
    },
    Heal,
    /// Is liveness promised now, and is it kept? (busy phase)
    LivenessCheck,
}

struct Scheduled {
    at: Instant,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest event must come out first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// One replica's host, process and disk.
struct Slot {
    replica: Option<Replica>,
    disk: Disk,
    /// The host's clock: the replica sees only its readings.
    clock: Clock,
    /// Down with its host (silence), not only its process (refusals).
    host_down: bool,
    /// Paused (SIGSTOP): the events that reached it since, in order, to handle on resume.
    paused: Option<Vec<Event>>,
    /// Bumped at every crash: events meant for an earlier life are void.
    life: u64,
    /// When its current life began.
    started_at: Instant,
    /// Never starts again (its disk was found corrupt), and why.
    stopped: Option<String>,
    /// Its disk was deliberately corrupted.
    corrupted: bool,
    /// Its disk was replaced by an empty one: it next starts as `chat-server --rejoin`
    /// does, knowing no view ([`Durable::lost`]).
    disk_lost: bool,
    /// Client sessions attached here, and their connection.
    attached: BTreeMap<ClientId, ConnId>,
    /// Commit index already reported to the checker.
    seen_commit: OpIndex,
    /// The last `Persist` id of this life (ids must go up by one).
    last_persist: PersistId,
    ticks_at_now: (Instant, u32),
    /// An [`Event::Drain`] is scheduled for this life.
    drain_due: bool,
}

struct Conn {
    slot: usize,
    replica: ReplicaId,
}

/// What a crash takes down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Crash {
    /// The process (kill -9) on a host that stays up: its ports refuse connections.
    Process,
    /// The whole host (or it froze): silence.
    Host,
}

/// Where the run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Busy,
    Quiet,
}

/// Counts of what happened in a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub events: u64,
    pub crashes: u32,
    pub torn_crashes: u32,
    /// Restarts that found a torn record at the end of the log and cut it off.
    pub torn_tails_cut: u32,
    pub corruptions: u32,
    /// Starts on an empty disk after a lost or corrupt one (`chat-server --rejoin`).
    pub empty_disk_rejoins: u32,
    /// Inputs a replica handled while earlier outputs still waited for its driver's turn to
    /// end (`FaultPlan::driver_turn`): they joined a batch.
    pub batched_inputs: u64,
    pub partitions: u32,
    pub host_crashes: u32,
    pub pauses: u32,
    /// `Input::PeerRefused` handed to replicas (evidence of a process crash).
    pub peer_refusals: u32,
    pub max_view: View,
    /// The longest a client request was seen pending, in the busy phase, while liveness
    /// was promised (counted from the later of its call and the start of the promise).
    pub longest_promised_wait: Duration,
    /// Snapshot chunks each replica received (state transfers).
    pub snapshot_chunks: Vec<u32>,
    /// The quiet phase stopped waiting because the protocol promised no progress (a
    /// replica stopped for good by a corrupted disk was needed); liveness was not judged.
    pub quiet_unpromised: bool,
}

/// The result of a run that passed every checker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub seed: u64,
    pub sim_time: Instant,
    pub committed: OpIndex,
    pub calls: usize,
    pub returns: usize,
    pub messages: usize,
    /// Returns that said `SessionExpired` (the session left the client table).
    pub expired: usize,
    pub stats: Stats,
    /// Hash of every event, if `trace_digest` was on.
    pub trace_digest: Option<u64>,
}

/// A simulated cluster with its clients. Build one with [`Sim::new`], drive it with the
/// scripting methods (`run_for`, `crash`, `partition`, ...), end it with [`Sim::finish`].
pub struct Sim {
    opts: SimOptions,
    plan: FaultPlan,
    rng: SmallRng,
    now: Instant,
    queue: BinaryHeap<Scheduled>,
    seq: u64,
    net: Network,
    slots: Vec<Slot>,
    clients: Vec<Client>,
    conns: BTreeMap<ConnId, Conn>,
    /// Each client's current connection (it may be one being refused), as its session
    /// numbers it and as the network does.
    client_conn: Vec<Option<(SessionConn, ConnId)>>,
    /// Each client's wake-up event in the queue: (time, token).
    client_wake: Vec<Option<(Instant, u64)>>,
    wake_tokens: u64,
    next_conn: ConnId,
    workload: Workload,
    history: History,
    commits: CommitLog,
    /// The primary of each view seen so far: two in one view is a safety failure.
    primaries: BTreeMap<View, ReplicaId>,
    trace: Trace,
    phase: Phase,
    /// Every fault so far was a process crash (kill -9) or a restart.
    crash_only: bool,
    /// Since when liveness has been promised without a break, on an unchanged picture of
    /// the cluster (busy phase).
    promised_since: Option<Instant>,
    /// The cluster as the liveness rule last saw it.
    last_picture: Option<Cluster>,
    /// The highest view a replica reported established, and when that was first seen.
    latest_established: Option<(View, EstablishedView)>,
    stats: Stats,
    /// Replica settings drawn from the seed.
    snapshot_every: u64,
    max_append_entries: usize,
    snapshot_chunk_bytes: usize,
}

impl Sim {
    pub fn new(opts: SimOptions) -> Sim {
        assert!(
            opts.replicas >= 1 && opts.clients >= 1,
            "a run needs replicas and clients"
        );
        let mut rng = SmallRng::seed_from_u64(opts.seed);
        let plan = if opts.random_faults {
            FaultPlan::draw(&mut rng, opts.inject)
        } else {
            FaultPlan::calm()
        };
        let snapshot_every = rng.gen_range(20..=400);
        let snapshot_every = opts.snapshot_every.unwrap_or(snapshot_every);
        // Small batches in half the runs, the server's bound in the others.
        let max_append_entries = if rng.gen_bool(0.5) {
            rng.gen_range(1..=64)
        } else {
            4096
        };
        let snapshot_chunk_bytes = rng.gen_range(200..=16_384);
        let n = opts.replicas;
        let clocks: Vec<Clock> = (0..n)
            .map(|_| Clock::draw(&mut rng, opts.max_clock_drift))
            .collect();
        let clients = (0..opts.clients)
            .map(|slot| Client::new(slot, n, &mut rng))
            .collect();
        let mut sim = Sim {
            net: Network::new(plan.loss, plan.duplicate, plan.latency_us),
            rng,
            now: Instant::ZERO,
            queue: BinaryHeap::new(),
            seq: 0,
            slots: (0..n)
                .map(|r| Slot {
                    replica: None,
                    disk: Disk::new(),
                    clock: clocks[usize::from(r)],
                    host_down: false,
                    paused: None,
                    life: 0,
                    started_at: Instant::ZERO,
                    stopped: None,
                    corrupted: false,
                    disk_lost: false,
                    attached: BTreeMap::new(),
                    seen_commit: 0,
                    last_persist: 0,
                    ticks_at_now: (Instant::ZERO, 0),
                    drain_due: false,
                })
                .collect(),
            clients,
            conns: BTreeMap::new(),
            client_conn: vec![None; opts.clients],
            client_wake: vec![None; opts.clients],
            wake_tokens: 0,
            next_conn: 1,
            workload: Workload::new(),
            history: History::default(),
            commits: CommitLog::new(),
            primaries: BTreeMap::new(),
            trace: Trace::new(opts.verbose, opts.trace_digest),
            phase: Phase::Busy,
            crash_only: true,
            promised_since: None,
            last_picture: None,
            latest_established: None,
            stats: Stats {
                snapshot_chunks: vec![0; usize::from(n)],
                ..Stats::default()
            },
            snapshot_every,
            max_append_entries,
            snapshot_chunk_bytes,
            plan,
            opts,
        };
        if sim.trace.on() {
            let (plan, every) = (&sim.plan, sim.snapshot_every);
            let drift: Vec<i64> = clocks.iter().map(Clock::drift_ppm).collect();
            sim.trace.record(
                sim.now,
                format_args!("plan {plan:?} snapshot_every {every} clock drift ppm {drift:?}"),
            );
        }
        for r in 0..n {
            sim.start_replica(r)
                .expect("a replica starts from an empty disk");
        }
        for slot in 0..sim.clients.len() {
            // Clients open their sessions at staggered times.
            let at = Instant(sim.rng.gen_range(0..50_000));
            sim.schedule(at, Event::ClientStart { slot });
            if !sim.opts.workload {
                sim.clients[slot].finish();
            }
        }
        if sim.opts.random_faults {
            sim.schedule_fault_tick();
        }
        sim.schedule_liveness_check();
        sim
    }

    fn schedule(&mut self, at: Instant, event: Event) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at: at.max(self.now),
            seq: self.seq,
            event,
        });
    }

    fn replica_options(&self, r: ReplicaId) -> Options {
        let life = self.slots[usize::from(r)].life;
        let mut o = Options::new(r, self.opts.replicas);
        o.heartbeat_interval = HEARTBEAT;
        o.election_timeout = ELECTION_TIMEOUT;
        // The simulator bounds each clock's rate against real time; the protocol needs the
        // bound between two clocks: twice that.
        o.leases.max_clock_drift_ppm = (2.0 * self.opts.max_clock_drift * 1e6).ceil() as u32;
        o.leases.pause_bound = self.opts.pause_bound;
        // Rule 3: the margin covers the pause bound plus the time from a lease check to its
        // action.
        o.leases.margin = o
            .leases
            .margin
            .max(self.opts.pause_bound + Duration::from_millis(50));
        o.snapshot_every = self.snapshot_every;
        o.max_append_entries = self.max_append_entries;
        o.snapshot_chunk_bytes = self.snapshot_chunk_bytes;
        o.seed = self
            .opts
            .seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(u64::from(r) << 32 | life);
        o.limits = self.opts.limits.clone();
        o.mutations = self.opts.mutations;
        o
    }

    // ----- the main loop -----

    /// The earliest replica timer, in real time: (time, replica). A paused replica's timers
    /// wait.
    fn earliest_timer(&self) -> Option<(Instant, ReplicaId)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.paused.is_none())
            .filter_map(|(r, s)| {
                let deadline = s.replica.as_ref()?.poll_timeout();
                Some((s.clock.real_time(deadline), r as ReplicaId))
            })
            .filter(|(t, _)| *t != Instant::NEVER)
            .min()
    }

    fn next_due(&self) -> Option<Instant> {
        let event = self.queue.peek().map(|s| s.at);
        let timer = self.earliest_timer().map(|(t, _)| t);
        match (event, timer) {
            (Some(e), Some(t)) => Some(e.min(t).max(self.now)),
            (e, t) => e.or(t).map(|t| t.max(self.now)),
        }
    }

    /// Processes the next timer or event.
    fn step(&mut self) -> Result<(), Failure> {
        let event_at = self.queue.peek().map(|s| s.at);
        match self.earliest_timer() {
            Some((t, r)) if event_at.is_none_or(|e| t <= e) => {
                self.now = self.now.max(t);
                self.tick(r)?;
            }
            _ => {
                let Some(next) = self.queue.pop() else {
                    return Ok(());
                };
                self.now = self.now.max(next.at);
                self.dispatch(next.event)?;
            }
        }
        self.stats.events += 1;
        self.observe()
    }

    /// Runs every timer and event up to `end`; the clock then reads `end`.
    fn run_until(&mut self, end: Instant) -> Result<(), Failure> {
        while let Some(t) = self.next_due() {
            if t > end {
                break;
            }
            self.step()?;
        }
        self.now = self.now.max(end);
        Ok(())
    }

    fn tick(&mut self, r: ReplicaId) -> Result<(), Failure> {
        let slot = &mut self.slots[usize::from(r)];
        let now = slot.clock.read(self.now);
        let replica = slot
            .replica
            .as_mut()
            .expect("only live replicas have timers");
        replica.tick(now);
        check_invariants(now, replica)?;
        if replica.poll_timeout() <= now {
            slot.ticks_at_now = match slot.ticks_at_now {
                (t, n) if t == now => (t, n + 1),
                _ => (now, 1),
            };
            if slot.ticks_at_now.1 > MAX_TICKS_AT_ONE_INSTANT {
                return Err(Failure::new(
                    Checker::Liveness,
                    self.now,
                    format!("replica {r}: poll_timeout() stays at or before now after tick()"),
                ));
            }
        }
        if self.trace.on() {
            self.trace
                .record(self.now, format_args!("tick r{r} at {}", now.0));
        }
        self.drain(r)
    }

    fn dispatch(&mut self, event: Event) -> Result<(), Failure> {
        if self.trace.on() {
            self.trace.record(self.now, format_args!("{event:?}"));
        }
        let Some(event) = self.hold_if_paused(event) else {
            return Ok(());
        };
        match event {
            Event::Peer { to, from, message } => {
                if self.is_up(to) {
                    if matches!(message.body, Body::SnapshotChunk { .. }) {
                        self.stats.snapshot_chunks[usize::from(to)] += 1;
                    }
                    self.input(to, Input::Peer { from, message })?;
                } else if !self.slots[usize::from(to)].host_down
                    && !self.net.is_cut(Node::Replica(to), Node::Replica(from))
                {
                    let at = self.net.refusal_delivery(&mut self.rng, self.now);
                    let life = self.slots[usize::from(from)].life;
                    self.schedule(
                        at,
                        Event::PeerRefused {
                            to: from,
                            life,
                            peer: to,
                        },
                    );
                }
            }
            Event::PeerRefused { to, life, peer } => {
                if self.is_up(to) && self.slots[usize::from(to)].life == life {
                    self.stats.peer_refusals += 1;
                    self.input(to, Input::PeerRefused(peer))?;
                }
            }
            Event::ToReplica { conn, message } => {
                // Crashes and partitions close connections, so an open one leads to a live
                // replica.
                let Some(r) = self.conns.get(&conn).map(|c| c.replica) else {
                    return Ok(());
                };
                match message {
                    ClientToServer::Attach { client } => {
                        // As `chat-net` does: carry out what was output before the session
                        // attached here, which must not reach it here.
                        self.drain(r)?;
                        self.slots[usize::from(r)].attached.insert(client, conn);
                        self.input(r, Input::ClientAttached(client))?;
                    }
                    ClientToServer::Request(request) => self.input(r, Input::Client(request))?,
                    ClientToServer::WithPassword {
                        client,
                        request,
                        action,
                        user,
                        password,
                    } => {
                        let request = PasswordRequest::new(client, request, action, user, password);
                        self.serve_password(r, request)?;
                    }
                    // The simulated clients ask for neither.
                    ClientToServer::Status | ClientToServer::Remove(_) => {}
                }
            }
            Event::PasswordWait {
                replica,
                life,
                request,
            } => {
                if self.is_up(replica) && self.slots[usize::from(replica)].life == life {
                    self.serve_password(replica, request)?;
                }
            }
            Event::ToClient {
                conn,
                session,
                message,
            } => {
                let Some(slot) = self.conns.get(&conn).map(|c| c.slot) else {
                    return Ok(());
                };
                let Some((own, _)) = self.client_conn[slot].filter(|&(_, c)| c == conn) else {
                    return Ok(());
                };
                if self.clients[slot].session.client() == session {
                    if let ServerToClient::Push(pushed) = &message {
                        self.history.pushed(self.now, slot, session, conn, pushed);
                    }
                    let frame = session::ConnEvent::Frame {
                        conn: own,
                        frame: message,
                    };
                    self.with_client(slot, |client, ctx| client.session.handle(ctx.now, frame));
                }
            }
            Event::ConnRefused { slot, conn } => {
                if let Some((own, _)) = self.client_conn[slot].filter(|&(_, c)| c == conn) {
                    self.close_client_conn(slot);
                    let closed = session::ConnEvent::Closed {
                        conn: own,
                        why: session::Closed::Refused,
                    };
                    self.with_client(slot, |client, ctx| client.session.handle(ctx.now, closed));
                }
            }
            Event::DiskSynced { replica, life } => {
                let slot = &mut self.slots[usize::from(replica)];
                if slot.replica.is_some() && slot.life == life {
                    let id = slot.disk.finish_sync();
                    self.input(replica, Input::Persisted(id))?;
                    self.kick_disk(replica);
                }
            }
            Event::SnapshotWritten {
                replica,
                life,
                snapshot,
            } => {
                let slot = &mut self.slots[usize::from(replica)];
                if slot.replica.is_some() && slot.life == life {
                    slot.disk.put_snapshot(snapshot.clone());
                    self.input(replica, Input::SnapshotWritten(snapshot))?;
                }
            }
            Event::ClientStart { slot } => {
                self.with_client(slot, |client, ctx| client.start(ctx));
            }
            Event::ClientWake { slot, token } => {
                if self.client_wake[slot].is_some_and(|(_, t)| t == token) {
                    self.client_wake[slot] = None;
                    self.with_client(slot, |client, ctx| client.wake(ctx));
                }
            }
            Event::FaultTick => {
                if self.phase == Phase::Busy {
                    self.inject_fault()?;
                    self.schedule_fault_tick();
                }
            }
            Event::Restart { replica } => {
                if self.phase == Phase::Busy && !self.is_up(replica) {
                    self.start_replica(replica)?;
                }
            }
            Event::Drain { replica, life } => {
                let slot = &mut self.slots[usize::from(replica)];
                if slot.life == life && slot.replica.is_some() {
                    slot.drain_due = false;
                    self.drain(replica)?;
                }
            }
            Event::Resume { replica, life } => self.resume(replica, life)?,
            Event::Heal => {
                if self.phase == Phase::Busy {
                    self.net.heal();
                }
            }
            Event::LivenessCheck => self.check_liveness()?,
        }
        Ok(())
    }

    /// Hands `input` to replica `r` and carries out what it asks.
    fn input(&mut self, r: ReplicaId, input: Input) -> Result<(), Failure> {
        let slot = &mut self.slots[usize::from(r)];
        let now = slot.clock.read(self.now);
        let replica = slot.replica.as_mut().expect("inputs go to live replicas");
        replica.handle(now, input);
        check_invariants(now, replica)?;
        let turn = self.plan.driver_turn;
        if turn == Duration::ZERO {
            return self.drain(r);
        }
        if slot.drain_due {
            self.stats.batched_inputs += 1;
        } else {
            slot.drain_due = true;
            let life = slot.life;
            self.schedule(self.now + turn, Event::Drain { replica: r, life });
        }
        Ok(())
    }

    /// Plays the primary's password driver with the core's decision, doing its slow work
    /// inline; a login that must wait for the read rule asks again a little later.
    fn serve_password(
        &mut self,
        r: ReplicaId,
        mut request: PasswordRequest,
    ) -> Result<(), Failure> {
        loop {
            let slot = &self.slots[usize::from(r)];
            let replica = slot.replica.as_ref().expect("requests go to live replicas");
            let rng = &mut self.rng;
            match request.next(replica, || rng.gen(), HashCost::TINY) {
                Next::Redirect(output) => return self.carry_out(r, output),
                Next::Wait => {
                    if self.trace.on() {
                        let what = (request.client, request.request);
                        self.trace.record(
                            self.now,
                            format_args!("r{r} password request {what:x?} waits"),
                        );
                    }
                    let life = slot.life;
                    let at = self.now + PASSWORD_WAIT;
                    let wait = Event::PasswordWait {
                        replica: r,
                        life,
                        request,
                    };
                    self.schedule(at, wait);
                    return Ok(());
                }
                Next::Run(work) => request.found(work.run()),
                Next::Order { request, .. } => return self.input(r, Input::Client(request)),
            }
        }
    }

    /// Carries out every output of replica `r`.
    fn drain(&mut self, r: ReplicaId) -> Result<(), Failure> {
        loop {
            let slot = &mut self.slots[usize::from(r)];
            let Some(output) = slot.replica.as_mut().and_then(Replica::poll_output) else {
                return Ok(());
            };
            if self.trace.on() {
                self.trace
                    .record(self.now, format_args!("r{r} -> {output:?}"));
            }
            self.carry_out(r, output)?;
        }
    }

    /// Sends, persists or delivers one output of replica `r` (or of its password driver).
    fn carry_out(&mut self, r: ReplicaId, output: Output) -> Result<(), Failure> {
        let slot = &mut self.slots[usize::from(r)];
        match Route::from(output) {
            Route::Peer { to, message } => {
                for at in self.net.peer_deliveries(&mut self.rng, self.now, r, to) {
                    let message = message.clone();
                    self.schedule(
                        at,
                        Event::Peer {
                            to,
                            from: r,
                            message,
                        },
                    );
                }
            }
            Route::Disk { id, what } => {
                if id != slot.last_persist + 1 {
                    return Err(Failure::new(
                        Checker::Recovery,
                        self.now,
                        format!(
                            "replica {r} handed out persist id {id} after {}: ids must go up by one",
                            slot.last_persist
                        ),
                    ));
                }
                slot.last_persist = id;
                slot.disk.write(id, what);
                self.kick_disk(r);
            }
            Route::Snapshot(job) => {
                // The driver's job encodes, writes a file and syncs it and its directory:
                // a few disk latencies, during which everything else goes on.
                let snapshot = job.encode();
                let (lo, hi) = self.plan.disk_latency_us;
                let at = self.now + Duration::from_micros(self.rng.gen_range(lo..=5 * hi));
                let life = slot.life;
                let done = Event::SnapshotWritten {
                    replica: r,
                    life,
                    snapshot,
                };
                self.schedule(at, done);
            }
            Route::Client { client, message } => self.send_to_session(r, client, message),
            Route::AttachedClients(message) => {
                let sessions: Vec<ClientId> = self.slots[usize::from(r)]
                    .attached
                    .keys()
                    .copied()
                    .collect();
                for session in sessions {
                    self.send_to_session(r, session, message.clone());
                }
            }
        }
        Ok(())
    }

    /// Starts a disk sync if none is running and something waits for one.
    fn kick_disk(&mut self, r: ReplicaId) {
        let slot = &mut self.slots[usize::from(r)];
        if slot.disk.start_sync().is_some() {
            let (lo, hi) = self.plan.disk_latency_us;
            let at = self.now + Duration::from_micros(self.rng.gen_range(lo..=hi));
            let life = slot.life;
            self.schedule(at, Event::DiskSynced { replica: r, life });
        }
    }

    /// Sends to a client session over its connection to replica `r`, if it has one.
    fn send_to_session(&mut self, r: ReplicaId, session: ClientId, message: ServerToClient) {
        let Some(&conn) = self.slots[usize::from(r)].attached.get(&session) else {
            return;
        };
        let at = self
            .net
            .conn_delivery(&mut self.rng, self.now, conn, Direction::ToClient);
        self.schedule(
            at,
            Event::ToClient {
                conn,
                session,
                message,
            },
        );
    }

    // ----- clients -----

    /// Runs `f` on client `slot`, then carries out what its session asks.
    fn with_client(&mut self, slot: usize, f: impl FnOnce(&mut Client, &mut Ctx)) {
        let mut ctx = Ctx {
            now: self.now,
            rng: &mut self.rng,
            workload: &mut self.workload,
        };
        f(&mut self.clients[slot], &mut ctx);
        while let Some(output) = self.clients[slot].session.poll_output() {
            self.client_output(slot, output);
        }
        self.schedule_client_wake(slot);
    }

    fn client_output(&mut self, slot: usize, output: session::Output) {
        if self.trace.on() {
            self.trace
                .record(self.now, format_args!("c{slot} -> {output:?}"));
        }
        match output {
            session::Output::Connect { conn, replica } => self.client_connect(slot, conn, replica),
            session::Output::Send { conn, message } => self.client_send(slot, conn, message),
            session::Output::Close(conn) => {
                if self.client_conn[slot].is_some_and(|(own, _)| own == conn) {
                    self.close_client_conn(slot);
                }
            }
            session::Output::Issued {
                client,
                request,
                ask,
                ..
            } => self.history.call(self.now, slot, client, request, ask),
            session::Output::Answered { ticket, answer } => {
                let (client, request) = (answer.client, answer.request);
                self.history
                    .ret(self.now, slot, client, request, &answer.reply);
                if let Some(ticket) = ticket {
                    let mut ctx = Ctx {
                        now: self.now,
                        rng: &mut self.rng,
                        workload: &mut self.workload,
                    };
                    self.clients[slot].on_answer(&mut ctx, ticket, &answer.reply);
                }
            }
            // Simulated clients never give up, cancel or exceed a frame; what users are told
            // is derived from the history.
            session::Output::Failed { .. }
            | session::Output::Notice(_)
            | session::Output::Waiting(_) => {}
        }
    }

    /// Queues a wake-up for client `slot` at its next deadline, unless one at or before it is
    /// queued already (that one wakes it, and it asks again).
    fn schedule_client_wake(&mut self, slot: usize) {
        let at = self.clients[slot].wake_at();
        if at == Instant::NEVER || self.client_wake[slot].is_some_and(|(queued, _)| queued <= at) {
            return;
        }
        self.wake_tokens += 1;
        let token = self.wake_tokens;
        self.client_wake[slot] = Some((at, token));
        self.schedule(at, Event::ClientWake { slot, token });
    }

    /// Opens connection `own` (the session's number) from client `slot` to replica `to`:
    /// silence across a cut, a refusal from a replica that is down, else open at once.
    fn client_connect(&mut self, slot: usize, own: SessionConn, to: ReplicaId) {
        self.close_client_conn(slot);
        let conn = self.next_conn;
        self.next_conn += 1;
        self.client_conn[slot] = Some((own, conn));
        if self.net.is_cut(Node::Client(slot), Node::Replica(to)) {
            return; // silence: the session times out
        }
        if self.slots[usize::from(to)].host_down {
            return; // silence, as across a cut
        }
        if !self.is_up(to) {
            let at = self.net.refusal_delivery(&mut self.rng, self.now);
            self.schedule(at, Event::ConnRefused { slot, conn });
            return;
        }
        self.conns.insert(conn, Conn { slot, replica: to });
        self.clients[slot]
            .session
            .handle(self.now, session::ConnEvent::Connected(own));
    }

    /// Sends a frame from client `slot` on its connection `own`, if that is still open.
    fn client_send(&mut self, slot: usize, own: SessionConn, message: ClientToServer) {
        let Some((_, conn)) = self.client_conn[slot].filter(|&(o, _)| o == own) else {
            return;
        };
        if !self.conns.contains_key(&conn) {
            return; // broken by a cut: the session times out
        }
        let at = self
            .net
            .conn_delivery(&mut self.rng, self.now, conn, Direction::ToReplica);
        self.schedule(at, Event::ToReplica { conn, message });
    }

    fn close_client_conn(&mut self, slot: usize) {
        if let Some((_, conn)) = self.client_conn[slot].take() {
            self.close_conn(conn);
        }
    }

    fn close_conn(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn) {
            self.slots[usize::from(c.replica)]
                .attached
                .retain(|_, &mut attached| attached != conn);
            self.net.forget_conn(conn);
        }
    }

    // ----- replica processes -----

    /// Starts replica `r` from its disk. A deliberately corrupted disk stops it for good;
    /// any other failure to start is a failure of the run.
    fn start_replica(&mut self, r: ReplicaId) -> Result<(), Failure> {
        let opts = self.replica_options(r);
        let now = self.now;
        let slot = &mut self.slots[usize::from(r)];
        if slot.replica.is_some() || slot.stopped.is_some() {
            return Ok(());
        }
        // The host is up again (a process that refuses to start leaves refusals behind).
        slot.host_down = false;
        let fail =
            |what: String| Failure::new(Checker::Recovery, now, format!("replica {r} {what}"));
        let recovered = match slot.disk.recover() {
            Ok((recovered, cut)) => {
                if cut.is_some() {
                    self.stats.torn_tails_cut += 1;
                }
                recovered
            }
            Err(e @ DiskError::Corrupt { .. }) if slot.corrupted => {
                slot.stopped = Some(e.to_string());
                if self.trace.on() {
                    self.trace
                        .record(now, format_args!("r{r} refuses to start: {e}"));
                }
                return Ok(());
            }
            Err(e) => return Err(fail(format!("cannot recover from its disk: {e}"))),
        };
        let mut recovered = recovered;
        if std::mem::take(&mut slot.disk_lost) {
            // Above every counter of its earlier lives (a rebuilt one's too), as the wall
            // clock is for the server.
            recovered.protocol = Some(Durable::lost((1 << 40) + now.0));
        }
        let replica = Replica::new(opts, recovered, slot.clock.read(now))
            .map_err(|e| fail(format!("cannot start from what it recovered: {e}")))?;
        check_invariants(now, &replica)?;
        let commit = replica.commit_index();
        slot.replica = Some(replica);
        slot.started_at = now;
        slot.seen_commit = commit;
        slot.last_persist = 0;
        if self.trace.on() {
            self.trace
                .record(now, format_args!("r{r} starts, commit {commit}"));
        }
        self.commits.check_known(now, r, commit)?;
        self.drain(r)
    }

    /// Kills replica `r`: its volatile disk writes are lost (or, with `torn`, a random prefix
    /// of them survives). With its process alone gone, its connections are reset and every
    /// later connection to it is refused; with its host, there is silence.
    fn crash_replica(&mut self, r: ReplicaId, torn: bool, crash: Crash) {
        let slot = &mut self.slots[usize::from(r)];
        if slot.replica.take().is_none() {
            return;
        }
        slot.life += 1;
        slot.drain_due = false;
        slot.attached.clear();
        slot.paused = None;
        slot.host_down = crash == Crash::Host;
        if slot.host_down {
            self.stats.host_crashes += 1;
            self.crash_only = false;
        }
        let kept = slot.disk.crash(&mut self.rng, torn);
        self.stats.crashes += 1;
        if torn {
            self.stats.torn_crashes += 1;
        }
        if self.trace.on() {
            self.trace.record(
                self.now,
                format_args!(
                    "r{r} crashes ({crash:?}, torn {torn}, {kept} unsynced bytes survive)"
                ),
            );
        }
        let reset: Vec<(ConnId, usize)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.replica == r)
            .map(|(&id, c)| (id, c.slot))
            .collect();
        for (conn, slot) in reset {
            self.close_conn(conn);
            if crash == Crash::Process {
                let at = self.net.refusal_delivery(&mut self.rng, self.now);
                self.schedule(at, Event::ConnRefused { slot, conn });
            }
        }
    }

    /// Closes the client connections that a new cut crosses (the client times out).
    fn break_cut_connections(&mut self) {
        let broken: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                let (a, b) = (Node::Client(c.slot), Node::Replica(c.replica));
                self.net.is_cut(a, b) || self.net.is_cut(b, a)
            })
            .map(|(&id, _)| id)
            .collect();
        for conn in broken {
            self.close_conn(conn);
        }
    }

    // ----- observation for the checkers -----

    /// Reports newly committed entries and digests of every live replica.
    fn observe(&mut self) -> Result<(), Failure> {
        for r in 0..self.opts.replicas {
            let slot = &mut self.slots[usize::from(r)];
            let Some(replica) = slot.replica.as_ref() else {
                continue;
            };
            let status = replica.status();
            self.stats.max_view = self.stats.max_view.max(status.view);
            if status.established
                && self
                    .latest_established
                    .as_ref()
                    .is_none_or(|(view, _)| status.view > *view)
            {
                let view = EstablishedView {
                    members: status.members.clone(),
                    since: self.now,
                };
                self.latest_established = Some((status.view, view));
            }
            if status.role == Role::Primary {
                let first = *self.primaries.entry(status.view).or_insert(r);
                if first != r {
                    return Err(Failure::new(
                        Checker::Agreement,
                        self.now,
                        format!(
                            "replicas {first} and {r} were both primary in view {}",
                            status.view
                        ),
                    ));
                }
            }
            let commit = replica.commit_index();
            if commit == slot.seen_commit {
                continue;
            }
            if commit < slot.seen_commit {
                return Err(Failure::new(
                    Checker::Agreement,
                    self.now,
                    format!(
                        "replica {r}'s commit index went back from {} to {commit} without a restart",
                        slot.seen_commit
                    ),
                ));
            }
            for index in slot.seen_commit + 1..=commit {
                match replica.entry(index) {
                    Some(entry) => self.commits.record(self.now, r, entry)?,
                    None => self.commits.check_known(self.now, r, index)?,
                }
            }
            slot.seen_commit = commit;
            let (applied, digest) = replica.applied_digest();
            self.commits.record_digest(self.now, r, applied, digest)?;
        }
        Ok(())
    }
}
