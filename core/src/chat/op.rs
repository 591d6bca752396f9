//! The operations of the chat service and their replies: the vocabulary every layer shares.

use crate::ids::{ClientId, MessageId};
use serde::{Deserialize, Serialize};

/// One operation, as ordered in the replicated log. The comments give the client command of
/// the original exercise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// First request of every client session (request number 1). No chat effect: it only
    /// creates the session's row in the client table, so re-applying it is harmless.
    OpenSession,
    /// `0|<regex>`: list the accounts whose whole name matches the pattern.
    List { pattern: String },
    /// `1|<user>`
    Create { user: String },
    /// `2|<user>`: logging in takes the account over from any other session. Refused with
    /// [`ChatError::BadCredentials`] if the account has a password.
    Login { user: String },
    /// `1|<user>|<password>`, as ordered by the primary's driver once it hashed the password
    /// (the plain password never enters the log). Clients cannot send it.
    CreateWithPassword { user: String, password_hash: String },
    /// `2|<user>|<password>`, as ordered by the primary's driver once it verified the password
    /// against `password_hash`, the account's hash at that time. Applies only if the account
    /// still has that very hash, so a delete and re-create in between fails safely. Clients
    /// cannot send it.
    LoginVerified { user: String, password_hash: String },
    /// `2|<user>|<password>` that the primary's driver refused (wrong password, no such
    /// account, or an account without a password): always answered
    /// [`ChatError::BadCredentials`]. Ordered like any request, so
    /// that a retry gets the answer the first attempt got, from the client table. Clients
    /// cannot send it.
    LoginRefused { user: String },
    /// `3|`
    Logout,
    /// `4|`: delete the logged-in account, with its queue; the session ends.
    Delete,
    /// `5|<user>|<text>`
    Send { to: String, text: String },
    /// `6|`: take every queued message of the logged-in account.
    Deliver,
    /// The client has shown these pushed messages: they leave the queue.
    Ack { ids: Vec<MessageId> },
}

impl Op {
    /// Whether applying this op may change whether `user`'s account exists or what password
    /// it has ([`super::AccountLock`]): a create of that name, or any `Delete` (which account
    /// it deletes depends on the session's login when it is applied). The primary's driver
    /// reads an account only once no such op is ordered and still unapplied (the read rule,
    /// see `Replica::account_lock`).
    pub fn may_change_account(&self, user: &str) -> bool {
        match self {
            Op::Create { user: name } | Op::CreateWithPassword { user: name, .. } => name == user,
            Op::Delete => true,
            _ => false,
        }
    }
}

/// A chat message as a recipient sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub from: String,
    pub text: String,
}

/// The answer to one operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    SessionOpened,
    /// The first `limits.list_max` matching names in name order, and how many matched in all.
    Accounts {
        names: Vec<String>,
        total: u64,
    },
    Created,
    /// `waiting`: how many messages are queued for the account.
    LoggedIn {
        user: String,
        waiting: u64,
    },
    LoggedOut,
    Deleted,
    Sent {
        id: MessageId,
    },
    /// The oldest queued messages (at most `limits.deliver_max`), oldest first; they are no
    /// longer queued. `more` messages are still queued (`6|` again takes them).
    Delivered {
        messages: Vec<Message>,
        more: u64,
    },
    Acked,
    Error(ChatError),
}

/// Every way an operation can fail. Each has its own clear message (`Display`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ChatError {
    #[error("invalid pattern: {0}")]
    BadPattern(String),
    #[error("pattern too long (at most {max} bytes)")]
    PatternTooLong { max: u32 },
    #[error("user name must not be empty")]
    NameEmpty,
    #[error("user name too long (at most {max} bytes)")]
    NameTooLong { max: u32 },
    #[error("user name must not contain spaces, '|' or control characters")]
    NameBadChar,
    #[error("user name already taken")]
    NameTaken,
    #[error("no such user")]
    NoSuchUser,
    /// The one answer to every failed login with a password (and to a login without one on
    /// an account that has one), so that it tells nothing of which part was wrong.
    #[error("wrong user name or password")]
    BadCredentials,
    #[error("not logged in")]
    NotLoggedIn,
    #[error("message text must not be empty")]
    TextEmpty,
    #[error("message too long (at most {max} characters)")]
    TextTooLong { max: u32 },
    #[error("recipient's queue is full (at most {max} messages)")]
    QueueFull { max: u32 },
    #[error("the service holds too many undelivered messages (at most {max} bytes): try later")]
    ServiceFull { max: u64 },
    #[error("too many accounts (at most {max})")]
    TooManyAccounts { max: u32 },
    #[error("session expired: start a new session")]
    SessionExpired,
    /// Refused by the primary before ordering (see `replica::Options::max_append_bytes`).
    #[error("request too large (at most {max} bytes)")]
    RequestTooLarge { max: u32 },
}

/// What applying an operation asks the driver to tell clients besides the reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// Push a message to the session where its recipient is logged in. The message stays
    /// queued until that client acknowledges it (`Op::Ack`).
    Push { client: ClientId, message: Message },
    /// The session was logged out by another login to the same account, or its account was
    /// deleted elsewhere.
    LoggedOut { client: ClientId },
}
