//! Start-up: read the newest snapshot and every segment, check them, and only then repair
//! (truncate a torn tail, remove leftover temporary files).

use super::files::{self, io_error, sync_dir, sync_error};
use super::{start_segment, RecoveryReport, Segment, Storage, StorageError, StorageOptions};
use chat_core::codec::record::{self, End};
use chat_core::codec::snapshot;
use chat_core::durable::{Record, Recovered, Snapshot};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

pub(super) fn open(
    dir: &Path,
    opts: StorageOptions,
) -> Result<(Storage, Recovered, RecoveryReport), StorageError> {
    create_dir(dir)?;
    let listing = files::list(dir)?;
    let snapshot = match listing.snapshots.last() {
        Some((index, path)) => Some(read_snapshot(path, *index)?),
        None => None,
    };

    let mut sealed = Vec::new();
    let mut records = Vec::new();
    let mut torn_tail = None;
    // Where the last segment's records end, if bytes follow them (a torn write or zeros).
    let mut cut = None;
    let last_seq = listing.segments.last().map(|(seq, _)| *seq);
    for (seq, path) in &listing.segments {
        let bytes = std::fs::read(path).map_err(io_error(path))?;
        let decoded = record::decode_all::<Record>(&bytes);
        match decoded.end {
            End::Clean => {}
            End::TornTail { offset } if Some(*seq) == last_seq => {
                cut = Some((path.clone(), offset));
                // Zeros to the end are what was written ahead of the appends, not a torn write.
                if bytes[offset as usize..].iter().any(|&b| b != 0) {
                    torn_tail = Some((path.clone(), offset));
                }
            }
            End::TornTail { offset } => {
                return Err(corrupt(
                    path,
                    offset,
                    "cut-short record before the last segment",
                ));
            }
            End::Corrupt { offset, reason } => return Err(corrupt(path, offset, &reason)),
        }
        let mut segment = Segment {
            seq: *seq,
            path: path.clone(),
            max_index: None,
        };
        for (_, record) in decoded.records {
            segment.note(&record);
            records.push(record);
        }
        sealed.push(segment);
    }
    let last_vote = records
        .iter()
        .rev()
        .find(|r| matches!(r, Record::Protocol(_)))
        .cloned();
    let report = RecoveryReport {
        torn_tail: torn_tail.clone(),
        segments: listing.segments.len(),
        records: records.len(),
        snapshot_index: snapshot.as_ref().map(|s| s.meta.last_index),
    };
    let recovered = Recovered::replay(snapshot, records)?;

    // Everything checked out: repair.
    if let Some((path, offset)) = &cut {
        if torn_tail.is_some() {
            tracing::warn!(file = %path.display(), offset, "truncating a torn tail (a write cut short)");
        }
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_error(path))?;
        file.set_len(*offset).map_err(io_error(path))?;
        file.sync_all().map_err(sync_error(path))?;
    }
    if let Some((_, last)) = listing.segments.last() {
        // The last run's active segment is sealed now: give back the blocks it reserved past
        // its end (a truncation to its own size changes no byte, so it needs no sync).
        let file = OpenOptions::new()
            .write(true)
            .open(last)
            .map_err(io_error(last))?;
        let len = file.metadata().map_err(io_error(last))?.len();
        file.set_len(len).map_err(io_error(last))?;
    }
    for temp in &listing.temps {
        std::fs::remove_file(temp).map_err(io_error(temp))?;
    }
    if !listing.temps.is_empty() {
        sync_dir(dir)?;
    }

    let (active, file, len) = start_segment(
        dir,
        last_seq.map_or(1, |s| s + 1),
        last_vote.as_ref(),
        opts.preallocation(),
    )?;
    let storage = Storage {
        dir: dir.to_path_buf(),
        opts,
        sealed,
        active,
        file,
        len,
        file_len: len,
        unsynced: false,
        last_vote,
        pending: Vec::new(),
    };
    Ok((storage, recovered, report))
}

/// Creates the directory (and makes its entry durable) if it does not exist.
fn create_dir(dir: &Path) -> Result<(), StorageError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => sync_dir(Path::new(".")),
    }
}

/// Reads a snapshot file, which must hold one whole snapshot of `index`.
fn read_snapshot(path: &PathBuf, index: u64) -> Result<Snapshot, StorageError> {
    let bytes = std::fs::read(path).map_err(io_error(path))?;
    let snap = snapshot::decode(&bytes).map_err(|e| corrupt(path, e.offset, &e.reason))?;
    if snap.meta.last_index != index {
        let why = format!(
            "snapshot is of index {}, its name says {index}",
            snap.meta.last_index
        );
        return Err(corrupt(path, 0, &why));
    }
    Ok(snap)
}

fn corrupt(path: &Path, offset: u64, reason: &str) -> StorageError {
    StorageError::Corrupt {
        file: path.to_path_buf(),
        offset,
        reason: reason.to_string(),
    }
}
