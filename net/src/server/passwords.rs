//! Accounts with passwords, at the primary: a `ClientToServer::WithPassword` becomes a
//! [`PasswordRequest`], the core's one decision for it, whose slow work (hash or verify) runs
//! on the [`HashPool`]; what it says to order is ordered, as `Op::CreateWithPassword` (with
//! the hash), `Op::LoginVerified` (with the hash it was verified against) or
//! `Op::LoginRefused`. The plain password goes no further than the request and the pool:
//! not into the log, a snapshot, or a log line. A login waits while the replica's applied
//! state may be stale for it (the read rule, `Replica::account_lock`).
//!
//! Every failed login (wrong password, no such account, an account without a password) is
//! ordered too, late, as `Op::LoginRefused`, which the chat answers
//! `ChatError::BadCredentials`: so every failure gets the same answer, and a retry of any
//! login gets the answer its first attempt got, from the client table. The n-th consecutive
//! failure for a user name is ordered after `250 ms * 2^(n-1)`, at most 8 s, and any login
//! attempt on that name meanwhile waits until then before it is even verified, so parallel
//! guesses are slowed down as much as sequential ones. A successful login resets the count.
//! The counts live in this server only (not replicated): a failover forgets them.

use super::hash_pool::{HashPool, JobId};
use chat_core::ids::{ClientId, RequestNo};
use chat_core::password::request::{Next, PasswordRequest, Work};
use chat_core::password::HashCost;
use chat_core::replica::{Output, Replica};
use chat_core::service::Request;
use chat_core::time::{Duration, Instant};
use chat_core::wire::{PasswordAction, MAX_FAILED_LOGIN_DELAY};
use mio::Waker;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use tracing::{debug, warn};

/// The wait before the answer to a first failed login; doubled for each further one.
const FIRST_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = MAX_FAILED_LOGIN_DELAY;
/// Password jobs waiting for a worker; more are dropped (the client retries).
const QUEUE: usize = 64;
/// Login attempts waiting (for their user name's delay to end, or for the read rule); more
/// are dropped.
const MAX_DEFERRED: usize = 1024;
/// Failure counts kept before stale ones (no failure for `FORGET_AFTER`) are forgotten.
const MAX_TRACKED: usize = 10_000;
const FORGET_AFTER: Duration = Duration::from_secs(600);

/// A password request being served.
#[derive(Debug)]
pub(super) struct Attempt {
    request: PasswordRequest,
    /// Its refusal has been held back for its delay already: order it when asked again.
    refusal_held: bool,
}

impl Attempt {
    /// Its key in `Passwords::busy`.
    fn key(&self) -> (ClientId, RequestNo) {
        (self.request.client, self.request.request)
    }
}

/// Something due at a time.
#[derive(Debug)]
enum Timed {
    /// A failed login's delay is over: order its refusal (if still right).
    Refuse(Attempt),
    /// Try a login again once its user name's delay is over.
    Retry(Attempt),
}

/// Consecutive failed logins of one user name.
#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    /// Until then, the last failure's answer is held back and new attempts wait.
    until: Instant,
}

pub(super) struct Passwords {
    pool: HashPool,
    cost: HashCost,
    next_job: JobId,
    jobs: HashMap<JobId, Attempt>,
    /// Requests being served (hashing, verifying, waiting): a retry of one is ignored, its
    /// answer comes when the first is done.
    busy: HashSet<(ClientId, RequestNo)>,
    failures: HashMap<String, Failures>,
    /// Keyed by (due time, sequence number).
    timers: BTreeMap<(Instant, u64), Timed>,
    next_timer: u64,
    /// Logins waiting for the read rule; asked again at every turn of the loop.
    stale: Vec<Attempt>,
    /// Attempts in `timers` and `stale`.
    deferred: usize,
}

/// The delay after the `count`-th consecutive failure (from 1).
fn delay(count: u32) -> Duration {
    let doublings = count.saturating_sub(1).min(16);
    FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
}

impl Passwords {
    /// Starts the worker threads (half the cores, at least one, at most four, so that the
    /// event loop keeps a core). New passwords are hashed at `cost`.
    pub(super) fn start(cost: HashCost, waker: Arc<Waker>) -> std::io::Result<Passwords> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Passwords {
            pool: HashPool::start((cores / 2).clamp(1, 4), QUEUE, waker)?,
            cost,
            next_job: 1,
            jobs: HashMap::new(),
            busy: HashSet::new(),
            failures: HashMap::new(),
            timers: BTreeMap::new(),
            next_timer: 0,
            stale: Vec::new(),
            deferred: 0,
        })
    }

    /// When the next timer is due.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.timers.keys().next().map(|(at, _)| *at)
    }

    /// Queues work on the pool; `false` (and the request is dropped) if the queue is full.
    fn submit(&mut self, attempt: Attempt, work: Work) -> bool {
        let id = self.next_job;
        self.next_job += 1;
        if !self.pool.submit(id, work) {
            return false;
        }
        self.jobs.insert(id, attempt);
        true
    }

    /// Holds `attempt` back until `at`; `false` if too many are held already.
    fn schedule(&mut self, at: Instant, timed: Timed) -> bool {
        if self.deferred >= MAX_DEFERRED {
            return false;
        }
        self.deferred += 1;
        self.next_timer += 1;
        self.timers.insert((at, self.next_timer), timed);
        true
    }

    /// Counts a failed login of `user`; returns when its answer is due.
    fn fail(&mut self, user: &str, now: Instant) -> Instant {
        if self.failures.len() >= MAX_TRACKED && !self.failures.contains_key(user) {
            self.failures.retain(|_, f| f.until + FORGET_AFTER > now);
        }
        let failures = self.failures.entry(user.to_owned()).or_insert(Failures {
            count: 0,
            until: now,
        });
        failures.count = failures.count.saturating_add(1);
        failures.until = now + delay(failures.count);
        failures.until
    }

    /// Until when attempts on `user` wait before they are verified, if they do.
    fn held_until(&self, user: &str, now: Instant) -> Option<Instant> {
        let until = self.failures.get(user)?.until;
        (until > now).then_some(until)
    }
}

/// What serving a password request asks of the event loop.
#[derive(Debug)]
pub(super) enum Decision {
    /// Carry out this output of the replica (a redirect: this replica is not the primary).
    Redirect(Output),
    /// Hand the replica this request to order.
    Order(Request),
}

impl Passwords {
    /// A `WithPassword` request, whose connection is attached to its session.
    pub(super) fn on_request(
        &mut self,
        request: PasswordRequest,
        replica: &Replica,
        now: Instant,
    ) -> Option<Decision> {
        if !self.busy.insert((request.client, request.request)) {
            return None; // A retry of a request in progress: the answer is on its way.
        }
        let attempt = Attempt {
            request,
            refusal_held: false,
        };
        self.advance(attempt, replica, now)
    }

    /// The next attempt whose job finished (the loop's waker fired), with what the job
    /// found; hand it to [`Passwords::advance`].
    pub(super) fn next_finished(&mut self) -> Option<Attempt> {
        while let Some((id, outcome)) = self.pool.finished() {
            if let Some(mut attempt) = self.jobs.remove(&id) {
                attempt.request.found(outcome);
                return Some(attempt);
            }
        }
        None
    }

    /// The attempts to advance now: logins that waited for the read rule (the replica may
    /// have applied more since), and those whose timers are due.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<Attempt> {
        let mut due = std::mem::take(&mut self.stale);
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            match entry.remove() {
                Timed::Refuse(attempt) | Timed::Retry(attempt) => due.push(attempt),
            }
        }
        self.deferred -= due.len();
        due
    }

    /// Asks the core's decision what to do with `attempt` next: does what is this module's
    /// to do (run the work, hold it back), and returns what is the event loop's.
    pub(super) fn advance(
        &mut self,
        mut attempt: Attempt,
        replica: &Replica,
        now: Instant,
    ) -> Option<Decision> {
        match attempt.request.next(replica, rand::random, self.cost) {
            Next::Redirect(output) => {
                self.busy.remove(&attempt.key());
                return Some(Decision::Redirect(output));
            }
            Next::Wait => {
                if self.deferred >= MAX_DEFERRED {
                    self.drop_attempt(attempt.key());
                } else {
                    self.deferred += 1;
                    self.stale.push(attempt);
                }
            }
            Next::Run(work) => {
                let key = attempt.key();
                let held = self.held_until(&attempt.request.user, now);
                match held {
                    Some(until) if matches!(work, Work::Verify { .. }) => {
                        if !self.schedule(until, Timed::Retry(attempt)) {
                            self.drop_attempt(key);
                        }
                    }
                    _ => {
                        attempt.refusal_held = false;
                        if !self.submit(attempt, work) {
                            self.drop_attempt(key);
                        }
                    }
                }
            }
            Next::Order { refused: true, .. } if !attempt.refusal_held => {
                let user = &attempt.request.user;
                let due = self.fail(user, now);
                let wait = (due - now).as_millis();
                debug!(user = %user, "failed login; refusing it in {wait} ms");
                attempt.refusal_held = true;
                let key = attempt.key();
                if !self.schedule(due, Timed::Refuse(attempt)) {
                    self.drop_attempt(key);
                }
            }
            Next::Order { request, refused } => {
                self.busy.remove(&attempt.key());
                if !refused && attempt.request.action == PasswordAction::Login {
                    self.failures.remove(&attempt.request.user);
                }
                return Some(Decision::Order(request));
            }
        }
        None
    }

    /// Too much password work waiting: the request `key` is dropped, and its client retries
    /// it after its reply timeout.
    fn drop_attempt(&mut self, key: (ClientId, RequestNo)) {
        self.busy.remove(&key);
        warn!("too many password requests waiting; dropping one (its client will retry)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_from_a_quarter_second_up_to_eight() {
        let ms: Vec<u128> = (1..=8).map(|n| delay(n).as_millis()).collect();
        assert_eq!(ms, [250, 500, 1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(delay(u32::MAX), MAX_DELAY);
    }
}
