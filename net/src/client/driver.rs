//! The session thread: owns the client session (id, request numbers), the connection to the
//! primary, and the one request in flight. It finds the primary, retries the same request
//! number across failover, acknowledges pushed messages, and shows each message once.

use super::connection::{Connection, FromReader, SendError};
use super::{ClientError, ClientOptions, Incoming};
use chat_core::chat::{ChatError, Message, Op, Reply};
use chat_core::config::ReplicaAddr;
use chat_core::ids::{ClientId, MessageId, ReplicaId, RequestNo};
use chat_core::password::Password;
use chat_core::service::Request;
use chat_core::wire::{ClientToServer, PasswordAction, ServerToClient, MAX_FAILED_LOGIN_DELAY};
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Most message ids acknowledged by one `Op::Ack` (keeps the request far below the limit).
const ACK_BATCH: usize = 1024;

/// Everything the session thread reacts to.
#[derive(Debug)]
pub(crate) enum Input {
    /// A request from the user; the answer goes to `answer`.
    Request {
        ask: Ask,
        answer: Sender<Result<Reply, ClientError>>,
    },
    Reader(FromReader),
    Stop,
}

/// One request as the user asked it: an operation, or a create or login with a password
/// (which travels as `ClientToServer::WithPassword`; the password is never shown).
#[derive(Debug)]
pub(crate) enum Ask {
    Op(Op),
    WithPassword {
        action: PasswordAction,
        user: String,
        password: Password,
    },
}

impl Ask {
    /// The frame that sends this request as number `request` of session `client`; a retry
    /// sends the same frame again.
    fn message(&self, client: ClientId, request: RequestNo) -> ClientToServer {
        match self {
            Ask::Op(op) => ClientToServer::Request(Request {
                client,
                request,
                op: op.clone(),
            }),
            Ask::WithPassword {
                action,
                user,
                password,
            } => ClientToServer::WithPassword {
                client,
                request,
                action: *action,
                user: user.clone(),
                password: password.clone(),
            },
        }
    }

    /// How much longer than usual the primary may hold back the reply: a failed login
    /// with a password is answered late on purpose.
    fn held_back(&self) -> Duration {
        match self {
            Ask::WithPassword {
                action: PasswordAction::Login,
                ..
            } => MAX_FAILED_LOGIN_DELAY,
            _ => Duration::ZERO,
        }
    }

    /// Whether the reply depends on (or sets) the session's login.
    fn shows_login(&self) -> bool {
        match self {
            Ask::Op(op) => matches!(
                op,
                Op::Login { .. }
                    | Op::Send { .. }
                    | Op::Deliver
                    | Op::Ack { .. }
                    | Op::Logout
                    | Op::Delete
            ),
            Ask::WithPassword { action, .. } => *action == PasswordAction::Login,
        }
    }
}

/// Why a request is in flight, and who waits for its reply.
#[derive(Debug)]
enum Purpose {
    /// Request 1 of the session; the user waits for it only in `Client::connect`.
    Open(Option<Sender<Result<Reply, ClientError>>>),
    User(Sender<Result<Reply, ClientError>>),
    /// Acknowledges pushed messages; with no ids, probes a new connection (see
    /// `Session::verified`) so that pushes flow again after a failover while the user idles.
    Ack,
}

#[derive(Debug)]
struct InFlight {
    request: RequestNo,
    ask: Ask,
    purpose: Purpose,
    /// Give up after this.
    give_up_at: Instant,
    /// Try the next replica if no reply has come by then.
    retry_at: Instant,
    /// The connection it was first sent on: a reply to a request sent on one connection only
    /// was computed after that connection's `Attach` (not taken from the client table).
    first_sent_on: Option<u64>,
}

/// The session thread's ends of its channels with the `Client` and the reader threads.
pub(crate) struct Channels {
    pub(crate) inbox: Receiver<Input>,
    /// For the reader threads.
    pub(crate) inbox_sender: Sender<Input>,
    pub(crate) incoming: Sender<Incoming>,
    /// Set when the `Client` is dropped: stop retrying at once.
    pub(crate) stop: Arc<AtomicBool>,
}

pub(crate) struct Session {
    replicas: Vec<ReplicaAddr>,
    max_frame: u32,
    options: ClientOptions,
    channels: Channels,

    client: ClientId,
    next_request: RequestNo,
    opened: bool,
    logged_in: bool,

    conn: Option<Connection>,
    /// Number of the latest connection; reports from older ones are stale.
    generation: u64,
    /// Index in `replicas` of the replica to use.
    target: usize,
    /// Attempts since the last reply, and the pause after the next full round of replicas.
    tries: usize,
    backoff: Duration,
    last_problem: String,
    /// Whether a request first sent on the current connection has shown this session's login
    /// as it is. After a reconnection it has not: the connection is not yet attached at the
    /// primary (pushes would not come), and a `LoggedOut` notice sent meanwhile is lost. A
    /// logged-in session then probes with a fresh `Ack`.
    verified: bool,

    jobs: VecDeque<(Ask, Sender<Result<Reply, ClientError>>)>,
    in_flight: Option<InFlight>,
    /// Ids of messages shown to the user (message ids are unique over the whole service).
    shown: HashSet<MessageId>,
    /// Pushed messages not yet acknowledged.
    unacked: BTreeSet<MessageId>,
}

impl Session {
    pub(crate) fn new(
        replicas: Vec<ReplicaAddr>,
        max_frame: u32,
        options: ClientOptions,
        channels: Channels,
    ) -> Session {
        let backoff = options.first_backoff;
        Session {
            replicas,
            max_frame,
            options,
            channels,
            client: rand::random(),
            next_request: 1,
            opened: false,
            logged_in: false,
            conn: None,
            generation: 0,
            target: 0,
            tries: 0,
            backoff,
            last_problem: "no replica tried yet".to_owned(),
            verified: false,
            jobs: VecDeque::new(),
            in_flight: None,
            shown: HashSet::new(),
            unacked: BTreeSet::new(),
        }
    }

    /// Runs until `Input::Stop`.
    pub(crate) fn run(mut self) {
        loop {
            if self.in_flight.is_none() {
                self.start_next();
            }
            let input = match &self.in_flight {
                Some(f) => {
                    let wait = f.retry_at.saturating_duration_since(Instant::now());
                    match self.channels.inbox.recv_timeout(wait) {
                        Ok(input) => input,
                        Err(RecvTimeoutError::Timeout) => {
                            self.last_problem = format!(
                                "no reply within {} ms",
                                self.options.reply_timeout.as_millis()
                            );
                            self.drop_connection();
                            self.advance();
                            self.send_in_flight();
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
                None => match self.channels.inbox.recv() {
                    Ok(input) => input,
                    Err(_) => return,
                },
            };
            match input {
                Input::Request { ask, answer } => self.jobs.push_back((ask, answer)),
                Input::Reader(FromReader::Frame { generation, frame }) => {
                    self.on_frame(generation, frame)
                }
                Input::Reader(FromReader::Closed { generation, why }) => {
                    if generation == self.generation && self.conn.is_some() {
                        self.last_problem = why;
                        self.connection_lost();
                    }
                }
                Input::Stop => return,
            }
        }
    }

    /// Starts the next request, if any is due: the session's opening, acknowledgements,
    /// the user's next request, or a probe of a new connection.
    fn start_next(&mut self) {
        if !self.opened {
            if self.jobs.is_empty() {
                return;
            }
            let waiter = match self.jobs.front() {
                Some((Ask::Op(Op::OpenSession), _)) => {
                    self.jobs.pop_front().map(|(_, answer)| answer)
                }
                _ => None,
            };
            return self.issue(Ask::Op(Op::OpenSession), Purpose::Open(waiter));
        }
        if self.logged_in && !self.unacked.is_empty() {
            let ids: Vec<MessageId> = self.unacked.iter().copied().take(ACK_BATCH).collect();
            for id in &ids {
                self.unacked.remove(id);
            }
            return self.issue(Ask::Op(Op::Ack { ids }), Purpose::Ack);
        }
        if let Some((ask, answer)) = self.jobs.pop_front() {
            return self.issue(ask, Purpose::User(answer));
        }
        if self.logged_in && !self.verified {
            self.issue(Ask::Op(Op::Ack { ids: Vec::new() }), Purpose::Ack);
        }
    }

    fn issue(&mut self, ask: Ask, purpose: Purpose) {
        let now = Instant::now();
        self.in_flight = Some(InFlight {
            request: self.next_request,
            ask,
            purpose,
            give_up_at: now + self.options.give_up_after,
            retry_at: now,
            first_sent_on: None,
        });
        self.next_request += 1;
        self.send_in_flight();
    }

    /// Sends the request in flight on the current connection, connecting first (to the next
    /// replica, round-robin) as needed; gives up at the request's deadline.
    fn send_in_flight(&mut self) {
        loop {
            let Some(f) = &self.in_flight else { return };
            if self.channels.stop.load(Ordering::Relaxed) {
                return self.fail_in_flight(ClientError::Stopped);
            }
            if Instant::now() >= f.give_up_at {
                let error = ClientError::Unavailable {
                    waited: self.options.give_up_after,
                    last: self.last_problem.clone(),
                };
                return self.fail_in_flight(error);
            }
            let message = f.ask.message(self.client, f.request);
            if self.conn.is_none() {
                if let Err(problem) = self.connect_target() {
                    self.last_problem = problem;
                    self.advance();
                    continue;
                }
            }
            let Some(conn) = &mut self.conn else { continue };
            match conn.send(&message) {
                Ok(()) => {
                    if let Some(f) = &mut self.in_flight {
                        f.retry_at =
                            Instant::now() + self.options.reply_timeout + f.ask.held_back();
                        f.first_sent_on.get_or_insert(self.generation);
                    }
                    return;
                }
                Err(SendError::Encode(e)) => {
                    return self.fail_in_flight(ClientError::TooLarge(e.to_string()))
                }
                Err(SendError::Io(problem)) => {
                    self.last_problem = problem;
                    self.drop_connection();
                    self.advance();
                }
            }
        }
    }

    fn connect_target(&mut self) -> Result<(), String> {
        let replica = &self.replicas[self.target];
        let (mut conn, decoder) = Connection::open(
            &replica.host,
            replica.client_port,
            self.max_frame,
            self.options.connect_timeout,
        )?;
        conn.send(&ClientToServer::Attach {
            client: self.client,
        })
        .map_err(|e| e.to_string())?;
        self.generation += 1;
        conn.spawn_reader(decoder, self.generation, self.channels.inbox_sender.clone())?;
        self.conn = Some(conn);
        Ok(())
    }

    fn drop_connection(&mut self) {
        self.conn = None;
        self.verified = false;
    }

    fn connection_lost(&mut self) {
        self.drop_connection();
        self.advance();
        if self.in_flight.is_some() {
            self.send_in_flight();
        }
    }

    /// Moves to the next replica.
    fn advance(&mut self) {
        self.target = (self.target + 1) % self.replicas.len();
        self.count_try();
    }

    /// Counts an attempt; after each full round of replicas, pauses (a view change takes a
    /// moment), a little longer each round.
    fn count_try(&mut self) {
        self.tries += 1;
        if self.tries.is_multiple_of(self.replicas.len()) {
            thread::sleep(self.backoff);
            self.backoff = (self.backoff * 2).min(self.options.max_backoff);
        }
    }

    fn on_frame(&mut self, generation: u64, frame: ServerToClient) {
        match frame {
            // A reply is good from any connection: the server answers a retry from its
            // client table, so every reply to this number is the same.
            ServerToClient::Reply { request, reply } => {
                if self
                    .in_flight
                    .as_ref()
                    .is_some_and(|f| f.request == request)
                {
                    self.complete(reply);
                }
            }
            ServerToClient::Redirect { primary } => {
                if generation != self.generation || self.conn.is_none() {
                    return;
                }
                self.last_problem = format!("replica {} is not the primary", self.target);
                self.drop_connection();
                match self.index_of(primary) {
                    Some(i) if i != self.target => {
                        self.target = i;
                        self.count_try();
                    }
                    _ => self.advance(),
                }
                if self.in_flight.is_some() {
                    self.send_in_flight();
                }
            }
            ServerToClient::Push(message) => {
                self.unacked.insert(message.id);
                self.show(message);
            }
            ServerToClient::LoggedOut => {
                self.forget_login();
                let _ = self.channels.incoming.send(Incoming::LoggedOut);
            }
            ServerToClient::Status(_) => {}
        }
    }

    fn index_of(&self, primary: Option<ReplicaId>) -> Option<usize> {
        let primary = primary?;
        self.replicas.iter().position(|r| r.id == primary)
    }

    fn show(&mut self, message: Message) {
        if self.shown.insert(message.id) {
            let _ = self.channels.incoming.send(Incoming::Message(message));
        }
    }

    fn complete(&mut self, reply: Reply) {
        let Some(f) = self.in_flight.take() else {
            return;
        };
        self.reset_retries();
        if f.first_sent_on == Some(self.generation) && f.ask.shows_login() {
            self.verified = true;
        }
        let reply = match reply {
            Reply::Delivered { mut messages, more } => {
                for m in &messages {
                    self.unacked.remove(&m.id);
                }
                messages.retain(|m| self.shown.insert(m.id));
                Reply::Delivered { messages, more }
            }
            other => other,
        };
        match &reply {
            Reply::LoggedIn { .. } => self.logged_in = true,
            Reply::LoggedOut | Reply::Deleted => {
                self.forget_login();
            }
            // The `LoggedOut` notice went to a connection this session no longer had (it is
            // not resent): the service's answer is the evidence.
            Reply::Error(ChatError::NotLoggedIn) if self.logged_in => {
                self.forget_login();
                let _ = self.channels.incoming.send(Incoming::LoggedOut);
            }
            _ => {}
        }
        let expired = reply == Reply::Error(ChatError::SessionExpired);
        if expired {
            self.start_new_session();
        } else if matches!(f.purpose, Purpose::Open(_)) {
            self.opened = true;
        }
        match f.purpose {
            Purpose::Open(Some(answer)) | Purpose::User(answer) => {
                let _ = answer.send(Ok(reply));
            }
            Purpose::Open(None) | Purpose::Ack => {
                if expired {
                    let _ = self.channels.incoming.send(Incoming::SessionExpired);
                }
            }
        }
    }

    /// The session is logged out: no user, and no pushed messages left to acknowledge.
    fn forget_login(&mut self) {
        self.logged_in = false;
        self.unacked.clear();
    }

    /// Retries start afresh for the next request.
    fn reset_retries(&mut self) {
        self.tries = 0;
        self.backoff = self.options.first_backoff;
    }

    /// The cluster evicted this session: the next request opens a fresh one (logged out).
    fn start_new_session(&mut self) {
        self.client = rand::random();
        self.next_request = 1;
        self.opened = false;
        self.forget_login();
        self.drop_connection();
    }

    /// The request in flight cannot be done; the requests queued behind it waited through the
    /// same outage, so they get the same answer.
    fn fail_in_flight(&mut self, error: ClientError) {
        let Some(f) = self.in_flight.take() else {
            return;
        };
        self.reset_retries();
        let queued = std::mem::take(&mut self.jobs);
        if matches!(error, ClientError::Unavailable { .. }) {
            for (_, answer) in queued {
                let _ = answer.send(Err(error.clone()));
            }
        } else {
            self.jobs = queued;
        }
        match f.purpose {
            Purpose::Open(Some(answer)) | Purpose::User(answer) => {
                let _ = answer.send(Err(error));
            }
            Purpose::Open(None) | Purpose::Ack => {
                let _ = self.channels.incoming.send(Incoming::Trouble(error));
            }
        }
    }
}
