//! What a waiting request has tried: the status a client shows while no primary answers.

use crate::ids::ReplicaId;
use crate::time::Instant;
use std::fmt;

/// What a replica did when it was last tried for the request that waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tried {
    /// Being tried now: connecting, or waiting for its reply.
    Trying,
    /// It refused the connection: nothing listens there (down).
    Refused,
    /// The connection could not be opened (no answer in time, no address, ...).
    Unreachable(String),
    /// The open connection ended before the reply came.
    Lost(String),
    /// It answered that it is not the primary (and named the one it knows, if any).
    NotPrimary(Option<ReplicaId>),
    /// It took the request but did not answer in time.
    NoReply,
}

/// The status of a request that has not been answered yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// When the request started.
    pub since: Instant,
    /// Each replica (in the configured order) and what it did when last tried during this
    /// wait; `None` if it was not tried yet.
    pub replicas: Vec<(ReplicaId, Option<Tried>)>,
    /// Whether a user's request waits (else only the session's own, e.g. an acknowledgement).
    pub user: bool,
    /// Whether the request was written to some replica (it may have been applied).
    pub sent: bool,
}

impl Waiting {
    /// Whether every replica was tried during this wait and none is serving: down, not the
    /// primary, or silent.
    pub fn none_serving(&self) -> bool {
        self.replicas
            .iter()
            .all(|(_, tried)| tried.as_ref().is_some_and(|t| *t != Tried::Trying))
    }
}

impl fmt::Display for Tried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tried::Trying => write!(f, "trying"),
            Tried::Refused => write!(f, "down (refused)"),
            Tried::Unreachable(why) => write!(f, "unreachable ({why})"),
            Tried::Lost(why) => write!(f, "connection lost ({why})"),
            Tried::NotPrimary(_) => write!(f, "not primary"),
            Tried::NoReply => write!(f, "no reply"),
        }
    }
}

/// "replica 0 down (refused), replica 1 not primary, replica 2 trying".
impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (id, tried) in &self.replicas {
            let Some(tried) = tried else { continue };
            if !first {
                write!(f, ", ")?;
            }
            first = false;
            write!(f, "replica {id} {tried}")?;
        }
        if first {
            write!(f, "no replica tried yet")?;
        }
        Ok(())
    }
}
