//! Role-typed state: what a replica knows that only matters in its current role.

use super::primary::PrimaryState;
use super::proposal::Preparing;
use super::Role;
use crate::ids::ReplicaId;

/// The replica's role together with the state that role owns. Leaving a role drops its state.
#[derive(Debug)]
pub(super) enum RoleState {
    /// A member (or a rejoining replica) following the primary it last heard, if any.
    Backup { primary: Option<ReplicaId> },
    /// Phase 1 of our own proposal: collecting promises.
    Preparing(Preparing),
    /// Proposer of our accepted view: phase 2 while `proposal` is set (bringing members to
    /// our log, counting acceptances), then the primary of the established view.
    Primary(PrimaryState),
}

impl RoleState {
    pub fn role(&self) -> Role {
        match self {
            RoleState::Backup { .. } => Role::Backup,
            RoleState::Preparing(_) => Role::Candidate,
            RoleState::Primary(p) if p.proposal.is_some() => Role::Candidate,
            RoleState::Primary(_) => Role::Primary,
        }
    }

    pub fn as_primary(&mut self) -> Option<&mut PrimaryState> {
        match self {
            RoleState::Primary(p) => Some(p),
            _ => None,
        }
    }

    pub fn primary_ref(&self) -> Option<&PrimaryState> {
        match self {
            RoleState::Primary(p) => Some(p),
            _ => None,
        }
    }
}
