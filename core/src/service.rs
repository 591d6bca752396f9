//! (stub: being written) The replicated service: the chat state machine plus the client table.
//!
//! The client table gives exactly-once semantics: each session remembers its latest request
//! number and reply; a retry gets the cached reply instead of a second application.

use crate::chat::{Chat, Event, Limits, Message, Op, Reply};
use crate::ids::{ClientId, OpIndex, RequestNo};
use serde::{Deserialize, Serialize};

/// A client's request, as it travels to the primary and sits in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub client: ClientId,
    pub request: RequestNo,
    pub op: Op,
}

/// The outcome of applying one committed request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The reply for the requesting client; `None` for a stale duplicate (a request older
    /// than the session's latest), which nobody waits for.
    pub reply: Option<Reply>,
    /// Pushes and notices for other sessions.
    pub events: Vec<Event>,
}

/// What the client table knows of a request before it is ordered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Not seen yet: order it.
    New,
    /// Already applied; this is its reply.
    Done(Reply),
    /// Older than the session's latest request: the client moved on, nobody waits for it.
    Stale,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    chat: Chat,
}

impl Service {
    pub fn new() -> Service {
        Service { chat: Chat::new() }
    }

    /// Applies the committed request at log position `index`. Duplicates are answered from the
    /// client table and change nothing.
    pub fn apply(&mut self, _limits: &Limits, _index: OpIndex, _req: &Request) -> Applied {
        todo!()
    }

    pub fn lookup(&self, _client: ClientId, _request: RequestNo) -> Lookup {
        todo!()
    }

    /// See [`Chat::unacked_pushes`].
    pub fn unacked_pushes(&self, client: ClientId) -> Vec<Message> {
        self.chat.unacked_pushes(client)
    }

    /// Canonical bytes of the whole state (postcard; maps are ordered, so equal states give
    /// equal bytes).
    pub fn snapshot(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("in-memory encoding cannot fail")
    }

    pub fn restore(bytes: &[u8]) -> Result<Service, postcard::Error> {
        postcard::from_bytes(bytes)
    }

    /// A short fingerprint of the state, for replica-agreement checks.
    pub fn digest(&self) -> u32 {
        crc32c::crc32c(&self.snapshot())
    }
}

impl Default for Service {
    fn default() -> Self {
        Service::new()
    }
}
