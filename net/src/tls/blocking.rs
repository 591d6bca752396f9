//! The client's blocking stream: plain TCP, or TLS shared by a reader thread and a writer.
//!
//! A rustls session is one object for both directions, so the two handles of a TLS stream
//! share it behind a mutex. The reader blocks on the socket *without* the lock and takes it
//! only to hand the bytes to the session; the writer takes it to encrypt and send.

use super::{failed, ClientTls};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

#[derive(Debug)]
pub struct BlockingStream {
    tcp: TcpStream,
    tls: Option<Arc<Mutex<rustls::ClientConnection>>>,
    /// Decrypted bytes not yet returned by `read` (each handle has its own; only one reads).
    plain: Vec<u8>,
}

impl BlockingStream {
    pub fn plain(tcp: TcpStream) -> BlockingStream {
        BlockingStream {
            tcp,
            tls: None,
            plain: Vec::new(),
        }
    }

    /// Runs the TLS handshake with the replica configured at `host`, by `deadline`.
    pub fn handshake(
        mut tcp: TcpStream,
        tls: &ClientTls,
        host: &str,
        deadline: Instant,
    ) -> io::Result<BlockingStream> {
        let mut session = tls.session(host)?;
        while session.is_handshaking() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    ErrorKind::TimedOut,
                    "TLS handshake: no answer in time",
                ));
            }
            tcp.set_read_timeout(Some(left))?;
            session.complete_io(&mut tcp)?;
        }
        tcp.set_read_timeout(None)?;
        Ok(BlockingStream {
            tcp,
            tls: Some(Arc::new(Mutex::new(session))),
            plain: Vec::new(),
        })
    }

    /// The socket, for its options (timeouts apply to every handle: they share it).
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// A second handle on the same stream (for the reader thread).
    pub fn try_clone(&self) -> io::Result<BlockingStream> {
        Ok(BlockingStream {
            tcp: self.tcp.try_clone()?,
            tls: self.tls.clone(),
            plain: Vec::new(),
        })
    }

    pub fn shutdown(&self) -> io::Result<()> {
        self.tcp.shutdown(Shutdown::Both)
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let Some(tls) = &self.tls else {
            return (&self.tcp).write_all(bytes);
        };
        let mut session = lock(tls);
        session.writer().write_all(bytes)?;
        send_pending(&mut session, &self.tcp)
    }

    /// Reads decrypted bytes (blocking, within the socket's read timeout); `Ok(0)` at the end.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return (&self.tcp).read(buf);
        };
        let mut raw = [0u8; 16 * 1024];
        while self.plain.is_empty() {
            let n = match (&self.tcp).read(&mut raw) {
                Ok(0) => return Ok(0),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut session = lock(tls);
            let mut bytes = &raw[..n];
            while !bytes.is_empty() {
                if session.read_tls(&mut bytes)? == 0 {
                    return Err(io::Error::other("TLS: the session takes no more bytes"));
                }
                if let Err(e) = session.process_new_packets() {
                    let _ = send_pending(&mut session, &self.tcp);
                    return Err(failed(&e, false));
                }
                // Drained after every record, so that the session's buffer never fills.
                match session.reader().read_to_end(&mut self.plain) {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == ErrorKind::UnexpectedEof => {}
                    Err(e) => return Err(e),
                }
            }
            send_pending(&mut session, &self.tcp)?;
            if self.plain.is_empty() && session.wants_read() && is_closed(&mut session) {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.plain.len());
        buf[..n].copy_from_slice(&self.plain[..n]);
        self.plain.drain(..n);
        Ok(n)
    }
}

/// Whether the other side sent TLS's close_notify.
fn is_closed(session: &mut rustls::ClientConnection) -> bool {
    matches!(session.reader().read(&mut [0u8; 1]), Ok(0))
}

fn lock(tls: &Mutex<rustls::ClientConnection>) -> MutexGuard<'_, rustls::ClientConnection> {
    tls.lock().unwrap_or_else(|e| e.into_inner())
}

fn send_pending(session: &mut rustls::ClientConnection, mut tcp: &TcpStream) -> io::Result<()> {
    while session.wants_write() {
        session.write_tls(&mut tcp)?;
    }
    tcp.flush()
}
