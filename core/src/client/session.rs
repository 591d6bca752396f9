//! The session state machine (see the module above for what it does).

use super::{
    Answer, Ask, Closed, ConnEvent, ConnId, Failure, Notice, Options, Output, Ticket, Tried,
    Waiting,
};
use crate::chat::{ChatError, Op, Reply};
use crate::ids::{ClientId, MessageId, ReplicaId, RequestNo};
use crate::time::{Duration, Instant};
use crate::wire::ServerToClient;
use std::collections::{BTreeSet, VecDeque};
use std::fmt;

/// Most message ids acknowledged by one `Op::Ack` (keeps the request far below the limit).
const ACK_BATCH: usize = 1024;

/// Why a request is in flight, and who waits for its reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    /// Request 1 of the session; the user waits for it only when they asked for it.
    Open(Option<Ticket>),
    User(Ticket),
    /// Acknowledges pushed messages; with no ids, probes a new connection (see
    /// `Session::verified`) so that pushes flow again after a failover while the user idles.
    Own,
}

impl Purpose {
    fn ticket(self) -> Option<Ticket> {
        match self {
            Purpose::Open(ticket) => ticket,
            Purpose::User(ticket) => Some(ticket),
            Purpose::Own => None,
        }
    }
}

/// The one request outstanding.
#[derive(Debug)]
pub struct InFlight {
    pub client: ClientId,
    pub request: RequestNo,
    pub ask: Ask,
    pub issued_at: Instant,
    /// How many times it was written to a connection.
    pub attempts: u32,
    purpose: Purpose,
    give_up_at: Option<Instant>,
    /// Try the next replica if no reply has come by then (set once sent on the connection).
    reply_due: Option<Instant>,
    /// The connection it was last written on: a new connection gets it again.
    sent_on: Option<ConnId>,
    /// The connection it was first written on: a reply to a request sent on one connection
    /// only was computed after that connection's `Attach` (not taken from the client table).
    first_sent_on: Option<ConnId>,
}

#[derive(Debug)]
enum Link {
    Connecting { due: Instant },
    Open,
}

#[derive(Debug)]
struct Conn {
    id: ConnId,
    link: Link,
}

pub struct Session {
    /// The replicas' ids in the configured order; `target` indexes it.
    replicas: Vec<ReplicaId>,
    options: Options,
    /// Fresh random session ids (the driver's randomness: the core has none of its own).
    fresh_id: Box<dyn FnMut() -> ClientId + Send>,

    client: ClientId,
    next_request: RequestNo,
    opened: bool,
    logged_in: bool,

    conn: Option<Conn>,
    next_conn: ConnId,
    target: usize,
    /// Attempts since the last reply, and the pause after the next full round of replicas.
    tries: usize,
    backoff: Duration,
    paused_until: Option<Instant>,
    /// Whether a request first sent on the current connection has shown this session's login
    /// as it is. After a reconnection it has not: the connection is not yet attached at the
    /// primary (pushes would not come), and a `LoggedOut` notice sent meanwhile is lost. A
    /// logged-in session then probes with a fresh `Ack`.
    verified: bool,

    next_ticket: Ticket,
    jobs: VecDeque<(Ticket, Ask)>,
    in_flight: Option<InFlight>,
    /// Ids of messages shown to the user (message ids are unique over the whole service).
    shown: BTreeSet<MessageId>,
    /// Pushed messages not yet acknowledged.
    unacked: BTreeSet<MessageId>,

    /// The current wait: when it began and what each replica did since.
    wait_since: Option<Instant>,
    tried: Vec<Option<Tried>>,
    /// The status last reported with `Output::Waiting`.
    reported: Option<Waiting>,

    outputs: VecDeque<Output>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("client", &format_args!("{:x}", self.client))
            .field("next_request", &self.next_request)
            .field("logged_in", &self.logged_in)
            .field("target", &self.target)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session with the replicas `replicas` (ids, in the configured order). `fresh_id`
    /// draws a random session id: the first now, another when the service forgot the session.
    pub fn new(
        replicas: Vec<ReplicaId>,
        options: Options,
        mut fresh_id: Box<dyn FnMut() -> ClientId + Send>,
    ) -> Session {
        assert!(!replicas.is_empty(), "a session needs replicas");
        let n = replicas.len();
        Session {
            client: fresh_id(),
            fresh_id,
            next_request: 1,
            opened: false,
            logged_in: false,
            conn: None,
            next_conn: 1,
            target: options.first_replica % n,
            tries: 0,
            backoff: options.first_backoff,
            paused_until: None,
            verified: false,
            next_ticket: 1,
            jobs: VecDeque::new(),
            in_flight: None,
            shown: BTreeSet::new(),
            unacked: BTreeSet::new(),
            wait_since: None,
            tried: vec![None; n],
            reported: None,
            outputs: VecDeque::new(),
            replicas,
            options,
        }
    }

    /// The current session id.
    pub fn client(&self) -> ClientId {
        self.client
    }

    /// Whether the session believes it is logged in.
    pub fn logged_in(&self) -> bool {
        self.logged_in
    }

    /// The request outstanding, if any.
    pub fn in_flight(&self) -> Option<&InFlight> {
        self.in_flight.as_ref()
    }

    /// Nothing in flight and nothing queued.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_none() && self.jobs.is_empty()
    }

    /// Queues a user's request; its answer comes as `Output::Answered` (or `Failed`) with the
    /// returned ticket. Request 1 of a session is `OpenSession`; submitting it waits for the
    /// session's opening, and any other request opens the session first if needed.
    pub fn submit(&mut self, now: Instant, ask: Ask) -> Ticket {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.jobs.push_back((ticket, ask));
        self.pump(now);
        self.report_status(now);
        ticket
    }

    /// Cancels the user's requests: the one in flight (which may still be applied, if it was
    /// sent) and those queued (never sent). The session's own requests carry on.
    pub fn cancel(&mut self, now: Instant) {
        if let Some(ticket) = self.in_flight.as_ref().and_then(|f| f.purpose.ticket()) {
            let f = self.in_flight.take().expect("checked above");
            self.end_wait();
            let sent = f.attempts > 0;
            self.outputs.push_back(Output::Failed {
                ticket,
                failure: Failure::Cancelled { sent },
            });
        }
        for (ticket, _) in std::mem::take(&mut self.jobs) {
            self.outputs.push_back(Output::Failed {
                ticket,
                failure: Failure::Cancelled { sent: false },
            });
        }
        self.pump(now);
        self.report_status(now);
    }

    pub fn handle(&mut self, now: Instant, input: ConnEvent) {
        match input {
            ConnEvent::Connected(conn) => {
                if let Some(c) = self.conn.as_mut().filter(|c| c.id == conn) {
                    c.link = Link::Open;
                    self.outputs.push_back(Output::Send {
                        conn,
                        message: crate::wire::ClientToServer::Attach {
                            client: self.client,
                        },
                    });
                }
            }
            ConnEvent::Frame { conn, frame } => self.on_frame(now, conn, frame),
            ConnEvent::Closed { conn, why } => {
                if let Some(c) = self.conn.as_ref().filter(|c| c.id == conn) {
                    let tried = match (&c.link, why) {
                        (Link::Connecting { .. }, Closed::Refused) => Tried::Refused,
                        (Link::Connecting { .. }, Closed::Other(why)) => Tried::Unreachable(why),
                        (Link::Open, Closed::Refused) => Tried::Lost("reset".to_owned()),
                        (Link::Open, Closed::Other(why)) => Tried::Lost(why),
                    };
                    self.tried[self.target] = Some(tried);
                    self.drop_connection();
                    self.advance(now);
                }
            }
            ConnEvent::TooLarge(why) => self.fail_in_flight(Failure::TooLarge(why)),
        }
        self.pump(now);
        self.report_status(now);
    }

    /// Acts on every deadline that has passed: a connection not open in time, a late
    /// reply, the end of a pause, the request's give-up time, the status.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(Conn {
            link: Link::Connecting { due },
            ..
        }) = &self.conn
        {
            if *due <= now {
                self.tried[self.target] = Some(Tried::Unreachable("no answer in time".into()));
                self.drop_connection();
                self.advance(now);
            }
        }
        if let Some(f) = &self.in_flight {
            if f.reply_due.is_some_and(|due| due <= now) {
                self.tried[self.target] = Some(Tried::NoReply);
                self.drop_connection();
                self.advance(now);
            }
        }
        if self.paused_until.is_some_and(|until| until <= now) {
            self.paused_until = None;
        }
        self.pump(now);
        self.report_status(now);
    }

    /// The next deadline, or `Instant::NEVER`.
    pub fn poll_timeout(&self) -> Instant {
        let mut next = Instant::NEVER;
        if let Some(Conn {
            link: Link::Connecting { due },
            ..
        }) = &self.conn
        {
            next = next.min(*due);
        }
        if let Some(f) = &self.in_flight {
            for due in [f.reply_due, f.give_up_at, self.paused_until]
                .into_iter()
                .flatten()
            {
                next = next.min(due);
            }
            if self.reported.is_none() {
                if let Some(since) = self.wait_since {
                    next = next.min(since + self.options.status_after);
                }
            }
        }
        next
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// What the request outstanding has tried so far, if one is outstanding.
    pub fn waiting(&self) -> Option<Waiting> {
        let f = self.in_flight.as_ref()?;
        let user = f.purpose.ticket().is_some() || !self.jobs.is_empty();
        Some(Waiting {
            since: self.wait_since.unwrap_or(f.issued_at),
            replicas: self
                .replicas
                .iter()
                .copied()
                .zip(self.tried.iter().cloned())
                .collect(),
            user,
            sent: f.purpose.ticket().is_some() && f.attempts > 0,
        })
    }

    // ----- requests -----

    /// Keeps the request in flight moving: starts the next one if none is, connects to the
    /// target replica, writes the request on a connection that has not had it.
    fn pump(&mut self, now: Instant) {
        loop {
            if self.in_flight.is_none() {
                self.start_next(now);
            }
            let Some(f) = &self.in_flight else { return };
            if f.give_up_at.is_some_and(|at| at <= now) {
                let failure = Failure::Unavailable {
                    waited: self.options.give_up_after.unwrap_or_default(),
                    tried: self.waiting().expect("a request is in flight"),
                };
                self.fail_in_flight(failure);
                continue;
            }
            if self.paused_until.is_some_and(|until| until > now) {
                return;
            }
            let Some(f) = &mut self.in_flight else { return };
            match &self.conn {
                None => {
                    let id = self.next_conn;
                    self.next_conn += 1;
                    self.conn = Some(Conn {
                        id,
                        link: Link::Connecting {
                            due: now + self.options.connect_timeout,
                        },
                    });
                    self.tried[self.target] = Some(Tried::Trying);
                    self.outputs.push_back(Output::Connect {
                        conn: id,
                        replica: self.replicas[self.target],
                    });
                }
                Some(Conn {
                    link: Link::Connecting { .. },
                    ..
                }) => {}
                Some(Conn {
                    id,
                    link: Link::Open,
                }) => {
                    if f.sent_on != Some(*id) {
                        f.sent_on = Some(*id);
                        f.first_sent_on.get_or_insert(*id);
                        f.attempts += 1;
                        f.reply_due = Some(now + self.options.reply_timeout + f.ask.held_back());
                        self.tried[self.target] = Some(Tried::Trying);
                        self.outputs.push_back(Output::Send {
                            conn: *id,
                            message: f.ask.message(f.client, f.request),
                        });
                    }
                }
            }
            return;
        }
    }

    /// Starts the next request, if any is due: the session's opening, acknowledgements,
    /// the user's next request, or a probe of a new connection.
    fn start_next(&mut self, now: Instant) {
        if !self.opened {
            if self.jobs.is_empty() {
                return;
            }
            let waiter = match self.jobs.front() {
                Some((_, Ask::Op(Op::OpenSession))) => self.jobs.pop_front().map(|(t, _)| t),
                _ => None,
            };
            return self.issue(now, Ask::Op(Op::OpenSession), Purpose::Open(waiter));
        }
        if self.logged_in && !self.unacked.is_empty() {
            let ids: Vec<MessageId> = self.unacked.iter().copied().take(ACK_BATCH).collect();
            for id in &ids {
                self.unacked.remove(id);
            }
            return self.issue(now, Ask::Op(Op::Ack { ids }), Purpose::Own);
        }
        if let Some((ticket, ask)) = self.jobs.pop_front() {
            return self.issue(now, ask, Purpose::User(ticket));
        }
        if self.logged_in && !self.verified {
            self.issue(now, Ask::Op(Op::Ack { ids: Vec::new() }), Purpose::Own);
        }
    }

    fn issue(&mut self, now: Instant, ask: Ask, purpose: Purpose) {
        // Request 1 is always the opening (re-applying it is harmless).
        let request = match purpose {
            Purpose::Open(_) => 1,
            _ => self.next_request,
        };
        self.next_request = request + 1;
        self.wait_since.get_or_insert(now);
        self.outputs.push_back(Output::Issued {
            ticket: purpose.ticket(),
            client: self.client,
            request,
            ask: ask.clone(),
        });
        self.in_flight = Some(InFlight {
            client: self.client,
            request,
            ask,
            issued_at: now,
            attempts: 0,
            purpose,
            give_up_at: self.options.give_up_after.map(|d| now + d),
            reply_due: None,
            sent_on: None,
            first_sent_on: None,
        });
    }

    fn on_frame(&mut self, now: Instant, conn: ConnId, frame: ServerToClient) {
        let current = self
            .conn
            .as_ref()
            .is_some_and(|c| c.id == conn && matches!(c.link, Link::Open));
        match frame {
            // A reply is good from any connection: the server answers a retry from its
            // client table, so every reply to this number is the same.
            ServerToClient::Reply { request, reply } => {
                if self
                    .in_flight
                    .as_ref()
                    .is_some_and(|f| f.request == request)
                {
                    self.complete(reply);
                }
            }
            ServerToClient::Redirect { primary } => {
                if !current {
                    return;
                }
                self.tried[self.target] = Some(Tried::NotPrimary(primary));
                self.drop_connection();
                match primary.and_then(|p| self.replicas.iter().position(|&r| r == p)) {
                    Some(i) if i != self.target => {
                        self.target = i;
                        self.count_try(now);
                    }
                    _ => self.advance(now),
                }
            }
            ServerToClient::Push(message) => {
                self.unacked.insert(message.id);
                if self.shown.insert(message.id) {
                    self.outputs
                        .push_back(Output::Notice(Notice::Message(message)));
                }
            }
            ServerToClient::LoggedOut => {
                self.forget_login();
                self.outputs.push_back(Output::Notice(Notice::LoggedOut));
            }
            ServerToClient::Status(_) | ServerToClient::RemoveAnswer { .. } => {}
        }
    }

    fn complete(&mut self, reply: Reply) {
        let Some(f) = self.in_flight.take() else {
            return;
        };
        self.end_wait();
        let first_sent_here =
            f.first_sent_on.is_some() && f.first_sent_on == self.conn.as_ref().map(|c| c.id);
        if first_sent_here && f.ask.shows_login() {
            self.verified = true;
        }
        let mut shown_before = Vec::new();
        if let Reply::Delivered { messages, .. } = &reply {
            for m in messages {
                self.unacked.remove(&m.id);
                if !self.shown.insert(m.id) {
                    shown_before.push(m.id);
                }
            }
        }
        match &reply {
            Reply::LoggedIn { .. } => self.logged_in = true,
            Reply::LoggedOut | Reply::Deleted => self.forget_login(),
            // The `LoggedOut` notice went to a connection this session no longer had (it is
            // not resent): the service's answer is the evidence.
            Reply::Error(ChatError::NotLoggedIn) if self.logged_in => {
                self.forget_login();
                self.outputs.push_back(Output::Notice(Notice::LoggedOut));
            }
            _ => {}
        }
        let expired = reply == Reply::Error(ChatError::SessionExpired);
        if expired {
            self.start_new_session();
        } else if matches!(f.purpose, Purpose::Open(_)) {
            self.opened = true;
        }
        let ticket = f.purpose.ticket();
        self.outputs.push_back(Output::Answered {
            ticket,
            answer: Answer {
                client: f.client,
                request: f.request,
                reply,
                shown_before,
            },
        });
        if expired && ticket.is_none() {
            self.outputs
                .push_back(Output::Notice(Notice::SessionExpired));
        }
    }

    /// The request in flight cannot be done; the user's requests queued behind it waited
    /// through the same outage, so they get the same answer.
    fn fail_in_flight(&mut self, failure: Failure) {
        let Some(f) = self.in_flight.take() else {
            return;
        };
        self.end_wait();
        let queued = std::mem::take(&mut self.jobs);
        match f.purpose.ticket() {
            Some(ticket) => self.outputs.push_back(Output::Failed {
                ticket,
                failure: failure.clone(),
            }),
            None => self
                .outputs
                .push_back(Output::Notice(Notice::Trouble(failure.clone()))),
        }
        if let Failure::Unavailable { waited, tried } = &failure {
            let not_sent = Waiting {
                sent: false,
                ..tried.clone()
            };
            for (ticket, _) in queued {
                self.outputs.push_back(Output::Failed {
                    ticket,
                    failure: Failure::Unavailable {
                        waited: *waited,
                        tried: not_sent.clone(),
                    },
                });
            }
        } else {
            self.jobs = queued;
        }
    }

    // ----- connections and retries -----

    fn drop_connection(&mut self) {
        if let Some(c) = self.conn.take() {
            self.outputs.push_back(Output::Close(c.id));
        }
        self.verified = false;
        if let Some(f) = &mut self.in_flight {
            f.reply_due = None;
        }
    }

    /// Moves to the next replica.
    fn advance(&mut self, now: Instant) {
        self.target = (self.target + 1) % self.replicas.len();
        self.count_try(now);
    }

    /// Counts an attempt; after each full round of replicas, pauses (a view change takes a
    /// moment), a little longer each round.
    fn count_try(&mut self, now: Instant) {
        self.tries += 1;
        if self.tries.is_multiple_of(self.replicas.len()) {
            self.paused_until = Some(now + self.backoff);
            self.backoff = (self.backoff * 2).min(self.options.max_backoff);
        }
    }

    /// The wait is over (answered, failed or cancelled): retries and the status start afresh.
    fn end_wait(&mut self) {
        self.tries = 0;
        self.backoff = self.options.first_backoff;
        self.paused_until = None;
        self.wait_since = None;
        self.tried.iter_mut().for_each(|t| *t = None);
        if self.reported.take().is_some() {
            self.outputs.push_back(Output::Waiting(None));
        }
    }

    /// Reports the status of a request that has waited long enough, when it changed.
    fn report_status(&mut self, now: Instant) {
        let due = self.in_flight.is_some()
            && self
                .wait_since
                .is_some_and(|since| since + self.options.status_after <= now);
        if !due {
            return;
        }
        let waiting = self.waiting();
        if waiting != self.reported {
            self.reported = waiting.clone();
            self.outputs.push_back(Output::Waiting(waiting));
        }
    }

    // ----- login and session -----

    /// The session is logged out: no user, and no pushed messages left to acknowledge.
    fn forget_login(&mut self) {
        self.logged_in = false;
        self.unacked.clear();
    }

    /// The cluster evicted this session: the next request opens a fresh one (logged out).
    fn start_new_session(&mut self) {
        self.client = (self.fresh_id)();
        self.next_request = 1;
        self.opened = false;
        self.forget_login();
        self.drop_connection();
    }
}
