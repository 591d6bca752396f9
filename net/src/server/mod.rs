//! One replica's event loop: a mio poll over a client listener, a peer listener, one
//! outgoing connection to every other replica, and a waker for the I/O thread that owns the
//! storage (so the loop never waits for a disk sync).
//!
//! - [`run`] opens the storage, rebuilds the replica and drives it until shutdown.
//! - Every connection opens with a `wire::Hello` both ways; anything a connection sends that
//!   breaks the protocol or a limit of `config.net` closes that connection only, with a
//!   `warn` line.
//! - With `cluster_secret_file` configured, the two ends of a peer connection prove that
//!   they hold the cluster secret before it carries any replication traffic.
//! - Passwords are hashed and verified on worker threads ([`passwords`]), never on the loop.

mod admission;
mod clients;
mod conn;
mod error;
mod event_loop;
mod fresh_start;
mod handshake;
mod hash_pool;
mod identity;
mod io_thread;
mod links;
mod metrics;
mod narrator;
mod options;
mod passwords;
mod peers;
mod removal;
mod session_opens;
mod shutdown;
mod snapshot_thread;

pub use error::ServerError;
pub use fresh_start::{ran_before, RanBefore};
pub use handshake::load_secret;
pub use options::ServerOptions;
pub use shutdown::Shutdown;

use crate::storage::{DirLock, Storage, StorageOptions};
use chat_core::config::Config;
use chat_core::ids::ReplicaId;
use chat_core::peer_auth::ClusterSecret;
use chat_core::replica::{Mutations, Options, Replica};
use chat_core::time::Duration;
use event_loop::{Clock, EventLoop};
use std::path::PathBuf;
use tracing::{info, warn};

/// Most entries in one `Append` message; `max_append_bytes` (a quarter of a frame) is the
/// bound that matters. A returning replica catches up in phase 2 of the view that adds it
/// back, while nothing commits: at 64 entries an `Append`, 7,479 entries took 117 round
/// trips and 44 ms (NOTEBOOK, session 7).
const MAX_APPEND_ENTRIES: usize = 4096;

/// Runs replica `id` of `config` until shutdown is requested (then `Ok`) or its storage
/// fails (then `Err`: durability is lost, and the process must stop and recover).
pub fn run(config: &Config, id: ReplicaId, opts: ServerOptions) -> Result<(), ServerError> {
    config.replica(id).ok_or(ServerError::UnknownId(id))?;
    let secret = handshake::load_secret(config)?;
    let dir = opts
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&config.data_dir).join(format!("replica-{id}")));
    // Before anything in the directory is read; held until this function returns.
    let _lock = DirLock::acquire(&dir)?;
    // Whose directory this is, before anything else in it is read: another replica's or
    // another cluster's is refused. A missing identity is recorded below, once a start on an
    // empty directory has passed its checks (a refused start writes nothing).
    let me = identity::Identity {
        replica: id,
        cluster: secret.as_ref().map(ClusterSecret::identity_tag),
    };
    let identity = identity::check(&dir, &me, config.cluster_secret_file.as_deref())?;
    // Issue 8, disk loss: a directory without state, in a cluster that ran with this replica
    // before, is refused before anything is written to it or sent (see `fresh_start` for the
    // rule and its limits). A directory with state skips this: its start is not slowed.
    let holds_no_state = Storage::holds_no_state(&dir)?;
    if opts.rejoin {
        fresh_start::check_rejoin(config, &dir, holds_no_state)?;
    } else if config.replicas.len() > 1 && holds_no_state {
        if let Some(found) = fresh_start::ask_peers(config, id, fresh_start::ASK_TIMEOUT) {
            return Err(ServerError::LostDataDir(fresh_start::refusal(&dir, &found)));
        }
    }
    identity.record(holds_no_state)?;
    let (storage, mut recovered, report) = Storage::open(&dir, StorageOptions::default())?;
    if opts.rejoin {
        recovered.protocol = Some(fresh_start::lost_state());
    }
    if let Some((file, len)) = &report.torn_tail {
        warn!(
            "{}: a write cut short by a crash was truncated to {len} bytes",
            file.display()
        );
    }
    info!(
        dir = %dir.display(),
        segments = report.segments,
        records = report.records,
        snapshot = ?report.snapshot_index,
        "storage opened"
    );
    let clock = Clock::start();
    let replica = Replica::new(replica_options(config, id), recovered, clock.now())?;
    let signals = opts
        .handle_signals
        .then(|| opts.shutdown.on_signals())
        .transpose()
        .map_err(ServerError::io("installing signal handlers"))?;
    let result =
        EventLoop::new(config, id, secret, replica, storage, clock, &opts).and_then(EventLoop::run);
    if let Some(signals) = signals {
        signals.close();
    }
    result
}

fn replica_options(config: &Config, id: ReplicaId) -> Options {
    Options {
        id,
        replica_count: u8::try_from(config.replicas.len()).expect("config allows at most 9"),
        heartbeat_interval: Duration::from_millis(config.heartbeat_interval_ms),
        election_timeout: Duration::from_millis(config.election_timeout_ms),
        snapshot_every: config.snapshot_every,
        max_append_entries: MAX_APPEND_ENTRIES,
        snapshot_chunk_bytes: config.net.max_frame_bytes as usize / 4,
        max_append_bytes: config.net.max_frame_bytes as usize / 4,
        // Jitter and the incarnation id must differ between replicas and between restarts.
        seed: rand::random::<u64>() ^ u64::from(id),
        limits: config.limits.clone(),
        leases: config.leases.options(),
        mutations: Mutations::default(),
    }
}
