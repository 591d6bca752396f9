//! The interactive client loop. In a terminal: line editing and history (rustyline; lines
//! with a password are kept out of it), and incoming messages printed above the line being
//! typed. From a pipe: one command per line,
//! each answer on its own line(s), incoming messages as they come, exit at end of input.

use chat_core::chat::{ChatError, Reply};
use chat_core::command::{self, Command, ParseError, HELP};
use chat_net::client::{Client, ClientError, Incoming};
use rustyline::error::ReadlineError;
use rustyline::ExternalPrinter;
use std::io::{BufRead, IsTerminal};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Duration;

/// At the end of piped input (or `quit`), how long to wait for messages still on their way.
const LINGER: Duration = Duration::from_millis(300);

/// Commands a program adds to the loop (`chat demo`'s `:kill N`, ...): lines that start
/// with ':' go to it, its help follows the commands' in `help`, and its notices are printed
/// as they come, like incoming messages.
pub trait Extension {
    /// Lines appended to the help text.
    fn help(&self) -> String;
    /// Handles a line that starts with ':'; returns what to print.
    fn handle(&mut self, line: &str) -> String;
    /// Lines to print when they come (taken once, when the loop starts).
    fn notices(&mut self) -> Option<Receiver<String>>;
}

/// Runs the loop until `quit`, end of input or Ctrl-C.
pub fn run(client: &Client, incoming: Receiver<Incoming>) -> Result<(), String> {
    run_with(client, incoming, None)
}

/// [`run`], with a program's own commands.
pub fn run_with(
    client: &Client,
    incoming: Receiver<Incoming>,
    mut extension: Option<&mut dyn Extension>,
) -> Result<(), String> {
    let notices = unsolicited(incoming, extension.as_mut().and_then(|e| e.notices()));
    if std::io::stdin().is_terminal() {
        run_terminal(client, notices, extension)
    } else {
        run_piped(client, notices, extension)
    }
}

/// Everything to print unasked, as lines: incoming messages and notices, merged.
fn unsolicited(
    incoming: Receiver<Incoming>,
    notices: Option<Receiver<String>>,
) -> Receiver<String> {
    let (lines, merged) = mpsc::channel();
    if let Some(notices) = notices {
        let lines = lines.clone();
        thread::spawn(move || notices.into_iter().try_for_each(|n| lines.send(n)));
    }
    thread::spawn(move || {
        incoming
            .into_iter()
            .try_for_each(|event| lines.send(describe_incoming(&event)))
    });
    merged
}

fn run_terminal(
    client: &Client,
    incoming: Receiver<String>,
    mut extension: Option<&mut dyn Extension>,
) -> Result<(), String> {
    let mut editor = rustyline::DefaultEditor::new().map_err(|e| e.to_string())?;
    let mut printer = editor
        .create_external_printer()
        .map_err(|e| e.to_string())?;
    thread::spawn(move || {
        for line in incoming {
            // The printer writes the text as it is: without its own line end, the prompt
            // redrawn after it would overwrite it.
            if printer.print(format!("{line}\n")).is_err() {
                return;
            }
        }
    });
    loop {
        match editor.readline("> ") {
            Ok(line) => {
                let parsed = parse_line(&line);
                if parsed.as_ref().is_some_and(|p| !carries_password(p)) {
                    let _ = editor.add_history_entry(line.as_str());
                }
                match extended(&mut extension, &line).unwrap_or_else(|| answer(client, parsed)) {
                    Step::Print(text) => println!("{text}"),
                    Step::Skip => {}
                    Step::Quit => return Ok(()),
                }
            }
            Err(ReadlineError::Interrupted | ReadlineError::Eof) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn run_piped(
    client: &Client,
    incoming: Receiver<String>,
    mut extension: Option<&mut dyn Extension>,
) -> Result<(), String> {
    thread::spawn(move || {
        for line in incoming {
            println!("{line}");
        }
    });
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| format!("reading standard input: {e}"))?;
        let step = extended(&mut extension, &line);
        match step.unwrap_or_else(|| answer(client, parse_line(&line))) {
            Step::Print(text) => println!("{text}"),
            Step::Skip => {}
            Step::Quit => break,
        }
    }
    thread::sleep(LINGER);
    Ok(())
}

/// What to do after one input line.
enum Step {
    Print(String),
    /// A blank line: nothing to do.
    Skip,
    Quit,
}

/// What the extension makes of a line: its own commands, and `help` with its lines added.
fn extended(extension: &mut Option<&mut dyn Extension>, line: &str) -> Option<Step> {
    let extension = extension.as_mut()?;
    let line = line.trim();
    if line.starts_with(':') {
        return Some(Step::Print(extension.handle(line)));
    }
    matches!(command::parse(line), Ok(Command::Help))
        .then(|| Step::Print(format!("{HELP}\n{}", extension.help())))
}

/// One input line parsed; `None` for a blank line.
fn parse_line(line: &str) -> Option<Result<Command, ParseError>> {
    (!line.trim().is_empty()).then(|| command::parse(line))
}

fn answer(client: &Client, parsed: Option<Result<Command, ParseError>>) -> Step {
    let Some(parsed) = parsed else {
        return Step::Skip;
    };
    let text = match parsed {
        Ok(Command::Quit) => return Step::Quit,
        Ok(Command::Help) => HELP.to_owned(),
        Ok(Command::Op(op)) => describe_outcome(client.request(op)),
        Ok(Command::WithPassword {
            action,
            user,
            password,
        }) => describe_outcome(client.request_with_password(action, user, password)),
        Err(e) => format!("error: {e}"),
    };
    Step::Print(text)
}

/// Whether the line is a create or login with a password (`1|<user>|<password>`, ...).
#[cfg(test)]
fn has_password(line: &str) -> bool {
    carries_password(&command::parse(line))
}

/// Whether a parsed line is a create or login with a password.
fn carries_password(parsed: &Result<Command, ParseError>) -> bool {
    matches!(parsed, Ok(Command::WithPassword { .. }))
}

fn describe_outcome(outcome: Result<Reply, ClientError>) -> String {
    match outcome {
        Ok(Reply::Error(ChatError::SessionExpired)) => {
            "error: session expired: you are logged out; log in again with 2|<user>".to_owned()
        }
        Ok(reply) => command::describe(&reply),
        Err(e) => format!("error: {e}"),
    }
}

/// The line printed for something the service said unasked.
pub fn describe_incoming(event: &Incoming) -> String {
    match event {
        Incoming::Message(m) => command::describe_message(m),
        Incoming::LoggedOut => {
            "logged out: your account was taken over elsewhere (or deleted)".to_owned()
        }
        Incoming::SessionExpired => {
            "session expired: you are logged out; log in again with 2|<user>".to_owned()
        }
        Incoming::Trouble(e) => format!("error: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_with_a_password_stay_out_of_the_history() {
        assert!(has_password("1|ann|s3cret"));
        assert!(has_password("2|ann|s3cret"));
        assert!(!has_password("2|ann"));
        assert!(!has_password("5|ann|hi"));
        assert!(!has_password("2|ann|"));
    }
}
