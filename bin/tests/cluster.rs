//! The service on real processes: three `chat-server`s on local ports, driven through the
//! client library and the `chat-client` program. Each test bounds every wait, and its
//! `Cluster` kills every process it started.

mod support;

use chat_core::chat::Message;
use chat_core::codec::frame;
use chat_core::ids::{MessageId, ReplicaId};
use chat_core::wire::{Endpoint, Hello};
use chat_net::client::Incoming;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use support::chat::{
    alice_and_bob, alice_sends, assert_each_shown_once, create, deliver, login, next_message, send,
    until_acked, WAIT,
};
use support::{Cluster, NET_TIMEOUT, REPLICAS};

#[test]
fn online_users_get_messages_pushed_and_offline_users_find_them_queued() {
    let cluster = Cluster::start();
    let (alice, _) = cluster.client();
    let (bob, bob_incoming) = cluster.client();
    for user in ["alice", "bob", "carol"] {
        create(&alice, user);
    }
    assert_eq!(login(&alice, "alice"), 0);
    assert_eq!(login(&bob, "bob"), 0);

    let id = send(&alice, "bob", "hello bob");
    let pushed = next_message(&bob_incoming);
    assert_eq!(
        pushed,
        Message {
            id,
            from: "alice".into(),
            text: "hello bob".into()
        }
    );

    let to_carol = send(&alice, "carol", "hello carol");
    let (carol, carol_incoming) = cluster.client();
    assert_eq!(login(&carol, "carol"), 1);
    let queued = deliver(&carol);
    assert_eq!(queued.iter().map(|m| m.id).collect::<Vec<_>>(), [to_carol]);
    assert_eq!(queued[0].text, "hello carol");
    assert!(carol_incoming.try_recv().is_err(), "queued, not pushed");
    assert_eq!(deliver(&bob), [], "a pushed message is not shown again");
}

#[test]
fn killing_the_primary_loses_nothing_and_shows_nothing_twice() {
    let mut cluster = Cluster::start();
    let (alice, bob, bob_incoming) = alice_and_bob(&cluster);
    let primary = cluster.wait_for_primary(None);
    let (acked, all_acked) = alice_sends(alice, 60);
    until_acked(&acked, 20);
    cluster.kill(primary);
    let (alice, texts) = all_acked
        .recv_timeout(2 * WAIT)
        .expect("every send succeeds through the failover");
    let new_primary = cluster.wait_for_primary(Some(primary));
    assert_ne!(new_primary, primary);

    // Bob does nothing: every acknowledged message reaches him, pushed, exactly once.
    assert_each_shown_once(&bob, &bob_incoming, texts);

    // The session and login survived: Alice keeps sending, Bob keeps receiving.
    let id = send(&alice, "bob", "after the failover");
    assert_eq!(next_message(&bob_incoming).id, id);
}

/// An idle recipient asks nothing, so no reply can redirect it: when the primary its
/// connection leads to froze, woke and stepped down, that replica sends it on, and pushes
/// reach it again at once (not after its connection idles out, five minutes later).
#[test]
fn an_idle_recipient_gets_pushes_again_after_its_primary_froze_and_stepped_down() {
    let cluster = Cluster::start();
    let (alice, _bob, bob_incoming) = alice_and_bob(&cluster);
    let frozen = cluster.wait_for_primary(None);
    cluster.pause(frozen);
    let new_primary = cluster.wait_for_primary(Some(frozen));
    cluster.resume(frozen);
    let deadline = Instant::now() + WAIT;
    while cluster
        .status(frozen)
        .is_none_or(|s| s.primary != Some(new_primary))
    {
        assert!(
            Instant::now() < deadline,
            "replica {frozen} never followed {new_primary}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let id = send(&alice, "bob", "after the freeze");
    assert_eq!(next_message(&bob_incoming).id, id);
}

#[test]
fn after_all_replicas_restart_queued_messages_remain_and_logins_work() {
    let mut cluster = Cluster::start();
    let (alice, _) = cluster.client();
    let (bob, bob_incoming) = cluster.client();
    for user in ["alice", "bob", "carol"] {
        create(&alice, user);
    }
    login(&alice, "alice");
    login(&bob, "bob");
    // More operations than `snapshot_every` (25): recovery reads a snapshot and a log.
    let for_carol: Vec<MessageId> = (0..40)
        .map(|i| send(&alice, "carol", &format!("queued {i}")))
        .collect();
    let to_bob = send(&alice, "bob", "pushed before the crash");
    assert_eq!(next_message(&bob_incoming).id, to_bob);

    cluster.kill_all();
    cluster.start_all();

    // Carol was offline throughout: all 40 are still queued, in order.
    let (carol, _) = cluster.client();
    assert_eq!(login(&carol, "carol"), 40);
    let delivered: Vec<MessageId> = deliver(&carol).iter().map(|m| m.id).collect();
    assert_eq!(delivered, for_carol);

    // Alice's session survived the restart; Bob logs in again from a new client (his old
    // one is told it was logged out) and is not stuck "already logged in".
    let (bob_again, bob_again_incoming) = cluster.client();
    login(&bob_again, "bob");
    let deadline = Instant::now() + WAIT;
    loop {
        match bob_incoming.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Incoming::LoggedOut) => break,
            Ok(Incoming::Message(m)) => assert_eq!(m.id, to_bob, "only the unacknowledged push"),
            other => panic!("expected the old client to be logged out, got {other:?}"),
        }
    }
    let id = send(&alice, "bob", "after the restart");
    assert_eq!(next_message(&bob_again_incoming).id, id);
    drop(bob);
}

/// Opens a connection and sends `bytes`; returns it for further checks.
fn connect_and_send(port: u16, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.write_all(bytes).expect("write");
    stream
}

/// Whether the server closes `stream` within `within` (reading and discarding its bytes).
fn closed_within(mut stream: TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn hostile_input_on_both_ports_does_not_stop_the_service() {
    let cluster = Cluster::start();
    let (alice, alice_incoming) = cluster.client();
    create(&alice, "alice");
    login(&alice, "alice");

    // A well-behaved client keeps sending to itself throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut rounds = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let id = send(&alice, "alice", &format!("ping {rounds}"));
                assert_eq!(next_message(&alice_incoming).id, id);
                rounds += 1;
            }
            rounds
        })
    };

    let max = cluster.config.net.max_frame_bytes;
    let hello = frame::encode(&Hello::new(Endpoint::Client), max).unwrap();
    let mut wrong_magic = Hello::new(Endpoint::Replica(0));
    wrong_magic.magic = 0xdead_beef;
    let wrong_magic = frame::encode(&wrong_magic, max).unwrap();
    let ports: Vec<(ReplicaId, &str, u16)> = cluster
        .config
        .replicas
        .iter()
        .flat_map(|r| [(r.id, "client", r.client_port), (r.id, "peer", r.peer_port)])
        .collect();
    let slack = NET_TIMEOUT * 5;
    for &(id, kind, port) in &ports {
        let at = format!("replica {id} {kind} port");
        let http = connect_and_send(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(closed_within(http, slack), "{at}: garbage left open");
        let junk = connect_and_send(port, &[0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(
            closed_within(junk, slack),
            "{at}: undecodable frame left open"
        );
        let huge = connect_and_send(port, &[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
        assert!(
            closed_within(huge, slack),
            "{at}: 4 GiB length prefix left open"
        );
        let magic = connect_and_send(port, &wrong_magic);
        assert!(closed_within(magic, slack), "{at}: wrong magic left open");
        let stalled_hello = connect_and_send(port, &[0, 0, 0, 9, 1]);
        assert!(
            closed_within(stalled_hello, slack),
            "{at}: stalled handshake left open"
        );
    }
    for r in &cluster.config.replicas {
        let mut half = hello.clone();
        half.extend_from_slice(&[0, 0, 0, 100, 1, 2, 3]);
        let stalled = connect_and_send(r.client_port, &half);
        assert!(
            closed_within(stalled, slack),
            "replica {}: stalled frame left open",
            r.id
        );
    }
    for batch in 0..10 {
        let conns: Vec<TcpStream> = (0..100)
            .filter_map(|i| {
                let (_, _, port) = ports[(batch * 100 + i) % ports.len()];
                TcpStream::connect(("127.0.0.1", port)).ok()
            })
            .collect();
        assert!(
            conns.len() >= 90,
            "batch {batch}: only {} connections",
            conns.len()
        );
        for conn in conns {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }

    stop.store(true, Ordering::Relaxed);
    let rounds = worker
        .join()
        .expect("the well-behaved client was served throughout");
    assert!(rounds > 0);
    assert!(cluster.all_running(), "a replica process died");
    for id in 0..REPLICAS as ReplicaId {
        assert!(cluster.status(id).is_some(), "replica {id} does not answer");
    }
}
