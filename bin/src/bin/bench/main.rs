//! `chat-bench`: throughput and latency of the chat service under a closed-loop load, a kill -9
//! of the primary on the way if asked, the same load on etcd for comparison (cargo feature
//! `etcd`), and recovery times (`chat-bench recovery`).
//!
//! Local replicas are child processes running this same executable (`chat-bench replica`,
//! hidden, as `chat demo` does), on free 127.0.0.1 ports with a temporary data directory and
//! the timing of `config.yaml`; `--connect CONFIG` measures a running cluster instead.

mod cluster;
#[cfg(feature = "etcd")]
mod etcd;
mod load;
mod mux;
mod recovery;
mod report;

use chat_bin::process::{self, ReplicaError};
use chat_core::ids::ReplicaId;
use clap::{Parser, Subcommand};
use cluster::Cluster;
use report::{Progress, Row};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "chat-bench", version, args_conflicts_with_subcommands = true)]
/// Measures the chat service: sends per second, latency percentiles, failover, recovery.
struct Args {
    #[command(flatten)]
    load: LoadArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Args)]
struct LoadArgs {
    /// Client counts, one setting each (comma-separated)
    #[arg(long, value_delimiter = ',', default_value = "1,8,64",
          value_parser = clap::value_parser!(u32).range(1..))]
    clients: Vec<u32>,
    /// Seconds measured per setting
    #[arg(long, default_value_t = 5.0, value_parser = positive_seconds)]
    seconds: f64,
    /// Seconds of load before measuring, per setting
    #[arg(long, default_value_t = 1.0, value_parser = seconds)]
    warmup: f64,
    /// Replicas of the local cluster
    #[arg(long, default_value_t = 3, conflicts_with = "connect")]
    replicas: usize,
    /// Measure the running cluster of this configuration instead of starting one
    #[arg(long, value_name = "CONFIG")]
    connect: Option<PathBuf>,
    /// Kill -9 the primary this many seconds into each setting's measurement (local cluster
    /// only); reports the longest gap between a client's acknowledgements
    #[arg(long, value_name = "SECS", value_parser = seconds, conflicts_with = "connect")]
    kill_primary_at: Option<f64>,
    /// Also run each setting against these etcd endpoints (comma-separated URLs; needs a
    /// build with `--features etcd`)
    #[arg(long, value_name = "ENDPOINTS")]
    etcd: Option<String>,
    /// TLS on the local cluster's links: `off`, `on`, or `both` (two clusters, measured in
    /// turn for each setting, rows `chat` and `chat+tls` side by side)
    #[arg(long, value_enum, default_value = "off", conflicts_with = "connect")]
    tls: Tls,
    /// One JSON object per setting instead of a table
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Tls {
    Off,
    On,
    Both,
}

#[derive(Subcommand)]
enum Command {
    /// Fill a local cluster with messages, then time restarts: one backup, then all replicas.
    Recovery(recovery::Args),
    /// Run one replica (what the benchmark starts in each child process).
    #[command(hide = true)]
    Replica {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        id: ReplicaId,
    },
}

fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Ok(s),
        _ => Err(format!("{text:?} is not a number of seconds")),
    }
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    seconds(text).and_then(|s| {
        if s > 0.0 {
            Ok(s)
        } else {
            Err("must be more than 0".to_owned())
        }
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Some(Command::Replica { config, id }) => replica(&config, id),
        Some(Command::Recovery(recovery)) => recovery::run(&recovery),
        None => bench(&args.load),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: &LoadArgs) -> Result<(), String> {
    let etcd = etcd_target(args.etcd.as_deref())?;
    let warmup = Duration::from_secs_f64(args.warmup);
    let measure = Duration::from_secs_f64(args.seconds);
    let per_setting = warmup + measure + Duration::from_secs(60);
    let limit = per_setting * (3 * args.clients.len() as u32);
    let clusters: Vec<(&'static str, Cluster)> = match (&args.connect, args.tls) {
        (Some(path), _) => {
            let config = chat_bin::settings::load(Some(path))?.config;
            let system = if config.tls.is_some() {
                "chat+tls"
            } else {
                "chat"
            };
            vec![(system, Cluster::connect(config))]
        }
        (None, Tls::Off) => vec![("chat", Cluster::start(args.replicas, limit, false)?)],
        (None, Tls::On) => vec![("chat+tls", Cluster::start(args.replicas, limit, true)?)],
        (None, Tls::Both) => vec![
            ("chat", Cluster::start(args.replicas, limit, false)?),
            ("chat+tls", Cluster::start(args.replicas, limit, true)?),
        ],
    };
    let mut primaries = Vec::new();
    for (_, cluster) in &clusters {
        primaries.push(cluster.wait_for_primary(Duration::from_secs(30))?);
    }
    let probe_dir = clusters[0]
        .1
        .dir()
        .map_or_else(std::env::temp_dir, Path::to_path_buf);
    let floor = report::Floor::measure(&probe_dir, args.replicas)?;
    if !args.json {
        for ((system, cluster), primary) in clusters.iter().zip(&primaries) {
            match cluster.dir() {
                Some(dir) => println!(
                    "{system}: {} local replicas, data in {}",
                    args.replicas,
                    dir.display()
                ),
                None => println!("cluster of {}, primary {}", show(&args.connect), primary.id),
            }
        }
        if let Some(endpoints) = &etcd {
            println!("etcd: {}", endpoints.join(","));
        }
        println!(
            "floor: 100-byte write in place + fdatasync p50 {:.3} ms (the lower of {:.3} ms \
             with a thread spinning beside it and {:.3} ms without); {} at once, one per \
             replica, on this disk: the slowest p50 {:.3} ms; load average {}",
            floor.one,
            floor.spinning,
            floor.quiet,
            floor.replicas,
            floor.all_replicas,
            load_average()
        );
        println!("{}", Row::HEADER);
    }
    let progress = Progress::new();
    for (i, &clients) in args.clients.iter().enumerate() {
        let setting = load::Setting {
            clients,
            warmup,
            measure,
            kill_primary_at: args.kill_primary_at.map(Duration::from_secs_f64),
            tag: format!("b{}t{i}", std::process::id() % 100_000),
        };
        // With `--tls both`, the two clusters take turns: each setting runs on one, then on
        // the other, so that a change in the machine's load falls on both.
        for (system, cluster) in &clusters {
            let outcome = load::run(cluster, &setting, &progress)?;
            let mut row = Row::new(system, clients, &outcome.samples, &floor);
            row.lost = outcome.lost;
            row.duplicated = outcome.duplicated;
            row.unacknowledged = outcome.unacknowledged;
            row.failed = outcome.failed;
            row.failover_gap_ms = outcome.failover_gap.map(report::ms);
            row.longest_gap_ms = outcome.longest_gap.map(report::ms);
            if let Some((replicas, clients)) = outcome.cpu_per_send {
                let us = |d: std::time::Duration| d.as_secs_f64() * 1e6;
                row.replicas_cpu_us_per_send = Some(replicas.values().copied().map(us).sum());
                row.replicas_cpu_us_by_thread =
                    replicas.iter().map(|(&kind, &d)| (kind, us(d))).collect();
                row.clients_cpu_us_per_send = Some(us(clients));
            }
            row.print(args.json);
        }
        if let Some(endpoints) = &etcd {
            run_etcd(endpoints, &setting, &floor, &progress)?.print(args.json);
        }
    }
    if !args.json {
        println!("load average at end: {}", load_average());
        for (system, cluster) in &clusters {
            for id in cluster.replica_ids() {
                let (kb, killed) = cluster.peak_rss(id);
                let Some(kb) = kb else { continue };
                let note = if killed { " (read before kill -9)" } else { "" };
                let dir = cluster.dir().map(|d| d.join(format!("replica-{id}")));
                let size = dir.map_or(0, |d| cluster::dir_size(&d));
                println!(
                    "{system} replica {id}: peak RSS (VmHWM) {kb} kB{note}, data directory \
                     {size} bytes"
                );
            }
        }
    }
    Ok(())
}

fn show(path: &Option<PathBuf>) -> String {
    path.as_deref()
        .map_or(String::new(), |p| p.display().to_string())
}

/// The etcd endpoints to compare with, refused up front in a build without the driver.
fn etcd_target(endpoints: Option<&str>) -> Result<Option<Vec<String>>, String> {
    let Some(endpoints) = endpoints else {
        return Ok(None);
    };
    if !cfg!(feature = "etcd") {
        return Err(
            "this chat-bench was built without etcd support: build it with \
                    `cargo build --release -p chat-bin --features etcd --bin chat-bench`"
                .to_owned(),
        );
    }
    Ok(Some(endpoints.split(',').map(str::to_owned).collect()))
}

#[cfg(feature = "etcd")]
fn run_etcd(
    endpoints: &[String],
    setting: &load::Setting,
    floor: &report::Floor,
    progress: &Progress,
) -> Result<Row, String> {
    etcd::run(endpoints, setting, floor, progress)
}

#[cfg(not(feature = "etcd"))]
fn run_etcd(
    _: &[String],
    _: &load::Setting,
    _: &report::Floor,
    _: &Progress,
) -> Result<Row, String> {
    unreachable!("refused by etcd_target")
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
    process::run_replica(Some(config_path), id, None, false).map_err(|e| match e {
        ReplicaError::Config(e) => e,
        ReplicaError::Server(e) => format!("replica {id}: {e}"),
    })
}
