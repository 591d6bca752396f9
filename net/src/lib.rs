//! `chat-net`: drives `chat-core` over real sockets (mio) and real files.
//!
//! - [`storage`]: the write-ahead log in segment files, snapshots, recovery.
//! - [`server`]: one replica's event loop (client and peer listeners, I/O thread).
//! - [`client`]: the client library (finds the primary, retries across failover).
//! - [`tls`]: TLS on client and peer links, behind one stream type (plain or TLS).

pub mod client;
pub mod server;
pub mod storage;
pub mod tls;
