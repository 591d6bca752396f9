//! The storage's writer. `Persist` outputs are queued during a turn of the event loop; at the
//! end of the turn they go to the storage thread, which writes every one queued so far, makes
//! them durable with one sync (group commit), and reports the highest id done through a
//! channel and the loop's waker. Under load the loop never waits for a disk.
//!
//! On a backup, when the thread is idle and the turn's batch is small (one `Append` of a few
//! requests), the loop writes and syncs it itself instead: waking the thread and being woken
//! by it cost two thread switches per sync, on the critical path of every request. A backup
//! syncs one batch at a time either way. The primary always leaves the sync to the thread:
//! its loop must go on sending `Append`s and replies meanwhile (syncing itself, it served 8
//! clients a quarter slower). The storage is shared under a lock that the two never
//! contend for: the loop takes it only while nothing is in flight on the thread.

use crate::storage::{Storage, StorageError};
use chat_core::replica::{Persist, PersistId};
use mio::Waker;
use prometheus_client::metrics::histogram::Histogram;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

/// What the I/O thread reports: every persist up to this id is durable, or the storage failed.
type Done = Result<PersistId, StorageError>;

/// The most records a batch the loop syncs itself may hold: above it the turn had real load,
/// and the thread's sync overlapping the loop's work is worth the two switches.
const INLINE_MAX_RECORDS: usize = 8;

#[derive(Debug)]
pub(super) struct IoThread {
    storage: Arc<Mutex<Storage>>,
    /// Queued in this turn, not yet handed on.
    queued: Vec<(PersistId, Persist)>,
    /// The highest id handed to the thread, and the highest it reported done.
    submitted: PersistId,
    reported: PersistId,
    fsync_seconds: Histogram,
    ops: Option<Sender<(PersistId, Persist)>>,
    done: Receiver<Done>,
    thread: Option<JoinHandle<()>>,
}

impl IoThread {
    /// Starts the thread; each fsync's time goes to `fsync_seconds`.
    pub(super) fn spawn(
        storage: Storage,
        waker: Arc<Waker>,
        fsync_seconds: Histogram,
    ) -> std::io::Result<IoThread> {
        let (ops, ops_rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let storage = Arc::new(Mutex::new(storage));
        let shared = storage.clone();
        let histogram = fsync_seconds.clone();
        let thread = thread::Builder::new()
            .name("chat-storage".to_owned())
            .spawn(move || {
                let _wake = WakeOnExit(waker.clone());
                work(&shared, ops_rx, done_tx, &waker, &histogram);
            })?;
        Ok(IoThread {
            storage,
            queued: Vec::new(),
            submitted: 0,
            reported: 0,
            fsync_seconds,
            ops: Some(ops),
            done,
            thread: Some(thread),
        })
    }

    /// Queues `what` behind everything queued before; it is written at the end of the turn
    /// ([`IoThread::end_turn`]).
    pub(super) fn submit(&mut self, id: PersistId, what: Persist) {
        self.queued.push((id, what));
    }

    /// The end of a turn of the loop: writes and syncs the turn's batch here if `inline` is
    /// allowed, the thread is idle and the batch small, returning the last id now durable;
    /// otherwise hands it to the thread.
    pub(super) fn end_turn(&mut self, inline: bool) -> Result<Option<PersistId>, StorageError> {
        if self.queued.is_empty() {
            return Ok(None);
        }
        let records = self.queued.iter().try_fold(0, |n, (_, what)| match what {
            Persist::Records(records) => Some(n + records.len()),
            // A snapshot or a compaction is long work: the thread's.
            Persist::Snapshot(_) | Persist::Compact(_) => None,
        });
        let small = records.is_some_and(|n| n <= INLINE_MAX_RECORDS);
        let idle = self.submitted == self.reported;
        if inline && idle && small {
            if let Ok(mut storage) = self.storage.try_lock() {
                let batch = std::mem::take(&mut self.queued);
                let last = write_batch(&mut storage, batch.into_iter(), &self.fsync_seconds)?;
                self.submitted = last;
                self.reported = last;
                return Ok(Some(last));
            }
        }
        self.hand_on();
        Ok(None)
    }

    /// Hands what is queued to the thread, whatever its size.
    pub(super) fn hand_on(&mut self) {
        for (id, what) in self.queued.drain(..) {
            self.submitted = id;
            if let Some(ops) = &self.ops {
                // If the thread is gone, `completed` reports it.
                let _ = ops.send((id, what));
            }
        }
    }

    /// The highest persist id the thread made durable since the last call, if any.
    pub(super) fn completed(&mut self) -> Result<Option<PersistId>, StorageError> {
        let mut highest = None;
        while let Ok(done) = self.done.try_recv() {
            highest = highest.max(Some(done?));
        }
        if let Some(id) = highest {
            self.reported = self.reported.max(id);
        }
        Ok(highest)
    }

    /// Whether the thread has exited (after a failure it reports through `completed`).
    pub(super) fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Lets the thread write and sync everything queued, then waits for it.
    pub(super) fn finish(mut self) -> Result<Option<PersistId>, StorageError> {
        self.hand_on();
        self.ops = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.completed()
    }
}

/// Wakes the event loop when the thread ends, however it ends (a panic included).
pub(super) struct WakeOnExit(pub(super) Arc<Waker>);

impl Drop for WakeOnExit {
    fn drop(&mut self) {
        let _ = self.0.wake();
    }
}

fn work(
    storage: &Mutex<Storage>,
    ops: Receiver<(PersistId, Persist)>,
    done: Sender<Done>,
    waker: &Waker,
    fsync_seconds: &Histogram,
) {
    while let Ok(first) = ops.recv() {
        let batch = std::iter::once(first).chain(ops.try_iter());
        let result = match storage.lock() {
            Ok(mut storage) => write_batch(&mut storage, batch, fsync_seconds),
            Err(_) => return, // The loop panicked while writing: nothing more is safe.
        };
        let failed = result.is_err();
        if done.send(result).is_err() {
            return;
        }
        let _ = waker.wake();
        if failed {
            return;
        }
    }
}

/// Writes the batch in order with one final sync; returns the last id written.
fn write_batch(
    storage: &mut Storage,
    batch: impl Iterator<Item = (PersistId, Persist)>,
    fsync_seconds: &Histogram,
) -> Result<PersistId, StorageError> {
    let mut last = 0;
    for (id, what) in batch {
        match what {
            Persist::Records(records) => storage.append(&records)?,
            Persist::Snapshot(snapshot) => {
                // Keep the order: what was appended before the snapshot is durable first.
                storage.sync()?;
                storage.write_snapshot(&snapshot)?;
            }
            Persist::Compact(meta) => storage.compact(meta.last_index)?,
        }
        last = id;
    }
    let started = std::time::Instant::now();
    storage.sync()?;
    fsync_seconds.observe(started.elapsed().as_secs_f64());
    Ok(last)
}
