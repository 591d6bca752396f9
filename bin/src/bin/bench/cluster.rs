//! The cluster under test: replicas this program started as child processes (which it can
//! kill and restart), or a running cluster named by a configuration file (`--connect`).

use chat_bin::process::{local_replicas, ServerProcess};
use chat_bin::settings::BUILT_IN_CONFIG;
use chat_core::config::Config;
use chat_core::ids::ReplicaId;
use chat_core::replica::{Role, Status};
use chat_net::client;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

pub struct Cluster {
    pub config: Config,
    /// Replicas started here; `None` for a cluster reached with `--connect`.
    local: Option<Local>,
}

struct Local {
    dir: PathBuf,
    config_path: PathBuf,
    servers: Servers,
    /// VmHWM of each replica killed on purpose, read just before.
    peak_at_kill: Mutex<Vec<Option<u64>>>,
}

type Servers = Arc<Mutex<Vec<Option<ServerProcess>>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Cluster {
    /// A running cluster: only measured, never killed.
    pub fn connect(config: Config) -> Cluster {
        Cluster {
            config,
            local: None,
        }
    }

    /// Starts `replicas` replicas on free local ports in a temporary directory (with a new
    /// CA and certificates if `tls`); past `limit`, a watchdog kills them and ends this
    /// program (a benchmark never runs forever).
    pub fn start(replicas: usize, limit: Duration, tls: bool) -> Result<Cluster, String> {
        let name = format!(
            "chat-bench-{}{}",
            std::process::id(),
            if tls { "-tls" } else { "" }
        );
        let dir = std::env::temp_dir().join(name);
        let config_path = dir.join("config.yaml");
        let setup = || -> Result<Config, String> {
            let secret = dir.join("cluster.secret");
            chat_bin::secret::create(&secret)?;
            let mut text = config_text(replicas, &dir, &secret)?;
            if tls {
                let config = Config::parse(&text).map_err(|e| e.to_string())?;
                let tls_dir = dir.join("tls");
                chat_bin::tls_files::create(&tls_dir, &config)?;
                let files = chat_bin::tls_files::files_in(&tls_dir);
                text += &format!(
                    "tls:\n  ca: {}\n  certificate: {}\n  key: {}\n",
                    files.ca, files.certificate, files.key
                );
            }
            let config = Config::parse(&text).map_err(|e| e.to_string())?;
            std::fs::write(&config_path, text).map_err(|e| e.to_string())?;
            Ok(config)
        };
        let config = setup().inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&dir);
        })?;
        let servers: Servers = Arc::new(Mutex::new((0..replicas).map(|_| None).collect()));
        let cluster = Cluster {
            config,
            local: Some(Local {
                dir: dir.clone(),
                config_path,
                servers: servers.clone(),
                peak_at_kill: Mutex::new(vec![None; replicas]),
            }),
        };
        for id in 0..replicas {
            cluster.spawn(id as ReplicaId)?;
        }
        thread::spawn(move || {
            thread::sleep(limit);
            eprintln!("still running after {} s: stopping", limit.as_secs());
            lock(&servers).clear();
            let _ = std::fs::remove_dir_all(dir);
            std::process::exit(2);
        });
        Ok(cluster)
    }

    /// The directory of a local cluster's data (and logs).
    pub fn dir(&self) -> Option<&Path> {
        self.local.as_ref().map(|l| l.dir.as_path())
    }

    pub fn replica_ids(&self) -> impl Iterator<Item = ReplicaId> + '_ {
        self.config.replicas.iter().map(|r| r.id)
    }

    fn local(&self) -> Result<&Local, String> {
        self.local
            .as_ref()
            .ok_or_else(|| "only replicas started by chat-bench can be killed".to_owned())
    }

    /// Starts (or restarts) replica `id` as a child process running this program.
    pub fn spawn(&self, id: ReplicaId) -> Result<(), String> {
        let local = self.local()?;
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
        let mut command = Command::new(exe);
        command
            .arg("replica")
            .arg("--config")
            .arg(&local.config_path);
        command.arg("--id").arg(id.to_string());
        let log = local.dir.join(format!("replica-{id}.log"));
        let server = ServerProcess::spawn(command, &log).map_err(|e| e.to_string())?;
        lock(&local.servers)[id as usize] = Some(server);
        Ok(())
    }

    /// `kill -9`, after reading its peak memory.
    pub fn kill(&self, id: ReplicaId) -> Result<(), String> {
        let local = self.local()?;
        let mut servers = lock(&local.servers);
        if let Some(server) = servers[id as usize].as_mut() {
            lock(&local.peak_at_kill)[id as usize] = vm_hwm_kb(server.pid());
            server.kill();
        }
        servers[id as usize] = None;
        Ok(())
    }

    /// Current resident memory (VmRSS) of a running local replica, in kB.
    pub fn rss_kb(&self, id: ReplicaId) -> Option<u64> {
        let local = self.local.as_ref()?;
        let servers = lock(&local.servers);
        proc_status_kb(servers[id as usize].as_ref()?.pid(), "VmRSS:")
    }

    /// CPU time (user + system) used so far by the running local replicas, summed over
    /// them, by kind of thread ([`thread_kind`]).
    pub fn replicas_cpu(&self) -> Option<ThreadCpu> {
        let local = self.local.as_ref()?;
        let servers = lock(&local.servers);
        let mut total = ThreadCpu::new();
        for pid in servers.iter().flatten().map(ServerProcess::pid) {
            let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
            for task in tasks.flatten() {
                let stat = task.path().join("stat");
                let Ok(text) = std::fs::read_to_string(&stat) else {
                    continue; // The thread ended meanwhile.
                };
                let tid = task.file_name().to_string_lossy().parse::<u32>().ok();
                let name = text
                    .find('(')
                    .zip(text.rfind(')'))
                    .map_or("", |(a, b)| &text[a + 1..b]);
                if let Some(cpu) = cpu_time(&stat.to_string_lossy()) {
                    *total
                        .entry(thread_kind(name, tid == Some(pid)))
                        .or_default() += cpu;
                }
            }
        }
        Some(total)
    }

    /// Peak resident memory in kB, and whether it was read before a kill.
    pub fn peak_rss(&self, id: ReplicaId) -> (Option<u64>, bool) {
        let Some(local) = self.local.as_ref() else {
            return (None, false);
        };
        match lock(&local.servers)[id as usize].as_ref() {
            Some(server) => (vm_hwm_kb(server.pid()), false),
            None => (lock(&local.peak_at_kill)[id as usize], true),
        }
    }

    /// One replica's status, if it answers within half a second.
    pub fn status(&self, id: ReplicaId) -> Option<Status> {
        let replica = self.config.replicas.iter().find(|r| r.id == id)?;
        let max_frame = self.config.net.max_frame_bytes;
        let tls = client::client_tls(&self.config).ok()?;
        client::status(replica, max_frame, tls.as_ref(), Duration::from_millis(500)).ok()
    }

    /// The status of the replica that says it is primary, if any.
    pub fn primary(&self) -> Option<Status> {
        self.replica_ids()
            .filter_map(|id| self.status(id))
            .find(|s| s.role == Role::Primary)
    }

    /// Waits until a replica says it is primary, at most `limit`.
    pub fn wait_for_primary(&self, limit: Duration) -> Result<Status, String> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.primary() {
                return Ok(status);
            }
            thread::sleep(Duration::from_millis(10));
        }
        let logs = self.dir().map_or(String::new(), |d| {
            format!("; see the logs in {}", d.display())
        });
        Err(format!("no primary within {} s{logs}", limit.as_secs()))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(local) = &self.local {
            lock(&local.servers).clear();
            if std::env::var_os("CHAT_BENCH_KEEP").is_some() {
                eprintln!("kept {} (CHAT_BENCH_KEEP)", local.dir.display());
                return;
            }
            let _ = std::fs::remove_dir_all(&local.dir);
        }
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

/// CPU time by kind of thread of the replicas.
pub type ThreadCpu = std::collections::BTreeMap<&'static str, Duration>;

/// What a replica's thread does, from its name (`net/src/server`): the event loop is the
/// process's main thread.
fn thread_kind(name: &str, main: bool) -> &'static str {
    match name {
        _ if main => "event loop",
        "chat-storage" => "storage",
        "chat-snapshot" => "snapshot",
        _ => "other",
    }
}

/// User + system CPU time of a process (or of a thread, from its task's `stat`), from its `/proc/<pid>/stat` (fields 14 and 15, in
/// clock ticks of 1/100 s: the kernel's `USER_HZ` on Linux).
pub fn cpu_time(stat_path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // The command name (field 2) may hold spaces: count from the ')' that ends it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

fn vm_hwm_kb(pid: u32) -> Option<u64> {
    proc_status_kb(pid, "VmHWM:")
}

fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub fn dir_size(dir: &Path) -> u64 {
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
