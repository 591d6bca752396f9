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

/// One `WithPassword` login being served.
#[derive(Debug)]
struct Attempt {
    client: ClientId,
    request: RequestNo,
    user: String,
    password: Password,
}

/// What a job's result is for.
#[derive(Debug)]
enum Job {
    Create {
        client: ClientId,
        request: RequestNo,
        user: String,
    },
    /// Verifying against `phc`, the account's hash when the job started.
    Login {
        client: ClientId,
        request: RequestNo,
        user: String,
        phc: String,
    },
}

/// Something due at a time.
#[derive(Debug)]
enum Timed {
    /// Order a failed login's refusal.
    Refuse {
        client: ClientId,
        request: RequestNo,
        user: String,
    },
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
        let attempt = Attempt {
            client,
            request,
            user,
            password,
        };
        match action {
            PasswordAction::Create => self.start_create(attempt),
            PasswordAction::Login => self.start_login(attempt),
        }
    }

    fn start_create(&mut self, attempt: Attempt) {
        let Attempt {
            client,
            request,
            user,
            password,
        } = attempt;
        let work = Work::Hash {
            password,
            salt: rand::random(),
            cost: self.passwords.cost,
        };
        let job = Job::Create {
            client,
            request,
            user,
        };
        if !self.passwords.submit(job, work) {
            self.drop_attempt(client, request);
        }
    }

    fn start_login(&mut self, attempt: Attempt) {
        let phc = match self.replica.account_lock(&attempt.user) {
            AccountLock::Missing => {
                // Nothing to verify or count, but refused like a first failure.
                let due = self.now + FIRST_DELAY;
                let refuse = Timed::Refuse {
                    client: attempt.client,
                    request: attempt.request,
                    user: attempt.user,
                };
                return self.passwords.schedule(due, refuse);
            }
            AccountLock::Open => {
                // An open account lets anybody in, whatever the password.
                self.passwords
                    .busy
                    .remove(&(attempt.client, attempt.request));
                let op = Op::Login { user: attempt.user };
                return self.order(attempt.client, attempt.request, op);
            }
            AccountLock::Protected(phc) => phc,
        };
        if let Some(failures) = self.passwords.failures.get(&attempt.user) {
            if failures.until > self.now {
                if self.passwords.deferred >= MAX_DEFERRED {
                    return self.drop_attempt(attempt.client, attempt.request);
                }
                self.passwords.deferred += 1;
                let until = failures.until;
                return self.passwords.schedule(until, Timed::Retry(attempt));
            }
        }
        let Attempt {
            client,
            request,
            user,
            password,
        } = attempt;
        let work = Work::Verify {
            phc: phc.clone(),
            password,
        };
        let job = Job::Login {
            client,
            request,
            user,
            phc,
        };
        if !self.passwords.submit(job, work) {
            self.drop_attempt(client, request);
        }
    }

    /// Too much password work waiting: the request is dropped, and the client retries it
    /// after its reply timeout.
    fn drop_attempt(&mut self, client: ClientId, request: RequestNo) {
        self.passwords.busy.remove(&(client, request));
        warn!("too many password requests waiting; dropping one (its client will retry)");
    }

    /// Orders `op` as the client's request, as if the client had sent it.
    fn order(&mut self, client: ClientId, request: RequestNo, op: Op) {
        let request = Request {
            client,
            request,
            op,
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
                (
                    Job::Create {
                        client,
                        request,
                        user,
                    },
                    Outcome::Hashed(password_hash),
                ) => {
                    self.passwords.busy.remove(&(client, request));
                    let op = Op::CreateWithPassword {
                        user,
                        password_hash,
                    };
                    self.order(client, request, op);
                }
                (
                    Job::Login {
                        client,
                        request,
                        user,
                        phc,
                    },
                    Outcome::Verified(true),
                ) => {
                    self.passwords.busy.remove(&(client, request));
                    self.passwords.failures.remove(&user);
                    let op = Op::LoginVerified {
                        user,
                        password_hash: phc,
                    };
                    self.order(client, request, op);
                }
                (
                    Job::Login {
                        client,
                        request,
                        user,
                        ..
                    },
                    Outcome::Verified(false),
                ) => {
                    let due = self.passwords.fail(&user, self.now);
                    let wait = (due - self.now).as_millis();
                    debug!(%user, "failed login; refusing it in {wait} ms");
                    let refuse = Timed::Refuse {
                        client,
                        request,
                        user,
                    };
                    self.passwords.schedule(due, refuse);
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
                Timed::Refuse {
                    client,
                    request,
                    user,
                } => {
                    self.passwords.busy.remove(&(client, request));
                    self.order(client, request, Op::LoginRefused { user });
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
