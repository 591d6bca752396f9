//! The real `chat-client` program against a real local cluster: at the keyboard (in a
//! pseudo-terminal, as a person types or pastes) and in scripts (pipes, one-shot commands,
//! `--json`, exit statuses).

#[allow(dead_code)] // the harness serves several test programs
mod support;

use chat_core::chat::{Op, Reply};
use chat_net::client::Client;
use rexpect::process::WaitStatus;
use rexpect::session::PtySession;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};
use support::Cluster;

const WAIT: Duration = Duration::from_secs(15);

fn ok(client: &Client, op: Op) -> Reply {
    let reply = client
        .request(op.clone())
        .unwrap_or_else(|e| panic!("{op:?}: {e}"));
    assert!(!matches!(reply, Reply::Error(_)), "{op:?} -> {reply:?}");
    reply
}

fn create_and_login(client: &Client, user: &str) {
    ok(client, Op::Create { user: user.into() });
    ok(client, Op::Login { user: user.into() });
}

fn send(client: &Client, to: &str, text: &str) -> u64 {
    match ok(
        client,
        Op::Send {
            to: to.into(),
            text: text.into(),
        },
    ) {
        Reply::Sent { id } => id,
        other => panic!("send: {other:?}"),
    }
}

/// `chat-client` with the cluster's configuration and its history under `data_home`.
fn chat_client(cluster: &Cluster, data_home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chat-client"));
    command
        .arg("--config")
        .arg(&cluster.config_path)
        .env("XDG_DATA_HOME", data_home)
        .env("TERM", "xterm");
    command
}

// ---------------------------------------------------------------------------------------
// At the keyboard: a pseudo-terminal.

/// `chat-client` in a pseudo-terminal, its output without colour or cursor codes.
fn at_keyboard(cluster: &Cluster, data_home: &Path) -> PtySession {
    let options = rexpect::reader::Options::new()
        .timeout_ms(Some(WAIT.as_millis() as u64))
        .strip_ansi_escape_codes(true);
    let mut session = rexpect::spawn_with_options(chat_client(cluster, data_home), options)
        .expect("start chat-client in a pseudo-terminal");
    session.exp_string("`quit` or Ctrl-D to leave").unwrap();
    prompt(&mut session);
    session
}

/// Waits for the prompt: every line typed below is sent only once the client waits for it.
fn prompt(session: &mut PtySession) {
    session.exp_string("> ").unwrap();
}

/// Types a whole line, Enter included, in one write: what a paste or `tmux send-keys` does.
fn paste(session: &mut PtySession, line: &str) {
    session.send(&format!("{line}\r")).unwrap();
    session.flush().unwrap();
}

/// The output up to `want`, which must come within `WAIT` without another key pressed.
fn expect(session: &mut PtySession, want: &str) -> String {
    session
        .exp_string(want)
        .unwrap_or_else(|e| panic!("waiting for {want:?}: {e}"))
}

fn wait_for_exit(session: &mut PtySession) {
    session.exp_eof().unwrap();
    let status = session.process().wait().unwrap();
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
}

#[test]
fn at_the_keyboard_pasted_lines_run_at_once_while_messages_arrive() {
    let cluster = Cluster::start();
    let home = tempfile::tempdir().unwrap();
    let (alice, _) = cluster.client();
    create_and_login(&alice, "alice");
    ok(
        &alice,
        Op::Create {
            user: "dave".into(),
        },
    );
    let mut dave = at_keyboard(&cluster, home.path());

    paste(&mut dave, "2|dave");
    expect(&mut dave, "logged in as dave; no messages waiting");
    prompt(&mut dave);
    // A message pushed while the prompt waits appears above it.
    let id = send(&alice, "dave", "are you there?");
    expect(&mut dave, &format!("[{id}] alice: are you there?"));
    prompt(&mut dave);

    // The whole line comes in one read; before rustyline 19 only its first character was
    // shown, and the rest (Enter included) waited for the next key press.
    paste(&mut dave, "5|alice|pasted in one go");
    expect(&mut dave, "5|alice|pasted in one go");
    expect(&mut dave, "sent [");

    // Two lines pasted at once: both run, in order.
    paste(&mut dave, "0|a.*\r0|d.*");
    expect(&mut dave, "1 account: alice");
    expect(&mut dave, "1 account: dave");

    paste(&mut dave, "?");
    expect(&mut dave, "quit, exit");
    // `4|` asks first; anything but y/yes keeps the account.
    paste(&mut dave, "4|");
    expect(&mut dave, "[y/N]");
    paste(&mut dave, "n");
    expect(&mut dave, "not deleted");
    paste(&mut dave, "4|");
    expect(&mut dave, "[y/N]");
    paste(&mut dave, "yes");
    expect(&mut dave, "account deleted");
    paste(&mut dave, "exit");
    wait_for_exit(&mut dave);
}

#[test]
fn at_the_keyboard_passwords_are_masked_and_kept_out_of_the_history_that_persists() {
    let cluster = Cluster::start();
    let home = tempfile::tempdir().unwrap();
    let mut erin = at_keyboard(&cluster, home.path());

    // `1|erin|` asks for the password twice, in a masked field.
    paste(&mut erin, "1|erin|");
    expect(&mut erin, "password for erin: ");
    paste(&mut erin, "s3cret");
    let shown = expect(&mut erin, "the same password again: ");
    paste(&mut erin, "s3cret");
    let shown = shown + &expect(&mut erin, "account created");
    // Typed on the command line, the password is masked too.
    paste(&mut erin, "2|erin|s3cret");
    let shown = shown + &expect(&mut erin, "logged in as erin");
    assert!(!shown.contains("s3cret"), "password shown: {shown:?}");
    assert!(shown.contains("2|erin|******"), "{shown:?}");
    // A wrong password is refused.
    paste(&mut erin, "2|erin|");
    expect(&mut erin, "password for erin: ");
    paste(&mut erin, "wrong");
    expect(&mut erin, "wrong user name or password");
    paste(&mut erin, "0|e.*");
    expect(&mut erin, "1 account: erin");
    paste(&mut erin, "quit");
    wait_for_exit(&mut erin);

    let history = std::fs::read_to_string(home.path().join("chat-client/history.txt")).unwrap();
    assert!(!history.contains("s3cret"), "{history:?}");
    assert!(!history.contains("wrong"), "{history:?}");
    assert!(history.contains("1|erin|\n"), "{history:?}");
    assert!(history.contains("0|e.*\n"), "{history:?}");

    // The next run starts with the history: Up twice brings back the line before `quit`.
    let mut again = at_keyboard(&cluster, home.path());
    again.send("\x1b[A\x1b[A").unwrap();
    again.flush().unwrap();
    expect(&mut again, "0|e.*");
    paste(&mut again, "");
    expect(&mut again, "1 account: erin");
    // Ctrl-C once says how to leave; twice leaves.
    again.send_control('c').unwrap();
    expect(&mut again, "Ctrl-C again");
    prompt(&mut again);
    again.send_control('c').unwrap();
    wait_for_exit(&mut again);
}

// ---------------------------------------------------------------------------------------
// In scripts: pipes and command-line commands.

/// Reads a child's output lines on a thread.
fn lines_of(output: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn expect_line(lines: &Receiver<String>, want: &str) {
    match lines.recv_timeout(WAIT) {
        Ok(line) => assert_eq!(line, want),
        Err(e) => panic!("chat-client printed nothing for {want:?}: {e}"),
    }
}

/// The piped `chat-client`, killed if the test ends before it does.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_with_deadline(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "chat-client did not exit");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn piped_replies_go_to_stdout_failures_to_stderr_and_set_the_exit_status() {
    let cluster = Cluster::start();
    let home = tempfile::tempdir().unwrap();
    let mut child = KillOnDrop(
        chat_client(&cluster, home.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chat-client"),
    );
    let child = &mut child.0;
    let mut stdin = child.stdin.take().unwrap();
    let lines = lines_of(child.stdout.take().unwrap());
    let errors = lines_of(child.stderr.take().unwrap());

    stdin.write_all(b"1|dave\n2|dave\n\n9|x\n").unwrap();
    // A line that is not UTF-8 fails alone; the next one runs.
    stdin.write_all(b"5|dave|caf\xe9\n5|dave\n0|d.*\n").unwrap();
    expect_line(&lines, "account created");
    expect_line(&lines, "logged in as dave; no messages waiting");
    expect_line(
        &errors,
        "line 4: error: unknown opcode `9`: use 0 to 6 (type `help`)",
    );
    expect_line(&errors, "line 5: error: the line is not UTF-8 text");
    expect_line(
        &errors,
        "line 6: error: `5|` needs a recipient and a text separated by '|': `5|<user>|<text>`",
    );
    expect_line(&lines, "1 account: dave");

    // Pushed messages come without being asked.
    let (alice, _) = cluster.client();
    create_and_login(&alice, "alice");
    let id = send(&alice, "dave", "hi | dave");
    expect_line(&lines, &format!("[{id}] alice: hi | dave"));

    writeln!(stdin, "5|alice|hi back\n6|").unwrap();
    let line = lines.recv_timeout(WAIT).expect("reply to 5|");
    assert!(line.starts_with("sent ["), "{line}");
    expect_line(&lines, "no messages");
    drop(stdin);
    let status = wait_with_deadline(child);
    assert_eq!(status.code(), Some(1), "a command failed");
    assert!(errors.try_recv().is_err(), "nothing more on stderr");
}

/// Runs `chat-client` with these arguments and no input.
fn run(cluster: &Cluster, args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let child = chat_client(cluster, home.path())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chat-client");
    let mut child = KillOnDrop(child);
    wait_with_deadline(&mut child.0);
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Output {
        status: child.0.wait().unwrap(),
        stdout: stdout.into_bytes(),
        stderr: stderr.into_bytes(),
    }
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap()
}

#[test]
fn one_shot_commands_and_json_lines() {
    let cluster = Cluster::start();

    let out = run(&cluster, &["-c", "1|fay", "-c", "2|fay", "-c", "0|f.*"]);
    assert_eq!(
        text(&out.stdout),
        "account created\nlogged in as fay; no messages waiting\n1 account: fay\n"
    );
    assert_eq!(text(&out.stderr), "");
    assert_eq!(out.status.code(), Some(0));

    let out = run(&cluster, &["--", "1|fay", "0|"]);
    assert_eq!(text(&out.stdout), "1 account: fay\n");
    assert_eq!(
        text(&out.stderr),
        "line 1: error: user name already taken\n"
    );
    assert_eq!(out.status.code(), Some(1));

    // Usage errors: status 2.
    let out = run(&cluster, &["-c", "0|", "--", "0|"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = run(&cluster, &["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // --json: one object per reply (failures too, with ok false)...
    let (gus, _) = cluster.client();
    create_and_login(&gus, "gus");
    let queued = send(&gus, "fay", "to \"fay\"");
    let out = run(
        &cluster,
        &["--json", "--", "2|fay", "5|nobody|x", "6|", "0|g.*", "0|("],
    );
    let replies: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect();
    assert_eq!(replies.len(), 5, "{replies:#?}");
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply["type"], "reply", "{reply}");
        assert_eq!(reply["line"], i + 1, "{reply}");
    }
    assert_eq!(replies[0]["reply"], "logged_in");
    assert_eq!(replies[0]["user"], "fay");
    assert_eq!(replies[0]["waiting"], 1);
    assert_eq!(replies[1]["ok"], false);
    assert_eq!(replies[1]["error"], "no_such_user");
    assert_eq!(replies[1]["message"], "no such user");
    assert_eq!(replies[2]["reply"], "delivered");
    assert_eq!(
        replies[2]["messages"],
        serde_json::json!([{ "id": queued, "from": "gus", "text": "to \"fay\"" }])
    );
    assert_eq!(replies[2]["more"], 0);
    assert_eq!(replies[3]["names"], serde_json::json!(["gus"]));
    assert_eq!(replies[4]["error"], "bad_pattern");
    assert_eq!(text(&out.stderr), "");
    assert_eq!(out.status.code(), Some(1));

    // ... and one per pushed message.
    let home = tempfile::tempdir().unwrap();
    let mut child = KillOnDrop(
        chat_client(&cluster, home.path())
            .arg("--json")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chat-client"),
    );
    let child = &mut child.0;
    let mut stdin = child.stdin.take().unwrap();
    let lines = lines_of(child.stdout.take().unwrap());
    writeln!(stdin, "2|fay").unwrap();
    expect_line(
        &lines,
        r#"{"line":1,"ok":true,"reply":"logged_in","type":"reply","user":"fay","waiting":0}"#,
    );
    let id = send(&gus, "fay", "live");
    expect_line(
        &lines,
        &format!(r#"{{"from":"gus","id":{id},"text":"live","type":"message"}}"#),
    );
    drop(stdin);
    assert_eq!(wait_with_deadline(child).code(), Some(0));
}
