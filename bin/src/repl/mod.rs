//! The client loop of `chat-client` and `chat demo`.
//!
//! In a terminal ([`terminal`]): line editing, history kept across runs, masked passwords,
//! incoming messages printed above the line being typed. From a pipe or the command line
//! ([`script`]): one command per line, replies on stdout, errors on stderr (or everything as
//! JSON lines), and an [`Outcome`] that becomes the exit status.
//!
//! Both read lines and hand them to one [`Dispatch`], which sends the chat commands through
//! the [`Client`] and the `:` lines to the program's [`Extension`] (the demo's `:kill 1`).

mod json;
mod script;
mod terminal;

use chat_core::chat::{ChatError, Reply};
use chat_core::command::{self, Command, ParseError, HELP};
use chat_net::client::{Client, ClientError, Incoming};
use std::io::IsTerminal;
use std::sync::mpsc::{self, Receiver};
use std::thread;

/// Commands a program adds to the client: lines that start with ':' (the demo's `:kill 1`).
pub trait Extension {
    /// Lines appended to `help`.
    fn help(&self) -> &str;
    /// Runs one line that starts with ':' (given whole): the text to print, or what failed.
    fn run(&mut self, line: &str) -> Result<String, String>;
    /// Lines of the program's own to print as they come, like pushed messages (the demo's
    /// "replica 1 exited"); taken once, when the loop starts.
    fn notices(&mut self) -> Option<Receiver<String>> {
        None
    }
}

/// What is printed without being asked: from the service, or a notice of the program's own.
pub(super) enum Unasked {
    Service(Incoming),
    Notice(String),
}

impl Unasked {
    fn describe(&self) -> String {
        match self {
            Unasked::Service(event) => describe_incoming(event),
            Unasked::Notice(text) => text.clone(),
        }
    }
}

/// The service's pushes and the program's notices, merged into one stream.
fn unasked(incoming: Receiver<Incoming>, notices: Option<Receiver<String>>) -> Receiver<Unasked> {
    let (lines, merged) = mpsc::channel();
    if let Some(notices) = notices {
        let lines = lines.clone();
        thread::spawn(move || {
            notices
                .into_iter()
                .try_for_each(|n| lines.send(Unasked::Notice(n)))
        });
    }
    thread::spawn(move || {
        incoming
            .into_iter()
            .try_for_each(|event| lines.send(Unasked::Service(event)))
    });
    merged
}

/// How to run the loop.
#[derive(Default)]
pub struct Options<'a> {
    /// Run these commands, in order, instead of reading standard input (`chat-client -c`).
    pub commands: Option<Vec<String>>,
    /// Print each reply and each pushed message as one JSON object per line.
    pub json: bool,
    /// The program's own `:` commands.
    pub extension: Option<&'a mut dyn Extension>,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    AllSucceeded,
    /// At least one command failed (a script exits with status 1).
    SomeFailed,
}

/// Runs the loop until `quit`, the end of the input or of the commands, or (in a terminal)
/// Ctrl-D or Ctrl-C twice.
pub fn run<'a>(
    client: &'a Client,
    incoming: Receiver<Incoming>,
    options: Options<'a>,
) -> Result<Outcome, String> {
    let mut extension = options.extension;
    let notices = extension.as_mut().and_then(|e| e.notices());
    let incoming = unasked(incoming, notices);
    let mut dispatch = Dispatch { client, extension };
    if let Some(commands) = options.commands {
        let lines = commands.into_iter().map(|c| Ok(c.into_bytes()));
        return script::run(&mut dispatch, incoming, lines, options.json);
    }
    if std::io::stdin().is_terminal() && !options.json {
        return terminal::run(&mut dispatch, incoming);
    }
    let lines = std::io::BufRead::split(std::io::stdin().lock(), b'\n');
    script::run(&mut dispatch, incoming, lines, options.json)
}

/// One input line, sorted.
enum Line {
    Blank,
    /// A line for the program's [`Extension`].
    Extension(String),
    Command(Result<Command, ParseError>),
}

/// What one line asked for.
enum Step {
    Blank,
    Quit,
    Answer(Answer),
}

/// What a command produced.
enum Answer {
    /// A reply that is not an error.
    Reply(Reply),
    /// Text to show as it is (`help`, an extension's output).
    Text(String),
    Failed(Failure),
}

/// Every way one line can fail.
enum Failure {
    Invalid(ParseError),
    NotUtf8,
    Chat(ChatError),
    Client(ClientError),
    Extension(String),
}

impl Failure {
    fn message(&self) -> String {
        match self {
            Failure::Invalid(e) => e.to_string(),
            Failure::NotUtf8 => "the line is not UTF-8 text".to_owned(),
            Failure::Chat(ChatError::SessionExpired) => {
                "session expired: you are logged out; log in again with 2|<user>".to_owned()
            }
            Failure::Chat(e) => e.to_string(),
            Failure::Client(e) => e.to_string(),
            Failure::Extension(e) => e.clone(),
        }
    }
}

impl Answer {
    /// The text a person reads: a reply's description, or `error: ...`.
    fn describe(&self) -> String {
        match self {
            Answer::Reply(reply) => command::describe(reply),
            Answer::Text(text) => text.clone(),
            Answer::Failed(failure) => format!("error: {}", failure.message()),
        }
    }
}

/// Sends each line where it belongs.
struct Dispatch<'a> {
    client: &'a Client,
    extension: Option<&'a mut dyn Extension>,
}

impl Dispatch<'_> {
    fn sort(&self, line: &str) -> Line {
        if line.trim().is_empty() {
            Line::Blank
        } else if self.extension.is_some() && line.trim_start().starts_with(':') {
            Line::Extension(line.trim().to_owned())
        } else {
            Line::Command(command::parse(line))
        }
    }

    /// Runs one line as it is: no questions asked (what a script gets).
    fn line(&mut self, line: &str) -> Step {
        match self.sort(line) {
            Line::Blank => Step::Blank,
            Line::Extension(line) => Step::Answer(self.extension(&line)),
            Line::Command(Ok(command)) => self.command(command),
            Line::Command(Err(e)) => Step::Answer(Answer::Failed(Failure::Invalid(e))),
        }
    }

    fn command(&mut self, command: Command) -> Step {
        let outcome = match command {
            Command::Quit => return Step::Quit,
            Command::Help => return Step::Answer(Answer::Text(self.help())),
            Command::Op(op) => self.client.request(op),
            Command::WithPassword {
                action,
                user,
                password,
            } => self.client.request_with_password(action, user, password),
        };
        Step::Answer(match outcome {
            Ok(Reply::Error(e)) => Answer::Failed(Failure::Chat(e)),
            Ok(reply) => Answer::Reply(reply),
            Err(e) => Answer::Failed(Failure::Client(e)),
        })
    }

    fn extension(&mut self, line: &str) -> Answer {
        let extension = self
            .extension
            .as_mut()
            .expect("sorted as an extension line");
        match extension.run(line) {
            Ok(text) => Answer::Text(text),
            Err(e) => Answer::Failed(Failure::Extension(e)),
        }
    }

    fn help(&self) -> String {
        match &self.extension {
            Some(extension) => format!("{HELP}\n{}", extension.help()),
            None => HELP.to_owned(),
        }
    }
}

/// Whether a parsed line is a create or login with a password (kept out of the history).
fn carries_password(parsed: &Result<Command, ParseError>) -> bool {
    matches!(parsed, Ok(Command::WithPassword { .. }))
}

/// The line printed for something the service said unasked.
fn describe_incoming(event: &Incoming) -> String {
    match event {
        Incoming::Message(m) => command::describe_message(m),
        Incoming::LoggedOut => {
            "logged out: your account was taken over elsewhere (or deleted)".to_owned()
        }
        Incoming::SessionExpired => {
            "session expired: you are logged out; log in again with 2|<user>".to_owned()
        }
        Incoming::Trouble(e) => format!("error: {e}"),
        Incoming::Unavailable(_) | Incoming::Available => {
            crate::waiting::describe_availability(event).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_password(line: &str) -> bool {
        carries_password(&command::parse(line))
    }

    #[test]
    fn lines_with_a_password_stay_out_of_the_history() {
        assert!(has_password("1|ann|s3cret"));
        assert!(has_password("2|ann|s3cret"));
        assert!(!has_password("2|ann"));
        assert!(!has_password("5|ann|hi"));
        assert!(!has_password("2|ann|"));
    }
}
