//! The loop itself: poll, hand readiness to the connections, fire timers, and act on what
//! the parts hand back. The parts own their state and never reach into the loop:
//! [`Links`] (the connections), [`Peers`] (who is connected where, dialing), [`Clients`]
//! (which connection serves which session), [`Passwords`] (hashing and verifying), and the
//! pure checks of [`handshake`]. The loop is the one place that feeds the replica and
//! carries out its outputs ([`EventLoop::drive`], through `chat_core::route`).

use super::clients::{request_kind, ClientAction, Clients};
use super::error::{resolve, ServerError};
use super::handshake::{self, Greeting, Proof};
use super::io_thread::IoThread;
use super::links::{
    Frame, Kind, Links, Reading, Ready, Side, CLIENT_LISTENER, PEER_LISTENER, WAKER,
};
use super::metrics::{ErrorLabel, Metrics, OpLabel};
use super::narrator::Narrator;
use super::options::ServerOptions;
use super::passwords::{Attempt, Decision, Passwords};
use super::peers::Peers;
use super::removal;
use super::shutdown::Shutdown;
use super::snapshot_thread::SnapshotThread;
use crate::storage::{Storage, StorageError};
use crate::tls::ServerTls;
use chat_core::chat::Reply;
use chat_core::config::Config;
use chat_core::ids::ReplicaId;
use chat_core::peer_auth::{ClusterSecret, Prover};
use chat_core::replica::{Input, Output, PersistId, Replica, Role};
use chat_core::route::Route;
use chat_core::time::{Duration, Instant};
use chat_core::wire::{ClientToServer, Endpoint, Hello, ServerToClient};
use mio::net::TcpListener;
use mio::{Events, Poll, Token, Waker};
use std::io::{self, ErrorKind};
use std::sync::Arc;
use tracing::{error, info, trace};

/// How often the bytes queued on connections are summed for the metrics.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// The core's clock: microseconds since the UNIX epoch as the wall clock said at start, plus
/// the OS monotonic clock since. It never goes back (a wall-clock step changes nothing), and
/// it roughly agrees between replicas, which matters for the times a primary puts in the
/// log (`EntryBody::Time`: which sessions count as active).
#[derive(Clone, Copy, Debug)]
pub(super) struct Clock {
    started: std::time::Instant,
    wall_at_start: u64,
}

impl Clock {
    pub(super) fn start() -> Clock {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Clock {
            started: std::time::Instant::now(),
            wall_at_start: u64::try_from(wall.as_micros()).unwrap_or(u64::MAX),
        }
    }

    pub(super) fn now(&self) -> Instant {
        let elapsed = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        Instant(self.wall_at_start.saturating_add(elapsed))
    }
}

pub(super) struct EventLoop {
    me: ReplicaId,
    poll: Poll,
    clock: Clock,
    /// The time of the current turn of the loop.
    now: Instant,
    replica: Replica,
    /// The replica was handed something since its outputs were last carried out.
    driven: bool,
    /// `None` once stopping.
    io: Option<IoThread>,
    /// Writes our own snapshots; `None` once stopping.
    snapshots: Option<SnapshotThread>,
    links: Links,
    peers: Peers,
    clients: Clients,
    passwords: Passwords,
    shutdown: Shutdown,
    /// Logs role changes with their reasons and catch-ups; keeps the metrics.
    narrator: Narrator,
    next_sample: Instant,
    /// How long after an event the loop polls without sleeping (`net.poll_spin_us`).
    spin: Duration,
    last_event: std::time::Instant,
}

/// What the replica is handed at one turn.
enum Drive {
    /// Its timers are due.
    Tick,
    Input(Input),
}

impl EventLoop {
    pub(super) fn new(
        config: &Config,
        me: ReplicaId,
        secret: Option<ClusterSecret>,
        replica: Replica,
        storage: Storage,
        clock: Clock,
        opts: &ServerOptions,
    ) -> Result<EventLoop, ServerError> {
        let addr = config.replica(me).ok_or(ServerError::UnknownId(me))?;
        let poll = Poll::new().map_err(ServerError::io("creating the poll"))?;
        let waker = Arc::new(
            Waker::new(poll.registry(), WAKER).map_err(ServerError::io("creating the waker"))?,
        );
        let client_listener = listen(&addr.host, addr.client_port, "client")?;
        let peer_listener = listen(&addr.host, addr.peer_port, "peer")?;
        info!(
            "replica {me} serving clients on {} and peers on {}",
            local(&client_listener),
            local(&peer_listener)
        );
        let now = clock.now();
        let peers = Peers::new(config, me, secret, now)?;
        let metrics = Metrics::default();
        if let Some(at) = config.metrics_addr_of(me) {
            let addr = resolve(&at.0, at.1).map_err(ServerError::io(format!(
                "resolving metrics_addr {}:{}",
                at.0, at.1
            )))?;
            metrics
                .serve(addr, me)
                .map_err(ServerError::io(format!("serving metrics on {addr}")))?;
        }
        let registry = poll
            .registry()
            .try_clone()
            .map_err(ServerError::io("cloning the poll's registry"))?;
        let links = Links::new(
            &config.net,
            registry,
            client_listener,
            peer_listener,
            ServerTls::for_replica(config, me)?,
            metrics.connections.clone(),
        )
        .map_err(ServerError::io("registering a listener"))?;
        let snapshots = SnapshotThread::spawn(storage.snapshot_writer(), waker.clone())
            .map_err(ServerError::io("starting the snapshot thread"))?;
        let io = IoThread::spawn(storage, waker.clone(), metrics.fsync_seconds.clone())
            .map_err(ServerError::io("starting the storage thread"))?;
        let passwords = Passwords::start(opts.password_cost, waker.clone())
            .map_err(ServerError::io("starting the password workers"))?;
        let shutdown = opts.shutdown.clone();
        shutdown.set_waker(waker);
        let status = replica.status();
        let election_timeout = Duration::from_millis(config.election_timeout_ms);
        Ok(EventLoop {
            me,
            poll,
            clock,
            now,
            replica,
            driven: true,
            io: Some(io),
            snapshots: Some(snapshots),
            links,
            peers,
            clients: Clients::new(&config.net),
            passwords,
            shutdown,
            narrator: Narrator::new(&status, election_timeout, metrics),
            next_sample: now,
            spin: Duration::from_micros(config.net.poll_spin_us),
            last_event: std::time::Instant::now(),
        })
    }

    pub(super) fn run(mut self) -> Result<(), ServerError> {
        let mut events = Events::with_capacity(1024);
        while !self.shutdown.is_requested() {
            match self.wait(&mut events) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(ServerError::io("polling")(e)),
            }
            self.now = self.clock.now();
            for event in events.iter() {
                match event.token() {
                    CLIENT_LISTENER => self.links.accept(Side::Client, self.now),
                    PEER_LISTENER => self.links.accept(Side::Peer, self.now),
                    WAKER => self.on_wake()?,
                    token => self.on_ready(token),
                }
                self.forget_closed();
            }
            self.turn_timers();
            self.carry_out_all();
            self.links.flush_dirty();
            // After the turn's sends went out: a sync done here does not hold them back.
            self.end_disk_turn()?;
            self.forget_closed();
            self.sample_queues();
        }
        self.stop()
    }

    /// Waits for events, or until the next timer is due. Within `net.poll_spin_us` of the
    /// last event it polls without sleeping, yielding the CPU to any thread that is ready:
    /// on a virtual machine an idle CPU halts, and waking it for the next message costs tens
    /// of microseconds, several times on every request's path (NOTEBOOK, session 9).
    fn wait(&mut self, events: &mut Events) -> std::io::Result<()> {
        let timeout = self.poll_timeout();
        let began = std::time::Instant::now();
        let spin_until = self.last_event + self.spin;
        let deadline = timeout.map_or(spin_until, |t| spin_until.min(began + t));
        loop {
            let spinning = std::time::Instant::now() < deadline;
            let timeout = if spinning {
                Some(Duration::ZERO)
            } else {
                timeout.map(|t| t.saturating_sub(began.elapsed()))
            };
            self.poll.poll(events, timeout)?;
            if !events.is_empty() {
                self.last_event = std::time::Instant::now();
            }
            if !spinning || !events.is_empty() {
                return Ok(());
            }
            std::thread::yield_now();
        }
    }

    /// Writes the turn's persists: here if that is quicker (`io_thread`), carrying out what
    /// their durability releases; else on the storage thread.
    fn end_disk_turn(&mut self) -> Result<(), ServerError> {
        let Some(io) = &mut self.io else {
            return Ok(());
        };
        let backup = self.replica.role() != Role::Primary;
        if let Some(id) = io.end_turn(backup).map_err(storage_failed)? {
            self.durable_up_to(id);
            // What that released may have persisted more: to the thread, rather than left
            // queued while the loop sleeps.
            if let Some(io) = &mut self.io {
                io.hand_on();
            }
        }
        Ok(())
    }

    /// Everything persisted up to `id` is durable: carries out and sends what that releases
    /// at once (outside the loop's turn: after a sync of our own, and when stopping).
    fn durable_up_to(&mut self, id: PersistId) {
        self.now = self.clock.now();
        self.drive(Drive::Input(Input::Persisted(id)));
        self.carry_out_all();
        self.links.flush_dirty();
    }

    /// The one place the replica is driven. What it outputs is carried out once per turn of
    /// the loop ([`EventLoop::carry_out_all`]), so that the requests read in one turn go to
    /// the disk as one write and to each backup as one `Append`.
    fn drive(&mut self, drive: Drive) {
        match drive {
            Drive::Tick => self.replica.tick(self.now),
            Drive::Input(input) => self.replica.handle(self.now, input),
        }
        self.driven = true;
    }

    /// Carries out everything the replica output since it was last driven.
    fn carry_out_all(&mut self) {
        if !std::mem::take(&mut self.driven) {
            return;
        }
        while let Some(output) = self.replica.poll_output() {
            self.carry_out(output);
        }
        self.narrator.after_turn(self.now, &self.replica.status());
    }

    /// Sends, persists or delivers one output of the replica (or of the password decision).
    fn carry_out(&mut self, output: Output) {
        match Route::from(output) {
            Route::Peer { to, message } => {
                self.narrator.on_send(self.now, to, &message);
                // Only on our connection to `to` through its handshake; otherwise dropped
                // (the protocol sends again).
                let Some(token) = self.peers.outbound(to) else {
                    return;
                };
                if self.links.kind(token) == Some(Kind::PeerOut { to }) {
                    self.links.send_frame(token, &message);
                }
            }
            Route::Disk { id, what } => {
                if let Some(io) = &mut self.io {
                    io.submit(id, what);
                }
            }
            Route::Snapshot(job) => {
                if let Some(snapshots) = &self.snapshots {
                    snapshots.submit(job);
                }
            }
            Route::Client { client, message } => {
                if let ServerToClient::Reply {
                    reply: Reply::Error(e),
                    ..
                } = &message
                {
                    count_error(&self.narrator.metrics, e);
                }
                // Dropped if the session has no connection here.
                if let Some(token) = self.clients.connection_of(client) {
                    self.links.send_frame(token, &message);
                }
            }
            Route::AttachedClients(message) => {
                for token in self.clients.attached_connections() {
                    self.links.send_frame(token, &message);
                }
            }
        }
    }

    /// Everything that is due by time rather than by readiness.
    fn turn_timers(&mut self) {
        for token in self.links.take_pending_reads() {
            self.read(token);
        }
        self.links.turn_timers(self.now);
        self.forget_closed();
        for attempt in self.passwords.take_due(self.now) {
            self.advance_password(attempt);
        }
        self.dial_due_peers();
        if self.now >= self.replica.poll_timeout() {
            self.drive(Drive::Tick);
        }
    }

    fn poll_timeout(&self) -> Option<std::time::Duration> {
        if self.links.has_pending_reads() {
            return Some(Duration::ZERO);
        }
        let next = [
            Some(self.replica.poll_timeout()),
            self.links.next_due(),
            self.peers.next_attempt(),
            self.passwords.next_due(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(Instant::NEVER);
        (next != Instant::NEVER).then(|| next.saturating_sub(self.clock.now()))
    }

    /// The I/O thread finished a batch (or stopped), a password job finished, or shutdown
    /// was requested.
    fn on_wake(&mut self) -> Result<(), ServerError> {
        while let Some(attempt) = self.passwords.next_finished() {
            self.advance_password(attempt);
        }
        if let Some(snapshots) = &self.snapshots {
            let ended = snapshots.is_finished();
            match snapshots.completed() {
                Err(e) => {
                    error!("writing a snapshot failed; stopping: {e}");
                    return Err(e.into());
                }
                Ok(written) => {
                    for snapshot in written {
                        self.drive(Drive::Input(Input::SnapshotWritten(snapshot)));
                    }
                }
            }
            if ended {
                error!("the snapshot thread stopped unexpectedly");
                return Err(ServerError::IoThreadGone);
            }
        }
        let Some(io) = &mut self.io else {
            return Ok(());
        };
        // Checked first: once the thread has ended, all it reported is in the channel.
        let ended = io.is_finished();
        if let Some(id) = io.completed().map_err(storage_failed)? {
            self.drive(Drive::Input(Input::Persisted(id)));
        }
        if ended {
            error!("the storage thread stopped unexpectedly");
            return Err(ServerError::IoThreadGone);
        }
        Ok(())
    }

    /// A connection is readable, writable, or in error.
    fn on_ready(&mut self, token: Token) {
        match self.links.on_ready(token) {
            Ready::Readable => self.read(token),
            Ready::Nothing => {}
            Ready::ConnectFailed { to, error } => self.report_refusal(to, &error),
        }
    }

    /// Handles the frames waiting on a connection, within this turn's budget.
    fn read(&mut self, token: Token) {
        let mut reading = Reading::new();
        while let Some(frame) = self.links.next_frame(token, &mut reading, self.now) {
            self.on_frame(token, frame);
        }
    }

    fn on_frame(&mut self, token: Token, frame: Frame) {
        match frame {
            Frame::Hello(hello) => self.on_hello(token, &hello),
            Frame::Auth(frame) => {
                let Some(kind) = self.links.kind(token) else {
                    return;
                };
                match handshake::prove(kind, self.peers.secret(), frame) {
                    Ok(None) => {}
                    Ok(Some(Proof { kind, answer })) => {
                        if let Some(answer) = answer {
                            self.links.send_frame(token, &answer);
                        }
                        self.handshake_step(token, kind);
                    }
                    Err(why) => self.links.reject(token, &why),
                }
            }
            Frame::Client(message) => self.on_client_message(token, message),
            Frame::Peer(message) => {
                let Some(Kind::PeerIn { from }) = self.links.kind(token) else {
                    return;
                };
                let status = self.replica.status();
                self.narrator
                    .on_peer_message(self.now, from, &message, &status);
                self.drive(Drive::Input(Input::Peer { from, message }));
            }
        }
    }

    fn on_hello(&mut self, token: Token, hello: &Hello) {
        let (Some(kind), Some(ip)) = (self.links.kind(token), self.links.ip(token)) else {
            return;
        };
        match handshake::greet(kind, hello, ip, &self.peers) {
            Ok(Greeting {
                kind,
                answer_hello,
                challenge,
            }) => {
                if answer_hello {
                    self.links
                        .send_frame(token, &Hello::new(Endpoint::Replica(self.me)));
                }
                if let Some(challenge) = challenge {
                    self.links.send_frame(token, &challenge);
                }
                self.handshake_step(token, kind);
            }
            Err(why) => self.links.reject(token, &why),
        }
    }

    /// The connection goes on as `kind`; if that ends its handshake, a peer connection takes
    /// its place in the cluster.
    fn handshake_step(&mut self, token: Token, kind: Kind) {
        if !self.links.set_kind(token, kind) {
            return;
        }
        match kind {
            Kind::PeerIn { from } => {
                if let Some(old) = self.peers.inbound_opened(from, token) {
                    self.links
                        .drop_link(old, &format!("replica {from} connected again"));
                }
            }
            Kind::PeerOut { to } => self.peers.greeted(to),
            _ => {}
        }
    }

    fn on_client_message(&mut self, token: Token, message: ClientToServer) {
        let op = request_kind(&message);
        let requests = &self.narrator.metrics.requests;
        requests.get_or_create(&OpLabel { op }).inc();
        let Some(ip) = self.links.ip(token) else {
            return;
        };
        if matches!(message, ClientToServer::Attach { .. }) {
            // Outputs go where the session is attached when they are carried out: what was
            // output before it attached here must not reach it here, ahead of the backlog
            // the attachment replays (pushes out of order).
            self.carry_out_all();
        }
        match self.clients.on_message(token, ip, message, self.now) {
            ClientAction::Replica(input) => self.drive(Drive::Input(input)),
            ClientAction::Password(request) => {
                let decision = self.passwords.on_request(request, &self.replica, self.now);
                self.carry_out_password(decision);
            }
            ClientAction::Status => {
                let status = ServerToClient::Status(self.replica.status());
                self.links.send_frame(token, &status);
            }
            ClientAction::Remove(order) => {
                let me = self.me;
                let secret = self.peers.secret();
                let answer = removal::check(&order, secret, &self.replica, me, self.now);
                if answer.is_ok() {
                    self.narrator.on_removed(order.replica);
                    self.drive(Drive::Input(Input::Removed(order.replica)));
                }
                let (taken, message) = match answer {
                    Ok(()) => (
                        true,
                        format!("replica {me} counts replica {} as crashed", order.replica),
                    ),
                    Err(why) => (false, why),
                };
                let answer = ServerToClient::RemoveAnswer { taken, message };
                self.links.send_frame(token, &answer);
            }
            ClientAction::Reject(why) => self.links.reject(token, &why),
            ClientAction::Ignore => {}
        }
    }

    fn advance_password(&mut self, attempt: Attempt) {
        let decision = self.passwords.advance(attempt, &self.replica, self.now);
        self.carry_out_password(decision);
    }

    fn carry_out_password(&mut self, decision: Option<Decision>) {
        match decision {
            Some(Decision::Redirect(output)) => self.carry_out(output),
            Some(Decision::Order(request)) => self.drive(Drive::Input(Input::Client(request))),
            None => {}
        }
    }

    /// Dials every replica whose retry time has come.
    fn dial_due_peers(&mut self) {
        for (to, dialed) in self.peers.dial_due(self.now) {
            let dialed = match dialed {
                Ok(dialed) => dialed,
                Err(error) => {
                    trace!("cannot connect to replica {to}: {error}");
                    self.peers.outbound_closed(to, self.now);
                    self.report_refusal(to, &error);
                    continue;
                }
            };
            let (auth, challenge) = self.peers.start_auth(Prover::Dialer, to).unzip();
            let token = self.links.add_outgoing(
                dialed.stream,
                &dialed.host,
                to,
                auth,
                dialed.addr,
                self.now,
            );
            let Some(token) = token else {
                self.peers.outbound_closed(to, self.now);
                continue;
            };
            self.peers.dialed(to, token);
            self.links
                .send_frame(token, &Hello::new(Endpoint::Replica(self.me)));
            if let Some(challenge) = challenge {
                self.links.send_frame(token, &challenge);
            }
        }
    }

    /// A refused connect means the peer's host is up and its process is not.
    fn report_refusal(&mut self, to: ReplicaId, error: &io::Error) {
        if error.kind() == ErrorKind::ConnectionRefused {
            self.narrator.on_refused(self.now, to);
            self.drive(Drive::Input(Input::PeerRefused(to)));
        }
    }

    /// Forgets the sessions and peers of the connections that closed.
    fn forget_closed(&mut self) {
        for (token, kind) in self.links.take_closed() {
            match kind {
                Kind::Client => self.clients.closed(token),
                Kind::PeerIn { from } => self.peers.inbound_closed(from, token),
                Kind::PeerOutHello { to, .. }
                | Kind::PeerOutProving { to, .. }
                | Kind::PeerOut { to } => self.peers.outbound_closed(to, self.now),
                Kind::ClientHello | Kind::PeerHello | Kind::PeerInProving { .. } => {}
            }
        }
    }

    /// Every `SAMPLE_EVERY`, the bytes waiting on connections, for the metrics.
    fn sample_queues(&mut self) {
        if self.now < self.next_sample {
            return;
        }
        self.next_sample = self.now + SAMPLE_EVERY;
        let queued = self.links.queued_bytes();
        self.narrator.metrics.queued_bytes.set(queued as i64);
        let chat = self.replica.queued_messages();
        let metrics = &self.narrator.metrics;
        metrics.chat_queued_messages.set(chat.messages as i64);
        metrics.chat_queued_bytes.set(chat.bytes as i64);
    }

    /// Stops accepting, lets the I/O thread write and sync what it has, and sends the replies
    /// that this made possible (best effort).
    fn stop(mut self) -> Result<(), ServerError> {
        info!("stopping: no new connections; finishing the sync in flight");
        self.links.stop_listening();
        if let Some(snapshots) = self.snapshots.take() {
            snapshots.finish(); // What it wrote is safe to leave: recovery reads it.
        }
        if let Some(io) = self.io.take() {
            if let Some(id) = io.finish()? {
                self.durable_up_to(id);
            }
        }
        info!("stopped");
        Ok(())
    }
}

/// Counts an error reply by its kind (the variant's name, never its contents).
fn count_error(metrics: &Metrics, error: &chat_core::chat::ChatError) {
    let name = format!("{error:?}");
    let kind = name
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default();
    metrics
        .errors
        .get_or_create(&ErrorLabel {
            error: kind.to_owned(),
        })
        .inc();
}

fn listen(host: &str, port: u16, what: &str) -> Result<TcpListener, ServerError> {
    let place = format!("the {what} port {host}:{port}");
    let addr = resolve(host, port).map_err(ServerError::io(format!("resolving {place}")))?;
    TcpListener::bind(addr).map_err(ServerError::io(format!("listening on {place}")))
}

fn local(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|e| e.to_string(), |a| a.to_string())
}

/// The log's storage failed: nothing more may be acknowledged, so the replica stops.
fn storage_failed(e: StorageError) -> ServerError {
    error!("storage failed; stopping without acknowledging anything more: {e}");
    e.into()
}
