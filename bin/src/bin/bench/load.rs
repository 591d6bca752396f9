//! The closed-loop load on the chat service: each client thread logs in as its own user and
//! sends `5|` one at a time, round a few users who stay logged out; afterwards those users
//! take their queues (`6|`), and the ids delivered must be exactly the ids acknowledged.

use crate::cluster::{Cluster, ThreadCpu};
use crate::mux::{Mux, Script};
use crate::report::{Progress, Samples};
use chat_core::chat::{Op, Reply};
use chat_core::config::Config;
use chat_core::ids::MessageId;
use chat_core::ids::ReplicaId;
use chat_net::client::Client;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

/// One setting: how many clients, for how long, and whether to kill the primary on the way.
pub struct Setting {
    pub clients: u32,
    pub warmup: Duration,
    pub measure: Duration,
    /// Kill -9 the primary this long after the measurement started.
    pub kill_primary_at: Option<Duration>,
    /// Makes this setting's user names unique (also against earlier runs on `--connect`).
    pub tag: String,
}

/// What a setting measured, with the delivery check.
pub struct Outcome {
    pub samples: Samples,
    pub lost: u64,
    pub duplicated: u64,
    /// Delivered, though the send was never acknowledged (a request that failed).
    pub unacknowledged: u64,
    pub failed: u64,
    /// Longest time one client waited between two acknowledgements across the kill (kill
    /// runs only).
    pub failover_gap: Option<Duration>,
    /// Longest such wait anywhere in the run, the start included (kill runs only): a stall
    /// that is not the failover's, such as adding back the replica an earlier setting killed.
    pub longest_gap: Option<Duration>,
    /// CPU time per acknowledged send while measuring: (the local replicas', by kind of
    /// thread; this process's client threads').
    pub cpu_per_send: Option<(ThreadCpu, Duration)>,
}

/// CPU used so far by the local replicas and by this process, and the acknowledgements.
struct CpuMark {
    replicas: ThreadCpu,
    clients: Duration,
    acks: u64,
}

impl CpuMark {
    fn now(cluster: &Cluster, acks: &AtomicU64) -> Option<CpuMark> {
        Some(CpuMark {
            replicas: cluster.replicas_cpu()?,
            clients: crate::cluster::cpu_time("/proc/self/stat")?,
            acks: acks.load(Ordering::Relaxed),
        })
    }

    /// CPU per acknowledgement from `self` to `end`.
    fn per_send(&self, end: &CpuMark) -> Option<(ThreadCpu, Duration)> {
        let sends = u32::try_from(end.acks.checked_sub(self.acks)?).ok()?;
        let before = |kind| self.replicas.get(kind).copied().unwrap_or_default();
        (sends > 0).then(|| {
            (
                end.replicas
                    .iter()
                    .map(|(&kind, &cpu)| (kind, cpu.saturating_sub(before(kind)) / sends))
                    .collect(),
                end.clients.saturating_sub(self.clients) / sends,
            )
        })
    }
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    /// (when sent, latency) of every acknowledged send, warm-up included.
    sends: Vec<(Instant, Duration)>,
    acked: Vec<MessageId>,
    failed: u64,
    /// Waits between two acknowledgements (or from the start) of at least [`NOTED_GAP`]:
    /// (from, to).
    long_gaps: Vec<(Instant, Instant)>,
    /// When the last acknowledgement came (or the sending began).
    last_ack: Option<Instant>,
}

/// Shorter waits between acknowledgements are not kept (no failover is that fast).
const NOTED_GAP: Duration = Duration::from_millis(2);

impl Tally {
    fn from(began: Instant) -> Tally {
        Tally {
            last_ack: Some(began),
            ..Tally::default()
        }
    }

    /// The answer to a send made at `sent` came at `now`.
    fn answered(&mut self, sent: Instant, now: Instant, reply: Option<Reply>, acks: &AtomicU64) {
        match reply {
            Some(Reply::Sent { id }) => {
                self.sends.push((sent, now - sent));
                self.acked.push(id);
                let since = self.last_ack.unwrap_or(sent);
                if now - since >= NOTED_GAP {
                    self.long_gaps.push((since, now));
                }
                self.last_ack = Some(now);
                acks.fetch_add(1, Ordering::Relaxed);
            }
            _ => self.failed += 1,
        }
    }

    fn add(&mut self, one: Tally) {
        self.sends.extend(one.sends);
        self.acked.extend(one.acked);
        self.failed += one.failed;
        self.long_gaps.extend(one.long_gaps);
    }

    /// The longest noted wait, of those that `keep`.
    fn longest_gap(&self, keep: impl Fn(&(Instant, Instant)) -> bool) -> Duration {
        let waits = self.long_gaps.iter().filter(|g| keep(g));
        waits.map(|&(from, to)| to - from).max().unwrap_or_default()
    }
}

/// What the clients of one setting did, however they were driven.
struct Driven {
    all: Tally,
    /// The replica killed, and when.
    killed: Option<(ReplicaId, Instant)>,
    began: Instant,
    cpu_per_send: Option<(ThreadCpu, Duration)>,
}

pub fn run(cluster: &Cluster, setting: &Setting, progress: &Progress) -> Result<Outcome, String> {
    let total = setting.warmup + setting.measure;
    // Enough queues for 10,000 sends per second per client, at most `max_queue` in each.
    let max_queue = u64::from(cluster.config.limits.max_queue).max(1);
    let per_sender = (total.as_secs_f64().ceil() as u64 * 10_000 / max_queue + 1) as usize;
    let recipients = |i: u32| -> Vec<String> {
        (0..per_sender)
            .map(|k| format!("{}r{i}-{k}", setting.tag))
            .collect()
    };
    let Driven {
        all,
        killed,
        began,
        cpu_per_send,
    } = if cluster.config.tls.is_none() {
        on_one_thread(cluster, setting, progress, &recipients)?
    } else {
        on_threads(cluster, setting, progress, &recipients)?
    };
    if let Some((id, _)) = killed {
        cluster.spawn(id)?;
        cluster.wait_for_primary(Duration::from_secs(30))?;
    }
    let from = began + setting.warmup;
    let latencies = all
        .sends
        .iter()
        .filter(|(sent, _)| *sent >= from && *sent < from + setting.measure)
        .map(|&(_, latency)| latency)
        .collect();
    let names: Vec<String> = (0..setting.clients).flat_map(recipients).collect();
    let delivered = deliver_all(&cluster.config, &names)?;
    let acked: HashSet<MessageId> = all.acked.iter().copied().collect();
    let times = |id: &MessageId| delivered.get(id).copied().unwrap_or(0);
    Ok(Outcome {
        samples: Samples::new(latencies, setting.measure),
        lost: acked.iter().filter(|id| times(id) == 0).count() as u64,
        duplicated: delivered.values().map(|&n| n.saturating_sub(1)).sum(),
        unacknowledged: delivered.keys().filter(|id| !acked.contains(id)).count() as u64,
        failed: all.failed,
        failover_gap: killed.map(|(_, at)| all.longest_gap(|&(from, to)| from <= at && at <= to)),
        longest_gap: killed.map(|_| all.longest_gap(|_| true)),
        cpu_per_send,
    })
}

/// Each client on a thread of its own, with the library's `Client` (which speaks TLS).
fn on_threads(
    cluster: &Cluster,
    setting: &Setting,
    progress: &Progress,
    recipients: &dyn Fn(u32) -> Vec<String>,
) -> Result<Driven, String> {
    let total = setting.warmup + setting.measure;
    let start = Arc::new(Barrier::new(setting.clients as usize + 1));
    let acks = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..setting.clients)
        .map(|i| {
            let (config, start, acks) = (cluster.config.clone(), start.clone(), acks.clone());
            let (me, to) = (format!("{}s{i}", setting.tag), recipients(i));
            thread::spawn(move || -> Result<Tally, String> {
                let client = log_in(&config, &me, &to);
                start.wait();
                Ok(send_for(&client?, &me, &to, total, &acks))
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    let mut killed = None;
    let mut measuring_from = None;
    while began.elapsed() < total {
        if measuring_from.is_none() && began.elapsed() >= setting.warmup {
            measuring_from = Some(CpuMark::now(cluster, &acks));
        }
        progress.show(
            setting.clients,
            began.elapsed(),
            total,
            acks.load(Ordering::Relaxed),
        );
        if let Some(at) = setting.kill_primary_at {
            if killed.is_none() && began.elapsed() >= setting.warmup + at {
                killed = Some(kill_primary(cluster)?);
            }
        }
        thread::sleep(Duration::from_millis(5));
    }
    let cpu_per_send = cpu_per_send(cluster, &acks, measuring_from.flatten(), killed.is_some());
    progress.clear();
    let mut all = Tally::default();
    for thread in threads {
        all.add(thread.join().map_err(|_| "a client thread panicked")??);
    }
    Ok(Driven {
        all,
        killed,
        began,
        cpu_per_send,
    })
}

/// Every client on this thread ([`Mux`]): the load generator's own cost stays small.
fn on_one_thread(
    cluster: &Cluster,
    setting: &Setting,
    progress: &Progress,
    recipients: &dyn Fn(u32) -> Vec<String>,
) -> Result<Driven, String> {
    let total = setting.warmup + setting.measure;
    let acks = Arc::new(AtomicU64::new(0));
    let scripts = (0..setting.clients)
        .map(|i| Sender::new(format!("{}s{i}", setting.tag), recipients(i), acks.clone()))
        .collect();
    let mut mux = Mux::new(&cluster.config, scripts)?;
    mux.run(TICK, || false);
    if let Some(e) = mux.scripts().find_map(|s| s.setup_error.take()) {
        return Err(e);
    }
    let began = Instant::now();
    for sender in mux.scripts() {
        sender.start(began, began + total);
    }
    let mut measuring_from = None;
    let killed = thread::scope(|scope| -> Result<Option<(ReplicaId, Instant)>, String> {
        let killer = setting.kill_primary_at.map(|at| {
            scope.spawn(move || {
                thread::sleep(
                    (began + setting.warmup + at).saturating_duration_since(Instant::now()),
                );
                kill_primary(cluster)
            })
        });
        let mut shown = began;
        mux.run(TICK, || {
            let now = Instant::now();
            if measuring_from.is_none() && now - began >= setting.warmup {
                measuring_from = Some(CpuMark::now(cluster, &acks));
            }
            if now - shown >= TICK {
                shown = now;
                progress.show(
                    setting.clients,
                    now - began,
                    total,
                    acks.load(Ordering::Relaxed),
                );
            }
            false
        });
        killer
            .map(|k| k.join().map_err(|_| "the killing thread panicked")?)
            .transpose()
    })?;
    let cpu_per_send = cpu_per_send(cluster, &acks, measuring_from.flatten(), killed.is_some());
    progress.clear();
    let mut all = Tally::default();
    for sender in mux.into_scripts() {
        all.add(sender.tally);
    }
    Ok(Driven {
        all,
        killed,
        began,
        cpu_per_send,
    })
}

/// How often the one-thread driver looks at the clock besides its sockets.
const TICK: Duration = Duration::from_millis(5);

/// Kills the primary; returns which replica it was, and when.
fn kill_primary(cluster: &Cluster) -> Result<(ReplicaId, Instant), String> {
    let primary = cluster.primary().ok_or("no primary to kill")?;
    cluster.kill(primary.id)?;
    Ok((primary.id, Instant::now()))
}

/// CPU per acknowledged send since `from`, unless a replica was killed (its time is gone
/// from the sum).
fn cpu_per_send(
    cluster: &Cluster,
    acks: &AtomicU64,
    from: Option<CpuMark>,
    killed: bool,
) -> Option<(ThreadCpu, Duration)> {
    let to = CpuMark::now(cluster, acks)?;
    match (from, killed) {
        (Some(from), false) => from.per_send(&to),
        _ => None,
    }
}

/// One client of the one-thread driver: creates its users and logs in, then sends one
/// message at a time, round its recipients, until told to stop.
struct Sender {
    me: String,
    to: Vec<String>,
    setup: std::collections::VecDeque<Op>,
    setup_error: Option<String>,
    /// Sending until then (after [`Sender::start`]).
    until: Option<Instant>,
    n: usize,
    sent_at: Instant,
    tally: Tally,
    acks: Arc<AtomicU64>,
}

impl Sender {
    fn new(me: String, to: Vec<String>, acks: Arc<AtomicU64>) -> Sender {
        Sender {
            setup: setup(&me, &to).into(),
            me,
            to,
            setup_error: None,
            until: None,
            n: 0,
            sent_at: Instant::now(),
            tally: Tally::default(),
            acks,
        }
    }

    fn start(&mut self, from: Instant, until: Instant) {
        self.until = Some(until);
        self.tally = Tally::from(from);
    }
}

impl Script for Sender {
    fn next(&mut self, now: Instant) -> Option<Op> {
        let Some(until) = self.until else {
            return self.setup.front().cloned();
        };
        if now >= until {
            return None;
        }
        self.sent_at = now;
        self.n += 1;
        Some(nth_send(&self.me, &self.to, self.n))
    }

    fn answered(&mut self, now: Instant, reply: Result<Reply, String>) {
        if self.until.is_none() {
            let op = self.setup.pop_front();
            let ok = matches!((&op, &reply), (Some(op), Ok(reply)) if set_up(op, reply));
            if !ok {
                self.setup_error = Some(format!("{op:?}: unexpected reply {reply:?}"));
                self.setup.clear();
            }
            return;
        }
        self.tally
            .answered(self.sent_at, now, reply.ok(), &self.acks);
    }
}

/// A session logged in as `me`, after creating `me` and the recipients.
fn log_in(config: &Config, me: &str, recipients: &[String]) -> Result<Client, String> {
    let (client, _incoming) = Client::connect(config).map_err(|e| e.to_string())?;
    for op in setup(me, recipients) {
        let asked = op.clone();
        expect(&client, op, |r| set_up(&asked, r))?;
    }
    Ok(client)
}

/// What a client of the load does before it sends: create its user and its recipients,
/// then log in.
fn setup(me: &str, recipients: &[String]) -> Vec<Op> {
    let mut ops: Vec<Op> = std::iter::once(me)
        .chain(recipients.iter().map(String::as_str))
        .map(|user| Op::Create { user: user.into() })
        .collect();
    ops.push(Op::Login { user: me.into() });
    ops
}

/// Whether `reply` is the one a setup step wants.
fn set_up(op: &Op, reply: &Reply) -> bool {
    matches!(
        (op, reply),
        (Op::Create { .. }, Reply::Created) | (Op::Login { .. }, Reply::LoggedIn { .. })
    )
}

/// The `n`th message of `me`, round its recipients.
fn nth_send(me: &str, to: &[String], n: usize) -> Op {
    Op::Send {
        to: to[n % to.len()].clone(),
        text: format!("message {n} from {me}"),
    }
}

fn expect(client: &Client, op: Op, ok: impl Fn(&Reply) -> bool) -> Result<Reply, String> {
    let what = format!("{op:?}");
    match client.request(op) {
        Ok(reply) if ok(&reply) => Ok(reply),
        Ok(reply) => Err(format!("{what}: unexpected reply {reply:?}")),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

/// Sends one message at a time, round the recipients, for `run`.
fn send_for(client: &Client, me: &str, to: &[String], run: Duration, acks: &AtomicU64) -> Tally {
    let begin = Instant::now();
    let mut out = Tally::from(begin);
    for n in 0.. {
        let sent = Instant::now();
        if sent - begin >= run {
            break;
        }
        let reply = client.request(nth_send(me, to, n));
        out.answered(sent, Instant::now(), reply.ok(), acks);
    }
    out
}

/// Logs in as each user and takes its queue (`6|`): how often each message id was delivered.
fn deliver_all(config: &Config, users: &[String]) -> Result<HashMap<MessageId, u64>, String> {
    let (client, _incoming) = Client::connect(config).map_err(|e| e.to_string())?;
    let mut times = HashMap::new();
    for user in users {
        let login = Op::Login { user: user.clone() };
        expect(&client, login, |r| matches!(r, Reply::LoggedIn { .. }))?;
        let ok = |r: &Reply| matches!(r, Reply::Delivered { .. });
        // `6|` delivers a page at a time: ask until nothing is left.
        while let Reply::Delivered { messages, more } = expect(&client, Op::Deliver, ok)? {
            for message in &messages {
                *times.entry(message.id).or_insert(0) += 1;
            }
            if more == 0 {
                break;
            }
        }
    }
    Ok(times)
}
