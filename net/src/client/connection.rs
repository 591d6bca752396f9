//! One client connection to one replica: connect (and run TLS's handshake, if configured),
//! exchange `Hello`, then a reader thread turns the byte stream into frames while the owner
//! writes requests on the same stream.

use crate::tls::{self, BlockingStream, ClientTls};
use chat_core::client::ConnId;
use chat_core::codec::frame::{self, FrameDecoder, FrameError};
use chat_core::codec::handshake::check_hello;
use chat_core::wire::{Endpoint, Hello, ServerToClient};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc::Sender;
use std::thread;
use std::time::{Duration, Instant};

/// What the reader thread of connection `conn` reports.
#[derive(Debug)]
pub(crate) enum FromReader {
    Frame {
        conn: ConnId,
        frame: ServerToClient,
    },
    /// The connection ended: closed by the server, reset, or sent bytes that do not decode.
    Closed {
        conn: ConnId,
        why: String,
    },
}

/// Why a connection could not be opened.
#[derive(Debug)]
pub(crate) struct OpenError {
    /// Nothing listens there (the replica is down).
    pub(crate) refused: bool,
    pub(crate) why: String,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

impl OpenError {
    fn other(why: String) -> OpenError {
        OpenError {
            refused: false,
            why,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// The value does not fit in a frame: no replica would take it.
    #[error(transparent)]
    Encode(FrameError),
    /// The connection is broken.
    #[error("{0}")]
    Io(String),
}

/// A connected, greeted socket. Dropping it shuts the socket down, which ends its reader.
#[derive(Debug)]
pub(crate) struct Connection {
    stream: BlockingStream,
    max_frame: u32,
}

impl Connection {
    /// Connects to `host:port` (with TLS if `tls`) and exchanges `Hello`, within `timeout`
    /// per step. Bytes after the server's `Hello` stay in the returned decoder.
    pub(crate) fn open(
        host: &str,
        port: u16,
        max_frame: u32,
        tls: Option<&ClientTls>,
        timeout: Duration,
    ) -> Result<(Connection, FrameDecoder), OpenError> {
        let tcp = connect(host, port, timeout)?;
        let problem = |e: std::io::Error| {
            let why = tls::failure(&e).unwrap_or_else(|| e.to_string());
            OpenError::other(format!("{host}:{port}: {why}"))
        };
        tcp.set_nodelay(true).map_err(problem)?;
        tcp.set_write_timeout(Some(timeout)).map_err(problem)?;
        let stream = match tls {
            Some(tls) => BlockingStream::handshake(tcp, tls, host, Instant::now() + timeout)
                .map_err(problem)?,
            None => BlockingStream::plain(tcp),
        };
        let mut conn = Connection { stream, max_frame };
        conn.send(&Hello::new(Endpoint::Client))
            .map_err(|e| OpenError::other(format!("{host}:{port}: {e}")))?;
        let mut decoder = FrameDecoder::new(max_frame);
        let hello: Hello = conn
            .read_one(&mut decoder, Instant::now() + timeout)
            .map_err(|e| OpenError::other(format!("{host}:{port}: handshake: {e}")))?;
        check_hello(&hello).map_err(|e| OpenError::other(format!("{host}:{port}: {e}")))?;
        Ok((conn, decoder))
    }

    pub(crate) fn send<T: serde::Serialize>(&mut self, value: &T) -> Result<(), SendError> {
        let bytes = frame::encode(value, self.max_frame).map_err(SendError::Encode)?;
        self.stream
            .write_all(&bytes)
            .map_err(|e| SendError::Io(e.to_string()))
    }

    /// Reads frames until one decodes as `T` (blocking, for the handshake and `status`).
    pub(crate) fn read_one<T: serde::de::DeserializeOwned>(
        &mut self,
        decoder: &mut FrameDecoder,
        deadline: Instant,
    ) -> Result<T, String> {
        let mut buf = [0u8; 4096];
        loop {
            let next = decoder.next::<T>().map_err(|e| match e.is_tls_record() {
                true => "the replica speaks TLS, and this configuration has no `tls:` section \
                         (a client needs its `ca`)"
                    .to_owned(),
                false => e.to_string(),
            });
            if let Some(value) = next? {
                return Ok(value);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("no answer in time".to_owned());
            }
            self.stream
                .tcp()
                .set_read_timeout(Some(left))
                .map_err(|e| e.to_string())?;
            match self.stream.read(&mut buf) {
                Ok(0) => return Err("connection closed".to_owned()),
                Ok(n) => decoder.push(&buf[..n]),
                Err(e) => return Err(tls::failure(&e).unwrap_or_else(|| e.to_string())),
            }
        }
    }

    /// Starts the thread that reads the rest of the stream and reports to `to`.
    pub(crate) fn spawn_reader(
        &self,
        mut decoder: FrameDecoder,
        conn: ConnId,
        to: Sender<super::driver::ToSession>,
    ) -> Result<(), String> {
        let mut stream = self.stream.try_clone().map_err(|e| e.to_string())?;
        stream
            .tcp()
            .set_read_timeout(None)
            .map_err(|e| e.to_string())?;
        thread::Builder::new()
            .name(format!("chat-client-reader-{conn}"))
            .spawn(move || {
                let why = read_frames(&mut stream, &mut decoder, |frame| {
                    let event = FromReader::Frame { conn, frame };
                    to.send(super::driver::ToSession::Reader(event)).is_ok()
                });
                let _ = to.send(super::driver::ToSession::Reader(FromReader::Closed {
                    conn,
                    why,
                }));
            })
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let _ = self.stream.shutdown();
    }
}

/// Reads and decodes until the stream ends or `deliver` returns false; says why it stopped.
fn read_frames(
    stream: &mut BlockingStream,
    decoder: &mut FrameDecoder,
    mut deliver: impl FnMut(ServerToClient) -> bool,
) -> String {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        loop {
            match decoder.next::<ServerToClient>() {
                Ok(Some(frame)) => {
                    if !deliver(frame) {
                        return "client stopped".to_owned();
                    }
                }
                Ok(None) => break,
                Err(e) => return format!("bad frame from server: {e}"),
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => return "connection closed by the server".to_owned(),
            Ok(n) => decoder.push(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return tls::failure(&e).unwrap_or_else(|| e.to_string()),
        }
    }
}

fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, OpenError> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| OpenError::other(format!("{host}:{port}: {e}")))?
        .collect();
    let mut last = OpenError::other(format!("{host}:{port}: no address"));
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => {
                last = OpenError {
                    refused: e.kind() == std::io::ErrorKind::ConnectionRefused,
                    why: format!("{host}:{port}: {e}"),
                }
            }
        }
    }
    Err(last)
}
