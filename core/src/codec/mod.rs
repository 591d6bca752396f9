//! Byte codecs for everything read from outside: wire frames, log records and snapshot files.

pub mod frame;
pub mod handshake;
pub mod persistent;
pub mod record;
pub mod snapshot;
