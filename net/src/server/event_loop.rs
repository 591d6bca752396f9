//! The loop itself: poll, hand readiness to connections, fire timers, drive the replica and
//! route what it outputs.

use super::admission::Admission;
use super::clients::Routes;
use super::io_thread::IoThread;
use super::links::{Link, Side};
use super::metrics::{ErrorLabel, Metrics};
use super::narrator::Narrator;
use super::passwords::Passwords;
use super::peers::Peers;
use super::session_opens::SessionOpens;
use super::{ServerError, ServerOptions, Shutdown};
use crate::storage::Storage;
use chat_core::chat::Reply;
use chat_core::config::{Config, NetLimits};
use chat_core::ids::ReplicaId;
use chat_core::peer_auth::ClusterSecret;
use chat_core::replica::{Input, Output, Replica};
use chat_core::route::Route;
use chat_core::time::{Duration, Instant};
use chat_core::wire::ServerToClient;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::ErrorKind;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use tracing::{error, info};

pub(super) const CLIENT_LISTENER: Token = Token(0);
pub(super) const PEER_LISTENER: Token = Token(1);
const WAKER: Token = Token(2);
const FIRST_CONNECTION: usize = 3;

/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 64 * 1024;
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
    pub(super) me: ReplicaId,
    pub(super) net: NetLimits,
    pub(super) poll: Poll,
    clock: Clock,
    /// The time of the current turn of the loop.
    pub(super) now: Instant,
    pub(super) replica: Replica,
    /// `None` once stopping.
    io: Option<IoThread>,
    pub(super) client_listener: Option<TcpListener>,
    pub(super) peer_listener: Option<TcpListener>,
    pub(super) client_admission: Admission,
    pub(super) peer_admission: Admission,
    /// After an accept failed for want of resources, when to try again.
    pub(super) accept_retry: Option<Instant>,
    pub(super) links: HashMap<Token, Link>,
    next_token: usize,
    /// Connection deadlines (handshake, half frame), checked lazily against the link.
    pub(super) timers: BinaryHeap<Reverse<(Instant, Token)>>,
    pub(super) peers: Peers,
    pub(super) routes: Routes,
    pub(super) passwords: Passwords,
    /// How fast each client connection and address may open sessions.
    pub(super) session_opens: SessionOpens,
    /// Connections whose read budget ran out with bytes still waiting.
    pub(super) pending_reads: Vec<Token>,
    /// Connections with queued bytes to write at the end of the turn.
    pub(super) dirty: Vec<Token>,
    pub(super) scratch: Vec<u8>,
    shutdown: Shutdown,
    /// Logs role changes with their reasons and catch-ups; keeps the metrics.
    pub(super) narrator: Narrator,
    next_sample: Instant,
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
        let mut client_listener = listen(&addr.host, addr.client_port, "client")?;
        let mut peer_listener = listen(&addr.host, addr.peer_port, "peer")?;
        for (listener, token) in [
            (&mut client_listener, CLIENT_LISTENER),
            (&mut peer_listener, PEER_LISTENER),
        ] {
            poll.registry()
                .register(listener, token, Interest::READABLE)
                .map_err(ServerError::io("registering a listener"))?;
        }
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
        let io = IoThread::spawn(storage, waker.clone(), metrics.fsync_seconds.clone())
            .map_err(ServerError::io("starting the storage thread"))?;
        let passwords = Passwords::start(opts.password_cost, waker.clone())
            .map_err(ServerError::io("starting the password workers"))?;
        let shutdown = opts.shutdown.clone();
        shutdown.set_waker(waker);
        info!(
            "replica {me} serving clients on {} and peers on {}",
            local(&client_listener),
            local(&peer_listener)
        );
        let net = config.net.clone();
        let status = replica.status();
        let election_timeout = Duration::from_millis(config.election_timeout_ms);
        Ok(EventLoop {
            me,
            poll,
            clock,
            now,
            replica,
            io: Some(io),
            client_listener: Some(client_listener),
            peer_listener: Some(peer_listener),
            client_admission: Admission::new(net.max_connections, net.max_connections_per_address),
            peer_admission: Admission::new(net.max_connections, net.max_connections_per_address),
            accept_retry: None,
            links: HashMap::new(),
            next_token: FIRST_CONNECTION,
            timers: BinaryHeap::new(),
            peers,
            routes: Routes::default(),
            passwords,
            session_opens: SessionOpens::new(&net),
            pending_reads: Vec::new(),
            dirty: Vec::new(),
            scratch: vec![0; READ_CHUNK],
            shutdown,
            narrator: Narrator::new(&status, config.replicas.len(), election_timeout, metrics),
            next_sample: now,
            net,
        })
    }

    pub(super) fn run(mut self) -> Result<(), ServerError> {
        let mut events = Events::with_capacity(1024);
        while !self.shutdown.is_requested() {
            let timeout = self.poll_timeout();
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(ServerError::io("polling")(e)),
            }
            self.now = self.clock.now();
            for event in events.iter() {
                match event.token() {
                    CLIENT_LISTENER => self.accept(Side::Client),
                    PEER_LISTENER => self.accept(Side::Peer),
                    WAKER => self.on_wake()?,
                    token => self.on_ready(token),
                }
            }
            self.turn_timers();
            self.flush_dirty();
            self.sample_queues();
        }
        self.stop()
    }

    /// Everything that is due by time rather than by readiness.
    fn turn_timers(&mut self) {
        for token in std::mem::take(&mut self.pending_reads) {
            self.read(token);
        }
        while let Some(&Reverse((at, token))) = self.timers.peek() {
            if at > self.now {
                break;
            }
            self.timers.pop();
            self.check_deadlines(token);
        }
        self.turn_password_timers();
        self.connect_due_peers();
        if self.accept_retry.is_some_and(|at| at <= self.now) {
            self.accept_retry = None;
            self.accept(Side::Client);
            self.accept(Side::Peer);
        }
        if self.now >= self.replica.poll_timeout() {
            self.replica.tick(self.now);
            self.drain_outputs();
        }
    }

    fn poll_timeout(&self) -> Option<std::time::Duration> {
        if !self.pending_reads.is_empty() {
            return Some(Duration::ZERO);
        }
        let next = [
            Some(self.replica.poll_timeout()),
            self.timers.peek().map(|Reverse((at, _))| *at),
            self.peers.next_attempt(),
            self.accept_retry,
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
        self.on_password_results();
        let Some(io) = &self.io else {
            return Ok(());
        };
        // Checked first: once the thread has ended, all it reported is in the channel.
        let ended = io.is_finished();
        match io.completed() {
            Err(e) => {
                error!("storage failed; stopping without acknowledging anything more: {e}");
                return Err(e.into());
            }
            Ok(Some(id)) => {
                self.replica.handle(self.now, Input::Persisted(id));
                self.drain_outputs();
            }
            Ok(None) => {}
        }
        if ended {
            error!("the storage thread stopped unexpectedly");
            return Err(ServerError::IoThreadGone);
        }
        Ok(())
    }

    /// Acts on everything the replica has to say.
    pub(super) fn drain_outputs(&mut self) {
        while let Some(output) = self.replica.poll_output() {
            self.carry_out(output);
        }
        self.narrator.after_turn(self.now, &self.replica.status());
    }

    /// Sends, persists or delivers one output of the replica (or of the password decision).
    pub(super) fn carry_out(&mut self, output: Output) {
        match Route::from(output) {
            Route::Peer { to, message } => {
                self.narrator.on_send(self.now, to, &message);
                self.send_to_peer(to, &message)
            }
            Route::Disk { id, what } => {
                if let Some(io) = &self.io {
                    io.submit(id, what);
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
                self.send_to_client(client, &message)
            }
        }
    }

    /// Every `SAMPLE_EVERY`, the bytes waiting on connections, for the metrics.
    fn sample_queues(&mut self) {
        if self.now < self.next_sample {
            return;
        }
        self.next_sample = self.now + SAMPLE_EVERY;
        let queued: usize = self.links.values().map(|l| l.conn.queued()).sum();
        self.narrator.metrics.queued_bytes.set(queued as i64);
    }

    /// A new connection gets the next token (tokens are never reused, so a stale event or
    /// timer cannot reach a newer connection).
    pub(super) fn next_token(&mut self) -> Token {
        let token = Token(self.next_token);
        self.next_token += 1;
        token
    }

    /// Stops accepting, lets the I/O thread write and sync what it has, and sends the replies
    /// that this made possible (best effort).
    fn stop(mut self) -> Result<(), ServerError> {
        info!("stopping: no new connections; finishing the sync in flight");
        self.client_listener = None;
        self.peer_listener = None;
        if let Some(io) = self.io.take() {
            if let Some(id) = io.finish()? {
                self.now = self.clock.now();
                self.replica.handle(self.now, Input::Persisted(id));
                self.drain_outputs();
                self.flush_dirty();
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

/// The first address `host` resolves to.
pub(super) fn resolve(host: &str, port: u16) -> std::io::Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(ErrorKind::NotFound, "no address"))
}

fn local(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|e| e.to_string(), |a| a.to_string())
}
