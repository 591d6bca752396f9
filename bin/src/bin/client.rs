//! `chat-client`: the interactive client of the replicated chat service.

use chat_bin::{repl, settings};
use chat_net::client::Client;
use clap::Parser;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Chat with the replicated chat service: `0|<regex>` ... `6|`, `help`, `quit`.
#[derive(Parser)]
#[command(name = "chat-client", version)]
struct Args {
    /// The cluster configuration [default: config.yaml if it exists, else the built-in one]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let loaded = settings::load(args.config.as_deref())?;
    let (client, incoming) = Client::connect(&loaded.config).map_err(|e| e.to_string())?;
    if std::io::stdin().is_terminal() {
        println!("connected; type `help` for the commands, `quit` or Ctrl-D to leave");
    }
    repl::run(&client, incoming)
}
