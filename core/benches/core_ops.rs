//! The core alone, with no I/O: the chat state applying sends, and a cluster of three
//! replicas in memory (messages delivered and writes made durable at once) ordering,
//! replicating, committing and applying them. Prints operations per second and heap
//! allocations per operation, so that a regression in the core shows without a disk.
//!
//! `cargo bench -p chat-core --bench core_ops` (a figure, not a test: it asserts nothing).

use chat_core::chat::{Limits, Op, Reply};
use chat_core::durable::Recovered;
use chat_core::replica::{Input, Options, Output, Replica, Role};
use chat_core::service::{Request, Service};
use chat_core::time::{Duration, Instant};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts heap allocations (and reallocations) made through the global allocator.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `ops` operations with `f`; prints operations per second and allocations per operation.
fn measure(name: &str, ops: u64, f: impl FnOnce()) {
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    let began = std::time::Instant::now();
    f();
    let took = began.elapsed().as_secs_f64();
    let allocated = ALLOCATIONS.load(Ordering::Relaxed) - allocations;
    println!(
        "{name:<44} {ops:>8} ops {:>12.0} ops/s {:>8.1} allocations/op",
        ops as f64 / took,
        allocated as f64 / ops as f64
    );
}

/// Offline recipients, enough that no queue reaches `max_queue` (10,000).
const RECIPIENTS: u64 = 100;

fn send(client: u128, request: u64, n: u64) -> Request {
    let to = format!("r{}", n % RECIPIENTS);
    let text = format!("message {n} with some text of a typical length, about sixty chars");
    Request {
        client,
        request,
        op: Op::Send { to, text },
    }
}

/// The chat state and client table alone: `5|` applied in log order.
fn chat_state(sends: u64) {
    let limits = Limits::default();
    let mut service = Service::new();
    let mut index = 0;
    let mut apply = |service: &mut Service, req: Request| {
        index += 1;
        service.apply(&limits, index, &req)
    };
    apply(
        &mut service,
        Request {
            client: 1,
            request: 1,
            op: Op::OpenSession,
        },
    );
    for r in 0..RECIPIENTS {
        let user = format!("r{r}");
        apply(
            &mut service,
            Request {
                client: 1,
                request: 2 + r,
                op: Op::Create { user },
            },
        );
    }
    let mut request = 2 + RECIPIENTS;
    apply(
        &mut service,
        Request {
            client: 1,
            request,
            op: Op::Create { user: "ann".into() },
        },
    );
    request += 1;
    apply(
        &mut service,
        Request {
            client: 1,
            request,
            op: Op::Login { user: "ann".into() },
        },
    );
    measure("chat state: apply 5| (recipient offline)", sends, || {
        for n in 0..sends {
            let applied = apply(&mut service, send(1, request + 1 + n, n));
            assert!(matches!(applied.reply, Some(Reply::Sent { .. })));
        }
    });
    snapshot_of(&service, sends);
}

/// Taking a snapshot of `service` (holding `messages` queued messages): encoding the state,
/// then the file's records, as a replica's snapshot thread does before writing.
fn snapshot_of(service: &Service, messages: u64) {
    let began = std::time::Instant::now();
    let data = service.snapshot();
    let encoded = began.elapsed().as_secs_f64();
    let snapshot = chat_core::durable::Snapshot {
        meta: chat_core::durable::SnapshotMeta::default(),
        data,
    };
    let began = std::time::Instant::now();
    let mut file_bytes = 0;
    chat_core::codec::snapshot::encode::<()>(
        &snapshot,
        chat_core::codec::snapshot::DEFAULT_CHUNK_BYTES,
        |bytes| {
            file_bytes += bytes.len();
            Ok(())
        },
    )
    .expect("in memory");
    let records = began.elapsed().as_secs_f64();
    let mb = snapshot.data.len() as f64 / 1e6;
    println!(
        "snapshot of {messages} queued messages: {mb:.1} MB, state encoded in {:.1} ms ({:.0} MB/s), file records in {:.1} ms ({:.0} MB/s), {:.0} bytes per message",
        encoded * 1e3,
        mb / encoded,
        records * 1e3,
        file_bytes as f64 / 1e6 / records,
        snapshot.data.len() as f64 / messages as f64
    );
}

/// Three replicas with a perfect network and disk.
struct Cluster {
    now: Instant,
    replicas: Vec<Replica>,
    inbox: VecDeque<(usize, Input)>,
    replies: Vec<(u128, Reply)>,
}

impl Cluster {
    fn new() -> Cluster {
        let replicas = (0..3)
            .map(|id| Replica::new(Options::new(id, 3), Recovered::default(), Instant::ZERO))
            .collect::<Result<Vec<_>, _>>()
            .expect("empty replicas start");
        let mut cluster = Cluster {
            now: Instant::ZERO,
            replicas,
            inbox: VecDeque::new(),
            replies: Vec::new(),
        };
        // Until a primary holds a lease from both backups: before that it cannot replicate.
        while cluster
            .primary()
            .is_none_or(|p| cluster.replicas[p].status().leases.len() < 2)
        {
            cluster.now = cluster.now + Duration::from_millis(10);
            for r in 0..3 {
                cluster.replicas[r].tick(cluster.now);
                cluster.drain(r);
            }
            cluster.settle();
        }
        cluster
    }

    fn primary(&self) -> Option<usize> {
        (0..3).find(|&r| self.replicas[r].status().role == Role::Primary)
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
                Output::Persist { id, .. } => self.inbox.push_back((from, Input::Persisted(id))),
                Output::Snapshot(job) => self
                    .inbox
                    .push_back((from, Input::SnapshotWritten(job.encode()))),
                Output::Reply { client, reply, .. } => self.replies.push((client, reply)),
                _ => {}
            }
        }
    }

    /// Delivers everything until nothing is left to deliver.
    fn settle(&mut self) {
        while let Some((to, input)) = self.inbox.pop_front() {
            self.replicas[to].handle(self.now, input);
            self.drain(to);
        }
    }

    fn request(&mut self, req: Request) {
        let p = self.primary().expect("a primary");
        self.replicas[p].handle(self.now, Input::Client(req));
        self.drain(p);
    }
}

/// `clients` sessions, each with one `5|` outstanding at a time, until `sends` are answered.
fn replicated(clients: u64, sends: u64) {
    let mut cluster = Cluster::new();
    cluster.request(Request {
        client: 0,
        request: 1,
        op: Op::OpenSession,
    });
    for r in 0..RECIPIENTS {
        let user = format!("r{r}");
        cluster.request(Request {
            client: 0,
            request: 2 + r,
            op: Op::Create { user },
        });
        cluster.settle();
    }
    for c in 1..=clients {
        let user = format!("u{c}");
        let ops = [
            Op::OpenSession,
            Op::Create { user: user.clone() },
            Op::Login { user },
        ];
        for (request, op) in (1..).zip(ops) {
            let client = u128::from(c);
            cluster.request(Request {
                client,
                request,
                op,
            });
            cluster.settle();
        }
    }
    cluster.settle();
    cluster.replies.clear();
    let name = format!("3 replicas in memory: 5|, {clients} client(s)");
    measure(&name, sends, || {
        let mut next = vec![4u64; clients as usize + 1];
        let mut answered = 0;
        while answered < sends {
            for c in 1..=clients {
                let n = next[c as usize];
                cluster.request(send(u128::from(c), n, n));
            }
            cluster.settle();
            for (client, reply) in cluster.replies.drain(..) {
                assert!(matches!(reply, Reply::Sent { .. }), "{reply:?}");
                next[client as usize] += 1;
                answered += 1;
            }
        }
    });
}

fn main() {
    chat_state(200_000);
    replicated(1, 50_000);
    replicated(64, 200_000);
}
