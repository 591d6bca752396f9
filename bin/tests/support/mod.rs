//! A three-replica cluster of real `chat-server` processes on free local ports, each with its
//! own temporary data directory. Dropping it kills every process it started (and, if the test
//! is failing, prints the end of each replica's log); a test that runs past `TEST_LIMIT` has
//! its processes killed and the test program aborted.

pub mod chat;

use chat_bin::process::{local_replicas, ServerProcess};
use chat_bin::tls_files::{self, Authority, Validity};
use chat_core::config::Config;
use chat_core::ids::ReplicaId;
use chat_core::replica::{Role, Status};
use chat_net::client::{self, Client, Incoming};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const REPLICAS: usize = 3;
/// The partial-frame and handshake timeouts of the test configuration.
pub const NET_TIMEOUT: Duration = Duration::from_millis(1000);

/// The longest a test may run.
const TEST_LIMIT: Duration = Duration::from_secs(180);

/// One cluster at a time: the machine may have two cores, and free ports stay free.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub struct Cluster {
    pub dir: TempDir,
    pub config: Config,
    pub config_path: PathBuf,
    servers: Servers,
    /// Dropping it stops the watchdog.
    _watchdog: mpsc::Sender<()>,
    _turn: MutexGuard<'static, ()>,
}

type Servers = Arc<Mutex<Vec<Option<ServerProcess>>>>;

fn lock(servers: &Servers) -> MutexGuard<'_, Vec<Option<ServerProcess>>> {
    servers.lock().unwrap_or_else(|e| e.into_inner())
}

/// Kills the servers and aborts if the test is still running after `TEST_LIMIT`.
fn watchdog(servers: Servers) -> mpsc::Sender<()> {
    let (cancel, cancelled) = mpsc::channel::<()>();
    thread::spawn(move || {
        if let Err(RecvTimeoutError::Timeout) = cancelled.recv_timeout(TEST_LIMIT) {
            eprintln!(
                "test still running after {} s: killing its servers",
                TEST_LIMIT.as_secs()
            );
            for server in lock(&servers).iter_mut().flatten() {
                server.kill();
            }
            std::process::abort();
        }
    });
    cancel
}

impl Cluster {
    /// Starts all replicas and waits for a primary.
    #[allow(dead_code)] // Not every test program uses every helper.
    pub fn start() -> Cluster {
        Cluster::start_with(None)
    }

    /// Starts all replicas with TLS on every link, their certificates issued by `ca`, and
    /// waits for a primary.
    #[allow(dead_code)]
    pub fn start_tls(ca: &Authority) -> Cluster {
        Cluster::start_with(Some(ca))
    }

    fn start_with(ca: Option<&Authority>) -> Cluster {
        let mut cluster = Cluster::configure(ca);
        cluster.start_all();
        cluster
    }

    /// Writes the configuration (TLS if `ca`) and starts nothing: the test starts replicas
    /// with [`Cluster::start_replica`].
    pub fn configure(ca: Option<&Authority>) -> Cluster {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().expect("temporary directory");
        let secret = dir.path().join("cluster.secret");
        chat_bin::secret::create(&secret).expect("cluster secret");
        let mut text = config_text(dir.path(), &secret);
        if let Some(ca) = ca {
            let config = Config::parse(&text).expect("test configuration");
            let tls_dir = dir.path().join("tls");
            tls_files::write(&tls_dir, ca, &config, Validity::standard()).expect("TLS files");
            let files = tls_files::files_in(&tls_dir);
            text += &format!(
                "tls:\n  ca: {}\n  certificate: {}\n  key: {}\n",
                files.ca, files.certificate, files.key
            );
        }
        let config = Config::parse(&text).expect("test configuration");
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, text).expect("write configuration");
        let servers: Servers = Arc::new(Mutex::new((0..REPLICAS).map(|_| None).collect()));
        Cluster {
            dir,
            config,
            config_path,
            _watchdog: watchdog(servers.clone()),
            servers,
            _turn: turn,
        }
    }

    /// Starts every replica and waits until each answers and one is primary (replica 0 is
    /// the first view's primary as soon as it runs, before the others may have started).
    pub fn start_all(&mut self) {
        for id in 0..REPLICAS {
            self.start_replica(id as ReplicaId);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(0..REPLICAS as ReplicaId).all(|id| self.status(id).is_some()) {
            assert!(
                Instant::now() < deadline,
                "not every replica answers within 20 s"
            );
            thread::sleep(Duration::from_millis(20));
        }
        self.wait_for_primary(None);
    }

    pub fn start_replica(&mut self, id: ReplicaId) {
        self.start_replica_with(id, &[]);
    }

    /// Starts replica `id` with these extra `chat-server` arguments.
    pub fn start_replica_with(&mut self, id: ReplicaId, args: &[&str]) {
        let mut command = self.server_command(id);
        command.args(args);
        let log = self.dir.path().join(format!("replica-{id}.log"));
        let server = ServerProcess::spawn(command, &log).expect("start chat-server");
        lock(&self.servers)[id as usize] = Some(server);
    }

    /// The `chat-server` command line of replica `id` (its data directory is
    /// [`Cluster::data_dir`]).
    pub fn server_command(&self, id: ReplicaId) -> Command {
        self.server_command_on(id, &self.data_dir(id))
    }

    /// The `chat-server` command line of replica `id` on the data directory `dir`.
    pub fn server_command_on(&self, id: ReplicaId, dir: &Path) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chat-server"));
        command
            .arg("--config")
            .arg(&self.config_path)
            .arg("--id")
            .arg(id.to_string())
            .arg("--data-dir")
            .arg(dir)
            .env("RUST_LOG", "info");
        command
    }

    /// Replica `id`'s data directory.
    pub fn data_dir(&self, id: ReplicaId) -> PathBuf {
        self.dir.path().join(format!("replica-{id}"))
    }

    /// `kill -9` one replica.
    pub fn kill(&mut self, id: ReplicaId) {
        let server = lock(&self.servers)[id as usize].take();
        if let Some(mut server) = server {
            server.kill();
        }
    }

    /// SIGSTOP one replica: a frozen host (silence, no refusals).
    #[allow(dead_code)]
    pub fn pause(&self, id: ReplicaId) {
        if let Some(server) = lock(&self.servers)[id as usize].as_mut() {
            server.pause();
        }
    }

    /// SIGCONT one replica paused by [`Cluster::pause`].
    #[allow(dead_code)]
    pub fn resume(&self, id: ReplicaId) {
        if let Some(server) = lock(&self.servers)[id as usize].as_mut() {
            server.resume();
        }
    }

    /// Runs `chat-admin` with this cluster's configuration.
    #[allow(dead_code)]
    pub fn admin(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_chat-admin"))
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .output()
            .expect("run chat-admin")
    }

    pub fn kill_all(&mut self) {
        for id in 0..REPLICAS {
            self.kill(id as ReplicaId);
        }
    }

    /// Whether every started replica process is still running.
    pub fn all_running(&self) -> bool {
        lock(&self.servers)
            .iter_mut()
            .flatten()
            .all(|server| server.exited().is_none())
    }

    pub fn status(&self, id: ReplicaId) -> Option<Status> {
        let replica = self.config.replica(id)?;
        let tls = client::client_tls(&self.config).expect("the CA loads");
        client::status(
            replica,
            self.config.net.max_frame_bytes,
            tls.as_ref(),
            Duration::from_millis(500),
        )
        .ok()
    }

    /// The text replica `id` has logged so far.
    #[allow(dead_code)]
    pub fn log(&self, id: ReplicaId) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("replica-{id}.log")))
            .unwrap_or_default()
    }

    /// Waits (at most 20 s) until one replica other than `not` says it is primary.
    pub fn wait_for_primary(&self, not: Option<ReplicaId>) -> ReplicaId {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let primary = (0..REPLICAS as ReplicaId)
                .filter(|&id| Some(id) != not)
                .filter_map(|id| self.status(id))
                .filter(|s| s.role == Role::Primary)
                .max_by_key(|s| s.view);
            if let Some(status) = primary {
                return status.id;
            }
            assert!(Instant::now() < deadline, "no primary within 20 s");
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// A client session with the default (production) timing.
    pub fn client(&self) -> (Client, Receiver<Incoming>) {
        Client::connect(&self.config).expect("connect to the cluster")
    }

    fn log_tails(&self) -> String {
        let mut out = String::new();
        for id in 0..REPLICAS {
            let path = self.dir.path().join(format!("replica-{id}.log"));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out += &format!(
                "--- replica {id} (last 40 lines of {}) ---\n",
                path.display()
            );
            for line in &lines[lines.len().saturating_sub(40)..] {
                out += line;
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
        if thread::panicking() {
            eprintln!("{}", self.log_tails());
        }
    }
}

/// The test configuration, on free local ports.
fn config_text(data_dir: &Path, secret: &Path) -> String {
    let mut text = local_replicas(REPLICAS).expect("free ports");
    text += &format!(
        "data_dir: {}\n\
         cluster_secret_file: {}\n\
         heartbeat_interval_ms: 50\n\
         election_timeout_ms: 300\n\
         snapshot_every: 25\n\
         net:\n  handshake_timeout_ms: {ms}\n  partial_frame_timeout_ms: {ms}\n",
        data_dir.display(),
        secret.display(),
        ms = NET_TIMEOUT.as_millis()
    );
    text
}

/// Runs `command` (a `chat-server` expected to refuse to start) for at most 10 s; returns
/// its exit status and what it wrote to stderr.
#[allow(dead_code)]
pub fn run_expecting_exit(mut command: Command) -> (ExitStatus, String) {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chat-server");
    let status: Option<ExitStatus> = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = status.unwrap_or_else(|| panic!("still running after 10 s:\n{stderr}"));
    (status, stderr)
}
