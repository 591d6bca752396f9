//! The session thread: drives the core's client session (`chat_core::client::Session`) over
//! sockets. Connections open on short-lived threads (so a slow connect never holds up a
//! cancel or a reply), each open connection has a reader thread, and everything comes back
//! to this thread through one channel; answers go to the callers waiting in
//! `Client::request`, with the status of a long wait while it lasts.

use super::connection::{Connection, FromReader, OpenError, SendError};
use super::{ClientError, Incoming};
use crate::tls::ClientTls;
use chat_core::chat::Reply;
use chat_core::client::{
    Ask, Closed, ConnEvent, ConnId, Failure, Notice, Output, Session, Ticket, Waiting,
};
use chat_core::codec::frame::FrameDecoder;
use chat_core::config::ReplicaAddr;
use chat_core::time::Instant as CoreInstant;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

/// Everything the session thread reacts to.
#[derive(Debug)]
pub(crate) enum ToSession {
    /// A request from the user; the status and the answer go to `answer`.
    Request {
        ask: Ask,
        answer: Sender<Progress>,
    },
    /// The user gave up waiting (Ctrl-C).
    Cancel,
    Opened {
        conn: ConnId,
        result: Result<(Connection, FrameDecoder), OpenError>,
    },
    Reader(FromReader),
    Stop,
}

/// What a caller waiting for its answer hears.
#[derive(Debug)]
pub(crate) enum Progress {
    /// The request has waited a while: what was tried (`None` once the wait is over).
    Waiting(Option<Waiting>),
    Done(Result<Reply, ClientError>),
}

pub(crate) struct Driver {
    pub(crate) session: Session,
    pub(crate) replicas: Vec<ReplicaAddr>,
    pub(crate) max_frame: u32,
    /// The CA to check replicas against, if the configuration has `tls:`.
    pub(crate) tls: Option<ClientTls>,
    pub(crate) connect_timeout: Duration,
    pub(crate) inbox: Receiver<ToSession>,
    /// For the connecting and reader threads.
    pub(crate) inbox_sender: Sender<ToSession>,
    pub(crate) incoming: Sender<Incoming>,
    /// The clock's zero for the session.
    pub(crate) epoch: Instant,
    pub(crate) conns: BTreeMap<ConnId, Connection>,
    pub(crate) connecting: BTreeSet<ConnId>,
    pub(crate) waiters: BTreeMap<Ticket, Sender<Progress>>,
    /// Whether to tell the user, while idle, that no replica serves (and when one does).
    pub(crate) tell_availability: bool,
    /// Whether the user was told that no replica serves.
    pub(crate) told_unavailable: bool,
}

impl Driver {
    /// Runs until `ToSession::Stop` (or the `Client` is gone).
    pub(crate) fn run(mut self) {
        loop {
            while let Some(output) = self.session.poll_output() {
                self.carry_out(output);
            }
            let deadline = self.session.poll_timeout();
            let input = if deadline == CoreInstant::NEVER {
                self.inbox
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                let wait = deadline.saturating_sub(self.now());
                self.inbox.recv_timeout(wait)
            };
            match input {
                Ok(ToSession::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(input) => self.on_input(input),
                Err(RecvTimeoutError::Timeout) => {
                    let now = self.now();
                    self.session.handle_timeout(now);
                }
            }
        }
    }

    fn now(&self) -> CoreInstant {
        CoreInstant(self.epoch.elapsed().as_micros() as u64)
    }

    fn on_input(&mut self, input: ToSession) {
        let now = self.now();
        match input {
            ToSession::Request { ask, answer } => {
                let ticket = self.session.submit(now, ask);
                self.waiters.insert(ticket, answer);
            }
            ToSession::Cancel => self.session.cancel(now),
            ToSession::Opened { conn, result } => {
                if !self.connecting.remove(&conn) {
                    return; // the session gave up on it meanwhile; dropping closes it
                }
                let opened = result.and_then(|(connection, decoder)| {
                    connection
                        .spawn_reader(decoder, conn, self.inbox_sender.clone())
                        .map(|()| connection)
                        .map_err(|why| OpenError {
                            refused: false,
                            why,
                        })
                });
                let input = match opened {
                    Ok(connection) => {
                        self.conns.insert(conn, connection);
                        ConnEvent::Connected(conn)
                    }
                    Err(e) => ConnEvent::Closed {
                        conn,
                        why: if e.refused {
                            Closed::Refused
                        } else {
                            Closed::Other(e.why)
                        },
                    },
                };
                self.session.handle(now, input);
            }
            ToSession::Reader(FromReader::Frame { conn, frame }) => {
                self.session.handle(now, ConnEvent::Frame { conn, frame })
            }
            ToSession::Reader(FromReader::Closed { conn, why }) => {
                self.conns.remove(&conn);
                let why = Closed::Other(why);
                self.session.handle(now, ConnEvent::Closed { conn, why });
            }
            ToSession::Stop => {}
        }
    }

    fn carry_out(&mut self, output: Output) {
        match output {
            Output::Connect { conn, replica } => self.connect(conn, replica),
            Output::Send { conn, message } => {
                let Some(connection) = self.conns.get_mut(&conn) else {
                    return;
                };
                let input = match connection.send(&message) {
                    Ok(()) => return,
                    Err(SendError::Encode(e)) => ConnEvent::TooLarge(e.to_string()),
                    Err(SendError::Io(why)) => {
                        self.conns.remove(&conn);
                        ConnEvent::Closed {
                            conn,
                            why: Closed::Other(why),
                        }
                    }
                };
                let now = self.now();
                self.session.handle(now, input);
            }
            Output::Close(conn) => {
                self.conns.remove(&conn);
                self.connecting.remove(&conn);
            }
            Output::Issued { .. } => {}
            Output::Answered { ticket, answer } => {
                // Only an answer shows that a primary serves again (a wait also ends when
                // the request gives up or is cancelled).
                if std::mem::take(&mut self.told_unavailable) {
                    let _ = self.incoming.send(Incoming::Available);
                }
                if let Some(answer_to) = ticket.and_then(|t| self.waiters.remove(&t)) {
                    let _ = answer_to.send(Progress::Done(Ok(answer.for_user())));
                }
            }
            Output::Failed { ticket, failure } => {
                if let Some(answer_to) = self.waiters.remove(&ticket) {
                    let _ = answer_to.send(Progress::Done(Err(ClientError::Failed(failure))));
                }
            }
            // The session's own request (after a reconnection, while the user idles) gave up
            // waiting for a primary: said once per outage, like the idle wait (it retries).
            Output::Notice(Notice::Trouble(Failure::Unavailable { .. }))
                if self.told_unavailable => {}
            Output::Notice(notice) => {
                if matches!(notice, Notice::Trouble(Failure::Unavailable { .. })) {
                    self.told_unavailable = self.tell_availability;
                }
                let _ = self.incoming.send(Incoming::from(notice));
            }
            Output::Waiting(waiting) => self.show_waiting(waiting),
        }
    }

    /// A user's wait is shown to the callers waiting; the session's own (while the user
    /// idles) becomes one notice when no replica serves (and one when a primary answers:
    /// `Output::Answered`).
    fn show_waiting(&mut self, waiting: Option<Waiting>) {
        if let Some(w) = waiting.as_ref().filter(|w| !w.user) {
            if self.tell_availability && w.none_serving() && !self.told_unavailable {
                self.told_unavailable = true;
                let _ = self.incoming.send(Incoming::Unavailable(w.clone()));
            }
            return;
        }
        for answer_to in self.waiters.values() {
            let _ = answer_to.send(Progress::Waiting(waiting.clone()));
        }
    }

    /// Opens connection `conn` on a thread of its own; the result comes back as
    /// `ToSession::Opened`.
    fn connect(&mut self, conn: ConnId, replica: chat_core::ids::ReplicaId) {
        self.connecting.insert(conn);
        let to = self.inbox_sender.clone();
        let Some(addr) = self.replicas.iter().find(|r| r.id == replica).cloned() else {
            let result = Err(OpenError {
                refused: false,
                why: format!("replica {replica} is not configured"),
            });
            let _ = to.send(ToSession::Opened { conn, result });
            return;
        };
        let (max_frame, timeout, tls) = (self.max_frame, self.connect_timeout, self.tls.clone());
        let spawned = thread::Builder::new()
            .name(format!("chat-client-connect-{conn}"))
            .spawn(move || {
                let tls = tls.as_ref();
                let result =
                    Connection::open(&addr.host, addr.client_port, max_frame, tls, timeout);
                let _ = to.send(ToSession::Opened { conn, result });
            });
        if let Err(e) = spawned {
            let result = Err(OpenError {
                refused: false,
                why: format!("cannot start a thread: {e}"),
            });
            let _ = self.inbox_sender.send(ToSession::Opened { conn, result });
        }
    }
}
