//! Everything that crosses a socket. Each connection opens with a [`Hello`] frame naming the
//! speaker's role; the frames after it are [`ClientToServer`]/[`ServerToClient`] on a client
//! connection and [`PeerMessage`] on a peer connection. Frames are postcard values in
//! length-prefixed frames ([`crate::codec::frame`]).

use crate::chat::{Message, Reply};
use crate::ids::{ClientId, ReplicaId};
pub use crate::replica::PeerMessage;
use crate::replica::Status;
use crate::service::Request;
use serde::{Deserialize, Serialize};

/// "CHAT" in ASCII.
pub const MAGIC: u32 = 0x4348_4154;
pub const PROTOCOL_VERSION: u16 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Client,
    Replica(ReplicaId),
}

/// The first frame of every connection, in both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub magic: u32,
    pub version: u16,
    pub role: Role,
}

impl Hello {
    pub fn new(role: Role) -> Hello {
        Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            role,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientToServer {
    /// Sent on every (re)connection: route this session's pushes here, and push again what it
    /// has not acknowledged.
    Attach { client: ClientId },
    Request(Request),
    /// Admin: this replica's status.
    Status,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerToClient {
    Reply { request: u64, reply: Reply },
    /// This replica is not the primary; try `primary` if known, else the next replica.
    Redirect { primary: Option<ReplicaId> },
    /// A message for the logged-in user; acknowledge it with `Op::Ack`.
    Push(Message),
    /// Another login took this session's account, or the account was deleted.
    LoggedOut,
    Status(Status),
}
