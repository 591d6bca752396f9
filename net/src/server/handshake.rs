//! How a connection becomes what it says it is: the `Hello` exchange that opens every
//! connection, and, between replicas, the proof that both ends hold the cluster secret
//! (`chat_core::peer_auth`) before a connection carries replication traffic. Pure decisions
//! on a connection's [`Kind`]; the event loop sends what they say to send.

use super::error::ServerError;
use super::links::Kind;
use super::peers::Peers;
use chat_core::codec::handshake::check_hello;
use chat_core::config::Config;
use chat_core::peer_auth::{AuthFrame, ClusterSecret, Prover, Step};
use chat_core::wire::{Endpoint, Hello};
use std::fs::File;
use std::io::Read;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use tracing::warn;

/// A secret file larger than this is not a secret file (and must not be read whole).
const MAX_SECRET_FILE_BYTES: u64 = 4096;

/// The cluster secret named by the configuration; `None` (with a warning) if none is named.
pub fn load_secret(config: &Config) -> Result<Option<ClusterSecret>, ServerError> {
    let Some(path) = &config.cluster_secret_file else {
        warn!("no cluster_secret_file in the configuration: peers are checked by address only");
        return Ok(None);
    };
    let problem = |problem: String| ServerError::Secret {
        path: path.clone(),
        problem,
    };
    let file = File::open(path).map_err(|e| problem(e.to_string()))?;
    let meta = file.metadata().map_err(|e| problem(e.to_string()))?;
    if meta.len() > MAX_SECRET_FILE_BYTES {
        return Err(problem(format!(
            "it is larger than {MAX_SECRET_FILE_BYTES} bytes"
        )));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        warn!("the cluster secret file {path} can be read by other users (chmod 600 it)");
    }
    let mut bytes = Vec::with_capacity(MAX_SECRET_FILE_BYTES as usize + 1);
    file.take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| problem(e.to_string()))?;
    ClusterSecret::from_file_contents(bytes)
        .map_err(|e| problem(e.to_string()))
        .map(Some)
}

/// What a connection's `Hello` leads to.
pub(super) struct Greeting {
    /// What the connection is now.
    pub(super) kind: Kind,
    /// Whether to answer with our `Hello` (our outgoing connections sent theirs already).
    pub(super) answer_hello: bool,
    /// The challenge to send after it, when the peer must prove it holds the secret.
    pub(super) challenge: Option<AuthFrame>,
}

/// Checks a `Hello` that arrived on a connection in state `kind`, from `ip`; `Err` says why
/// the connection must close.
pub(super) fn greet(
    kind: Kind,
    hello: &Hello,
    ip: IpAddr,
    peers: &Peers,
) -> Result<Greeting, String> {
    check_hello(hello).map_err(|e| e.to_string())?;
    let mut challenge = None;
    let kind_after = match (kind, hello.from) {
        (Kind::ClientHello, Endpoint::Client) => Kind::Client,
        (Kind::PeerHello, Endpoint::Replica(from)) => {
            peers.verify(from, ip)?;
            match peers.start_auth(Prover::Acceptor, from) {
                Some((auth, frame)) => {
                    challenge = Some(frame);
                    Kind::PeerInProving { from, auth }
                }
                None => Kind::PeerIn { from },
            }
        }
        (Kind::PeerOutHello { to, auth }, Endpoint::Replica(id)) if id == to => match auth {
            Some(auth) => Kind::PeerOutProving { to, auth },
            None => Kind::PeerOut { to },
        },
        (kind, from) => return Err(format!("a hello as {from:?} is not allowed on a {kind}")),
    };
    Ok(Greeting {
        kind: kind_after,
        answer_hello: !matches!(kind, Kind::PeerOutHello { .. }),
        challenge,
    })
}

/// What a handshake frame leads to: the connection's state after it (ready once the other
/// end proved it holds the secret) and the frame to answer with, if any.
pub(super) struct Proof {
    pub(super) kind: Kind,
    pub(super) answer: Option<AuthFrame>,
}

/// Takes a handshake frame that arrived on a connection in state `kind`; `Ok(None)` if that
/// state expects none (nothing to do), `Err` says why the connection must close.
pub(super) fn prove(
    kind: Kind,
    secret: Option<&ClusterSecret>,
    frame: AuthFrame,
) -> Result<Option<Proof>, String> {
    let (mut auth, proved) = match kind {
        Kind::PeerInProving { from, auth } => (auth, Kind::PeerIn { from }),
        Kind::PeerOutProving { to, auth } => (auth, Kind::PeerOut { to }),
        _ => return Ok(None),
    };
    let secret = secret.ok_or("a handshake frame while peers are not authenticated")?;
    let (kind, answer) = match auth.on_frame(secret, frame).map_err(|e| e.to_string())? {
        Step::Continue(answer) => {
            let still_proving = match kind {
                Kind::PeerInProving { from, .. } => Kind::PeerInProving { from, auth },
                Kind::PeerOutProving { to, .. } => Kind::PeerOutProving { to, auth },
                other => other,
            };
            (still_proving, answer)
        }
        Step::Authenticated(answer) => (proved, answer),
    };
    Ok(Some(Proof { kind, answer }))
}
