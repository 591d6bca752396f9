//! `chat demo`: a local cluster and a client in one command, and a playground for its faults
//! (`:kill N`, `:pause N`, `:resume N`, `:restart N`, `:status`; see [`chat_bin::demo`]).
//!
//! The replicas are child processes running this same executable (`chat replica`, hidden),
//! so `cargo run --bin chat -- demo` works without building `chat-server` first; they run the
//! same replica code as `chat-server`.

use chat_bin::demo::{Demo, Layout};
use chat_bin::process::{self, ReplicaError};
use chat_bin::settings::{self, Loaded, BUILT_IN_CONFIG};
use chat_bin::{logging, repl, secret, tls_files, waiting};
use chat_core::ids::ReplicaId;
use chat_net::client::{Client, ClientOptions};
use clap::{Parser, Subcommand};
use signal_hook::consts::{SIGHUP, SIGTERM};
use signal_hook::iterator::Signals;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

/// How long a demo request waits for a primary before it gives up (see `demo`).
const DEMO_PATIENCE: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(name = "chat", version, about = "The replicated chat service")]
struct Args {
    /// The cluster configuration [default: config.yaml if it exists, else the built-in one]
    #[arg(long, value_name = "PATH", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start every replica of the configuration on this machine, as child processes, and
    /// chat with them here; `:kill N`, `:pause N`, `:resume N`, `:restart N` and `:status`
    /// play with their faults; `quit`, Ctrl-D or Ctrl-C stops everything.
    Demo,
    /// Run one replica (what `demo` starts in each child process).
    #[command(hide = true)]
    Replica {
        #[arg(long)]
        id: ReplicaId,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Cmd::Demo => demo(args.config.as_deref()),
        Cmd::Replica { id } => replica(args.config.as_deref(), id),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// On a first run, the CA and the replicas' certificates that the `tls:` section names, if
/// it names them as `chat-admin new-tls DIR` writes them.
fn create_tls_files(
    files: &chat_core::config::TlsFiles,
    config: &chat_core::config::Config,
) -> Result<(), String> {
    if Path::new(&files.ca).exists() {
        return Ok(());
    }
    let dir = Path::new(&files.ca).parent().unwrap_or(Path::new("."));
    if tls_files::files_in(dir) != *files {
        return Err(format!(
            "the TLS CA {} does not exist: make the files with `chat-admin new-tls DIR` and              name them in the `tls:` section",
            files.ca
        ));
    }
    tls_files::create(dir, config)?;
    println!(
        "created a TLS certificate authority and the replicas' certificates in {}",
        dir.display()
    );
    Ok(())
}

fn demo(flag: Option<&Path>) -> Result<(), String> {
    let loaded = settings::load(flag)?;
    let data_dir = PathBuf::from(&loaded.config.data_dir);
    let layout = Layout {
        config_path: config_file(&loaded, &data_dir),
        config: loaded.config,
        data_dir,
        exe: std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?,
    };
    // Before anything is written or started.
    layout.check_free()?;
    std::fs::create_dir_all(&layout.data_dir)
        .map_err(|e| format!("cannot create {}: {e}", layout.data_dir.display()))?;
    if loaded.path.is_none() {
        std::fs::write(&layout.config_path, BUILT_IN_CONFIG)
            .map_err(|e| format!("cannot write {}: {e}", layout.config_path.display()))?;
    }
    if let Some(file) = &layout.config.cluster_secret_file {
        if !Path::new(file).exists() {
            secret::create(Path::new(file))?;
            println!("created the cluster secret {file}");
        }
    }
    if let Some(files) = &layout.config.tls {
        create_tls_files(files, &layout.config)?;
    }
    println!(
        "starting {} replicas (logs in {})...",
        layout.config.replicas.len(),
        layout.data_dir.join("replica-<id>.log").display()
    );
    let mut demo = Demo::start(layout.clone())
        .map_err(|e| format!("the cluster did not start; every replica was stopped:\n{e}"))?;
    stop_on_signals(demo.stopper(), [SIGTERM, SIGHUP])?;
    let pids: Vec<String> = demo
        .pids()
        .iter()
        .map(|(id, pid)| format!("{id} (pid {pid})"))
        .collect();
    println!(
        "replicas {} answering; data in {}. Type `help` for the commands (`:kill 0`, \
         `:status`, ... play with failures); `quit`, Ctrl-D or Ctrl-C stops the client and the \
         replicas.",
        pids.join(", "),
        layout.data_dir.join("replica-<id>").display(),
    );
    // The status line says what a waiting request waits for; and a request no primary answers
    // gives up after DEMO_PATIENCE, so that `:resume 1` or `:restart 0` typed meanwhile gets
    // its turn (the REPL runs one line at a time).
    let client_options = ClientOptions {
        give_up_after: Some(DEMO_PATIENCE),
        ..ClientOptions::default()
    };
    let (client, incoming) =
        Client::connect_showing(&layout.config, client_options, waiting::display())
            .map_err(|e| e.to_string())?;
    // Ctrl-C while a request waits cancels the wait (the demo carries on, e.g. to `:restart`
    // a replica); otherwise it stops the replicas and leaves.
    waiting::cancel_on_ctrl_c(client.canceller(), demo.stopper())?;
    let options = repl::Options {
        extension: Some(&mut demo),
        ..repl::Options::default()
    };
    repl::run(&client, incoming, options).map(|_| ())
}

/// The file the replicas read: the user's, or the built-in one written under the data dir.
fn config_file(loaded: &Loaded, data_dir: &Path) -> PathBuf {
    match &loaded.path {
        Some(path) => path.clone(),
        None => data_dir.join("config.yaml"),
    }
}

/// On one of `which`, stop the replicas and leave.
fn stop_on_signals<const N: usize>(
    stop: impl Fn() + Send + 'static,
    which: [i32; N],
) -> Result<(), String> {
    let mut signals = Signals::new(which).map_err(|e| format!("signal handlers: {e}"))?;
    thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            stop();
            std::process::exit(128 + signal);
        }
    });
    Ok(())
}

/// One replica, as `chat-server --config PATH --id N` runs it.
fn replica(config: Option<&Path>, id: ReplicaId) -> Result<(), String> {
    logging::init()?;
    process::run_replica(config, id, None, false).map_err(|e| match e {
        ReplicaError::Config(e) => e,
        ReplicaError::Server(e) => format!("replica {id}: {e}"),
    })
}
