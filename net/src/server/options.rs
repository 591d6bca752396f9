//! How to run a replica beyond what the configuration says.

use super::shutdown::Shutdown;
use chat_core::password::HashCost;
use std::path::PathBuf;

/// How to run a replica beyond what the configuration says.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// Where the log and snapshots live; `<config.data_dir>/replica-<id>` if `None`.
    pub data_dir: Option<PathBuf>,
    /// Stops the replica when requested (also by SIGINT/SIGTERM if `handle_signals`).
    pub shutdown: Shutdown,
    /// Install SIGINT/SIGTERM handlers that request shutdown (the `chat-server` binary does;
    /// tests running a server inside their own process do not).
    pub handle_signals: bool,
    /// The work of hashing a new account's password (Argon2's recommendation by default;
    /// tests use a tiny one). Verification uses the cost stored in each hash.
    pub password_cost: HashCost,
    /// The data directory was lost (`chat-server --rejoin`): start on the empty directory
    /// knowing no view, and be added back by the primary once holding its whole log.
    pub rejoin: bool,
}
