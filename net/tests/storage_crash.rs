//! Crash tests of the storage on real temporary directories: write random log histories,
//! sync at random points, "crash" by cutting off what was not synced or by damaging bytes,
//! and check what recovery gives back.

use chat_core::chat::Op;
use chat_core::codec::record::End;
use chat_core::codec::{record, snapshot};
use chat_core::durable::{Entry, EntryBody, Record, Recovered, Snapshot, SnapshotMeta};
use chat_core::ids::OpIndex;
use chat_core::replica::view::Durable;
use chat_core::service::Request;
use chat_net::storage::{Storage, StorageError, StorageOptions, ZERO_AHEAD_BYTES};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Random but valid log histories: views never go back, entries are contiguous, and
/// truncations never reach into the snapshot.
struct History {
    rng: StdRng,
    view: u64,
    last_index: OpIndex,
    snapshot_index: OpIndex,
}

impl History {
    fn new(seed: u64) -> History {
        History {
            rng: StdRng::seed_from_u64(seed),
            view: 0,
            last_index: 0,
            snapshot_index: 0,
        }
    }

    fn record(&mut self) -> Record {
        let roll = self.rng.gen_range(0..100);
        if roll < 10 {
            self.view += self.rng.gen_range(0..=1);
            Record::Protocol(Durable {
                promised: self.view,
                ..Durable::initial(3)
            })
        } else if roll < 16 {
            let from = self
                .rng
                .gen_range(self.snapshot_index + 1..=self.last_index + 1);
            self.last_index = from - 1;
            Record::TruncateFrom(from)
        } else {
            self.last_index += 1;
            let body = if self.rng.gen_bool(0.2) {
                EntryBody::Noop
            } else {
                let len = self.rng.gen_range(0..160);
                EntryBody::Request(Request {
                    client: self.rng.gen(),
                    request: self.rng.gen(),
                    op: Op::Send {
                        to: "bob".to_string(),
                        text: "x".repeat(len),
                    },
                })
            };
            Record::Entry(Entry {
                index: self.last_index,
                view: self.view,
                body,
            })
        }
    }

    fn batch(&mut self) -> Vec<Record> {
        let n = self.rng.gen_range(1..8);
        (0..n).map(|_| self.record()).collect()
    }

    /// A snapshot at a random index between the previous one and the end of the log.
    fn snapshot(&mut self) -> Snapshot {
        self.snapshot_index = self.rng.gen_range(self.snapshot_index..=self.last_index);
        let data = (0..self.rng.gen_range(0..300))
            .map(|_| self.rng.gen())
            .collect();
        Snapshot {
            meta: SnapshotMeta {
                last_index: self.snapshot_index,
                last_view: self.view,
            },
            data,
        }
    }
}

fn options(rng: &mut StdRng) -> StorageOptions {
    StorageOptions {
        segment_bytes: rng.gen_range(256..4096),
        // Small chunks: snapshots of a few hundred bytes span many records.
        snapshot_chunk_bytes: rng.gen_range(1..128),
        preallocate: rng.gen_bool(0.5),
    }
}

/// Disk bytes a file occupies (its allocated blocks), as against its length.
fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// A new segment reserves its blocks, grows by zeros written ahead of its appends, and a
/// sealed one ends at its last record and gives back what it did not use: at rotation, and
/// at the next start for the segment that was active.
#[test]
fn segments_reserve_their_blocks_and_sealed_ones_give_the_rest_back() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StorageOptions {
        segment_bytes: 1 << 20,
        ..StorageOptions::default()
    };
    let (mut storage, _, _) = Storage::open(dir.path(), opts).unwrap();
    let mut history = History::new(5);
    let mut written = Vec::new();
    for _ in 0..10 {
        let batch = history.batch();
        storage.append(&batch).unwrap();
        written.extend(batch);
    }
    storage.sync().unwrap();
    let active = segments(dir.path()).pop().unwrap();
    let (_, len) = log_end(dir.path());
    assert!(len < 1 << 16, "{len}");
    assert_eq!(std::fs::metadata(&active).unwrap().len(), ZERO_AHEAD_BYTES);
    assert!(allocated(&active) >= 1 << 20, "{}", allocated(&active));
    drop(storage);
    let (_, recovered, report) = Storage::open(dir.path(), opts).unwrap();
    assert_eq!(
        report.torn_tail, None,
        "zeros written ahead are no torn tail"
    );
    assert_eq!(std::fs::metadata(&active).unwrap().len(), len);
    assert!(allocated(&active) < 1 << 20, "{}", allocated(&active));
    let expected = Recovered::replay(None, written).unwrap();
    assert_eq!(recovered, expected);
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.starts_with("wal-") && name.ends_with(".log")
        })
        .collect();
    found.sort();
    found
}

/// The last segment and where its records end (zeros written ahead may follow).
fn log_end(dir: &Path) -> (PathBuf, u64) {
    let last = segments(dir).pop().expect("a segment always exists");
    let bytes = std::fs::read(&last).unwrap();
    (last, records_end(&bytes))
}

/// Where the records of a segment's bytes end.
fn records_end(bytes: &[u8]) -> u64 {
    match record::decode_all::<Record>(bytes).end {
        End::Clean => bytes.len() as u64,
        End::TornTail { offset } => offset,
        End::Corrupt { offset, reason } => panic!("corrupt at {offset}: {reason}"),
    }
}

/// Every file of the directory with its contents.
fn dir_state(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect()
}

fn replay(snapshot: Option<Snapshot>, records: &[Record]) -> Recovered {
    Recovered::replay(snapshot, records.iter().cloned()).expect("generated histories are valid")
}

/// Loses what a power failure may lose of the last segment past its synced length: the
/// file cut at a random offset (appends that grew it), or, over zeros written ahead, the
/// bytes from a random point on read as zeros again (sectors that never reached the disk).
/// The point is a record's start or inside its body: a cut inside a header or checksum
/// reads as corruption by design (`chat_core::codec::record`). `synced` is where the log
/// ended at the last sync; a segment started since then had its leading vote (if any) synced
/// when it was created.
fn lose_unsynced_tail(dir: &Path, synced: &(PathBuf, u64), rng: &mut StdRng) {
    let (last, len) = log_end(dir);
    let from = if last == synced.0 {
        synced.1
    } else {
        let bytes = std::fs::read(&last).unwrap();
        match record::decode_all::<Record>(&bytes).records.as_slice() {
            [(_, Record::Protocol(_)), (next, _), ..] => *next,
            [(_, Record::Protocol(_))] => len,
            _ => 0,
        }
    };
    let file = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    let file_len = file.metadata().unwrap().len();
    if file_len == len || rng.gen_bool(0.5) {
        file.set_len(rng.gen_range(from..=file_len)).unwrap();
        return;
    }
    let bytes = std::fs::read(&last).unwrap();
    let decoded = record::decode_all::<Record>(&bytes);
    let starts: Vec<u64> = decoded
        .records
        .iter()
        .map(|(o, _)| *o)
        .chain([len])
        .collect();
    let points: Vec<u64> = starts
        .windows(2)
        .filter(|w| w[0] >= from)
        .flat_map(|w| {
            let body = w[0] + record::HEADER_BYTES as u64..w[1] - record::TRAILER_BYTES as u64;
            [w[0]].into_iter().chain(body)
        })
        .chain([len])
        .collect();
    let zero_from = points[rng.gen_range(0..points.len())];
    let zeros = vec![0; (len - zero_from) as usize];
    std::os::unix::fs::FileExt::write_all_at(&file, &zeros, zero_from).unwrap();
}

/// Recovers after a crash and checks the result is the history up to some point that
/// includes every acknowledged record; returns how many records survived.
fn recover_prefix(
    dir: &Path,
    opts: StorageOptions,
    snapshot: &Option<Snapshot>,
    written: &[Record],
    acked: usize,
) -> (Storage, usize) {
    let (storage, recovered, report) = Storage::open(dir, opts).expect("recovery");
    if let Some((path, offset)) = &report.torn_tail {
        assert_eq!(
            std::fs::metadata(path).unwrap().len(),
            *offset,
            "torn tail truncated"
        );
    }
    assert_eq!(
        report.snapshot_index,
        snapshot.as_ref().map(|s| s.meta.last_index)
    );
    let survived = (acked..=written.len())
        .rev()
        .find(|&n| replay(snapshot.clone(), &written[..n]) == recovered)
        .unwrap_or_else(|| {
            panic!(
                "recovered state is no prefix of the {} written records holding the {acked} acknowledged ones",
                written.len()
            )
        });
    (storage, survived)
}

#[test]
fn crashes_keep_a_prefix_holding_every_acknowledged_record() {
    for seed in 0..200 {
        let mut history = History::new(seed);
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
        let opts = options(&mut rng);
        let dir = tempfile::tempdir().unwrap();
        let (mut storage, recovered, _) = Storage::open(dir.path(), opts).unwrap();
        assert_eq!(recovered, Recovered::default());
        let mut written: Vec<Record> = Vec::new();
        for _round in 0..3 {
            let mut acked = written.len();
            let mut synced = log_end(dir.path());
            for _ in 0..rng.gen_range(1..16) {
                let batch = history.batch();
                storage.append(&batch).unwrap();
                written.extend(batch);
                if rng.gen_bool(0.4) {
                    storage.sync().unwrap();
                    acked = written.len();
                    synced = log_end(dir.path());
                }
            }
            drop(storage);
            lose_unsynced_tail(dir.path(), &synced, &mut rng);
            let survived;
            (storage, survived) = recover_prefix(dir.path(), opts, &None, &written, acked);
            written.truncate(survived);
            // Later records continue the surviving history.
            history.last_index = replay(None, &written).entries.last().map_or(0, |e| e.index);
        }
    }
}

#[test]
fn damaged_bytes_are_reported_never_silently_changed() {
    for seed in 0..300 {
        let mut history = History::new(seed);
        let mut rng = StdRng::seed_from_u64(seed ^ 0xf11b);
        let opts = options(&mut rng);
        let dir = tempfile::tempdir().unwrap();
        let (mut storage, _, _) = Storage::open(dir.path(), opts).unwrap();
        for _ in 0..rng.gen_range(1..12) {
            storage.append(&history.batch()).unwrap();
        }
        storage.sync().unwrap();
        drop(storage);

        let all = segments(dir.path());
        let originals: Vec<Vec<u8>> = all.iter().map(|p| std::fs::read(p).unwrap()).collect();
        // Damage to a record: the zeros written ahead past the last one are no record, and
        // what is found there is taken for a torn write (nothing synced is lost by that).
        let candidates: Vec<usize> = (0..all.len())
            .filter(|&i| records_end(&originals[i]) > 0)
            .collect();
        let i = candidates[rng.gen_range(0..candidates.len())];
        let at = rng.gen_range(0..records_end(&originals[i]) as usize);
        let mut damaged = originals[i].clone();
        damaged[at] ^= rng.gen_range(1..=255u8);
        std::fs::write(&all[i], &damaged).unwrap();
        let before = dir_state(dir.path());

        // Where the damaged byte sits, from the undamaged bytes.
        let decoded = record::decode_all::<Record>(&originals[i]);
        let k = decoded
            .records
            .iter()
            .rposition(|(o, _)| *o <= at as u64)
            .unwrap();
        let start = decoded.records[k].0;
        match Storage::open(dir.path(), opts) {
            Err(StorageError::Corrupt { file, offset, .. }) => {
                assert_eq!((file, offset), (all[i].clone(), start), "seed {seed}");
                assert_eq!(
                    dir_state(dir.path()),
                    before,
                    "seed {seed}: nothing changes"
                );
            }
            Ok(_) => panic!(
                "seed {seed}: damage at byte {at} of {:?} went unnoticed",
                all[i]
            ),
            Err(other) => panic!("seed {seed}: unexpected error {other}"),
        }
    }
}

#[test]
fn snapshots_compact_the_log_and_recovery_still_agrees() {
    for seed in 0..200 {
        let mut history = History::new(seed);
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5a4b);
        let opts = options(&mut rng);
        let dir = tempfile::tempdir().unwrap();
        let (mut storage, _, _) = Storage::open(dir.path(), opts).unwrap();
        let mut written = Vec::new();
        let mut snapshot = None;
        let mut acked = 0;
        let mut synced = log_end(dir.path());
        for _ in 0..rng.gen_range(5..40) {
            let batch = history.batch();
            storage.append(&batch).unwrap();
            written.extend(batch);
            if rng.gen_bool(0.3) {
                storage.sync().unwrap();
                acked = written.len();
                synced = log_end(dir.path());
            }
            if rng.gen_bool(0.15) {
                let snap = history.snapshot();
                storage.write_snapshot(&snap).unwrap();
                assert_compacted(dir.path(), snap.meta.last_index);
                snapshot = Some(snap);
            }
        }
        drop(storage);
        lose_unsynced_tail(dir.path(), &synced, &mut rng);
        let (storage, survived) = recover_prefix(dir.path(), opts, &snapshot, &written, acked);
        drop(storage);
        // And once more, from the state the first recovery left.
        let (_, recovered, _) = Storage::open(dir.path(), opts).unwrap();
        assert_eq!(recovered, replay(snapshot, &written[..survived]));
    }
}

/// Exactly one snapshot file remains, and the oldest remaining segment is either the last
/// one or still holds an entry past the snapshot.
fn assert_compacted(dir: &Path, snapshot_index: OpIndex) {
    let snapshots = std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_str().unwrap().starts_with("snapshot-")
        })
        .count();
    assert_eq!(snapshots, 1);
    let all = segments(dir);
    if all.len() > 1 {
        let bytes = std::fs::read(&all[0]).unwrap();
        let needed = record::decode_all::<Record>(&bytes)
            .records
            .iter()
            .any(|(_, r)| matches!(r, Record::Entry(e) if e.index > snapshot_index));
        assert!(needed, "{} should have been deleted", all[0].display());
    }
}

#[test]
fn stray_temporary_files_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let stray = dir.path().join("snapshot-00000000000000000009.snap.tmp");
    std::fs::write(&stray, b"half a snapshot").unwrap();
    let (_, recovered, report) = Storage::open(dir.path(), StorageOptions::default()).unwrap();
    assert_eq!(recovered, Recovered::default());
    assert_eq!(report.snapshot_index, None);
    assert!(!stray.exists());
}

#[test]
fn a_damaged_snapshot_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StorageOptions::default();
    let (mut storage, _, _) = Storage::open(dir.path(), opts).unwrap();
    let mut history = History::new(1);
    let records: Vec<Record> = (0..10).map(|_| history.record()).collect();
    storage.append(&records).unwrap();
    storage.sync().unwrap();
    let snap = history.snapshot();
    storage.write_snapshot(&snap).unwrap();
    drop(storage);

    let path = dir
        .path()
        .join(format!("snapshot-{:020}.snap", snap.meta.last_index));
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let before = dir_state(dir.path());
    match Storage::open(dir.path(), opts) {
        Err(StorageError::Corrupt { file, .. }) => assert_eq!(file, path),
        other => panic!("expected corruption, got {other:?}"),
    }
    assert_eq!(dir_state(dir.path()), before);
}

#[test]
fn a_cut_short_segment_before_the_last_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StorageOptions {
        segment_bytes: 512,
        ..StorageOptions::default()
    };
    let (mut storage, _, _) = Storage::open(dir.path(), opts).unwrap();
    let mut history = History::new(2);
    while segments(dir.path()).len() < 3 {
        storage.append(&history.batch()).unwrap();
    }
    storage.sync().unwrap();
    drop(storage);
    let first = &segments(dir.path())[0];
    let len = std::fs::metadata(first).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(first).unwrap();
    file.set_len(len - 1).unwrap();
    match Storage::open(dir.path(), opts) {
        Err(StorageError::Corrupt { file, .. }) => assert_eq!(&file, first),
        other => panic!("expected corruption, got {other:?}"),
    }
}

/// A segment whose entries the snapshot covers may still hold a truncation of older,
/// uncovered entries: deleting it alone would bring those back.
#[test]
fn compaction_keeps_truncations_that_still_matter() {
    let entry = |index, view| {
        Record::Entry(Entry {
            index,
            view,
            body: EntryBody::Request(Request {
                client: 7,
                request: index,
                op: Op::Create {
                    user: "y".repeat(200),
                },
            }),
        })
    };
    let dir = tempfile::tempdir().unwrap();
    // Every entry fills a segment of its own.
    let opts = StorageOptions {
        segment_bytes: 100,
        ..StorageOptions::default()
    };
    let (mut storage, _, _) = Storage::open(dir.path(), opts).unwrap();
    let mut written: Vec<Record> = (1..=10).map(|i| entry(i, 1)).collect();
    written.push(Record::Protocol(Durable {
        promised: 2,
        ..Durable::initial(3)
    }));
    written.push(Record::TruncateFrom(6));
    written.extend((6..=8).map(|i| entry(i, 2)));
    storage.append(&written).unwrap();
    let snap = Snapshot {
        meta: SnapshotMeta {
            last_index: 8,
            last_view: 2,
        },
        data: vec![1, 2, 3],
    };
    storage.write_snapshot(&snap).unwrap();
    assert_compacted(dir.path(), 8);
    drop(storage);
    let (_, recovered, _) = Storage::open(dir.path(), opts).unwrap();
    let expected = replay(Some(snap), &written);
    assert!(expected.entries.is_empty());
    assert_eq!(recovered, expected);
}

/// Record boundaries of a snapshot file (the start of every record, and the end).
fn snapshot_boundaries(bytes: &[u8]) -> Vec<usize> {
    let mut at = vec![0];
    while let Ok(Some((_, next))) =
        record::decode_next::<snapshot::Part>(bytes, *at.last().unwrap())
    {
        at.push(next);
    }
    assert_eq!(*at.last().unwrap(), bytes.len());
    at
}

/// A snapshot spanning many records, cut at each record boundary: as the temporary file of a
/// crashed snapshot write, recovery ignores and removes it and rebuilds from the previous
/// snapshot and the log; as the snapshot file itself (damage after it was whole), start-up
/// stops naming the file and the offset, and changes nothing.
#[test]
fn a_multi_record_snapshot_torn_at_every_record_boundary() {
    let opts = StorageOptions {
        segment_bytes: 1024,
        snapshot_chunk_bytes: 16,
        preallocate: true,
    };
    let mut history = History::new(3);
    let dir = tempfile::tempdir().unwrap();
    let (mut storage, _, _) = Storage::open(dir.path(), opts).unwrap();
    let mut written = Vec::new();
    for _ in 0..20 {
        let batch = history.batch();
        storage.append(&batch).unwrap();
        written.extend(batch);
    }
    storage.sync().unwrap();
    let first = history.snapshot();
    storage.write_snapshot(&first).unwrap();
    for _ in 0..10 {
        let batch = history.batch();
        storage.append(&batch).unwrap();
        written.extend(batch);
    }
    storage.sync().unwrap();
    drop(storage);
    let expected = replay(Some(first.clone()), &written);

    let mut second = history.snapshot();
    second.data = (0..200u8).collect();
    let bytes = snapshot::encode_to_vec(&second, opts.snapshot_chunk_bytes);
    let bounds = snapshot_boundaries(&bytes);
    assert!(bounds.len() > 10, "{} records", bounds.len() - 1);
    let index = second.meta.last_index;
    let temp = dir.path().join(format!("snapshot-{index:020}.snap.tmp"));
    let file = dir.path().join(format!("snapshot-{index:020}.snap"));
    let pristine = dir_state(dir.path());
    for &cut in &bounds[..bounds.len() - 1] {
        // A crash while the new snapshot was being written.
        std::fs::write(&temp, &bytes[..cut]).unwrap();
        let (storage, recovered, report) = Storage::open(dir.path(), opts).unwrap();
        drop(storage);
        assert_eq!(recovered, expected, "temporary file cut at {cut}");
        assert_eq!(report.snapshot_index, Some(first.meta.last_index));
        assert!(!temp.exists(), "temporary file cut at {cut} removed");
        // Start-up adds an empty segment each time: back to the same files for the next cut.
        reset_dir(dir.path(), &pristine);

        // The snapshot file itself cut short (it was whole when renamed: this is damage).
        if index == first.meta.last_index {
            continue;
        }
        std::fs::write(&file, &bytes[..cut]).unwrap();
        let before = dir_state(dir.path());
        match Storage::open(dir.path(), opts) {
            Err(StorageError::Corrupt {
                file: f, offset, ..
            }) => {
                assert_eq!(f, file);
                assert_eq!(offset, cut as u64, "the first missing record is named");
            }
            other => panic!("cut at {cut}: expected corruption, got {other:?}"),
        }
        assert_eq!(dir_state(dir.path()), before, "nothing changed");
        std::fs::remove_file(&file).unwrap();
    }
    // Whole, it is the newest snapshot.
    std::fs::write(&file, &bytes).unwrap();
    let (_, recovered, report) = Storage::open(dir.path(), opts).unwrap();
    assert_eq!(report.snapshot_index, Some(index));
    assert_eq!(recovered.snapshot, Some(second));
}

/// Puts the directory back to exactly `files`.
fn reset_dir(dir: &Path, files: &BTreeMap<PathBuf, Vec<u8>>) {
    for path in dir_state(dir).keys() {
        if !files.contains_key(path) {
            std::fs::remove_file(path).unwrap();
        }
    }
    for (path, bytes) in files {
        std::fs::write(path, bytes).unwrap();
    }
}

/// The directory a [`start_on_a_full_disk`] child opens.
const FULL_DISK_DIR: &str = "STORAGE_CRASH_FULL_DISK_DIR";

/// Run by [`a_failed_start_on_a_full_disk_leaves_nothing_new_behind`] in a child process
/// that may not write a single byte to any file (`ulimit -f 0`, like a full disk): opening
/// the storage must fail.
#[test]
#[ignore = "run as a child process by a_failed_start_on_a_full_disk_leaves_nothing_new_behind"]
fn start_on_a_full_disk() {
    let dir = std::env::var(FULL_DISK_DIR).expect("run by the parent test");
    match Storage::open(Path::new(&dir), StorageOptions::default()) {
        Err(e) => println!("refused as expected: {e}"),
        Ok(_) => panic!("opened on a disk that takes no bytes"),
    }
}

#[test]
fn a_failed_start_on_a_full_disk_leaves_nothing_new_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (mut storage, _, _) = Storage::open(dir.path(), StorageOptions::default()).unwrap();
    let mut history = History::new(4);
    // A vote, so that the next segment starts by writing it.
    storage
        .append(&[Record::Protocol(Durable {
            promised: 1,
            ..Durable::initial(3)
        })])
        .unwrap();
    storage.append(&history.batch()).unwrap();
    storage.sync().unwrap();
    drop(storage);
    let before = dir_state(dir.path());
    let exe = std::env::current_exe().unwrap();
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 0; exec \"$0\" --exact start_on_a_full_disk --ignored --nocapture")
        .arg(&exe)
        .env(FULL_DISK_DIR, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("refused as expected"), "{stdout}");
    // The last segment's zeros written ahead may be cut: they were never a record.
    let records = |state: BTreeMap<PathBuf, Vec<u8>>| -> BTreeMap<PathBuf, Vec<u8>> {
        state
            .into_iter()
            .map(|(path, mut bytes)| {
                if path.extension().is_some_and(|e| e == "log") {
                    bytes.truncate(records_end(&bytes) as usize);
                }
                (path, bytes)
            })
            .collect()
    };
    assert_eq!(
        records(dir_state(dir.path())),
        records(before),
        "no new or changed file"
    );
}

#[test]
fn a_directory_holds_no_state_until_a_record_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("replica-0");
    assert!(Storage::holds_no_state(&data).unwrap(), "missing");
    std::fs::create_dir(&data).unwrap();
    assert!(Storage::holds_no_state(&data).unwrap(), "empty");
    let opts = StorageOptions::default();
    drop(Storage::open(&data, opts).unwrap());
    assert!(!segments(&data).is_empty());
    assert!(
        Storage::holds_no_state(&data).unwrap(),
        "only an empty segment"
    );
    let (mut storage, _, _) = Storage::open(&data, opts).unwrap();
    storage.append(&History::new(1).batch()).unwrap();
    storage.sync().unwrap();
    drop(storage);
    assert!(!Storage::holds_no_state(&data).unwrap(), "a record written");
}
