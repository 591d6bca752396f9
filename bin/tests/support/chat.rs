//! Chat requests that must succeed, and the exactly-once check of what a user was shown.

// Each test program uses only some of these.
#![allow(dead_code)]

use super::Cluster;
use chat_core::chat::{Message, Op, Reply};
use chat_core::ids::MessageId;
use chat_net::client::{Client, Incoming};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(15);

pub fn ok(client: &Client, op: Op) -> Reply {
    let reply = client
        .request(op.clone())
        .unwrap_or_else(|e| panic!("{op:?}: {e}"));
    assert!(!matches!(reply, Reply::Error(_)), "{op:?} -> {reply:?}");
    reply
}

pub fn create(client: &Client, user: &str) {
    assert_eq!(ok(client, Op::Create { user: user.into() }), Reply::Created);
}

pub fn login(client: &Client, user: &str) -> u64 {
    match ok(client, Op::Login { user: user.into() }) {
        Reply::LoggedIn { waiting, .. } => waiting,
        other => panic!("login {user}: {other:?}"),
    }
}

pub fn send(client: &Client, to: &str, text: &str) -> MessageId {
    let op = Op::Send {
        to: to.into(),
        text: text.into(),
    };
    match ok(client, op) {
        Reply::Sent { id } => id,
        other => panic!("send to {to}: {other:?}"),
    }
}

pub fn deliver(client: &Client) -> Vec<Message> {
    match ok(client, Op::Deliver) {
        Reply::Delivered { messages, .. } => messages,
        other => panic!("deliver: {other:?}"),
    }
}

/// The next pushed message, waiting at most `WAIT`.
pub fn next_message(incoming: &mpsc::Receiver<Incoming>) -> Message {
    match incoming.recv_timeout(WAIT) {
        Ok(Incoming::Message(m)) => m,
        other => panic!("expected a pushed message, got {other:?}"),
    }
}

/// Collects what `receiver` is shown (pushed, then whatever `6|` still delivers) and checks
/// that it is exactly `acknowledged` (message id -> text), each message once.
pub fn assert_each_shown_once(
    receiver: &Client,
    incoming: &mpsc::Receiver<Incoming>,
    acknowledged: Sent,
) {
    let mut shown: BTreeMap<MessageId, Vec<String>> = BTreeMap::new();
    let deadline = Instant::now() + WAIT;
    while shown.len() < acknowledged.len() && Instant::now() < deadline {
        if let Ok(Incoming::Message(m)) = incoming.recv_timeout(Duration::from_millis(100)) {
            shown.entry(m.id).or_default().push(m.text);
        }
    }
    for m in deliver(receiver) {
        shown.entry(m.id).or_default().push(m.text);
    }
    let expected: BTreeMap<MessageId, Vec<String>> = acknowledged
        .into_iter()
        .map(|(id, text)| (id, vec![text]))
        .collect();
    assert_eq!(
        shown, expected,
        "each acknowledged message shown exactly once"
    );
}

/// Acknowledged sends: message id -> text.
pub type Sent = BTreeMap<MessageId, String>;

/// Alice sends `count` messages to Bob from a thread of her own, 10 ms apart. `acked`
/// counts the acknowledged ones; the receiver gets her client back and what she sent when
/// all are.
pub fn alice_sends(
    alice: Client,
    count: usize,
) -> (Arc<AtomicU64>, mpsc::Receiver<(Client, Sent)>) {
    let acked = Arc::new(AtomicU64::new(0));
    let (done, result) = mpsc::channel();
    let counter = acked.clone();
    thread::spawn(move || {
        let mut texts = BTreeMap::new();
        for i in 0..count {
            let text = format!("message {i}");
            texts.insert(send(&alice, "bob", &text), text);
            counter.fetch_add(1, Ordering::Relaxed);
            thread::sleep(Duration::from_millis(10));
        }
        let _ = done.send((alice, texts));
    });
    (acked, result)
}

pub fn until_acked(acked: &AtomicU64, n: u64) {
    let deadline = Instant::now() + WAIT;
    while acked.load(Ordering::Relaxed) < n {
        assert!(
            Instant::now() < deadline,
            "only {} of the first {n} sends were acknowledged",
            acked.load(Ordering::Relaxed)
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// Alice and Bob, both logged in, each on a session of their own.
pub fn alice_and_bob(cluster: &Cluster) -> (Client, Client, mpsc::Receiver<Incoming>) {
    let (alice, _) = cluster.client();
    let (bob, bob_incoming) = cluster.client();
    create(&alice, "alice");
    create(&alice, "bob");
    login(&alice, "alice");
    login(&bob, "bob");
    (alice, bob, bob_incoming)
}
