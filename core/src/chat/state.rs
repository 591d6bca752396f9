//! (stub: being written) The chat state.

use super::{Event, Limits, Message, Op, Reply};
use crate::ids::ClientId;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chat {}

impl Chat {
    pub fn new() -> Chat {
        Chat::default()
    }

    /// Applies `op` for the session `client`; events for other sessions go to `events`.
    pub fn apply(&mut self, _limits: &Limits, _client: ClientId, _op: &Op, _events: &mut Vec<Event>) -> Reply {
        todo!()
    }

    /// The session left the client table: it is logged out.
    pub fn end_session(&mut self, _client: ClientId) {
        todo!()
    }

    /// Messages pushed to `client`'s login and not yet acknowledged, oldest first: the driver
    /// pushes them again when the client reconnects.
    pub fn unacked_pushes(&self, _client: ClientId) -> Vec<Message> {
        todo!()
    }
}
