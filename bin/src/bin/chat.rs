//! `chat demo`: a local three-replica cluster and a client in one command.
//!
//! The replicas are child processes running this same executable (`chat replica`, hidden),
//! so `cargo run --bin chat -- demo` works without building `chat-server` first; they run the
//! same replica code as `chat-server`.

use chat_bin::process::{self, ReplicaError, ServerProcess};
use chat_bin::settings::{self, BUILT_IN_CONFIG};
use chat_bin::{repl, secret, settings::Loaded};
use chat_core::config::Config;
use chat_core::ids::ReplicaId;
use chat_core::replica::Role;
use chat_net::client::{self, Client};
use clap::{Parser, Subcommand};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long the replicas may take to elect a primary.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a replica may take to stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Parser)]
#[command(name = "chat", version, about = "The replicated chat service")]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start every replica of the configuration on this machine, as child processes, and
    /// chat with them here; `quit`, Ctrl-D or Ctrl-C stops everything.
    Demo {
        /// The cluster configuration [default: config.yaml if it exists, else the built-in one]
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Run one replica (what `demo` starts in each child process).
    #[command(hide = true)]
    Replica {
        #[arg(long, value_name = "PATH")]
        config: PathBuf,
        #[arg(long)]
        id: ReplicaId,
    },
}

fn main() -> ExitCode {
    let result = match Args::parse().command {
        Cmd::Demo { config } => demo(config.as_deref()),
        Cmd::Replica { config, id } => replica(&config, id),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Children = Arc<Mutex<Vec<ServerProcess>>>;

fn demo(flag: Option<&Path>) -> Result<(), String> {
    let loaded = settings::load(flag)?;
    let config = &loaded.config;
    let data_dir = PathBuf::from(&config.data_dir);
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    let config_path = config_file(&loaded, &data_dir)?;
    if let Some(file) = &config.cluster_secret_file {
        if !Path::new(file).exists() {
            secret::create(Path::new(file))?;
            println!("created the cluster secret {file}");
        }
    }
    let children: Children = Arc::default();
    stop_on_signals(children.clone())?;
    let result = start_and_chat(config, &config_path, &data_dir, &children);
    stop(&children);
    result
}

/// The file the replicas read: the user's, or the built-in one written under the data dir.
fn config_file(loaded: &Loaded, data_dir: &Path) -> Result<PathBuf, String> {
    if let Some(path) = &loaded.path {
        return Ok(path.clone());
    }
    let path = data_dir.join("config.yaml");
    std::fs::write(&path, BUILT_IN_CONFIG)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

fn start_and_chat(
    config: &Config,
    config_path: &Path,
    data_dir: &Path,
    children: &Children,
) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    for r in &config.replicas {
        let mut command = Command::new(&exe);
        command
            .arg("replica")
            .arg("--config")
            .arg(config_path)
            .arg("--id")
            .arg(r.id.to_string());
        let log = log_path(data_dir, r.id);
        let child = ServerProcess::spawn(command, &log)
            .map_err(|e| format!("cannot start replica {}: {e}", r.id))?;
        lock(children).push(child);
    }
    wait_for_primary(config, data_dir, children)?;
    let last = config.replicas.len() - 1;
    println!(
        "{} replicas running; data in {}, logs in {}. Type `help` for the commands; \
         `quit`, Ctrl-D or Ctrl-C stops the client and the replicas.",
        config.replicas.len(),
        data_dir.join(format!("replica-{{0..{last}}}")).display(),
        data_dir
            .join(format!("replica-{{0..{last}}}.log"))
            .display(),
    );
    let (client, incoming) = Client::connect(config).map_err(|e| e.to_string())?;
    repl::run(&client, incoming, repl::Options::default()).map(|_| ())
}

fn log_path(data_dir: &Path, id: ReplicaId) -> PathBuf {
    data_dir.join(format!("replica-{id}.log"))
}

fn wait_for_primary(config: &Config, data_dir: &Path, children: &Children) -> Result<(), String> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        for (r, child) in config.replicas.iter().zip(lock(children).iter_mut()) {
            if let Some(status) = child.exited() {
                return Err(format!(
                    "replica {} stopped at start-up ({status}); see {}",
                    r.id,
                    log_path(data_dir, r.id).display()
                ));
            }
        }
        let primary = config.replicas.iter().any(|r| {
            client::status(r, config.net.max_frame_bytes, Duration::from_millis(500))
                .is_ok_and(|s| s.role == Role::Primary)
        });
        if primary {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no primary after {} s; see the logs in {}",
                STARTUP_TIMEOUT.as_secs(),
                data_dir.display()
            ));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// On SIGINT/SIGTERM/SIGHUP, stop the replicas and leave.
fn stop_on_signals(children: Children) -> Result<(), String> {
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).map_err(|e| format!("signal handlers: {e}"))?;
    thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            stop(&children);
            std::process::exit(128 + signal);
        }
    });
    Ok(())
}

fn stop(children: &Children) {
    for child in lock(children).iter_mut() {
        child.terminate(STOP_GRACE);
    }
}

fn lock(children: &Children) -> std::sync::MutexGuard<'_, Vec<ServerProcess>> {
    children
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One replica, as `chat-server --config PATH --id N` runs it.
fn replica(config_path: &Path, id: ReplicaId) -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    process::run_replica(config_path, id, None).map_err(|e| match e {
        ReplicaError::Config(e) => e,
        ReplicaError::Server(e) => format!("replica {id}: {e}"),
    })
}
