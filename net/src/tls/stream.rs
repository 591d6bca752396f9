//! The replica's non-blocking stream: plain TCP, or TLS driven by hand from the mio loop
//! (`read_tls` / `process_new_packets` / `write_tls`, never blocking).

use super::failed;
use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::io::{self, ErrorKind, Read, Write};

#[derive(Debug)]
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

#[derive(Debug)]
pub(crate) struct TlsStream {
    tcp: TcpStream,
    session: rustls::Connection,
}

impl Stream {
    pub(crate) fn plain(tcp: TcpStream) -> Stream {
        Stream::Plain(tcp)
    }

    pub(super) fn tls(tcp: TcpStream, session: rustls::Connection) -> Stream {
        Stream::Tls(Box::new(TlsStream { tcp, session }))
    }

    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => &tls.tcp,
        }
    }

    /// Reads decrypted bytes. `Ok(0)`: the other side closed. A failed handshake or a
    /// corrupt record is an error that [`super::failure`] explains; the alert that tells
    /// the other side is sent first (best effort).
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.read(buf),
            Stream::Tls(tls) => tls.read(buf),
        }
    }

    /// Takes bytes to send. With TLS they are encrypted at once and sent as far as the
    /// socket takes them; the rest waits in the session ([`wants_write`](Self::wants_write)).
    pub(crate) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.write(buf),
            Stream::Tls(tls) => tls.write(buf),
        }
    }

    /// Sends what TLS has waiting (handshake messages, encrypted records, alerts) as far as
    /// the socket takes it.
    pub(crate) fn send_pending(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(_) => Ok(()),
            Stream::Tls(tls) => tls.send_pending(),
        }
    }

    /// Whether TLS holds bytes for the socket.
    pub(crate) fn wants_write(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(tls) => tls.session.wants_write(),
        }
    }
}

impl TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.session.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                // The socket ended without TLS's close_notify: closed all the same.
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            match self.session.read_tls(&mut self.tcp) {
                Ok(0) => return Ok(0),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let handshaking = self.session.is_handshaking();
            if let Err(e) = self.session.process_new_packets() {
                let _ = self.send_pending();
                return Err(failed(&e, handshaking));
            }
            // Handshake replies go out now: nothing else would ask for them.
            self.send_pending()?;
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send_pending()?;
        if self.session.wants_write() {
            return Err(ErrorKind::WouldBlock.into());
        }
        let n = self.session.writer().write(buf)?;
        self.send_pending()?;
        if n == 0 && !buf.is_empty() {
            // The session's buffer is full (a handshake not yet done).
            return Err(ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn send_pending(&mut self) -> io::Result<()> {
        while self.session.wants_write() {
            match self.session.write_tls(&mut self.tcp) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Polled as its socket.
impl Source for Stream {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        self.tcp_mut().register(registry, token, interest)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        self.tcp_mut().reregister(registry, token, interest)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.tcp_mut().deregister(registry)
    }
}

impl Stream {
    fn tcp_mut(&mut self) -> &mut TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => &mut tls.tcp,
        }
    }
}
