//! `chat-server --config config.yaml --id N [--data-dir DIR]`: runs replica N of the cluster
//! until SIGINT or SIGTERM. Logs go to stderr, filtered by `RUST_LOG` (default `info`).

use chat_bin::process;
use chat_core::ids::ReplicaId;
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "chat-server",
    version,
    about = "Runs one replica of the chat service"
)]
struct Args {
    /// The cluster configuration file.
    #[arg(long, value_name = "PATH")]
    config: PathBuf,
    /// Which replica of the configuration to run.
    #[arg(long, value_name = "N")]
    id: ReplicaId,
    /// Where to keep the log and snapshots [default: <data_dir of the config>/replica-<N>].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat-server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: Args) -> Result<(), String> {
    process::run_replica(&args.config, args.id, args.data_dir).map_err(|e| e.to_string())
}
