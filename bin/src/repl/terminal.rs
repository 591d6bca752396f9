//! The client at the keyboard (rustyline): line editing, history kept across runs in the
//! user's data directory, passwords masked as they are typed and never in the history,
//! `4|` confirmed, and messages pushed by the service printed above the line being typed.
//!
//! Why rustyline 19 (and not reedline) is in NOTEBOOK.md, "The client at the keyboard and in
//! scripts": its external printer used to hold pasted text back until the next key press.

use super::{carries_password, Dispatch, Line, Outcome, Step, Unasked};
use chat_core::chat::Op;
use chat_core::command::Command;
use chat_core::password::Password;
use chat_core::wire::PasswordAction;
use rustyline::config::Configurer;
use rustyline::error::ReadlineError;
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::history::FileHistory;
use rustyline::{ColorMode, Completer, Editor, ExternalPrinter, Helper, Hinter, Validator};
use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::thread;
use unicode_width::UnicodeWidthChar;

const PROMPT: &str = "> ";
/// Entries kept in the history file.
const HISTORY_SIZE: usize = 1000;

type ChatEditor = Editor<Masking, FileHistory>;

/// At the keyboard a failed command is shown and done with: the run succeeds.
pub(super) fn run(dispatch: &mut Dispatch, incoming: Receiver<Unasked>) -> Result<Outcome, String> {
    let mut editor = editor().map_err(|e| format!("line editor: {e}"))?;
    let history = History::open(&mut editor);
    show_incoming(&mut editor, incoming);
    let mut interrupted = false;
    loop {
        let text = match editor.readline(PROMPT) {
            Ok(text) => text,
            Err(ReadlineError::Interrupted) if !interrupted => {
                interrupted = true;
                println!("(Ctrl-C again, Ctrl-D or `quit` to leave)");
                continue;
            }
            Err(ReadlineError::Interrupted | ReadlineError::Eof) => {
                return Ok(Outcome::AllSucceeded)
            }
            Err(ReadlineError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                println!("error: the line is not UTF-8 text");
                continue;
            }
            Err(e) => return Err(e.to_string()),
        };
        interrupted = false;
        // A paste of several lines arrives as one text: each line is a command.
        for line in text.lines() {
            match one_line(dispatch, &mut editor, &history, line)? {
                Step::Blank => {}
                Step::Quit => return Ok(Outcome::AllSucceeded),
                Step::Answer(answer) => println!("{}", answer.describe()),
            }
        }
    }
}

/// Prints what the service pushes, above the line being typed.
fn show_incoming(editor: &mut ChatEditor, incoming: Receiver<Unasked>) {
    let mut print: Box<dyn FnMut(String) -> bool + Send> = match editor.create_external_printer() {
        Ok(mut printer) => Box::new(move |text| printer.print(text).is_ok()),
        // A terminal rustyline does not drive (`TERM=dumb`): plain lines.
        Err(_) => Box::new(|text| {
            print!("{text}");
            true
        }),
    };
    thread::spawn(move || {
        for event in incoming {
            // With its own line end: written while no prompt is shown (a request is running),
            // the text goes out as it is.
            if !print(format!("{}\n", event.describe())) {
                return;
            }
        }
    });
}

fn editor() -> rustyline::Result<ChatEditor> {
    let mut editor = ChatEditor::new()?;
    editor.set_max_history_size(HISTORY_SIZE)?;
    editor.set_history_ignore_dups(true)?;
    // As in bash: a line typed with a leading space stays out of the history.
    editor.set_history_ignore_space(true);
    editor.set_auto_add_history(false);
    editor.set_helper(Some(Masking::default()));
    // The masking is done by the highlighter, which rustyline skips where it thinks the
    // terminal has no colours.
    editor.set_color_mode(ColorMode::Forced);
    Ok(editor)
}

/// Runs one line typed at the prompt, asking for what a person may have left out: the
/// password of `1|<user>|` and `2|<user>|`, and a confirmation for `4|`.
fn one_line(
    dispatch: &mut Dispatch,
    editor: &mut ChatEditor,
    history: &History,
    line: &str,
) -> Result<Step, String> {
    let sorted = dispatch.sort(line);
    match &sorted {
        Line::Command(parsed) if carries_password(parsed) => {}
        Line::Blank => {}
        _ => history.add(editor, line),
    }
    let command = match sorted {
        Line::Blank => return Ok(Step::Blank),
        Line::Extension(_) => return Ok(dispatch.line(line)),
        Line::Command(Err(_)) => match password_left_out(line) {
            Some((action, user)) => match ask_password(editor, action, &user)? {
                Some(password) => Command::WithPassword {
                    action,
                    user,
                    password,
                },
                None => return Ok(Step::Blank),
            },
            None => return Ok(dispatch.line(line)),
        },
        Line::Command(Ok(Command::Op(Op::Delete))) => {
            if !confirm(
                editor,
                "delete the account you are logged into, and its waiting messages? [y/N] ",
            )? {
                println!("not deleted");
                return Ok(Step::Blank);
            }
            Command::Op(Op::Delete)
        }
        Line::Command(Ok(command)) => command,
    };
    Ok(dispatch.command(command))
}

/// `1|<user>|` or `2|<user>|` with nothing after the second '|': the action and the user,
/// once the line without its last '|' is a valid create or login.
fn password_left_out(line: &str) -> Option<(PasswordAction, String)> {
    let without_bar = line.trim_end().strip_suffix('|')?;
    match chat_core::command::parse(without_bar) {
        Ok(Command::Op(Op::Create { user })) => Some((PasswordAction::Create, user)),
        Ok(Command::Op(Op::Login { user })) => Some((PasswordAction::Login, user)),
        _ => None,
    }
}

/// Reads a password in a masked field (twice for a new account); `None` if the person
/// gave up (Ctrl-C, an empty password, two different ones).
fn ask_password(
    editor: &mut ChatEditor,
    action: PasswordAction,
    user: &str,
) -> Result<Option<Password>, String> {
    let Some(password) = masked(editor, &format!("password for {user}: "))? else {
        return Ok(None);
    };
    if password.is_empty() {
        println!("no password given: nothing sent");
        return Ok(None);
    }
    if action == PasswordAction::Create {
        let Some(again) = masked(editor, "the same password again: ")? else {
            return Ok(None);
        };
        if again != password {
            println!("the two passwords differ: account not created");
            return Ok(None);
        }
    }
    Ok(Some(Password::new(password)))
}

/// One line read with every character shown as '*'.
fn masked(editor: &mut ChatEditor, prompt: &str) -> Result<Option<String>, String> {
    // On these terminals rustyline reads a plain line that the terminal echoes.
    if std::env::var("TERM").is_ok_and(|t| matches!(t.as_str(), "dumb" | "cons25" | "emacs")) {
        println!("this terminal cannot hide a password: nothing sent");
        return Ok(None);
    }
    set_mask_all(editor, true);
    let read = editor.readline(prompt);
    set_mask_all(editor, false);
    match read {
        // Trailing whitespace is no part of a password typed on the command line either.
        Ok(text) => Ok(Some(text.trim_end().to_owned())),
        Err(ReadlineError::Interrupted | ReadlineError::Eof) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

fn set_mask_all(editor: &mut ChatEditor, on: bool) {
    if let Some(helper) = editor.helper_mut() {
        helper.mask_all = on;
    }
}

/// Asks a yes/no question; only `y` or `yes` is a yes.
fn confirm(editor: &mut ChatEditor, question: &str) -> Result<bool, String> {
    match editor.readline(question) {
        Ok(answer) => Ok(matches!(
            answer.trim().to_ascii_lowercase().as_str(),
            "y" | "yes"
        )),
        Err(ReadlineError::Interrupted | ReadlineError::Eof) => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

/// The history file, `<data dir>/chat-client/history.txt` (`~/.local/share` on Linux, or
/// `$XDG_DATA_HOME`), readable by its owner only. Without one, the history lasts one run.
struct History {
    path: Option<PathBuf>,
}

impl History {
    fn open(editor: &mut ChatEditor) -> History {
        let Some(dirs) = directories::ProjectDirs::from("", "", "chat-client") else {
            return History { path: None };
        };
        let dir = dirs.data_dir();
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("history not kept: cannot create {}: {e}", dir.display());
            return History { path: None };
        }
        let path = dir.join("history.txt");
        if path.exists() {
            if let Err(e) = editor.load_history(&path) {
                eprintln!("history not kept: cannot read {}: {e}", path.display());
                return History { path: None };
            }
        }
        History { path: Some(path) }
    }

    /// Adds a line to the history and at once to the file: a client killed later keeps it.
    fn add(&self, editor: &mut ChatEditor, line: &str) {
        if editor.add_history_entry(line).unwrap_or(false) {
            if let Some(path) = &self.path {
                if let Err(e) = editor.append_history(path) {
                    eprintln!("cannot write the history to {}: {e}", path.display());
                }
            }
        }
    }
}

/// Shows a password as '*'s: the part after the second '|' of `1|<user>|<password>` and
/// `2|<user>|<password>` as it is typed, or the whole line at a password prompt.
#[derive(Completer, Helper, Hinter, Validator, Default)]
struct Masking {
    mask_all: bool,
}

impl Masking {
    /// The byte offset where the password starts in one line, if it has one.
    fn password_start(line: &str) -> Option<usize> {
        let (opcode, rest) = line.split_once('|')?;
        if !matches!(opcode.trim(), "1" | "2") {
            return None;
        }
        let user_end = rest.find('|')?;
        Some(opcode.len() + 1 + user_end + 1)
    }

    fn mask(&self, text: &str) -> Option<String> {
        if self.mask_all {
            return Some(stars(text));
        }
        let mut any = false;
        let mut shown = String::with_capacity(text.len());
        for line in text.split_inclusive('\n') {
            match Self::password_start(line) {
                Some(start) => {
                    any = true;
                    let (clear, secret) = line.split_at(start);
                    shown.push_str(clear);
                    shown.push_str(&stars(secret.trim_end_matches('\n')));
                    if secret.ends_with('\n') {
                        shown.push('\n');
                    }
                }
                None => shown.push_str(line),
            }
        }
        any.then_some(shown)
    }
}

/// As many '*' as the text is wide, so that the cursor stays where rustyline puts it.
fn stars(text: &str) -> String {
    let width: usize = text.chars().map(|c| c.width().unwrap_or(0)).sum();
    "*".repeat(width)
}

impl Highlighter for Masking {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        match self.mask(line) {
            Some(masked) => Cow::Owned(masked),
            None => Cow::Borrowed(line),
        }
    }

    /// Whether the line must be redrawn through [`Self::highlight`]: always while it holds
    /// a password, or rustyline would echo the typed character as it is.
    fn highlight_char(&self, line: &str, _pos: usize, kind: CmdKind) -> bool {
        kind != CmdKind::MoveCursor && self.mask(line).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_as_typed() {
        let masking = Masking::default();
        assert_eq!(masking.highlight("2|bob|", 0), "2|bob|");
        assert_eq!(masking.highlight("2|bob|s3", 0), "2|bob|**");
        assert_eq!(
            masking.highlight(" 1 | bob |pass word", 0),
            " 1 | bob |*********"
        );
        assert_eq!(masking.highlight("5|bob|hi", 0), "5|bob|hi");
        assert_eq!(masking.highlight("2|bob", 0), "2|bob");
        assert_eq!(
            masking.highlight("6|\n2|bob|pw\n5|bob|x", 0),
            "6|\n2|bob|**\n5|bob|x"
        );
        // A wide character takes two columns, so two stars.
        assert_eq!(masking.highlight("2|bob|日x", 0), "2|bob|***");
        let all = Masking { mask_all: true };
        assert_eq!(all.highlight("secret", 0), "******");
    }

    #[test]
    fn a_password_left_out_is_asked_for() {
        assert_eq!(
            password_left_out("2|bob|"),
            Some((PasswordAction::Login, "bob".to_owned()))
        );
        assert_eq!(
            password_left_out(" 1 | bob | "),
            Some((PasswordAction::Create, "bob".to_owned()))
        );
        assert_eq!(password_left_out("2||"), None);
        assert_eq!(password_left_out("5|bob|"), None);
        assert_eq!(password_left_out("2|bob"), None);
    }
}
