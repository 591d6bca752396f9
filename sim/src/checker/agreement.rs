//! Replica agreement, checked while the run goes: the engine reports every entry a replica
//! newly counts as committed, and every (applied index, digest) it reaches. The first
//! replica to commit an index fixes it; every later one must hold the same entry.
//!
//! The committed log built here is also the witness order for the linearizability checker:
//! each index carries the simulated time it was first committed anywhere.

use super::{Checker, Failure};
use chat_core::durable::Entry;
use chat_core::ids::{OpIndex, ReplicaId};
use chat_core::time::Instant;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub struct Committed {
    pub entry: Entry,
    /// When a replica first counted it as committed.
    pub time: Instant,
    pub by: ReplicaId,
}

#[derive(Debug, Default)]
pub struct CommitLog {
    /// Index i at position i - 1: committing is prefix-closed, so there are no gaps.
    entries: Vec<Committed>,
    /// Applied index -> digest of the state there, and who reported it first.
    digests: BTreeMap<OpIndex, (u32, ReplicaId)>,
}

impl CommitLog {
    pub fn new() -> CommitLog {
        CommitLog::default()
    }

    /// The highest index committed anywhere so far.
    pub fn last_index(&self) -> OpIndex {
        self.entries.len() as OpIndex
    }

    pub fn get(&self, index: OpIndex) -> Option<&Committed> {
        index
            .checked_sub(1)
            .and_then(|i| self.entries.get(usize::try_from(i).ok()?))
    }

    pub fn entries(&self) -> &[Committed] {
        &self.entries
    }

    /// `replica` counts `entry` as committed.
    pub fn record(
        &mut self,
        now: Instant,
        replica: ReplicaId,
        entry: &Entry,
    ) -> Result<(), Failure> {
        let index = entry.index;
        if let Some(known) = self.get(index) {
            if known.entry != *entry {
                return Err(Failure::new(
                    Checker::Agreement,
                    now,
                    format!(
                        "replicas {} and {replica} committed different entries at index {index}:\n  {:?}\n  {:?}",
                        known.by, known.entry, entry
                    ),
                ));
            }
            return Ok(());
        }
        if index != self.last_index() + 1 {
            return Err(Failure::new(
                Checker::Agreement,
                now,
                format!(
                    "replica {replica} committed index {index}, but only up to {} was ever seen committed",
                    self.last_index()
                ),
            ));
        }
        self.entries.push(Committed {
            entry: entry.clone(),
            time: now,
            by: replica,
        });
        Ok(())
    }

    /// `replica` counts `index` as committed but no longer holds the entry (it is in a
    /// snapshot): some replica must have been seen committing it.
    pub fn check_known(
        &self,
        now: Instant,
        replica: ReplicaId,
        index: OpIndex,
    ) -> Result<(), Failure> {
        if index <= self.last_index() {
            return Ok(());
        }
        Err(Failure::new(
            Checker::Agreement,
            now,
            format!(
                "replica {replica} counts index {index} as committed, but only up to {} was ever seen committed",
                self.last_index()
            ),
        ))
    }

    /// `replica` applied every entry up to `applied`, reaching a state with `digest`.
    pub fn record_digest(
        &mut self,
        now: Instant,
        replica: ReplicaId,
        applied: OpIndex,
        digest: u32,
    ) -> Result<(), Failure> {
        match self.digests.get(&applied) {
            Some(&(known, by)) if known != digest => Err(Failure::new(
                Checker::Agreement,
                now,
                format!(
                    "state digests differ at applied index {applied}: replica {by} has {known:08x}, replica {replica} has {digest:08x}"
                ),
            )),
            Some(_) => Ok(()),
            None => {
                self.digests.insert(applied, (digest, replica));
                Ok(())
            }
        }
    }

    #[cfg(test)]
    /// The digest some replica reported at `applied`, if any.
    pub fn digest_at(&self, applied: OpIndex) -> Option<u32> {
        self.digests.get(&applied).map(|&(d, _)| d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_core::durable::EntryBody;

    fn e(index: OpIndex, view: u64) -> Entry {
        Entry {
            index,
            view,
            body: EntryBody::Noop,
        }
    }

    #[test]
    fn conflicting_commits_are_caught() {
        let mut log = CommitLog::new();
        log.record(Instant(1), 0, &e(1, 1)).unwrap();
        log.record(Instant(2), 0, &e(2, 1)).unwrap();
        log.record(Instant(3), 1, &e(1, 1)).unwrap();
        let failure = log.record(Instant(4), 1, &e(2, 2)).unwrap_err();
        assert_eq!(failure.checker, Checker::Agreement);
        assert!(failure.detail.contains("index 2"), "{failure}");
        assert_eq!(log.get(1).unwrap().time, Instant(1));
    }

    #[test]
    fn gaps_and_unknown_snapshot_commits_are_caught() {
        let mut log = CommitLog::new();
        log.record(Instant(1), 0, &e(1, 1)).unwrap();
        assert!(log.record(Instant(2), 1, &e(3, 1)).is_err());
        assert!(log.check_known(Instant(2), 1, 1).is_ok());
        assert!(log.check_known(Instant(2), 1, 2).is_err());
    }

    #[test]
    fn digests_must_agree_at_equal_indexes() {
        let mut log = CommitLog::new();
        log.record_digest(Instant(1), 0, 5, 0xaa).unwrap();
        log.record_digest(Instant(1), 1, 5, 0xaa).unwrap();
        log.record_digest(Instant(1), 1, 6, 0xbb).unwrap();
        assert!(log.record_digest(Instant(2), 2, 5, 0xab).is_err());
        assert_eq!(log.digest_at(6), Some(0xbb));
    }
}
