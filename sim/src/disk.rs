//! The virtual disk of one replica: a write-ahead log of checksummed records and the newest
//! snapshot, with the failure modes of a real disk.
//!
//! A write is volatile until a sync covers it. A crash loses what is volatile, or leaves a
//! random prefix of the volatile log bytes (a torn tail, cut anywhere). A snapshot replaces
//! the previous one atomically when its sync completes; the log entries it covers are then
//! compacted away. Faults can also flip a byte inside a synced record, which the replica must
//! notice at start-up.

use chat_core::codec::record::{decode_all, encode, End};
use chat_core::durable::{Record, Recovered, ReplayError, Snapshot, SnapshotMeta};
use chat_core::replica::{Persist, PersistId};
use rand::rngs::SmallRng;
use rand::Rng;
use std::collections::VecDeque;

#[derive(Debug)]
enum Write {
    Log(Vec<u8>),
    Snapshot(Snapshot),
    Compact(SnapshotMeta),
}

/// Why a replica cannot start from its disk.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DiskError {
    #[error("log record at byte {offset} is corrupt: {reason}")]
    Corrupt { offset: u64, reason: String },
    #[error(transparent)]
    Replay(#[from] ReplayError),
}

#[derive(Debug, Default)]
pub struct Disk {
    /// Synced log bytes.
    wal: Vec<u8>,
    /// The newest synced snapshot.
    snapshot: Option<Snapshot>,
    /// Written, not yet synced, in order.
    volatile: VecDeque<(PersistId, Write)>,
    /// The sync in flight covers the volatile writes up to this id.
    syncing: Option<PersistId>,
}

impl Disk {
    pub fn new() -> Disk {
        Disk::default()
    }

    /// A `Persist` output: written, not yet durable.
    pub fn write(&mut self, id: PersistId, what: Persist) {
        let write = match what {
            Persist::Records(records) => {
                let mut bytes = Vec::new();
                for record in &records {
                    encode(record, &mut bytes);
                }
                Write::Log(bytes)
            }
            Persist::Snapshot(snapshot) => Write::Snapshot(snapshot),
            Persist::Compact(meta) => Write::Compact(meta),
        };
        self.volatile.push_back((id, write));
    }

    /// Starts a sync of everything written so far, unless one is already running or there is
    /// nothing to sync. Returns the last id it covers.
    pub fn start_sync(&mut self) -> Option<PersistId> {
        if self.syncing.is_some() {
            return None;
        }
        self.syncing = self.volatile.back().map(|(id, _)| *id);
        self.syncing
    }

    /// The running sync completed: its writes are durable. Returns the last id it covered.
    pub fn finish_sync(&mut self) -> PersistId {
        let upto = self.syncing.take().expect("no sync in flight");
        while self.volatile.front().is_some_and(|(id, _)| *id <= upto) {
            match self.volatile.pop_front().expect("checked above").1 {
                Write::Log(bytes) => self.wal.extend_from_slice(&bytes),
                Write::Snapshot(snapshot) => {
                    let covered = snapshot.meta.last_index;
                    self.put_snapshot(snapshot);
                    self.compact(covered);
                }
                Write::Compact(meta) => self.compact(meta.last_index),
            }
        }
        upto
    }

    /// A snapshot is durable (a file renamed into place): it replaces the previous one,
    /// unless that one is newer (recovery starts from the newest).
    pub fn put_snapshot(&mut self, snapshot: Snapshot) {
        let newest = self.snapshot.as_ref().map(|s| s.meta.last_index);
        if newest.is_none_or(|index| index < snapshot.meta.last_index) {
            self.snapshot = Some(snapshot);
        }
    }

    /// The log entries up to `covered` go (a durable snapshot holds them). The remaining
    /// records keep their order; of the protocol states only the latest is needed.
    fn compact(&mut self, covered: u64) {
        let decoded = decode_all::<Record>(&self.wal);
        assert_eq!(
            decoded.end,
            End::Clean,
            "the synced log is whole while running"
        );
        let last_state = decoded
            .records
            .iter()
            .rposition(|(_, r)| matches!(r, Record::Protocol(_)));
        let mut wal = Vec::with_capacity(self.wal.len());
        for (i, (_, record)) in decoded.records.iter().enumerate() {
            let keep = match record {
                Record::Entry(entry) => entry.index > covered,
                Record::Protocol(_) => Some(i) == last_state,
                Record::TruncateFrom(_) => true,
            };
            if keep {
                encode(record, &mut wal);
            }
        }
        self.wal = wal;
    }

    /// The process died. Unsynced writes are lost, except that with `torn` a random prefix of
    /// the unsynced log bytes (up to the first unsynced snapshot) reached the disk. Returns
    /// how many unsynced bytes survived.
    pub fn crash(&mut self, rng: &mut SmallRng, torn: bool) -> usize {
        self.syncing = None;
        let volatile = std::mem::take(&mut self.volatile);
        if !torn {
            return 0;
        }
        let mut bytes = Vec::new();
        for (_, write) in volatile {
            match write {
                Write::Log(b) => bytes.extend_from_slice(&b),
                Write::Snapshot(_) => break,
                Write::Compact(_) => {}
            }
        }
        let keep = rng.gen_range(0..=bytes.len());
        self.wal.extend_from_slice(&bytes[..keep]);
        keep
    }

    /// Flips one byte anywhere in the synced log, the last record and length fields included
    /// (the record codec tells every such damage from a torn tail). Returns the byte offset,
    /// or `None` if the log is empty.
    pub fn corrupt(&mut self, rng: &mut SmallRng) -> Option<usize> {
        if self.wal.is_empty() {
            return None;
        }
        let at = rng.gen_range(0..self.wal.len());
        self.wal[at] ^= rng.gen_range(1..=255u8);
        Some(at)
    }

    /// Start-up: reads the log, cuts a torn tail off (returning where), refuses a corrupt
    /// log, and replays.
    pub fn recover(&mut self) -> Result<(Recovered, Option<u64>), DiskError> {
        assert!(self.volatile.is_empty(), "recover only after a crash");
        let decoded = decode_all::<Record>(&self.wal);
        let cut = match decoded.end {
            End::Clean => None,
            End::TornTail { offset } => {
                self.wal.truncate(offset as usize);
                Some(offset)
            }
            End::Corrupt { offset, reason } => return Err(DiskError::Corrupt { offset, reason }),
        };
        let records = decoded.records.into_iter().map(|(_, r)| r);
        Ok((Recovered::replay(self.snapshot.clone(), records)?, cut))
    }

    /// Log bytes written and not yet synced.
    pub fn volatile_log_len(&self) -> usize {
        self.volatile
            .iter()
            .map(|(_, w)| match w {
                Write::Log(bytes) => bytes.len(),
                Write::Snapshot(_) | Write::Compact(_) => 0,
            })
            .sum()
    }

    /// Synced log bytes (disk use).
    pub fn wal_len(&self) -> usize {
        self.wal.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_core::durable::{Entry, EntryBody, SnapshotMeta};
    use rand::SeedableRng;

    fn entry(index: u64) -> Record {
        Record::Entry(Entry {
            index,
            view: 1,
            body: EntryBody::Noop,
        })
    }

    /// The protocol state with `promised` ballot `view`.
    fn vote(view: u64) -> Record {
        let mut state = chat_core::replica::view::Durable::initial(3);
        state.promised = view;
        Record::Protocol(state)
    }

    fn disk_with(records: Vec<Record>) -> Disk {
        let mut disk = Disk::new();
        disk.write(1, Persist::Records(records));
        assert_eq!(disk.start_sync(), Some(1));
        assert_eq!(disk.finish_sync(), 1);
        disk
    }

    #[test]
    fn synced_writes_survive_a_crash_and_unsynced_ones_do_not() {
        let mut rng = SmallRng::seed_from_u64(0);
        let mut disk = disk_with(vec![vote(1), entry(1)]);
        disk.write(2, Persist::Records(vec![entry(2)]));
        assert_eq!(disk.crash(&mut rng, false), 0);
        let recovered = disk.recover().unwrap().0;
        assert_eq!(recovered.protocol.unwrap().promised, 1);
        assert_eq!(recovered.entries.len(), 1);
    }

    #[test]
    fn a_sync_covers_only_what_was_written_before_it_started() {
        let mut disk = Disk::new();
        disk.write(1, Persist::Records(vec![entry(1)]));
        assert_eq!(disk.start_sync(), Some(1));
        disk.write(2, Persist::Records(vec![entry(2)]));
        assert_eq!(disk.start_sync(), None, "one sync at a time");
        assert_eq!(disk.finish_sync(), 1);
        assert_eq!(disk.start_sync(), Some(2));
        assert_eq!(disk.finish_sync(), 2);
        disk.crash(&mut SmallRng::seed_from_u64(0), false);
        assert_eq!(disk.recover().unwrap().0.entries.len(), 2);
    }

    #[test]
    fn a_torn_tail_is_cut_off_at_every_cut_point() {
        for seed in 0..200 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut disk = disk_with(vec![vote(1), entry(1)]);
            disk.write(2, Persist::Records(vec![entry(2), entry(3)]));
            disk.crash(&mut rng, true);
            let (recovered, _) = disk.recover().expect("a torn tail is not corruption");
            let n = recovered.entries.len();
            assert!((1..=3).contains(&n), "{n}");
            // After the cut the log is whole again.
            assert_eq!(decode_all::<Record>(&disk.wal).end, End::Clean);
        }
    }

    #[test]
    fn a_flipped_byte_anywhere_stops_start_up() {
        for seed in 0..200 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let records = if seed % 2 == 0 {
                vec![vote(1), entry(1), entry(2)]
            } else {
                vec![vote(1)]
            };
            let mut disk = disk_with(records);
            assert!(disk.corrupt(&mut rng).is_some());
            assert!(
                matches!(disk.recover(), Err(DiskError::Corrupt { .. })),
                "seed {seed}"
            );
        }
        let mut disk = disk_with(vec![]);
        assert_eq!(disk.corrupt(&mut SmallRng::seed_from_u64(0)), None);
    }

    #[test]
    fn a_synced_snapshot_compacts_the_log() {
        let mut disk = disk_with(vec![vote(1), entry(1), entry(2), vote(2), entry(3)]);
        let before = disk.wal_len();
        let snapshot = Snapshot {
            meta: SnapshotMeta {
                last_index: 2,
                last_view: 1,
            },
            data: vec![1, 2, 3],
        };
        disk.write(2, Persist::Snapshot(snapshot.clone()));
        disk.write(3, Persist::Records(vec![entry(4)]));
        assert_eq!(disk.start_sync(), Some(3));
        disk.finish_sync();
        assert!(disk.wal_len() < before + 20);
        disk.crash(&mut SmallRng::seed_from_u64(0), false);
        let recovered = disk.recover().unwrap().0;
        assert_eq!(recovered.protocol.unwrap().promised, 2);
        assert_eq!(recovered.snapshot, Some(snapshot));
        let indexes: Vec<u64> = recovered.entries.iter().map(|e| e.index).collect();
        assert_eq!(indexes, vec![3, 4]);
    }

    #[test]
    fn an_unsynced_snapshot_is_lost_with_everything_after_it() {
        let mut rng = SmallRng::seed_from_u64(3);
        let mut disk = disk_with(vec![vote(1), entry(1)]);
        disk.write(
            2,
            Persist::Snapshot(Snapshot {
                meta: SnapshotMeta {
                    last_index: 1,
                    last_view: 1,
                },
                data: vec![],
            }),
        );
        disk.write(3, Persist::Records(vec![entry(2)]));
        assert_eq!(disk.crash(&mut rng, true), 0);
        let recovered = disk.recover().unwrap().0;
        assert_eq!(recovered.snapshot, None);
        assert_eq!(recovered.entries.len(), 1);
    }
}
