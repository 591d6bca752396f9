//! No message lost, doubled or reordered.
//!
//! - Every message the model accepted (every committed `Send`, whether or not its sender saw
//!   the reply) is shown at the end of the run by a client logged in as its recipient,
//!   unless the recipient account was deleted after the send, or a `Deliver` took it and its
//!   client was told `SessionExpired` instead of the reply (the outcome was lost with the
//!   session: the design says so).
//! - What clients are shown is what was sent (same id, sender and text), to the right user.
//! - No text was accepted under two ids (a retried send applied twice), and no id comes in
//!   two `Delivered` replies (taking a queue empties it).
//! - Per sender, a recipient sees messages in send order within each `Delivered` reply and
//!   within the pushes of each connection. Across channels the order is not promised: the
//!   unacknowledged pushes are pushed again only when a session attaches, so after a login
//!   takeover or a change of primary a session may be pushed a newer message before an older
//!   unacknowledged one, and a queue taken with `Deliver` may hold messages older than pushes
//!   already shown.

use super::model::Model;
use super::{Checker, Failure};
use crate::history::{History, Kind};
use chat_core::chat::{ChatError, Message, Reply};
use chat_core::ids::{ClientId, MessageId};
use chat_core::time::Instant;
use std::collections::{BTreeMap, BTreeSet};

/// `drained`: the run ended with every account's queue taken, so every message must have
/// been shown; without it only what was shown is checked.
pub fn check(history: &History, model: &Model, now: Instant, drained: bool) -> Result<(), Failure> {
    let fail = |detail: String| Err(Failure::new(Checker::Messages, now, detail));

    let mut texts: BTreeMap<&str, MessageId> = BTreeMap::new();
    for (&id, message) in &model.messages {
        if let Some(other) = texts.insert(&message.text, id) {
            return fail(format!(
                "the text {:?} was accepted twice, as messages {other} and {id}",
                message.text
            ));
        }
    }

    // Is `message`, shown to `session`, the one sent, to a user that session logged in as?
    let genuine = |session: ClientId, message: &Message| -> Result<(), String> {
        let Some(sent) = model.messages.get(&message.id) else {
            return Err(format!("message {} was shown but never sent", message.id));
        };
        if sent.from != message.from || sent.text != message.text {
            return Err(format!(
                "message {} was shown as {:?} from {:?}, but {:?} sent {:?}",
                message.id, message.text, message.from, sent.from, sent.text
            ));
        }
        let logins = model.logins.get(&session);
        if !logins.is_some_and(|users| users.contains(&sent.to)) {
            return Err(format!(
                "message {} for {:?} was shown to session {session:x}, which never logged in as {:?}",
                message.id, sent.to, sent.to
            ));
        }
        Ok(())
    };

    let mut shown: BTreeSet<MessageId> = BTreeSet::new();
    let mut delivered: BTreeSet<MessageId> = BTreeSet::new();
    // Latest push per (connection, sender).
    let mut pushed_last: BTreeMap<(u64, &str), MessageId> = BTreeMap::new();
    for event in &history.events {
        match &event.kind {
            Kind::Return(Reply::Delivered { messages, .. }) => {
                let mut last: BTreeMap<&str, MessageId> = BTreeMap::new();
                for message in messages {
                    if let Err(e) = genuine(event.client, message) {
                        return fail(e);
                    }
                    if !delivered.insert(message.id) {
                        return fail(format!("message {} was delivered twice", message.id));
                    }
                    if let Some(&before) = last.get(message.from.as_str()) {
                        if before > message.id {
                            return fail(format!(
                                "a delivery lists message {} from {:?} after its later message {before}",
                                message.id, message.from
                            ));
                        }
                    }
                    last.insert(&message.from, message.id);
                    shown.insert(message.id);
                }
            }
            Kind::Push { conn, message } => {
                if let Err(e) = genuine(event.client, message) {
                    return fail(e);
                }
                shown.insert(message.id);
                let key = (*conn, message.from.as_str());
                if let Some(&before) = pushed_last.get(&key) {
                    if before > message.id {
                        return fail(format!(
                            "connection {conn} of session {:x} was pushed message {} from {:?} after its later message {before}",
                            event.client, message.id, message.from
                        ));
                    }
                }
                pushed_last.insert(key, message.id);
            }
            _ => {}
        }
    }

    // Messages taken by a `Deliver` whose reply its client never saw.
    let mut lost_with_session: BTreeSet<MessageId> = BTreeSet::new();
    for op in history.operations() {
        let expired = matches!(op.ret, Some((_, Reply::Error(ChatError::SessionExpired))));
        if let (true, Some((_, Some(Reply::Delivered { messages, .. })))) =
            (expired, model.first.get(&(op.client, op.request)))
        {
            lost_with_session.extend(messages.iter().map(|m| m.id));
        }
    }

    if !drained {
        return Ok(());
    }
    for (&id, sent) in &model.messages {
        let excused = sent.recipient_deleted || lost_with_session.contains(&id);
        if !excused && !shown.contains(&id) {
            return fail(format!(
                "message {id} ({:?} from {:?} to {:?}, committed at index {}) was never shown to its recipient",
                sent.text, sent.from, sent.to, sent.index
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::agreement::CommitLog;
    use chat_core::chat::{Limits, Op};
    use chat_core::durable::{Entry, EntryBody};
    use chat_core::service::Request;

    /// Commits `ops` (client, op) in order and returns the log.
    fn log_of(ops: &[(ClientId, Op)]) -> CommitLog {
        let mut log = CommitLog::new();
        let mut next: BTreeMap<ClientId, u64> = BTreeMap::new();
        for (i, (client, op)) in ops.iter().enumerate() {
            let n = next.entry(*client).or_insert(0);
            *n += 1;
            let entry = Entry {
                index: i as u64 + 1,
                view: 1,
                body: EntryBody::Request(Request {
                    client: *client,
                    request: *n,
                    op: op.clone(),
                }),
            };
            log.record(Instant(i as u64), 0, &entry).unwrap();
        }
        log
    }

    fn send(text: &str) -> Op {
        Op::Send {
            to: "bob".into(),
            text: text.into(),
        }
    }

    /// Ann (session 1) sends two messages to bob (session 2).
    fn two_sends() -> Model {
        let log = log_of(&[
            (1, Op::OpenSession),
            (2, Op::OpenSession),
            (1, Op::Create { user: "ann".into() }),
            (1, Op::Create { user: "bob".into() }),
            (1, Op::Login { user: "ann".into() }),
            (2, Op::Login { user: "bob".into() }),
            (1, send("t1")),
            (1, send("t2")),
        ]);
        Model::replay(&log, &Limits::default(), &[])
    }

    fn message(id: MessageId, text: &str) -> Message {
        Message {
            id,
            from: "ann".into(),
            text: text.into(),
        }
    }

    #[test]
    fn every_message_must_be_shown() {
        let model = two_sends();
        assert_eq!(model.messages.len(), 2);
        let mut history = History::default();
        history.pushed(Instant(1), 1, 2, 5, &message(1, "t1"));
        let failure = check(&history, &model, Instant(0), true).unwrap_err();
        assert!(failure.detail.contains("never shown"), "{failure}");
        history.call(Instant(2), 1, 2, 9, &Op::Deliver);
        history.ret(
            Instant(2),
            1,
            2,
            9,
            &Reply::Delivered {
                messages: vec![message(1, "t1"), message(2, "t2")],
                more: 0,
            },
        );
        check(&history, &model, Instant(0), true).unwrap();
    }

    #[test]
    fn doubled_reordered_and_wrong_messages_are_caught() {
        let model = two_sends();
        let deliver = |messages| {
            let mut history = History::default();
            history.call(Instant(2), 1, 2, 9, &Op::Deliver);
            history.ret(Instant(2), 1, 2, 9, &Reply::Delivered { messages, more: 0 });
            check(&history, &model, Instant(0), true)
        };
        let reordered = deliver(vec![message(2, "t2"), message(1, "t1")]).unwrap_err();
        assert!(reordered.detail.contains("after its later"), "{reordered}");
        let changed = deliver(vec![message(1, "t9"), message(2, "t2")]).unwrap_err();
        assert!(changed.detail.contains("was shown as"), "{changed}");
        let twice = {
            let mut history = History::default();
            for t in [2, 3] {
                history.call(Instant(t), 1, 2, t, &Op::Deliver);
                history.ret(
                    Instant(t),
                    1,
                    2,
                    t,
                    &Reply::Delivered {
                        messages: vec![message(1, "t1"), message(2, "t2")],
                        more: 0,
                    },
                );
            }
            check(&history, &model, Instant(0), true).unwrap_err()
        };
        assert!(twice.detail.contains("delivered twice"), "{twice}");
        // Shown to a session that never logged in as bob.
        let mut history = History::default();
        history.pushed(Instant(1), 0, 1, 5, &message(1, "t1"));
        let wrong = check(&history, &model, Instant(0), true).unwrap_err();
        assert!(wrong.detail.contains("never logged in"), "{wrong}");
    }

    #[test]
    fn pushes_are_ordered_per_connection_only() {
        let model = two_sends();
        let mut history = History::default();
        // Connection 5 is pushed t2; a later connection gets t1 and t2 again: fine.
        history.pushed(Instant(1), 1, 2, 5, &message(2, "t2"));
        history.pushed(Instant(2), 1, 2, 6, &message(1, "t1"));
        history.pushed(Instant(3), 1, 2, 6, &message(2, "t2"));
        check(&history, &model, Instant(0), true).unwrap();
        // On one connection, t1 after t2 is out of order.
        history.pushed(Instant(4), 1, 2, 5, &message(1, "t1"));
        let failure = check(&history, &model, Instant(0), true).unwrap_err();
        assert!(failure.detail.contains("after its later"), "{failure}");
    }

    #[test]
    fn a_message_accepted_twice_is_caught() {
        let log = log_of(&[
            (1, Op::OpenSession),
            (1, Op::Create { user: "bob".into() }),
            (1, Op::Login { user: "bob".into() }),
            (1, send("t1")),
            (1, send("t1")),
        ]);
        let model = Model::replay(&log, &Limits::default(), &[]);
        let failure = check(&History::default(), &model, Instant(0), true).unwrap_err();
        assert!(failure.detail.contains("accepted twice"), "{failure}");
    }

    #[test]
    fn messages_to_a_deleted_account_are_excused() {
        let log = log_of(&[
            (1, Op::OpenSession),
            (2, Op::OpenSession),
            (1, Op::Create { user: "bob".into() }),
            (1, Op::Create { user: "ann".into() }),
            (1, Op::Login { user: "ann".into() }),
            (2, Op::Login { user: "bob".into() }),
            (1, send("t1")),
            (2, Op::Delete),
        ]);
        let model = Model::replay(&log, &Limits::default(), &[]);
        assert!(model.messages[&1].recipient_deleted);
        check(&History::default(), &model, Instant(0), true).unwrap();
    }

    #[test]
    fn messages_taken_by_a_delivery_lost_with_its_session_are_excused() {
        let log = log_of(&[
            (1, Op::OpenSession),
            (2, Op::OpenSession),
            (1, Op::Create { user: "bob".into() }),
            (1, Op::Create { user: "ann".into() }),
            (1, Op::Login { user: "ann".into() }),
            (1, send("t1")),
            (2, Op::Login { user: "bob".into() }),
            (2, Op::Deliver),
        ]);
        let model = Model::replay(&log, &Limits::default(), &[]);
        let mut history = History::default();
        history.call(Instant(1), 1, 2, 3, &Op::Deliver);
        let lost = check(&history, &model, Instant(0), true).unwrap_err();
        assert!(lost.detail.contains("never shown"), "{lost}");
        history.ret(
            Instant(2),
            1,
            2,
            3,
            &Reply::Error(ChatError::SessionExpired),
        );
        check(&history, &model, Instant(0), true).unwrap();
    }
}
