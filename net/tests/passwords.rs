//! Accounts with passwords against real replicas run in this process, through the client
//! library: creating and logging in, the one slow answer to every wrong guess, the plain
//! password nowhere on disk or in the log output, forged verified logins refused, and hash
//! work that does not hold up other clients.

mod support;

use chat_core::chat::{ChatError, Op, Reply};
use chat_core::codec::frame::{self, FrameDecoder};
use chat_core::password::{HashCost, Password};
use chat_core::service::Request;
use chat_core::wire::{ClientToServer, Endpoint, Hello, PasswordAction};
use chat_net::client::{Client, ClientOptions, Incoming};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};
use support::{Cluster, MAX_FRAME};

/// How long anything the test waits for may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);
/// The server's delay before answering a first and a second consecutive wrong guess.
const FIRST_DELAY: Duration = Duration::from_millis(250);
const SECOND_DELAY: Duration = Duration::from_millis(500);

// ---------------------------------------------------------------------------------------
// Every log line of every replica in this test binary, at every level.

static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(|| Capture)
            .init();
    });
}

fn captured_logs() -> Vec<u8> {
    LOG.lock().unwrap().clone()
}

// ---------------------------------------------------------------------------------------
// The support cluster, as these tests start it and talk to it.

impl Cluster {
    /// `replicas` replicas that snapshot every 4 operations and hash passwords at `cost`.
    fn start(replicas: usize, cost: HashCost) -> Cluster {
        capture_logs();
        let mut cluster = Cluster::configure(replicas, true, "snapshot_every: 4\n", "");
        cluster.password_cost = cost;
        cluster.run(replicas);
        cluster
    }

    fn client(&self) -> (Client, Receiver<Incoming>) {
        let options = ClientOptions {
            give_up_after: Some(PATIENCE),
            ..ClientOptions::default()
        };
        Client::connect_with(&self.config, options).unwrap()
    }
}

fn create(client: &Client, user: &str, password: &str) -> Reply {
    let password = Password::new(password.into());
    client
        .request_with_password(PasswordAction::Create, user.into(), password)
        .unwrap()
}

fn login(client: &Client, user: &str, password: &str) -> Reply {
    let password = Password::new(password.into());
    client
        .request_with_password(PasswordAction::Login, user.into(), password)
        .unwrap()
}

/// A login with a password, and how long its answer took.
fn timed_login(client: &Client, user: &str, password: &str) -> (Reply, Duration) {
    let start = Instant::now();
    let reply = login(client, user, password);
    (reply, start.elapsed())
}

fn logged_in(user: &str) -> Reply {
    Reply::LoggedIn {
        user: user.into(),
        waiting: 0,
    }
}

const BAD: Reply = Reply::Error(ChatError::BadCredentials);

/// Every file under `dir`, recursively.
fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------

#[test]
fn passwords_protect_accounts_and_never_reach_disk_or_logs() {
    const PASSWORD: &str = "Pw-7c1f9e-zebra";
    const GUESSES: [&str; 2] = ["guess-1-walrus", "guess-2-walrus"];
    let mut cluster = Cluster::start(3, HashCost::TINY);
    let (ann, _) = cluster.client();
    let (eve, _) = cluster.client();

    assert_eq!(create(&ann, "ann", PASSWORD), Reply::Created);
    assert_eq!(
        create(&eve, "ann", "other"),
        Reply::Error(ChatError::NameTaken)
    );

    // Wrong guesses: one answer, later each time.
    let (first, first_took) = timed_login(&eve, "ann", GUESSES[0]);
    let (second, second_took) = timed_login(&eve, "ann", GUESSES[1]);
    eprintln!("wrong guesses answered in {first_took:?}, then {second_took:?}");
    assert_eq!((first, second), (BAD, BAD));
    assert!(first_took >= FIRST_DELAY, "{first_took:?}");
    assert!(second_took >= SECOND_DELAY, "{second_took:?}");
    // No password, an unknown user: the same answer.
    assert_eq!(eve.request(Op::Login { user: "ann".into() }).unwrap(), BAD);
    assert_eq!(login(&eve, "nobody", GUESSES[0]), BAD);
    assert_eq!(
        eve.request(Op::Deliver).unwrap(),
        Reply::Error(ChatError::NotLoggedIn)
    );

    // The right password gets in, and resets the count of failures.
    let (reply, took) = timed_login(&ann, "ann", PASSWORD);
    eprintln!("the right password answered in {took:?}");
    assert_eq!(reply, logged_in("ann"));
    assert_eq!(
        ann.request(Op::Deliver).unwrap(),
        Reply::Delivered {
            messages: vec![],
            more: 0
        }
    );

    // An account without a password stays open; a password given for it is refused like a
    // wrong one (not silently ignored), and `2|bob` alone logs in.
    assert_eq!(
        eve.request(Op::Create { user: "bob".into() }).unwrap(),
        Reply::Created
    );
    assert_eq!(login(&eve, "bob", "anything"), BAD);
    assert_eq!(
        eve.request(Op::Login { user: "bob".into() }).unwrap(),
        logged_in("bob")
    );

    // Stop (snapshots were taken: `snapshot_every` is 4), then restart from the same disks:
    // the hash survived, the password still opens the account.
    cluster.stop();
    cluster.run(3);
    let (again, _) = cluster.client();
    assert_eq!(login(&again, "ann", GUESSES[0]), BAD);
    assert_eq!(login(&again, "ann", PASSWORD), logged_in("ann"));
    drop(again);
    cluster.stop();

    let mut all = Vec::new();
    files(cluster.dir.path(), &mut all);
    let mut hashes_seen = 0;
    let mut snapshots = 0;
    for file in &all {
        let bytes = std::fs::read(file).unwrap();
        for secret in [PASSWORD].iter().chain(&GUESSES) {
            assert!(
                !contains(&bytes, secret.as_bytes()),
                "{} holds a plain password",
                file.display()
            );
        }
        if contains(&bytes, b"$argon2id$") {
            hashes_seen += 1;
        }
        if file.to_string_lossy().contains("snap") {
            snapshots += 1;
        }
    }
    assert!(hashes_seen > 0, "no file holds the hash: wrong directory?");
    assert!(snapshots > 0, "no snapshot among {all:?}");
    let logs = captured_logs();
    assert!(!logs.is_empty(), "no log line captured");
    for secret in [PASSWORD].iter().chain(&GUESSES) {
        assert!(
            !contains(&logs, secret.as_bytes()),
            "a log line holds a password"
        );
    }
}

#[test]
fn forged_password_operations_close_the_connection() {
    let mut cluster = Cluster::start(1, HashCost::TINY);
    let (ann, _) = cluster.client();
    assert_eq!(create(&ann, "ann", "right"), Reply::Created);
    for op in [
        Op::LoginVerified {
            user: "ann".into(),
            password_hash: "$argon2id$forged".into(),
        },
        Op::CreateWithPassword {
            user: "mallory".into(),
            password_hash: "$argon2id$forged".into(),
        },
        Op::LoginRefused { user: "ann".into() },
    ] {
        let port = cluster.config.replicas[0].client_port;
        let mut stream =
            TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), PATIENCE)
                .unwrap();
        let send = |stream: &mut TcpStream, value: &ClientToServer| {
            let _ = stream.write_all(&frame::encode(value, MAX_FRAME).unwrap());
        };
        stream
            .write_all(&frame::encode(&Hello::new(Endpoint::Client), MAX_FRAME).unwrap())
            .unwrap();
        send(&mut stream, &ClientToServer::Attach { client: 77 });
        let request = Request {
            client: 77,
            request: 1,
            op: Op::OpenSession,
        };
        send(&mut stream, &ClientToServer::Request(request));
        let forged = Request {
            client: 77,
            request: 2,
            op,
        };
        send(&mut stream, &ClientToServer::Request(forged));
        assert_closed_without_success(&mut stream);
    }
    assert_eq!(login(&ann, "ann", "right"), logged_in("ann"));
    assert_eq!(
        ann.request(Op::List {
            pattern: "mallory".into()
        })
        .unwrap(),
        Reply::Accounts {
            names: vec![],
            total: 0
        }
    );
    drop(ann);
    cluster.stop();
}

/// Reads until the server closes the connection; no reply to request 2 may come first.
fn assert_closed_without_success(stream: &mut TcpStream) {
    use chat_core::wire::ServerToClient;
    let deadline = Instant::now() + PATIENCE;
    let mut decoder = FrameDecoder::new(MAX_FRAME);
    let mut greeted = false;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the server did not close the connection");
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => decoder.push(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("{e}"),
        }
        if !greeted {
            greeted = decoder.next::<Hello>().unwrap().is_some();
        }
        if greeted {
            while let Ok(Some(frame)) = decoder.next::<ServerToClient>() {
                if let ServerToClient::Reply { request: 2, reply } = frame {
                    panic!("a forged request was answered: {reply:?}");
                }
            }
        }
    }
}

#[test]
fn slow_hashing_does_not_hold_up_other_clients() {
    // Small memory, many passes: slow, without taking much memory on a shared machine.
    let cost = HashCost {
        memory_kib: 8 * 1024,
        iterations: 192,
    };
    let mut cluster = Cluster::start(3, cost);
    let (ann, _) = cluster.client();
    let (bob, _) = cluster.client();
    assert_eq!(
        bob.request(Op::Create { user: "bob".into() }).unwrap(),
        Reply::Created
    );
    assert_eq!(
        bob.request(Op::Login { user: "bob".into() }).unwrap(),
        logged_in("bob")
    );
    let start = Instant::now();
    assert_eq!(create(&ann, "ann", "right"), Reply::Created);
    let hash_time = start.elapsed();

    // While ann's password is verified (as slow as the hash), bob keeps sending.
    let slow_login = thread::spawn(move || {
        let password = Password::new("right".into());
        let reply = ann.request_with_password(PasswordAction::Login, "ann".into(), password);
        (reply, ann)
    });
    let mut latencies = Vec::new();
    while !slow_login.is_finished() {
        let start = Instant::now();
        let reply = bob
            .request(Op::Send {
                to: "bob".into(),
                text: "ping".into(),
            })
            .unwrap();
        assert!(matches!(reply, Reply::Sent { .. }), "{reply:?}");
        latencies.push(start.elapsed());
    }
    latencies.sort();
    let worst = *latencies.last().unwrap();
    let median = latencies[latencies.len() / 2];
    eprintln!(
        "hash took {hash_time:?}; {} requests during the verification: median {median:?}, \
         worst {worst:?}",
        latencies.len()
    );
    assert!(
        latencies.len() >= 3,
        "only {} requests completed",
        latencies.len()
    );
    assert!(
        worst < hash_time / 2,
        "a request took {worst:?} while a hash takes {hash_time:?}"
    );
    let (reply, _ann) = slow_login.join().unwrap();
    assert_eq!(reply, Ok(logged_in("ann")));
    drop(bob);
    cluster.stop();
}
