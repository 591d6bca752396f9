//! The client session, sans-IO: what a chat client does that is not sockets or threads.
//!
//! One [`Session`] is one user agent's conversation with the replicated service: it numbers
//! requests (1 is always `OpenSession`), keeps one request outstanding, finds the primary
//! (any replica redirects), retries the *same* request number on the next replica when a
//! connection dies, is refused or a reply is late, re-attaches after a reconnection, shows each
//! pushed message once and acknowledges it, and after a reconnection while logged in makes one
//! small request so that a logout notice lost with the old connection is noticed.
//!
//! Shaped like the replica: the driver submits requests ([`Session::submit`]), reports what
//! the network did ([`Session::handle`]), calls [`Session::handle_timeout`] at
//! [`Session::poll_timeout`], and carries out every [`Output`] of [`Session::poll_output`]:
//! open, write and close connections, and hand answers and notices to the user. `net::client`
//! drives it over sockets; the simulator drives the same session over its virtual network.

mod session;
mod waiting;

#[cfg(test)]
mod tests;

pub use session::{InFlight, Session};
pub use waiting::{Tried, Waiting};

use crate::chat::{Message, Op, Reply};
use crate::ids::{ClientId, MessageId, ReplicaId, RequestNo};
use crate::password::Password;
use crate::service::Request;
use crate::time::Duration;
use crate::wire::{ClientToServer, PasswordAction, ServerToClient, MAX_FAILED_LOGIN_DELAY};

/// A connection, numbered by the session; reports about one it no longer uses are ignored.
pub type ConnId = u64;

/// A user's request, numbered by the session in the order submitted.
pub type Ticket = u64;

/// Timing of retries and of the status. The defaults suit a cluster on the defaults of
/// `config.yaml`.
#[derive(Clone, Debug)]
pub struct Options {
    /// Try the next replica when a reply takes longer than this.
    pub reply_timeout: Duration,
    /// Try the next replica when a connection is not open after this.
    pub connect_timeout: Duration,
    /// Fail a request with [`Failure::Unavailable`] when no primary answered it for this
    /// long; `None`: keep trying (the status says what is going on).
    pub give_up_after: Option<Duration>,
    /// Pause after each full round of replicas without a primary; doubled each round. Short
    /// at first: a failover on evidence takes tens of milliseconds (issue 8).
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Report [`Output::Waiting`] once a request has waited this long.
    pub status_after: Duration,
    /// The index (in the replica list) of the replica tried first.
    pub first_replica: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            reply_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            give_up_after: None,
            first_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(1),
            status_after: Duration::from_millis(500),
            first_replica: 0,
        }
    }
}

/// One request as the user asked it: an operation, or a create or login with a password
/// (which travels as `ClientToServer::WithPassword`; the password is never shown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ask {
    Op(Op),
    WithPassword {
        action: PasswordAction,
        user: String,
        password: Password,
    },
}

impl From<Op> for Ask {
    fn from(op: Op) -> Ask {
        Ask::Op(op)
    }
}

impl From<&Op> for Ask {
    fn from(op: &Op) -> Ask {
        Ask::Op(op.clone())
    }
}

impl Ask {
    /// The frame that sends this request as number `request` of session `client`; a retry
    /// sends the same frame again.
    pub fn message(&self, client: ClientId, request: RequestNo) -> ClientToServer {
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

/// What the driver reports about a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnEvent {
    /// The connection asked for by [`Output::Connect`] is open (greeted).
    Connected(ConnId),
    /// A frame arrived on the connection.
    Frame { conn: ConnId, frame: ServerToClient },
    /// The connection could not be opened, or it ended.
    Closed { conn: ConnId, why: Closed },
    /// The request in flight cannot be encoded within the frame limit: no replica would take
    /// it.
    TooLarge(String),
}

/// Why a connection is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Closed {
    /// The replica refused it (nothing listens: it is down).
    Refused,
    /// Anything else, in the driver's words (reset, closed by the server, a bad frame, ...).
    Other(String),
}

/// What the session asks of its driver, or tells its user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Open connection `conn` to `replica`, send `Hello`, then report [`ConnEvent::Connected`]
    /// (or [`ConnEvent::Closed`]).
    Connect { conn: ConnId, replica: ReplicaId },
    /// Write `message` on `conn`.
    Send {
        conn: ConnId,
        message: ClientToServer,
    },
    /// Close `conn`; the session ignores it from now on.
    Close(ConnId),
    /// Request `request` of session `client` starts (for observers: the simulator's
    /// history). `ticket` is the user's, or `None` for the session's own requests (opening,
    /// acknowledgements, the probe after a reconnection).
    Issued {
        ticket: Option<Ticket>,
        client: ClientId,
        request: RequestNo,
        ask: Ask,
    },
    /// Request `request` of session `client` was answered.
    Answered {
        ticket: Option<Ticket>,
        answer: Answer,
    },
    /// A user's request could not be done.
    Failed { ticket: Ticket, failure: Failure },
    /// Something the user should see without having asked.
    Notice(Notice),
    /// A request has waited [`Options::status_after`] without an answer: what was tried and
    /// why it failed, updated on every change; `None` once the wait is over.
    Waiting(Option<Waiting>),
}

/// The answer to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub client: ClientId,
    pub request: RequestNo,
    /// As the service sent it (every reply to a number is the same).
    pub reply: Reply,
    /// Messages in a `Delivered` reply that the user was already shown (pushed earlier).
    pub shown_before: Vec<MessageId>,
}

impl Answer {
    /// The reply as the user sees it: each message once.
    pub fn for_user(self) -> Reply {
        match self.reply {
            Reply::Delivered { mut messages, more } if !self.shown_before.is_empty() => {
                messages.retain(|m| !self.shown_before.contains(&m.id));
                Reply::Delivered { messages, more }
            }
            reply => reply,
        }
    }
}

/// Why a request was not done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No primary answered within [`Options::give_up_after`].
    Unavailable {
        waited: Duration,
        /// What the replicas did when last tried.
        tried: Waiting,
    },
    /// The request does not fit in a frame.
    TooLarge(String),
    /// The user cancelled the wait.
    Cancelled {
        /// Whether the request went out: if so it may still be applied, else it was not.
        sent: bool,
    },
}

impl Failure {
    /// Whether the request may have been applied (it was written to some replica).
    pub fn maybe_applied(&self) -> bool {
        match self {
            Failure::Unavailable { tried, .. } => tried.sent,
            Failure::TooLarge(_) => false,
            Failure::Cancelled { sent } => *sent,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let applied = if self.maybe_applied() {
            "it may have been applied"
        } else {
            "not sent"
        };
        match self {
            Failure::Unavailable { waited, tried } => write!(
                f,
                "no primary answered within {} s ({tried}); {applied}",
                waited.as_secs()
            ),
            Failure::TooLarge(why) => write!(f, "request too large: {why}"),
            Failure::Cancelled { .. } => write!(f, "cancelled; {applied}"),
        }
    }
}

/// What the service tells the user without being asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A message for the logged-in user (each id once).
    Message(Message),
    /// Another login took this session's account, or the account was deleted.
    LoggedOut,
    /// The service forgot this session (too long idle among too many sessions): the user is
    /// logged out, and the next request starts a new session.
    SessionExpired,
    /// A request the session made on its own (an acknowledgement) could not be done.
    Trouble(Failure),
}
