//! Bad input against real replicas run in this process: each case sends something hostile on
//! a real socket, checks that the server closes that connection, and then checks that a
//! well-behaved client (one connected all along, and a new one) still gets correct replies.
//! Peers prove they hold the cluster secret; the forged peers here know another one, or
//! break the handshake.

mod support;

use chat_core::chat::{Op, Reply};
use chat_core::codec::frame::{self, FrameDecoder};
use chat_core::config::Config;
use chat_core::ids::{ClientId, ReplicaId, RequestNo};
use chat_core::peer_auth::{
    proof, verify, AuthFrame, AuthMessage, ClusterSecret, Nonce, Prover, Transcript,
};
use chat_core::replica::{Body, PeerMessage};
use chat_core::service::Request;
use chat_core::wire::{ClientToServer, Endpoint, Hello, ServerToClient, MAGIC, PROTOCOL_VERSION};
use chat_net::server::{run, ServerOptions};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use support::{Cluster, MAX_FRAME, SECRET};

/// How long anything the test waits for may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

/// A view no test cluster reaches by itself: a forged `Append` in it must change nothing.
const FORGED_VIEW: u64 = 1_000;

/// Network limits and peer authentication of a test cluster.
#[derive(Clone, Copy)]
struct Net {
    handshake_ms: u64,
    partial_ms: u64,
    per_address: u32,
    /// Whether the replicas prove to each other that they hold [`SECRET`].
    secret: bool,
}

const NET: Net = Net {
    handshake_ms: 30_000,
    partial_ms: 500,
    per_address: 100,
    secret: true,
};

/// The support cluster, as these tests start it and attack it.
impl Cluster {
    fn start(replicas: usize, net: Net) -> Cluster {
        Cluster::start_some(replicas, replicas, net)
    }

    /// A cluster of `replicas` of which only the first `running` run.
    fn start_some(replicas: usize, running: usize, net: Net) -> Cluster {
        let net_settings = format!(
            "  max_connections: 1024\n  max_connections_per_address: {}\n  \
             handshake_timeout_ms: {}\n  partial_frame_timeout_ms: {}\n",
            net.per_address, net.handshake_ms, net.partial_ms
        );
        let mut cluster = Cluster::configure(replicas, net.secret, "", &net_settings);
        cluster.run(running);
        cluster
    }

    fn client_ports(&self) -> Vec<u16> {
        self.config.replicas.iter().map(|r| r.client_port).collect()
    }

    fn client_port(&self) -> u16 {
        self.config.replicas[0].client_port
    }

    fn peer_port(&self) -> u16 {
        self.config.replicas[0].peer_port
    }

    fn peer_ports(&self) -> Vec<u16> {
        self.config.replicas.iter().map(|r| r.peer_port).collect()
    }
}

/// A raw framed connection, for both well-behaved and hostile talk.
struct Raw {
    stream: TcpStream,
    decoder: FrameDecoder,
}

impl Raw {
    fn connect(port: u16) -> std::io::Result<Raw> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        Ok(Raw::over(TcpStream::connect_timeout(&addr, PATIENCE)?))
    }

    fn over(stream: TcpStream) -> Raw {
        Raw {
            stream,
            decoder: FrameDecoder::new(MAX_FRAME),
        }
    }

    /// Connects and sends a `Hello` (without waiting for the answer).
    fn hello(port: u16, hello: Hello) -> Raw {
        let mut raw = Raw::connect(port).unwrap();
        raw.send(&hello);
        raw
    }

    fn send<T: Serialize>(&mut self, value: &T) {
        self.send_bytes(&frame::encode(value, MAX_FRAME).unwrap());
    }

    /// The server may already have closed the connection: that is for the reads to tell.
    fn send_bytes(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    fn recv<T: DeserializeOwned>(&mut self, within: Duration) -> Result<T, String> {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(value) = self.decoder.next().map_err(|e| e.to_string())? {
                return Ok(value);
            }
            match self.read(&mut buf, deadline)? {
                0 => return Err("closed".into()),
                n => self.decoder.push(&buf[..n]),
            }
        }
    }

    /// Reads with a deadline; `Ok(0)` when the server closed (or reset) the connection.
    fn read(&mut self, buf: &mut [u8], deadline: Instant) -> Result<usize, String> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("timed out".into());
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            return match self.stream.read(buf) {
                Ok(n) => Ok(n),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                    ) =>
                {
                    Ok(0)
                }
                Err(e) => Err(e.to_string()),
            };
        }
    }

    /// Fails unless the server closes this connection in time (bytes before that are fine).
    fn assert_closed(self, what: &str) {
        self.wait_closed(what, true);
    }

    /// Fails unless the server closes this connection in time without a word: the server
    /// answers a `Hello` only once it accepted it.
    fn assert_refused(self, what: &str) {
        self.wait_closed(what, false);
    }

    fn wait_closed(mut self, what: &str, bytes_allowed: bool) {
        let deadline = Instant::now() + PATIENCE;
        let mut buf = [0u8; 4096];
        loop {
            match self.read(&mut buf, deadline) {
                Ok(0) => return,
                Ok(n) => assert!(bytes_allowed, "{what}: the server answered {n} bytes"),
                Err(e) => panic!("{what}: the server did not close the connection: {e}"),
            }
        }
    }
}

/// A well-behaved client session speaking raw frames; follows redirects to the primary.
struct Session {
    ports: Vec<u16>,
    at: usize,
    raw: Option<Raw>,
    client: ClientId,
    next: RequestNo,
}

impl Session {
    fn open(ports: Vec<u16>) -> Session {
        let mut session = Session {
            ports,
            at: 0,
            raw: None,
            client: rand::random(),
            next: 1,
        };
        assert_eq!(session.request(Op::OpenSession), Reply::SessionOpened);
        session
    }

    /// Connects, greets and attaches; `None` if the server refused or closed.
    fn connect(&self) -> Option<Raw> {
        let mut raw = Raw::connect(self.ports[self.at]).ok()?;
        raw.send(&Hello::new(Endpoint::Client));
        let hello: Hello = raw.recv(Duration::from_secs(5)).ok()?;
        assert_eq!((hello.magic, hello.version), (MAGIC, PROTOCOL_VERSION));
        raw.send(&ClientToServer::Attach {
            client: self.client,
        });
        Some(raw)
    }

    /// Sends `op` as the next request and retries it (same number) until it is answered.
    fn request(&mut self, op: Op) -> Reply {
        let n = self.next;
        self.next += 1;
        let request = ClientToServer::Request(Request {
            client: self.client,
            request: n,
            op,
        });
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            let Some(raw) = self.raw.as_mut() else {
                self.raw = self.connect();
                if self.raw.is_none() {
                    self.at = (self.at + 1) % self.ports.len();
                    thread::sleep(Duration::from_millis(50));
                }
                continue;
            };
            raw.send(&request);
            loop {
                match raw.recv::<ServerToClient>(Duration::from_secs(5)) {
                    Ok(ServerToClient::Reply { request, reply }) if request == n => return reply,
                    Ok(ServerToClient::Redirect { primary }) => {
                        self.at = match primary {
                            Some(p) => usize::from(p),
                            None => (self.at + 1) % self.ports.len(),
                        };
                        thread::sleep(Duration::from_millis(50));
                    }
                    Ok(_) => continue,
                    Err(_) => self.at = (self.at + 1) % self.ports.len(),
                }
                self.raw = None;
                break;
            }
        }
        panic!("request {n} got no reply in time");
    }
}

static NAMES: AtomicU64 = AtomicU64::new(0);

/// The session connected all along creates an account, and a new session sees it.
fn assert_serving(cluster: &Cluster, session: &mut Session) {
    let user = format!("user{}", NAMES.fetch_add(1, Ordering::Relaxed));
    assert_eq!(
        session.request(Op::Create { user: user.clone() }),
        Reply::Created
    );
    let mut fresh = Session::open(cluster.client_ports());
    assert_eq!(
        fresh.request(Op::List {
            pattern: user.clone()
        }),
        Reply::Accounts {
            names: vec![user],
            total: 1
        }
    );
}

/// Starts a cluster, checks it serves, runs `attack`, checks it still serves, stops it.
fn survives(replicas: usize, net: Net, attack: impl FnOnce(&Cluster)) {
    cluster_survives(Cluster::start(replicas, net), attack);
}

fn cluster_survives(mut cluster: Cluster, attack: impl FnOnce(&Cluster)) {
    let mut session = Session::open(cluster.client_ports());
    assert_serving(&cluster, &mut session);
    attack(&cluster);
    assert_serving(&cluster, &mut session);
    cluster.stop();
}

#[test]
fn garbage_bytes_close_the_connection() {
    survives(1, NET, |c| {
        for port in [c.client_port(), c.peer_port()] {
            let mut raw = Raw::connect(port).unwrap();
            raw.send_bytes(b"GET / HTTP/1.1\r\nHost: chat\r\n\r\n");
            raw.assert_refused("an HTTP request");
        }
        // A frame of the right size whose bytes do not decode, after a good handshake.
        let mut raw = Raw::hello(c.client_port(), Hello::new(Endpoint::Client));
        raw.send_bytes(&[0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]);
        raw.assert_closed("an undecodable frame");
        // A valid value followed by stray bytes.
        let mut raw = Raw::hello(c.client_port(), Hello::new(Endpoint::Client));
        raw.send_bytes(&[0, 0, 0, 3, 2, 0xaa, 0xbb]);
        raw.assert_closed("a frame with trailing bytes");
    });
}

#[test]
fn a_4_gib_length_prefix_closes_the_connection() {
    survives(1, NET, |c| {
        for port in [c.client_port(), c.peer_port()] {
            let mut raw = Raw::connect(port).unwrap();
            raw.send_bytes(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
            raw.assert_refused("a 4 GiB length prefix");
        }
        let mut raw = Raw::hello(c.client_port(), Hello::new(Endpoint::Client));
        raw.send_bytes(&(MAX_FRAME + 1).to_be_bytes());
        raw.assert_closed("a frame one byte over the limit");
    });
}

#[test]
fn a_stalled_half_frame_is_closed_after_the_partial_frame_timeout() {
    survives(1, NET, |c| {
        let mut raw = Raw::hello(c.client_port(), Hello::new(Endpoint::Client));
        let hello: Hello = raw.recv(PATIENCE).unwrap();
        assert_eq!(hello.from, Endpoint::Replica(0));
        raw.send_bytes(&[0, 0, 0, 100, 1, 2, 3]);
        raw.assert_closed("a stalled half frame");
    });
}

#[test]
fn a_silent_connection_is_closed_after_the_handshake_timeout() {
    let net = Net {
        handshake_ms: 500,
        ..NET
    };
    survives(1, net, |c| {
        for port in [c.client_port(), c.peer_port()] {
            Raw::connect(port)
                .unwrap()
                .assert_refused("no hello at all");
        }
    });
}

#[test]
fn a_wrong_magic_or_version_closes_the_connection() {
    survives(1, NET, |c| {
        let wrong = [
            Hello {
                magic: 0xdead_beef,
                ..Hello::new(Endpoint::Client)
            },
            Hello {
                version: PROTOCOL_VERSION + 1,
                ..Hello::new(Endpoint::Client)
            },
        ];
        for hello in wrong {
            Raw::hello(c.client_port(), hello).assert_refused("a wrong hello on the client port");
            let peer = Hello {
                from: Endpoint::Replica(0),
                ..hello
            };
            Raw::hello(c.peer_port(), peer).assert_refused("a wrong hello on the peer port");
        }
    });
}

#[test]
fn a_client_port_hello_as_a_replica_closes_the_connection() {
    survives(1, NET, |c| {
        for id in [0, 1] {
            Raw::hello(c.client_port(), Hello::new(Endpoint::Replica(id)))
                .assert_refused("a replica's hello on the client port");
        }
    });
}

#[test]
fn a_peer_port_hello_from_an_unknown_replica_or_a_client_closes_the_connection() {
    survives(1, NET, |c| {
        for role in [Endpoint::Replica(7), Endpoint::Replica(0), Endpoint::Client] {
            Raw::hello(c.peer_port(), Hello::new(role)).assert_refused("a bad peer hello");
        }
    });
}

#[test]
fn a_thousand_connections_opened_and_dropped() {
    survives(1, NET, |c| {
        for port in [c.client_port(), c.peer_port()] {
            let mut conns: Vec<TcpStream> = (0..1000)
                .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
                .collect();
            assert!(conns.len() > 900, "only {} connections opened", conns.len());
            // Far over the limit of connections from one address: closed at once.
            let last = conns.pop().unwrap();
            Raw::over(last).assert_refused("a connection over the per-address limit");
            drop(conns);
        }
    });
}

#[test]
fn a_peer_claiming_an_id_from_the_wrong_address_is_closed() {
    let without_secret = Net {
        secret: false,
        ..NET
    };
    for net in [NET, without_secret] {
        survives(3, net, |c| {
            // 127.0.0.2 is this machine too, but not replica 1's configured address.
            let socket =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            socket
                .bind(&SocketAddr::from(([127, 0, 0, 2], 0)).into())
                .unwrap();
            let target = SocketAddr::from(([127, 0, 0, 1], c.peer_port()));
            socket.connect(&target.into()).unwrap();
            let mut raw = Raw::over(socket.into());
            raw.send(&Hello::new(Endpoint::Replica(1)));
            raw.assert_refused("a forged peer");
        });
    }
}

#[test]
fn a_client_sending_peer_messages_is_closed_and_changes_nothing() {
    survives(3, NET, |c| {
        for port in c.client_ports() {
            let mut raw = Raw::hello(port, Hello::new(Endpoint::Client));
            raw.send(&forged_append());
            raw.assert_closed("a peer message on the client port");
        }
        assert_no_forged_view(c);
    });
}

/// No replica moved to [`FORGED_VIEW`].
fn assert_no_forged_view(cluster: &Cluster) {
    for port in cluster.client_ports() {
        let Ok(mut raw) = Raw::connect(port) else {
            continue; // not running
        };
        raw.send(&Hello::new(Endpoint::Client));
        raw.send(&ClientToServer::Status);
        let _: Hello = raw.recv(PATIENCE).unwrap();
        match raw.recv(PATIENCE).unwrap() {
            ServerToClient::Status(status) => assert!(status.view < FORGED_VIEW, "{status:?}"),
            other => panic!("expected a status, got {other:?}"),
        }
    }
}

fn forged_append() -> PeerMessage {
    PeerMessage {
        life: Default::default(),
        body: Body::Append {
            view: FORGED_VIEW,
            established: true,
            prev_index: 0,
            prev_view: 0,
            entries: Vec::new(),
            commit: 0,
        },
    }
}

fn cluster_secret() -> ClusterSecret {
    ClusterSecret::from_file_contents(SECRET.to_vec()).unwrap()
}

fn challenge(nonce: Nonce) -> AuthFrame {
    AuthFrame::new(AuthMessage::Challenge(nonce))
}

fn proof_frame(secret: &ClusterSecret, prover: Prover, transcript: &Transcript) -> AuthFrame {
    AuthFrame::new(AuthMessage::Proof(proof(secret, prover, transcript)))
}

/// Dials a replica's peer port as replica `claimed` and exchanges hellos and challenges;
/// returns the connection and the transcript so far.
fn dial_as(port: u16, acceptor: ReplicaId, claimed: ReplicaId, nonce: Nonce) -> (Raw, Transcript) {
    let mut raw = Raw::hello(port, Hello::new(Endpoint::Replica(claimed)));
    raw.send(&challenge(nonce));
    let hello: Hello = raw.recv(PATIENCE).unwrap();
    assert_eq!(hello.from, Endpoint::Replica(acceptor));
    let frame: AuthFrame = raw.recv(PATIENCE).unwrap();
    let AuthMessage::Challenge(acceptor_nonce) = frame.message else {
        panic!("expected the acceptor's challenge, got {frame:?}");
    };
    let transcript = Transcript {
        dialer: claimed,
        acceptor,
        dialer_nonce: nonce,
        acceptor_nonce,
    };
    (raw, transcript)
}

#[test]
fn a_peer_with_the_wrong_secret_is_closed_and_injects_nothing() {
    survives(3, NET, |c| {
        let wrong = ClusterSecret::from_file_contents(vec![b'w'; 64]).unwrap();
        for (acceptor, port) in c.peer_ports().into_iter().enumerate() {
            let acceptor = acceptor as ReplicaId;
            let claimed = (acceptor + 1) % 3;
            let (mut raw, t) = dial_as(port, acceptor, claimed, rand::random());
            raw.send(&proof_frame(&wrong, Prover::Dialer, &t));
            raw.send(&forged_append());
            // Not a byte after the challenge: no proof, no replication traffic.
            raw.assert_refused("a peer with the wrong secret");
        }
        assert_no_forged_view(c);
    });
}

#[test]
fn a_peer_sending_peer_messages_before_its_proof_is_closed_and_injects_nothing() {
    survives(3, NET, |c| {
        // Right after its hello, without a challenge.
        let mut raw = Raw::hello(c.peer_port(), Hello::new(Endpoint::Replica(1)));
        let _: Hello = raw.recv(PATIENCE).unwrap();
        let _: AuthFrame = raw.recv(PATIENCE).unwrap();
        raw.send(&forged_append());
        raw.assert_refused("a peer message instead of a challenge");
        // After the challenges, instead of its proof.
        let (mut raw, _) = dial_as(c.peer_port(), 0, 2, rand::random());
        raw.send(&forged_append());
        raw.assert_refused("a peer message instead of a proof");
        assert_no_forged_view(c);
    });
}

#[test]
fn a_proof_with_the_right_secret_is_answered_and_a_replayed_one_is_refused() {
    survives(3, NET, |c| {
        let secret = cluster_secret();
        let nonce: Nonce = rand::random();
        // Knowing the secret, the test is replica 2 (for a moment): the acceptor answers
        // with its own proof.
        let (mut raw, first) = dial_as(c.peer_port(), 0, 2, nonce);
        let recorded = proof_frame(&secret, Prover::Dialer, &first);
        raw.send(&recorded);
        let answer: AuthFrame = raw.recv(PATIENCE).unwrap();
        let AuthMessage::Proof(tag) = answer.message else {
            panic!("expected the acceptor's proof, got {answer:?}");
        };
        assert!(verify(&secret, Prover::Acceptor, &first, &tag));
        drop(raw);
        // The same proof on a new connection, with the same dialer nonce: the acceptor's
        // nonce is fresh, so the proof is not valid there.
        let (mut raw, second) = dial_as(c.peer_port(), 0, 2, nonce);
        assert_ne!(first.acceptor_nonce, second.acceptor_nonce);
        raw.send(&recorded);
        raw.assert_refused("a replayed proof");
    });
}

#[test]
fn a_forged_acceptor_reads_nothing_but_the_handshake() {
    // Replica 2 is down, and whoever holds its peer port does not know the secret.
    let cluster = Cluster::start_some(3, 2, NET);
    let fake = TcpListener::bind(("127.0.0.1", cluster.config.replicas[2].peer_port)).unwrap();
    cluster_survives(cluster, |_| {
        let wrong = ClusterSecret::from_file_contents(vec![b'w'; 64]).unwrap();
        let secret = cluster_secret();
        for _ in 0..2 {
            let (stream, _) = fake.accept().unwrap();
            let mut raw = Raw::over(stream);
            let hello: Hello = raw.recv(PATIENCE).unwrap();
            let Endpoint::Replica(dialer) = hello.from else {
                panic!("a replica dials as a replica: {hello:?}");
            };
            let frame: AuthFrame = raw.recv(PATIENCE).unwrap();
            let AuthMessage::Challenge(dialer_nonce) = frame.message else {
                panic!("expected the dialer's challenge, got {frame:?}");
            };
            let t = Transcript {
                dialer,
                acceptor: 2,
                dialer_nonce,
                acceptor_nonce: rand::random(),
            };
            raw.send(&Hello::new(Endpoint::Replica(2)));
            raw.send(&challenge(t.acceptor_nonce));
            let frame: AuthFrame = raw.recv(PATIENCE).unwrap();
            let AuthMessage::Proof(tag) = frame.message else {
                panic!("expected the dialer's proof, got {frame:?}");
            };
            assert!(verify(&secret, Prover::Dialer, &t, &tag));
            raw.send(&proof_frame(&wrong, Prover::Acceptor, &t));
            raw.assert_refused("a forged acceptor");
        }
    });
}

#[test]
fn a_client_connection_never_speaks_the_peer_handshake() {
    survives(3, NET, |c| {
        let frame = challenge(rand::random());
        for port in c.client_ports() {
            let mut raw = Raw::connect(port).unwrap();
            raw.send(&frame);
            raw.assert_refused("a challenge instead of a hello");
            let mut raw = Raw::hello(port, Hello::new(Endpoint::Client));
            raw.send(&frame);
            raw.assert_closed("a challenge on a client connection");
            let mut raw = Raw::hello(port, Hello::new(Endpoint::Replica(1)));
            raw.send(&frame);
            raw.assert_refused("a replica's handshake on the client port");
        }
    });
}

/// Runs replica 0 of a one-replica cluster whose secret file is `contents` (or missing).
fn start_with_secret_file(contents: Option<&[u8]>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.secret");
    if let Some(contents) = contents {
        std::fs::write(&path, contents).unwrap();
    }
    let yaml = format!(
        "replicas:\n  - id: 0\n    host: 127.0.0.1\n    client_port: 1\n    peer_port: 2\n\
         data_dir: {}\nheartbeat_interval_ms: 50\nelection_timeout_ms: 300\n\
         cluster_secret_file: {}\n",
        dir.path().display(),
        path.display()
    );
    let config = Config::parse(&yaml).unwrap();
    let opts = ServerOptions {
        data_dir: Some(dir.path().join("replica-0")),
        ..ServerOptions::default()
    };
    let error = run(&config, 0, opts)
        .expect_err("start-up must fail")
        .to_string();
    let path = path.display().to_string();
    assert!(error.contains(&path), "{error}");
    assert!(
        error.contains(&format!("chat-admin new-secret {path}")),
        "{error}"
    );
    error
}

#[test]
fn a_missing_or_short_secret_file_stops_start_up_with_a_clear_error() {
    let error = start_with_secret_file(None);
    assert!(error.contains("No such file"), "{error}");
    let short = b"0123456789abcdef0123456789abcde\n";
    let error = start_with_secret_file(Some(short));
    assert!(error.contains("fewer than 32 bytes"), "{error}");
    assert!(!error.contains("0123456789abcdef"), "{error}");
}
