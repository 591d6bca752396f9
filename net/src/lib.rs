//! `chat-net`: drives `chat-core` over real sockets (mio) and real files.
//!
//! - [`storage`]: the write-ahead log in segment files, snapshots, recovery.
//! - [`server`]: one replica's event loop (client and peer listeners, I/O thread).
//! - [`client`]: the client library (finds the primary, retries across failover).

pub mod client;
pub mod server;
pub mod storage;
