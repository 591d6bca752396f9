//! Connections of every kind, as one table: accepting them within the limits, reading frames
//! by each connection's handshake state, writing, deadlines and closing. What the frames
//! mean is the event loop's business: [`Links::next_frame`] hands them back one at a time,
//! and every connection that closes is handed back by [`Links::take_closed`], so that the
//! sessions and peers attached to it can be forgotten.

use super::admission::{Admission, Refusal};
use super::conn::{Conn, ReadOutcome, MAX_OUTGOING};
use super::metrics::KindLabel;
use crate::tls::{self, ServerTls};
use chat_core::codec::frame;
use chat_core::config::NetLimits;
use chat_core::ids::ReplicaId;
use chat_core::peer_auth::{AuthFrame, Handshake};
use chat_core::replica::PeerMessage;
use chat_core::time::{Duration, Instant};
use chat_core::wire::{ClientToServer, Hello};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::io::{self, ErrorKind};
use std::net::{IpAddr, SocketAddr};
use tracing::{error, info, trace, warn};

/// The poll's tokens: the two listeners, the waker, then one per connection.
pub(super) const CLIENT_LISTENER: Token = Token(0);
pub(super) const PEER_LISTENER: Token = Token(1);
pub(super) const WAKER: Token = Token(2);
const FIRST_CONNECTION: usize = 3;

/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Chunks read from one connection per turn, so that one busy sender cannot starve the rest.
const READ_BUDGET: usize = 16;
/// Connections accepted from one listener per turn, so that a flood cannot stall the rest.
const ACCEPT_BUDGET: usize = 256;
/// After an accept failed for want of file descriptors or memory, try again this much later.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Which listener admitted a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    Client,
    Peer,
}

/// What a connection is, as far as its handshake got.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Accepted on the client port, waiting for `Hello`.
    ClientHello,
    /// A client; which session it serves is [`super::clients::Clients`]' business.
    Client,
    /// Accepted on the peer port, waiting for `Hello`.
    PeerHello,
    /// Claims to be replica `from` (and comes from its address); proving it holds the secret.
    PeerInProving { from: ReplicaId, auth: Handshake },
    /// Replica `from` sends us its messages here (it only ever receives our handshake).
    PeerIn { from: ReplicaId },
    /// Our connection to replica `to`, waiting for its `Hello`; then `auth` runs, if any.
    PeerOutHello {
        to: ReplicaId,
        auth: Option<Handshake>,
    },
    /// Our connection to replica `to`, waiting for it to prove it holds the secret.
    PeerOutProving { to: ReplicaId, auth: Handshake },
    /// Our connection to replica `to`, ready for our messages.
    PeerOut { to: ReplicaId },
}

impl Kind {
    /// Whether the connection is through its handshake.
    pub(super) fn is_ready(self) -> bool {
        matches!(
            self,
            Kind::Client | Kind::PeerIn { .. } | Kind::PeerOut { .. }
        )
    }
}

/// For log lines: never shows a client id, which is the session's bearer secret.
impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::ClientHello => f.write_str("client connection before its handshake"),
            Kind::Client => f.write_str("client connection"),
            Kind::PeerHello => f.write_str("peer connection before its handshake"),
            Kind::PeerInProving { from, .. } => {
                write!(
                    f,
                    "connection claiming to be replica {from}, before its proof"
                )
            }
            Kind::PeerIn { from } => write!(f, "connection from replica {from}"),
            Kind::PeerOutHello { to, .. } => {
                write!(f, "connection to replica {to} before its handshake")
            }
            Kind::PeerOutProving { to, .. } => {
                write!(f, "connection to replica {to}, before its proof")
            }
            Kind::PeerOut { to } => write!(f, "connection to replica {to}"),
        }
    }
}

/// A decoded frame, of the sort the connection's state allows.
pub(super) enum Frame {
    Hello(Hello),
    Auth(AuthFrame),
    Client(ClientToServer),
    Peer(PeerMessage),
}

/// What became of a connection that reported readiness.
pub(super) enum Ready {
    /// Its frames can be read ([`Links::next_frame`]).
    Readable,
    /// Still connecting, or gone.
    Nothing,
    /// Our connect to replica `to` failed (the connection is closed).
    ConnectFailed { to: ReplicaId, error: io::Error },
}

/// How much one turn may still read from one connection, and whether the bytes read since
/// the last check completed a frame.
pub(super) struct Reading {
    budget: usize,
    completed: bool,
    read_any: bool,
}

impl Reading {
    pub(super) fn new() -> Reading {
        Reading {
            budget: READ_BUDGET,
            completed: false,
            read_any: false,
        }
    }
}

struct Link {
    conn: Conn,
    kind: Kind,
    addr: SocketAddr,
    /// The listener that admitted it; `None` for our outgoing connections.
    side: Option<Side>,
    /// The handshake (for outgoing connections, the connect too) must be done by then.
    handshake_deadline: Option<Instant>,
    /// When the other side last sent a whole frame (or connected). A client connection
    /// silent for `net.client_idle_timeout_ms` is closed, and when every client slot is
    /// taken the idlest goes to admit a new one.
    last_heard: Instant,
    /// When the pending idle check of a client connection is due.
    idle_check: Instant,
}

impl Link {
    fn ip(&self) -> IpAddr {
        self.addr.ip().to_canonical()
    }

    /// The next frame, decoded as what this connection may send in its current state.
    fn next_frame(&mut self) -> Result<Option<Frame>, String> {
        let frame = match self.kind {
            Kind::ClientHello | Kind::PeerHello | Kind::PeerOutHello { .. } => {
                self.conn.next().map(|f| f.map(Frame::Hello))
            }
            Kind::PeerInProving { .. } | Kind::PeerOutProving { .. } => {
                self.conn.next().map(|f| f.map(Frame::Auth))
            }
            Kind::Client => self.conn.next().map(|f| f.map(Frame::Client)),
            Kind::PeerIn { .. } => self.conn.next().map(|f| f.map(Frame::Peer)),
            Kind::PeerOut { .. } if self.conn.buffered() > 0 => {
                return Err("sent data on a connection that only carries our messages".into())
            }
            Kind::PeerOut { .. } => Ok(None),
        };
        frame.map_err(|e| e.to_string())
    }
}

pub(super) struct Links {
    net: NetLimits,
    registry: Registry,
    /// `None` once stopping.
    client_listener: Option<TcpListener>,
    peer_listener: Option<TcpListener>,
    client_admission: Admission,
    peer_admission: Admission,
    /// After an accept failed for want of resources, when to try again.
    accept_retry: Option<Instant>,
    links: HashMap<Token, Link>,
    next_token: usize,
    /// Connection deadlines (handshake, idleness, half frame), checked lazily against the
    /// link.
    timers: BinaryHeap<Reverse<(Instant, Token)>>,
    /// Connections whose read budget ran out with bytes still waiting.
    pending_reads: Vec<Token>,
    /// Connections with queued bytes to write at the end of the turn.
    dirty: Vec<Token>,
    /// Closed since the event loop last asked, with what each was.
    closed: Vec<(Token, Kind)>,
    scratch: Vec<u8>,
    /// The open-connections gauges (shared with the metrics).
    gauges: Family<KindLabel, Gauge>,
    /// TLS on both ports and on our peer connections, if configured.
    tls: Option<ServerTls>,
}

impl Links {
    /// Polls both listeners (through `registry`, a clone of the poll's).
    pub(super) fn new(
        net: &NetLimits,
        registry: Registry,
        mut client_listener: TcpListener,
        mut peer_listener: TcpListener,
        tls: Option<ServerTls>,
        gauges: Family<KindLabel, Gauge>,
    ) -> io::Result<Links> {
        registry.register(&mut client_listener, CLIENT_LISTENER, Interest::READABLE)?;
        registry.register(&mut peer_listener, PEER_LISTENER, Interest::READABLE)?;
        Ok(Links {
            net: net.clone(),
            registry,
            client_listener: Some(client_listener),
            peer_listener: Some(peer_listener),
            client_admission: Admission::new(net.max_connections, net.max_connections_per_address),
            peer_admission: Admission::new(net.max_connections, net.max_connections_per_address),
            accept_retry: None,
            links: HashMap::new(),
            next_token: FIRST_CONNECTION,
            timers: BinaryHeap::new(),
            pending_reads: Vec::new(),
            dirty: Vec::new(),
            closed: Vec::new(),
            scratch: vec![0; READ_CHUNK],
            gauges,
            tls,
        })
    }

    /// No new connections from now on.
    pub(super) fn stop_listening(&mut self) {
        self.client_listener = None;
        self.peer_listener = None;
    }

    /// When a deadline or an accept retry is due.
    pub(super) fn next_due(&self) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse((at, _))| *at);
        [timer, self.accept_retry].into_iter().flatten().min()
    }

    /// Whether a connection was left with bytes to read (the loop must not sleep).
    pub(super) fn has_pending_reads(&self) -> bool {
        !self.pending_reads.is_empty()
    }

    /// The connections to read again this turn.
    pub(super) fn take_pending_reads(&mut self) -> Vec<Token> {
        std::mem::take(&mut self.pending_reads)
    }

    /// The connections closed since the last call, with what each was.
    pub(super) fn take_closed(&mut self) -> Vec<(Token, Kind)> {
        std::mem::take(&mut self.closed)
    }

    pub(super) fn kind(&self, token: Token) -> Option<Kind> {
        self.links.get(&token).map(|link| link.kind)
    }

    pub(super) fn ip(&self, token: Token) -> Option<IpAddr> {
        self.links.get(&token).map(Link::ip)
    }

    /// Bytes waiting to be written, over every connection.
    pub(super) fn queued_bytes(&self) -> usize {
        self.links.values().map(|l| l.conn.queued()).sum()
    }

    /// Closes the connections whose deadlines passed, and accepts again if that was due.
    pub(super) fn turn_timers(&mut self, now: Instant) {
        while let Some(&Reverse((at, token))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.check_deadlines(token, now);
        }
        if self.accept_retry.is_some_and(|at| at <= now) {
            self.accept_retry = None;
            self.accept(Side::Client, now);
            self.accept(Side::Peer, now);
        }
    }

    fn admission(&mut self, side: Side) -> &mut Admission {
        match side {
            Side::Client => &mut self.client_admission,
            Side::Peer => &mut self.peer_admission,
        }
    }

    /// The open-connections gauge for connections admitted by `side` (`None`: ours).
    fn gauge(&self, side: Option<Side>) -> Gauge {
        let kind = match side {
            Some(Side::Client) => "client",
            Some(Side::Peer) => "peer_in",
            None => "peer_out",
        };
        self.gauges.get_or_create_owned(&KindLabel { kind })
    }

    /// Accepts the connections waiting on one listener, up to the budget (then the rest
    /// later in this turn or the next).
    pub(super) fn accept(&mut self, side: Side, now: Instant) {
        for _ in 0..ACCEPT_BUDGET {
            let listener = match side {
                Side::Client => self.client_listener.as_ref(),
                Side::Peer => self.peer_listener.as_ref(),
            };
            let Some(listener) = listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, addr)) => self.admit(side, stream, addr, now),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    // Out of descriptors or memory: the waiting connection stays queued, and
                    // an edge-triggered listener would not report it again by itself.
                    warn!("cannot accept on the {side:?} port: {e}; retrying shortly");
                    return self.retry_accept_at(now + ACCEPT_RETRY);
                }
            }
        }
        // An edge-triggered listener does not report the connections still waiting.
        self.retry_accept_at(now);
    }

    fn retry_accept_at(&mut self, at: Instant) {
        self.accept_retry = Some(self.accept_retry.map_or(at, |retry| retry.min(at)));
    }

    fn admit(&mut self, side: Side, stream: TcpStream, addr: SocketAddr, now: Instant) {
        let ip = addr.ip().to_canonical();
        let mut admitted = self.admission(side).admit(ip);
        if matches!(admitted, Err(Refusal::Full(_))) && side == Side::Client {
            // Slots are not free: the idlest client connection makes room.
            if self.close_idlest_client(now) {
                admitted = self.admission(side).admit(ip);
            }
        }
        if let Err(why) = admitted {
            warn!(%addr, "refusing a connection on the {side:?} port: {why}");
            return;
        }
        let _ = stream.set_nodelay(true);
        let stream = match tls::accepted(self.tls.as_ref(), stream, side == Side::Peer) {
            Ok(stream) => stream,
            Err(e) => {
                error!(%addr, "cannot start TLS on a connection: {e}");
                return self.admission(side).release(ip);
            }
        };
        let idle_check = match side {
            Side::Client => now + self.client_idle_timeout(),
            Side::Peer => Instant::NEVER,
        };
        let link = Link {
            conn: Conn::new(stream, self.net.max_frame_bytes, true),
            kind: match side {
                Side::Client => Kind::ClientHello,
                Side::Peer => Kind::PeerHello,
            },
            addr,
            side: Some(side),
            handshake_deadline: Some(now + self.handshake_timeout()),
            last_heard: now,
            idle_check,
        };
        if let Some(token) = self.add(link) {
            if idle_check != Instant::NEVER {
                self.timers.push(Reverse((idle_check, token)));
            }
        }
    }

    /// Our connection to replica `to`, connecting to `addr`; its token, or `None` if it
    /// could not be polled.
    pub(super) fn add_outgoing(
        &mut self,
        stream: TcpStream,
        host: &str,
        to: ReplicaId,
        auth: Option<Handshake>,
        addr: SocketAddr,
        now: Instant,
    ) -> Option<Token> {
        let stream = match tls::dialed(self.tls.as_ref(), stream, host) {
            Ok(stream) => stream,
            Err(e) => {
                error!(%addr, "cannot start TLS to replica {to}: {e}");
                return None;
            }
        };
        self.add(Link {
            conn: Conn::new(stream, self.net.max_frame_bytes, false),
            kind: Kind::PeerOutHello { to, auth },
            addr,
            side: None,
            handshake_deadline: Some(now + self.handshake_timeout()),
            last_heard: Instant::ZERO,
            idle_check: Instant::NEVER,
        })
    }

    fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.net.handshake_timeout_ms)
    }

    fn client_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.net.client_idle_timeout_ms)
    }

    /// Closes the client connection that has been silent longest; false if there is none.
    fn close_idlest_client(&mut self, now: Instant) -> bool {
        let idlest = self
            .links
            .iter()
            .filter(|(_, link)| link.side == Some(Side::Client))
            .min_by_key(|(token, link)| (link.last_heard, token.0))
            .map(|(token, _)| *token);
        let Some(token) = idlest else {
            return false;
        };
        if let Some(link) = self.remove(token) {
            let idle = now.saturating_sub(link.last_heard);
            info!(
                addr = %link.addr,
                "every client slot is taken: closing the idlest connection (silent for {} ms)",
                idle.as_millis()
            );
        }
        true
    }

    /// Registers a new connection under the next token (tokens are never reused, so a stale
    /// event or timer cannot reach a newer connection); `None` if it could not be polled.
    fn add(&mut self, mut link: Link) -> Option<Token> {
        let token = Token(self.next_token);
        self.next_token += 1;
        if let Err(e) = link.conn.register(&self.registry, token) {
            error!(addr = %link.addr, "cannot poll a connection: {e}");
            if let Some(side) = link.side {
                self.admission(side).release(link.ip());
            }
            return None;
        }
        if let Some(deadline) = link.handshake_deadline {
            self.timers.push(Reverse((deadline, token)));
        }
        self.gauge(link.side).inc();
        self.links.insert(token, link);
        Some(token)
    }

    /// A connection is readable, writable, or in error: finish a connect, write; then say
    /// whether to read.
    pub(super) fn on_ready(&mut self, token: Token) -> Ready {
        let Some(link) = self.links.get_mut(&token) else {
            return Ready::Nothing;
        };
        if !link.conn.is_connected() {
            match link.conn.poll_connect() {
                Ok(false) => return Ready::Nothing,
                Ok(true) => trace!(addr = %link.addr, "connected"),
                Err(error) => {
                    let kind = link.kind;
                    self.drop_link(token, &format!("connect failed: {error}"));
                    return match kind {
                        Kind::PeerOutHello { to, .. } => Ready::ConnectFailed { to, error },
                        _ => Ready::Nothing,
                    };
                }
            }
        }
        self.flush(token);
        Ready::Readable
    }

    /// The next whole frame from `token`, reading from its socket as needed within the
    /// budget of `reading`; `None` once the socket is drained, the budget spent (the
    /// connection is read again next turn) or the connection closed. Decoded by the
    /// connection's state when asked, so a frame that changes the state (`Hello`) changes
    /// how the next one is read.
    pub(super) fn next_frame(
        &mut self,
        token: Token,
        reading: &mut Reading,
        now: Instant,
    ) -> Option<Frame> {
        loop {
            let link = self.links.get_mut(&token)?;
            match link.next_frame() {
                Ok(Some(frame)) => {
                    reading.completed = true;
                    return Some(frame);
                }
                Ok(None) => {}
                Err(why) => {
                    self.reject(token, &why);
                    return None;
                }
            }
            // No whole frame left in what was read: note when this one was heard from.
            if reading.read_any {
                if reading.completed {
                    link.last_heard = now;
                }
                if link.conn.track_partial(now, reading.completed) {
                    let limit = Duration::from_millis(self.net.partial_frame_timeout_ms);
                    self.timers.push(Reverse((now + limit, token)));
                }
                reading.completed = false;
            }
            if reading.budget == 0 {
                self.pending_reads.push(token);
                return None;
            }
            reading.budget -= 1;
            match link.conn.read_chunk(&mut self.scratch) {
                Ok(ReadOutcome::Data) => reading.read_any = true,
                Ok(ReadOutcome::Drained) => {
                    // A TLS handshake may have a reply the socket did not take at once.
                    if link.conn.wants_flush() {
                        self.dirty.push(token);
                    }
                    return None;
                }
                Ok(ReadOutcome::Closed) => {
                    self.drop_link(token, "closed by the other side");
                    return None;
                }
                Err(e) => {
                    match tls::failure(&e) {
                        Some(why) => self.reject(token, &why),
                        None => self.drop_link(token, &format!("read failed: {e}")),
                    }
                    return None;
                }
            }
        }
    }

    /// The connection goes on as `kind`. If that ends its handshake, its deadline is lifted
    /// and `true` is returned.
    pub(super) fn set_kind(&mut self, token: Token, kind: Kind) -> bool {
        let Some(link) = self.links.get_mut(&token) else {
            return false;
        };
        link.kind = kind;
        if !kind.is_ready() {
            return false;
        }
        link.handshake_deadline = None;
        true
    }

    /// Queues one frame on a connection; a connection with too much waiting is closed.
    pub(super) fn send_frame<T: Serialize>(&mut self, token: Token, value: &T) {
        let bytes = match frame::encode(value, self.net.max_frame_bytes) {
            Ok(bytes) => bytes,
            Err(e) => return error!("dropping an outgoing frame: {e}"),
        };
        let Some(link) = self.links.get_mut(&token) else {
            return;
        };
        if link.conn.queue(&bytes).is_err() {
            let why = format!("too slow: over {MAX_OUTGOING} bytes waiting to be sent");
            return self.reject(token, &why);
        }
        self.dirty.push(token);
    }

    /// Writes what the turn queued.
    pub(super) fn flush_dirty(&mut self) {
        for token in std::mem::take(&mut self.dirty) {
            self.flush(token);
        }
    }

    fn flush(&mut self, token: Token) {
        let Some(link) = self.links.get_mut(&token) else {
            return;
        };
        let flushed = link
            .conn
            .flush()
            .and_then(|()| link.conn.update_interest(&self.registry, token));
        if let Err(e) = flushed {
            self.drop_link(token, &format!("write failed: {e}"));
        }
    }

    /// A deadline of this connection may have passed.
    fn check_deadlines(&mut self, token: Token, now: Instant) {
        let Some(link) = self.links.get(&token) else {
            return;
        };
        if link.handshake_deadline.is_some_and(|at| at <= now) {
            let why = format!("no handshake within {} ms", self.net.handshake_timeout_ms);
            return match link.kind {
                // Silence from a peer is reported as nothing more than silence.
                Kind::PeerOutHello { .. } => self.drop_link(token, &why),
                _ => self.reject(token, &why),
            };
        }
        if link.side == Some(Side::Client) {
            let idle_at = link.last_heard + self.client_idle_timeout();
            if idle_at <= now {
                let why = format!("idle for {} ms", self.net.client_idle_timeout_ms);
                return self.drop_link(token, &why);
            }
            if link.idle_check <= now {
                // This was the idle check: the next one is due when it would be idle.
                let link = self.links.get_mut(&token).expect("looked up above");
                link.idle_check = idle_at;
                self.timers.push(Reverse((idle_at, token)));
            }
        }
        let Some(link) = self.links.get(&token) else {
            return;
        };
        let limit = Duration::from_millis(self.net.partial_frame_timeout_ms);
        match link.conn.partial_since().map(|since| since + limit) {
            Some(at) if at <= now => {
                let why = format!(
                    "half a frame stalled for {} ms",
                    self.net.partial_frame_timeout_ms
                );
                self.reject(token, &why);
            }
            Some(at) => self.timers.push(Reverse((at, token))),
            None => {}
        }
    }

    /// Closes a connection that broke the protocol or a limit.
    pub(super) fn reject(&mut self, token: Token, why: &str) {
        if let Some(link) = self.remove(token) {
            warn!(addr = %link.addr, kind = %link.kind, "closing connection: {why}");
        }
    }

    /// Closes a connection that ended in an ordinary way.
    pub(super) fn drop_link(&mut self, token: Token, why: &str) {
        if let Some(link) = self.remove(token) {
            trace!(addr = %link.addr, kind = %link.kind, "connection closed: {why}");
        }
    }

    fn remove(&mut self, token: Token) -> Option<Link> {
        let mut link = self.links.remove(&token)?;
        link.conn.deregister(&self.registry);
        self.gauge(link.side).dec();
        if let Some(side) = link.side {
            self.admission(side).release(link.ip());
        }
        self.closed.push((token, link.kind));
        Some(link)
    }
}
