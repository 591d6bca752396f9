//! Connections between replicas. Each replica dials every other one for its own messages
//! (outgoing connections only send) and receives theirs on its peer port (incoming ones
//! only receive). An incoming connection must come from the address of the replica it
//! claims to be and, with a cluster secret, both ends prove they hold it before any message
//! passes. Dialing retries with exponential backoff; a refused connect is reported to the
//! replica as crash evidence, a timeout as nothing.

use super::conn::Conn;
use super::event_loop::{resolve, EventLoop};
use super::links::{Kind, Link};
use super::ServerError;
use chat_core::config::Config;
use chat_core::ids::ReplicaId;
use chat_core::peer_auth::{AuthFrame, ClusterSecret, Handshake, Prover};
use chat_core::replica::{Input, PeerMessage};
use chat_core::time::{Duration, Instant};
use chat_core::wire::{Hello, Role};
use mio::net::TcpStream;
use mio::Token;
use rand::rngs::OsRng;
use rand::Rng;
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::{BTreeMap, HashMap};
use std::io::{self, ErrorKind};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use tracing::trace;

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Our connection to one other replica.
#[derive(Debug)]
struct Outbound {
    addr: SocketAddr,
    token: Option<Token>,
    /// The wait before the next attempt after this one fails.
    backoff: Duration,
    /// When to dial again; `None` while a connection exists.
    next_attempt: Option<Instant>,
}

#[derive(Debug)]
pub(super) struct Peers {
    me: ReplicaId,
    /// Our own configured address: outgoing connections leave from it, so that the peer's
    /// address check sees the address it expects.
    local_ip: Option<IpAddr>,
    outbound: BTreeMap<ReplicaId, Outbound>,
    /// The current incoming connection from each replica.
    inbound: HashMap<ReplicaId, Token>,
    /// The addresses each other replica's configured host resolves to: an incoming
    /// connection claiming an id must come from one of them.
    addresses: HashMap<ReplicaId, Vec<IpAddr>>,
    /// With it, peers must prove they hold it; without it, the address check is all.
    pub(super) secret: Option<ClusterSecret>,
}

impl Peers {
    /// Resolves every other replica's host (once, at start).
    pub(super) fn new(
        config: &Config,
        me: ReplicaId,
        secret: Option<ClusterSecret>,
        now: Instant,
    ) -> Result<Peers, ServerError> {
        let own = config.replica(me).ok_or(ServerError::UnknownId(me))?;
        let local_ip = resolve(&own.host, 0)
            .map_err(ServerError::io(format!(
                "resolving this replica's host {}",
                own.host
            )))?
            .ip();
        let mut outbound = BTreeMap::new();
        let mut addresses = HashMap::new();
        for peer in config.replicas.iter().filter(|r| r.id != me) {
            let place = format!("resolving replica {}'s host {}", peer.id, peer.host);
            let resolved: Vec<_> = (peer.host.as_str(), peer.peer_port)
                .to_socket_addrs()
                .map_err(ServerError::io(&place))?
                .collect();
            let addr = *resolved.first().ok_or_else(|| {
                ServerError::io(&place)(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no address",
                ))
            })?;
            let ips = resolved.iter().map(|a| a.ip().to_canonical()).collect();
            addresses.insert(peer.id, ips);
            outbound.insert(
                peer.id,
                Outbound {
                    addr,
                    token: None,
                    backoff: MIN_BACKOFF,
                    next_attempt: Some(now),
                },
            );
        }
        Ok(Peers {
            me,
            local_ip: (!local_ip.is_unspecified()).then_some(local_ip),
            outbound,
            inbound: HashMap::new(),
            addresses,
            secret,
        })
    }

    /// When the next dial is due, if any.
    pub(super) fn next_attempt(&self) -> Option<Instant> {
        self.outbound.values().filter_map(|o| o.next_attempt).min()
    }

    /// Accepts a peer's claim to be replica `claimed` only from that replica's address.
    pub(super) fn verify(&self, claimed: ReplicaId, ip: IpAddr) -> Result<(), String> {
        if claimed == self.me {
            return Err(format!("peer claims to be this replica ({claimed})"));
        }
        match self.addresses.get(&claimed) {
            None => Err(format!(
                "peer claims replica id {claimed}, which is not configured"
            )),
            Some(ips) if !ips.contains(&ip) => Err(format!(
                "peer at {ip} claims to be replica {claimed}, which is configured elsewhere"
            )),
            Some(_) => Ok(()),
        }
    }

    /// With a secret, starts a handshake on a connection from `dialer` to `acceptor`, as
    /// `me`: the handshake and the challenge to send.
    pub(super) fn start_auth(
        &self,
        me: Prover,
        dialer: ReplicaId,
        acceptor: ReplicaId,
    ) -> Option<(Handshake, AuthFrame)> {
        self.secret.as_ref()?;
        Some(Handshake::start(me, dialer, acceptor, OsRng.gen()))
    }

    /// Our connection to `to` completed its handshake: the next failure starts over with a
    /// short wait.
    pub(super) fn greeted(&mut self, to: ReplicaId) {
        if let Some(out) = self.outbound.get_mut(&to) {
            out.backoff = MIN_BACKOFF;
        }
    }

    /// Our connection to `to` is gone: dial again after the backoff, which then doubles.
    pub(super) fn outbound_closed(&mut self, to: ReplicaId, now: Instant) {
        if let Some(out) = self.outbound.get_mut(&to) {
            out.token = None;
            out.next_attempt = Some(now + out.backoff);
            out.backoff = (out.backoff * 2).min(MAX_BACKOFF);
        }
    }

    pub(super) fn inbound_closed(&mut self, from: ReplicaId, token: Token) {
        if self.inbound.get(&from) == Some(&token) {
            self.inbound.remove(&from);
        }
    }
}

impl EventLoop {
    /// Dials every replica whose retry time has come.
    pub(super) fn connect_due_peers(&mut self) {
        let due: Vec<ReplicaId> = self
            .peers
            .outbound
            .iter()
            .filter(|(_, o)| o.next_attempt.is_some_and(|at| at <= self.now))
            .map(|(&id, _)| id)
            .collect();
        for to in due {
            self.dial(to);
        }
    }

    fn dial(&mut self, to: ReplicaId) {
        let Some(out) = self.peers.outbound.get_mut(&to) else {
            return;
        };
        out.next_attempt = None;
        let addr = out.addr;
        let stream = match start_connect(addr, self.peers.local_ip) {
            Ok(stream) => stream,
            Err(e) => return self.dial_failed(to, &e),
        };
        let deadline = self.now + Duration::from_millis(self.net.handshake_timeout_ms);
        let conn = Conn::new(stream, self.net.max_frame_bytes, false);
        let (auth, challenge) = self.peers.start_auth(Prover::Dialer, self.me, to).unzip();
        match self.add_link(Link::outgoing(conn, to, auth, addr, deadline)) {
            Some(token) => {
                self.peers
                    .outbound
                    .get_mut(&to)
                    .expect("dialed above")
                    .token = Some(token);
                self.send_frame(token, &Hello::new(Role::Replica(self.me)));
                if let Some(challenge) = challenge {
                    self.send_frame(token, &challenge);
                }
            }
            None => self.peers.outbound_closed(to, self.now),
        }
    }

    /// An outgoing connect failed after it started.
    pub(super) fn connect_failed(&mut self, token: Token, error: &io::Error) {
        let to = self
            .peers
            .outbound
            .iter()
            .find(|(_, o)| o.token == Some(token));
        if let Some((&to, _)) = to {
            self.drop_link(token, &format!("connect failed: {error}"));
            self.report_refusal(to, error);
        }
    }

    fn dial_failed(&mut self, to: ReplicaId, error: &io::Error) {
        trace!("cannot connect to replica {to}: {error}");
        self.peers.outbound_closed(to, self.now);
        self.report_refusal(to, error);
    }

    /// A refused connect means the peer's host is up and its process is not.
    fn report_refusal(&mut self, to: ReplicaId, error: &io::Error) {
        if error.kind() == ErrorKind::ConnectionRefused {
            self.narrator.on_refused(self.now, to);
            self.replica.handle(self.now, Input::PeerRefused(to));
            self.drain_outputs();
        }
    }

    /// Replica `from` opened a new incoming connection (and proved who it is, with a
    /// secret): an older one is stale.
    pub(super) fn peer_connected(&mut self, from: ReplicaId, token: Token) {
        if let Some(old) = self.peers.inbound.insert(from, token) {
            self.drop_link(old, &format!("replica {from} connected again"));
        }
    }

    /// Sends on our connection to `to`; without one through its handshake the message is
    /// dropped (the protocol sends again).
    pub(super) fn send_to_peer(&mut self, to: ReplicaId, message: &PeerMessage) {
        let Some(token) = self.peers.outbound.get(&to).and_then(|o| o.token) else {
            return;
        };
        if matches!(self.links.get(&token), Some(link) if link.kind == Kind::PeerOut { to }) {
            self.send_frame(token, message);
        }
    }
}

/// Starts a non-blocking connect to `addr` from `local` (if it is of the same family).
fn start_connect(addr: SocketAddr, local: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    if let Some(ip) = local.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}
