//! Byte codecs for everything read from outside: wire frames and log records.

pub mod frame;
pub mod handshake;
pub mod record;
