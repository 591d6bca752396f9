//! Checks of the [`Hello`] frame that opens every connection.

use crate::wire::{Hello, MAGIC, PROTOCOL_VERSION};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("not a chat peer: magic number {got:#010x}, expected {MAGIC:#010x}")]
    WrongMagic { got: u32 },
    #[error("protocol version {got} is not supported (this side speaks version {want})")]
    WrongVersion { got: u16, want: u16 },
}

/// Accepts a peer's `Hello` only if it speaks this exact protocol.
pub fn check_hello(h: &Hello) -> Result<(), HandshakeError> {
    if h.magic != MAGIC {
        return Err(HandshakeError::WrongMagic { got: h.magic });
    }
    if h.version != PROTOCOL_VERSION {
        return Err(HandshakeError::WrongVersion {
            got: h.version,
            want: PROTOCOL_VERSION,
        });
    }
    Ok(())
}
