//! Connections of every kind: accepting them within the limits, reading frames by the
//! connection's handshake state, the `Hello` exchange, writing, deadlines and closing.
//! A peer connection carries `PeerMessage`s only once both sides proved that they hold the
//! cluster secret (if the configuration names one): see [`super::authentication`].

use super::admission::{Admission, Refusal};
use super::conn::{Conn, ReadOutcome, MAX_OUTGOING};
use super::event_loop::EventLoop;
use super::metrics::{KindLabel, OpLabel};
use chat_core::codec::frame;
use chat_core::codec::handshake::check_hello;
use chat_core::ids::{ClientId, ReplicaId};
use chat_core::peer_auth::{AuthFrame, Handshake, Prover};
use chat_core::replica::{Input, PeerMessage};
use chat_core::time::{Duration, Instant};
use chat_core::wire::{ClientToServer, Hello, Role};
use mio::net::TcpStream;
use mio::Token;
use serde::Serialize;
use std::cmp::Reverse;
use std::fmt;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};

use tracing::{error, info, trace, warn};

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
    /// A client; replies and pushes for the `attached` session come here.
    Client { attached: Option<ClientId> },
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
    fn is_ready(self) -> bool {
        matches!(
            self,
            Kind::Client { .. } | Kind::PeerIn { .. } | Kind::PeerOut { .. }
        )
    }
}

pub(super) struct Link {
    pub(super) conn: Conn,
    pub(super) kind: Kind,
    pub(super) addr: SocketAddr,
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
    pub(super) fn outgoing(
        conn: Conn,
        to: ReplicaId,
        auth: Option<Handshake>,
        addr: SocketAddr,
        deadline: Instant,
    ) -> Link {
        Link {
            conn,
            kind: Kind::PeerOutHello { to, auth },
            addr,
            side: None,
            handshake_deadline: Some(deadline),
            last_heard: Instant::ZERO,
            idle_check: Instant::NEVER,
        }
    }

    pub(super) fn ip(&self) -> IpAddr {
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
            Kind::Client { .. } => self.conn.next().map(|f| f.map(Frame::Client)),
            Kind::PeerIn { .. } => self.conn.next().map(|f| f.map(Frame::Peer)),
            Kind::PeerOut { .. } if self.conn.buffered() > 0 => {
                return Err("sent data on a connection that only carries our messages".into())
            }
            Kind::PeerOut { .. } => Ok(None),
        };
        frame.map_err(|e| e.to_string())
    }
}

/// For log lines: never shows a client id, which is the session's bearer secret.
impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::ClientHello => f.write_str("client connection before its handshake"),
            Kind::Client { .. } => f.write_str("client connection"),
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

/// A decoded frame.
enum Frame {
    Hello(Hello),
    Auth(AuthFrame),
    Client(ClientToServer),
    Peer(PeerMessage),
}

/// A client message's kind, for the request counter (never its contents).
fn request_kind(message: &ClientToServer) -> &'static str {
    use chat_core::chat::Op;
    use chat_core::wire::PasswordAction;
    match message {
        ClientToServer::Attach { .. } => "attach",
        ClientToServer::Status => "status",
        ClientToServer::WithPassword { action, .. } => match action {
            PasswordAction::Create => "create_with_password",
            PasswordAction::Login => "login_with_password",
        },
        ClientToServer::Request(request) => match request.op {
            Op::OpenSession => "open_session",
            Op::List { .. } => "list",
            Op::Create { .. } => "create",
            Op::Login { .. } => "login",
            Op::Logout => "logout",
            Op::Delete => "delete",
            Op::Send { .. } => "send",
            Op::Deliver => "deliver",
            Op::Ack { .. } => "ack",
            // Forged: only the primary's driver orders these (the connection is closed).
            Op::CreateWithPassword { .. } | Op::LoginVerified { .. } | Op::LoginRefused { .. } => {
                "forged"
            }
        },
    }
}

impl EventLoop {
    /// The open-connections gauge for connections admitted by `side` (`None`: ours).
    fn connections(&self, side: Option<Side>) -> prometheus_client::metrics::gauge::Gauge {
        let kind = match side {
            Some(Side::Client) => "client",
            Some(Side::Peer) => "peer_in",
            None => "peer_out",
        };
        let connections = &self.narrator.metrics.connections;
        connections.get_or_create_owned(&KindLabel { kind })
    }

    fn admission(&mut self, side: Side) -> &mut Admission {
        match side {
            Side::Client => &mut self.client_admission,
            Side::Peer => &mut self.peer_admission,
        }
    }

    /// Accepts the connections waiting on one listener, up to the budget (then the rest
    /// later in this turn or the next).
    pub(super) fn accept(&mut self, side: Side) {
        for _ in 0..ACCEPT_BUDGET {
            let listener = match side {
                Side::Client => self.client_listener.as_ref(),
                Side::Peer => self.peer_listener.as_ref(),
            };
            let Some(listener) = listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, addr)) => self.admit(side, stream, addr),
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
                    return self.retry_accept_at(self.now + ACCEPT_RETRY);
                }
            }
        }
        // An edge-triggered listener does not report the connections still waiting.
        self.retry_accept_at(self.now);
    }

    fn retry_accept_at(&mut self, at: Instant) {
        self.accept_retry = Some(self.accept_retry.map_or(at, |retry| retry.min(at)));
    }

    fn admit(&mut self, side: Side, stream: TcpStream, addr: SocketAddr) {
        let ip = addr.ip().to_canonical();
        let mut admitted = self.admission(side).admit(ip);
        if matches!(admitted, Err(Refusal::Full(_))) && side == Side::Client {
            // Slots are not free: the idlest client connection makes room.
            if self.close_idlest_client() {
                admitted = self.admission(side).admit(ip);
            }
        }
        if let Err(why) = admitted {
            warn!(%addr, "refusing a connection on the {side:?} port: {why}");
            return;
        }
        let _ = stream.set_nodelay(true);
        let idle_check = match side {
            Side::Client => self.now + self.client_idle_timeout(),
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
            handshake_deadline: Some(
                self.now + Duration::from_millis(self.net.handshake_timeout_ms),
            ),
            last_heard: self.now,
            idle_check,
        };
        if let Some(token) = self.add_link(link) {
            if idle_check != Instant::NEVER {
                self.timers.push(Reverse((idle_check, token)));
            }
        }
    }

    fn client_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.net.client_idle_timeout_ms)
    }

    /// Closes the client connection that has been silent longest; false if there is none.
    fn close_idlest_client(&mut self) -> bool {
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
            let idle = self.now.saturating_sub(link.last_heard);
            info!(
                addr = %link.addr,
                "every client slot is taken: closing the idlest connection (silent for {} ms)",
                idle.as_millis()
            );
        }
        true
    }

    /// Registers a new connection; returns its token, or `None` if it could not be polled.
    pub(super) fn add_link(&mut self, mut link: Link) -> Option<Token> {
        let token = self.next_token();
        if let Err(e) = link.conn.register(self.poll.registry(), token) {
            error!(addr = %link.addr, "cannot poll a connection: {e}");
            if let Some(side) = link.side {
                self.admission(side).release(link.ip());
            }
            return None;
        }
        if let Some(deadline) = link.handshake_deadline {
            self.timers.push(Reverse((deadline, token)));
        }
        self.connections(link.side).inc();
        self.links.insert(token, link);
        Some(token)
    }

    /// A connection is readable, writable, or in error: finish a connect, write, read.
    pub(super) fn on_ready(&mut self, token: Token) {
        let Some(link) = self.links.get_mut(&token) else {
            return;
        };
        if !link.conn.is_connected() {
            match link.conn.poll_connect() {
                Ok(false) => return,
                Ok(true) => trace!(addr = %link.addr, "connected"),
                Err(e) => return self.connect_failed(token, &e),
            }
        }
        self.flush(token);
        self.read(token);
    }

    /// Reads and handles frames until the socket is drained or the budget runs out.
    pub(super) fn read(&mut self, token: Token) {
        for _ in 0..READ_BUDGET {
            let Some(link) = self.links.get_mut(&token) else {
                return;
            };
            match link.conn.read_chunk(&mut self.scratch) {
                Ok(ReadOutcome::Data) => {
                    if !self.handle_frames(token) {
                        return;
                    }
                }
                Ok(ReadOutcome::Drained) => return,
                Ok(ReadOutcome::Closed) => {
                    return self.drop_link(token, "closed by the other side")
                }
                Err(e) => return self.drop_link(token, &format!("read failed: {e}")),
            }
        }
        self.pending_reads.push(token);
    }

    /// Handles every complete frame received; `false` if that closed the connection.
    fn handle_frames(&mut self, token: Token) -> bool {
        let mut completed = false;
        loop {
            let Some(link) = self.links.get_mut(&token) else {
                return false;
            };
            match link.next_frame() {
                Ok(Some(frame)) => {
                    completed = true;
                    self.on_frame(token, frame);
                }
                Ok(None) => break,
                Err(why) => {
                    self.reject(token, &why);
                    return false;
                }
            }
        }
        let Some(link) = self.links.get_mut(&token) else {
            return false;
        };
        if completed {
            link.last_heard = self.now;
        }
        if link.conn.track_partial(self.now, completed) {
            let limit = Duration::from_millis(self.net.partial_frame_timeout_ms);
            self.timers.push(Reverse((self.now + limit, token)));
        }
        true
    }

    fn on_frame(&mut self, token: Token, frame: Frame) {
        match frame {
            Frame::Hello(hello) => self.on_hello(token, hello),
            Frame::Auth(frame) => self.on_auth_frame(token, frame),
            Frame::Client(message) => {
                let op = request_kind(&message);
                let requests = &self.narrator.metrics.requests;
                requests.get_or_create(&OpLabel { op }).inc();
                self.on_client_message(token, message)
            }
            Frame::Peer(message) => {
                let Some(Kind::PeerIn { from }) = self.links.get(&token).map(|l| l.kind) else {
                    return;
                };
                let status = self.replica.status();
                self.narrator
                    .on_peer_message(self.now, from, &message, &status);
                self.replica.handle(self.now, Input::Peer { from, message });
                self.drain_outputs();
            }
        }
    }

    fn on_hello(&mut self, token: Token, hello: Hello) {
        let Some(link) = self.links.get(&token) else {
            return;
        };
        if let Err(e) = check_hello(&hello) {
            return self.reject(token, &e.to_string());
        }
        let (kind, ip) = (link.kind, link.ip());
        let mut challenge = None;
        let greeted = match (kind, hello.role) {
            (Kind::ClientHello, Role::Client) => Kind::Client { attached: None },
            (Kind::PeerHello, Role::Replica(from)) => match self.peers.verify(from, ip) {
                Ok(()) => match self.peers.start_auth(Prover::Acceptor, from, self.me) {
                    Some((auth, frame)) => {
                        challenge = Some(frame);
                        Kind::PeerInProving { from, auth }
                    }
                    None => Kind::PeerIn { from },
                },
                Err(why) => return self.reject(token, &why),
            },
            (Kind::PeerOutHello { to, auth }, Role::Replica(id)) if id == to => match auth {
                Some(auth) => Kind::PeerOutProving { to, auth },
                None => Kind::PeerOut { to },
            },
            (kind, role) => {
                return self.reject(
                    token,
                    &format!("a hello as {role:?} is not allowed on a {kind}"),
                )
            }
        };
        if !matches!(kind, Kind::PeerOutHello { .. }) {
            // Our outgoing connections sent their `Hello` (and challenge) when they opened.
            self.send_frame(token, &Hello::new(Role::Replica(self.me)));
        }
        if let Some(challenge) = challenge {
            self.send_frame(token, &challenge);
        }
        self.handshake_done(token, greeted);
    }

    /// The connection goes on as `kind`; if that ends its handshake, its deadline is lifted
    /// and a peer connection takes its place in the cluster.
    pub(super) fn handshake_done(&mut self, token: Token, kind: Kind) {
        let Some(link) = self.links.get_mut(&token) else {
            return;
        };
        link.kind = kind;
        if !kind.is_ready() {
            return;
        }
        link.handshake_deadline = None;
        match kind {
            Kind::PeerIn { from } => self.peer_connected(from, token),
            Kind::PeerOut { to } => self.peers.greeted(to),
            _ => {}
        }
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
            .and_then(|()| link.conn.update_interest(self.poll.registry(), token));
        if let Err(e) = flushed {
            self.drop_link(token, &format!("write failed: {e}"));
        }
    }

    /// A deadline of this connection may have passed.
    pub(super) fn check_deadlines(&mut self, token: Token) {
        let Some(link) = self.links.get(&token) else {
            return;
        };
        if link.handshake_deadline.is_some_and(|at| at <= self.now) {
            let why = format!("no handshake within {} ms", self.net.handshake_timeout_ms);
            return match link.kind {
                // Silence from a peer is reported as nothing more than silence.
                Kind::PeerOutHello { .. } => self.drop_link(token, &why),
                _ => self.reject(token, &why),
            };
        }
        if link.side == Some(Side::Client) {
            let idle_at = link.last_heard + self.client_idle_timeout();
            if idle_at <= self.now {
                let why = format!("idle for {} ms", self.net.client_idle_timeout_ms);
                return self.drop_link(token, &why);
            }
            if link.idle_check <= self.now {
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
            Some(at) if at <= self.now => {
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
        link.conn.deregister(self.poll.registry());
        self.connections(link.side).dec();
        self.session_opens.forget(token);
        if let Some(side) = link.side {
            self.admission(side).release(link.ip());
        }
        match link.kind {
            Kind::Client {
                attached: Some(client),
            } => self.routes.detach(client, token),
            Kind::PeerIn { from } => self.peers.inbound_closed(from, token),
            Kind::PeerOutHello { to, .. }
            | Kind::PeerOutProving { to, .. }
            | Kind::PeerOut { to } => self.peers.outbound_closed(to, self.now),
            Kind::Client { attached: None }
            | Kind::ClientHello
            | Kind::PeerHello
            | Kind::PeerInProving { .. } => {}
        }
        Some(link)
    }
}
