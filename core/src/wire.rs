//! Everything that crosses a socket. Each connection opens with a [`Hello`] frame naming who
//! sends it; the frames after it are [`ClientToServer`]/[`ServerToClient`] on a client
//! connection and [`PeerMessage`] on a peer connection. Frames are postcard values in
//! length-prefixed frames ([`crate::codec::frame`]).

use crate::chat::{Message, Reply};
use crate::ids::{ClientId, ReplicaId, RequestNo};
use crate::password::Password;
use crate::peer_auth::RemoveOrder;
pub use crate::replica::PeerMessage;
use crate::replica::Status;
use crate::service::Request;
use crate::time::Duration;
use serde::{Deserialize, Serialize};

/// "CHAT" in ASCII.
pub const MAGIC: u32 = 0x4348_4154;
pub const PROTOCOL_VERSION: u16 = 1;

/// Who sends a `Hello`: a client, or replica `id` (not to be confused with a replica's role,
/// `replica::Role`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Endpoint {
    Client,
    Replica(ReplicaId),
}

/// The first frame of every connection, in both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub magic: u32,
    pub version: u16,
    pub from: Endpoint,
}

impl Hello {
    pub fn new(from: Endpoint) -> Hello {
        Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            from,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientToServer {
    /// Sent on every (re)connection: route this session's pushes here, and push again what it
    /// has not acknowledged.
    Attach { client: ClientId },
    /// An ordinary request. Its op is never `CreateWithPassword`, `LoginVerified` or
    /// `LoginRefused`: only the primary orders those, and a connection that sends one is
    /// closed.
    Request(Request),
    /// `1|<user>|<password>` or `2|<user>|<password>`, numbered like any request. The primary
    /// hashes or verifies the password off its event loop and orders the matching op; the
    /// plain password goes no further than that.
    WithPassword {
        client: ClientId,
        request: RequestNo,
        action: PasswordAction,
        user: String,
        password: Password,
    },
    /// Admin: this replica's status.
    Status,
    /// Admin (`chat-admin remove`): the operator declares a replica's host gone for good.
    Remove(RemoveOrder),
}

/// The longest the primary holds back the answer to a failed login with a password (the
/// delay doubles with each consecutive failure for a user name, up to this): clients wait
/// this much longer for such an answer before they try another replica.
pub const MAX_FAILED_LOGIN_DELAY: Duration = Duration::from_secs(8);

/// What a [`ClientToServer::WithPassword`] asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PasswordAction {
    /// Create the account, protected by the password.
    Create,
    /// Log into the account with its password. An account without a password refuses it
    /// like a wrong password (`BadCredentials`): it is logged into with `2|<user>` alone.
    Login,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerToClient {
    Reply {
        request: u64,
        reply: Reply,
    },
    /// This replica is not the primary; try `primary` if known, else the next replica.
    Redirect {
        primary: Option<ReplicaId>,
    },
    /// A message for the logged-in user; acknowledge it with `Op::Ack`.
    Push(Message),
    /// Another login took this session's account, or the account was deleted.
    LoggedOut,
    Status(Status),
    /// The answer to [`ClientToServer::Remove`]: taken, or refused and why.
    RemoveAnswer {
        taken: bool,
        message: String,
    },
}
