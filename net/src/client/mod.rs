//! The client library: a blocking handle on one chat session with the replicated service.
//!
//! [`Client::connect`] starts a session thread that finds the primary (any replica redirects
//! to it) and keeps one request in flight at a time. When the connection dies or a reply is
//! late, the thread sends the *same* request number to the next replica until a primary
//! answers, so a request is applied exactly once and the session (its login) survives a
//! failover. Messages pushed by the service arrive on the [`Incoming`] receiver, each id once
//! (also when a later `6|` delivers it again), and are acknowledged by the library.

mod connection;
mod session;

use chat_core::chat::{Message, Op, Reply};
use chat_core::config::{Config, ReplicaAddr};
use chat_core::password::Password;
use chat_core::replica::Status;
use chat_core::wire::{ClientToServer, PasswordAction, ServerToClient};
use connection::Connection;
use session::{Ask, Channels, Input, Session};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Timing of retries. The defaults suit a cluster on the defaults of `config.yaml`.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Try the next replica when a reply takes longer than this.
    pub reply_timeout: Duration,
    /// Report [`ClientError::Unavailable`] when no primary answered a request for this long.
    pub give_up_after: Duration,
    /// For connecting to one replica and for its `Hello`.
    pub connect_timeout: Duration,
    /// Pause after the first full round of replicas without a primary; doubled each round.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            reply_timeout: Duration::from_secs(2),
            give_up_after: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(1),
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
        }
    }
}

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
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("no primary answered within {} s ({last})", waited.as_secs())]
    Unavailable { waited: Duration, last: String },
    #[error("request too large: {0}")]
    TooLarge(String),
    #[error("{0}")]
    Replica(String),
    #[error("the client session stopped")]
    Stopped,
}

/// A session with the chat service. Dropping it ends the session thread.
pub struct Client {
    inbox: Sender<Input>,
    stop: Arc<AtomicBool>,
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
        let (inbox, inbox_receiver) = mpsc::channel();
        let (incoming, incoming_receiver) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let session = Session::new(
            config.replicas.clone(),
            config.net.max_frame_bytes,
            options,
            Channels {
                inbox: inbox_receiver,
                inbox_sender: inbox.clone(),
                incoming,
                stop: stop.clone(),
            },
        );
        thread::Builder::new()
            .name("chat-client-session".to_owned())
            .spawn(move || session.run())
            .map_err(|e| ClientError::Replica(format!("cannot start the session thread: {e}")))?;
        let client = Client { inbox, stop };
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

    fn ask(&self, ask: Ask) -> Result<Reply, ClientError> {
        let (answer, reply) = mpsc::channel();
        self.inbox
            .send(Input::Request { ask, answer })
            .map_err(|_| ClientError::Stopped)?;
        reply.recv().map_err(|_| ClientError::Stopped)?
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.inbox.send(Input::Stop);
    }
}

/// Asks one replica for its status (`chat-admin status`).
pub fn status(
    replica: &ReplicaAddr,
    max_frame: u32,
    timeout: Duration,
) -> Result<Status, ClientError> {
    let (mut conn, mut decoder) =
        Connection::open(&replica.host, replica.client_port, max_frame, timeout)
            .map_err(ClientError::Replica)?;
    let problem =
        |e: String| ClientError::Replica(format!("{}:{}: {e}", replica.host, replica.client_port));
    conn.send(&ClientToServer::Status)
        .map_err(|e| problem(e.to_string()))?;
    let deadline = Instant::now() + timeout;
    loop {
        match conn.read_one::<ServerToClient>(&mut decoder, deadline) {
            Ok(ServerToClient::Status(status)) => return Ok(status),
            Ok(_) => {}
            Err(e) => return Err(problem(e)),
        }
    }
}

#[cfg(test)]
mod tests;
