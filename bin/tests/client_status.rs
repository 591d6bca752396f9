//! `chat-client` never hangs silently: with too few replicas to serve, a request shows a
//! status line within a second saying what each replica did, and the client carries on when
//! the replicas come back. Real processes: `chat-server` replicas killed with `kill -9`.

#[allow(dead_code)]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};
use support::Cluster;

const WAIT: Duration = Duration::from_secs(20);

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn lines_of(stream: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
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

/// The real chat-client on the cluster, every stream piped.
fn piped_client(cluster: &Cluster) -> KillOnDrop {
    KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_chat-client"))
            .arg("--config")
            .arg(&cluster.config_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chat-client"),
    )
}

#[test]
fn a_request_without_a_primary_says_why_and_completes_when_replicas_return() {
    let mut cluster = Cluster::start();
    let mut child = piped_client(&cluster);
    let child = &mut child.0;
    let mut stdin = child.stdin.take().unwrap();
    let out = lines_of(child.stdout.take().unwrap());
    let err = lines_of(child.stderr.take().unwrap());

    writeln!(stdin, "1|erin").unwrap();
    expect_line(&out, "account created");

    // All three down (with two down, the third serves alone: issue 8).
    cluster.kill(0);
    cluster.kill(1);
    cluster.kill(2);
    let asked = Instant::now();
    writeln!(stdin, "2|erin").unwrap();
    let status = err
        .recv_timeout(WAIT)
        .expect("a status line while no primary answers");
    let after = asked.elapsed();
    println!("status after {after:?}: {status}");
    assert!(
        status.starts_with("waiting for a primary: ")
            || status.starts_with("no replica is serving ("),
        "{status}"
    );
    assert!(status.ends_with("; retrying…"), "{status}");
    assert!(status.contains("replica "), "{status}");
    // 0.5 s by design; the bound leaves room for a loaded machine.
    assert!(after < Duration::from_secs(2), "status after {after:?}");

    // All back: they re-form the last view (rule 8) and serve again.
    cluster.start_replica(0);
    cluster.start_replica(1);
    cluster.start_replica(2);
    expect_line(&out, "logged in as erin; no messages waiting");
    drop(stdin);
    assert!(
        child.wait().expect("chat-client exits").success(),
        "chat-client exits 0 at end of input"
    );
}

#[test]
fn ctrl_c_cancels_the_wait_and_a_second_one_quits() {
    let mut cluster = Cluster::start();
    let mut child = piped_client(&cluster);
    let child = &mut child.0;
    let mut stdin = child.stdin.take().unwrap();
    let out = lines_of(child.stdout.take().unwrap());
    let err = lines_of(child.stderr.take().unwrap());
    writeln!(stdin, "1|finn").unwrap();
    expect_line(&out, "account created");

    cluster.kill_all();
    writeln!(stdin, "2|finn").unwrap();
    err.recv_timeout(WAIT).expect("a status line");
    let ctrl_c = || {
        let status = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .expect("kill -INT");
        assert!(status.success());
    };
    ctrl_c();
    // "not sent" when the dead connection was noticed before the write, else "it may have
    // been applied" (the write went into a socket the replica's kill had not reset yet).
    // (Errors go to stderr, after the status line, as "line N: error: ...".)
    let line = loop {
        let line = err
            .recv_timeout(WAIT)
            .expect("an answer to the cancelled request");
        if line.contains("error: ") {
            break line;
        }
    };
    assert!(
        line.ends_with("error: cancelled; not sent")
            || line.ends_with("error: cancelled; it may have been applied"),
        "{line}"
    );
    ctrl_c();
    let deadline = Instant::now() + WAIT;
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        assert!(Instant::now() < deadline, "a second Ctrl-C did not quit");
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(130));
}
