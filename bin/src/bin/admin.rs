//! `chat-admin`: operator commands for a cluster.

use chat_bin::cluster_status::{self, Answer};
use chat_bin::{secret, settings, tls_files};
use chat_core::ids::ReplicaId;
use chat_core::peer_auth::RemoveOrder;
use chat_net::client;
use chat_net::server::load_secret;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long one replica may take to answer before it is shown as down.
const TIMEOUT: Duration = Duration::from_secs(1);

/// Exit status of `status` when the cluster cannot serve clients.
const NOT_SERVING: u8 = 1;
/// Exit status for a bad command line (clap's own), an unreadable configuration, or a
/// `remove` refused before any replica was asked (the replica answers).
const USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "chat-admin",
    version,
    about = "Operator commands for a chat cluster"
)]
struct Args {
    /// The cluster configuration [default: config.yaml if it exists, else the built-in one]
    #[arg(long, value_name = "PATH", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Each replica's id, address, up or down, role, view, commit number, last log index and
    /// lag (the highest commit number seen minus its own), then a summary line ("serving:
    /// ..." or "NOT SERVING: ..."). Exit status: 0 serving, 1 not serving, 2 bad usage or
    /// configuration.
    Status {
        /// One JSON object instead of the table (see README)
        #[arg(long)]
        json: bool,
    },
    /// Write a new random cluster secret to FILE (refuses to replace an existing file); name
    /// it in `cluster_secret_file` and give every replica a copy.
    NewSecret {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Write a new certificate authority (DIR/ca.pem) and a certificate and key for every
    /// replica of the configuration (DIR/replica-<id>.pem, .key), valid for its host (and
    /// localhost, 127.0.0.1 and ::1 for a local one); prints the `tls:` section naming them.
    /// The CA's key is not kept. Refuses to replace existing files.
    NewTls {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Declare replica ID's host gone for good (powered off, destroyed): every other replica
    /// that answers and may take it counts ID as crashed, the manual form of crash evidence,
    /// so that the survivor of two silent hosts serves alone. Refused if ID answers, by a
    /// replica that heard from ID lately, and by one that is rejoining. Unsafe if ID's host is
    /// in fact alive and cut off (README, "Removing a replica"). Needs the cluster secret.
    /// Exit status: 0 if a replica took it, 1 if none did, 2 bad usage or configuration.
    Remove {
        #[arg(value_name = "ID")]
        id: ReplicaId,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    match &args.command {
        Cmd::Status { json } => match settings::load(args.config.as_deref()) {
            Ok(loaded) => status(&cluster_status::query(&loaded.config, TIMEOUT), *json),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(USAGE)
            }
        },
        Cmd::NewTls { dir } => match new_tls(args.config.as_deref(), dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Remove { id } => match remove(args.config.as_deref(), *id) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(USAGE)
            }
        },
        Cmd::NewSecret { file } => match secret::create(file) {
            Ok(()) => {
                println!("wrote a new cluster secret to {}", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn new_tls(config: Option<&std::path::Path>, dir: &std::path::Path) -> Result<(), String> {
    let loaded = settings::load(config)?;
    let written = tls_files::create(dir, &loaded.config)?;
    for path in written {
        println!("wrote {}", path.display());
    }
    let files = tls_files::files_in(dir);
    println!(
        "put in config.yaml:\ntls:\n  ca: {}\n  certificate: {}\n  key: {}",
        files.ca, files.certificate, files.key
    );
    Ok(())
}

/// Sends the signed removal of `id` to every other replica; returns whether one took it.
fn remove(config: Option<&Path>, id: ReplicaId) -> Result<bool, String> {
    let config = settings::load(config)?.config;
    let target = config
        .replica(id)
        .ok_or_else(|| format!("replica {id} is not in the configuration"))?;
    let secret = load_secret(&config).map_err(|e| e.to_string())?.ok_or(
        "the configuration names no cluster_secret_file: a removal must be signed with it",
    )?;
    let tls = client::client_tls(&config).map_err(|e| e.to_string())?;
    let max_frame = config.net.max_frame_bytes;
    if let Ok(status) = client::status(target, max_frame, tls.as_ref(), TIMEOUT) {
        return Err(format!(
            "replica {id} answers ({:?} in view {}): its host is not gone; stop it for good first",
            status.role, status.view
        ));
    }
    let mut taken = false;
    for replica in config.replicas.iter().filter(|r| r.id != id) {
        let unix_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let order = RemoveOrder::sign(&secret, replica.id, id, unix_secs, rand::random());
        match client::remove(replica, order, max_frame, tls.as_ref(), TIMEOUT) {
            Ok((took, message)) => {
                taken |= took;
                println!("{message}");
            }
            Err(e) => {
                let why = cluster_status::why_down(&e.to_string(), TIMEOUT);
                println!("replica {}: {why}", replica.id);
            }
        }
    }
    Ok(taken)
}

fn status(answers: &[Answer], json: bool) -> ExitCode {
    let verdict = cluster_status::verdict(answers);
    if json {
        println!("{}", cluster_status::json(answers, &verdict));
    } else {
        print!("{}", cluster_status::table(answers));
        println!("{}", verdict.summary);
    }
    if verdict.serving {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(NOT_SERVING)
    }
}
