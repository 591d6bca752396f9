//! A tiny fault-free cluster, to check the protocol's normal case directly against `core`.
//! (The simulator in `sim` is where faults are thrown at it.)

use chat_core::chat::{ChatError, Op, Reply};
use chat_core::durable::Recovered;
use chat_core::replica::{Input, Options, Output, Replica, Role};
use chat_core::service::Request;
use chat_core::time::{Duration, Instant};
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
        let replicas = (0..n)
            .map(|id| {
                let mut opts = Options::new(id, n);
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
            match out {
                Output::Send { to, message } => self.inbox.push_back((
                    usize::from(to),
                    Input::Peer {
                        from: from as u8,
                        message,
                    },
                )),
                // Instant, perfect disk.
                Output::Persist { id, .. } => self.inbox.push_back((from, Input::Persisted(id))),
                Output::Reply {
                    client,
                    request,
                    reply,
                } => self.replies.push((client, request, reply)),
                Output::Redirect { .. } => self.redirects += 1,
                Output::Event(chat_core::chat::Event::Push { .. }) => self.pushes += 1,
                Output::Event(_) => {}
            }
        }
    }

    /// Runs for `d` of virtual time, delivering every message at once.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
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
            }
            self.now = self.now + Duration::from_millis(10);
        }
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
    assert!(c.replicas[p].status().log_start > c.replicas[lagging].status().commit + 1);
    c.cut[lagging] = false;
    c.run(Duration::from_secs(1));
    assert_eq!(c.primary(), Some(p), "the primary kept its view");
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
        2,
        "nothing ordered for it"
    );
}
