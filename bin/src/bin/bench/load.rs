//! The closed-loop load on the chat service: each client thread logs in as its own user and
//! sends `5|` one at a time, round a few users who stay logged out; afterwards those users
//! take their queues (`6|`), and the ids delivered must be exactly the ids acknowledged.

use crate::cluster::Cluster;
use crate::report::{Progress, Samples};
use chat_core::chat::{Op, Reply};
use chat_core::config::Config;
use chat_core::ids::MessageId;
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
    /// Longest time one client waited between two acknowledgements (kill runs only).
    pub failover_gap: Option<Duration>,
    /// CPU time per acknowledged send while measuring: (the local replicas', this process's
    /// client threads').
    pub cpu_per_send: Option<(Duration, Duration)>,
}

/// CPU used so far by the local replicas and by this process, and the acknowledgements.
struct CpuMark {
    replicas: Duration,
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
    fn per_send(&self, end: &CpuMark) -> Option<(Duration, Duration)> {
        let sends = u32::try_from(end.acks.checked_sub(self.acks)?).ok()?;
        (sends > 0).then(|| {
            (
                end.replicas.saturating_sub(self.replicas) / sends,
                end.clients.saturating_sub(self.clients) / sends,
            )
        })
    }
}

/// What one client thread saw.
#[derive(Default)]
struct Tally {
    /// (when sent, latency) of every acknowledged send, warm-up included.
    sends: Vec<(Instant, Duration)>,
    acked: Vec<MessageId>,
    failed: u64,
    longest_gap: Duration,
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
                let primary = cluster.primary().ok_or("no primary to kill")?;
                cluster.kill(primary.id)?;
                killed = Some(primary.id);
            }
        }
        thread::sleep(Duration::from_millis(5));
    }
    let measured_to = CpuMark::now(cluster, &acks);
    // A kill makes the replicas' sum meaningless (the killed one's time is gone).
    let cpu_per_send = match (measuring_from.flatten(), measured_to, killed) {
        (Some(from), Some(to), None) => from.per_send(&to),
        _ => None,
    };
    progress.clear();
    let mut all = Tally::default();
    for thread in threads {
        let one = thread.join().map_err(|_| "a client thread panicked")??;
        all.sends.extend(one.sends);
        all.acked.extend(one.acked);
        all.failed += one.failed;
        all.longest_gap = all.longest_gap.max(one.longest_gap);
    }
    if let Some(id) = killed {
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
        failover_gap: setting.kill_primary_at.map(|_| all.longest_gap),
        cpu_per_send,
    })
}

/// A session logged in as `me`, after creating `me` and the recipients.
fn log_in(config: &Config, me: &str, recipients: &[String]) -> Result<Client, String> {
    let (client, _incoming) = Client::connect(config).map_err(|e| e.to_string())?;
    for user in std::iter::once(me).chain(recipients.iter().map(String::as_str)) {
        expect(&client, Op::Create { user: user.into() }, |r| {
            r == &Reply::Created
        })?;
    }
    let login = Op::Login { user: me.into() };
    expect(&client, login, |r| matches!(r, Reply::LoggedIn { .. }))?;
    Ok(client)
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
    let mut out = Tally::default();
    let begin = Instant::now();
    let mut last_ack = begin;
    for n in 0.. {
        let sent = Instant::now();
        if sent - begin >= run {
            break;
        }
        let op = Op::Send {
            to: to[n % to.len()].clone(),
            text: format!("message {n} from {me}"),
        };
        match client.request(op) {
            Ok(Reply::Sent { id }) => {
                let now = Instant::now();
                out.sends.push((sent, now - sent));
                out.acked.push(id);
                out.longest_gap = out.longest_gap.max(now - last_ack);
                last_ack = now;
                acks.fetch_add(1, Ordering::Relaxed);
            }
            _ => out.failed += 1,
        }
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
