//! Property tests of the chat state machine and the client table against a small reference
//! model written here from the rules alone: plain vectors and linear scans, no maps, no regex.
//!
//! Limits are tiny and names come from a two-letter alphabet, so name collisions, full
//! queues, takeovers and evictions happen often. Password hashes come from a two-value set,
//! so verified logins both match and miss.

use chat_core::chat::{Chat, ChatError, Event, Limits, Message, Op, QueueTotals, Reply};
use chat_core::ids::{ClientId, MessageId, OpIndex, RequestNo};
use chat_core::service::{Applied, Request, Service};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::collections::BTreeSet;

fn limits() -> Limits {
    Limits {
        max_name_bytes: 3,
        max_text_chars: 5,
        max_pattern_bytes: 8,
        max_regex_compiled_bytes: 1 << 20,
        list_max: 2,
        deliver_max: 1,
        max_queue: 2,
        max_queued_bytes: 16,
        max_accounts: 3,
        max_sessions: 4,
        // Bytes are bounded in `service`'s own tests; here only the count evicts.
        max_client_table_bytes: u64::MAX,
    }
}

const CLIENTS: [ClientId; 5] = [101, 202, 303, 404, 505];

// ---------------------------------------------------------------------------------------
// Patterns: a tiny regex language the model can match by hand.

#[derive(Clone, Debug)]
enum Atom {
    Lit(char),
    /// `.`
    Any,
    /// `.*`
    AnyRun,
}

/// A `List` pattern and, when it is valid, its meaning: alternatives of atom sequences.
#[derive(Clone, Debug)]
struct Pattern {
    text: String,
    meaning: Option<Vec<Vec<Atom>>>,
}

fn atom() -> impl Strategy<Value = Atom> {
    prop_oneof![
        prop_oneof![Just('a'), Just('b')].prop_map(Atom::Lit),
        Just(Atom::Any),
        Just(Atom::AnyRun),
    ]
}

fn pattern() -> impl Strategy<Value = Pattern> {
    let valid = prop::collection::vec(prop::collection::vec(atom(), 0..4), 0..3).prop_map(|alts| {
        let text = alts
            .iter()
            .map(|seq| {
                seq.iter()
                    .map(|a| match a {
                        Atom::Lit(c) => c.to_string(),
                        Atom::Any => ".".into(),
                        Atom::AnyRun => ".*".into(),
                    })
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("|");
        Pattern {
            text,
            meaning: Some(alts),
        }
    });
    let invalid = prop_oneof![
        Just("("),
        Just("a)|(b"),
        Just("[a"),
        Just("*"),
        Just("(((((((((")
    ]
    .prop_map(|t| Pattern {
        text: t.into(),
        meaning: None,
    });
    prop_oneof![4 => valid, 1 => invalid]
}

fn seq_matches(atoms: &[Atom], name: &[char]) -> bool {
    match atoms.split_first() {
        None => name.is_empty(),
        Some((Atom::Lit(c), rest)) => name.first() == Some(c) && seq_matches(rest, &name[1..]),
        Some((Atom::Any, rest)) => !name.is_empty() && seq_matches(rest, &name[1..]),
        Some((Atom::AnyRun, rest)) => (0..=name.len()).any(|k| seq_matches(rest, &name[k..])),
    }
}

// ---------------------------------------------------------------------------------------
// The reference model of the chat.

#[derive(Clone, Debug)]
struct ModelAccount {
    name: String,
    /// The password hash, if the account has one.
    hash: Option<String>,
    /// (message, pushed), oldest first.
    queue: Vec<(Message, bool)>,
}

#[derive(Clone, Debug, Default)]
struct ModelChat {
    accounts: Vec<ModelAccount>,
    /// (session, user)
    logins: Vec<(ClientId, String)>,
    last_id: MessageId,
}

impl ModelChat {
    fn queued(&self) -> QueueTotals {
        let queue = || self.accounts.iter().flat_map(|a| &a.queue);
        QueueTotals {
            messages: queue().count() as u64,
            bytes: queue()
                .map(|(m, _)| (m.text.len() + m.from.len()) as u64)
                .sum(),
        }
    }

    fn account(&mut self, name: &str) -> Option<&mut ModelAccount> {
        self.accounts.iter_mut().find(|a| a.name == name)
    }

    fn user_of(&self, client: ClientId) -> Option<String> {
        self.logins
            .iter()
            .find(|(c, _)| *c == client)
            .map(|(_, u)| u.clone())
    }

    fn session_of(&self, user: &str) -> Option<ClientId> {
        self.logins.iter().find(|(_, u)| u == user).map(|(c, _)| *c)
    }

    fn end_session(&mut self, client: ClientId) {
        self.logins.retain(|(c, _)| *c != client);
    }

    fn unacked_pushes(&self, client: ClientId) -> Vec<Message> {
        let Some(user) = self.user_of(client) else {
            return vec![];
        };
        let account = self.accounts.iter().find(|a| a.name == user).unwrap();
        account
            .queue
            .iter()
            .filter(|(_, pushed)| *pushed)
            .map(|(m, _)| m.clone())
            .collect()
    }

    fn create(
        &mut self,
        l: &Limits,
        name: &str,
        hash: Option<&String>,
    ) -> Result<Reply, ChatError> {
        use ChatError::*;
        if name.is_empty() {
            return Err(NameEmpty);
        }
        if name.len() > l.max_name_bytes as usize {
            return Err(NameTooLong {
                max: l.max_name_bytes,
            });
        }
        if name
            .chars()
            .any(|c| c.is_whitespace() || c == '|' || c.is_control())
        {
            return Err(NameBadChar);
        }
        if self.account(name).is_some() {
            return Err(NameTaken);
        }
        if self.accounts.len() >= l.max_accounts as usize {
            return Err(TooManyAccounts {
                max: l.max_accounts,
            });
        }
        self.accounts.push(ModelAccount {
            name: name.to_owned(),
            hash: hash.cloned(),
            queue: vec![],
        });
        Ok(Reply::Created)
    }

    /// Logs `client` in as `name`, whose account exists and whose password (if any) checked.
    fn login(&mut self, client: ClientId, name: &str, events: &mut Vec<Event>) -> Reply {
        let waiting = self.account(name).unwrap().queue.len() as u64;
        if let Some(old) = self.session_of(name) {
            if old != client {
                self.end_session(old);
                events.push(Event::LoggedOut { client: old });
            }
        }
        self.end_session(client);
        self.logins.push((client, name.to_owned()));
        Reply::LoggedIn {
            user: name.to_owned(),
            waiting,
        }
    }

    fn apply(&mut self, l: &Limits, client: ClientId, op: &ModelOp) -> (Reply, Vec<Event>) {
        let mut events = vec![];
        let reply = match self.step(l, client, op, &mut events) {
            Ok(reply) => reply,
            Err(e) => Reply::Error(e),
        };
        (reply, events)
    }

    fn step(
        &mut self,
        l: &Limits,
        client: ClientId,
        op: &ModelOp,
        events: &mut Vec<Event>,
    ) -> Result<Reply, ChatError> {
        use ChatError::*;
        match op {
            ModelOp::Open => Ok(Reply::SessionOpened),
            ModelOp::List(p) => {
                if p.text.len() > l.max_pattern_bytes as usize {
                    return Err(PatternTooLong {
                        max: l.max_pattern_bytes,
                    });
                }
                let Some(alts) = &p.meaning else {
                    return Err(BadPattern(String::new()));
                };
                let mut names: Vec<String> = self
                    .accounts
                    .iter()
                    .map(|a| a.name.clone())
                    .filter(|n| {
                        let chars: Vec<char> = n.chars().collect();
                        p.text.is_empty() || alts.iter().any(|seq| seq_matches(seq, &chars))
                    })
                    .collect();
                names.sort();
                let total = names.len() as u64;
                names.truncate(l.list_max as usize);
                Ok(Reply::Accounts { names, total })
            }
            ModelOp::Create(name) => self.create(l, name, None),
            ModelOp::CreateWithPassword(name, hash) => self.create(l, name, Some(hash)),
            ModelOp::Login(name) => {
                let account = self.account(name).ok_or(NoSuchUser)?;
                if account.hash.is_some() {
                    return Err(BadCredentials);
                }
                Ok(self.login(client, name, events))
            }
            ModelOp::LoginRefused(_) => Err(BadCredentials),
            ModelOp::LoginVerified(name, hash) => {
                match self.account(name) {
                    Some(account) if account.hash.as_ref() == Some(hash) => {}
                    _ => return Err(BadCredentials),
                }
                Ok(self.login(client, name, events))
            }
            ModelOp::Logout => {
                self.user_of(client).ok_or(NotLoggedIn)?;
                self.end_session(client);
                Ok(Reply::LoggedOut)
            }
            ModelOp::Delete => {
                let me = self.user_of(client).ok_or(NotLoggedIn)?;
                self.end_session(client);
                self.accounts.retain(|a| a.name != me);
                Ok(Reply::Deleted)
            }
            ModelOp::Send(to, text) => {
                let me = self.user_of(client).ok_or(NotLoggedIn)?;
                let session = self.session_of(to);
                let next_id = self.last_id + 1;
                let queued = self.queued().bytes;
                let size = (text.len() + me.len()) as u64;
                let account = self.account(to).ok_or(NoSuchUser)?;
                if text.is_empty() {
                    return Err(TextEmpty);
                }
                if text.chars().count() > l.max_text_chars as usize {
                    return Err(TextTooLong {
                        max: l.max_text_chars,
                    });
                }
                if account.queue.len() >= l.max_queue as usize {
                    return Err(QueueFull { max: l.max_queue });
                }
                if queued + size > l.max_queued_bytes {
                    return Err(ServiceFull {
                        max: l.max_queued_bytes,
                    });
                }
                let message = Message {
                    id: next_id,
                    from: me,
                    text: text.clone(),
                };
                account.queue.push((message.clone(), session.is_some()));
                if let Some(s) = session {
                    events.push(Event::Push { client: s, message });
                }
                self.last_id = next_id;
                Ok(Reply::Sent { id: next_id })
            }
            ModelOp::Deliver => {
                let me = self.user_of(client).ok_or(NotLoggedIn)?;
                let account = self.account(&me).unwrap();
                // A page of at most `deliver_max`, oldest first; the rest stays queued.
                let mut messages = Vec::new();
                while messages.len() < l.deliver_max as usize && !account.queue.is_empty() {
                    messages.push(account.queue.remove(0).0);
                }
                let more = account.queue.len() as u64;
                Ok(Reply::Delivered { messages, more })
            }
            ModelOp::Ack(ids) => {
                let me = self.user_of(client).ok_or(NotLoggedIn)?;
                let account = self.account(&me).unwrap();
                account.queue.retain(|(m, _)| !ids.contains(&m.id));
                Ok(Reply::Acked)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The reference model of the client table.

#[derive(Clone, Debug)]
struct ModelRow {
    client: ClientId,
    request: RequestNo,
    reply: Reply,
    active: OpIndex,
}

#[derive(Clone, Debug, Default)]
struct ModelService {
    chat: ModelChat,
    rows: Vec<ModelRow>,
}

impl ModelService {
    fn apply(&mut self, l: &Limits, index: OpIndex, step: &ServiceStep) -> Applied {
        let (client, request, op) = (step.client, step.request, &step.op);
        let Some(i) = self.rows.iter().position(|r| r.client == client) else {
            if matches!(op, ModelOp::Open) && request == 1 {
                while self.rows.len() >= l.max_sessions as usize {
                    // No time passes here, so every row is active: sessions that are not
                    // logged in go first, then the least recently active.
                    let oldest = (0..self.rows.len())
                        .min_by_key(|&j| {
                            let row = &self.rows[j];
                            let logged_in = self.chat.user_of(row.client).is_some();
                            (logged_in, row.active, row.client)
                        })
                        .unwrap();
                    let gone = self.rows.remove(oldest);
                    self.chat.end_session(gone.client);
                }
                self.rows.push(ModelRow {
                    client,
                    request,
                    reply: Reply::SessionOpened,
                    active: index,
                });
                return Applied {
                    reply: Some(Reply::SessionOpened),
                    events: vec![],
                };
            }
            return Applied {
                reply: Some(Reply::Error(ChatError::SessionExpired)),
                events: vec![],
            };
        };
        if request == self.rows[i].request {
            return Applied {
                reply: Some(self.rows[i].reply.clone()),
                events: vec![],
            };
        }
        if request < self.rows[i].request {
            return Applied {
                reply: None,
                events: vec![],
            };
        }
        let (reply, events) = self.chat.apply(l, client, op);
        self.rows[i] = ModelRow {
            client,
            request,
            reply: reply.clone(),
            active: index,
        };
        Applied {
            reply: Some(reply),
            events,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Generated operations.

#[derive(Clone, Debug)]
enum ModelOp {
    Open,
    List(Pattern),
    Create(String),
    CreateWithPassword(String, String),
    Login(String),
    LoginVerified(String, String),
    LoginRefused(String),
    Logout,
    Delete,
    Send(String, String),
    Deliver,
    Ack(Vec<MessageId>),
}

impl ModelOp {
    fn to_op(&self) -> Op {
        match self.clone() {
            ModelOp::Open => Op::OpenSession,
            ModelOp::List(p) => Op::List { pattern: p.text },
            ModelOp::Create(user) => Op::Create { user },
            ModelOp::CreateWithPassword(user, password_hash) => Op::CreateWithPassword {
                user,
                password_hash,
            },
            ModelOp::Login(user) => Op::Login { user },
            ModelOp::LoginVerified(user, password_hash) => Op::LoginVerified {
                user,
                password_hash,
            },
            ModelOp::LoginRefused(user) => Op::LoginRefused { user },
            ModelOp::Logout => Op::Logout,
            ModelOp::Delete => Op::Delete,
            ModelOp::Send(to, text) => Op::Send { to, text },
            ModelOp::Deliver => Op::Deliver,
            ModelOp::Ack(ids) => Op::Ack { ids },
        }
    }
}

/// Mostly valid names over {a, b} (so they collide), and some invalid ones.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec!["a", "b", "ab", "ba"]).prop_map(String::from),
        1 => prop_oneof![
            Just(""), Just("abab"), Just("é"), Just("éé"), Just("a b"), Just("a|"), Just("\u{1}a")
        ]
        .prop_map(String::from),
    ]
}

/// Stand-ins for password hashes (the chat stores and compares them, never computes them).
fn hash() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["h1", "h2"]).prop_map(String::from)
}

fn text() -> impl Strategy<Value = String> {
    // "héllo": 5 characters, 6 bytes; "hellos": 6 characters.
    prop_oneof![1 => Just(""), 4 => Just("hi"), 1 => Just("héllo"), 1 => Just("hellos")]
        .prop_map(String::from)
}

fn op() -> impl Strategy<Value = ModelOp> {
    prop_oneof![
        1 => Just(ModelOp::Open),
        2 => pattern().prop_map(ModelOp::List),
        3 => name().prop_map(ModelOp::Create),
        1 => (name(), hash()).prop_map(|(n, h)| ModelOp::CreateWithPassword(n, h)),
        5 => name().prop_map(ModelOp::Login),
        2 => (name(), hash()).prop_map(|(n, h)| ModelOp::LoginVerified(n, h)),
        1 => name().prop_map(ModelOp::LoginRefused),
        1 => Just(ModelOp::Logout),
        1 => Just(ModelOp::Delete),
        8 => (name(), text()).prop_map(|(to, text)| ModelOp::Send(to, text)),
        2 => Just(ModelOp::Deliver),
        2 => prop::collection::vec(0u64..8, 0..3).prop_map(ModelOp::Ack),
    ]
}

#[derive(Clone, Debug)]
enum ChatStep {
    Apply(ClientId, ModelOp),
    EndSession(ClientId),
}

/// The last client is rare: one more than `max_sessions`, it evicts the others now and then,
/// not all the time.
fn client() -> impl Strategy<Value = ClientId> {
    prop_oneof![50 => prop::sample::select(CLIENTS[..4].to_vec()), 1 => Just(CLIENTS[4])]
}

fn chat_steps() -> impl Strategy<Value = Vec<ChatStep>> {
    let step = prop_oneof![
        12 => (client(), op()).prop_map(|(c, op)| ChatStep::Apply(c, op)),
        1 => client().prop_map(ChatStep::EndSession),
    ];
    prop::collection::vec(step, 1..80)
}

#[derive(Clone, Debug)]
struct ServiceStep {
    client: ClientId,
    request: RequestNo,
    op: ModelOp,
}

/// How a client numbers its next request.
#[derive(Clone, Debug)]
enum Numbering {
    /// A new request, possibly skipping numbers.
    Next(RequestNo),
    /// Its latest request again, as after a lost reply.
    Retry,
    /// An older request, as a late duplicate on the network.
    Stale,
}

fn numbering() -> impl Strategy<Value = Numbering> {
    prop_oneof![
        12 => (1u64..3).prop_map(Numbering::Next),
        2 => Just(Numbering::Retry),
        1 => Just(Numbering::Stale),
    ]
}

/// What a client does next: which client, how it numbers the request, and the operation.
type Action = (ClientId, Numbering, ModelOp);

/// A warm start (three clients logged in as three accounts, one with a password) and then
/// random actions.
fn actions() -> impl Strategy<Value = Vec<Action>> {
    prop::collection::vec((client(), numbering(), op()), 0..150).prop_map(|random| {
        // "ab" has a password (hash "h1").
        let setup = CLIENTS
            .iter()
            .zip([("a", None), ("b", None), ("ab", Some("h1"))])
            .flat_map(|(&client, (name, hash))| {
                let (create, login) = match hash {
                    None => (ModelOp::Create(name.into()), ModelOp::Login(name.into())),
                    Some(h) => (
                        ModelOp::CreateWithPassword(name.into(), h.into()),
                        ModelOp::LoginVerified(name.into(), h.into()),
                    ),
                };
                [ModelOp::Open, create, login].map(|op| (client, Numbering::Next(1), op))
            });
        setup.chain(random).collect()
    })
}

/// The clients' side: turns actions into requests the way real clients number them, with
/// retries and late duplicates, and a new session after `SessionExpired`.
#[derive(Clone, Debug, Default)]
struct Clients {
    latest: Vec<Latest>,
}

#[derive(Clone, Debug)]
struct Latest {
    client: ClientId,
    request: RequestNo,
    op: ModelOp,
    expired: bool,
}

impl Clients {
    fn request(&mut self, (client, numbering, op): &Action) -> ServiceStep {
        let found = self.latest.iter().position(|l| l.client == *client);
        let Some(i) = found.filter(|&i| !self.latest[i].expired) else {
            let fresh = Latest {
                client: *client,
                request: 1,
                op: ModelOp::Open,
                expired: false,
            };
            match found {
                Some(i) => self.latest[i] = fresh,
                None => self.latest.push(fresh),
            }
            return ServiceStep {
                client: *client,
                request: 1,
                op: ModelOp::Open,
            };
        };
        let latest = &mut self.latest[i];
        let (request, op) = match numbering {
            Numbering::Next(skip) => (latest.request + skip, op.clone()),
            Numbering::Retry => (latest.request, latest.op.clone()),
            Numbering::Stale => (latest.request.saturating_sub(1).max(1), op.clone()),
        };
        if request > latest.request {
            latest.request = request;
            latest.op = op.clone();
        }
        ServiceStep {
            client: *client,
            request,
            op,
        }
    }

    fn saw(&mut self, client: ClientId, reply: &Option<Reply>) {
        if *reply == Some(Reply::Error(ChatError::SessionExpired)) {
            let latest = self.latest.iter_mut().find(|l| l.client == client).unwrap();
            latest.expired = true;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Comparison.

/// `BadPattern`'s message comes from the regex crate; the model only knows the kind.
fn normalize(reply: Reply) -> Reply {
    match reply {
        Reply::Error(ChatError::BadPattern(_)) => {
            Reply::Error(ChatError::BadPattern(String::new()))
        }
        other => other,
    }
}

fn normalize_applied(applied: Applied) -> Applied {
    Applied {
        reply: applied.reply.map(normalize),
        events: applied.events,
    }
}

fn run_service(
    service: &mut Service,
    clients: &mut Clients,
    first_index: OpIndex,
    actions: &[Action],
) -> Vec<Applied> {
    let l = limits();
    let mut outputs = vec![];
    for (i, action) in actions.iter().enumerate() {
        let step = clients.request(action);
        let req = Request {
            client: step.client,
            request: step.request,
            op: step.op.to_op(),
        };
        let applied = service.apply(&l, first_index + i as OpIndex, &req);
        clients.saw(step.client, &applied.reply);
        outputs.push(applied);
    }
    outputs
}

proptest! {
    #![proptest_config(Config { cases: 512, ..Config::default() })]

    #[test]
    fn chat_matches_the_model(steps in chat_steps()) {
        let l = limits();
        let mut chat = Chat::new();
        let mut model = ModelChat::default();
        for (i, step) in steps.iter().enumerate() {
            match step {
                ChatStep::Apply(client, op) => {
                    let mut events = vec![];
                    let reply = normalize(chat.apply(&l, *client, &op.to_op(), &mut events));
                    let (want, want_events) = model.apply(&l, *client, op);
                    prop_assert_eq!(reply, want, "step {}: {:?}", i, step);
                    prop_assert_eq!(events, want_events, "step {}: {:?}", i, step);
                }
                ChatStep::EndSession(client) => {
                    chat.end_session(*client);
                    model.end_session(*client);
                }
            }
            for client in CLIENTS {
                prop_assert_eq!(chat.unacked_pushes(client), model.unacked_pushes(client));
            }
            prop_assert_eq!(chat.queued(), model.queued());
        }
    }

    #[test]
    fn service_matches_the_model(actions in actions()) {
        let l = limits();
        let mut service = Service::new();
        let mut model = ModelService::default();
        let mut clients = Clients::default();
        for (i, action) in actions.iter().enumerate() {
            let index = i as OpIndex + 1;
            let step = clients.request(action);
            let req = Request { client: step.client, request: step.request, op: step.op.to_op() };
            let got = service.apply(&l, index, &req);
            clients.saw(step.client, &got.reply);
            let mut want = model.apply(&l, index, &step);
            want.reply = want.reply.map(normalize);
            prop_assert_eq!(normalize_applied(got), want, "step {}: {:?}", i, step);
            for client in CLIENTS {
                prop_assert_eq!(service.unacked_pushes(client), model.chat.unacked_pushes(client));
            }
        }
    }

    #[test]
    fn snapshot_restore_continues_identically(
        actions in actions(),
        cut in any::<prop::sample::Index>(),
    ) {
        let cut = cut.index(actions.len() + 1);
        let (before, after) = actions.split_at(cut);
        let mut original = Service::new();
        let mut clients = Clients::default();
        run_service(&mut original, &mut clients, 1, before);
        let bytes = original.snapshot();
        let mut restored = Service::restore(&bytes).unwrap();
        prop_assert_eq!(&restored, &original);
        prop_assert_eq!(restored.snapshot(), bytes);
        let next = cut as OpIndex + 1;
        prop_assert_eq!(
            run_service(&mut restored, &mut clients.clone(), next, after),
            run_service(&mut original, &mut clients, next, after)
        );
        prop_assert_eq!(restored.snapshot(), original.snapshot());
        prop_assert_eq!(restored.digest(), original.digest());
    }

    #[test]
    fn same_actions_give_same_bytes(actions in actions()) {
        let mut one = Service::new();
        let mut two = Service::new();
        prop_assert_eq!(
            run_service(&mut one, &mut Clients::default(), 1, &actions),
            run_service(&mut two, &mut Clients::default(), 1, &actions)
        );
        prop_assert_eq!(one.snapshot(), two.snapshot());
    }
}

// ---------------------------------------------------------------------------------------
// Every error path reached.

/// Exhaustive on purpose: a new variant fails to compile here until it is added to
/// `ALL_ERRORS` and reached, or to `NOT_FROM_SERVICE`.
fn error_name(error: &ChatError) -> &'static str {
    match error {
        ChatError::BadPattern(_) => "BadPattern",
        ChatError::PatternTooLong { .. } => "PatternTooLong",
        ChatError::NameEmpty => "NameEmpty",
        ChatError::NameTooLong { .. } => "NameTooLong",
        ChatError::NameBadChar => "NameBadChar",
        ChatError::NameTaken => "NameTaken",
        ChatError::NoSuchUser => "NoSuchUser",
        ChatError::BadCredentials => "BadCredentials",
        ChatError::NotLoggedIn => "NotLoggedIn",
        ChatError::TextEmpty => "TextEmpty",
        ChatError::TextTooLong { .. } => "TextTooLong",
        ChatError::QueueFull { .. } => "QueueFull",
        ChatError::ServiceFull { .. } => "ServiceFull",
        ChatError::TooManyAccounts { .. } => "TooManyAccounts",
        ChatError::SessionExpired => "SessionExpired",
        ChatError::RequestTooLarge { .. } => "RequestTooLarge",
    }
}

/// Errors another layer produces: `RequestTooLarge` is refused by the primary before
/// ordering, so the service never sees such a request.
const NOT_FROM_SERVICE: [&str; 1] = ["RequestTooLarge"];

/// Every error the service can reply.
const ALL_ERRORS: [&str; 15] = [
    "BadPattern",
    "PatternTooLong",
    "NameEmpty",
    "NameTooLong",
    "NameBadChar",
    "NameTaken",
    "NoSuchUser",
    "BadCredentials",
    "NotLoggedIn",
    "TextEmpty",
    "TextTooLong",
    "QueueFull",
    "ServiceFull",
    "TooManyAccounts",
    "SessionExpired",
];

#[test]
fn generated_workloads_reach_every_error() {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let strategy = actions();
    let mut reached = BTreeSet::new();
    for _ in 0..300 {
        let actions = strategy.new_tree(&mut runner).unwrap().current();
        for applied in run_service(&mut Service::new(), &mut Clients::default(), 1, &actions) {
            if let Some(Reply::Error(e)) = applied.reply {
                reached.insert(error_name(&e));
            }
        }
    }
    let missing: Vec<_> = ALL_ERRORS
        .iter()
        .filter(|e| !reached.contains(*e))
        .collect();
    assert!(missing.is_empty(), "never reached: {missing:?}");
    assert!(NOT_FROM_SERVICE.iter().all(|e| !reached.contains(e)));
}
