//! What the client shows while a request waits for a primary: one status line on stderr,
//! redrawn in place in a terminal and cleared when the answer comes (printed once when
//! stderr is not a terminal), and Ctrl-C to stop waiting. The session in `chat_core::client`
//! says what was tried and why; this module only words and draws it.

use chat_net::client::{Canceller, Incoming, WaitDisplay, Waiting};
use signal_hook::consts::SIGINT;
use signal_hook::iterator::Signals;
use std::io::{IsTerminal, Write};
use std::thread;
use std::time::{Duration, Instant};

/// A second Ctrl-C within this time of one that cancelled a wait quits.
const SECOND_CTRL_C: Duration = Duration::from_secs(3);

/// "waiting for a primary: replica 0 down (refused), replica 1 not primary; retrying…"
pub fn status_line(waiting: &Waiting) -> String {
    if waiting.none_serving() {
        format!("no replica is serving ({waiting}); retrying…")
    } else {
        format!("waiting for a primary: {waiting}; retrying…")
    }
}

/// The line for a change of availability noticed while the user idles, if `event` is one.
pub fn describe_availability(event: &Incoming) -> Option<String> {
    match event {
        Incoming::Unavailable(waiting) => {
            Some(format!("no replica is serving; retrying ({waiting})"))
        }
        Incoming::Available => Some("a primary answers again".to_owned()),
        _ => None,
    }
}

/// The status display for `Client::connect_showing`, on stderr.
pub fn display() -> WaitDisplay {
    if std::io::stderr().is_terminal() {
        Box::new(|waiting: Option<&Waiting>| {
            let mut err = std::io::stderr().lock();
            // Carriage return and "erase line": the status stays on one line.
            let _ = match waiting {
                Some(w) => write!(err, "\r\x1b[2K{}", status_line(w)),
                None => write!(err, "\r\x1b[2K"),
            };
            let _ = err.flush();
        })
    } else {
        once_per_wait(|w| eprintln!("{}", status_line(w)))
    }
}

/// The status display of `--json`: a request that waits is told once on stdout, as
/// `{"type":"waiting","status":"..."}` (what was tried and why), like the other objects.
pub fn display_json() -> WaitDisplay {
    once_per_wait(|w| {
        println!(
            "{}",
            serde_json::json!({ "type": "waiting", "status": w.to_string() })
        )
    })
}

/// A display that shows a wait once, when it starts, with `show`.
fn once_per_wait(show: impl Fn(&Waiting) + Send + 'static) -> WaitDisplay {
    let mut shown = false;
    Box::new(move |waiting: Option<&Waiting>| match waiting {
        Some(w) if !shown => {
            shown = true;
            show(w);
        }
        Some(_) => {}
        None => shown = false,
    })
}

/// Ctrl-C while a request waits cancels the wait; a second Ctrl-C soon after, or one while
/// nothing waits, runs `before_quit` (the demo stops its replicas there) and quits (exit
/// status 130). (At a terminal prompt the line editor takes Ctrl-C itself.)
pub fn cancel_on_ctrl_c(
    canceller: Canceller,
    before_quit: impl Fn() + Send + 'static,
) -> Result<(), String> {
    let mut signals = Signals::new([SIGINT]).map_err(|e| format!("cannot handle Ctrl-C: {e}"))?;
    thread::Builder::new()
        .name("chat-client-ctrl-c".to_owned())
        .spawn(move || {
            let mut cancelled_at: Option<Instant> = None;
            for _ in signals.forever() {
                let again = cancelled_at.is_some_and(|t| t.elapsed() < SECOND_CTRL_C);
                if !again && canceller.cancel() {
                    cancelled_at = Some(Instant::now());
                    continue;
                }
                eprintln!();
                before_quit();
                std::process::exit(130);
            }
        })
        .map(drop)
        .map_err(|e| format!("cannot handle Ctrl-C: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_net::client::Tried;

    #[test]
    fn the_status_line_names_each_replica_and_why() {
        let mut waiting = Waiting {
            since: chat_core::time::Instant(0),
            replicas: vec![
                (0, Some(Tried::Refused)),
                (1, Some(Tried::NotPrimary(None))),
                (2, None),
            ],
            user: true,
            sent: true,
        };
        assert_eq!(
            status_line(&waiting),
            "waiting for a primary: replica 0 down (refused), replica 1 not primary; retrying…"
        );
        waiting.replicas[2].1 = Some(Tried::NoReply);
        assert_eq!(
            status_line(&waiting),
            "no replica is serving (replica 0 down (refused), replica 1 not primary, \
             replica 2 no reply); retrying…"
        );
    }
}
