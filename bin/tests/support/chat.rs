//! Chat requests that must succeed, and the exactly-once check of what a user was shown.

// Each test program uses only some of these.
#![allow(dead_code)]

use chat_core::chat::{Message, Op, Reply};
use chat_core::ids::MessageId;
use chat_net::client::{Client, Incoming};
use std::collections::BTreeMap;
use std::sync::mpsc::Receiver;
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
pub fn next_message(incoming: &Receiver<Incoming>) -> Message {
    match incoming.recv_timeout(WAIT) {
        Ok(Incoming::Message(m)) => m,
        other => panic!("expected a pushed message, got {other:?}"),
    }
}

/// Collects what `receiver` is shown (pushed, then whatever `6|` still delivers) and checks
/// that it is exactly `acknowledged` (message id -> text), each message once.
pub fn assert_each_shown_once(
    receiver: &Client,
    incoming: &Receiver<Incoming>,
    acknowledged: BTreeMap<MessageId, String>,
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
