//! Figures: latency percentiles, one row per setting (a table line or a JSON object), the
//! progress line, and the `fdatasync` floor the latencies are compared with.

use serde::Serialize;
use std::io::{IsTerminal, Seek, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Latencies of the acknowledged operations of one measurement window.
pub struct Samples {
    sorted: Vec<Duration>,
    window: Duration,
}

impl Samples {
    pub fn new(mut latencies: Vec<Duration>, window: Duration) -> Samples {
        latencies.sort_unstable();
        Samples {
            sorted: latencies,
            window,
        }
    }

    pub fn count(&self) -> u64 {
        self.sorted.len() as u64
    }

    pub fn per_second(&self) -> f64 {
        self.sorted.len() as f64 / self.window.as_secs_f64()
    }

    /// The `p` quantile (0 < p ≤ 1) in milliseconds, nearest rank.
    pub fn ms(&self, p: f64) -> f64 {
        let rank = (p * self.sorted.len() as f64).ceil() as usize;
        let at = self.sorted.get(rank.saturating_sub(1)).copied();
        ms(at.unwrap_or_default())
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One setting's figures; `--json` prints it as one object per line.
#[derive(Serialize)]
pub struct Row {
    /// `chat`, `chat+tls` (the same over TLS) or `etcd`.
    pub system: &'static str,
    pub clients: u32,
    pub sends: u64,
    pub sends_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Acknowledged, never delivered (etcd: acknowledged puts missing afterwards).
    pub lost: u64,
    /// Delivered more than once.
    pub duplicated: u64,
    /// Delivered though never acknowledged (its request failed on the client's side).
    pub unacknowledged: u64,
    /// Requests that returned an error.
    pub failed: u64,
    /// The longest wait between two acknowledgements of one client across the kill.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover_gap_ms: Option<f64>,
    /// The longest such wait anywhere in the run (kill runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub longest_gap_ms: Option<f64>,
    /// CPU time of the local replicas (all three summed) per acknowledged send while
    /// measuring; less sensitive to a busy machine than the rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas_cpu_us_per_send: Option<f64>,
    /// The same by kind of the replicas' threads: "event loop", "storage" (the log's
    /// writes and syncs), "snapshot" (encoding and writing snapshots), "other".
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub replicas_cpu_us_by_thread: std::collections::BTreeMap<&'static str, f64>,
    /// CPU time of the benchmark's own client threads per acknowledged send.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clients_cpu_us_per_send: Option<f64>,
    /// A 100-byte write (over bytes already written) + `fdatasync` on the data directory's
    /// disk, median: the floor of a durable acknowledgement.
    pub fdatasync_p50_ms: f64,
    /// The same done by one thread per replica at once, the slowest of each round, median:
    /// the floor of an acknowledgement durable on every replica when they share this disk.
    pub fdatasync_all_replicas_p50_ms: f64,
}

impl Row {
    pub fn new(system: &'static str, clients: u32, samples: &Samples, floor: &Floor) -> Row {
        Row {
            system,
            clients,
            sends: samples.count(),
            sends_per_s: samples.per_second(),
            p50_ms: samples.ms(0.50),
            p90_ms: samples.ms(0.90),
            p99_ms: samples.ms(0.99),
            p999_ms: samples.ms(0.999),
            max_ms: samples.ms(1.0),
            lost: 0,
            duplicated: 0,
            unacknowledged: 0,
            failed: 0,
            failover_gap_ms: None,
            longest_gap_ms: None,
            replicas_cpu_us_per_send: None,
            replicas_cpu_us_by_thread: Default::default(),
            clients_cpu_us_per_send: None,
            fdatasync_p50_ms: floor.one,
            fdatasync_all_replicas_p50_ms: floor.all_replicas,
        }
    }

    pub const HEADER: &'static str =
        "system   clients    sends    per s   p50 ms   p90 ms   p99 ms  p99.9 ms   max ms  check";

    pub fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::to_string(self).expect("a row serializes"));
            return;
        }
        let check = if self.lost + self.duplicated + self.failed + self.unacknowledged == 0 {
            "ok".to_owned()
        } else {
            format!(
                "{} LOST, {} duplicated, {} delivered unacknowledged, {} failed",
                self.lost, self.duplicated, self.unacknowledged, self.failed
            )
        };
        let gap = match (self.failover_gap_ms, self.longest_gap_ms) {
            (Some(g), Some(l)) if l > g => {
                format!("; failover gap {g:.0} ms (longest gap {l:.0} ms, not across the kill)")
            }
            (Some(g), _) => format!("; failover gap {g:.0} ms"),
            _ => String::new(),
        };
        let cpu = match (self.replicas_cpu_us_per_send, self.clients_cpu_us_per_send) {
            (Some(r), Some(c)) => {
                let threads: Vec<String> = self
                    .replicas_cpu_us_by_thread
                    .iter()
                    .filter(|(_, &us)| us >= 0.5)
                    .map(|(kind, us)| format!("{kind} {us:.0}"))
                    .collect();
                format!(
                    "; CPU per send: replicas {r:.0} us ({}), clients {c:.0} us",
                    threads.join(", ")
                )
            }
            _ => String::new(),
        };
        println!(
            "{:<8} {:>7} {:>8} {:>8.0} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>8.2}  {check}{gap}{cpu}",
            self.system,
            self.clients,
            self.sends,
            self.sends_per_s,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.p999_ms,
            self.max_ms,
        );
    }
}

/// A progress line on stderr, only when stderr is a terminal.
pub struct Progress {
    on: bool,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            on: std::io::stderr().is_terminal(),
        }
    }

    pub fn show(&self, clients: u32, elapsed: Duration, total: Duration, acks: u64) {
        if self.on {
            let (e, t) = (elapsed.as_secs_f64(), total.as_secs_f64());
            eprint!("\r{clients} clients: {e:.1} of {t:.1} s, {acks} acknowledged   ");
            let _ = std::io::stderr().flush();
        }
    }

    pub fn clear(&self) {
        if self.on {
            eprint!("\r\x1b[2K");
        }
    }
}

/// The floors of a durable acknowledgement on the disk of a directory, in milliseconds.
pub struct Floor {
    /// One write and sync alone: the lower of the medians with and without a thread
    /// spinning beside it (`spinning`, `quiet`).
    pub one: f64,
    pub spinning: f64,
    pub quiet: f64,
    /// One write and sync per replica, started together: the median of the slowest.
    pub all_replicas: f64,
    pub replicas: usize,
}

impl Floor {
    /// Measures the floors on the disk of `dir` for a cluster of `replicas`.
    ///
    /// One sync alone is measured twice, with and without another thread spinning beside
    /// it. Either can only be inflated by the machine, not the disk: on a virtual machine an
    /// idle vCPU halts, and waking it when the disk answers can wait for a timer tick (4 ms
    /// against 0.14-0.16 ms with a CPU busy, on this project's machines), while on a machine
    /// loaded by others the spinning thread competes for a CPU. The floor is the lower.
    ///
    /// Replicas on one machine share its disk, and a sync that arrives while another is
    /// under way waits for it: so an acknowledgement durable on every replica has a floor of
    /// its own, which `all_replicas` measures.
    pub fn measure(dir: &Path, replicas: usize) -> Result<Floor, String> {
        let quiet = fdatasync_p50(dir)?;
        let stop = AtomicBool::new(false);
        let spinning = std::thread::scope(|scope| {
            scope.spawn(|| {
                // Plain work, not `spin_loop()`: a hypervisor may take a loop of PAUSE
                // instructions for an idle vCPU.
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            });
            let with = fdatasync_p50(dir);
            stop.store(true, Ordering::Relaxed);
            with
        })?;
        Ok(Floor {
            one: spinning.min(quiet),
            spinning,
            quiet,
            all_replicas: fdatasync_at_once_p50(dir, replicas)?,
            replicas,
        })
    }
}

const FLOOR_ROUNDS: usize = 200;

/// A file of `FLOOR_ROUNDS` × 100 bytes, written and synced, rewound: the probe writes over
/// it.
fn probe_file(dir: &Path, name: &str) -> Result<(std::fs::File, std::path::PathBuf), String> {
    let path = dir.join(format!("fdatasync-probe-{}-{name}", std::process::id()));
    let failed = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut file = std::fs::File::create(&path).map_err(failed)?;
    file.write_all(&[0u8; FLOOR_ROUNDS * 100])
        .and_then(|()| file.sync_all())
        .and_then(|()| file.rewind())
        .map_err(failed)?;
    Ok((file, path))
}

/// One round of the probe: 100 bytes written in place and synced, timed.
fn write_and_sync(mut file: &std::fs::File, path: &Path) -> Result<Duration, String> {
    let began = Instant::now();
    file.write_all(&[7u8; 100])
        .and_then(|()| file.sync_data())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(began.elapsed())
}

/// `replicas` threads, each with its own file, start each round together (a barrier) and
/// write and sync once; the median over the rounds of the slowest thread's time.
fn fdatasync_at_once_p50(dir: &Path, replicas: usize) -> Result<f64, String> {
    let barrier = std::sync::Barrier::new(replicas);
    let per_thread: Vec<Result<Vec<Duration>, String>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..replicas)
            .map(|i| {
                let barrier = &barrier;
                scope.spawn(move || {
                    // Every thread goes through every barrier, even after an error, so that
                    // none waits forever.
                    let probe = probe_file(dir, &format!("at-once-{i}"));
                    let mut times = Vec::with_capacity(FLOOR_ROUNDS);
                    let mut error = None;
                    for _ in 0..FLOOR_ROUNDS {
                        barrier.wait();
                        if let Ok((file, path)) = &probe {
                            if error.is_none() {
                                match write_and_sync(file, path) {
                                    Ok(t) => times.push(t),
                                    Err(e) => error = Some(e),
                                }
                            }
                        }
                    }
                    let (_, path) = probe?;
                    let _ = std::fs::remove_file(path);
                    error.map_or(Ok(times), Err)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("a probe thread does not panic"))
            .collect()
    });
    let per_thread = per_thread.into_iter().collect::<Result<Vec<_>, _>>()?;
    let slowest = (0..FLOOR_ROUNDS)
        .map(|round| {
            per_thread
                .iter()
                .map(|t| t[round])
                .max()
                .unwrap_or_default()
        })
        .collect();
    Ok(Samples::new(slowest, Duration::from_secs(1)).ms(0.5))
}

/// Over bytes already written and synced, the way the log writes (`ZERO_AHEAD_BYTES` in
/// `chat_net::storage`): appending that grows the file costs a metadata sync each time, about
/// a third more on ext4.
fn fdatasync_p50(dir: &Path) -> Result<f64, String> {
    let (file, path) = probe_file(dir, "alone")?;
    let samples = (0..FLOOR_ROUNDS)
        .map(|_| write_and_sync(&file, &path))
        .collect::<Result<Vec<_>, _>>();
    let _ = std::fs::remove_file(&path);
    Ok(Samples::new(samples?, Duration::from_secs(1)).ms(0.5))
}
