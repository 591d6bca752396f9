//! Ballots and views (issue 8, rule 1), and the protocol state a replica keeps durably.
//!
//! A *ballot* is `(number, proposer)`, ordered by number then proposer. It is carried as one
//! [`View`] number, `number << 8 | proposer`, which orders the same way: log entries, peer
//! messages and the status stamp it like the old view number, and at most one replica (the
//! proposer) is ever primary of a ballot. A *view* is a ballot and its members; its primary is
//! the ballot's proposer.

use crate::ids::{ReplicaId, View};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The ballot `(number, proposer)` as one ordered number.
pub fn ballot(number: u64, proposer: ReplicaId) -> View {
    number << 8 | u64::from(proposer)
}

/// The replica that proposed `ballot` (the primary of its view).
pub fn proposer(ballot: View) -> ReplicaId {
    (ballot & 0xff) as ReplicaId
}

/// The ballot's number.
pub fn number(ballot: View) -> u64 {
    ballot >> 8
}

/// A set of replica ids (at most 16; the configuration allows 9).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Members(pub u16);

impl Members {
    pub fn all(replica_count: u8) -> Members {
        Members(((1u32 << replica_count) - 1) as u16)
    }

    pub fn one(id: ReplicaId) -> Members {
        Members(1 << id)
    }

    pub fn contains(self, id: ReplicaId) -> bool {
        self.0 & (1 << id) != 0
    }

    pub fn with(self, id: ReplicaId) -> Members {
        Members(self.0 | 1 << id)
    }

    pub fn without(self, other: Members) -> Members {
        Members(self.0 & !other.0)
    }

    pub fn union(self, other: Members) -> Members {
        Members(self.0 | other.0)
    }

    pub fn intersects(self, other: Members) -> bool {
        self.0 & other.0 != 0
    }

    pub fn is_subset(self, of: Members) -> bool {
        self.0 & !of.0 == 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn iter(self) -> impl Iterator<Item = ReplicaId> {
        (0..16u8).filter(move |&i| self.contains(i))
    }
}

impl FromIterator<ReplicaId> for Members {
    fn from_iter<I: IntoIterator<Item = ReplicaId>>(iter: I) -> Members {
        iter.into_iter().fold(Members(0), Members::with)
    }
}

impl fmt::Debug for Members {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// A view: a ballot and its members; its primary is the ballot's proposer.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ViewDef {
    pub ballot: View,
    pub members: Members,
}

impl ViewDef {
    /// The first view: every configured replica, ballot zero, primary 0. Every replica
    /// starts its first life in it, established (as if agreed before anything happened).
    pub fn initial(replica_count: u8) -> ViewDef {
        ViewDef {
            ballot: 0,
            members: Members::all(replica_count),
        }
    }

    pub fn primary(&self) -> ReplicaId {
        proposer(self.ballot)
    }
}

impl fmt::Debug for ViewDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "b{}.{}{:?}",
            number(self.ballot),
            proposer(self.ballot),
            self.members
        )
    }
}

/// The protocol state a replica keeps durably (one `Record::Protocol` holds all of it), and
/// writes before any message that relies on it leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Durable {
    /// Bumped (and made durable) when the process starts, before it sends anything (rule 5).
    pub incarnation: u64,
    /// The highest ballot promised (phase 1) or accepted: nothing lower is voted for,
    /// accepted or acknowledged.
    pub promised: View,
    /// The highest view accepted or voted for.
    pub accepted: ViewDef,
    /// `accepted` was a vote (rule 4b) without the log, not an acceptance.
    pub vote: bool,
    /// The highest view this replica knows every member accepted.
    pub established: ViewDef,
}

impl Durable {
    /// A replica's state before its first life.
    pub fn initial(replica_count: u8) -> Durable {
        let view = ViewDef::initial(replica_count);
        Durable {
            incarnation: 0,
            promised: view.ballot,
            accepted: view,
            vote: false,
            established: view,
        }
    }
}

impl Durable {
    /// The state a replica starts from when its data directory was lost (`chat-server
    /// --rejoin`): it knows no view at all (no members), so that nobody counts what it
    /// reports, and it rejoins through the primary like any restarted replica (rule 7). Its
    /// earlier lives' counters are lost with the disk: `incarnation` must be above all of
    /// them (the caller derives it from the wall clock).
    pub fn lost(incarnation: u64) -> Durable {
        let nothing = ViewDef {
            ballot: 0,
            members: Members(0),
        };
        Durable {
            incarnation,
            promised: 0,
            accepted: nothing,
            vote: false,
            established: nothing,
        }
    }

    /// Whether this replica's disk was lost and it has accepted no view since (no real view
    /// is empty). Its first acceptance, as a member holding the proposer's whole log, ends
    /// that: from then on it reports what it accepted in this life.
    pub fn knows_no_view(&self) -> bool {
        self.accepted.members.is_empty()
    }
}

/// One life of a replica process: the durable counter, and a random id (two processes that
/// read the same counter still differ).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Incarnation {
    pub counter: u64,
    pub id: u64,
}

/// Why a proposal leaves a member of its base out (rule 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Exclusion {
    /// (a) This incarnation is proven crashed.
    Crashed(Incarnation),
    /// (b) Silent past its lease (needs a majority of the configured replicas).
    Silent,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ballots_order_by_number_then_proposer() {
        assert!(ballot(1, 2) < ballot(2, 0));
        assert!(ballot(2, 0) < ballot(2, 1));
        assert_eq!(proposer(ballot(7, 3)), 3);
        assert_eq!(number(ballot(7, 3)), 7);
        assert_eq!(ViewDef::initial(3).primary(), 0);
    }

    #[test]
    fn member_sets() {
        let m = Members::all(3);
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![0, 1, 2]);
        assert!(Members::one(1).is_subset(m));
        assert_eq!(m.without(Members::one(1)).len(), 2);
        assert_eq!([0u8, 2].into_iter().collect::<Members>(), Members(0b101));
    }
}
