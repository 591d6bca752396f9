//! The replicated service: the chat state machine plus the client table.
//!
//! The client table gives exactly-once semantics. Each client session (a [`ClientId`])
//! numbers its requests; its row keeps the latest request number, that request's reply and
//! the log index of its latest activity. A committed request is then:
//! - newer than the row's number: applied to the chat; its reply replaces the cached one;
//! - equal: a retry, answered with the cached reply and applied no second time;
//! - older: stale (the client has moved on and waits for nothing), answered with nothing.
//!
//! Numbers may skip; only "greater" matters. A session starts with `OpenSession` as request
//! 1, which creates its row. Any other request from a client without a row is answered
//! [`ChatError::SessionExpired`] and creates nothing.
//!
//! **Eviction.** The table holds at most `limits.max_sessions` rows and
//! `limits.max_client_table_bytes` bytes (cached replies plus [`ROW_BYTES`] a row). When a
//! new session opens in a full table, or a reply pushes the table over its bytes, rows are
//! dropped in this order, least recently active first (lowest last-activity index; ties by
//! lowest client id) within each group:
//! 1. idle sessions: no request for [`ACTIVE_WINDOW`] of the replicated clock;
//! 2. active sessions that are not logged in (losing one costs its client nothing but a new
//!    session id, which it opens by itself);
//! 3. the rest.
//!
//! So a client opening sessions as fast as it can churns through idle rows and its own bare
//! sessions, never through logged-in users who used their session within the window.
//! An evicted row's login ends ([`Chat::end_session`]). An evicted client finds out on its
//! next request, which is answered `SessionExpired`: it opens a new session and logs in
//! again. A reply it was still waiting for is lost, so a retried request whose outcome it
//! never saw may or may not have taken effect; the error tells it so.
//!
//! **Time.** The replicated state may only depend on the log, so the service has no clock of
//! its own: the primary puts its clock into the log (`EntryBody::Time`, at most about once a
//! second, before a request) and the service keeps the latest such time, never going back
//! ([`Service::advance_clock`]). Every replica applies the same entries, so every replica
//! evicts the same rows. NOTEBOOK.md discusses primaries whose clocks differ.
//!
//! **Vanished clients.** A session whose client went away keeps its login until either its
//! user logs in from another session (a takeover: the old session gets
//! [`Event::LoggedOut`]), or it is evicted (once idle, it goes before any active session).
//! So no session blocks its user forever.

use crate::chat::{AccountLock, Chat, ChatError, Event, Limits, Message, Op, QueueTotals, Reply};
use crate::codec::persistent;
use crate::codec::snapshot::{self, StateError};
use crate::ids::{ClientId, OpIndex, RequestNo};
use crate::time::{Duration, Instant};
use imbl::OrdMap;
use serde::{Deserialize, Serialize};

/// A session that made a request within this much replicated time is active: eviction
/// takes it only when no idle session is left.
pub const ACTIVE_WINDOW: Duration = Duration::from_secs(60);

/// What one row costs against `limits.max_client_table_bytes` besides its cached reply (the
/// map entry and the row's fixed fields, roughly).
pub const ROW_BYTES: u64 = 96;

/// A client's request, as it travels to the primary and sits in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub client: ClientId,
    pub request: RequestNo,
    pub op: Op,
}

/// The outcome of applying one committed request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The reply for the requesting client; `None` for a stale duplicate (a request older
    /// than the session's latest), which nobody waits for.
    pub reply: Option<Reply>,
    /// Pushes and notices for other sessions.
    pub events: Vec<Event>,
}

/// What the client table knows of a request before it is ordered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Not seen yet: order it.
    New,
    /// Already applied; this is its reply.
    Done(Reply),
    /// Older than the session's latest request: the client moved on, nobody waits for it.
    Stale,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    chat: Chat,
    /// Ordered by client id, so equal tables give equal snapshot bytes.
    #[serde(deserialize_with = "persistent::ord_map")]
    clients: OrdMap<ClientId, ClientRow>,
    /// The replicated clock: the latest time a primary put in the log.
    clock: Instant,
    /// Bytes of the table: [`ROW_BYTES`] and the cached reply's encoded size, per row.
    table_bytes: u64,
}

/// One client session's row in the client table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ClientRow {
    /// The latest request applied for this session.
    request: RequestNo,
    /// Its reply, sent again to a retry.
    reply: Reply,
    /// Log index of that request: the eviction order.
    last_active: OpIndex,
    /// The replicated clock when it was applied: idle or active.
    active_at: Instant,
    /// What the row counts against `limits.max_client_table_bytes`.
    bytes: u64,
}

/// Eviction groups, first evicted first (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Standing {
    Idle,
    Bare,
    Active,
}

fn row_bytes(reply: &Reply) -> u64 {
    let encoded = postcard::experimental::serialized_size(reply).unwrap_or(usize::MAX);
    ROW_BYTES.saturating_add(encoded as u64)
}

impl Service {
    pub fn new() -> Service {
        Service::default()
    }

    /// Applies the committed request at log position `index`. Duplicates are answered from the
    /// client table and change nothing.
    pub fn apply(&mut self, limits: &Limits, index: OpIndex, req: &Request) -> Applied {
        let Some(row) = self.clients.get(&req.client) else {
            return if req.op == Op::OpenSession && req.request == 1 {
                self.open_session(limits, index, req.client);
                Applied {
                    reply: Some(Reply::SessionOpened),
                    events: Vec::new(),
                }
            } else {
                Applied {
                    reply: Some(Reply::Error(ChatError::SessionExpired)),
                    events: Vec::new(),
                }
            };
        };
        if req.request == row.request {
            return Applied {
                reply: Some(row.reply.clone()),
                events: Vec::new(),
            };
        }
        if req.request < row.request {
            return Applied::default();
        }
        self.apply_to_chat(limits, index, req)
    }

    /// A deliberate bug, for showing that the simulator's checkers catch it (the replica's
    /// `Mutations::no_client_table`); never used otherwise. Every request is applied to the chat
    /// as if it were new, retries and stale ones included. The row is still created and
    /// updated, so the session exists and later requests are accepted.
    pub fn apply_without_client_table(
        &mut self,
        limits: &Limits,
        index: OpIndex,
        req: &Request,
    ) -> Applied {
        if !self.clients.contains_key(&req.client) {
            self.open_session(limits, index, req.client);
        }
        self.apply_to_chat(limits, index, req)
    }

    pub fn lookup(&self, client: ClientId, request: RequestNo) -> Lookup {
        match self.clients.get(&client) {
            Some(row) if request == row.request => Lookup::Done(row.reply.clone()),
            Some(row) if request < row.request => Lookup::Stale,
            _ => Lookup::New,
        }
    }

    /// See [`Chat::account_lock`].
    pub fn account_lock(&self, user: &str) -> AccountLock {
        self.chat.account_lock(user)
    }

    /// See [`Chat::queued`].
    pub fn queued(&self) -> QueueTotals {
        self.chat.queued()
    }

    /// See [`Chat::unacked_pushes`].
    pub fn unacked_pushes(&self, client: ClientId) -> Vec<Message> {
        self.chat.unacked_pushes(client)
    }

    /// Canonical bytes of the whole state (postcard; maps are ordered, so equal states give
    /// equal bytes), sealed with a checksum over the whole ([`snapshot::seal_state`]).
    pub fn snapshot(&self) -> Vec<u8> {
        // Sized first (a tenth of the encoding's time): growing the buffer by doubling
        // copied megabytes several times over, and the checksum's four bytes once more.
        // Into a slice: postcard's `Vec` flavours push through `Extend`, a tenth slower.
        let size = postcard::experimental::serialized_size(self).unwrap_or(0);
        let mut buf = vec![0; size + snapshot::STATE_CRC_BYTES];
        let used = postcard::to_slice(self, &mut buf[..size])
            .expect("in-memory encoding cannot fail")
            .len();
        buf.truncate(used);
        snapshot::seal_state(buf)
    }

    /// The state from [`snapshot`](Self::snapshot)'s bytes: refused unless the checksum over
    /// the whole matches (a snapshot assembled from chunks is checked here, before install)
    /// and every byte decodes.
    pub fn restore(bytes: &[u8]) -> Result<Service, StateError> {
        let body = snapshot::open_state(bytes)?;
        match postcard::take_from_bytes::<Service>(body) {
            Ok((mut service, [])) => {
                service.chat.share_senders();
                Ok(service)
            }
            Ok((_, rest)) => Err(StateError::Decode(format!(
                "{} bytes left over after the state",
                rest.len()
            ))),
            Err(e) => Err(StateError::Decode(e.to_string())),
        }
    }

    /// A short fingerprint of the state, for replica-agreement checks.
    pub fn digest(&self) -> u32 {
        crc32c::crc32c(&self.snapshot())
    }

    /// The primary's clock as written in the log: the replicated clock moves to it unless it
    /// is already later (a primary whose clock is behind cannot turn time back).
    pub fn advance_clock(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
    }

    /// Adds a row for a new session (request 1), evicting to stay within the limits.
    fn open_session(&mut self, limits: &Limits, index: OpIndex, client: ClientId) {
        while self.clients.len() >= limits.max_sessions as usize {
            let Some(victim) = self.eviction_victim(None) else {
                break;
            };
            self.evict(victim);
        }
        let reply = Reply::SessionOpened;
        let row = ClientRow {
            request: 1,
            bytes: row_bytes(&reply),
            reply,
            last_active: index,
            active_at: self.clock,
        };
        self.table_bytes += row.bytes;
        self.clients.insert(client, row);
        self.stay_within_bytes(limits, client);
    }

    /// Evicts rows other than `keep` while the table is over its bytes.
    fn stay_within_bytes(&mut self, limits: &Limits, keep: ClientId) {
        while self.table_bytes > limits.max_client_table_bytes {
            let Some(victim) = self.eviction_victim(Some(keep)) else {
                break;
            };
            self.evict(victim);
        }
    }

    /// The row to evict next, other than `keep`. O(rows): paid only when the table is full.
    fn eviction_victim(&self, keep: Option<ClientId>) -> Option<ClientId> {
        self.clients
            .iter()
            .filter(|(id, _)| Some(**id) != keep)
            .min_by_key(|(id, row)| (self.standing(**id, row), row.last_active, **id))
            .map(|(id, _)| *id)
    }

    fn standing(&self, client: ClientId, row: &ClientRow) -> Standing {
        if self.clock.saturating_sub(row.active_at) >= ACTIVE_WINDOW {
            Standing::Idle
        } else if !self.chat.is_logged_in(client) {
            Standing::Bare
        } else {
            Standing::Active
        }
    }

    fn evict(&mut self, client: ClientId) {
        if let Some(row) = self.clients.remove(&client) {
            self.table_bytes -= row.bytes;
            self.chat.end_session(client);
        }
    }

    /// Applies the request to the chat and records it as the session's latest.
    fn apply_to_chat(&mut self, limits: &Limits, index: OpIndex, req: &Request) -> Applied {
        let mut events = Vec::new();
        let reply = self.chat.apply(limits, req.client, &req.op, &mut events);
        let row = self
            .clients
            .get_mut(&req.client)
            .expect("the session has a row");
        row.request = row.request.max(req.request);
        let bytes = row_bytes(&reply);
        self.table_bytes = self.table_bytes - row.bytes + bytes;
        row.bytes = bytes;
        row.reply = reply.clone();
        row.last_active = index;
        row.active_at = self.clock;
        self.stay_within_bytes(limits, req.client);
        Applied {
            reply: Some(reply),
            events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ClientId = 10;
    const B: ClientId = 20;
    const C: ClientId = 30;

    struct World {
        service: Service,
        limits: Limits,
        index: OpIndex,
    }

    impl World {
        fn new(max_sessions: u32) -> World {
            World {
                service: Service::new(),
                limits: Limits {
                    max_sessions,
                    ..Limits::default()
                },
                index: 0,
            }
        }

        fn apply(&mut self, client: ClientId, request: RequestNo, op: Op) -> Applied {
            self.index += 1;
            self.service.apply(
                &self.limits,
                self.index,
                &Request {
                    client,
                    request,
                    op,
                },
            )
        }

        fn reply(&mut self, client: ClientId, request: RequestNo, op: Op) -> Option<Reply> {
            self.apply(client, request, op).reply
        }

        /// A time entry `secs` after the start.
        fn at(&mut self, secs: u64) {
            self.index += 1;
            self.service
                .advance_clock(Instant::ZERO + Duration::from_secs(secs));
        }

        fn has_row(&self, client: ClientId) -> bool {
            self.service.clients.contains_key(&client)
        }
    }

    fn create(user: &str) -> Op {
        Op::Create { user: user.into() }
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

    const EXPIRED: Option<Reply> = Some(Reply::Error(ChatError::SessionExpired));

    #[test]
    fn unknown_client_must_open_a_session_first() {
        let mut w = World::new(4);
        assert_eq!(w.reply(A, 2, create("ann")), EXPIRED);
        assert_eq!(w.reply(A, 1, create("ann")), EXPIRED);
        assert_eq!(w.reply(A, 2, Op::OpenSession), EXPIRED);
        assert_eq!(w.service, Service::new(), "no row, no account");
        assert_eq!(w.reply(A, 1, Op::OpenSession), Some(Reply::SessionOpened));
        assert_eq!(w.reply(A, 2, create("ann")), Some(Reply::Created));
    }

    #[test]
    fn retry_gets_the_cached_reply_and_changes_nothing() {
        let mut w = World::new(4);
        w.reply(A, 1, Op::OpenSession);
        w.reply(A, 2, create("ann"));
        w.reply(A, 3, login("ann"));
        assert_eq!(
            w.reply(A, 4, send("ann", "hi")),
            Some(Reply::Sent { id: 1 })
        );
        let before = w.service.clone();
        let retry = w.apply(A, 4, send("ann", "hi"));
        assert_eq!(
            retry,
            Applied {
                reply: Some(Reply::Sent { id: 1 }),
                events: vec![]
            }
        );
        assert_eq!(w.service, before);
        // A duplicate OpenSession is a retry too.
        w.reply(B, 1, Op::OpenSession);
        let before = w.service.clone();
        assert_eq!(w.reply(B, 1, Op::OpenSession), Some(Reply::SessionOpened));
        assert_eq!(w.service, before);
    }

    #[test]
    fn retried_deliver_returns_the_same_messages() {
        let mut w = World::new(4);
        w.reply(A, 1, Op::OpenSession);
        w.reply(A, 2, create("ann"));
        w.reply(A, 3, send("ann", "x")); // not logged in yet
        w.reply(A, 4, login("ann"));
        w.reply(A, 5, send("ann", "hi"));
        let first = w.reply(A, 6, Op::Deliver);
        assert!(matches!(&first, Some(Reply::Delivered { messages, .. }) if messages.len() == 1));
        assert_eq!(w.reply(A, 6, Op::Deliver), first);
        assert_eq!(
            w.reply(A, 7, Op::Deliver),
            Some(Reply::Delivered {
                messages: vec![],
                more: 0
            })
        );
    }

    #[test]
    fn stale_requests_get_no_reply_and_change_nothing() {
        let mut w = World::new(4);
        w.reply(A, 1, Op::OpenSession);
        w.reply(A, 5, create("ann"));
        let before = w.service.clone();
        assert_eq!(w.apply(A, 3, create("bob")), Applied::default());
        assert_eq!(w.apply(A, 1, Op::OpenSession), Applied::default());
        assert_eq!(w.service, before);
        // Numbers may skip.
        assert_eq!(w.reply(A, 9, create("bob")), Some(Reply::Created));
    }

    #[test]
    fn lookup() {
        let mut w = World::new(4);
        assert_eq!(w.service.lookup(A, 1), Lookup::New);
        w.reply(A, 1, Op::OpenSession);
        w.reply(A, 3, create("ann"));
        assert_eq!(w.service.lookup(A, 2), Lookup::Stale);
        assert_eq!(w.service.lookup(A, 3), Lookup::Done(Reply::Created));
        assert_eq!(w.service.lookup(A, 4), Lookup::New);
        assert_eq!(w.service.lookup(B, 7), Lookup::New);
    }

    #[test]
    fn full_table_evicts_the_least_recently_active_and_ends_its_login() {
        let mut w = World::new(2);
        w.reply(A, 1, Op::OpenSession);
        w.reply(B, 1, Op::OpenSession);
        w.reply(A, 2, create("ann"));
        w.reply(A, 3, login("ann"));
        w.reply(B, 2, create("bob"));
        // Both idle: the least recently active goes, logged in or not.
        w.at(60);
        // A was active at index 4, B at 5: A goes. (Indexes count the time entry too.)
        assert_eq!(w.reply(C, 1, Op::OpenSession), Some(Reply::SessionOpened));
        assert_eq!(w.reply(A, 4, Op::Deliver), EXPIRED);
        assert_eq!(w.service.lookup(A, 3), Lookup::New);
        // Ann's login ended with the eviction: nobody is pushed to.
        w.reply(B, 3, login("bob"));
        assert_eq!(w.apply(B, 4, send("ann", "hi")).events, vec![]);
        // A starts again; C (active at 6) is older than B (9), so C goes.
        assert_eq!(w.reply(A, 1, Op::OpenSession), Some(Reply::SessionOpened));
        assert_eq!(w.reply(C, 2, Op::Deliver), EXPIRED);
        assert!(matches!(
            w.reply(B, 5, Op::Deliver),
            Some(Reply::Delivered { .. })
        ));
    }

    #[test]
    fn idle_sessions_go_first_then_bare_ones_then_the_least_recently_active() {
        const D: ClientId = 40;
        let mut w = World::new(3);
        w.at(0);
        w.reply(A, 1, Op::OpenSession);
        w.reply(A, 2, create("ann"));
        w.reply(A, 3, login("ann"));
        w.reply(B, 1, Op::OpenSession);
        w.reply(B, 2, create("bob"));
        w.reply(B, 3, login("bob"));
        w.at(30);
        w.reply(C, 1, Op::OpenSession);
        w.at(61);
        // A and B idle (61 s), C active (31 s) and bare: A, the least recently active idle.
        w.reply(A + 1, 1, Op::OpenSession);
        assert!(!w.has_row(A) && w.has_row(B) && w.has_row(C));
        // B still idle: it goes before the bare sessions that are active.
        w.reply(A + 2, 1, Op::OpenSession);
        assert!(!w.has_row(B) && w.has_row(C));
        // Only active rows left: the bare ones, least recently active first (C).
        w.reply(C + 1, 2, create("cat"));
        w.reply(A + 1, 2, login("cat"));
        w.reply(D, 1, Op::OpenSession);
        assert!(!w.has_row(C), "C: bare, active 31 s ago");
        assert!(w.has_row(A + 1), "logged in and active: kept");
        w.reply(D + 1, 1, Op::OpenSession);
        assert!(!w.has_row(A + 2) && w.has_row(A + 1) && w.has_row(D));
        // Nothing but logged-in active rows besides the newcomer: least recently active.
        w.reply(D, 2, login("cat"));
        assert!(w.has_row(A + 1), "taken over: logged out, still a row");
        w.reply(A + 1, 3, create("dan"));
        w.reply(A + 1, 4, login("dan"));
        w.reply(D + 1, 2, create("eve"));
        w.reply(D + 1, 3, login("eve"));
        w.reply(D + 2, 1, Op::OpenSession);
        assert!(!w.has_row(D), "D, logged in as cat, least recently active");
        assert!(w.has_row(A + 1) && w.has_row(D + 1));
    }

    #[test]
    fn the_table_stays_within_its_bytes() {
        let mut w = World::new(100);
        let row = row_bytes(&Reply::SessionOpened);
        w.limits.max_client_table_bytes = 4 * row;
        for client in 1..=4 {
            w.reply(client, 1, Op::OpenSession);
        }
        assert_eq!(w.service.table_bytes, 4 * row);
        assert_eq!(w.service.clients.len(), 4);
        // A bigger reply pushes the table over: the least recently active other row goes.
        w.reply(
            4,
            2,
            Op::List {
                pattern: String::new(),
            },
        );
        assert!(!w.has_row(1));
        assert_eq!(w.service.clients.len(), 3);
        assert!(w.service.table_bytes <= w.limits.max_client_table_bytes);
        let counted: u64 = w.service.clients.values().map(|r| r.bytes).sum();
        assert_eq!(counted, w.service.table_bytes);
        // The accounting survives a snapshot.
        let restored = Service::restore(&w.service.snapshot()).unwrap();
        assert_eq!(restored.table_bytes, w.service.table_bytes);
    }

    #[test]
    fn eviction_ties_go_to_the_lowest_client_id() {
        let mut w = World::new(2);
        // Same activity index for both rows: only possible through the raw API.
        for client in [B, A] {
            let req = Request {
                client,
                request: 1,
                op: Op::OpenSession,
            };
            w.service.apply(&w.limits, 1, &req);
        }
        w.index = 1;
        w.reply(C, 1, Op::OpenSession);
        assert_eq!(w.service.lookup(A, 1), Lookup::New);
        assert_eq!(w.service.lookup(B, 1), Lookup::Done(Reply::SessionOpened));
    }

    #[test]
    fn without_client_table_a_retry_is_applied_twice() {
        let mut w = World::new(4);
        let limits = w.limits.clone();
        let mut raw = |request, op| {
            w.index += 1;
            let req = Request {
                client: A,
                request,
                op,
            };
            w.service
                .apply_without_client_table(&limits, w.index, &req)
                .reply
        };
        raw(1, Op::OpenSession);
        raw(2, create("ann"));
        raw(3, login("ann"));
        assert_eq!(raw(4, send("ann", "hi")), Some(Reply::Sent { id: 1 }));
        assert_eq!(raw(4, send("ann", "hi")), Some(Reply::Sent { id: 2 }));
        // An unknown client gets a row instead of SessionExpired.
        w.index += 1;
        let req = Request {
            client: B,
            request: 5,
            op: create("bob"),
        };
        let applied = w.service.apply_without_client_table(&limits, w.index, &req);
        assert_eq!(applied.reply, Some(Reply::Created));
        assert_eq!(w.service.lookup(B, 5), Lookup::Done(Reply::Created));
    }

    #[test]
    fn events_come_out_of_apply() {
        let mut w = World::new(4);
        w.reply(A, 1, Op::OpenSession);
        w.reply(B, 1, Op::OpenSession);
        w.reply(A, 2, create("ann"));
        w.reply(A, 3, login("ann"));
        assert_eq!(
            w.apply(B, 2, login("ann")).events,
            vec![Event::LoggedOut { client: A }]
        );
        let pushed = w.apply(A, 4, send("x", "y"));
        assert_eq!(pushed.reply, Some(Reply::Error(ChatError::NotLoggedIn)));
    }

    #[test]
    fn snapshot_restores_an_equal_service() {
        let mut w = World::new(4);
        w.reply(A, 1, Op::OpenSession);
        w.reply(A, 2, create("ann"));
        w.reply(A, 3, login("ann"));
        w.reply(A, 4, send("ann", "hi"));
        let restored = Service::restore(&w.service.snapshot()).unwrap();
        assert_eq!(restored, w.service);
        assert_eq!(restored.digest(), w.service.digest());
        assert_eq!(restored.lookup(A, 4), Lookup::Done(Reply::Sent { id: 1 }));
        assert!(Service::restore(&[0xff; 3]).is_err());
    }

    /// A snapshot reaches a lagging backup in chunks: the whole must be checked before it
    /// replaces the backup's state. A flipped byte in a message's text still decodes as a
    /// state (postcard has no checksum), so only the checksum over the whole catches it;
    /// so it does a chunk repeated, dropped or cut short.
    #[test]
    fn restore_refuses_state_that_is_not_whole() {
        let mut w = World::new(4);
        w.reply(A, 1, Op::OpenSession);
        w.reply(A, 2, create("ann"));
        w.reply(A, 3, login("ann"));
        w.reply(A, 4, send("ann", "a text that can take a flipped bit"));
        let sealed = w.service.snapshot();
        let at = sealed.windows(4).position(|b| b == b"text").unwrap();
        let mut flipped = sealed.clone();
        flipped[at] ^= 0x01;
        let body = &flipped[..flipped.len() - 4];
        assert!(
            postcard::from_bytes::<Service>(body).is_ok(),
            "decodes unchecked"
        );
        let err = Service::restore(&flipped).unwrap_err();
        assert!(matches!(err, StateError::Checksum { .. }), "{err}");
        let chunks: Vec<&[u8]> = sealed.chunks(7).collect();
        let repeated = [chunks[0], chunks[0], &sealed[7..]].concat();
        let dropped = [chunks[0], &sealed[14..]].concat();
        let short = &sealed[..sealed.len() - 1];
        for bad in [&repeated[..], &dropped[..], short] {
            assert!(Service::restore(bad).is_err());
        }
        // A valid checksum over bytes that are not a state is refused too.
        let junk = snapshot::seal_state(vec![0xff; 16]);
        assert!(matches!(
            Service::restore(&junk),
            Err(StateError::Decode(_))
        ));
    }
}
