//! `chat-admin remove <id>`: the operator declares a replica's host gone for good, the manual
//! form of crash evidence (rule 4(a)) for hosts that failed silently. With it a survivor may
//! leave out two silent replicas of three, which silence alone never allows.
//!
//! Silence is not evidence because a silent replica may be alive and cut off; the operator's
//! word replaces that knowledge, so it is only as good as the operator's. What cannot be
//! checked from here (the hosts stopped when they fell silent, and did not go on together
//! without this replica) is the operator's to know; what can be checked is refused here:
//! removing itself, a replica heard from lately, removing anything while rejoining (a
//! rejoining replica waits for the primary, or after everyone went down for every member of
//! the last view, whose disk may hold updates nobody else has), and removing anything after
//! a peer reported a higher view that leaves this replica out.

use super::Replica;
use crate::ids::ReplicaId;
use crate::time::Instant;

/// Why a removal is refused by this replica.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RemoveRefused {
    #[error("replica {0} is not in the configuration")]
    Unknown(ReplicaId),
    #[error("a replica does not remove itself")]
    Itself,
    #[error(
        "this replica is rejoining (restarted, or left out of the view): it waits for the \
         primary, or, after everyone went down, for every member of the last view, whose disk \
         may hold updates nobody else has; removing one of them could lose those"
    )]
    Rejoining,
    #[error("replica {peer} was heard from {ago_ms} ms ago: it is not gone")]
    Heard { peer: ReplicaId, ago_ms: u64 },
    #[error("replica {0} is in no view this replica knows of: there is nothing to remove")]
    NotAMember(ReplicaId),
    #[error(
        "replica {peer} reported a view above this replica's that leaves this one out: that \
         view may be serving, and this replica must rejoin it, not remove anyone"
    )]
    LeftOut { peer: ReplicaId },
}

impl Replica {
    /// Whether `chat-admin remove <peer>` may be carried out here now.
    pub fn may_remove(&self, now: Instant, peer: ReplicaId) -> Result<(), RemoveRefused> {
        if peer >= self.opts.replica_count {
            return Err(RemoveRefused::Unknown(peer));
        }
        if peer == self.opts.id {
            return Err(RemoveRefused::Itself);
        }
        if self.rejoining || !self.is_member() {
            return Err(RemoveRefused::Rejoining);
        }
        if !self.frontier().contains(peer) {
            return Err(RemoveRefused::NotAMember(peer));
        }
        // Reports of any age: the removed replica has been silent for a while, so the
        // freshness `frontier` asks for would hide the view it reported last.
        let me = self.opts.id;
        let mine = self.state.accepted.ballot;
        let above = self.reports.iter().find(|(_, h)| {
            h.report.accepted.ballot > mine && !h.report.accepted.members.contains(me)
        });
        if let Some((&peer, _)) = above {
            return Err(RemoveRefused::LeftOut { peer });
        }
        let now = self.now.max(now);
        if let Some(at) = self.leases.last_heard(peer) {
            let ago = now.saturating_sub(at);
            if ago <= self.opts.election_timeout {
                let ago_ms = ago.as_micros() as u64 / 1000;
                return Err(RemoveRefused::Heard { peer, ago_ms });
            }
        }
        Ok(())
    }

    /// `Input::Removed`: the operator's evidence (checked with [`Replica::may_remove`]).
    pub(super) fn on_removed(&mut self, peer: ReplicaId) {
        if self.may_remove(self.now, peer).is_err() {
            return;
        }
        self.leases.declare_removed(peer);
        self.on_evidence(peer);
    }
}
