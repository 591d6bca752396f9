//! The in-memory replicated log: a snapshot point followed by contiguous entries.

use crate::durable::{Entry, SnapshotMeta};
use crate::ids::{OpIndex, View};

#[derive(Debug, Default)]
pub(super) struct Log {
    /// Everything up to `base.last_index` lives in the snapshot.
    base: SnapshotMeta,
    /// `entries[i].index == base.last_index + 1 + i`.
    entries: Vec<Entry>,
}

impl Log {
    pub fn new(base: SnapshotMeta, entries: Vec<Entry>) -> Log {
        debug_assert!(entries
            .iter()
            .enumerate()
            .all(|(i, e)| e.index == base.last_index + 1 + i as u64));
        Log { base, entries }
    }

    pub fn base(&self) -> SnapshotMeta {
        self.base
    }

    /// The first index still held as an entry.
    pub fn first_index(&self) -> OpIndex {
        self.base.last_index + 1
    }

    pub fn last_index(&self) -> OpIndex {
        self.base.last_index + self.entries.len() as u64
    }

    pub fn last_view(&self) -> View {
        self.entries.last().map_or(self.base.last_view, |e| e.view)
    }

    /// The view of the entry at `index`, if known (the snapshot point counts).
    pub fn view_at(&self, index: OpIndex) -> Option<View> {
        if index == self.base.last_index {
            return Some(self.base.last_view);
        }
        self.get(index).map(|e| e.view)
    }

    pub fn get(&self, index: OpIndex) -> Option<&Entry> {
        let offset = index.checked_sub(self.first_index())?;
        self.entries.get(usize::try_from(offset).ok()?)
    }

    pub fn append(&mut self, entry: Entry) {
        assert_eq!(
            entry.index,
            self.last_index() + 1,
            "log entries must be contiguous"
        );
        self.entries.push(entry);
    }

    /// Drops the entries at `index` and above.
    pub fn truncate_from(&mut self, index: OpIndex) {
        assert!(
            index > self.base.last_index,
            "cannot truncate into the snapshot"
        );
        self.entries.truncate((index - self.first_index()) as usize);
    }

    /// Entries from `index` on, at most `max_entries` and about `max_bytes` (at least one).
    pub fn slice(&self, index: OpIndex, max_entries: usize, max_bytes: usize) -> Vec<Entry> {
        let Some(start) = index.checked_sub(self.first_index()) else {
            return Vec::new();
        };
        let mut bytes = 0;
        self.entries
            .iter()
            .skip(start as usize)
            .take(max_entries)
            .take_while(|e| {
                let fits = bytes == 0 || bytes + size_hint(e) <= max_bytes;
                bytes += size_hint(e);
                fits
            })
            .cloned()
            .collect()
    }

    /// Moves the snapshot point to `meta`. Entries after it are kept if the log holds
    /// `meta`'s entry (same index and view); otherwise the whole log is replaced by it.
    /// Returns whether entries after the point were kept.
    pub fn compact_to(&mut self, meta: SnapshotMeta) -> bool {
        let keeps_suffix = self.view_at(meta.last_index) == Some(meta.last_view);
        if keeps_suffix && meta.last_index >= self.base.last_index {
            let drop = (meta.last_index - self.base.last_index) as usize;
            self.entries.drain(..drop);
        } else {
            self.entries.clear();
        }
        self.base = meta;
        keeps_suffix
    }

    /// Uncommitted-suffix iteration, e.g. to find pending requests.
    pub fn entries_after(&self, index: OpIndex) -> impl Iterator<Item = &Entry> {
        let skip = index.saturating_sub(self.base.last_index) as usize;
        self.entries.iter().skip(skip)
    }
}

/// Rough encoded size of an entry, to keep `Append` frames well under the frame limit.
pub(super) fn size_hint(entry: &Entry) -> usize {
    use crate::chat::Op;
    use crate::durable::EntryBody;
    const OVERHEAD: usize = 64;
    OVERHEAD
        + match &entry.body {
            EntryBody::Noop | EntryBody::Time(_) => 0,
            EntryBody::Request(r) => match &r.op {
                Op::OpenSession | Op::Logout | Op::Delete | Op::Deliver => 0,
                Op::List { pattern } => pattern.len(),
                Op::Create { user } | Op::Login { user } | Op::LoginRefused { user } => user.len(),
                Op::CreateWithPassword {
                    user,
                    password_hash,
                }
                | Op::LoginVerified {
                    user,
                    password_hash,
                } => user.len() + password_hash.len(),
                Op::Send { to, text } => to.len() + text.len(),
                Op::Ack { ids } => ids.len() * 10,
            },
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::EntryBody;

    fn e(index: OpIndex, view: View) -> Entry {
        Entry {
            index,
            view,
            body: EntryBody::Noop,
        }
    }

    #[test]
    fn append_truncate_compact() {
        let mut log = Log::default();
        for i in 1..=5 {
            log.append(e(i, 1));
        }
        assert_eq!(log.last_index(), 5);
        log.truncate_from(4);
        assert_eq!(log.last_index(), 3);
        assert!(log.compact_to(SnapshotMeta {
            last_index: 2,
            last_view: 1
        }));
        assert_eq!(log.first_index(), 3);
        assert_eq!(log.view_at(2), Some(1));
        assert_eq!(log.get(3).unwrap().index, 3);
        assert!(log.get(2).is_none());
        // A snapshot from another history replaces everything.
        assert!(!log.compact_to(SnapshotMeta {
            last_index: 3,
            last_view: 2
        }));
        assert_eq!(log.last_index(), 3);
        assert_eq!(log.last_view(), 2);
        assert!(log.slice(4, 10, 1000).is_empty());
    }
}
