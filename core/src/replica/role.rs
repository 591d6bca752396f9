//! Role-typed state: what a replica knows that only matters in its current role.

use super::primary::Primary;
use super::{PersistId, Role};
use crate::ids::ReplicaId;
use std::collections::BTreeSet;

/// The replica's role together with the state that role owns. Leaving a role drops its state.
#[derive(Debug)]
pub(super) enum RoleState {
    /// Following the primary of the current view, if one has been heard from.
    Backup { primary: Option<ReplicaId> },
    /// Asking for votes in the current view.
    Candidate(Candidate),
    /// Ordering, replicating and committing in the current view.
    Primary(Primary),
}

/// A candidate's election in progress.
#[derive(Debug)]
pub(super) struct Candidate {
    /// Who voted for us in this view, ourselves included.
    pub votes: BTreeSet<ReplicaId>,
    /// The persist id of our own vote: the votes count only once it is durable.
    pub own_vote: PersistId,
}

impl RoleState {
    pub fn role(&self) -> Role {
        match self {
            RoleState::Backup { .. } => Role::Backup,
            RoleState::Candidate(_) => Role::Candidate,
            RoleState::Primary(_) => Role::Primary,
        }
    }

    /// The primary of the current view as far as this replica knows (`me` if it is primary).
    pub fn primary(&self, me: ReplicaId) -> Option<ReplicaId> {
        match self {
            RoleState::Backup { primary } => *primary,
            RoleState::Candidate(_) => None,
            RoleState::Primary(_) => Some(me),
        }
    }

    pub fn is_primary(&self) -> bool {
        matches!(self, RoleState::Primary(_))
    }

    pub fn as_primary(&mut self) -> Option<&mut Primary> {
        match self {
            RoleState::Primary(p) => Some(p),
            _ => None,
        }
    }
}
