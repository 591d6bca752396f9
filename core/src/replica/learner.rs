//! A returning replica learns the committed log before it is added back (rule 7).
//!
//! Adding a replica back is a view change, and nothing commits until every member of the
//! new view holds the proposer's whole log. If the returning replica had megabytes to fetch
//! in phase 2, clients waited for it (36-230 ms measured). So the primary of an established
//! view first streams its *committed* entries (and snapshot) to a rejoining replica outside
//! its view, a *learner*, and proposes to add it only once it is close behind. Phase 2 then
//! moves a few entries.
//!
//! Why this is safe: a learner's acknowledgements count towards nothing (it is not in
//! `PrimaryState::peers`, the only place `quorum` reads), and it only takes committed
//! entries, which every later established view holds too, so its log stays what it was or
//! becomes a prefix of the one committed history. It first promises the teacher's ballot
//! (a phase-1 promise, which only ever refuses more), so it never holds an entry of a ballot
//! above its promise. The model's `Action::Teach` explores it (NOTEBOOK.md, session 8).

use super::primary::Progress;
use super::role::RoleState;
use super::view::proposer;
use super::Report;
use crate::ids::{ReplicaId, View};
use crate::time::Instant;

/// What a primary tracks of one learner.
#[derive(Debug)]
pub(super) struct Learner {
    pub(super) progress: Progress,
    /// When it started learning from us: past [`Replica::learning_bound`], it is added
    /// however far behind it is (the way it was before learners).
    since: Instant,
}

impl super::Replica {
    /// Primary: `from`, outside our view, says it is rejoining. Starts teaching it unless it
    /// promised a higher ballot (then it cannot learn from us, and the view change that adds
    /// it, with a ballot above ours, will catch it up).
    pub(super) fn teach(&mut self, from: ReplicaId, report: &Report) {
        let now = self.now;
        let ours = self.state.accepted.ballot;
        let commit = self.commit;
        if !self.is_acting_primary() || !report.rejoining || report.promised > ours {
            return;
        }
        let Some(primary) = self.role.as_primary() else {
            return;
        };
        let start = report.log_end.min(commit) + 1;
        let fresh = !primary.learners.contains_key(&from);
        let learner = primary.learners.entry(from).or_insert_with(|| Learner {
            progress: Progress::new(start, now),
            since: now,
        });
        // Its log is shorter than what it acknowledged: it restarted on an empty disk.
        let lost = report.log_end < learner.progress.matched;
        if lost {
            learner.progress = Progress::new(start, now);
        }
        if fresh || lost {
            self.send_append(from);
        }
    }

    /// Whether a learner holds enough of our log that adding it back pauses clients for
    /// about a round trip: within one `Append` of our commit point, or learning for longer
    /// than the bound (a learner that cannot keep up is added as before).
    pub(super) fn learner_ready(&self, joiner: ReplicaId, report: &Report) -> bool {
        let member = self.members().contains(joiner);
        if member || !report.rejoining || report.promised > self.state.accepted.ballot {
            return true; // Not a learner (see `teach`): it catches up in phase 2.
        }
        let now = self.now;
        let commit = self.commit;
        let close = self.opts.max_append_entries as u64;
        let bound = self.learning_bound();
        let Some(learner) = self
            .role
            .primary_ref()
            .and_then(|p| p.learners.get(&joiner))
        else {
            return false;
        };
        learner.progress.matched + close >= commit || now.saturating_sub(learner.since) > bound
    }

    /// How long a learner may take before it is added back however far behind it is.
    fn learning_bound(&self) -> crate::time::Duration {
        self.opts.lag_bound() * 2
    }

    /// Learner: whether we take committed entries or a snapshot from `from` for `view`
    /// although we are not in it: we are rejoining, a plain backup waiting for nobody's
    /// proposal, `from` is that view's proposer, and we promised nothing higher. We promise
    /// `view` first (durable before our answer leaves).
    pub(super) fn learn_from(&mut self, from: ReplicaId, view: View) -> bool {
        let waiting =
            matches!(self.role, RoleState::Backup { .. }) && self.pending_accept.is_none();
        if !self.rejoining || !waiting || proposer(view) != from || self.state.promised > view {
            return false;
        }
        if self.state.promised < view {
            self.state.promised = view;
            self.persist_state();
        }
        true
    }
}
