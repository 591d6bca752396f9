//! `chat-client`: the client of the replicated chat service, at the keyboard or in scripts.

use chat_bin::repl::{self, Outcome};
use chat_bin::{settings, waiting};
use chat_net::client::{Client, ClientOptions};
use clap::Parser;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Chat with the replicated chat service: `0|<regex>` ... `6|`, `help`, `quit`.
///
/// In a terminal: an interactive prompt. From a pipe: one command per line. With commands
/// given on the command line (`-c '0|'` or after `--`): runs them and exits. Exit status: 0 if
/// every command succeeded, 1 if one failed (or no cluster could be reached), 2 for a usage
/// error.
#[derive(Parser)]
#[command(name = "chat-client", version)]
struct Args {
    /// The cluster configuration [default: config.yaml if it exists, else the built-in one]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Print each reply and each pushed message as one JSON object per line
    #[arg(long)]
    json: bool,
    /// Run this command and exit (repeat for several, run in order)
    #[arg(
        short = 'c',
        long = "command",
        value_name = "COMMAND",
        conflicts_with = "commands"
    )]
    command: Vec<String>,
    /// Commands to run, in order, before exiting (write them after `--`)
    #[arg(value_name = "COMMAND")]
    commands: Vec<String>,
    /// Give up on a request that no primary answered within this many seconds (it says
    /// whether the request may have been applied) [default: keep trying, showing why]
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(Outcome::AllSucceeded) => ExitCode::SUCCESS,
        Ok(Outcome::SomeFailed) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<Outcome, String> {
    let loaded = settings::load(args.config.as_deref())?;
    let give_up_after = match args.timeout {
        Some(s) => Some(
            Duration::try_from_secs_f64(s)
                .map_err(|_| format!("--timeout {s}: a number of seconds, 0 or more"))?,
        ),
        None => None,
    };
    let options = ClientOptions {
        give_up_after,
        ..ClientOptions::default()
    };
    let display = match args.json {
        true => waiting::display_json(),
        false => waiting::display(),
    };
    let (client, incoming) =
        Client::connect_showing(&loaded.config, options, display).map_err(|e| e.to_string())?;
    waiting::cancel_on_ctrl_c(client.canceller(), || {})?;
    let commands = [args.command, args.commands]
        .into_iter()
        .find(|c| !c.is_empty());
    let interactive = commands.is_none() && !args.json && std::io::stdin().is_terminal();
    if interactive {
        println!("connected; type `help` for the commands, `quit` or Ctrl-D to leave");
    }
    repl::run(
        &client,
        incoming,
        repl::Options {
            commands,
            json: args.json,
            extension: None,
        },
    )
}
