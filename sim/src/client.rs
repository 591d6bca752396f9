//! A virtual client: the real client session (`chat_core::client::Session`, the one
//! `chat-client` runs) and a user who makes random requests with think time between them, or
//! the end-of-run drain.
//!
//! The session numbers requests, fails over (same number, next replica), re-attaches, shows
//! each push once and acknowledges it; the engine carries its connections and messages and
//! writes what it saw into the history (the checkers read it). `Error(SessionExpired)` makes
//! the session open a new one before the user's next request.

use crate::passwords::{login_call, right_password};
use crate::workload::Workload;
use chat_core::chat::{ChatError, Op, Reply};
use chat_core::client::{Ask, InFlight, Options, Session, Ticket};
use chat_core::ids::ClientId;
use chat_core::time::{Duration, Instant};
use chat_core::wire::PasswordAction;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;

/// Without an answer within this time, a request is retried on the next replica.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(1000);

/// What the client does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Random requests, with think time between them.
    Busy,
    /// Finish the pending request, then stay idle.
    Finish,
    /// Log in to every account and take its queue (the end-of-run drain).
    Drain,
    /// Idle for good.
    Done,
}

/// What a client callback may use.
pub struct Ctx<'a> {
    pub now: Instant,
    pub rng: &'a mut SmallRng,
    pub workload: &'a mut Workload,
}

#[derive(Debug)]
pub struct Client {
    pub slot: usize,
    pub session: Session,
    mode: Mode,
    /// The user's request waiting for its answer, and what it asked.
    asked: Option<(Ticket, Ask)>,
    /// When the user makes the next request (after thinking).
    think_until: Option<Instant>,
    /// Drain: the requests still to make.
    script: VecDeque<Ask>,
}

impl Client {
    /// Client `slot` of a cluster of `replicas`; its session ids come from `rng`.
    pub fn new(slot: usize, replicas: u8, rng: &mut SmallRng) -> Client {
        let options = Options {
            reply_timeout: REQUEST_TIMEOUT,
            connect_timeout: REQUEST_TIMEOUT,
            first_replica: slot,
            ..Options::default()
        };
        let mut ids = SmallRng::seed_from_u64(rng.gen());
        let fresh_id = Box::new(move || ids.gen::<ClientId>());
        Client {
            slot,
            session: Session::new((0..replicas).collect(), options, fresh_id),
            mode: Mode::Busy,
            asked: None,
            think_until: None,
            script: VecDeque::new(),
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The request outstanding (the user's or the session's own), if any.
    pub fn pending(&self) -> Option<&InFlight> {
        self.session.in_flight()
    }

    /// Whether a request is outstanding or queued.
    pub fn busy(&self) -> bool {
        !self.session.is_idle()
    }

    /// Opens the session (`OpenSession` as request 1).
    pub fn start(&mut self, ctx: &mut Ctx) {
        self.ask(ctx, Op::OpenSession.into());
    }

    /// Stops issuing random requests; the pending one is still finished.
    pub fn finish(&mut self) {
        if self.mode == Mode::Busy {
            self.mode = Mode::Finish;
        }
        self.think_until = None;
    }

    /// Starts the drain: list every account, then log in to each and take its queue.
    pub fn drain(&mut self, ctx: &mut Ctx) {
        self.mode = Mode::Drain;
        self.script.push_back(
            Op::List {
                pattern: ".*".into(),
            }
            .into(),
        );
        if self.asked.is_none() {
            self.next(ctx);
        }
    }

    /// When [`Client::wake`] is due next.
    pub fn wake_at(&self) -> Instant {
        let session = self.session.poll_timeout();
        self.think_until.map_or(session, |t| t.min(session))
    }

    pub fn wake(&mut self, ctx: &mut Ctx) {
        if self.think_until.is_some_and(|t| t <= ctx.now) {
            self.think_until = None;
            self.next(ctx);
        }
        if self.session.poll_timeout() <= ctx.now {
            self.session.handle_timeout(ctx.now);
        }
    }

    /// The answer to the user's request `ticket`.
    pub fn on_answer(&mut self, ctx: &mut Ctx, ticket: Ticket, reply: &Reply) {
        let Some((asked, call)) = self.asked.take() else {
            return;
        };
        debug_assert_eq!(asked, ticket, "one user request at a time");
        match reply {
            Reply::Accounts { names, .. } if self.mode == Mode::Drain => {
                for name in names {
                    // Every account's password is known; an account without one refuses
                    // it, and is then logged into without (below).
                    let password = right_password(name);
                    self.script.push_back(login_call(name.clone(), password));
                    self.script.push_back(Op::Deliver.into());
                }
            }
            Reply::Delivered { more, .. } if self.mode == Mode::Drain && *more > 0 => {
                self.script.push_front(Op::Deliver.into());
            }
            Reply::Error(ChatError::BadCredentials) if self.mode == Mode::Drain => {
                if let Ask::WithPassword {
                    action: PasswordAction::Login,
                    user,
                    ..
                } = &call
                {
                    let user = user.clone();
                    self.script.push_front(Op::Login { user }.into());
                }
            }
            // The session opens a new one first; redo the step the old one could not make.
            Reply::Error(ChatError::SessionExpired) if self.mode == Mode::Drain => {
                self.script.push_front(call);
            }
            _ => {}
        }
        match self.mode {
            Mode::Busy => {
                let think = Duration::from_millis(ctx.rng.gen_range(20..=200));
                self.think_until = Some(ctx.now + think);
            }
            Mode::Drain => self.next(ctx),
            Mode::Finish | Mode::Done => {}
        }
    }

    /// Issues the next request of the current mode, if any.
    fn next(&mut self, ctx: &mut Ctx) {
        match self.mode {
            Mode::Busy => {
                let op = ctx.workload.next_op(ctx.rng, self.session.logged_in());
                self.ask(ctx, op);
            }
            Mode::Drain => match self.script.pop_front() {
                Some(op) => self.ask(ctx, op),
                None => self.mode = Mode::Done,
            },
            Mode::Finish | Mode::Done => {}
        }
    }

    fn ask(&mut self, ctx: &mut Ctx, ask: Ask) {
        debug_assert!(self.asked.is_none(), "one request at a time");
        let ticket = self.session.submit(ctx.now, ask.clone());
        self.asked = Some((ticket, ask));
    }
}
