//! A tiny fault-free cluster, to check the protocol's normal case directly against `core`.
//! (The simulator in `sim` is where faults are thrown at it.)

use chat_core::chat::{ChatError, Op, Reply};
use chat_core::durable::Recovered;
use chat_core::password::request::{Next, PasswordRequest};
use chat_core::password::{HashCost, Password};
use chat_core::replica::{Input, Mutations, Options, Replica, Role};
use chat_core::route::Route;
use chat_core::service::Request;
use chat_core::time::{Duration, Instant};
use chat_core::wire::{PasswordAction, ServerToClient};
use std::collections::VecDeque;

struct Cluster {
    now: Instant,
    replicas: Vec<Replica>,
    /// (to, input)
    inbox: VecDeque<(usize, Input)>,
    replies: Vec<(u128, u64, Reply)>,
    redirects: usize,
    pushes: usize,
    /// Cut off from the network (messages to and from it are dropped).
    cut: Vec<bool>,
}

impl Cluster {
    fn new(n: u8, snapshot_every: u64) -> Cluster {
        Cluster::with_faults(n, snapshot_every, Mutations::default())
    }

    fn with_faults(n: u8, snapshot_every: u64, faults: Mutations) -> Cluster {
        let replicas = (0..n)
            .map(|id| {
                let mut opts = Options::new(id, n);
                opts.mutations = faults;
                opts.snapshot_every = snapshot_every;
                opts.limits.deliver_max = 2;
                opts.seed = 7 + u64::from(id);
                Replica::new(opts, Recovered::default(), Instant::ZERO).unwrap()
            })
            .collect();
        Cluster {
            now: Instant::ZERO,
            replicas,
            inbox: VecDeque::new(),
            replies: Vec::new(),
            redirects: 0,
            pushes: 0,
            cut: vec![false; usize::from(n)],
        }
    }

    fn drain(&mut self, from: usize) {
        while let Some(out) = self.replicas[from].poll_output() {
            match Route::from(out) {
                Route::Peer { to, message } => self.inbox.push_back((
                    usize::from(to),
                    Input::Peer {
                        from: from as u8,
                        message,
                    },
                )),
                // Instant, perfect disk.
                Route::Disk { id, .. } => self.inbox.push_back((from, Input::Persisted(id))),
                Route::Snapshot(job) => self
                    .inbox
                    .push_back((from, Input::SnapshotWritten(job.encode()))),
                Route::AttachedClients(_) => {}
                Route::Client { client, message } => match message {
                    ServerToClient::Reply { request, reply } => {
                        self.replies.push((client, request, reply))
                    }
                    ServerToClient::Redirect { .. } => self.redirects += 1,
                    ServerToClient::Push(_) => self.pushes += 1,
                    ServerToClient::LoggedOut
                    | ServerToClient::Status(_)
                    | ServerToClient::RemoveAnswer { .. } => {}
                },
            }
        }
    }

    /// Runs for `d` of virtual time, delivering every message at once.
    fn run(&mut self, d: Duration) {
        self.run_until(d, |_| false);
    }

    /// Runs like [`Cluster::run`] until `done` holds (checked after each message); returns
    /// whether it did within `limit`.
    fn run_until(&mut self, limit: Duration, done: impl Fn(&Cluster) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            for r in 0..self.replicas.len() {
                self.replicas[r].tick(self.now);
                self.replicas[r].check_invariants().unwrap();
                self.drain(r);
            }
            while let Some((to, input)) = self.inbox.pop_front() {
                if let Input::Peer { from, .. } = &input {
                    if self.cut[to] || self.cut[usize::from(*from)] {
                        continue;
                    }
                }
                self.replicas[to].handle(self.now, input);
                self.replicas[to].check_invariants().unwrap();
                self.drain(to);
                if done(self) {
                    return true;
                }
            }
            self.now = self.now + Duration::from_millis(10);
        }
        false
    }

    /// Plays the primary's password driver at replica `to` with the core's decision, doing
    /// the slow work at once: hands `to` what it says to order, or gives the request back if
    /// it must wait for the read rule.
    fn password(&mut self, to: usize, mut request: PasswordRequest) -> Option<PasswordRequest> {
        loop {
            match request.next(&self.replicas[to], || [9; 16], HashCost::TINY) {
                Next::Redirect(_) => panic!("replica {to} is not the primary"),
                Next::Wait => return Some(request),
                Next::Run(work) => request.found(work.run()),
                Next::Order { request, .. } => {
                    self.replicas[to].handle(self.now, Input::Client(request));
                    self.drain(to);
                    return None;
                }
            }
        }
    }

    fn reply_to(&self, client: u128, request: u64) -> Option<&Reply> {
        self.replies
            .iter()
            .rev()
            .find(|(c, r, _)| (*c, *r) == (client, request))
            .map(|(_, _, reply)| reply)
    }

    fn primary(&self) -> Option<usize> {
        let primaries: Vec<usize> = (0..self.replicas.len())
            .filter(|&r| self.replicas[r].status().role == Role::Primary)
            .collect();
        assert!(primaries.len() <= 1, "two primaries: {primaries:?}");
        primaries.first().copied()
    }

    fn request(&mut self, to: usize, client: u128, request: u64, op: Op) {
        self.replicas[to].handle(
            self.now,
            Input::Client(Request {
                client,
                request,
                op,
            }),
        );
        self.replicas[to].check_invariants().unwrap();
        self.drain(to);
    }
}

#[test]
fn elects_one_primary_commits_and_replies_exactly_once() {
    let mut c = Cluster::new(3, 10_000);
    c.run(Duration::from_secs(3));
    let p = c.primary().expect("a primary after 3 s");
    c.request(p, 1, 1, Op::OpenSession);
    c.request(p, 1, 2, Op::Create { user: "ann".into() });
    c.run(Duration::from_millis(200));
    // A retry of request 2 is answered from the client table, not applied again.
    c.request(p, 1, 2, Op::Create { user: "ann".into() });
    c.run(Duration::from_millis(200));
    assert_eq!(c.replies.len(), 3, "{:?}", c.replies);
    assert_eq!(c.replies[1].2, Reply::Created);
    assert_eq!(c.replies[2].2, Reply::Created);
    // Every replica applied the same state.
    let digests: Vec<_> = c.replicas.iter().map(|r| r.applied_digest()).collect();
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
    // A backup redirects.
    c.request((p + 1) % 3, 2, 1, Op::OpenSession);
    assert_eq!(c.redirects, 1);
}

#[test]
fn single_replica_is_its_own_majority() {
    let mut c = Cluster::new(1, 10_000);
    c.run(Duration::from_secs(3));
    assert_eq!(c.primary(), Some(0));
    c.request(0, 5, 1, Op::OpenSession);
    c.run(Duration::from_millis(50));
    assert_eq!(c.replies, vec![(5, 1, Reply::SessionOpened)]);
}

#[test]
fn snapshots_compact_and_backups_keep_up() {
    let mut c = Cluster::new(3, 5);
    c.run(Duration::from_secs(3));
    let p = c.primary().unwrap();
    c.request(p, 1, 1, Op::OpenSession);
    for i in 0..40 {
        c.request(
            p,
            1,
            2 + i,
            Op::List {
                pattern: String::new(),
            },
        );
        c.run(Duration::from_millis(20));
    }
    c.run(Duration::from_millis(500));
    assert_eq!(c.replies.len(), 41);
    for r in &c.replicas {
        let s = r.status();
        assert!(s.log_start > 30, "log compacted: {s:?}");
        assert_eq!(r.applied_digest(), c.replicas[p].applied_digest());
    }
}

#[test]
fn a_backup_that_missed_compacted_entries_catches_up_by_snapshot() {
    let mut c = Cluster::new(3, 5);
    c.run(Duration::from_secs(3));
    let p = c.primary().unwrap();
    let lagging = (p + 1) % 3;
    c.cut[lagging] = true;
    c.request(p, 1, 1, Op::OpenSession);
    for i in 0..30 {
        c.request(
            p,
            1,
            2 + i,
            Op::Create {
                user: format!("u{i}"),
            },
        );
        c.run(Duration::from_millis(20));
    }
    // Commit needs every member: the primary first leaves the silent one out (rule 4b,
    // after its lease and promise ran out), then commits and compacts.
    c.run(Duration::from_secs(3));
    assert!(!c.replicas[p].status().members.contains(&(lagging as u8)));
    assert!(c.replicas[p].status().log_start > c.replicas[lagging].status().commit + 1);
    c.cut[lagging] = false;
    // It rejoins through the primary (rule 7), catching up by snapshot.
    c.run(Duration::from_secs(3));
    assert_eq!(c.primary(), Some(p), "the primary stayed primary");
    assert_eq!(c.replicas[p].status().members, vec![0, 1, 2]);
    assert_eq!(
        c.replicas[lagging].applied_digest(),
        c.replicas[p].applied_digest()
    );
}

#[test]
fn a_reattaching_client_gets_at_most_a_page_of_pushes_again() {
    let mut c = Cluster::new(1, 10_000);
    c.run(Duration::from_secs(3));
    let (ann, bob) = (1, 2);
    c.request(0, ann, 1, Op::OpenSession);
    c.request(0, bob, 1, Op::OpenSession);
    c.request(0, ann, 2, Op::Create { user: "ann".into() });
    c.request(0, ann, 3, Op::Create { user: "bob".into() });
    c.request(0, ann, 4, Op::Login { user: "ann".into() });
    c.request(0, bob, 2, Op::Login { user: "bob".into() });
    c.run(Duration::from_millis(100));
    for i in 0..5 {
        let text = format!("m{i}");
        c.request(
            0,
            ann,
            5 + i,
            Op::Send {
                to: "bob".into(),
                text,
            },
        );
        c.run(Duration::from_millis(20));
    }
    assert_eq!(c.pushes, 5, "each send to a logged-in user is pushed");
    c.replicas[0].handle(c.now, Input::ClientAttached(bob));
    c.drain(0);
    assert_eq!(c.pushes, 7, "only a page (deliver_max = 2) is pushed again");
}

#[test]
fn a_request_too_large_for_an_append_is_refused_before_ordering() {
    let mut c = Cluster::new(1, 10_000);
    c.run(Duration::from_secs(3));
    c.request(0, 1, 1, Op::OpenSession);
    c.run(Duration::from_millis(50));
    let ordered = c.replicas[0].status().last_index;
    let max = c.replicas[0].max_request_bytes();
    c.request(
        0,
        1,
        2,
        Op::Create {
            user: "x".repeat(max),
        },
    );
    c.run(Duration::from_millis(50));
    let reply = c
        .replies
        .iter()
        .find(|r| r.1 == 2)
        .expect("answered at once");
    assert!(
        matches!(reply.2, Reply::Error(ChatError::RequestTooLarge { .. })),
        "{reply:?}"
    );
    assert_eq!(
        c.replicas[0].status().last_index,
        ordered,
        "nothing ordered for it"
    );
}

/// Issue 9: an account is created, the primary fails over before the new primary has applied
/// the create, and a login with the right password reaches the new primary at once. It must
/// wait for the read rule and then succeed; with the deliberate stale read, it is refused.
#[test]
fn a_new_primary_decides_a_login_only_after_applying_the_account() {
    for stale_reads in [false, true] {
        let faults = Mutations {
            stale_reads,
            ..Mutations::default()
        };
        let mut c = Cluster::with_faults(3, 10_000, faults);
        c.run(Duration::from_secs(3));
        let p = c.primary().unwrap();
        c.request(p, 1, 1, Op::OpenSession);
        c.run(Duration::from_millis(200));
        let create = PasswordRequest::new(
            1,
            2,
            PasswordAction::Create,
            "fay".into(),
            Password::new("pw-fay".into()),
        );
        assert!(c.password(p, create).is_none(), "a create never waits");
        let index = c.replicas[p].status().last_index;
        c.run(Duration::from_millis(10));
        assert_eq!(c.reply_to(1, 2), Some(&Reply::Created));
        let backups: Vec<usize> = (0..3).filter(|&r| r != p).collect();
        for &b in &backups {
            let status = c.replicas[b].status();
            assert!(
                status.last_index >= index && status.commit < index,
                "{status:?}"
            );
        }
        // The primary fails; a backup becomes primary, and is asked at once.
        c.cut[p] = true;
        let elected = c.run_until(Duration::from_secs(5), |c| {
            backups
                .iter()
                .any(|&b| c.replicas[b].status().role == Role::Primary)
        });
        assert!(elected, "no new primary");
        let q = backups
            .into_iter()
            .find(|&b| c.replicas[b].status().role == Role::Primary)
            .unwrap();
        assert!(c.replicas[q].applied_index() < index, "already applied");
        let login = PasswordRequest::new(
            1,
            3,
            PasswordAction::Login,
            "fay".into(),
            Password::new("pw-fay".into()),
        );
        let mut waiting = c.password(q, login);
        assert_eq!(waiting.is_some(), !stale_reads, "waits for the read rule");
        for _ in 0..100 {
            let Some(login) = waiting.take() else {
                break;
            };
            c.run(Duration::from_millis(10));
            waiting = c.password(q, login);
        }
        assert!(waiting.is_none(), "still waiting after a second");
        c.run(Duration::from_millis(100));
        let expected = if stale_reads {
            Reply::Error(ChatError::BadCredentials)
        } else {
            Reply::LoggedIn {
                user: "fay".into(),
                waiting: 0,
            }
        };
        assert_eq!(
            c.reply_to(1, 3),
            Some(&expected),
            "stale_reads {stale_reads}"
        );
    }
}
