//! The session against scripted replies: request numbers across failover, redirects,
//! pushes shown once and acknowledged, expiry, the probe after a reconnection, the status,
//! giving up and cancelling.

use super::*;
use crate::chat::ChatError;
use crate::time::Instant;

const MS: u64 = 1000;

fn session(replicas: u8, options: Options) -> Session {
    let mut next_id: ClientId = 0xa0;
    Session::new(
        (0..replicas).collect(),
        options,
        Box::new(move || {
            next_id += 1;
            next_id
        }),
    )
}

fn drain(s: &mut Session) -> Vec<Output> {
    std::iter::from_fn(|| s.poll_output()).collect()
}

/// The connection the session asked for last, and to which replica.
fn connect_of(outputs: &[Output]) -> (ConnId, ReplicaId) {
    outputs
        .iter()
        .rev()
        .find_map(|o| match o {
            Output::Connect { conn, replica } => Some((*conn, *replica)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no connect in {outputs:?}"))
}

/// The requests written, as (connection, session, number, op).
fn requests(outputs: &[Output]) -> Vec<(ConnId, ClientId, RequestNo, Op)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send {
                conn,
                message: ClientToServer::Request(r),
            } => Some((*conn, r.client, r.request, r.op.clone())),
            _ => None,
        })
        .collect()
}

fn reply(conn: ConnId, request: RequestNo, reply: Reply) -> ConnEvent {
    ConnEvent::Frame {
        conn,
        frame: ServerToClient::Reply { request, reply },
    }
}

fn message(id: MessageId) -> Message {
    Message {
        id,
        from: "ann".into(),
        text: format!("t{id}"),
    }
}

/// Opens the session on replica 0 and returns its connection.
fn opened(s: &mut Session) -> ConnId {
    let t = Instant(0);
    s.submit(t, Ask::Op(Op::OpenSession));
    let (conn, replica) = connect_of(&drain(s));
    assert_eq!(replica, 0);
    s.handle(t, ConnEvent::Connected(conn));
    s.handle(t, reply(conn, 1, Reply::SessionOpened));
    drain(s);
    conn
}

#[test]
fn retries_keep_the_request_number_and_move_on() {
    let quiet = Options {
        status_after: Duration::from_secs(60),
        ..Options::default()
    };
    let mut s = session(3, quiet);
    s.submit(Instant(0), Ask::Op(Op::OpenSession));
    let out = drain(&mut s);
    assert!(matches!(
        out[0],
        Output::Issued {
            ticket: Some(1),
            request: 1,
            ..
        }
    ));
    let (c0, r) = connect_of(&out);
    assert_eq!(r, 0);
    s.handle(Instant(0), ConnEvent::Connected(c0));
    let out = drain(&mut s);
    assert!(matches!(
        &out[0],
        Output::Send {
            message: ClientToServer::Attach { .. },
            ..
        }
    ));
    let first = requests(&out);
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].2, &first[0].3), (1, &Op::OpenSession));
    // No reply in time: the same request goes to the next replica.
    let late = s.poll_timeout();
    assert_eq!(late, Instant(2000 * MS));
    s.handle_timeout(late);
    let out = drain(&mut s);
    assert!(out.contains(&Output::Close(c0)));
    let (c1, r) = connect_of(&out);
    assert_eq!(r, 1);
    s.handle(late, ConnEvent::Connected(c1));
    let again = requests(&drain(&mut s));
    assert_eq!((again[0].1, again[0].2), (first[0].1, 1));
    // Replica 1 redirects to 2: the same request goes there.
    s.handle(
        late,
        ConnEvent::Frame {
            conn: c1,
            frame: ServerToClient::Redirect { primary: Some(2) },
        },
    );
    let (c2, r) = connect_of(&drain(&mut s));
    assert_eq!(r, 2);
    // A stale report from the old connection does nothing.
    s.handle(
        late,
        ConnEvent::Closed {
            conn: c0,
            why: Closed::Refused,
        },
    );
    assert!(drain(&mut s).is_empty());
    s.handle(late, ConnEvent::Connected(c2));
    assert_eq!(requests(&drain(&mut s))[0].2, 1);
    s.handle(late, reply(c2, 1, Reply::SessionOpened));
    let out = drain(&mut s);
    let Some(Output::Answered {
        ticket: Some(1),
        answer,
    }) = out.last()
    else {
        panic!("{out:?}")
    };
    assert_eq!(answer.reply, Reply::SessionOpened);
    assert!(s.is_idle());
    // The next request is number 2, on the same connection.
    s.submit(late, Ask::Op(Op::Deliver));
    let next = requests(&drain(&mut s));
    assert_eq!((next[0].0, next[0].2), (c2, 2));
}

#[test]
fn pushes_are_shown_once_and_acknowledged() {
    let mut s = session(1, Options::default());
    let conn = opened(&mut s);
    let t = Instant(0);
    s.submit(t, Ask::Op(Op::Login { user: "bob".into() }));
    s.handle(
        t,
        reply(
            conn,
            2,
            Reply::LoggedIn {
                user: "bob".into(),
                waiting: 0,
            },
        ),
    );
    drain(&mut s);
    for _ in 0..2 {
        s.handle(
            t,
            ConnEvent::Frame {
                conn,
                frame: ServerToClient::Push(message(5)),
            },
        );
    }
    let out = drain(&mut s);
    let shown: Vec<_> = out
        .iter()
        .filter(|o| matches!(o, Output::Notice(Notice::Message(_))))
        .collect();
    assert_eq!(shown.len(), 1, "{out:?}");
    // The idle session acknowledges at once; the user's request waits for that.
    let sent = requests(&out);
    assert_eq!(sent[0].3, Op::Ack { ids: vec![5] });
    s.submit(t, Ask::Op(Op::Deliver));
    assert!(requests(&drain(&mut s)).is_empty());
    // (The second copy of 5 came after the first acknowledgement went out: it is
    // acknowledged again, which is harmless.)
    s.handle(t, reply(conn, 3, Reply::Acked));
    assert_eq!(requests(&drain(&mut s))[0].3, Op::Ack { ids: vec![5] });
    s.handle(t, reply(conn, 4, Reply::Acked));
    assert_eq!(requests(&drain(&mut s))[0].3, Op::Deliver);
    let delivered = Reply::Delivered {
        messages: vec![message(5), message(6)],
        more: 0,
    };
    s.handle(t, reply(conn, 5, delivered.clone()));
    let out = drain(&mut s);
    let Some(Output::Answered { answer, .. }) = out.last() else {
        panic!("{out:?}")
    };
    assert_eq!(answer.reply, delivered, "as the service sent it");
    assert_eq!(
        answer.clone().for_user(),
        Reply::Delivered {
            messages: vec![message(6)],
            more: 0
        },
        "5 was shown already"
    );
}

#[test]
fn an_expired_session_starts_a_new_one_at_request_1() {
    let mut s = session(1, Options::default());
    let conn = opened(&mut s);
    let old = s.client();
    let t = Instant(0);
    s.submit(t, Ask::Op(Op::Deliver));
    drain(&mut s);
    s.handle(t, reply(conn, 2, Reply::Error(ChatError::SessionExpired)));
    drain(&mut s);
    assert_ne!(s.client(), old);
    s.submit(t, Ask::Op(Op::Create { user: "x".into() }));
    let (conn, _) = connect_of(&drain(&mut s));
    s.handle(t, ConnEvent::Connected(conn));
    let sent = requests(&drain(&mut s));
    assert_eq!((sent[0].1, sent[0].2), (s.client(), 1));
    assert_eq!(sent[0].3, Op::OpenSession);
}

#[test]
fn a_reconnection_while_logged_in_is_probed() {
    let mut s = session(2, Options::default());
    let conn = opened(&mut s);
    let t = Instant(0);
    s.submit(t, Ask::Op(Op::Login { user: "bob".into() }));
    let login = Reply::LoggedIn {
        user: "bob".into(),
        waiting: 0,
    };
    s.handle(t, reply(conn, 2, login));
    drain(&mut s);
    assert!(s.is_idle());
    s.handle(
        t,
        ConnEvent::Closed {
            conn,
            why: Closed::Other("reset".into()),
        },
    );
    let (conn, replica) = connect_of(&drain(&mut s));
    assert_eq!(replica, 1);
    s.handle(t, ConnEvent::Connected(conn));
    let sent = requests(&drain(&mut s));
    assert_eq!((sent[0].2, &sent[0].3), (3, &Op::Ack { ids: vec![] }));
    // Its answer says the login is gone: the user is told.
    s.handle(t, reply(conn, 3, Reply::Error(ChatError::NotLoggedIn)));
    assert!(drain(&mut s).contains(&Output::Notice(Notice::LoggedOut)));
    assert!(!s.logged_in());
}

#[test]
fn the_status_says_what_was_tried_and_clears_with_the_answer() {
    let mut s = session(3, Options::default());
    let t = Instant(0);
    s.submit(t, Ask::Op(Op::OpenSession));
    let (c0, _) = connect_of(&drain(&mut s));
    s.handle(
        t,
        ConnEvent::Closed {
            conn: c0,
            why: Closed::Refused,
        },
    );
    let (c1, _) = connect_of(&drain(&mut s));
    s.handle(t, ConnEvent::Connected(c1));
    s.handle(
        t,
        ConnEvent::Frame {
            conn: c1,
            frame: ServerToClient::Redirect { primary: None },
        },
    );
    let (c2, r) = connect_of(&drain(&mut s));
    assert_eq!(r, 2);
    // Nothing is reported before `status_after`.
    assert_eq!(s.poll_timeout(), Instant(500 * MS));
    s.handle_timeout(Instant(500 * MS));
    let out = drain(&mut s);
    let Some(Output::Waiting(Some(w))) = out.last() else {
        panic!("{out:?}")
    };
    assert_eq!(
        w.to_string(),
        "replica 0 down (refused), replica 1 not primary, replica 2 trying"
    );
    assert!(w.user && w.sent && !w.none_serving());
    s.handle(
        Instant(600 * MS),
        ConnEvent::Closed {
            conn: c2,
            why: Closed::Refused,
        },
    );
    let out = drain(&mut s);
    let Some(Output::Waiting(Some(w))) = out.iter().find(|o| matches!(o, Output::Waiting(_)))
    else {
        panic!("{out:?}")
    };
    assert!(w.none_serving(), "{w}");
    // After a full round, a pause; then replica 0 again, which answers.
    let pause = s.poll_timeout();
    assert_eq!(pause, Instant(610 * MS), "the first backoff, 10 ms");
    s.handle_timeout(pause);
    let (c3, r) = connect_of(&drain(&mut s));
    assert_eq!(r, 0);
    s.handle(pause, ConnEvent::Connected(c3));
    s.handle(pause, reply(c3, 1, Reply::SessionOpened));
    let out = drain(&mut s);
    let at = |f: fn(&Output) -> bool| out.iter().position(f).expect("present");
    assert!(
        at(|o| *o == Output::Waiting(None)) < at(|o| matches!(o, Output::Answered { .. })),
        "the status is cleared before the answer: {out:?}"
    );
}

#[test]
fn gives_up_saying_whether_the_request_went_out() {
    let options = Options {
        give_up_after: Some(Duration::from_secs(3)),
        ..Options::default()
    };
    let mut s = session(1, options);
    let conn = opened(&mut s);
    let t = Instant(0);
    s.submit(t, Ask::Op(Op::Create { user: "x".into() }));
    s.submit(t, Ask::Op(Op::Deliver));
    drain(&mut s);
    let failures = loop {
        let now = s.poll_timeout();
        assert!(now <= Instant(3000 * MS), "gave up late: {now:?}");
        s.handle_timeout(now);
        let out = drain(&mut s);
        if let Some((c, _)) = out.iter().find_map(|o| match o {
            Output::Connect { conn, replica } => Some((*conn, *replica)),
            _ => None,
        }) {
            s.handle(
                now,
                ConnEvent::Closed {
                    conn: c,
                    why: Closed::Refused,
                },
            );
            drain(&mut s);
        }
        let failed: Vec<Failure> = out
            .into_iter()
            .filter_map(|o| match o {
                Output::Failed { failure, .. } => Some(failure),
                _ => None,
            })
            .collect();
        if !failed.is_empty() {
            break failed;
        }
    };
    assert_ne!(conn, 0);
    assert_eq!(failures.len(), 2, "the queued request fails with it");
    assert!(failures[0].maybe_applied(), "the first went out");
    assert!(!failures[1].maybe_applied());
    let text = failures[1].to_string();
    assert!(
        text.starts_with("no primary answered within 3 s (replica 0 down (refused)"),
        "{text}"
    );
    assert!(text.ends_with("not sent"), "{text}");
}

#[test]
fn cancelling_answers_the_user_at_once() {
    let mut s = session(2, Options::default());
    let conn = opened(&mut s);
    let t = Instant(0);
    s.submit(t, Ask::Op(Op::Create { user: "x".into() }));
    s.submit(t, Ask::Op(Op::Deliver));
    drain(&mut s);
    s.cancel(t);
    let out = drain(&mut s);
    assert_eq!(
        out,
        [
            Output::Failed {
                ticket: 2,
                failure: Failure::Cancelled { sent: true }
            },
            Output::Failed {
                ticket: 3,
                failure: Failure::Cancelled { sent: false }
            },
        ]
    );
    // A late reply to the cancelled request is ignored; the next request has a new number.
    s.handle(t, reply(conn, 2, Reply::Created));
    assert!(drain(&mut s).is_empty());
    s.submit(t, Ask::Op(Op::Deliver));
    assert_eq!(requests(&drain(&mut s))[0].2, 3);
}
