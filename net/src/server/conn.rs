//! One non-blocking TCP connection carrying frames: a decoder for what arrives, a bounded
//! buffer for what leaves, and the start of a frame that has not finished arriving. Its
//! bytes go through a [`Stream`]: plain TCP, or TLS over it.

use crate::tls::Stream;
use chat_core::codec::frame::{FrameDecoder, FrameError};
use chat_core::time::Instant;
use mio::{Interest, Registry, Token};
use serde::de::DeserializeOwned;
use std::io::{self, ErrorKind};

/// Most bytes waiting to leave one connection: a reader slower than this is dropped rather
/// than allowed to grow the replica's memory.
pub(super) const MAX_OUTGOING: usize = 8 << 20;

pub(super) enum ReadOutcome {
    /// Bytes were read and pushed into the decoder.
    Data,
    /// Nothing more to read for now.
    Drained,
    /// The other side closed its end.
    Closed,
}

#[derive(Debug)]
pub(super) struct Conn {
    stream: Stream,
    decoder: FrameDecoder,
    out: Vec<u8>,
    /// Bytes at the front of `out` already written.
    written: usize,
    /// An outgoing connection is not usable until its connect completes.
    connected: bool,
    interest: Interest,
    /// When the unfinished frame in the decoder started, if there is one.
    partial_since: Option<Instant>,
}

impl Conn {
    pub(super) fn new(stream: Stream, max_frame: u32, connected: bool) -> Conn {
        Conn {
            stream,
            decoder: FrameDecoder::new(max_frame),
            out: Vec::new(),
            written: 0,
            connected,
            interest: Interest::READABLE | Interest::WRITABLE,
            partial_since: None,
        }
    }

    /// Registers for reads and writes: a first writable event also reports a finished connect.
    pub(super) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.stream, token, self.interest)
    }

    pub(super) fn deregister(&mut self, registry: &Registry) {
        // The socket closes when dropped, which also removes it from the poll.
        let _ = registry.deregister(&mut self.stream);
    }

    /// Reads one chunk into the decoder. Drain it with [`next`](Self::next) before the next
    /// read, so that the decoder holds at most one unfinished frame.
    pub(super) fn read_chunk(&mut self, scratch: &mut [u8]) -> io::Result<ReadOutcome> {
        loop {
            return match self.stream.read(scratch) {
                Ok(0) => Ok(ReadOutcome::Closed),
                Ok(n) => {
                    self.decoder.push(&scratch[..n]);
                    Ok(ReadOutcome::Data)
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(ReadOutcome::Drained),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    pub(super) fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        self.decoder.next()
    }

    /// Bytes queued and not yet written.
    pub(super) fn queued(&self) -> usize {
        self.out.len() - self.written
    }

    /// Bytes received and not yet decoded.
    pub(super) fn buffered(&self) -> usize {
        self.decoder.buffered()
    }

    /// Call after draining the decoder. Restarts the half-frame clock if a frame completed or
    /// a new one began; returns `true` when the clock was not running before.
    pub(super) fn track_partial(&mut self, now: Instant, completed_frame: bool) -> bool {
        if !self.decoder.has_partial() {
            self.partial_since = None;
            return false;
        }
        let was_running = self.partial_since.is_some();
        if completed_frame || !was_running {
            self.partial_since = Some(now);
        }
        !was_running
    }

    pub(super) fn partial_since(&self) -> Option<Instant> {
        self.partial_since
    }

    /// Queues a whole frame; refuses it if the connection already has too much waiting.
    pub(super) fn queue(&mut self, frame: &[u8]) -> Result<(), ()> {
        if self.out.len() - self.written + frame.len() > MAX_OUTGOING {
            return Err(());
        }
        self.out.extend_from_slice(frame);
        Ok(())
    }

    /// Writes as much of the queue as the socket takes now.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        if self.connected {
            self.stream.send_pending()?;
        }
        while self.connected && self.written < self.out.len() {
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.written == self.out.len() {
            self.out.clear();
            self.written = 0;
        } else if self.written > self.out.len() / 2 {
            self.out.drain(..self.written);
            self.written = 0;
        }
        Ok(())
    }

    /// Asks for writable events only while something waits to be written (or a connect to
    /// finish).
    pub(super) fn update_interest(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let wanted = if !self.connected || self.wants_flush() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if wanted != self.interest {
            self.interest = wanted;
            registry.reregister(&mut self.stream, token, wanted)?;
        }
        Ok(())
    }

    /// Whether bytes wait to be written: queued frames, or TLS's own (a handshake reply).
    pub(super) fn wants_flush(&self) -> bool {
        self.written < self.out.len() || self.stream.wants_write()
    }

    pub(super) fn is_connected(&self) -> bool {
        self.connected
    }

    /// For an outgoing connection in progress: `Ok(true)` once connected, `Ok(false)` while
    /// still connecting, `Err` if the connect failed.
    pub(super) fn poll_connect(&mut self) -> io::Result<bool> {
        if self.connected {
            return Ok(true);
        }
        if let Some(e) = self.stream.tcp().take_error()? {
            return Err(e);
        }
        match self.stream.tcp().peer_addr() {
            Ok(_) => {
                self.connected = true;
                self.stream.tcp().set_nodelay(true)?;
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }
}
