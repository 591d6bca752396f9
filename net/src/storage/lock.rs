//! One process per data directory: an exclusive `flock` on `<dir>/LOCK`, taken before
//! anything in the directory is read and held for the life of the process. The kernel
//! releases it when the process dies, however it dies, so a stale lock file is harmless. The
//! holder writes its process id into the file, so that the next one can say who holds it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside the data directory (storage ignores files of other names).
pub const LOCK_FILE: &str = "LOCK";

/// Holds the lock until dropped (or the process ends).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("data directory {} is in use by process {}", dir.display(), holder.as_deref().unwrap_or("(unknown)"))]
    InUse {
        dir: PathBuf,
        /// The process id the holder wrote, if it could be read.
        holder: Option<String>,
    },
    #[error("cannot lock the data directory {}: {source}", dir.display())]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
}

impl DirLock {
    /// Creates `dir` if needed and locks it for this process, or says which process holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock, LockError> {
        let io = |source| LockError::Io {
            dir: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let holder = file
                    .read_to_string(&mut text)
                    .ok()
                    .map(|_| text.trim().to_owned())
                    .filter(|pid| !pid.is_empty());
                return Err(LockError::InUse {
                    dir: dir.to_owned(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DirLock { _file: file })
    }

    /// Whether some process holds `dir`'s lock now (without keeping it): `Err(InUse)` if so.
    /// A directory that does not exist yet is free.
    pub fn check(dir: &Path) -> Result<(), LockError> {
        if !dir.join(LOCK_FILE).exists() {
            return Ok(());
        }
        DirLock::acquire(dir).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_directory_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("replica-0");
        let held = DirLock::acquire(&data).unwrap();
        // flock locks belong to the open file, so a second open in this process conflicts
        // just as another process would.
        let err = DirLock::acquire(&data).unwrap_err();
        let pid = std::process::id().to_string();
        assert_eq!(
            err.to_string(),
            format!(
                "data directory {} is in use by process {pid}",
                data.display()
            )
        );
        assert!(DirLock::check(&data).is_err());
        drop(held);
        assert!(DirLock::check(&data).is_ok(), "released on drop");
        let _again = DirLock::acquire(&data).unwrap();
    }

    #[test]
    fn a_missing_directory_is_free_and_created_by_acquire() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("new");
        assert!(DirLock::check(&data).is_ok());
        assert!(!data.exists(), "check creates nothing");
        let _lock = DirLock::acquire(&data).unwrap();
        assert!(data.join(LOCK_FILE).exists());
    }
}
