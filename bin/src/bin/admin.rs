//! `chat-admin`: operator commands for a cluster.

use chat_bin::cluster_status::{self, Answer};
use chat_bin::{secret, settings, tls_files};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// How long one replica may take to answer before it is shown as down.
const TIMEOUT: Duration = Duration::from_secs(1);

/// Exit status of `status` when the cluster cannot serve clients.
const NOT_SERVING: u8 = 1;
/// Exit status for a bad command line (clap's own) or an unreadable configuration.
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
