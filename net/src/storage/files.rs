//! The storage directory's file names, and the file-system steps that need care (directory
//! fsync, error context).

use super::StorageError;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// What a file in the storage directory is, judged by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FileKind {
    /// `wal-<seq>.log`: a log segment.
    Segment(u64),
    /// `snapshot-<last index>.snap`.
    Snapshot(u64),
    /// `*.tmp`: a snapshot whose writing did not finish.
    Temp,
}

pub(super) fn segment_name(seq: u64) -> String {
    format!("wal-{seq:020}.log")
}

pub(super) fn snapshot_name(last_index: u64) -> String {
    format!("snapshot-{last_index:020}.snap")
}

pub(super) fn temp_name(last_index: u64) -> String {
    format!("{}.tmp", snapshot_name(last_index))
}

/// Files with other names are none of ours and are left alone.
pub(super) fn classify(name: &str) -> Option<FileKind> {
    if name.ends_with(".tmp") {
        return Some(FileKind::Temp);
    }
    let number = |s: &str| Some(s).filter(|s| s.len() == 20)?.parse::<u64>().ok();
    if let Some(seq) = name
        .strip_prefix("wal-")
        .and_then(|s| s.strip_suffix(".log"))
    {
        return number(seq).map(FileKind::Segment);
    }
    let index = name.strip_prefix("snapshot-")?.strip_suffix(".snap")?;
    number(index).map(FileKind::Snapshot)
}

/// The directory's files of each kind, segments and snapshots in ascending order.
#[derive(Debug, Default)]
pub(super) struct Listing {
    pub segments: Vec<(u64, PathBuf)>,
    pub snapshots: Vec<(u64, PathBuf)>,
    pub temps: Vec<PathBuf>,
}

pub(super) fn list(dir: &Path) -> Result<Listing, StorageError> {
    let mut listing = Listing::default();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let path = entry.path();
        match classify(&name) {
            Some(FileKind::Segment(seq)) => listing.segments.push((seq, path)),
            Some(FileKind::Snapshot(index)) => listing.snapshots.push((index, path)),
            Some(FileKind::Temp) => listing.temps.push(path),
            None => {}
        }
    }
    listing.segments.sort_unstable();
    listing.snapshots.sort_unstable();
    Ok(listing)
}

/// Makes the directory's entries (created, renamed or removed files) durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .map_err(io_error(dir))?
        .sync_all()
        .map_err(sync_error(dir))
}

pub(super) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn sync_error(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| StorageError::Sync {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(classify(&segment_name(7)), Some(FileKind::Segment(7)));
        assert_eq!(
            classify(&snapshot_name(u64::MAX)),
            Some(FileKind::Snapshot(u64::MAX))
        );
        assert_eq!(classify(&temp_name(3)), Some(FileKind::Temp));
        assert_eq!(classify("wal-1.log"), None);
        assert_eq!(classify("notes.txt"), None);
    }
}
