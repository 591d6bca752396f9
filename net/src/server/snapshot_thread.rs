//! The thread that encodes and writes the replica's own snapshots (`Output::Snapshot`), so
//! that neither the event loop nor the log's group commit waits for a state of many
//! megabytes. It reports each written snapshot through a channel and the loop's waker; the
//! loop hands it to the replica (`Input::SnapshotWritten`), whose `Persist::Compact` then
//! lets the I/O thread delete what it covers.

use super::io_thread::WakeOnExit;
use crate::storage::{SnapshotWriter, StorageError};
use chat_core::durable::Snapshot;
use chat_core::replica::SnapshotJob;
use mio::Waker;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

#[derive(Debug)]
pub(super) struct SnapshotThread {
    jobs: Option<Sender<SnapshotJob>>,
    done: Receiver<Result<Snapshot, StorageError>>,
    thread: Option<JoinHandle<()>>,
}

impl SnapshotThread {
    pub(super) fn spawn(writer: SnapshotWriter, waker: Arc<Waker>) -> std::io::Result<Self> {
        let (jobs, jobs_rx) = mpsc::channel::<SnapshotJob>();
        let (done_tx, done) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("chat-snapshot".to_owned())
            .spawn(move || {
                let _wake = WakeOnExit(waker.clone());
                for job in jobs_rx {
                    let snapshot = job.encode();
                    let result = writer.write(&snapshot).map(|()| snapshot);
                    let failed = result.is_err();
                    if done_tx.send(result).is_err() || failed {
                        return;
                    }
                    let _ = waker.wake();
                }
            })?;
        Ok(SnapshotThread {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
        })
    }

    pub(super) fn submit(&self, job: SnapshotJob) {
        if let Some(jobs) = &self.jobs {
            // If the thread is gone, `completed` reports it.
            let _ = jobs.send(job);
        }
    }

    /// Snapshots written since the last call, oldest first, or the failure that stopped the
    /// thread.
    pub(super) fn completed(&self) -> Result<Vec<Snapshot>, StorageError> {
        let mut written = Vec::new();
        loop {
            match self.done.try_recv() {
                Ok(result) => written.push(result?),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return Ok(written),
            }
        }
    }

    /// Whether the thread has exited (after a failure it reports through `completed`).
    pub(super) fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Lets the thread finish the snapshot it is writing, then waits for it.
    pub(super) fn finish(mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
