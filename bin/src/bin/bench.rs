//! `chat-bench`: throughput, latency and one failover of a fresh local cluster.
//!
//! The replicas are child processes running this same executable (`chat-bench replica`,
//! hidden, as `chat demo` does), on free 127.0.0.1 ports with a temporary data directory and
//! the timing of `config.yaml`. Each client thread logs in as its own user and sends to users
//! that stay logged out; at the end those users take their queues (`6|`), and the message ids
//! delivered must be exactly the ids the senders got acknowledged.

use chat_bin::process::{self, local_replicas, ReplicaError, ServerProcess};
use chat_bin::settings::BUILT_IN_CONFIG;
use chat_core::chat::{Op, Reply};
use chat_core::config::Config;
use chat_core::ids::{MessageId, ReplicaId};
use chat_core::replica::Role;
use chat_net::client::{self, Client};
use clap::{Parser, Subcommand};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

const FAILOVER_CLIENTS: usize = 8;
/// The failover run kills the primary this long after the clients start.
const KILL_AFTER: Duration = Duration::from_secs(2);

#[derive(Parser)]
#[command(name = "chat-bench", version, args_conflicts_with_subcommands = true)]
/// Measures a fresh local cluster: sends per second, latency, one failover, memory and disk.
struct Args {
    /// Client threads, at least 1 [default: 1, 8 and 32 in turn]
    #[arg(long, value_parser = at_least_one)]
    clients: Option<usize>,
    /// Seconds of sending per setting, at least 1
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    seconds: u64,
    /// Replicas in the cluster (odd, 1 to 9)
    #[arg(long, default_value_t = 3, value_parser = at_least_one)]
    replicas: usize,
    #[command(subcommand)]
    hidden: Option<Hidden>,
}

#[derive(Subcommand)]
enum Hidden {
    /// Run one replica (what the benchmark starts in each child process).
    #[command(hide = true)]
    Replica {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        id: ReplicaId,
    },
}

/// A count that must be at least 1 (`--clients 0` would measure nothing).
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.hidden {
        Some(Hidden::Replica { config, id }) => replica(&config, id),
        None => bench(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: &Args) -> Result<(), String> {
    let settings = args.clients.map_or(vec![1, 8, 32], |n| vec![n]);
    let run = Duration::from_secs(args.seconds);
    let failover_run = KILL_AFTER + run.max(Duration::from_secs(5));
    let sending = run * settings.len() as u32 + failover_run;
    let cluster = Cluster::start(args.replicas, Duration::from_secs(120) + 2 * sending)?;
    cluster.wait_for_primary()?;
    println!(
        "{} replicas, data in {}",
        args.replicas,
        cluster.dir.display()
    );
    println!("load average at start: {}", load_average());
    println!("clients    sends   sends/s   p50 ms   p90 ms   p99 ms   max ms  check");
    for (i, &clients) in settings.iter().enumerate() {
        drive(&cluster, &format!("t{i}"), clients, run, None)?;
    }
    let primary = cluster.wait_for_primary()?;
    println!(
        "failover: kill -9 of primary {primary} {} s into {} s of sending:",
        KILL_AFTER.as_secs(),
        failover_run.as_secs()
    );
    let gap = drive(&cluster, "f", FAILOVER_CLIENTS, failover_run, Some(primary))?;
    println!(
        "longest gap between two acknowledged sends of one client: {:.0} ms",
        ms(gap)
    );
    println!("load average at end: {}", load_average());
    for id in 0..args.replicas as ReplicaId {
        let (kb, killed) = cluster.peak_rss(id);
        let rss = kb.map_or("unknown".to_owned(), |kb| format!("{kb} kB"));
        let note = if killed { " (read before kill -9)" } else { "" };
        let size = dir_size(&cluster.dir.join(format!("replica-{id}")));
        println!("replica {id}: peak RSS (VmHWM) {rss}{note}, data directory {size} bytes");
    }
    Ok(())
}

/// What client threads measured.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    acked: Vec<MessageId>,
    failed: u64,
    longest_gap: Duration,
}

/// Runs `clients` sender threads for `run` (users named after `tag`), `kill`ing that replica
/// `KILL_AFTER` into the run, checks delivery and prints a row; returns the longest gap.
fn drive(
    cluster: &Cluster,
    tag: &str,
    clients: usize,
    run: Duration,
    kill: Option<ReplicaId>,
) -> Result<Duration, String> {
    // Enough queues for 10,000 sends per second per client (at most `max_queue` in each).
    let per_sender = run.as_secs().max(4) as usize;
    let recipients =
        |i: usize| -> Vec<String> { (0..per_sender).map(|k| format!("{tag}r{i}-{k}")).collect() };
    let start = Arc::new(Barrier::new(clients + 1));
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let (config, start, to) = (cluster.config.clone(), start.clone(), recipients(i));
            let me = format!("{tag}s{i}");
            thread::spawn(move || -> Result<Tally, String> {
                let client = log_in(&config, &me, &to);
                start.wait();
                Ok(send_for(&client?, &me, &to, run))
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    if let Some(id) = kill {
        thread::sleep(KILL_AFTER);
        cluster.kill(id);
    }
    let mut all = Tally::default();
    for thread in threads {
        let one = thread.join().map_err(|_| "a client thread panicked")??;
        all.acked.extend(one.acked);
        all.latencies.extend(one.latencies);
        all.failed += one.failed;
        all.longest_gap = all.longest_gap.max(one.longest_gap);
    }
    let elapsed = began.elapsed();
    let names: Vec<String> = (0..clients).flat_map(recipients).collect();
    let delivered = deliver_all(&cluster.config, &names)?;
    let acked: HashSet<MessageId> = all.acked.into_iter().collect();
    let lost = acked.difference(&delivered).count();
    let extra = delivered.difference(&acked).count();
    let check = if lost == 0 && extra == 0 && all.failed == 0 {
        format!("delivered = acknowledged ({})", acked.len())
    } else {
        format!(
            "{lost} LOST, {extra} delivered unacknowledged, {} failed",
            all.failed
        )
    };
    let l = &mut all.latencies;
    l.sort();
    println!(
        "{clients:>7} {:>8} {:>9.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2}  {check}",
        l.len(),
        l.len() as f64 / elapsed.as_secs_f64(),
        ms(percentile(l, 0.50)),
        ms(percentile(l, 0.90)),
        ms(percentile(l, 0.99)),
        ms(l.last().copied().unwrap_or_default()),
    );
    Ok(all.longest_gap)
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

/// Sends one message at a time, round the recipients, until `run` is over.
fn send_for(client: &Client, me: &str, to: &[String], run: Duration) -> Tally {
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
                out.latencies.push(now - sent);
                out.acked.push(id);
                out.longest_gap = out.longest_gap.max(now - last_ack);
                last_ack = now;
            }
            _ => out.failed += 1,
        }
    }
    out
}

/// Logs in as each user and takes its queue (`6|`): the ids of every message delivered.
fn deliver_all(config: &Config, users: &[String]) -> Result<HashSet<MessageId>, String> {
    let (client, _incoming) = Client::connect(config).map_err(|e| e.to_string())?;
    let mut ids = HashSet::new();
    for user in users {
        let login = Op::Login { user: user.clone() };
        expect(&client, login, |r| matches!(r, Reply::LoggedIn { .. }))?;
        let ok = |r: &Reply| matches!(r, Reply::Delivered { .. });
        // `6|` delivers a page at a time: ask until nothing is left.
        while let Reply::Delivered { messages, more } = expect(&client, Op::Deliver, ok)? {
            ids.extend(messages.iter().map(|m| m.id));
            if more == 0 {
                break;
            }
        }
    }
    Ok(ids)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1))
        .copied()
        .unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The replica processes and their directory; dropping it kills them and removes it.
struct Cluster {
    dir: PathBuf,
    config: Config,
    servers: Servers,
    /// VmHWM of each replica killed on purpose, read just before.
    peak_at_kill: Mutex<Vec<Option<u64>>>,
}

type Servers = Arc<Mutex<Vec<Option<ServerProcess>>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Cluster {
    /// Starts the replicas; past `limit`, a watchdog kills them and ends this program.
    fn start(replicas: usize, limit: Duration) -> Result<Cluster, String> {
        let dir = std::env::temp_dir().join(format!("chat-bench-{}", std::process::id()));
        let config_path = dir.join("config.yaml");
        let setup = || -> Result<Config, String> {
            let secret = dir.join("cluster.secret");
            chat_bin::secret::create(&secret)?;
            let text = config_text(replicas, &dir, &secret)?;
            let config = Config::parse(&text).map_err(|e| e.to_string())?;
            std::fs::write(&config_path, text).map_err(|e| e.to_string())?;
            Ok(config)
        };
        let config = setup().inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&dir);
        })?;
        let servers: Servers = Arc::default();
        let cluster = Cluster {
            dir,
            config,
            servers: servers.clone(),
            peak_at_kill: Mutex::new(vec![None; replicas]),
        };
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
        for id in 0..replicas {
            let mut command = Command::new(&exe);
            command.arg("replica").arg("--config").arg(&config_path);
            command.arg("--id").arg(id.to_string());
            let log = cluster.dir.join(format!("replica-{id}.log"));
            let server = ServerProcess::spawn(command, &log).map_err(|e| e.to_string())?;
            lock(&servers).push(Some(server));
        }
        let dir = cluster.dir.clone();
        thread::spawn(move || {
            thread::sleep(limit);
            eprintln!("still running after {} s: stopping", limit.as_secs());
            lock(&servers).clear();
            let _ = std::fs::remove_dir_all(dir);
            std::process::exit(2);
        });
        Ok(cluster)
    }

    /// Waits (at most 30 s) until a replica says it is primary.
    fn wait_for_primary(&self) -> Result<ReplicaId, String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let primary = self.config.replicas.iter().find_map(|r| {
                let max_frame = self.config.net.max_frame_bytes;
                client::status(r, max_frame, Duration::from_millis(500))
                    .ok()
                    .filter(|s| s.role == Role::Primary)
            });
            if let Some(status) = primary {
                return Ok(status.id);
            }
            thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "no primary within 30 s; see the logs in {}",
            self.dir.display()
        ))
    }

    /// `kill -9`, after reading its peak memory.
    fn kill(&self, id: ReplicaId) {
        let mut servers = lock(&self.servers);
        if let Some(server) = servers[id as usize].as_mut() {
            lock(&self.peak_at_kill)[id as usize] = vm_hwm_kb(server.pid());
            server.kill();
        }
        servers[id as usize] = None;
    }

    /// Peak resident memory in kB, and whether it was read before a kill.
    fn peak_rss(&self, id: ReplicaId) -> (Option<u64>, bool) {
        match lock(&self.servers)[id as usize].as_ref() {
            Some(server) => (vm_hwm_kb(server.pid()), false),
            None => (lock(&self.peak_at_kill)[id as usize], true),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        lock(&self.servers).clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The benchmark's configuration: free ports, `dir`, and the timing of `config.yaml`.
fn config_text(replicas: usize, dir: &Path, secret: &Path) -> Result<String, String> {
    let defaults = Config::parse(BUILT_IN_CONFIG).map_err(|e| e.to_string())?;
    let mut text = local_replicas(replicas).map_err(|e| format!("no free port: {e}"))?;
    text += &format!(
        "data_dir: {}\ncluster_secret_file: {}\nheartbeat_interval_ms: {}\n\
         election_timeout_ms: {}\nsnapshot_every: {}\n",
        dir.display(),
        secret.display(),
        defaults.heartbeat_interval_ms,
        defaults.election_timeout_ms,
        defaults.snapshot_every
    );
    Ok(text)
}

fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One replica, as `chat-server --config PATH --id N` runs it; it dies with the benchmark.
fn replica(config_path: &Path, id: ReplicaId) -> Result<(), String> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of this process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
    chat_bin::logging::init()?;
    process::run_replica(Some(config_path), id, None).map_err(|e| match e {
        ReplicaError::Config(e) => e,
        ReplicaError::Server(e) => format!("replica {id}: {e}"),
    })
}
