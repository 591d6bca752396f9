//! The client library against scripted fake replicas: redirects, failover with the same
//! request number, late replies, pushes shown once and acknowledged, giving up.

use super::*;
use chat_core::chat::ChatError;
use chat_core::codec::frame::{self, FrameDecoder};
use chat_core::config::NetLimits;
use chat_core::ids::ReplicaId;
use chat_core::password::Password;
use chat_core::service::Request;
use chat_core::wire::{Endpoint, Hello, PasswordAction};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

/// What a fake replica does with one frame from a client.
enum Act {
    Send(Vec<ServerToClient>),
    /// Close the connection without answering (a crash).
    Close,
    /// Send these, then close the connection.
    SendAndClose(Vec<ServerToClient>),
    /// Stay silent (a hung replica).
    Ignore,
}

type Script = dyn Fn(&ClientToServer) -> Act + Send + Sync;

/// A replica that answers with a script and records every request it receives (ordinary
/// ones and those with a password).
struct Fake {
    port: u16,
    seen: Arc<Mutex<Vec<ClientToServer>>>,
}

impl Fake {
    fn start(
        id: ReplicaId,
        script: impl Fn(&ClientToServer) -> Act + Send + Sync + 'static,
    ) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let log = seen.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (script, log) = (script.clone(), log.clone());
                thread::spawn(move || serve(id, stream, &*script, &log));
            }
        });
        Fake { port, seen }
    }

    fn requests(&self) -> Vec<Request> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter_map(|m| match m {
                ClientToServer::Request(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    fn with_passwords(&self) -> Vec<ClientToServer> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|m| matches!(m, ClientToServer::WithPassword { .. }))
            .cloned()
            .collect()
    }
}

fn serve(id: ReplicaId, mut stream: TcpStream, script: &Script, log: &Mutex<Vec<ClientToServer>>) {
    let max = frame::DEFAULT_MAX_FRAME;
    let mut decoder = FrameDecoder::new(max);
    let mut greeted = false;
    let mut buf = [0u8; 4096];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        decoder.push(&buf[..n]);
        if !greeted {
            match decoder.next::<Hello>() {
                Ok(Some(_)) => {
                    greeted = true;
                    let hello = frame::encode(&Hello::new(Endpoint::Replica(id)), max).unwrap();
                    stream.write_all(&hello).unwrap();
                }
                Ok(None) => continue,
                Err(_) => return,
            }
        }
        while let Ok(Some(message)) = decoder.next::<ClientToServer>() {
            if matches!(
                message,
                ClientToServer::Request(_) | ClientToServer::WithPassword { .. }
            ) {
                log.lock().unwrap().push(message.clone());
            }
            match script(&message) {
                Act::Send(frames) => {
                    for f in frames {
                        let _ = stream.write_all(&frame::encode(&f, max).unwrap());
                    }
                }
                Act::Close => return,
                Act::SendAndClose(frames) => {
                    for f in frames {
                        let _ = stream.write_all(&frame::encode(&f, max).unwrap());
                    }
                    return;
                }
                Act::Ignore => {}
            }
        }
    }
}

/// Answers every request like a primary that knows only these ops.
fn primary(message: &ClientToServer) -> Act {
    let ClientToServer::Request(r) = message else {
        return Act::Send(vec![]);
    };
    let reply = match &r.op {
        Op::OpenSession => Reply::SessionOpened,
        Op::Login { user } => Reply::LoggedIn {
            user: user.clone(),
            waiting: 0,
        },
        Op::Ack { .. } => Reply::Acked,
        Op::Deliver => Reply::Delivered {
            messages: vec![msg(5), msg(6)],
            more: 0,
        },
        _ => Reply::Created,
    };
    Act::Send(vec![ServerToClient::Reply {
        request: r.request,
        reply,
    }])
}

fn msg(id: u64) -> Message {
    Message {
        id,
        from: "alice".into(),
        text: format!("text {id}"),
    }
}

fn config(fakes: &[&Fake]) -> Config {
    Config {
        replicas: fakes
            .iter()
            .enumerate()
            .map(|(i, f)| ReplicaAddr {
                id: i as ReplicaId,
                host: "127.0.0.1".into(),
                client_port: f.port,
                peer_port: 1,
            })
            .collect(),
        data_dir: ".".into(),
        cluster_secret_file: None,
        heartbeat_interval_ms: 50,
        election_timeout_ms: 300,
        snapshot_every: 100,
        limits: Default::default(),
        net: NetLimits::default(),
        leases: Default::default(),
        tls: None,
    }
}

fn quick() -> ClientOptions {
    ClientOptions {
        reply_timeout: Duration::from_millis(300),
        give_up_after: Some(Duration::from_secs(3)),
        connect_timeout: Duration::from_millis(500),
        first_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
        ..ClientOptions::default()
    }
}

fn numbers(fake: &Fake) -> Vec<u64> {
    fake.requests().iter().map(|r| r.request).collect()
}

#[test]
fn follows_the_redirect_to_the_primary() {
    let backup = Fake::start(0, |_| {
        Act::Send(vec![ServerToClient::Redirect { primary: Some(1) }])
    });
    let main = Fake::start(1, primary);
    let (client, _) = Client::connect_with(&config(&[&backup, &main]), quick()).unwrap();
    let reply = client.request(Op::Create { user: "bob".into() }).unwrap();
    assert_eq!(reply, Reply::Created);
    assert_eq!(numbers(&backup), [1]);
    assert_eq!(numbers(&main), [1, 2]);
}

#[test]
fn a_crash_mid_request_retries_the_same_number_elsewhere() {
    let crashing = Fake::start(0, |m| match m {
        ClientToServer::Request(r) if r.request == 2 => Act::Close,
        other => primary(other),
    });
    let next = Fake::start(1, primary);
    let (client, _) = Client::connect_with(&config(&[&crashing, &next]), quick()).unwrap();
    assert_eq!(
        client.request(Op::Create { user: "bob".into() }).unwrap(),
        Reply::Created
    );
    assert_eq!(numbers(&crashing), [1, 2]);
    assert_eq!(numbers(&next), [2]);
    let sessions: Vec<_> = [&crashing, &next]
        .iter()
        .flat_map(|f| f.requests())
        .map(|r| r.client)
        .collect();
    assert!(
        sessions.iter().all(|&c| c == sessions[0]),
        "one session throughout"
    );
}

/// Answers a create or login with a password like a primary that accepts any password.
fn password_primary(message: &ClientToServer) -> Act {
    let ClientToServer::WithPassword {
        request,
        action,
        user,
        ..
    } = message
    else {
        return primary(message);
    };
    let reply = match action {
        PasswordAction::Create => Reply::Created,
        PasswordAction::Login => Reply::LoggedIn {
            user: user.clone(),
            waiting: 0,
        },
    };
    Act::Send(vec![ServerToClient::Reply {
        request: *request,
        reply,
    }])
}

#[test]
fn a_password_request_is_retried_elsewhere_as_the_same_frame() {
    let crashing = Fake::start(0, |m| match m {
        ClientToServer::WithPassword { .. } => Act::Close,
        other => primary(other),
    });
    let next = Fake::start(1, password_primary);
    let (client, _) = Client::connect_with(&config(&[&crashing, &next]), quick()).unwrap();
    let password = Password::new("s3cret".into());
    let reply = client.request_with_password(PasswordAction::Login, "bob".into(), password);
    assert_eq!(
        reply.unwrap(),
        Reply::LoggedIn {
            user: "bob".into(),
            waiting: 0
        }
    );
    let (first, retry) = (crashing.with_passwords(), next.with_passwords());
    assert_eq!(first.len(), 1);
    assert_eq!(first, retry, "the retry is the same request, same number");
    let ClientToServer::WithPassword {
        client: session,
        request,
        action,
        user,
        password,
    } = &first[0]
    else {
        unreachable!()
    };
    assert_eq!(
        (*request, *action, user.as_str(), password.expose()),
        (2, PasswordAction::Login, "bob", "s3cret")
    );
    assert_eq!(
        crashing.requests()[0].client,
        *session,
        "one session throughout"
    );
    // Later requests are numbered after it.
    client.request(Op::Deliver).unwrap();
    let later = numbers(&next);
    assert!(
        !later.is_empty() && later.iter().all(|&n| n > 2),
        "{later:?}"
    );
}

#[test]
fn a_late_reply_retries_on_the_next_replica() {
    let hung = Fake::start(0, |m| match m {
        ClientToServer::Request(r) if r.request == 2 => Act::Ignore,
        other => primary(other),
    });
    let next = Fake::start(1, primary);
    let (client, _) = Client::connect_with(&config(&[&hung, &next]), quick()).unwrap();
    assert_eq!(
        client.request(Op::Create { user: "bob".into() }).unwrap(),
        Reply::Created
    );
    assert_eq!(numbers(&next), [2]);
}

#[test]
fn pushed_messages_show_once_and_are_acknowledged() {
    let pushing = Fake::start(0, |m| match m {
        ClientToServer::Request(r) if matches!(r.op, Op::Login { .. }) => {
            let mut frames = match primary(m) {
                Act::Send(f) => f,
                _ => unreachable!(),
            };
            frames.extend([msg(5), msg(5)].map(ServerToClient::Push));
            Act::Send(frames)
        }
        other => primary(other),
    });
    let (client, incoming) = Client::connect_with(&config(&[&pushing]), quick()).unwrap();
    client.request(Op::Login { user: "bob".into() }).unwrap();
    let first = incoming.recv_timeout(Duration::from_secs(3)).unwrap();
    assert_eq!(first, Incoming::Message(msg(5)));
    let delivered = client.request(Op::Deliver).unwrap();
    assert_eq!(
        delivered,
        Reply::Delivered {
            messages: vec![msg(6)],
            more: 0
        },
        "5 was shown already"
    );
    assert!(incoming.try_recv().is_err(), "no second copy of 5");
    let acks: Vec<_> = pushing
        .requests()
        .into_iter()
        .filter_map(|r| match r.op {
            Op::Ack { ids } => Some(ids),
            _ => None,
        })
        .collect();
    assert!(
        !acks.is_empty() && acks.iter().flatten().all(|&id| id == 5),
        "{acks:?}"
    );
}

#[test]
fn a_lost_connection_while_idle_reattaches_to_a_primary() {
    let crash_after_login = Fake::start(0, |m| match (m, primary(m)) {
        (ClientToServer::Request(r), Act::Send(frames)) if matches!(r.op, Op::Login { .. }) => {
            Act::SendAndClose(frames)
        }
        (_, act) => act,
    });
    let next = Fake::start(1, primary);
    let (client, _) = Client::connect_with(&config(&[&crash_after_login, &next]), quick()).unwrap();
    client.request(Op::Login { user: "bob".into() }).unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while next.requests().is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let probe = next.requests();
    assert_eq!(probe.len(), 1, "one request without user action: {probe:?}");
    assert_eq!(
        (probe[0].request, &probe[0].op),
        (3, &Op::Ack { ids: vec![] })
    );
}

#[test]
fn gives_up_with_a_clear_error_when_no_replica_answers() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = Fake {
        port: listener.local_addr().unwrap().port(),
        seen: Default::default(),
    };
    drop(listener);
    let started = Instant::now();
    let error = match Client::connect_with(&config(&[&dead]), quick()) {
        Err(e) => e,
        Ok(_) => panic!("connected to nothing"),
    };
    assert!(started.elapsed() >= Duration::from_secs(3));
    let text = error.to_string();
    assert!(text.starts_with("no primary answered within 3 s"), "{text}");
    assert!(text.contains("refused"), "{text}");
}

#[test]
fn an_expired_session_is_reported_and_replaced() {
    let expired = AtomicBool::new(false);
    let forgetful = Fake::start(0, move |m| match m {
        ClientToServer::Request(r) if r.request == 2 && !expired.swap(true, Ordering::Relaxed) => {
            Act::Send(vec![ServerToClient::Reply {
                request: 2,
                reply: Reply::Error(ChatError::SessionExpired),
            }])
        }
        other => primary(other),
    });
    let (client, _) = Client::connect_with(&config(&[&forgetful]), quick()).unwrap();
    let reply = client.request(Op::Deliver).unwrap();
    assert_eq!(reply, Reply::Error(ChatError::SessionExpired));
    assert_eq!(
        client.request(Op::Create { user: "x".into() }).unwrap(),
        Reply::Created
    );
    let seen = forgetful.requests();
    let numbers: Vec<_> = seen.iter().map(|r| r.request).collect();
    assert_eq!(numbers, [1, 2, 1, 2], "a new session starts at request 1");
    assert_ne!(seen[0].client, seen[2].client);
}

#[test]
fn a_logout_missed_during_failover_is_found_by_a_fresh_probe() {
    let pushing_then_crashing = Fake::start(0, |m| match (m, primary(m)) {
        (ClientToServer::Request(r), Act::Send(mut frames)) if matches!(r.op, Op::Login { .. }) => {
            frames.push(ServerToClient::Push(msg(5)));
            Act::Send(frames)
        }
        (ClientToServer::Request(r), _) if matches!(r.op, Op::Ack { .. }) => Act::Close,
        (_, act) => act,
    });
    // The new primary answers the retried Ack from its client table, and the fresh probe
    // with the truth: another session took the account meanwhile.
    let taken_over = Fake::start(1, |m| match m {
        ClientToServer::Request(r) if r.request == 4 => Act::Send(vec![ServerToClient::Reply {
            request: 4,
            reply: Reply::Error(ChatError::NotLoggedIn),
        }]),
        other => primary(other),
    });
    let (client, incoming) =
        Client::connect_with(&config(&[&pushing_then_crashing, &taken_over]), quick()).unwrap();
    client.request(Op::Login { user: "bob".into() }).unwrap();
    let wait = Duration::from_secs(3);
    assert_eq!(
        incoming.recv_timeout(wait).unwrap(),
        Incoming::Message(msg(5))
    );
    assert_eq!(incoming.recv_timeout(wait).unwrap(), Incoming::LoggedOut);
    let seen: Vec<_> = taken_over
        .requests()
        .into_iter()
        .map(|r| (r.request, r.op))
        .collect();
    assert_eq!(
        seen,
        [(3, Op::Ack { ids: vec![5] }), (4, Op::Ack { ids: vec![] })]
    );
}
