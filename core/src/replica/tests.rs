//! Handler-level tests: a replica built in a chosen view, one input, the exact outputs.
//! Every step is followed by `check_invariants`.

use super::*;
use crate::chat::Op;
use crate::durable::EntryBody;

const N: u8 = 3;

fn entries(views: &[View]) -> Vec<Entry> {
    views
        .iter()
        .enumerate()
        .map(|(i, &view)| Entry {
            index: i as u64 + 1,
            view,
            body: EntryBody::Noop,
        })
        .collect()
}

/// Replica `id` of three, restarted in `view` with a log of entries of the given views.
fn replica(id: ReplicaId, view: View, log: &[View]) -> Replica {
    let recovered = Recovered {
        view,
        voted_for: None,
        snapshot: None,
        entries: entries(log),
    };
    Replica::new(Options::new(id, N), recovered, Instant::ZERO).unwrap()
}

fn outputs(r: &mut Replica) -> Vec<Output> {
    r.check_invariants().unwrap();
    std::iter::from_fn(|| r.poll_output()).collect()
}

fn handle(r: &mut Replica, input: Input) -> Vec<Output> {
    let now = r.now;
    r.handle(now, input);
    outputs(r)
}

fn peer(r: &mut Replica, from: ReplicaId, message: PeerMessage) -> Vec<Output> {
    handle(r, Input::Peer { from, message })
}

/// Everything handed out so far becomes durable.
fn persist_all(r: &mut Replica) -> Vec<Output> {
    let id = r.next_persist - 1;
    handle(r, Input::Persisted(id))
}

fn vote_record(view: View, voted_for: Option<ReplicaId>) -> Persist {
    Persist::Records(vec![Record::Vote { view, voted_for }])
}

fn send(to: ReplicaId, message: PeerMessage) -> Output {
    Output::Send { to, message }
}

/// Replica 0 made primary of `view` (its log as given), with every persist durable.
fn primary(view: View, log: &[View]) -> Replica {
    let mut r = replica(0, view - 1, log);
    let at = r.poll_timeout();
    r.tick(at);
    outputs(&mut r);
    persist_all(&mut r);
    let message = PeerMessage::VoteReply {
        view,
        granted: true,
    };
    peer(&mut r, 1, message);
    persist_all(&mut r);
    assert_eq!(r.status().role, Role::Primary);
    r
}

fn request(client: ClientId, request: RequestNo, op: Op) -> Request {
    Request {
        client,
        request,
        op,
    }
}

#[test]
fn a_backup_adopts_a_higher_view_from_its_primary_and_answers_after_persisting() {
    let mut r = replica(1, 2, &[1, 2]);
    let append = PeerMessage::Append {
        view: 3,
        prev_index: 2,
        prev_view: 2,
        entries: vec![],
        commit: 1,
    };
    assert_eq!(
        peer(&mut r, 0, append),
        vec![Output::Persist {
            id: 1,
            what: vote_record(3, None)
        }],
        "the reply waits until the new view is durable"
    );
    let reply = PeerMessage::AppendReply {
        view: 3,
        ok: true,
        index: 2,
        prev_index: 2,
    };
    assert_eq!(persist_all(&mut r), vec![send(0, reply)]);
    assert_eq!(r.commit_index(), 1);
    assert_eq!(r.status().primary, Some(0));
    assert_eq!(
        handle(&mut r, Input::Client(request(9, 1, Op::OpenSession))),
        vec![Output::Redirect {
            client: 9,
            primary: Some(0)
        }]
    );
}

#[test]
fn a_backup_refuses_an_append_from_an_older_view_and_names_its_own() {
    let mut r = replica(1, 4, &[1]);
    let append = PeerMessage::Append {
        view: 3,
        prev_index: 1,
        prev_view: 1,
        entries: entries(&[1, 3])[1..].to_vec(),
        commit: 2,
    };
    let reply = PeerMessage::AppendReply {
        view: 4,
        ok: false,
        index: 1,
        prev_index: 1,
    };
    assert_eq!(peer(&mut r, 0, append), vec![send(0, reply)]);
    assert_eq!(r.status().last_index, 1);
}

#[test]
fn a_backup_replaces_a_conflicting_uncommitted_suffix() {
    let mut r = replica(1, 3, &[1, 2, 2]);
    let new = Entry {
        index: 2,
        view: 3,
        body: EntryBody::Noop,
    };
    let append = PeerMessage::Append {
        view: 3,
        prev_index: 1,
        prev_view: 1,
        entries: vec![new.clone()],
        commit: 0,
    };
    assert_eq!(
        peer(&mut r, 0, append),
        vec![Output::Persist {
            id: 1,
            what: Persist::Records(vec![Record::TruncateFrom(2), Record::Entry(new)])
        }]
    );
    let reply = PeerMessage::AppendReply {
        view: 3,
        ok: true,
        index: 2,
        prev_index: 1,
    };
    assert_eq!(persist_all(&mut r), vec![send(0, reply)]);
    assert_eq!(r.status().last_index, 2);
}

#[test]
fn a_replica_votes_once_per_view_and_only_for_a_log_as_up_to_date_as_its_own() {
    let mut r = replica(2, 2, &[1, 2]);
    let ask = |last_index, last_view| PeerMessage::RequestVote {
        view: 3,
        last_index,
        last_view,
    };
    // Shorter log: adopts the view, refuses the vote.
    assert_eq!(
        peer(&mut r, 1, ask(1, 2)),
        vec![Output::Persist {
            id: 1,
            what: vote_record(3, None)
        }]
    );
    let refused = PeerMessage::VoteReply {
        view: 3,
        granted: false,
    };
    assert_eq!(persist_all(&mut r), vec![send(1, refused.clone())]);
    // Same log from 0: granted, after the vote is durable.
    assert_eq!(
        peer(&mut r, 0, ask(2, 2)),
        vec![Output::Persist {
            id: 2,
            what: vote_record(3, Some(0))
        }]
    );
    let granted = PeerMessage::VoteReply {
        view: 3,
        granted: true,
    };
    assert_eq!(persist_all(&mut r), vec![send(0, granted.clone())]);
    // Asked again by 0 (a retransmission): the same answer; by 1 now with a longer log: no.
    assert_eq!(peer(&mut r, 0, ask(2, 2)), vec![send(0, granted)]);
    assert_eq!(peer(&mut r, 1, ask(5, 2)), vec![send(1, refused)]);
}

#[test]
fn an_election_timeout_makes_a_candidate_that_asks_after_its_own_vote_is_durable() {
    let mut r = replica(0, 4, &[2, 4]);
    let at = r.poll_timeout();
    assert!(at >= Instant::ZERO + Options::new(0, N).election_timeout);
    r.tick(at);
    assert_eq!(
        outputs(&mut r),
        vec![Output::Persist {
            id: 1,
            what: vote_record(5, Some(0))
        }]
    );
    assert_eq!(r.status().role, Role::Candidate);
    let ask = PeerMessage::RequestVote {
        view: 5,
        last_index: 2,
        last_view: 4,
    };
    assert_eq!(
        persist_all(&mut r),
        vec![send(1, ask.clone()), send(2, ask)]
    );
    assert!(r.poll_timeout() > at, "the election timer is armed again");
}

#[test]
fn a_candidate_with_a_majority_becomes_primary_and_appends_a_noop_of_its_view() {
    let mut r = replica(0, 4, &[2, 4]);
    let at = r.poll_timeout();
    r.tick(at);
    outputs(&mut r);
    persist_all(&mut r);
    let granted = PeerMessage::VoteReply {
        view: 5,
        granted: true,
    };
    let noop = Entry {
        index: 3,
        view: 5,
        body: EntryBody::Noop,
    };
    let append = PeerMessage::Append {
        view: 5,
        prev_index: 2,
        prev_view: 4,
        entries: vec![noop.clone()],
        commit: 0,
    };
    assert_eq!(
        peer(&mut r, 2, granted),
        vec![
            Output::Persist {
                id: 2,
                what: Persist::Records(vec![Record::Entry(noop)])
            },
            send(1, append.clone()),
            send(2, append),
        ]
    );
    assert_eq!(r.status().role, Role::Primary);
    assert_eq!(r.poll_timeout(), at + Options::new(0, N).heartbeat_interval);
}

#[test]
fn a_vote_from_an_older_view_counts_for_nothing() {
    let mut r = replica(0, 4, &[]);
    let at = r.poll_timeout();
    r.tick(at);
    outputs(&mut r);
    persist_all(&mut r);
    let old = PeerMessage::VoteReply {
        view: 4,
        granted: true,
    };
    assert_eq!(peer(&mut r, 1, old), vec![]);
    assert_eq!(r.status().role, Role::Candidate);
}

#[test]
fn a_primary_commits_once_a_majority_holds_the_entry_durably_and_replies_once() {
    let mut r = primary(2, &[1]);
    // Noop of view 2 at index 2: a backup's acknowledgement commits it with index 1.
    let ack = |index, prev_index| PeerMessage::AppendReply {
        view: 2,
        ok: true,
        index,
        prev_index,
    };
    assert_eq!(peer(&mut r, 1, ack(2, 1)), vec![]);
    assert_eq!(r.commit_index(), 2);
    let open = request(7, 1, Op::OpenSession);
    let entry = Entry {
        index: 3,
        view: 2,
        body: EntryBody::Request(open.clone()),
    };
    let out = handle(&mut r, Input::Client(open.clone()));
    assert_eq!(
        out,
        vec![
            Output::Persist {
                id: 3,
                what: Persist::Records(vec![Record::Entry(entry.clone())])
            },
            send(
                1,
                PeerMessage::Append {
                    view: 2,
                    prev_index: 2,
                    prev_view: 2,
                    entries: vec![entry],
                    commit: 2
                }
            ),
        ],
        "only the backup that is known to keep up gets the entry at once"
    );
    // A retry while the request is ordered but not committed: nothing new.
    assert_eq!(handle(&mut r, Input::Client(open.clone())), vec![]);
    // The backup holds it, but the primary's own copy is not durable yet: no commit.
    assert_eq!(peer(&mut r, 1, ack(3, 2)), vec![]);
    assert_eq!(r.commit_index(), 2);
    assert_eq!(
        persist_all(&mut r),
        vec![Output::Reply {
            client: 7,
            request: 1,
            reply: Reply::SessionOpened
        }]
    );
    // Later retries are answered from the client table.
    assert_eq!(
        handle(&mut r, Input::Client(open)),
        vec![Output::Reply {
            client: 7,
            request: 1,
            reply: Reply::SessionOpened
        }]
    );
}

#[test]
fn a_primary_steps_down_on_hearing_of_a_higher_view() {
    let mut r = primary(2, &[]);
    let reply = PeerMessage::AppendReply {
        view: 5,
        ok: false,
        index: 0,
        prev_index: 0,
    };
    assert_eq!(
        peer(&mut r, 2, reply),
        vec![Output::Persist {
            id: 3,
            what: vote_record(5, None)
        }]
    );
    assert_eq!(r.status().role, Role::Backup);
    assert_eq!(r.status().primary, None);
}

#[test]
fn a_primary_that_hears_no_majority_for_an_election_timeout_steps_down() {
    let mut r = primary(2, &[]);
    let opts = Options::new(0, N);
    // Heartbeats while the backups were heard recently enough.
    let at = r.poll_timeout();
    r.tick(at);
    let out = outputs(&mut r);
    assert_eq!(out.len(), 2, "a heartbeat to each backup: {out:?}");
    assert_eq!(r.status().role, Role::Primary);
    // Silence for a whole election timeout.
    let mut at = r.poll_timeout();
    while at < Instant::ZERO + opts.election_timeout * 3 {
        r.tick(at);
        outputs(&mut r);
        if r.status().role != Role::Primary {
            break;
        }
        at = r.poll_timeout();
    }
    assert_eq!(r.status().role, Role::Backup);
    assert!(r.poll_timeout() > at, "the election timer runs again");
}

#[test]
fn invariants_catch_a_broken_replica() {
    let mut r = replica(0, 3, &[1, 2]);
    r.check_invariants().unwrap();
    r.commit = 3;
    assert!(r.check_invariants().is_err(), "commit beyond the log");
    r.commit = 0;
    // A second vote in one view.
    r.step_start = StepStart::of(&r);
    r.voted_for = Some(1);
    r.persisted_vote = (3, Some(1));
    r.step_start = StepStart::of(&r);
    r.voted_for = Some(2);
    r.persisted_vote = (3, Some(2));
    let err = r.check_invariants().unwrap_err();
    assert!(err.what.contains("two votes"), "{err}");
    // A vote changed without handing it to the driver.
    r.step_start = StepStart::of(&r);
    r.voted_for = Some(1);
    r.step_start = StepStart::of(&r);
    assert!(r.check_invariants().is_err());
    // A primary's role state with a backup's timers.
    let mut p = primary(2, &[]);
    p.timers.disarm(Timer::Heartbeat);
    assert!(p.check_invariants().is_err());
}
