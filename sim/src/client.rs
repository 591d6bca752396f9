//! A virtual client: one session at a time, at most one request outstanding, retried with the
//! same number on another replica after a timeout, a redirect or a refused connection.
//!
//! The client acknowledges pushed messages (a user shows each message id once; the checkers
//! derive what was shown from the history). `Error(SessionExpired)` starts a new session. The engine carries its messages and
//! owns its connection; the client only says where to send and when to wake it.

use crate::history::{Call, History};
use crate::passwords::{login_call, right_password};
use crate::workload::Workload;
use chat_core::chat::{ChatError, Op, Reply};
use chat_core::ids::{ClientId, MessageId, ReplicaId, RequestNo};
use chat_core::time::{Duration, Instant};
use chat_core::wire::{ClientToServer, PasswordAction, ServerToClient};
use rand::rngs::SmallRng;
use rand::Rng;
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

/// What the engine must do for the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send on the connection to `to` (the engine opens one and attaches if needed).
    Send {
        to: ReplicaId,
        message: ClientToServer,
    },
    /// Call [`Client::wake`] with `token` at `at`.
    Wake { at: Instant, token: u64 },
}

/// What a client callback may use.
pub struct Ctx<'a> {
    pub now: Instant,
    pub rng: &'a mut SmallRng,
    pub workload: &'a mut Workload,
    pub history: &'a mut History,
}

#[derive(Clone, Debug)]
pub struct Pending {
    pub request: RequestNo,
    pub what: Call,
    pub call: Instant,
    pub attempts: u32,
}

#[derive(Debug)]
pub struct Client {
    pub slot: usize,
    pub session: ClientId,
    next_request: RequestNo,
    pub pending: Option<Pending>,
    /// The replica the next attempt goes to.
    target: ReplicaId,
    replicas: u8,
    /// Pushed messages to acknowledge.
    to_ack: Vec<MessageId>,
    logged_in: bool,
    /// Only the latest wake-up counts.
    timer: u64,
    /// Whether the pending wake-up is a timeout (move to the next replica) or a back-off.
    timeout_armed: bool,
    mode: Mode,
    /// Drain: the requests still to make.
    script: VecDeque<Call>,
}

impl Client {
    pub fn new(slot: usize, replicas: u8) -> Client {
        Client {
            slot,
            session: 0,
            next_request: 1,
            pending: None,
            target: (slot % usize::from(replicas)) as ReplicaId,
            replicas,
            to_ack: Vec::new(),
            logged_in: false,
            timer: 0,
            timeout_armed: false,
            mode: Mode::Busy,
            script: VecDeque::new(),
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Opens a session: a fresh random id, and `OpenSession` as request 1.
    pub fn start(&mut self, ctx: &mut Ctx) -> Vec<Action> {
        self.session = ctx.rng.gen();
        self.next_request = 1;
        self.logged_in = false;
        self.to_ack.clear();
        self.call(ctx, Op::OpenSession.into())
    }

    /// Stops issuing random requests; the pending one is still finished.
    pub fn finish(&mut self) {
        if self.mode == Mode::Busy {
            self.mode = Mode::Finish;
        }
    }

    /// Starts the drain: list every account, then log in to each and take its queue.
    pub fn drain(&mut self, ctx: &mut Ctx) -> Vec<Action> {
        self.mode = Mode::Drain;
        self.script.push_back(
            Op::List {
                pattern: ".*".into(),
            }
            .into(),
        );
        if self.pending.is_none() {
            return self.next(ctx);
        }
        Vec::new()
    }

    pub fn wake(&mut self, ctx: &mut Ctx, token: u64) -> Vec<Action> {
        if token != self.timer {
            return Vec::new();
        }
        if self.pending.is_some() {
            if self.timeout_armed {
                self.target = self.next_replica();
            }
            return self.send(ctx);
        }
        self.next(ctx)
    }

    /// The connection was refused or reset: try the next replica after a short back-off.
    pub fn on_refused(&mut self, ctx: &mut Ctx) -> Vec<Action> {
        if self.pending.is_none() {
            return Vec::new();
        }
        self.target = self.next_replica();
        let delay = Duration::from_millis(ctx.rng.gen_range(10..=50));
        vec![self.backoff(ctx.now + delay)]
    }

    pub fn on_server(&mut self, ctx: &mut Ctx, message: ServerToClient) -> Vec<Action> {
        match message {
            ServerToClient::Reply { request, reply } => self.on_reply(ctx, request, reply),
            ServerToClient::Redirect { primary } => {
                // One attempt may draw several redirects (the attachment and the request
                // each get one); the first one decides.
                if self.pending.is_none() || !self.timeout_armed {
                    return Vec::new();
                }
                self.target = match primary {
                    Some(p) if p != self.target => p,
                    _ => self.next_replica(),
                };
                let delay = Duration::from_millis(ctx.rng.gen_range(5..=30));
                vec![self.backoff(ctx.now + delay)]
            }
            ServerToClient::Push(message) => {
                if !self.to_ack.contains(&message.id) {
                    self.to_ack.push(message.id);
                }
                Vec::new()
            }
            ServerToClient::LoggedOut => {
                self.logged_in = false;
                Vec::new()
            }
            ServerToClient::Status(_) => Vec::new(),
        }
    }

    fn on_reply(&mut self, ctx: &mut Ctx, request: RequestNo, reply: Reply) -> Vec<Action> {
        let Some(pending) = self.pending.as_ref() else {
            return Vec::new();
        };
        if pending.request != request {
            return Vec::new(); // a late or duplicated answer to an earlier request
        }
        let pending = self.pending.take().expect("checked above");
        ctx.history
            .ret(ctx.now, self.slot, self.session, request, &reply);
        match &reply {
            Reply::LoggedIn { .. } => self.logged_in = true,
            Reply::LoggedOut | Reply::Deleted => self.logged_in = false,
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
                if let Call::WithPassword {
                    action: PasswordAction::Login,
                    user,
                    ..
                } = &pending.what
                {
                    let user = user.clone();
                    self.script.push_front(Op::Login { user }.into());
                }
            }
            Reply::Error(ChatError::SessionExpired) => {
                if matches!(self.mode, Mode::Busy | Mode::Drain) {
                    if self.mode == Mode::Drain {
                        // Redo the step the old session could not make.
                        self.script.push_front(pending.what);
                    }
                    return self.start(ctx);
                }
                return Vec::new();
            }
            _ => {}
        }
        match self.mode {
            Mode::Busy => {
                let think = Duration::from_millis(ctx.rng.gen_range(20..=200));
                vec![self.arm(ctx.now + think, false)]
            }
            Mode::Drain => self.next(ctx),
            Mode::Finish | Mode::Done => Vec::new(),
        }
    }

    /// Issues the next request of the current mode, if any.
    fn next(&mut self, ctx: &mut Ctx) -> Vec<Action> {
        match self.mode {
            Mode::Busy => {
                let op = ctx
                    .workload
                    .next_op(ctx.rng, self.logged_in, &mut self.to_ack);
                self.call(ctx, op)
            }
            Mode::Drain => match self.script.pop_front() {
                Some(op) => self.call(ctx, op),
                None => {
                    self.mode = Mode::Done;
                    Vec::new()
                }
            },
            Mode::Finish | Mode::Done => Vec::new(),
        }
    }

    fn call(&mut self, ctx: &mut Ctx, what: Call) -> Vec<Action> {
        debug_assert!(self.pending.is_none(), "one request at a time");
        let request = self.next_request;
        self.next_request += 1;
        ctx.history
            .call(ctx.now, self.slot, self.session, request, &what);
        self.pending = Some(Pending {
            request,
            what,
            call: ctx.now,
            attempts: 0,
        });
        self.send(ctx)
    }

    fn send(&mut self, ctx: &mut Ctx) -> Vec<Action> {
        let pending = self.pending.as_mut().expect("sending the pending request");
        pending.attempts += 1;
        let send = Action::Send {
            to: self.target,
            message: pending.what.message(self.session, pending.request),
        };
        vec![send, self.arm(ctx.now + REQUEST_TIMEOUT, true)]
    }

    fn backoff(&mut self, at: Instant) -> Action {
        self.arm(at, false)
    }

    fn arm(&mut self, at: Instant, timeout: bool) -> Action {
        self.timer += 1;
        self.timeout_armed = timeout;
        Action::Wake {
            at,
            token: self.timer,
        }
    }

    fn next_replica(&self) -> ReplicaId {
        (self.target + 1) % self.replicas
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    struct World {
        rng: SmallRng,
        workload: Workload,
        history: History,
    }

    impl World {
        fn ctx(&mut self, now: u64) -> Ctx<'_> {
            Ctx {
                now: Instant(now),
                rng: &mut self.rng,
                workload: &mut self.workload,
                history: &mut self.history,
            }
        }
    }

    fn world() -> World {
        World {
            rng: SmallRng::seed_from_u64(4),
            workload: Workload::new(),
            history: History::default(),
        }
    }

    fn sent(actions: &[Action]) -> (ReplicaId, chat_core::service::Request) {
        match &actions[0] {
            Action::Send {
                to,
                message: ClientToServer::Request(request),
            } => (*to, request.clone()),
            other => panic!("expected a send, got {other:?}"),
        }
    }

    fn wake_token(actions: &[Action]) -> u64 {
        match actions.last() {
            Some(Action::Wake { token, .. }) => *token,
            other => panic!("expected a wake-up, got {other:?}"),
        }
    }

    #[test]
    fn retries_keep_the_request_number_and_move_on() {
        let mut w = world();
        let mut client = Client::new(0, 3);
        let actions = client.start(&mut w.ctx(0));
        let (to, first) = sent(&actions);
        assert_eq!(
            (to, first.request, first.op.clone()),
            (0, 1, Op::OpenSession)
        );
        // Timeout: the same request goes to the next replica.
        let actions = client.wake(&mut w.ctx(1_000_000), wake_token(&actions));
        let (to, again) = sent(&actions);
        assert_eq!((to, again.clone()), (1, first.clone()));
        // Redirect to replica 2: after a back-off, the same request goes there.
        let actions = client.on_server(
            &mut w.ctx(1_010_000),
            ServerToClient::Redirect { primary: Some(2) },
        );
        let actions = client.wake(&mut w.ctx(1_050_000), wake_token(&actions));
        assert_eq!(sent(&actions), (2, first.clone()));
        // A stale wake-up does nothing; the reply completes the request.
        assert!(client.wake(&mut w.ctx(1_060_000), 1).is_empty());
        client.on_server(
            &mut w.ctx(1_070_000),
            ServerToClient::Reply {
                request: 1,
                reply: Reply::SessionOpened,
            },
        );
        assert!(client.pending.is_none());
        let ops = w.history.operations();
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].ret, Some((Instant(1_070_000), Reply::SessionOpened)));
    }

    #[test]
    fn pushes_are_shown_once_and_acknowledged() {
        let mut w = world();
        let mut client = Client::new(0, 3);
        client.start(&mut w.ctx(0));
        let actions = client.on_server(
            &mut w.ctx(10),
            ServerToClient::Reply {
                request: 1,
                reply: Reply::SessionOpened,
            },
        );
        let message = chat_core::chat::Message {
            id: 5,
            from: "ann".into(),
            text: "t1".into(),
        };
        for _ in 0..2 {
            client.on_server(&mut w.ctx(20), ServerToClient::Push(message.clone()));
        }
        assert_eq!(client.to_ack, vec![5]);
        // The next request is usually the acknowledgement; run until it is.
        let mut actions = client.wake(&mut w.ctx(300_000), wake_token(&actions));
        let mut now = 300_000;
        loop {
            let (_, request) = sent(&actions);
            if request.op == (Op::Ack { ids: vec![5] }) {
                break;
            }
            now += 1000;
            let done = client.on_server(
                &mut w.ctx(now),
                ServerToClient::Reply {
                    request: request.request,
                    reply: Reply::Error(ChatError::NotLoggedIn),
                },
            );
            actions = client.wake(&mut w.ctx(now + 300_000), wake_token(&done));
        }
    }

    #[test]
    fn an_expired_session_starts_a_new_one() {
        let mut w = world();
        let mut client = Client::new(1, 3);
        client.start(&mut w.ctx(0));
        let old = client.session;
        let actions = client.on_server(
            &mut w.ctx(10),
            ServerToClient::Reply {
                request: 1,
                reply: Reply::Error(ChatError::SessionExpired),
            },
        );
        let (_, request) = sent(&actions);
        assert_ne!(request.client, old);
        assert_eq!((request.request, request.op), (1, Op::OpenSession));
    }
}
