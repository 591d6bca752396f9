//! The chat state machine: accounts, logins, queued and pushed messages.
//!
//! Deterministic: the same operations in the same order give the same replies, events and
//! snapshot bytes on every replica.

mod limits;
mod names;
mod op;
mod pattern;
mod state;

pub use limits::Limits;
pub use op::{ChatError, Event, Message, Op, Reply};
pub use state::{AccountLock, Chat, QueueTotals};
