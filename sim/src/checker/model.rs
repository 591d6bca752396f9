//! The sequential model: the committed log replayed, in order, through a fresh
//! [`Service`]. What it answers at each position is what a correct system must have answered.
//!
//! A login with a password is modelled at the client's level: the model does not trust the
//! op the primary's driver ordered for it, but decides it from the client's password and
//! its own state at that position (`passwords::model_op`), so a driver that decides from
//! stale state answers differently from the model.

use super::agreement::CommitLog;
use crate::history::Operation;
use crate::passwords::model_op;
use chat_core::chat::{Event, Limits, Op, Reply};
use chat_core::client::Ask;
use chat_core::durable::EntryBody;
use chat_core::ids::{ClientId, MessageId, OpIndex, RequestNo};
use chat_core::service::{Lookup, Request, Service};
use std::collections::{BTreeMap, BTreeSet};

/// A message the model accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentMessage {
    pub index: OpIndex,
    pub sender: ClientId,
    pub from: String,
    pub to: String,
    pub text: String,
    /// The recipient account was deleted after the send: the message may be gone.
    pub recipient_deleted: bool,
}

#[derive(Debug, Default)]
pub struct Model {
    /// Each request's first position in the log and the model's reply there.
    pub first: BTreeMap<(ClientId, RequestNo), (OpIndex, Option<Reply>)>,
    pub messages: BTreeMap<MessageId, SentMessage>,
    /// Every account each session was ever logged in as.
    pub logins: BTreeMap<ClientId, BTreeSet<String>>,
    /// Sessions the client table evicted, and the index of the request that first evicted
    /// them (a retried opening may bring a session back, to be evicted again).
    pub evicted: BTreeMap<ClientId, OpIndex>,
    /// The state digest after the last committed entry.
    pub digest: u32,
    pub last_index: OpIndex,
}

impl Model {
    /// Replays `log`, whose requests the clients called as `ops`.
    pub fn replay(log: &CommitLog, limits: &Limits, ops: &[Operation]) -> Model {
        let calls: BTreeMap<(ClientId, RequestNo), &Ask> = ops
            .iter()
            .map(|op| ((op.client, op.request), &op.op))
            .collect();
        let mut model = Model::default();
        let mut service = Service::new();
        let mut user_of: BTreeMap<ClientId, String> = BTreeMap::new();
        // Sessions with a row in the client table (an opening session may evict one).
        let mut sessions: BTreeSet<ClientId> = BTreeSet::new();
        for committed in log.entries() {
            let index = committed.entry.index;
            model.last_index = index;
            let logged = match &committed.entry.body {
                EntryBody::Request(request) => request,
                EntryBody::Time(now) => {
                    service.advance_clock(*now);
                    continue;
                }
                EntryBody::Noop => continue,
            };
            let request = &match calls.get(&(logged.client, logged.request)) {
                Some(call) => Request {
                    op: model_op(call, &logged.op, |user| service.account_lock(user)),
                    ..logged.clone()
                },
                None => logged.clone(),
            };
            let applied = service.apply(limits, index, request);
            let client = request.client;
            // Opening a session (a retried opening too: the row may have been evicted since)
            // may evict another session, and so may a reply that fills the table's bytes.
            sessions.retain(|&s| {
                let kept = service.lookup(s, 1) != Lookup::New;
                if !kept {
                    model.evicted.entry(s).or_insert(index);
                }
                kept
            });
            if applied.reply == Some(Reply::SessionOpened) {
                sessions.insert(client);
            }
            let key = (request.client, request.request);
            if model.first.contains_key(&key) {
                continue; // a duplicate: the client table answers it, nothing changes
            }
            model.first.insert(key, (index, applied.reply.clone()));
            match (&applied.reply, &request.op) {
                (Some(Reply::LoggedIn { user, .. }), _) => {
                    user_of.insert(client, user.clone());
                    model.logins.entry(client).or_default().insert(user.clone());
                }
                (Some(Reply::LoggedOut), _) => {
                    user_of.remove(&client);
                }
                (Some(Reply::Deleted), _) => {
                    if let Some(user) = user_of.remove(&client) {
                        for message in model.messages.values_mut() {
                            if message.to == user {
                                message.recipient_deleted = true;
                            }
                        }
                    }
                }
                (Some(Reply::Sent { id }), Op::Send { to, text }) => {
                    model.messages.insert(
                        *id,
                        SentMessage {
                            index,
                            sender: client,
                            from: user_of.get(&client).cloned().unwrap_or_default(),
                            to: to.clone(),
                            text: text.clone(),
                            recipient_deleted: false,
                        },
                    );
                }
                _ => {}
            }
            for event in &applied.events {
                if let Event::LoggedOut { client } = event {
                    user_of.remove(client);
                }
            }
        }
        model.digest = service.digest();
        model
    }
}
