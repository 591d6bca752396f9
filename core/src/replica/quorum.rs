//! Quorum and commit rules, in one place.

use super::log::Log;
use crate::ids::{OpIndex, View};

/// Which sets of replicas decide: today a majority of the configured replicas.
#[derive(Clone, Copy, Debug)]
pub(super) struct Quorum {
    size: usize,
}

impl Quorum {
    pub fn majority(replica_count: u8) -> Quorum {
        Quorum {
            size: usize::from(replica_count) / 2 + 1,
        }
    }

    /// Whether `count` replicas (the deciding one included) are enough.
    pub fn is_reached(&self, count: usize) -> bool {
        count >= self.size
    }

    /// The index a primary of `view` may commit, given how far each replica (itself
    /// included) durably holds its log: the highest index a quorum holds, and only if it is
    /// an entry of `view` (an older view's entry commits with it, Raft §5.4.2). `None` if that
    /// does not move the commit index on.
    pub fn commit_point(
        &self,
        mut held: Vec<OpIndex>,
        log: &Log,
        view: View,
        commit: OpIndex,
    ) -> Option<OpIndex> {
        held.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = *held.get(self.size - 1)?;
        (candidate > commit && log.view_at(candidate) == Some(view)).then_some(candidate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::{Entry, EntryBody, SnapshotMeta};

    fn log(views: &[View]) -> Log {
        let entries = views
            .iter()
            .enumerate()
            .map(|(i, &view)| Entry {
                index: i as u64 + 1,
                view,
                body: EntryBody::Noop,
            })
            .collect();
        Log::new(SnapshotMeta::default(), entries)
    }

    #[test]
    fn a_majority_of_three_is_two() {
        let q = Quorum::majority(3);
        assert!(!q.is_reached(1));
        assert!(q.is_reached(2));
        assert!(Quorum::majority(1).is_reached(1));
        assert!(!Quorum::majority(5).is_reached(2));
    }

    #[test]
    fn commits_the_highest_index_a_majority_holds_only_in_its_own_view() {
        let q = Quorum::majority(3);
        let l = log(&[1, 1, 2, 2]);
        assert_eq!(q.commit_point(vec![4, 3, 0], &l, 2, 0), Some(3));
        // Index 2 is of an older view: it commits only with an entry of view 2.
        assert_eq!(q.commit_point(vec![4, 2, 1], &l, 2, 0), None);
        // Nothing new.
        assert_eq!(q.commit_point(vec![4, 3, 0], &l, 2, 3), None);
    }
}
