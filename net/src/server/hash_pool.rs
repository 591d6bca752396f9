//! Worker threads for password hashing and verification, which take tens of milliseconds
//! each on purpose: the event loop hands them jobs through a bounded queue and takes the
//! results from a channel when the loop's waker fires, so it never waits for a hash.

use chat_core::password::request::{Outcome, Work};
use mio::Waker;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;
use tracing::error;

/// Identifies a job; the pool's user keeps what it needs to act on the result under it.
pub(super) type JobId = u64;

pub(super) struct HashPool {
    jobs: SyncSender<(JobId, Work)>,
    done: Receiver<(JobId, Outcome)>,
}

impl HashPool {
    /// Starts `workers` threads that take up to `queue` waiting jobs and wake `waker` after
    /// each one. The threads end when the pool is dropped, after the job they are on.
    pub(super) fn start(
        workers: usize,
        queue: usize,
        waker: Arc<Waker>,
    ) -> std::io::Result<HashPool> {
        let (jobs, jobs_rx) = mpsc::sync_channel(queue);
        let (done_tx, done) = mpsc::channel();
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        for n in 0..workers.max(1) {
            let (jobs_rx, done_tx, waker) = (jobs_rx.clone(), done_tx.clone(), waker.clone());
            thread::Builder::new()
                .name(format!("chat-passwords-{n}"))
                .spawn(move || work(&jobs_rx, &done_tx, &waker))?;
        }
        Ok(HashPool { jobs, done })
    }

    /// Queues a job; `false` if the queue is full (or the workers are gone).
    pub(super) fn submit(&self, id: JobId, work: Work) -> bool {
        match self.jobs.try_send((id, work)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => false,
            Err(TrySendError::Disconnected(_)) => {
                error!("the password workers are gone");
                false
            }
        }
    }

    /// The next finished job, if any.
    pub(super) fn finished(&self) -> Option<(JobId, Outcome)> {
        self.done.try_recv().ok()
    }
}

fn work(jobs: &Mutex<Receiver<(JobId, Work)>>, done: &Sender<(JobId, Outcome)>, waker: &Waker) {
    loop {
        // The lock is held only while waiting for a job, never while hashing.
        let next = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok((id, work)) = next else {
            return;
        };
        let outcome = work.run();
        if done.send((id, outcome)).is_err() {
            return;
        }
        // A failed wake only delays the result until the loop's next event or timer.
        let _ = waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_core::password::{self, HashCost, Password};
    use mio::{Events, Poll, Token};
    use std::time::Duration;

    fn outcomes(pool: &HashPool, poll: &mut Poll, want: usize) -> Vec<(JobId, Outcome)> {
        let mut events = Events::with_capacity(8);
        let mut got = Vec::new();
        while got.len() < want {
            poll.poll(&mut events, Some(Duration::from_secs(10)))
                .unwrap();
            assert!(!events.is_empty(), "no wake within 10 s");
            while let Some(done) = pool.finished() {
                got.push(done);
            }
        }
        got.sort_by_key(|(id, _)| *id);
        got
    }

    #[test]
    fn hashes_and_verifies_off_the_calling_thread_and_wakes_it() {
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(0)).unwrap());
        let pool = HashPool::start(2, 4, waker).unwrap();
        let password = || Password::new("hunter2".into());
        let phc = password::hash("hunter2", &[1; 16], HashCost::TINY);
        let hash = Work::Hash {
            password: password(),
            salt: [1; 16],
            cost: HashCost::TINY,
        };
        assert!(pool.submit(1, hash));
        let right = Work::Verify {
            phc: phc.clone(),
            password: password(),
        };
        assert!(pool.submit(2, right));
        let wrong = Work::Verify {
            phc: phc.clone(),
            password: Password::new("hunter3".into()),
        };
        assert!(pool.submit(3, wrong));
        assert_eq!(
            outcomes(&pool, &mut poll, 3),
            [
                (1, Outcome::Hashed(phc)),
                (2, Outcome::Verified(true)),
                (3, Outcome::Verified(false))
            ]
        );
    }

    #[test]
    fn a_full_queue_refuses_more_work() {
        let poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(0)).unwrap());
        let pool = HashPool::start(1, 1, waker).unwrap();
        // A costly job keeps the one worker busy while the queue (one slot) fills up.
        let slow = HashCost {
            memory_kib: 64 * 1024,
            iterations: 4,
        };
        let job = |cost| Work::Hash {
            password: Password::new("pw".into()),
            salt: [0; 16],
            cost,
        };
        let accepted = (0..4).filter(|&i| pool.submit(i, job(slow))).count();
        assert!(
            accepted <= 2,
            "accepted {accepted} jobs into a one-slot queue"
        );
    }
}
