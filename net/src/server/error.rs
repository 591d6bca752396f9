//! What stops a replica from starting or running, and where addresses are resolved.

use crate::storage::{LockError, StorageError};
use crate::tls::TlsError;
use chat_core::ids::ReplicaId;
use chat_core::replica::RestoreError;
use std::io::ErrorKind;
use std::net::{SocketAddr, ToSocketAddrs};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("replica {0} is not in the configuration")]
    UnknownId(ReplicaId),
    #[error(transparent)]
    Locked(#[from] LockError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The data directory holds no state, but another replica reports that the cluster ran
    /// with this one before (the message says which, and what to do).
    #[error("{0}")]
    LostDataDir(String),
    /// The data directory belongs to another replica or another cluster, or its identity
    /// file cannot be read (the message names the directory, whose it is, what this start
    /// is, and what to do); its log and snapshots are left as they were.
    #[error("{0}")]
    DataDirIdentity(String),
    /// `--rejoin` where it does not apply (the message says why).
    #[error("{0}")]
    Rejoin(String),
    #[error("the storage thread stopped unexpectedly")]
    IoThreadGone,
    #[error(
        "cannot use the cluster secret file {path}: {problem} \
         (make one with `chat-admin new-secret {path}`)"
    )]
    Secret { path: String, problem: String },
}

impl ServerError {
    pub(super) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
        let what = what.into();
        move |source| ServerError::Io { what, source }
    }
}

/// The first address `host` resolves to.
pub(super) fn resolve(host: &str, port: u16) -> std::io::Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(ErrorKind::NotFound, "no address"))
}
