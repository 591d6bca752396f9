//! What a replica keeps on disk, and how start-up rebuilds it.
//!
//! The write-ahead log is a sequence of [`Record`]s; snapshots are kept beside it. Both
//! `net` (real files) and `sim` (a virtual disk) store these exact values with the codecs of
//! [`crate::codec`], and both rebuild a replica with [`Recovered::replay`].

use crate::ids::{OpIndex, View};
use crate::replica::view::Durable;
use crate::service::Request;
use crate::time::Instant;
use serde::{Deserialize, Serialize};

/// One log entry: a client request (or a no-op a new primary commits to settle older views),
/// stamped with the view in which a primary first ordered it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub index: OpIndex,
    pub view: View,
    pub body: EntryBody,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryBody {
    Noop,
    Request(Request),
    /// The primary's clock when it ordered the entries that follow: the replicated state's
    /// only source of time (see `crate::service`).
    Time(Instant),
}

/// A write-ahead log record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// The replica's protocol state (incarnation, promised, accepted, established), whole.
    /// Must be durable before any message that relies on it leaves; only the latest counts,
    /// so compaction keeps the latest one.
    Protocol(Durable),
    Entry(Entry),
    /// Drop every entry at `index` and above (a conflicting suffix is being replaced).
    TruncateFrom(OpIndex),
}

/// Where a snapshot stands in the log: it holds the state after applying every entry up to
/// `last_index`, whose view was `last_view`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub last_index: OpIndex,
    pub last_view: View,
}

/// A snapshot: its place and the [`crate::service::Service`] bytes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Megabytes of state in a trace help nobody: its size and checksum tell copies apart.
        f.debug_struct("Snapshot")
            .field("meta", &self.meta)
            .field("len", &self.data.len())
            .field("crc", &crc32c::crc32c(&self.data))
            .finish()
    }
}

/// Everything a replica needs to start again after a crash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The latest protocol state; `None` before the replica's first life.
    pub protocol: Option<Durable>,
    pub snapshot: Option<Snapshot>,
    /// Contiguous entries following the snapshot (or index 1).
    pub entries: Vec<Entry>,
}

/// The log did not form a valid history (this is a bug or corruption the checksums missed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("log replay: {0}")]
pub struct ReplayError(pub String);

impl Recovered {
    /// Rebuilds the state from the newest valid snapshot and the log records in the order they
    /// were written. Entries the snapshot covers are dropped.
    pub fn replay(
        snapshot: Option<Snapshot>,
        records: impl IntoIterator<Item = Record>,
    ) -> Result<Recovered, ReplayError> {
        let base = snapshot.as_ref().map_or(0, |s| s.meta.last_index);
        let mut out = Recovered {
            snapshot,
            ..Recovered::default()
        };
        // Entries by index, all of them (the snapshot filter comes last, because a truncate
        // may refer to indexes on either side of it).
        let mut entries: Vec<Entry> = Vec::new();
        for record in records {
            match record {
                Record::Protocol(state) => {
                    if let Some(old) = out.protocol {
                        if state.promised < old.promised || state.incarnation < old.incarnation {
                            return Err(ReplayError(format!(
                                "protocol state went back from {old:?} to {state:?}"
                            )));
                        }
                    }
                    out.protocol = Some(state);
                }
                Record::TruncateFrom(index) => truncate_from(&mut entries, index),
                Record::Entry(entry) => {
                    // A later write at an index replaces whatever was there.
                    truncate_from(&mut entries, entry.index);
                    if let Some(last) = entries.last() {
                        if last.index + 1 != entry.index {
                            // A gap: legal only where the snapshot covers the missing part.
                            if entry.index > base + 1 {
                                return Err(ReplayError(format!(
                                    "entry {} follows entry {}",
                                    entry.index, last.index
                                )));
                            }
                            entries.clear();
                        }
                    }
                    entries.push(entry);
                }
            }
        }
        entries.retain(|e| e.index > base);
        if let Some(first) = entries.first() {
            if first.index != base + 1 {
                return Err(ReplayError(format!(
                    "log starts at {} after a snapshot at {base}",
                    first.index
                )));
            }
        }
        out.entries = entries;
        Ok(out)
    }
}

/// Drops the entries at `index` and above from a contiguous run.
fn truncate_from(entries: &mut Vec<Entry>, index: OpIndex) {
    if let Some(first) = entries.first() {
        let keep = index.saturating_sub(first.index);
        entries.truncate(usize::try_from(keep).unwrap_or(usize::MAX));
    }
}
