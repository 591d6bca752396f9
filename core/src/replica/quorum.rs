//! The commit rule, in one place (rule 2).

use super::log::Log;
use crate::ids::{OpIndex, View};

/// The index a primary of the established view `view` may commit, given how far each member
/// (itself included) durably holds its log: the highest index *every* member holds (with
/// `majority`, the mutation: the highest a majority of the members holds), and only if it is
/// an entry of `view` (an older view's entry commits with it). `None` if that does not move
/// the commit index on.
pub(super) fn commit_point(
    mut held: Vec<OpIndex>,
    log: &Log,
    view: View,
    commit: OpIndex,
    majority: bool,
) -> Option<OpIndex> {
    held.sort_unstable_by(|a, b| b.cmp(a));
    let needed = if majority {
        held.len() / 2 + 1
    } else {
        held.len()
    };
    let candidate = *held.get(needed.checked_sub(1)?)?;
    (candidate > commit && log.view_at(candidate) == Some(view)).then_some(candidate)
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
    fn commits_what_every_member_holds_only_in_its_own_view() {
        let l = log(&[1, 1, 2, 2]);
        assert_eq!(commit_point(vec![4, 3, 4], &l, 2, 0, false), Some(3));
        assert_eq!(commit_point(vec![4, 4], &l, 2, 0, false), Some(4));
        // A majority is not enough.
        assert_eq!(commit_point(vec![4, 4, 0], &l, 2, 0, false), None);
        assert_eq!(commit_point(vec![4, 4, 0], &l, 2, 0, true), Some(4));
        // Index 2 is of an older view: it commits only with an entry of view 2.
        assert_eq!(commit_point(vec![4, 2, 2], &l, 2, 0, false), None);
        // Nothing new.
        assert_eq!(commit_point(vec![4, 3, 3], &l, 2, 3, false), None);
        // A view of one commits what it holds.
        assert_eq!(commit_point(vec![4], &l, 2, 0, false), Some(4));
    }
}
