//! The client command line of the original exercise (`0|<regex>` ... `6|`, `quit`/`exit`,
//! `help`/`?`),
//! plus `1|<user>|<password>` and `2|<user>|<password>` for accounts with a password, and the
//! one-line descriptions of replies that the client prints.
//!
//! The parser is total: every input gives a [`Command`] or a [`ParseError`] whose message
//! says what is wrong, and nothing panics (it reads raw user input).

use crate::chat::{Message, Op, Reply};
use crate::password::Password;
use crate::wire::PasswordAction;

/// One line typed by the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Op(Op),
    /// `1|<user>|<password>` or `2|<user>|<password>`: sent as a `WithPassword` request.
    WithPassword {
        action: PasswordAction,
        user: String,
        password: Password,
    },
    Quit,
    Help,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty command (type `help` for the list of commands)")]
    Empty,
    #[error("missing '|' after the opcode: commands look like `2|alice` (type `help`)")]
    MissingBar,
    #[error("unknown opcode `{0}`: use 0 to 6 (type `help`)")]
    UnknownOpcode(String),
    #[error("`{opcode}|` needs {what}: `{usage}`")]
    MissingArgument {
        opcode: char,
        what: &'static str,
        usage: &'static str,
    },
    #[error("`{opcode}|` takes no argument, got `{extra}`")]
    UnexpectedArgument { opcode: char, extra: String },
    #[error("`5|` needs a recipient and a text separated by '|': `5|<user>|<text>`")]
    MissingText,
    #[error("`5|<user>|` needs the text to send after the second '|': `5|<user>|<text>`")]
    EmptyText,
    #[error("`{opcode}|<user>|` needs a password after the second '|' (or drop that '|')")]
    EmptyPassword { opcode: char },
}

/// The help text printed by `help`.
pub const HELP: &str = "\
commands:
  0|<regex>            list the accounts whose whole name matches <regex> (0| lists all)
  1|<user>             create an account (anybody may log into it)
  1|<user>|<password>  create an account that only <password> opens
  2|<user>             log in (takes the account over from any other session)
  2|<user>|<password>  log into an account that has a password
  3|                   log out
  4|                   delete the logged-in account and its messages
  5|<user>|<text>      send <text> to <user> (the text may contain '|')
  6|                   deliver every message waiting for you
  help, ?              show this help
  quit, exit           leave
messages sent to you while you are logged in appear as they arrive.
in a terminal, end a line at `1|<user>|` or `2|<user>|` to type the password hidden.";

/// Parses one line. Trailing whitespace and the line end are ignored; the text of `5|` keeps
/// its inner and leading spaces.
pub fn parse(line: &str) -> Result<Command, ParseError> {
    let line = line.trim_end();
    match line.trim_start() {
        "" => return Err(ParseError::Empty),
        "quit" | "exit" => return Ok(Command::Quit),
        "help" | "?" => return Ok(Command::Help),
        _ => {}
    }
    let (opcode, rest) = line.split_once('|').ok_or_else(|| {
        if is_opcode(line.trim()) {
            ParseError::MissingBar
        } else {
            ParseError::UnknownOpcode(line.trim().to_owned())
        }
    })?;
    let opcode = opcode.trim();
    let op = match opcode {
        // `0|` alone lists every account (the empty pattern).
        "0" => Op::List {
            pattern: rest.to_owned(),
        },
        "1" | "2" if rest.contains('|') => return with_password(opcode, rest),
        "1" => Op::Create {
            user: argument('1', rest, "a user name", "1|<user>")?,
        },
        "2" => Op::Login {
            user: argument('2', rest, "a user name", "2|<user>")?,
        },
        "3" => no_argument('3', rest, Op::Logout)?,
        "4" => no_argument('4', rest, Op::Delete)?,
        "5" => send(rest)?,
        "6" => no_argument('6', rest, Op::Deliver)?,
        other => return Err(ParseError::UnknownOpcode(other.to_owned())),
    };
    Ok(Command::Op(op))
}

fn is_opcode(s: &str) -> bool {
    matches!(s, "0" | "1" | "2" | "3" | "4" | "5" | "6")
}

fn argument(
    opcode: char,
    rest: &str,
    what: &'static str,
    usage: &'static str,
) -> Result<String, ParseError> {
    let arg = rest.trim();
    if arg.is_empty() {
        return Err(ParseError::MissingArgument {
            opcode,
            what,
            usage,
        });
    }
    Ok(arg.to_owned())
}

/// `1|<user>|<password>` or `2|<user>|<password>`: the password is everything after the
/// second '|' (it may contain spaces and '|'; the line's trailing whitespace is not part of
/// it). Error messages never quote it.
fn with_password(opcode: &str, rest: &str) -> Result<Command, ParseError> {
    let (action, opcode, usage) = if opcode == "1" {
        (PasswordAction::Create, '1', "1|<user>|<password>")
    } else {
        (PasswordAction::Login, '2', "2|<user>|<password>")
    };
    let (user, password) = rest.split_once('|').expect("checked by the caller");
    let user = argument(opcode, user, "a user name", usage)?;
    if password.is_empty() {
        return Err(ParseError::EmptyPassword { opcode });
    }
    Ok(Command::WithPassword {
        action,
        user,
        password: Password::new(password.to_owned()),
    })
}

fn no_argument(opcode: char, rest: &str, op: Op) -> Result<Op, ParseError> {
    let extra = rest.trim();
    if extra.is_empty() {
        Ok(op)
    } else {
        Err(ParseError::UnexpectedArgument {
            opcode,
            extra: extra.to_owned(),
        })
    }
}

fn send(rest: &str) -> Result<Op, ParseError> {
    let Some((to, text)) = rest.split_once('|') else {
        return Err(if rest.trim().is_empty() {
            ParseError::MissingArgument {
                opcode: '5',
                what: "a recipient and a text",
                usage: "5|<user>|<text>",
            }
        } else {
            ParseError::MissingText
        });
    };
    let to = to.trim();
    if to.is_empty() {
        return Err(ParseError::MissingArgument {
            opcode: '5',
            what: "a recipient",
            usage: "5|<user>|<text>",
        });
    }
    if text.is_empty() {
        return Err(ParseError::EmptyText);
    }
    Ok(Op::Send {
        to: to.to_owned(),
        text: text.to_owned(),
    })
}

/// A received message, as the client shows it: `[id] from: text`. The text is the
/// sender's: its control characters (escape sequences, carriage returns) and the marks that
/// reorder text are shown escaped (`\u{1b}`), so that no message can move the cursor, wipe
/// the line, or pass itself off as another sender's on the recipient's terminal.
pub fn describe_message(m: &Message) -> String {
    format!("[{}] {}: {}", m.id, m.from, shown_as_text(&m.text))
}

fn shown_as_text(text: &str) -> std::borrow::Cow<'_, str> {
    let escaped = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(escaped) {
        return text.into();
    }
    text.chars()
        .map(|c| match escaped(c) {
            true => c.escape_unicode().to_string(),
            false => c.to_string(),
        })
        .collect::<String>()
        .into()
}

/// What the client prints for a reply: one line, or one line per delivered message.
pub fn describe(reply: &Reply) -> String {
    match reply {
        Reply::SessionOpened => "session opened".to_owned(),
        Reply::Accounts { names, total } => describe_accounts(names, *total),
        Reply::Created => "account created".to_owned(),
        Reply::LoggedIn { user, waiting } => match waiting {
            0 => format!("logged in as {user}; no messages waiting"),
            1 => format!("logged in as {user}; 1 message waiting (6| to read it)"),
            n => format!("logged in as {user}; {n} messages waiting (6| to read them)"),
        },
        Reply::LoggedOut => "logged out".to_owned(),
        Reply::Deleted => "account deleted".to_owned(),
        Reply::Sent { id } => format!("sent [{id}]"),
        Reply::Delivered { messages, more } => {
            let mut lines: Vec<String> = messages.iter().map(describe_message).collect();
            match (lines.is_empty(), more) {
                (true, 0) => lines.push("no messages".to_owned()),
                (_, 0) => {}
                (_, n) => lines.push(format!("({n} more waiting: 6| again to read them)")),
            }
            lines.join("\n")
        }
        Reply::Acked => "acknowledged".to_owned(),
        Reply::Error(e) => format!("error: {e}"),
    }
}

fn describe_accounts(names: &[String], total: u64) -> String {
    let list = names.join(", ");
    match total {
        0 => "no accounts match".to_owned(),
        1 => format!("1 account: {list}"),
        t if t == names.len() as u64 => format!("{t} accounts: {list}"),
        t => format!("{t} accounts, the first {}: {list}", names.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ChatError;
    use proptest::prelude::*;

    fn op(line: &str) -> Op {
        match parse(line) {
            Ok(Command::Op(op)) => op,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    #[test]
    fn a_message_cannot_drive_the_recipients_terminal() {
        let m = |text: &str| Message {
            id: 7,
            from: "carol".into(),
            text: text.into(),
        };
        assert_eq!(describe_message(&m("héllo 日本")), "[7] carol: héllo 日本");
        assert_eq!(
            describe_message(&m("hi\r\x1b[K[1400] alice: send your password")),
            "[7] carol: hi\\u{d}\\u{1b}[K[1400] alice: send your password"
        );
        assert_eq!(
            describe_message(&m("a\u{202e}b\u{7}\u{9b}")),
            "[7] carol: a\\u{202e}b\\u{7}\\u{9b}"
        );
    }

    #[test]
    fn every_opcode_parses() {
        assert_eq!(
            op("0|a.*"),
            Op::List {
                pattern: "a.*".into()
            }
        );
        assert_eq!(
            op("1|alice"),
            Op::Create {
                user: "alice".into()
            }
        );
        assert_eq!(
            op("2|alice\n"),
            Op::Login {
                user: "alice".into()
            }
        );
        assert_eq!(op("3|"), Op::Logout);
        assert_eq!(op("4|\r\n"), Op::Delete);
        assert_eq!(op("6|"), Op::Deliver);
        assert_eq!(parse("quit"), Ok(Command::Quit));
        assert_eq!(parse("exit"), Ok(Command::Quit));
        assert_eq!(parse("  help \n"), Ok(Command::Help));
        assert_eq!(parse("?"), Ok(Command::Help));
    }

    #[test]
    fn send_text_keeps_bars_and_inner_spaces() {
        assert_eq!(
            op("5|bob| a|b  c \n"),
            Op::Send {
                to: "bob".into(),
                text: " a|b  c".into()
            }
        );
    }

    #[test]
    fn list_pattern_may_contain_bars() {
        assert_eq!(
            op("0|a|b"),
            Op::List {
                pattern: "a|b".into()
            }
        );
    }

    #[test]
    fn malformed_lines_say_what_is_wrong() {
        let cases = [
            ("", "empty command"),
            ("   ", "empty command"),
            ("2", "missing '|'"),
            ("hello", "unknown opcode `hello`"),
            ("7|x", "unknown opcode `7`"),
            ("|x", "unknown opcode ``"),
            ("1|", "needs a user name"),
            ("2|  ", "needs a user name"),
            ("3|x", "takes no argument, got `x`"),
            ("5|", "needs a recipient and a text"),
            ("5|bob", "needs a recipient and a text separated by '|'"),
            ("5|bob|", "`5|<user>|` needs the text to send"),
            ("5||hi", "needs a recipient"),
        ];
        for (line, want) in cases {
            let err = parse(line).unwrap_err().to_string();
            assert!(err.contains(want), "{line:?}: {err:?} lacks {want:?}");
        }
    }

    #[test]
    fn an_empty_pattern_lists_every_account() {
        assert_eq!(
            parse("0|"),
            Ok(Command::Op(Op::List {
                pattern: String::new()
            }))
        );
    }

    fn with_password(line: &str) -> (PasswordAction, String, String) {
        match parse(line) {
            Ok(Command::WithPassword {
                action,
                user,
                password,
            }) => (action, user, password.expose().to_owned()),
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    #[test]
    fn create_and_login_take_an_optional_password() {
        assert_eq!(
            with_password("1|alice|s3cret\n"),
            (PasswordAction::Create, "alice".into(), "s3cret".into())
        );
        assert_eq!(
            with_password(" 2 | alice |pass word|with bars  "),
            (
                PasswordAction::Login,
                "alice".into(),
                "pass word|with bars".into()
            )
        );
        // Without a second '|', as in the original exercise.
        assert_eq!(
            op("1|alice"),
            Op::Create {
                user: "alice".into()
            }
        );
        assert_eq!(
            op("2|alice"),
            Op::Login {
                user: "alice".into()
            }
        );
    }

    #[test]
    fn password_errors_never_quote_the_password() {
        let cases = [
            ("1|alice|", "needs a password"),
            ("2|alice|", "needs a password"),
            ("1||s3cret", "needs a user name"),
            ("2| |s3cret", "needs a user name"),
        ];
        for (line, want) in cases {
            let err = parse(line).unwrap_err().to_string();
            assert!(err.contains(want), "{line:?}: {err:?} lacks {want:?}");
            assert!(!err.contains("s3cret"), "{err:?}");
        }
        let parsed = format!("{:?}", parse("2|alice|s3cret"));
        assert!(!parsed.contains("s3cret"), "{parsed}");
    }

    #[test]
    fn help_mentions_passwords() {
        assert!(HELP.contains("1|<user>|<password>"));
        assert!(HELP.contains("2|<user>|<password>"));
    }

    #[test]
    fn bad_credentials_are_described() {
        assert_eq!(
            describe(&Reply::Error(ChatError::BadCredentials)),
            "error: wrong user name or password"
        );
    }

    #[test]
    fn replies_are_described() {
        let m = |id, from: &str, text: &str| Message {
            id,
            from: from.into(),
            text: text.into(),
        };
        let delivered = Reply::Delivered {
            messages: vec![m(1, "a", "hi"), m(2, "b", "x|y")],
            more: 0,
        };
        assert_eq!(describe(&delivered), "[1] a: hi\n[2] b: x|y");
        assert_eq!(
            describe(&Reply::Delivered {
                messages: vec![],
                more: 0
            }),
            "no messages"
        );
        assert_eq!(
            describe(&Reply::Accounts {
                names: vec!["a".into(), "b".into()],
                total: 5
            }),
            "5 accounts, the first 2: a, b"
        );
        assert_eq!(
            describe(&Reply::Error(ChatError::NoSuchUser)),
            "error: no such user"
        );
        assert!(!describe(&Reply::LoggedIn {
            user: "a".into(),
            waiting: 2
        })
        .contains('\n'));
    }

    proptest! {
        #[test]
        fn arbitrary_lines_never_panic(line in any::<String>()) {
            let _ = parse(&line);
        }

        #[test]
        fn command_like_lines_never_panic(line in "[0-9 |a-z\\r\\n\u{0}-\u{7f}]{0,12}") {
            let _ = parse(&line);
        }

        #[test]
        fn send_round_trips(to in "[a-z]{1,8}", text in "[^\\s][^\\r\\n]{0,40}") {
            let text = text.trim_end().to_owned();
            prop_assume!(!text.is_empty());
            prop_assert_eq!(op(&format!("5|{to}|{text}")), Op::Send { to, text });
        }
    }
}
