//! The client library: a blocking handle on one chat session with the replicated service.
//!
//! [`Client::connect`] starts a session thread that runs the core's client session
//! (`chat_core::client::Session`: request numbering, one request in flight, failover with the
//! same request number, pushes shown once and acknowledged) over sockets. Messages pushed by
//! the service arrive on the [`Incoming`] receiver, each id once (also when a later `6|`
//! delivers it again). A request that waits shows its status on the client's
//! [`WaitDisplay`]; a [`Canceller`] ends the wait.

mod connection;
mod driver;

use crate::tls::ClientTls;
use chat_core::chat::{Message, Op, Reply};
use chat_core::client::{Ask, Failure, Notice, Session};
pub use chat_core::client::{Tried, Waiting};
use chat_core::config::{Config, ReplicaAddr};
use chat_core::password::Password;
use chat_core::peer_auth::RemoveOrder;
use chat_core::replica::Status;
use chat_core::wire::{ClientToServer, PasswordAction, ServerToClient};
use connection::Connection;
use driver::{Driver, Progress, ToSession};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Timing of retries and of the status (the core session's options). By default a request
/// waits for a primary as long as it takes; `give_up_after` bounds the wait.
pub type ClientOptions = chat_core::client::Options;

/// Shows the status of a request that waits (`Some`), and clears it (`None`). Called on the
/// thread that waits, so a terminal can redraw one line in place.
pub type WaitDisplay = Box<dyn FnMut(Option<&Waiting>) + Send>;

/// What the service tells the user without being asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A message for the logged-in user (each id once).
    Message(Message),
    /// Another login took this session's account, or the account was deleted.
    LoggedOut,
    /// The service forgot this session (too long idle among too many sessions): the user is
    /// logged out, and the next request starts a new session.
    SessionExpired,
    /// A request the library made on its own (an acknowledgement) could not be done.
    Trouble(ClientError),
    /// While the user idles, no replica serves (said once; the session keeps trying). Only
    /// for a client opened with [`Client::connect_showing`].
    Unavailable(Waiting),
    /// A primary answers again after `Unavailable`.
    Available,
}

impl From<Notice> for Incoming {
    fn from(notice: Notice) -> Incoming {
        match notice {
            Notice::Message(m) => Incoming::Message(m),
            Notice::LoggedOut => Incoming::LoggedOut,
            Notice::SessionExpired => Incoming::SessionExpired,
            Notice::Trouble(failure) => Incoming::Trouble(ClientError::Failed(failure)),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// No primary answered in time, the request does not fit in a frame, or the user
    /// cancelled the wait; the text says whether the request may have been applied.
    #[error("{0}")]
    Failed(Failure),
    #[error("{0}")]
    Replica(String),
    #[error("the client session stopped")]
    Stopped,
}

/// A session with the chat service. Dropping it ends the session thread.
pub struct Client {
    inbox: Sender<ToSession>,
    /// Callers waiting in `request` now.
    waiting: Arc<AtomicUsize>,
    display: Mutex<WaitDisplay>,
}

/// Cancels the requests waiting in a [`Client`], from any thread (e.g. on Ctrl-C).
#[derive(Clone)]
pub struct Canceller {
    inbox: Sender<ToSession>,
    waiting: Arc<AtomicUsize>,
}

impl Canceller {
    /// Cancels the waiting requests; returns whether any was waiting.
    pub fn cancel(&self) -> bool {
        if self.waiting.load(Ordering::SeqCst) == 0 {
            return false;
        }
        self.inbox.send(ToSession::Cancel).is_ok()
    }
}

impl Client {
    /// Opens a session with the cluster of `config`, with default timing.
    pub fn connect(config: &Config) -> Result<(Client, Receiver<Incoming>), ClientError> {
        Client::connect_with(config, ClientOptions::default())
    }

    /// Opens a session: returns once a primary has answered its first request.
    pub fn connect_with(
        config: &Config,
        options: ClientOptions,
    ) -> Result<(Client, Receiver<Incoming>), ClientError> {
        Client::open(config, options, None)
    }

    /// Opens a session that says what is going on: `display` shows what a request waits for
    /// (the opening too), and [`Incoming::Unavailable`] / [`Incoming::Available`] say when no
    /// replica serves while the user idles.
    pub fn connect_showing(
        config: &Config,
        options: ClientOptions,
        display: WaitDisplay,
    ) -> Result<(Client, Receiver<Incoming>), ClientError> {
        Client::open(config, options, Some(display))
    }

    fn open(
        config: &Config,
        options: ClientOptions,
        display: Option<WaitDisplay>,
    ) -> Result<(Client, Receiver<Incoming>), ClientError> {
        let (inbox, inbox_receiver) = mpsc::channel();
        let (incoming, incoming_receiver) = mpsc::channel();
        let connect_timeout = options.connect_timeout;
        let tls = client_tls(config)?;
        let ids = config.replicas.iter().map(|r| r.id).collect();
        let driver = Driver {
            session: Session::new(ids, options, Box::new(rand::random)),
            replicas: config.replicas.clone(),
            max_frame: config.net.max_frame_bytes,
            tls,
            connect_timeout,
            inbox: inbox_receiver,
            inbox_sender: inbox.clone(),
            incoming,
            epoch: Instant::now(),
            conns: Default::default(),
            connecting: Default::default(),
            waiters: Default::default(),
            tell_availability: display.is_some(),
            told_unavailable: false,
        };
        thread::Builder::new()
            .name("chat-client-session".to_owned())
            .spawn(move || driver.run())
            .map_err(|e| ClientError::Replica(format!("cannot start the session thread: {e}")))?;
        let client = Client {
            inbox,
            waiting: Arc::new(AtomicUsize::new(0)),
            display: Mutex::new(display.unwrap_or_else(|| Box::new(|_| {}))),
        };
        client.request(Op::OpenSession)?;
        Ok((client, incoming_receiver))
    }

    /// Sends one request and waits for its reply (through any failover).
    pub fn request(&self, op: Op) -> Result<Reply, ClientError> {
        self.ask(Ask::Op(op))
    }

    /// Creates an account with a password, or logs into one (`1|<user>|<password>`,
    /// `2|<user>|<password>`), numbered and retried like any request. A wrong user name or
    /// password gets one answer, `ChatError::BadCredentials`, and later than a right one.
    pub fn request_with_password(
        &self,
        action: PasswordAction,
        user: String,
        password: Password,
    ) -> Result<Reply, ClientError> {
        self.ask(Ask::WithPassword {
            action,
            user,
            password,
        })
    }

    /// A handle that cancels the waiting requests (Ctrl-C).
    pub fn canceller(&self) -> Canceller {
        Canceller {
            inbox: self.inbox.clone(),
            waiting: self.waiting.clone(),
        }
    }

    fn ask(&self, ask: Ask) -> Result<Reply, ClientError> {
        let (answer, progress) = mpsc::channel();
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let result = self.wait_for(ask, answer, progress);
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        result
    }

    fn wait_for(
        &self,
        ask: Ask,
        answer: Sender<Progress>,
        progress: Receiver<Progress>,
    ) -> Result<Reply, ClientError> {
        self.inbox
            .send(ToSession::Request { ask, answer })
            .map_err(|_| ClientError::Stopped)?;
        let mut shown = false;
        loop {
            match progress.recv().map_err(|_| ClientError::Stopped) {
                Ok(Progress::Waiting(waiting)) => {
                    shown = waiting.is_some();
                    self.show(waiting.as_ref());
                }
                Ok(Progress::Done(result)) => {
                    if shown {
                        self.show(None);
                    }
                    return result;
                }
                Err(e) => {
                    if shown {
                        self.show(None);
                    }
                    return Err(e);
                }
            }
        }
    }

    fn show(&self, waiting: Option<&Waiting>) {
        let mut display = self.display.lock().unwrap_or_else(|e| e.into_inner());
        display(waiting);
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.inbox.send(ToSession::Stop);
    }
}

/// The client's TLS settings from `config` (`None` without a `tls:` section).
pub fn client_tls(config: &Config) -> Result<Option<ClientTls>, ClientError> {
    config
        .tls
        .as_ref()
        .map(ClientTls::load)
        .transpose()
        .map_err(|e| ClientError::Replica(e.to_string()))
}

/// Asks one replica for its status (`chat-admin status`); `tls` from [`client_tls`].
pub fn status(
    replica: &ReplicaAddr,
    max_frame: u32,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> Result<Status, ClientError> {
    let message = ClientToServer::Status;
    ask(
        replica,
        &message,
        max_frame,
        tls,
        timeout,
        |answer| match answer {
            ServerToClient::Status(status) => Some(status),
            _ => None,
        },
    )
}

/// Hands the operator's removal order to `replica` (see `chat-admin remove`) and returns
/// its answer: whether it took it, and a line saying what it did or why not.
pub fn remove(
    replica: &ReplicaAddr,
    order: RemoveOrder,
    max_frame: u32,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> Result<(bool, String), ClientError> {
    let message = ClientToServer::Remove(order);
    ask(
        replica,
        &message,
        max_frame,
        tls,
        timeout,
        |answer| match answer {
            ServerToClient::RemoveAnswer { taken, message } => Some((taken, message)),
            _ => None,
        },
    )
}

/// Sends one admin `message` to `replica` on a connection of its own, and returns the first
/// answer `pick` takes (within `timeout`).
fn ask<T>(
    replica: &ReplicaAddr,
    message: &ClientToServer,
    max_frame: u32,
    tls: Option<&ClientTls>,
    timeout: Duration,
    pick: impl Fn(ServerToClient) -> Option<T>,
) -> Result<T, ClientError> {
    let (mut conn, mut decoder) =
        Connection::open(&replica.host, replica.client_port, max_frame, tls, timeout)
            .map_err(|e| ClientError::Replica(e.to_string()))?;
    let problem =
        |e: String| ClientError::Replica(format!("{}:{}: {e}", replica.host, replica.client_port));
    conn.send(message).map_err(|e| problem(e.to_string()))?;
    let deadline = Instant::now() + timeout;
    loop {
        match conn.read_one::<ServerToClient>(&mut decoder, deadline) {
            Ok(answer) => {
                if let Some(found) = pick(answer) {
                    return Ok(found);
                }
            }
            Err(e) => return Err(problem(e)),
        }
    }
}

#[cfg(test)]
mod tests;
