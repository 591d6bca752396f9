//! The load's clients, all on one thread: each runs the core's client session
//! (`chat_core::client::Session`: request numbers, failover, retries) over non-blocking
//! sockets (mio). The library's `Client` spends three thread hand-offs on every request; on
//! a 2-core machine that cost was as large as the replicas' own (NOTEBOOK, 2026-12-03), so
//! the load generator would have measured itself. Plain TCP only: `--tls on` keeps the
//! library's client.

use chat_core::chat::{Op, Reply};
use chat_core::client::{Answer, Ask, Closed, ConnEvent, ConnId, Options, Output, Session, Ticket};
use chat_core::codec::frame::{self, FrameDecoder};
use chat_core::codec::handshake::check_hello;
use chat_core::config::Config;
use chat_core::ids::ReplicaId;
use chat_core::time::Instant as CoreInstant;
use chat_core::wire::{Endpoint, Hello, ServerToClient};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

/// What one client does next; each gets the reply of the request before.
pub trait Script {
    /// The next request, or `None` when this client is done (for now).
    fn next(&mut self, now: Instant) -> Option<Op>;
    /// The reply to the last request (`Err`: the session gave up on it).
    fn answered(&mut self, now: Instant, reply: Result<Reply, String>);
}

/// Many sessions over one poll.
pub struct Mux<S> {
    poll: Poll,
    epoch: Instant,
    max_frame: u32,
    addrs: HashMap<ReplicaId, SocketAddr>,
    clients: Vec<Client<S>>,
    /// Open or opening connections, by token (= the index into `links`).
    links: Vec<Option<Link>>,
    by_conn: HashMap<(usize, ConnId), usize>,
}

struct Client<S> {
    session: Session,
    script: S,
    waiting_for: Option<Ticket>,
    done: bool,
}

struct Link {
    client: usize,
    conn: ConnId,
    stream: TcpStream,
    /// Connected at the TCP level (our `Hello` is on its way).
    open: bool,
    /// The server's `Hello` arrived: the session has been told it is connected.
    greeted: bool,
    decoder: FrameDecoder,
    out: Vec<u8>,
}

impl<S: Script> Mux<S> {
    pub fn new(config: &Config, scripts: Vec<S>) -> Result<Mux<S>, String> {
        if config.tls.is_some() {
            return Err("the one-thread load driver speaks plain TCP only".into());
        }
        let mut addrs = HashMap::new();
        for r in &config.replicas {
            let addr = (r.host.as_str(), r.client_port)
                .to_socket_addrs()
                .map_err(|e| format!("{}:{}: {e}", r.host, r.client_port))?
                .next()
                .ok_or_else(|| format!("{}:{}: no address", r.host, r.client_port))?;
            addrs.insert(r.id, addr);
        }
        let ids: Vec<ReplicaId> = config.replicas.iter().map(|r| r.id).collect();
        let clients = scripts
            .into_iter()
            .enumerate()
            .map(|(i, script)| {
                // Spread the first connections over the replicas, as separate processes'
                // random choices would.
                let options = Options {
                    first_replica: i,
                    ..Options::default()
                };
                Client {
                    session: Session::new(ids.clone(), options, Box::new(rand::random)),
                    script,
                    waiting_for: None,
                    done: false,
                }
            })
            .collect();
        Ok(Mux {
            poll: Poll::new().map_err(|e| e.to_string())?,
            epoch: Instant::now(),
            max_frame: config.net.max_frame_bytes,
            addrs,
            clients,
            links: Vec::new(),
            by_conn: HashMap::new(),
        })
    }

    /// Runs every client until its script says it is done, or until `stop` returns true
    /// (asked at least every `tick`). Sessions and connections stay open for the next run.
    pub fn run(&mut self, tick: Duration, mut stop: impl FnMut() -> bool) {
        let mut events = Events::with_capacity(1024);
        for i in 0..self.clients.len() {
            self.clients[i].done = false;
            self.next_request(i);
            self.carry_out(i);
        }
        while !stop() && self.clients.iter().any(|c| !c.done) {
            let due = self.clients.iter().map(|c| c.session.poll_timeout()).min();
            let wait = due.filter(|&d| d != CoreInstant::NEVER).map_or(tick, |d| {
                Duration::from_micros(d.0.saturating_sub(self.now().0)).min(tick)
            });
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != ErrorKind::Interrupted {
                    break;
                }
            }
            let mut touched = Vec::new();
            for event in events.iter() {
                let token = event.token().0;
                if let Some(client) = self.on_ready(token) {
                    touched.push(client);
                }
            }
            let now = self.now();
            for (i, c) in self.clients.iter_mut().enumerate() {
                if c.session.poll_timeout() <= now {
                    c.session.handle_timeout(now);
                    touched.push(i);
                }
            }
            touched.sort_unstable();
            touched.dedup();
            for i in touched {
                self.carry_out(i);
            }
        }
    }

    pub fn scripts(&mut self) -> impl Iterator<Item = &mut S> {
        self.clients.iter_mut().map(|c| &mut c.script)
    }

    pub fn into_scripts(self) -> Vec<S> {
        self.clients.into_iter().map(|c| c.script).collect()
    }

    fn now(&self) -> CoreInstant {
        CoreInstant(self.epoch.elapsed().as_micros() as u64)
    }

    /// Submits the client's next request, if its script has one.
    fn next_request(&mut self, i: usize) {
        let now = self.now();
        let c = &mut self.clients[i];
        if c.waiting_for.is_some() || c.done {
            return;
        }
        match c.script.next(Instant::now()) {
            Some(op) => c.waiting_for = Some(c.session.submit(now, Ask::Op(op))),
            None => c.done = true,
        }
    }

    /// Carries out the session's outputs until it has none.
    fn carry_out(&mut self, i: usize) {
        while let Some(output) = self.clients[i].session.poll_output() {
            match output {
                Output::Connect { conn, replica } => self.connect(i, conn, replica),
                Output::Send { conn, message } => {
                    if let Some(&token) = self.by_conn.get(&(i, conn)) {
                        match frame::encode(&message, self.max_frame) {
                            Ok(bytes) => self.write(token, &bytes),
                            Err(e) => {
                                let now = self.now();
                                let event = ConnEvent::TooLarge(e.to_string());
                                self.clients[i].session.handle(now, event);
                            }
                        }
                    }
                }
                Output::Close(conn) => {
                    if let Some(token) = self.by_conn.remove(&(i, conn)) {
                        self.drop_link(token);
                    }
                }
                Output::Answered { ticket, answer } => self.answer(i, ticket, Ok(answer)),
                Output::Failed { ticket, failure } => {
                    self.answer(i, Some(ticket), Err(format!("{failure:?}")))
                }
                Output::Issued { .. } | Output::Notice(_) | Output::Waiting(_) => {}
            }
        }
    }

    fn answer(&mut self, i: usize, ticket: Option<Ticket>, answer: Result<Answer, String>) {
        let c = &mut self.clients[i];
        if ticket.is_none() || ticket != c.waiting_for {
            return; // The session's own requests (opening, acknowledgements).
        }
        c.waiting_for = None;
        c.script
            .answered(Instant::now(), answer.map(Answer::for_user));
        self.next_request(i);
    }

    fn connect(&mut self, client: usize, conn: ConnId, replica: ReplicaId) {
        let opened = self
            .addrs
            .get(&replica)
            .ok_or_else(|| Closed::Other(format!("replica {replica} is not configured")))
            .and_then(|&addr| TcpStream::connect(addr).map_err(closed_by));
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(why) => {
                let now = self.now();
                let event = ConnEvent::Closed { conn, why };
                self.clients[client].session.handle(now, event);
                return;
            }
        };
        let token = self
            .links
            .iter()
            .position(Option::is_none)
            .unwrap_or_else(|| {
                self.links.push(None);
                self.links.len() - 1
            });
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(token), interest)
        {
            let now = self.now();
            let why = Closed::Other(e.to_string());
            self.clients[client]
                .session
                .handle(now, ConnEvent::Closed { conn, why });
            return;
        }
        self.links[token] = Some(Link {
            client,
            conn,
            stream,
            open: false,
            greeted: false,
            decoder: FrameDecoder::new(self.max_frame),
            out: Vec::new(),
        });
        self.by_conn.insert((client, conn), token);
    }

    /// A socket is ready: returns the client whose session it fed, if any.
    fn on_ready(&mut self, token: usize) -> Option<usize> {
        let link = self.links.get_mut(token)?.as_mut()?;
        let client = link.client;
        if !link.open {
            match link.stream.take_error() {
                Ok(Some(e)) | Err(e) => return self.close(token, closed_by(e)),
                Ok(None) => {}
            }
            if link.stream.peer_addr().is_err() {
                return None; // Still connecting.
            }
            link.open = true;
            let _ = link.stream.set_nodelay(true);
            let hello = frame::encode(&Hello::new(Endpoint::Client), self.max_frame)
                .expect("a hello fits a frame");
            self.write(token, &hello);
        }
        self.flush(token);
        if self.links[token].is_none() {
            return Some(client); // Closed while writing: its session heard.
        }
        let mut buf = [0u8; 64 * 1024];
        loop {
            let link = self.links.get_mut(token)?.as_mut()?;
            match link.stream.read(&mut buf) {
                Ok(0) => return self.close(token, Closed::Other("closed by the server".into())),
                Ok(n) => link.decoder.push(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.close(token, closed_by(e)),
            }
        }
        let now = self.now();
        let link = self.links.get_mut(token)?.as_mut()?;
        if !link.greeted {
            match link.decoder.next::<Hello>() {
                Ok(None) => return None,
                Ok(Some(hello)) if check_hello(&hello).is_ok() => {
                    link.greeted = true;
                    let conn = link.conn;
                    self.clients[client]
                        .session
                        .handle(now, ConnEvent::Connected(conn));
                }
                Ok(Some(_)) | Err(_) => {
                    return self.close(token, Closed::Other("bad handshake".into()))
                }
            }
        }
        loop {
            let link = self.links.get_mut(token)?.as_mut()?;
            match link.decoder.next::<ServerToClient>() {
                Ok(Some(frame)) => {
                    let conn = link.conn;
                    let event = ConnEvent::Frame { conn, frame };
                    self.clients[client].session.handle(now, event);
                }
                Ok(None) => return Some(client),
                Err(e) => return self.close(token, Closed::Other(format!("bad frame: {e}"))),
            }
        }
    }

    fn write(&mut self, token: usize, bytes: &[u8]) {
        if let Some(Some(link)) = self.links.get_mut(token) {
            link.out.extend_from_slice(bytes);
        }
        self.flush(token);
    }

    /// Writes what is queued on an open connection, as far as the socket takes it.
    fn flush(&mut self, token: usize) {
        let Some(Some(link)) = self.links.get_mut(token) else {
            return;
        };
        while link.open && !link.out.is_empty() {
            match link.stream.write(&link.out) {
                Ok(n) => {
                    link.out.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    // The session hears it; its outputs are carried out by the caller.
                    self.close(token, closed_by(e));
                    return;
                }
            }
        }
    }

    /// The connection ended: tells its session; returns the client.
    fn close(&mut self, token: usize, why: Closed) -> Option<usize> {
        let link = self.drop_link(token)?;
        self.by_conn.remove(&(link.client, link.conn));
        let now = self.now();
        let event = ConnEvent::Closed {
            conn: link.conn,
            why,
        };
        self.clients[link.client].session.handle(now, event);
        Some(link.client)
    }

    fn drop_link(&mut self, token: usize) -> Option<Link> {
        let mut link = self.links.get_mut(token)?.take()?;
        let _ = self.poll.registry().deregister(&mut link.stream);
        Some(link)
    }
}

fn closed_by(e: std::io::Error) -> Closed {
    if e.kind() == ErrorKind::ConnectionRefused {
        Closed::Refused
    } else {
        Closed::Other(e.to_string())
    }
}
