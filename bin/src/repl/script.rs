//! The client driven by a program: commands from a pipe or from the command line.
//!
//! Replies go to stdout and failures to stderr as `line N: error: ...`, or, with `--json`,
//! every reply and pushed message to stdout as one JSON object per line ([`super::json`]).
//! A line that is not UTF-8 fails alone; the run goes on.

use super::{json, Answer, Dispatch, Failure, Outcome, Step, Unasked};
use chat_net::client::Incoming;
use std::sync::mpsc::Receiver;
use std::thread;
use std::time::Duration;

/// At the end of the input (or `quit`), how long to wait for messages still on their way.
const LINGER: Duration = Duration::from_millis(300);

pub(super) fn run(
    dispatch: &mut Dispatch,
    incoming: Receiver<Unasked>,
    lines: impl Iterator<Item = std::io::Result<Vec<u8>>>,
    json: bool,
) -> Result<Outcome, String> {
    let output = Output { json };
    thread::spawn(move || {
        for event in incoming {
            output.incoming(&event);
        }
    });
    let mut outcome = Outcome::AllSucceeded;
    for (index, line) in lines.enumerate() {
        let number = index + 1;
        let line = line.map_err(|e| format!("reading standard input: {e}"))?;
        let step = match String::from_utf8(line) {
            Ok(text) => dispatch.line(&text),
            Err(_) => Step::Answer(Answer::Failed(Failure::NotUtf8)),
        };
        match step {
            Step::Blank => {}
            Step::Quit => break,
            Step::Answer(answer) => {
                if matches!(answer, Answer::Failed(_)) {
                    outcome = Outcome::SomeFailed;
                }
                output.answer(number, &answer);
            }
        }
    }
    thread::sleep(LINGER);
    Ok(outcome)
}

/// Where and how answers and pushes are printed. Each is one `println!`/`eprintln!`, so the
/// two threads never mix their lines.
#[derive(Clone, Copy)]
struct Output {
    json: bool,
}

impl Output {
    fn answer(self, line: usize, answer: &Answer) {
        if self.json {
            println!("{}", json::answer(line, answer));
        } else if let Answer::Failed(failure) = answer {
            eprintln!("line {line}: error: {}", failure.message());
        } else {
            println!("{}", answer.describe());
        }
    }

    fn incoming(self, event: &Unasked) {
        match event {
            Unasked::Service(event) if self.json => println!("{}", json::incoming(event)),
            Unasked::Notice(text) if self.json => {
                println!("{}", serde_json::json!({ "type": "notice", "text": text }));
            }
            // Trouble and the client's own notices about the service go with the errors; the
            // program's notices print like pushed messages.
            Unasked::Service(
                Incoming::Trouble(_) | Incoming::Unavailable(_) | Incoming::Available,
            ) => eprintln!("{}", event.describe()),
            Unasked::Service(_) | Unasked::Notice(_) => println!("{}", event.describe()),
        }
    }
}
