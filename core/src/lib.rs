//! `chat-core`: the pure, sans-IO heart of the replicated chat service.
//!
//! Nothing in this crate touches sockets, files, threads, clocks or OS randomness
//! (`tests/purity.rs` enforces it). Time comes in as [`time::Instant`] values, randomness as
//! a seed, and everything to send, persist or reply goes out as data.
//!
//! - [`chat`]: the chat state machine (accounts, sessions, messages).
//! - [`client`]: the client session (request numbering, failover, pushes shown once).
//! - [`service`]: chat + the client table (exactly-once requests), snapshotted together.
//! - [`wire`]: every message that crosses a socket.
//! - [`codec`]: length-prefixed frames and checksummed log records.
//! - [`durable`]: what a replica persists and how it is replayed at start-up.
//! - [`replica`]: the replication protocol (primary-backup with view changes).
//! - [`password`]: account passwords, their salted slow hashes, and the primary's decision
//!   for a request that carries one (`password::request`).
//! - [`route`]: where each replica output goes (peer, disk, or a client message).
//! - [`peer_auth`]: how replicas prove to each other that they hold the cluster secret.
//! - [`config`]: the cluster configuration (`config.yaml`).
//! - [`command`]: the client command line (`0|<regex>` ... `6|`, `quit`, `help`).

pub mod chat;
pub mod client;
pub mod codec;
pub mod command;
pub mod config;
pub mod durable;
pub mod ids;
pub mod password;
pub mod peer_auth;
pub mod replica;
pub mod route;
pub mod service;
pub mod time;
pub mod wire;
