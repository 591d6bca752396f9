//! What an operator sees, on the real programs: one process per data directory (a second
//! `chat-server` or `chat demo` on the same folder is refused at once), `chat-admin status`
//! (summary line, `--json`, exit status), the metrics endpoint, and the demo's fault
//! commands driven through a pipe.

use chat_bin::process::{local_replicas, ServerProcess};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// A configuration of `n` replicas on free local ports, fast timing, data under `dir`.
fn write_config(dir: &Path, n: usize, extra: &str) -> std::path::PathBuf {
    let mut text = local_replicas(n).expect("free ports");
    text += &format!(
        "data_dir: {}\nheartbeat_interval_ms: 50\nelection_timeout_ms: 300\n{extra}",
        dir.join("data").display()
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn server(config: &Path, id: u8, log: &Path) -> ServerProcess {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chat-server"));
    command
        .arg("--config")
        .arg(config)
        .arg("--id")
        .arg(id.to_string());
    ServerProcess::spawn(command, log).expect("start chat-server")
}

fn admin(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chat-admin"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run chat-admin")
}

/// Runs `chat-admin status` until its exit status is `code` (at most 20 s).
fn status_until(config: &Path, code: i32) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = admin(config, &["status"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.code() == Some(code) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "status never exited {code}:\n{text}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_second_server_on_a_data_directory_in_use_exits_at_once_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 1, "");
    let first = server(&config, 0, &dir.path().join("first.log"));
    status_until(&config, 0);
    let started = Instant::now();
    let second = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .arg("--config")
        .arg(&config)
        .args(["--id", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    let want = format!(
        "data directory {} is in use by process {}",
        dir.path().join("data/replica-0").display(),
        first.pid()
    );
    assert!(stderr.contains(&want), "{stderr}");
    assert!(
        !stderr.contains("storage opened"),
        "read nothing before the lock: {stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn admin_status_says_whether_the_cluster_serves_and_exits_accordingly() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3, "");
    let mut servers: Vec<ServerProcess> = (0..3)
        .map(|id| server(&config, id, &dir.path().join(format!("r{id}.log"))))
        .collect();
    let text = status_until(&config, 0);
    let summary = text.lines().last().unwrap();
    assert!(
        summary.starts_with("serving: primary ") && summary.ends_with(", 3 of 3 up"),
        "{text}"
    );

    // `--config` anywhere; one JSON object.
    let out = Command::new(env!("CARGO_BIN_EXE_chat-admin"))
        .arg("--config")
        .arg(&config)
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["serving"], true);
    assert_eq!(json["up"], 3);
    assert_eq!(json["replicas"].as_array().unwrap().len(), 3);
    let primary = json["primary"].as_u64().unwrap() as usize;
    assert_eq!(json["replicas"][primary]["role"], "primary");

    // Both backups killed: their refusals are evidence of the crashes, so the primary leaves
    // them out and serves alone (issue 8's two-crash rules). Evidence counts only under a
    // lease from the crashed replica: first wait until the primary holds both.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = admin(&config, &["status", "--json"]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if json["replicas"][primary]["leases"].as_array().map(Vec::len) == Some(2) {
            break;
        }
        assert!(Instant::now() < deadline, "no leases: {json}");
        thread::sleep(Duration::from_millis(50));
    }
    for id in (0..3).filter(|&id| id != primary) {
        servers[id].kill();
    }
    let text = status_until(&config, 0);
    let summary = text.lines().last().unwrap();
    assert!(
        summary.starts_with(&format!("serving: primary {primary}, view "))
            && summary.ends_with(&format!(" (members {primary}), 1 of 3 up")),
        "{text}"
    );
    let out = admin(&config, &["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["serving"], true);
    assert_eq!(json["up"], 1);
    assert_eq!(
        json["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["up"] == false)
            .count(),
        2
    );

    // The last one killed too: nothing answers, and status says so and exits 1.
    servers[primary].kill();
    let text = status_until(&config, 1);
    assert!(
        text.contains("NOT SERVING: no replica answered (0 of 3 up)"),
        "{text}"
    );

    // A configuration that cannot be read is a usage error.
    let out = admin(&dir.path().join("missing.yaml"), &["status"]);
    assert_eq!(out.status.code(), Some(2));
}

/// `GET /metrics` over a plain socket.
fn scrape(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("metrics port");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn metrics_are_served_in_prometheus_text_format() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = write_config(
        dir.path(),
        1,
        &format!("net:\n  metrics_addr: 127.0.0.1:{port}\n"),
    );
    let _server = server(&config, 0, &dir.path().join("r0.log"));
    status_until(&config, 0);
    let loaded = chat_bin::settings::load(Some(&config)).unwrap().config;
    let (client, _incoming) = chat_net::client::Client::connect(&loaded).unwrap();
    client
        .request(chat_core::chat::Op::Create { user: "ann".into() })
        .unwrap();
    client
        .request(chat_core::chat::Op::Create { user: "ann".into() })
        .unwrap();
    client
        .request(chat_core::chat::Op::Create { user: "bob".into() })
        .unwrap();
    client
        .request(chat_core::chat::Op::Login { user: "ann".into() })
        .unwrap();
    // Bob is not logged in: his message waits in his queue.
    client
        .request(chat_core::chat::Op::Send {
            to: "bob".into(),
            text: "hi".into(),
        })
        .unwrap();
    // Queues are sampled every 250 ms.
    std::thread::sleep(Duration::from_millis(400));
    let text = scrape(port);
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
    for want in [
        "chat_requests_total{replica=\"0\",op=\"create\"} 3",
        "chat_reply_errors_total{replica=\"0\",error=\"NameTaken\"} 1",
        "chat_is_primary{replica=\"0\"} 1",
        "chat_fsync_seconds_count{replica=\"0\"}",
        "chat_connections{replica=\"0\",kind=\"client\"} 1",
        "chat_queued_messages{replica=\"0\"} 1",
        // "hi" and "ann".
        "chat_queued_message_bytes{replica=\"0\"} 5",
        "# EOF",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
    let commits = text
        .lines()
        .find_map(|l| l.strip_prefix("chat_commits_total{replica=\"0\"} "))
        .expect("commits");
    assert!(commits.parse::<u64>().unwrap() >= 3, "{commits}");
}

/// `chat demo` with its standard input a pipe, in `dir`.
struct Demo {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Demo {
    fn start(dir: &Path) -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chat"))
            .arg("demo")
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chat demo");
        // stdout and stderr (where a piped client reports failures) on one channel.
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        forward_lines(stdout, tx.clone());
        forward_lines(stderr, tx);
        Demo { child, lines }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
    }

    /// Reads lines until one contains `want` (at most 30 s); returns them all.
    fn until(&self, want: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(want);
                    seen.push(line);
                    if found {
                        return seen;
                    }
                }
                Err(_) => panic!("no line with {want:?}; got:\n{}", seen.join("\n")),
            }
        }
    }
}

fn forward_lines(from: impl Read + Send + 'static, to: mpsc::Sender<String>) {
    thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if to.send(line).is_err() {
                return;
            }
        }
    });
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_demo_plays_faults_and_a_second_demo_in_the_same_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // TLS as in the checked-in configuration: the demo makes the files on its first run,
    // and every link, the demo's client and `:status` included, uses them.
    let tls = dir.path().join("data/tls");
    let tls_section = format!(
        "tls:\n  ca: {0}/ca.pem\n  certificate: {0}/replica-{{id}}.pem\n  key: {0}/replica-{{id}}.key\n",
        tls.display()
    );
    write_config(dir.path(), 3, &tls_section);
    let mut demo = Demo::start(dir.path());
    let started = demo.until("answering");
    assert!(
        started
            .iter()
            .any(|l| l.contains("created a TLS certificate authority")),
        "{started:?}"
    );
    assert!(tls.join("replica-2.key").exists());

    let second = Command::new(env!("CARGO_BIN_EXE_chat"))
        .arg("demo")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is in use by process"), "{stderr}");
    assert!(!String::from_utf8_lossy(&second.stdout).contains("answering"));

    demo.send("help");
    demo.until(":restart N");
    demo.send(":kill 1");
    demo.until("replica 1 killed");
    demo.send("1|ann");
    demo.until("account created");
    demo.send(":status");
    let table = demo.until("processes:");
    assert!(
        table
            .iter()
            .any(|l| l.starts_with("1 ") && l.contains("down")),
        "{table:?}"
    );
    assert!(
        table.iter().any(|l| l.starts_with("serving: ")),
        "{table:?}"
    );
    demo.send(":restart 1");
    demo.until("replica 1 restarted");
    demo.send(":pause 2");
    demo.until("replica 2 paused");
    demo.send(":resume 2");
    demo.until("replica 2 resumed");
    demo.send(":kill 9");
    demo.until("needs a replica id from 0 to 2");

    // A replica that dies from outside is announced.
    let pid: i32 = std::fs::read_to_string(dir.path().join("data/replica-0/LOCK"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) has no memory effects; the pid is the demo's replica 0.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    demo.until("replica 0 exited on its own");

    demo.send("quit");
    let status = demo.child.wait().unwrap();
    assert!(status.success());
    assert!(
        chat_net::storage::DirLock::check(&dir.path().join("data/replica-1")).is_ok(),
        "the replicas stopped with the demo"
    );
}

#[test]
fn ctrl_c_in_the_demo_cancels_a_waiting_request_then_stops_everything() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), 3, "");
    let mut demo = Demo::start(dir.path());
    demo.until("answering");
    demo.send("1|ann");
    demo.until("account created");
    // Both backups silent: no replica may commit (every member is needed, and silence is no
    // evidence of a crash), so the next request waits.
    demo.send(":pause 1");
    demo.until("replica 1 paused");
    demo.send(":pause 2");
    demo.until("replica 2 paused");
    demo.send("1|bob");
    thread::sleep(Duration::from_millis(1500));
    let pid = demo.child.id() as i32;
    // SAFETY: kill(2) has no memory effects; the pid is the demo's.
    unsafe { libc::kill(pid, libc::SIGINT) };
    demo.until("cancelled");
    // The demo carries on: its commands still work and the cluster serves again.
    demo.send(":resume 1");
    demo.until("replica 1 resumed");
    demo.send(":resume 2");
    demo.until("replica 2 resumed");
    demo.send("1|cat");
    demo.until("account created");
    // Ctrl-C with nothing waiting stops the replicas and the demo.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let status = demo.child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    for id in 0..3 {
        let data = dir.path().join(format!("data/replica-{id}"));
        assert!(
            chat_net::storage::DirLock::check(&data).is_ok(),
            "replica {id} stopped with the demo"
        );
    }
}
