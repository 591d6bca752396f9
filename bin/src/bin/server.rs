//! `chat-server [--config config.yaml] --id N [--data-dir DIR] [--rejoin]`: runs replica N of the
//! cluster until SIGINT or SIGTERM. Logs go to stderr, filtered by `RUST_LOG` (default
//! `info`), coloured only on a terminal.

use chat_bin::{logging, process};
use chat_core::ids::ReplicaId;
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "chat-server",
    version,
    about = "Runs one replica of the chat service"
)]
struct Args {
    /// The cluster configuration [default: config.yaml if it exists, else the built-in one]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Which replica of the configuration to run.
    #[arg(long, value_name = "N")]
    id: ReplicaId,
    /// Where to keep the log and snapshots [default: <data_dir of the config>/replica-<N>].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Bring back a replica whose data directory was lost or wiped: start on the empty
    /// directory knowing nothing, and rejoin through the primary, taking its whole state.
    /// Refused if the directory holds state.
    #[arg(long)]
    rejoin: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = logging::init() {
        eprintln!("chat-server: {e}");
        return ExitCode::from(2);
    }
    match process::run_replica(args.config.as_deref(), args.id, args.data_dir, args.rejoin) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat-server: {e}");
            ExitCode::FAILURE
        }
    }
}
