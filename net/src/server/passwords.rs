//! Accounts with passwords, at the primary: `ClientToServer::WithPassword` is hashed or
//! verified on the [`HashPool`], and only then ordered, as `Op::CreateWithPassword` (with
//! the hash) or `Op::LoginVerified` (with the hash it was verified against). The plain
//! password goes no further than the pool: not into the log, a snapshot, or a log line.
//!
//! A login that fails (wrong password, no such account) is ordered too, late, as
//! `Op::LoginRefused`, which the chat answers `ChatError::BadCredentials`: so every failure
//! gets the same answer, and a retry of any login gets the answer its first attempt got,
//! from the client table. The n-th consecutive failure for a user name is ordered after
//! `250 ms * 2^(n-1)`, at most 8 s, and any login attempt on that name meanwhile waits until
//! then before it is even verified, so parallel guesses are slowed down as much as
//! sequential ones. A successful login resets the count. The counts live in this server
//! only (not replicated): a failover forgets them.

use super::event_loop::EventLoop;
use super::hash_pool::{HashPool, JobId, Outcome, Work};
use chat_core::chat::{AccountLock, Op};
use chat_core::ids::{ClientId, RequestNo};
use chat_core::password::{HashCost, Password};
use chat_core::replica::{Input, Role};
use chat_core::service::Request;
use chat_core::time::{Duration, Instant};
use chat_core::wire::{PasswordAction, ServerToClient, MAX_FAILED_LOGIN_DELAY};
use mio::Waker;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use tracing::{debug, warn};

/// The wait before the answer to a first failed login; doubled for each further one.
const FIRST_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = MAX_FAILED_LOGIN_DELAY;
/// Password jobs waiting for a worker; more are dropped (the client retries).
const QUEUE: usize = 64;
/// Login attempts waiting for their user name's delay to end; more are dropped.
const MAX_DEFERRED: usize = 1024;
/// Failure counts kept before stale ones (no failure for `FORGET_AFTER`) are forgotten.
const MAX_TRACKED: usize = 10_000;
const FORGET_AFTER: Duration = Duration::from_secs(600);

/// A `WithPassword` request being served: request `request` of `client`, about `user`.
#[derive(Debug)]
struct Pending {
    client: ClientId,
    request: RequestNo,
    user: String,
}

impl Pending {
    /// Its key in `Passwords::busy`.
    fn key(&self) -> (ClientId, RequestNo) {
        (self.client, self.request)
    }
}

/// A pending request with the password to hash or verify.
#[derive(Debug)]
struct Attempt {
    pending: Pending,
    password: Password,
}

/// What a job's result is for.
#[derive(Debug)]
enum Job {
    Create(Pending),
    /// Verifying against `phc`, the account's hash when the job started.
    Login {
        pending: Pending,
        phc: String,
    },
}

/// Something due at a time.
#[derive(Debug)]
enum Timed {
    /// Order a failed login's refusal.
    Refuse(Pending),
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
    jobs: HashMap<JobId, Job>,
    /// Requests being served (hashing, verifying, waiting): a retry of one is ignored, its
    /// answer comes when the first is done.
    busy: HashSet<(ClientId, RequestNo)>,
    failures: HashMap<String, Failures>,
    /// Keyed by (due time, sequence number).
    timers: BTreeMap<(Instant, u64), Timed>,
    next_timer: u64,
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
            deferred: 0,
        })
    }

    /// When the next timer is due.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.timers.keys().next().map(|(at, _)| *at)
    }

    /// Queues work on the pool; `false` (and the request is dropped) if the queue is full.
    fn submit(&mut self, job: Job, work: Work) -> bool {
        let id = self.next_job;
        self.next_job += 1;
        if !self.pool.submit(id, work) {
            return false;
        }
        self.jobs.insert(id, job);
        true
    }

    fn schedule(&mut self, at: Instant, timed: Timed) {
        self.next_timer += 1;
        self.timers.insert((at, self.next_timer), timed);
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
}

impl EventLoop {
    /// A `WithPassword` request from `client`, whose connection is attached.
    pub(super) fn on_password_request(
        &mut self,
        client: ClientId,
        request: RequestNo,
        action: PasswordAction,
        user: String,
        password: Password,
    ) {
        let status = self.replica.status();
        if status.role != Role::Primary {
            let redirect = ServerToClient::Redirect {
                primary: status.primary,
            };
            return self.send_to_client(client, &redirect);
        }
        if !self.passwords.busy.insert((client, request)) {
            return; // A retry of a request in progress: the answer is on its way.
        }
        let pending = Pending {
            client,
            request,
            user,
        };
        let attempt = Attempt { pending, password };
        match action {
            PasswordAction::Create => self.start_create(attempt),
            PasswordAction::Login => self.start_login(attempt),
        }
    }

    fn start_create(&mut self, Attempt { pending, password }: Attempt) {
        let work = Work::Hash {
            password,
            salt: rand::random(),
            cost: self.passwords.cost,
        };
        let key = pending.key();
        if !self.passwords.submit(Job::Create(pending), work) {
            self.drop_attempt(key);
        }
    }

    fn start_login(&mut self, attempt: Attempt) {
        let pending = &attempt.pending;
        let phc = match self.replica.account_lock(&pending.user) {
            AccountLock::Missing => {
                // Nothing to verify or count, but refused like a first failure.
                let due = self.now + FIRST_DELAY;
                return self.passwords.schedule(due, Timed::Refuse(attempt.pending));
            }
            AccountLock::Open => {
                // An open account lets anybody in, whatever the password.
                return self.order(attempt.pending, |user| Op::Login { user });
            }
            AccountLock::Protected(phc) => phc,
        };
        if let Some(failures) = self.passwords.failures.get(&pending.user) {
            if failures.until > self.now {
                if self.passwords.deferred >= MAX_DEFERRED {
                    return self.drop_attempt(pending.key());
                }
                self.passwords.deferred += 1;
                let until = failures.until;
                return self.passwords.schedule(until, Timed::Retry(attempt));
            }
        }
        let Attempt { pending, password } = attempt;
        let work = Work::Verify {
            phc: phc.clone(),
            password,
        };
        let key = pending.key();
        if !self.passwords.submit(Job::Login { pending, phc }, work) {
            self.drop_attempt(key);
        }
    }

    /// Too much password work waiting: the request `key` is dropped, and its client retries
    /// it after its reply timeout.
    fn drop_attempt(&mut self, key: (ClientId, RequestNo)) {
        self.passwords.busy.remove(&key);
        warn!("too many password requests waiting; dropping one (its client will retry)");
    }

    /// Orders `op(user)` as the pending request, as if its client had sent it: the request
    /// is served, no longer busy.
    fn order(&mut self, pending: Pending, op: impl FnOnce(String) -> Op) {
        self.passwords.busy.remove(&pending.key());
        let request = Request {
            client: pending.client,
            request: pending.request,
            op: op(pending.user),
        };
        self.replica.handle(self.now, Input::Client(request));
        self.drain_outputs();
    }

    /// Acts on every finished job (the loop's waker fired).
    pub(super) fn on_password_results(&mut self) {
        while let Some((id, outcome)) = self.passwords.pool.finished() {
            let Some(job) = self.passwords.jobs.remove(&id) else {
                continue;
            };
            match (job, outcome) {
                (Job::Create(pending), Outcome::Hashed(password_hash)) => {
                    self.order(pending, |user| Op::CreateWithPassword {
                        user,
                        password_hash,
                    });
                }
                (Job::Login { pending, phc }, Outcome::Verified(true)) => {
                    self.passwords.failures.remove(&pending.user);
                    self.order(pending, |user| Op::LoginVerified {
                        user,
                        password_hash: phc,
                    });
                }
                (Job::Login { pending, .. }, Outcome::Verified(false)) => {
                    let due = self.passwords.fail(&pending.user, self.now);
                    let wait = (due - self.now).as_millis();
                    debug!(user = %pending.user, "failed login; refusing it in {wait} ms");
                    self.passwords.schedule(due, Timed::Refuse(pending));
                }
                (job, outcome) => {
                    unreachable!("job {job:?} cannot end as {outcome:?}")
                }
            }
        }
    }

    /// Fires the password timers that are due.
    pub(super) fn turn_password_timers(&mut self) {
        while let Some(entry) = self.passwords.timers.first_entry() {
            if entry.key().0 > self.now {
                return;
            }
            match entry.remove() {
                Timed::Refuse(pending) => {
                    self.order(pending, |user| Op::LoginRefused { user });
                }
                Timed::Retry(attempt) => {
                    self.passwords.deferred -= 1;
                    self.start_login(attempt);
                }
            }
        }
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
