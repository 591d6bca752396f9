//! `chat-admin`: operator commands for a cluster.

use chat_bin::{secret, settings};
use chat_core::replica::{Role, Status};
use chat_net::client;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// How long one replica may take to answer before it is shown as down.
const TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Parser)]
#[command(
    name = "chat-admin",
    version,
    about = "Operator commands for a chat cluster"
)]
struct Args {
    /// The cluster configuration [default: config.yaml if it exists, else the built-in one]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Each replica's id, address, up or down, role, view, commit number, last log index and
    /// lag (the highest commit number seen minus its own). Exits 1 if no replica is up.
    Status,
    /// Write a new random cluster secret to FILE (refuses to replace an existing file); name
    /// it in `cluster_secret_file` and give every replica a copy.
    NewSecret {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match &args.command {
        Cmd::Status => settings::load(args.config.as_deref()).map(|loaded| status(&loaded.config)),
        Cmd::NewSecret { file } => secret::create(file).map(|()| {
            println!("wrote a new cluster secret to {}", file.display());
            ExitCode::SUCCESS
        }),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}

fn status(config: &chat_core::config::Config) -> ExitCode {
    let answers: Vec<(String, Result<Status, client::ClientError>)> = config
        .replicas
        .iter()
        .map(|r| {
            let address = format!("{}:{}", r.host, r.client_port);
            (
                address,
                client::status(r, config.net.max_frame_bytes, TIMEOUT),
            )
        })
        .collect();
    let top = answers
        .iter()
        .filter_map(|(_, a)| a.as_ref().ok().map(|s| s.commit))
        .max();
    println!(
        "{:<3} {:<22} {:<5} {:<9} {:>6} {:>8} {:>8} {:>6}",
        "id", "address", "state", "role", "view", "commit", "last", "lag"
    );
    for (replica, (address, answer)) in config.replicas.iter().zip(&answers) {
        match answer {
            Ok(s) => println!(
                "{:<3} {:<22} {:<5} {:<9} {:>6} {:>8} {:>8} {:>6}",
                s.id,
                address,
                "up",
                role(s.role),
                s.view,
                s.commit,
                s.last_index,
                top.unwrap_or(s.commit).saturating_sub(s.commit)
            ),
            Err(e) => println!("{:<3} {:<22} {:<5} ({e})", replica.id, address, "down"),
        }
    }
    if top.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn role(role: Role) -> &'static str {
    match role {
        Role::Primary => "primary",
        Role::Backup => "backup",
        Role::Candidate => "candidate",
    }
}
