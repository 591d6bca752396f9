//! The chat state: accounts with their message queues, and which session is logged in where.
//!
//! Sessions are client session ids ([`ClientId`]), not connections, so a login survives a
//! reconnection or a failover. At most one session is logged into an account: logging in
//! takes the account over and the previous session gets [`Event::LoggedOut`]. So a session
//! whose client vanished never blocks its user: the user logs in again from a new session,
//! or the client table evicts the silent session ([`Chat::end_session`]).
//!
//! A message always enters the recipient's queue. If the recipient is logged in, it is also
//! pushed ([`Event::Push`]) and marked as pushed; it stays queued until the client
//! acknowledges it ([`Op::Ack`]) or takes the whole queue ([`Op::Deliver`]). So delivery is
//! at least once on the wire, and exactly once to the user because the client ignores ids it
//! has already shown.
//!
//! Checks, in order (the first failing one is the reply):
//! - `List`: [`ChatError::PatternTooLong`], [`ChatError::BadPattern`].
//! - `Create`: [`ChatError::NameEmpty`], [`ChatError::NameTooLong`], [`ChatError::NameBadChar`],
//!   [`ChatError::NameTaken`], [`ChatError::TooManyAccounts`].
//! - `CreateWithPassword`: as `Create`.
//! - `Login`: [`ChatError::NoSuchUser`], then [`ChatError::BadCredentials`] if the account has
//!   a password.
//! - `LoginVerified`: [`ChatError::BadCredentials`] unless the account exists and still has
//!   the verified hash.
//! - `LoginRefused`: [`ChatError::BadCredentials`].
//! - `Logout`, `Delete`, `Deliver`, `Ack`: [`ChatError::NotLoggedIn`].
//! - `Send`: [`ChatError::NotLoggedIn`], [`ChatError::NoSuchUser`], [`ChatError::TextEmpty`],
//!   [`ChatError::TextTooLong`], [`ChatError::QueueFull`], [`ChatError::ServiceFull`].
//!
//! An account created with a password keeps only its salted slow hash (made by the driver,
//! see `crate::password::request`); the driver reads it back through [`Chat::account_lock`]
//! (under the read rule, `Replica::account_lock`) to verify a login before ordering
//! `LoginVerified`.
//!
//! A failed operation changes nothing. [`ChatError::SessionExpired`] comes from the client
//! table (`crate::service`), never from here.

use super::names::{check_name, check_text};
use super::pattern::NamePattern;
use super::{ChatError, Event, Limits, Message, Op, Reply};
use crate::codec::persistent;
use crate::ids::{ClientId, MessageId};
use imbl::{OrdMap, Vector};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The whole chat state. Only ordered containers, so equal states have equal snapshot bytes;
/// persistent ones (`imbl`), so that a clone for a snapshot costs next to nothing and the
/// copy is encoded off the event loop while this state moves on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chat {
    #[serde(deserialize_with = "persistent::ord_map")]
    accounts: OrdMap<String, Account>,
    /// Session -> the user it is logged in as. Every user here has an account. The name is
    /// shared with every message the session sends ([`Queued::from`]).
    #[serde(deserialize_with = "persistent::ord_map")]
    user_of: OrdMap<ClientId, Arc<str>>,
    /// User -> the one session logged in as that user: the inverse of `user_of`.
    #[serde(deserialize_with = "persistent::ord_map")]
    session_of: OrdMap<String, ClientId>,
    /// The id of the latest message; ids start at 1.
    last_id: MessageId,
    /// Bytes of every queued message ([`queued_size`]), kept against `limits.max_queued_bytes`.
    queued_bytes: u64,
}

/// What a queued message counts against `limits.max_queued_bytes`.
fn queued_size(from: &str, text: &str) -> u64 {
    (text.len() + from.len()) as u64
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Account {
    /// The PHC string of the password's hash; `None` for an open account.
    password_hash: Option<String>,
    /// Oldest first.
    #[serde(deserialize_with = "persistent::vector")]
    queue: Vector<Queued>,
}

/// How much waits in the message queues (see [`Chat::queued`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueTotals {
    pub messages: u64,
    pub bytes: u64,
}

/// What logging into an account takes, for the driver that verifies passwords.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountLock {
    Missing,
    /// No password: a plain `Login` will do.
    Open,
    /// Protected by this password hash (a PHC string).
    Protected(String),
}

/// A [`Message`] in a queue, kept small: most of the state is these. The sender's name is
/// one allocation shared by all of a session's messages, and the text holds no spare
/// capacity: 48 bytes in the queue and the text's on the heap, where a `Message` took 64 and
/// a name of its own (NOTEBOOK, session 9). Encoded as the `Message` fields, then `pushed`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Queued {
    id: MessageId,
    from: Arc<str>,
    text: Box<str>,
    /// Pushed to a session of the recipient, not yet acknowledged.
    pushed: bool,
}

impl Queued {
    fn message(&self) -> Message {
        Message {
            id: self.id,
            from: self.from.to_string(),
            text: self.text.to_string(),
        }
    }

    fn into_message(self) -> Message {
        Message {
            id: self.id,
            from: self.from.to_string(),
            text: self.text.into_string(),
        }
    }

    fn size(&self) -> u64 {
        queued_size(&self.from, &self.text)
    }
}

impl Chat {
    pub fn new() -> Chat {
        Chat::default()
    }

    /// Applies `op` for the session `client`; events for other sessions go to `events`.
    pub fn apply(
        &mut self,
        limits: &Limits,
        client: ClientId,
        op: &Op,
        events: &mut Vec<Event>,
    ) -> Reply {
        self.try_apply(limits, client, op, events)
            .unwrap_or_else(Reply::Error)
    }

    /// The session left the client table: it is logged out.
    pub fn end_session(&mut self, client: ClientId) {
        if let Some(user) = self.user_of.remove(&client) {
            self.session_of.remove(&*user);
        }
    }

    /// After decoding, which gives every message a name of its own: one allocation per
    /// sender's name again, as when the messages were sent.
    pub(crate) fn share_senders(&mut self) {
        let mut names: BTreeSet<Arc<str>> = self.user_of.values().cloned().collect();
        let users: Vec<String> = self.accounts.keys().cloned().collect();
        for user in users {
            let Some(account) = self.accounts.get_mut(&user) else {
                continue;
            };
            for queued in account.queue.iter_mut() {
                match names.get(&*queued.from) {
                    Some(shared) => queued.from = shared.clone(),
                    None => {
                        names.insert(queued.from.clone());
                    }
                }
            }
        }
    }

    /// Messages waiting in every queue (pushed or not, until acknowledged or delivered), and
    /// their bytes as counted against `limits.max_queued_bytes`. Walks the accounts: for
    /// sampled metrics, not for every request.
    pub fn queued(&self) -> QueueTotals {
        QueueTotals {
            messages: self.accounts.values().map(|a| a.queue.len() as u64).sum(),
            bytes: self.queued_bytes,
        }
    }

    /// Whether `client` is logged in.
    pub fn is_logged_in(&self, client: ClientId) -> bool {
        self.user_of.contains_key(&client)
    }

    /// Whether `user` exists, and with which password hash.
    pub fn account_lock(&self, user: &str) -> AccountLock {
        match self.accounts.get(user) {
            None => AccountLock::Missing,
            Some(Account {
                password_hash: None,
                ..
            }) => AccountLock::Open,
            Some(Account {
                password_hash: Some(hash),
                ..
            }) => AccountLock::Protected(hash.clone()),
        }
    }

    /// Messages pushed to `client`'s login and not yet acknowledged, oldest first: the driver
    /// pushes them again when the client reconnects.
    pub fn unacked_pushes(&self, client: ClientId) -> Vec<Message> {
        let Some(user) = self.user_of.get(&client) else {
            return Vec::new();
        };
        self.accounts[&**user]
            .queue
            .iter()
            .filter(|queued| queued.pushed)
            .map(Queued::message)
            .collect()
    }

    fn try_apply(
        &mut self,
        limits: &Limits,
        client: ClientId,
        op: &Op,
        events: &mut Vec<Event>,
    ) -> Result<Reply, ChatError> {
        match op {
            Op::OpenSession => Ok(Reply::SessionOpened),
            Op::List { pattern } => self.list(limits, pattern),
            Op::Create { user } => self.create(limits, user, None),
            Op::CreateWithPassword {
                user,
                password_hash,
            } => self.create(limits, user, Some(password_hash)),
            Op::Login { user } => {
                let account = self.accounts.get(user).ok_or(ChatError::NoSuchUser)?;
                if account.password_hash.is_some() {
                    return Err(ChatError::BadCredentials);
                }
                self.login(client, user, events)
            }
            Op::LoginVerified {
                user,
                password_hash,
            } => {
                let verified = self
                    .accounts
                    .get(user)
                    .is_some_and(|account| account.password_hash.as_ref() == Some(password_hash));
                if !verified {
                    return Err(ChatError::BadCredentials);
                }
                self.login(client, user, events)
            }
            Op::LoginRefused { .. } => Err(ChatError::BadCredentials),
            Op::Logout => {
                self.logged_in(client)?;
                self.end_session(client);
                Ok(Reply::LoggedOut)
            }
            Op::Delete => {
                let user = self.logged_in(client)?.to_owned();
                self.end_session(client);
                if let Some(account) = self.accounts.remove(&user) {
                    let freed: u64 = account.queue.iter().map(Queued::size).sum();
                    self.queued_bytes -= freed;
                }
                Ok(Reply::Deleted)
            }
            Op::Send { to, text } => self.send(limits, client, to, text, events),
            Op::Deliver => {
                let account = self.account_of(client)?;
                let take = account.queue.len().min(limits.deliver_max as usize);
                let rest = account.queue.split_off(take);
                let taken = std::mem::replace(&mut account.queue, rest);
                let more = account.queue.len() as u64;
                self.queued_bytes -= taken.iter().map(Queued::size).sum::<u64>();
                let messages: Vec<Message> = taken.into_iter().map(Queued::into_message).collect();
                Ok(Reply::Delivered { messages, more })
            }
            Op::Ack { ids } => {
                let account = self.account_of(client)?;
                let ids: BTreeSet<MessageId> = ids.iter().copied().collect();
                let mut freed = 0;
                account.queue.retain(|q| {
                    let acked = ids.contains(&q.id);
                    if acked {
                        freed += q.size();
                    }
                    !acked
                });
                self.queued_bytes -= freed;
                Ok(Reply::Acked)
            }
        }
    }

    fn list(&self, limits: &Limits, pattern: &str) -> Result<Reply, ChatError> {
        let pattern = NamePattern::compile(limits, pattern)?;
        let mut names = Vec::new();
        let mut total = 0u64;
        for name in self.accounts.keys().filter(|name| pattern.matches(name)) {
            if names.len() < limits.list_max as usize {
                names.push(name.clone());
            }
            total += 1;
        }
        Ok(Reply::Accounts { names, total })
    }

    fn create(
        &mut self,
        limits: &Limits,
        user: &str,
        password_hash: Option<&String>,
    ) -> Result<Reply, ChatError> {
        check_name(limits, user)?;
        if self.accounts.contains_key(user) {
            return Err(ChatError::NameTaken);
        }
        if self.accounts.len() >= limits.max_accounts as usize {
            return Err(ChatError::TooManyAccounts {
                max: limits.max_accounts,
            });
        }
        let account = Account {
            password_hash: password_hash.cloned(),
            queue: Vector::new(),
        };
        self.accounts.insert(user.to_owned(), account);
        Ok(Reply::Created)
    }

    /// Logs `client` in as `user`, whose account exists and whose password (if any) checked.
    fn login(
        &mut self,
        client: ClientId,
        user: &str,
        events: &mut Vec<Event>,
    ) -> Result<Reply, ChatError> {
        let waiting = self
            .accounts
            .get(user)
            .ok_or(ChatError::NoSuchUser)?
            .queue
            .len() as u64;
        if let Some(&previous) = self.session_of.get(user) {
            if previous != client {
                self.end_session(previous);
                events.push(Event::LoggedOut { client: previous });
            }
        }
        self.end_session(client);
        self.user_of.insert(client, Arc::from(user));
        self.session_of.insert(user.to_owned(), client);
        Ok(Reply::LoggedIn {
            user: user.to_owned(),
            waiting,
        })
    }

    fn send(
        &mut self,
        limits: &Limits,
        client: ClientId,
        to: &str,
        text: &str,
        events: &mut Vec<Event>,
    ) -> Result<Reply, ChatError> {
        let from = self
            .user_of
            .get(&client)
            .cloned()
            .ok_or(ChatError::NotLoggedIn)?;
        let recipient = self.accounts.get_mut(to).ok_or(ChatError::NoSuchUser)?;
        check_text(limits, text)?;
        if recipient.queue.len() >= limits.max_queue as usize {
            return Err(ChatError::QueueFull {
                max: limits.max_queue,
            });
        }
        let size = queued_size(&from, text);
        if self.queued_bytes + size > limits.max_queued_bytes {
            return Err(ChatError::ServiceFull {
                max: limits.max_queued_bytes,
            });
        }
        self.last_id += 1;
        self.queued_bytes += size;
        let session = self.session_of.get(to).copied();
        let queued = Queued {
            id: self.last_id,
            from,
            text: text.into(),
            pushed: session.is_some(),
        };
        if let Some(session) = session {
            events.push(Event::Push {
                client: session,
                message: queued.message(),
            });
        }
        recipient.queue.push_back(queued);
        Ok(Reply::Sent { id: self.last_id })
    }

    fn logged_in(&self, client: ClientId) -> Result<&str, ChatError> {
        self.user_of
            .get(&client)
            .map(|user| &**user)
            .ok_or(ChatError::NotLoggedIn)
    }

    fn account_of(&mut self, client: ClientId) -> Result<&mut Account, ChatError> {
        let user = self.user_of.get(&client).ok_or(ChatError::NotLoggedIn)?;
        Ok(self
            .accounts
            .get_mut(&**user)
            .expect("a logged-in user has an account"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ClientId = 1;
    const B: ClientId = 2;

    fn limits() -> Limits {
        Limits {
            max_name_bytes: 8,
            max_text_chars: 5,
            max_pattern_bytes: 16,
            list_max: 2,
            max_queue: 2,
            max_accounts: 3,
            ..Limits::default()
        }
    }

    /// A chat with the given accounts, and a helper that applies ops and returns the reply
    /// and events.
    struct World {
        chat: Chat,
        limits: Limits,
    }

    impl World {
        fn with_users(users: &[&str]) -> World {
            let mut world = World {
                chat: Chat::new(),
                limits: limits(),
            };
            for user in users {
                assert_eq!(
                    world.ok(
                        A,
                        Op::Create {
                            user: user.to_string()
                        }
                    ),
                    Reply::Created
                );
            }
            world
        }

        fn run(&mut self, client: ClientId, op: Op) -> (Reply, Vec<Event>) {
            let mut events = Vec::new();
            let reply = self.chat.apply(&self.limits, client, &op, &mut events);
            (reply, events)
        }

        /// Applies an op that must emit no events.
        fn ok(&mut self, client: ClientId, op: Op) -> Reply {
            let (reply, events) = self.run(client, op);
            assert_eq!(events, []);
            reply
        }

        /// Applies an op that must fail, and checks that it changed nothing.
        fn err(&mut self, client: ClientId, op: Op) -> ChatError {
            let before = self.chat.clone();
            let (reply, events) = self.run(client, op);
            assert_eq!(events, []);
            assert_eq!(self.chat, before, "a failed op changed the state");
            match reply {
                Reply::Error(e) => e,
                other => panic!("expected an error, got {other:?}"),
            }
        }
    }

    fn login(user: &str) -> Op {
        Op::Login { user: user.into() }
    }

    fn send(to: &str, text: &str) -> Op {
        Op::Send {
            to: to.into(),
            text: text.into(),
        }
    }

    fn list(pattern: &str) -> Op {
        Op::List {
            pattern: pattern.into(),
        }
    }

    fn msg(id: MessageId, from: &str, text: &str) -> Message {
        Message {
            id,
            from: from.into(),
            text: text.into(),
        }
    }

    #[test]
    fn open_session_does_nothing() {
        let mut w = World::with_users(&["ann"]);
        let before = w.chat.clone();
        assert_eq!(w.ok(A, Op::OpenSession), Reply::SessionOpened);
        assert_eq!(w.chat, before);
    }

    #[test]
    fn list_is_anchored_ordered_and_bounded() {
        let mut w = World::with_users(&["bob", "ann", "abe"]);
        let accounts = |names: &[&str], total| Reply::Accounts {
            names: names.iter().map(|n| n.to_string()).collect(),
            total,
        };
        assert_eq!(w.ok(A, list("")), accounts(&["abe", "ann"], 3));
        assert_eq!(w.ok(A, list("a.*")), accounts(&["abe", "ann"], 2));
        assert_eq!(w.ok(A, list("b")), accounts(&[], 0));
        assert_eq!(w.ok(A, list(".*b.*")), accounts(&["abe", "bob"], 2));
    }

    #[test]
    fn list_errors() {
        let mut w = World::with_users(&[]);
        assert_eq!(
            w.err(A, list(&"a".repeat(17))),
            ChatError::PatternTooLong { max: 16 }
        );
        assert!(matches!(w.err(A, list("(")), ChatError::BadPattern(_)));
    }

    #[test]
    fn create_errors_in_order() {
        let mut w = World::with_users(&["ann", "bob"]);
        assert_eq!(
            w.err(A, Op::Create { user: "".into() }),
            ChatError::NameEmpty
        );
        let long = Op::Create {
            user: "a b|cdefgh".into(),
        };
        assert_eq!(w.err(A, long), ChatError::NameTooLong { max: 8 });
        assert_eq!(
            w.err(A, Op::Create { user: "a|b".into() }),
            ChatError::NameBadChar
        );
        assert_eq!(
            w.err(A, Op::Create { user: "ann".into() }),
            ChatError::NameTaken
        );
        assert_eq!(w.ok(A, Op::Create { user: "cy".into() }), Reply::Created);
        // Full: a taken name is still reported as taken.
        assert_eq!(
            w.err(A, Op::Create { user: "ann".into() }),
            ChatError::NameTaken
        );
        let fourth = Op::Create { user: "dee".into() };
        assert_eq!(w.err(A, fourth), ChatError::TooManyAccounts { max: 3 });
    }

    #[test]
    fn create_does_not_log_in() {
        let mut w = World::with_users(&["ann"]);
        assert_eq!(w.err(A, Op::Deliver), ChatError::NotLoggedIn);
    }

    #[test]
    fn login_unknown_user() {
        let mut w = World::with_users(&["ann"]);
        assert_eq!(w.err(A, login("bob")), ChatError::NoSuchUser);
    }

    #[test]
    fn login_takes_the_account_over() {
        let mut w = World::with_users(&["ann"]);
        w.ok(A, login("ann"));
        let (reply, events) = w.run(B, login("ann"));
        assert_eq!(
            reply,
            Reply::LoggedIn {
                user: "ann".into(),
                waiting: 0
            }
        );
        assert_eq!(events, [Event::LoggedOut { client: A }]);
        assert_eq!(w.err(A, Op::Deliver), ChatError::NotLoggedIn);
        assert_eq!(
            w.ok(B, Op::Deliver),
            Reply::Delivered {
                messages: vec![],
                more: 0
            }
        );
        // Logging in again from the same session is no takeover.
        assert_eq!(
            w.ok(B, login("ann")),
            Reply::LoggedIn {
                user: "ann".into(),
                waiting: 0
            }
        );
    }

    #[test]
    fn login_as_another_user_leaves_the_first() {
        let mut w = World::with_users(&["ann", "bob"]);
        w.ok(A, login("ann"));
        w.ok(A, login("bob"));
        // Ann is free: B logs in without taking over anybody.
        w.ok(B, login("ann"));
        let (_, events) = w.run(B, send("ann", "hi"));
        assert_eq!(
            events,
            [Event::Push {
                client: B,
                message: msg(1, "ann", "hi")
            }]
        );
        assert_eq!(w.chat.unacked_pushes(A), []);
        assert_eq!(w.chat.unacked_pushes(B), [msg(1, "ann", "hi")]);
    }

    #[test]
    fn login_reports_waiting_messages() {
        let mut w = World::with_users(&["ann", "bob"]);
        w.ok(A, login("ann"));
        w.ok(A, send("bob", "one"));
        w.ok(A, send("bob", "two"));
        assert_eq!(
            w.ok(B, login("bob")),
            Reply::LoggedIn {
                user: "bob".into(),
                waiting: 2
            }
        );
    }

    #[test]
    fn operations_that_need_a_login() {
        let mut w = World::with_users(&["ann"]);
        for op in [
            Op::Logout,
            Op::Delete,
            send("ann", "hi"),
            Op::Deliver,
            Op::Ack { ids: vec![1] },
        ] {
            assert_eq!(w.err(A, op), ChatError::NotLoggedIn);
        }
    }

    #[test]
    fn logout_ends_the_login_only() {
        let mut w = World::with_users(&["ann"]);
        w.ok(A, login("ann"));
        assert_eq!(w.ok(A, Op::Logout), Reply::LoggedOut);
        assert_eq!(w.err(A, Op::Logout), ChatError::NotLoggedIn);
        assert_eq!(
            w.ok(A, login("ann")),
            Reply::LoggedIn {
                user: "ann".into(),
                waiting: 0
            }
        );
    }

    #[test]
    fn queued_bytes_are_bounded_and_freed_by_deliver_ack_and_delete() {
        let mut w = World::with_users(&["ann", "bob"]);
        w.limits.max_queued_bytes = 10; // "bob" + "hi" = 5 bytes a message
        w.ok(B, login("bob"));
        w.ok(B, send("ann", "hi"));
        w.ok(B, send("ann", "hi"));
        assert_eq!(
            w.err(B, send("bob", "hi")),
            ChatError::ServiceFull { max: 10 }
        );
        w.ok(A, login("ann"));
        w.ok(A, Op::Deliver);
        assert_eq!(
            w.chat.queued_bytes, 0,
            "delivered messages free their bytes"
        );
        let (_, events) = w.run(A, send("bob", "hi")); // bob is logged in: pushed
        let Some(Event::Push { message, .. }) = events.first() else {
            panic!("{events:?}")
        };
        assert_eq!(w.chat.queued_bytes, 5);
        w.ok(
            B,
            Op::Ack {
                ids: vec![message.id],
            },
        );
        assert_eq!(
            w.chat.queued_bytes, 0,
            "an acknowledged message frees its bytes"
        );
        w.ok(A, Op::Logout);
        w.ok(B, send("ann", "hi"));
        w.ok(A, login("ann"));
        w.ok(A, Op::Delete);
        assert_eq!(w.chat.queued_bytes, 0, "a deleted account frees its queue");
    }

    #[test]
    fn delete_removes_account_queue_and_login() {
        let mut w = World::with_users(&["ann", "bob"]);
        w.ok(B, login("bob"));
        w.ok(B, send("ann", "hi"));
        w.ok(A, login("ann"));
        assert_eq!(w.ok(A, Op::Delete), Reply::Deleted);
        assert_eq!(w.err(A, Op::Deliver), ChatError::NotLoggedIn);
        assert_eq!(w.err(B, send("ann", "hi")), ChatError::NoSuchUser);
        assert_eq!(w.err(A, login("ann")), ChatError::NoSuchUser);
        // The name is free again, with an empty queue.
        w.ok(A, Op::Create { user: "ann".into() });
        assert_eq!(
            w.ok(A, login("ann")),
            Reply::LoggedIn {
                user: "ann".into(),
                waiting: 0
            }
        );
    }

    #[test]
    fn send_errors_in_order() {
        let mut w = World::with_users(&["ann", "bob"]);
        w.ok(A, login("ann"));
        assert_eq!(w.err(A, send("cy", "")), ChatError::NoSuchUser);
        assert_eq!(w.err(A, send("bob", "")), ChatError::TextEmpty);
        assert_eq!(
            w.err(A, send("bob", "sixsix")),
            ChatError::TextTooLong { max: 5 }
        );
        assert_eq!(w.ok(A, send("bob", "ééééé")), Reply::Sent { id: 1 });
        assert_eq!(w.ok(A, send("bob", "b")), Reply::Sent { id: 2 });
        assert_eq!(w.err(A, send("bob", "")), ChatError::TextEmpty);
        assert_eq!(w.err(A, send("bob", "c")), ChatError::QueueFull { max: 2 });
    }

    #[test]
    fn send_queues_for_absent_and_pushes_to_present() {
        let mut w = World::with_users(&["ann", "bob"]);
        w.ok(A, login("ann"));
        assert_eq!(w.ok(A, send("bob", "one")), Reply::Sent { id: 1 });
        w.ok(B, login("bob"));
        let (reply, events) = w.run(A, send("bob", "two"));
        assert_eq!(reply, Reply::Sent { id: 2 });
        assert_eq!(
            events,
            [Event::Push {
                client: B,
                message: msg(2, "ann", "two")
            }]
        );
        // Only the pushed one is an unacknowledged push; both stay queued.
        assert_eq!(w.chat.unacked_pushes(B), [msg(2, "ann", "two")]);
        assert_eq!(w.chat.unacked_pushes(A), []);
        assert_eq!(
            w.ok(B, Op::Deliver),
            Reply::Delivered {
                messages: vec![msg(1, "ann", "one"), msg(2, "ann", "two")],
                more: 0
            }
        );
        assert_eq!(
            w.ok(B, Op::Deliver),
            Reply::Delivered {
                messages: vec![],
                more: 0
            }
        );
        assert_eq!(w.chat.unacked_pushes(B), []);
    }

    #[test]
    fn send_to_self_is_pushed_to_self() {
        let mut w = World::with_users(&["ann"]);
        w.ok(A, login("ann"));
        let (_, events) = w.run(A, send("ann", "me"));
        assert_eq!(
            events,
            [Event::Push {
                client: A,
                message: msg(1, "ann", "me")
            }]
        );
    }

    #[test]
    fn ack_removes_only_the_given_ids() {
        let limits = Limits {
            max_queue: 10,
            ..limits()
        };
        let mut w = World {
            limits,
            ..World::with_users(&["ann", "bob"])
        };
        w.ok(A, login("ann"));
        w.ok(B, login("bob"));
        for text in ["1", "2", "3"] {
            w.run(A, send("bob", text));
        }
        assert_eq!(
            w.ok(
                B,
                Op::Ack {
                    ids: vec![1, 3, 99]
                }
            ),
            Reply::Acked
        );
        assert_eq!(w.chat.unacked_pushes(B), [msg(2, "ann", "2")]);
        assert_eq!(
            w.ok(B, Op::Deliver),
            Reply::Delivered {
                messages: vec![msg(2, "ann", "2")],
                more: 0
            }
        );
    }

    #[test]
    fn end_session_logs_out() {
        let mut w = World::with_users(&["ann"]);
        w.ok(A, login("ann"));
        w.chat.end_session(A);
        assert_eq!(w.err(A, Op::Deliver), ChatError::NotLoggedIn);
        // The account is free: B logs in without a takeover.
        assert_eq!(
            w.ok(B, login("ann")),
            Reply::LoggedIn {
                user: "ann".into(),
                waiting: 0
            }
        );
        w.chat.end_session(A);
    }

    fn create_with(user: &str, hash: &str) -> Op {
        Op::CreateWithPassword {
            user: user.into(),
            password_hash: hash.into(),
        }
    }

    fn login_verified(user: &str, hash: &str) -> Op {
        Op::LoginVerified {
            user: user.into(),
            password_hash: hash.into(),
        }
    }

    #[test]
    fn create_with_password_checks_like_create_and_keeps_the_hash() {
        let mut w = World::with_users(&["ann", "bob"]);
        assert_eq!(w.err(A, create_with("", "h")), ChatError::NameEmpty);
        assert_eq!(w.err(A, create_with("a|b", "h")), ChatError::NameBadChar);
        assert_eq!(w.err(A, create_with("ann", "h")), ChatError::NameTaken);
        assert_eq!(w.ok(A, create_with("cy", "h1")), Reply::Created);
        assert_eq!(
            w.err(A, create_with("dee", "h")),
            ChatError::TooManyAccounts { max: 3 }
        );
        assert_eq!(
            w.chat.account_lock("cy"),
            AccountLock::Protected("h1".into())
        );
        assert_eq!(w.chat.account_lock("ann"), AccountLock::Open);
        assert_eq!(w.chat.account_lock("dee"), AccountLock::Missing);
        // Creating does not log in.
        assert_eq!(w.err(A, Op::Deliver), ChatError::NotLoggedIn);
    }

    #[test]
    fn a_protected_account_refuses_a_plain_login_uniformly() {
        let mut w = World::with_users(&[]);
        w.ok(A, create_with("ann", "h1"));
        assert_eq!(w.err(A, login("ann")), ChatError::BadCredentials);
        // Unknown users keep the original answer to a plain login.
        assert_eq!(w.err(A, login("bob")), ChatError::NoSuchUser);
    }

    #[test]
    fn login_verified_needs_the_very_hash_it_verified() {
        let mut w = World::with_users(&["bob"]);
        w.ok(A, create_with("ann", "h1"));
        assert_eq!(
            w.err(A, login_verified("ann", "h2")),
            ChatError::BadCredentials
        );
        assert_eq!(
            w.err(A, login_verified("cy", "h1")),
            ChatError::BadCredentials
        );
        // An open account has no hash to match.
        assert_eq!(
            w.err(A, login_verified("bob", "h1")),
            ChatError::BadCredentials
        );
        w.ok(B, login("bob"));
        w.ok(B, send("ann", "hi"));
        assert_eq!(
            w.ok(A, login_verified("ann", "h1")),
            Reply::LoggedIn {
                user: "ann".into(),
                waiting: 1
            }
        );
        // It takes the account over like any login.
        let (reply, events) = w.run(B, login_verified("ann", "h1"));
        assert!(matches!(reply, Reply::LoggedIn { .. }));
        assert_eq!(events, [Event::LoggedOut { client: A }]);
    }

    #[test]
    fn a_refused_login_fails_whatever_the_account() {
        let mut w = World::with_users(&["bob"]);
        w.ok(A, create_with("ann", "h1"));
        for user in ["ann", "bob", "cy"] {
            let refused = Op::LoginRefused { user: user.into() };
            assert_eq!(w.err(A, refused), ChatError::BadCredentials);
        }
    }

    #[test]
    fn a_delete_and_recreate_between_verify_and_apply_fails_safely() {
        let mut w = World::with_users(&[]);
        w.ok(A, create_with("ann", "old"));
        // The driver verified the password against "old"; before its LoginVerified is
        // applied, the owner deletes the account and someone re-creates the name.
        w.ok(B, login_verified("ann", "old"));
        w.ok(B, Op::Delete);
        assert_eq!(
            w.err(A, login_verified("ann", "old")),
            ChatError::BadCredentials
        );
        w.ok(B, create_with("ann", "new"));
        assert_eq!(
            w.err(A, login_verified("ann", "old")),
            ChatError::BadCredentials
        );
        // Re-created without a password: still no way in with the stale verification.
        w.ok(B, login_verified("ann", "new"));
        w.ok(B, Op::Delete);
        w.ok(B, Op::Create { user: "ann".into() });
        assert_eq!(
            w.err(A, login_verified("ann", "old")),
            ChatError::BadCredentials
        );
        assert_eq!(w.chat.account_lock("ann"), AccountLock::Open);
    }

    #[test]
    fn snapshot_bytes_depend_only_on_state() {
        let mut one = World::with_users(&["bob", "ann"]);
        let mut two = World::with_users(&["ann", "bob"]);
        one.ok(A, login("ann"));
        two.ok(A, login("ann"));
        assert_eq!(
            postcard::to_stdvec(&one.chat).unwrap(),
            postcard::to_stdvec(&two.chat).unwrap()
        );
        let restored: Chat =
            postcard::from_bytes(&postcard::to_stdvec(&one.chat).unwrap()).unwrap();
        assert_eq!(restored, one.chat);
    }

    /// A queued message encodes as its `Message`'s fields then `pushed`, and decoding shares
    /// each sender's name again.
    #[test]
    fn queued_messages_encode_as_messages_and_share_their_sender_after_decoding() {
        let mut w = World::with_users(&["ann", "bob"]);
        w.ok(A, login("ann"));
        w.ok(A, send("bob", "hi"));
        w.ok(A, send("bob", "yo"));
        let queue = &w.chat.accounts["bob"].queue;
        assert!(Arc::ptr_eq(&queue[0].from, &queue[1].from));
        #[derive(Serialize)]
        struct Before {
            message: Message,
            pushed: bool,
        }
        let before = Before {
            message: queue[0].message(),
            pushed: false,
        };
        assert_eq!(
            postcard::to_allocvec(&queue[0]).unwrap(),
            postcard::to_allocvec(&before).unwrap()
        );
        let mut decoded: Chat =
            postcard::from_bytes(&postcard::to_allocvec(&w.chat).unwrap()).unwrap();
        let queue = &decoded.accounts["bob"].queue;
        assert!(!Arc::ptr_eq(&queue[0].from, &queue[1].from));
        decoded.share_senders();
        assert_eq!(decoded, w.chat);
        let queue = &decoded.accounts["bob"].queue;
        assert!(Arc::ptr_eq(&queue[0].from, &queue[1].from));
        assert!(Arc::ptr_eq(&queue[0].from, &decoded.user_of[&A]));
    }
}
