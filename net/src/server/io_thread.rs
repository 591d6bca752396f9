//! The thread that owns the storage. It takes `Persist` outputs in order, writes every one
//! queued so far, makes them durable with one sync (group commit), and reports the highest
//! id done through a channel and the loop's waker. The loop never waits for a disk.

use crate::storage::{Storage, StorageError};
use chat_core::replica::{Persist, PersistId};
use mio::Waker;
use prometheus_client::metrics::histogram::Histogram;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

/// What the I/O thread reports: every persist up to this id is durable, or the storage failed.
type Done = Result<PersistId, StorageError>;

#[derive(Debug)]
pub(super) struct IoThread {
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
        let thread = thread::Builder::new()
            .name("chat-storage".to_owned())
            .spawn(move || {
                let _wake = WakeOnExit(waker.clone());
                work(storage, ops_rx, done_tx, &waker, &fsync_seconds);
            })?;
        Ok(IoThread {
            ops: Some(ops),
            done,
            thread: Some(thread),
        })
    }

    /// Queues `what` behind everything queued before.
    pub(super) fn submit(&self, id: PersistId, what: Persist) {
        if let Some(ops) = &self.ops {
            // If the thread is gone, `completed` reports it.
            let _ = ops.send((id, what));
        }
    }

    /// The highest persist id made durable since the last call, if any.
    pub(super) fn completed(&self) -> Result<Option<PersistId>, StorageError> {
        let mut highest = None;
        loop {
            match self.done.try_recv() {
                Ok(done) => highest = highest.max(Some(done?)),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return Ok(highest),
            }
        }
    }

    /// Whether the thread has exited (after a failure it reports through `completed`).
    pub(super) fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Lets the thread write and sync everything queued, then waits for it.
    pub(super) fn finish(mut self) -> Result<Option<PersistId>, StorageError> {
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
    mut storage: Storage,
    ops: Receiver<(PersistId, Persist)>,
    done: Sender<Done>,
    waker: &Waker,
    fsync_seconds: &Histogram,
) {
    while let Ok(first) = ops.recv() {
        let batch = std::iter::once(first).chain(ops.try_iter());
        let result = write_batch(&mut storage, batch, fsync_seconds);
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
