//! Connections between replicas. Each replica dials every other one for its own messages
//! (outgoing connections only send) and receives theirs on its peer port (incoming ones
//! only receive). An incoming connection must come from the address of the replica it
//! claims to be and, with a cluster secret, both ends prove they hold it before any message
//! passes. Dialing retries with exponential backoff. This module keeps who is connected where
//! and when to dial; the connections themselves are [`super::links`]'.

use super::error::{resolve, ServerError};
use chat_core::config::Config;
use chat_core::ids::ReplicaId;
use chat_core::peer_auth::{AuthFrame, ClusterSecret, Handshake, Prover};
use chat_core::time::{Duration, Instant};
use mio::net::TcpStream;
use mio::Token;
use rand::rngs::OsRng;
use rand::Rng;
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// The first wait after a working connection broke and the redial failed too. A `kill -9`
/// closes the process's connections a moment before its listener, so the redial at once
/// can still be accepted by the kernel and then reset: that is no evidence, and the next
/// try, refused, is (measured: with `MIN_BACKOFF` there, failover took 50 ms longer).
const BROKEN_BACKOFF: Duration = Duration::from_millis(2);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Our connection to one other replica.
#[derive(Debug)]
struct Outbound {
    addr: SocketAddr,
    /// Its configured host: the name its TLS certificate must carry.
    host: String,
    token: Option<Token>,
    /// The wait before the next attempt after this one fails.
    backoff: Duration,
    /// When to dial again; `None` while a connection exists.
    next_attempt: Option<Instant>,
    /// The current connection completed its handshake.
    greeted: bool,
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
    secret: Option<ClusterSecret>,
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
                    host: peer.host.clone(),
                    token: None,
                    backoff: MIN_BACKOFF,
                    next_attempt: Some(now),
                    greeted: false,
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

    /// With a secret, starts a handshake with replica `other` on a connection we opened
    /// (`Prover::Dialer`) or accepted: the handshake and the challenge to send.
    pub(super) fn start_auth(
        &self,
        us: Prover,
        other: ReplicaId,
    ) -> Option<(Handshake, AuthFrame)> {
        self.secret.as_ref()?;
        let (dialer, acceptor) = match us {
            Prover::Dialer => (self.me, other),
            Prover::Acceptor => (other, self.me),
        };
        Some(Handshake::start(us, dialer, acceptor, OsRng.gen()))
    }

    /// The secret peers prove they hold, if the configuration names one.
    pub(super) fn secret(&self) -> Option<&ClusterSecret> {
        self.secret.as_ref()
    }

    /// Our connection to `to` completed its handshake: the next failure starts over with a
    /// short wait.
    pub(super) fn greeted(&mut self, to: ReplicaId) {
        if let Some(out) = self.outbound.get_mut(&to) {
            out.backoff = MIN_BACKOFF;
            out.greeted = true;
        }
    }

    /// Our connection to `to` is gone: dial again after the backoff, which then doubles. A
    /// working connection that breaks is redialed at once: if the peer's process died, the
    /// refusal is the evidence a failover waits for (issue 8, rule 9).
    pub(super) fn outbound_closed(&mut self, to: ReplicaId, now: Instant) {
        if let Some(out) = self.outbound.get_mut(&to) {
            out.token = None;
            if std::mem::take(&mut out.greeted) {
                out.next_attempt = Some(now);
                out.backoff = BROKEN_BACKOFF;
            } else {
                out.next_attempt = Some(now + out.backoff);
                out.backoff = (out.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    pub(super) fn inbound_closed(&mut self, from: ReplicaId, token: Token) {
        if self.inbound.get(&from) == Some(&token) {
            self.inbound.remove(&from);
        }
    }

    /// The replicas whose dial is due: each is marked as being dialed, and the connect to it
    /// started (or its failure returned).
    pub(super) fn dial_due(&mut self, now: Instant) -> Vec<(ReplicaId, io::Result<Dialed>)> {
        let local_ip = self.local_ip;
        self.outbound
            .iter_mut()
            .filter(|(_, o)| o.next_attempt.is_some_and(|at| at <= now))
            .map(|(&to, out)| {
                out.next_attempt = None;
                let (addr, host) = (out.addr, out.host.clone());
                let dialed =
                    start_connect(addr, local_ip).map(|stream| Dialed { stream, addr, host });
                (to, dialed)
            })
            .collect()
    }

    /// The connection dialed to `to` is polled as `token`.
    pub(super) fn dialed(&mut self, to: ReplicaId, token: Token) {
        if let Some(out) = self.outbound.get_mut(&to) {
            out.token = Some(token);
        }
    }

    /// Our connection to `to`, if there is one (it may not be through its handshake).
    pub(super) fn outbound(&self, to: ReplicaId) -> Option<Token> {
        self.outbound.get(&to).and_then(|o| o.token)
    }

    /// Replica `from` opened a new incoming connection (and proved who it is, with a
    /// secret): returns an older one, which is stale.
    pub(super) fn inbound_opened(&mut self, from: ReplicaId, token: Token) -> Option<Token> {
        self.inbound.insert(from, token)
    }
}

/// A connect started to a replica.
pub(super) struct Dialed {
    pub(super) stream: TcpStream,
    pub(super) addr: SocketAddr,
    /// The configured host (the name to check its TLS certificate against).
    pub(super) host: String,
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
