//! Handler-level tests: a replica built in a chosen state, one input, the exact outputs that
//! matter. Every step is followed by `check_invariants`.

use super::view::{ballot, Durable, Exclusion, Incarnation, Members, ViewDef};
use super::*;

const N: u8 = 3;

fn outputs(r: &mut Replica) -> Vec<Output> {
    r.check_invariants().unwrap();
    std::iter::from_fn(|| r.poll_output()).collect()
}

fn handle(r: &mut Replica, at_ms: u64, input: Input) -> Vec<Output> {
    r.handle(Instant(at_ms * 1000), input);
    outputs(r)
}

fn tick(r: &mut Replica, at_ms: u64) -> Vec<Output> {
    r.tick(Instant(at_ms * 1000));
    outputs(r)
}

/// Everything handed out so far becomes durable.
fn persist_all(r: &mut Replica, at_ms: u64) -> Vec<Output> {
    let id = r.next_persist - 1;
    handle(r, at_ms, Input::Persisted(id))
}

fn sends(out: &[Output]) -> Vec<(ReplicaId, Body)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { to, message } => Some((*to, message.body.clone())),
            _ => None,
        })
        .collect()
}

fn persisted_states(out: &[Output]) -> Vec<Durable> {
    out.iter()
        .filter_map(|o| match o {
            Output::Persist {
                what: Persist::Records(records),
                ..
            } => Some(records.clone()),
            _ => None,
        })
        .flatten()
        .filter_map(|r| match r {
            Record::Protocol(state) => Some(state),
            _ => None,
        })
        .collect()
}

fn peer(
    r: &mut Replica,
    at_ms: u64,
    from: ReplicaId,
    life: Incarnation,
    body: Body,
) -> Vec<Output> {
    let message = PeerMessage { life, body };
    handle(r, at_ms, Input::Peer { from, message })
}

const PEER: Incarnation = Incarnation { counter: 1, id: 42 };

/// Replica `id` of three in its first life (initial view, established), started at 0 ms,
/// its incarnation durable.
fn fresh(id: ReplicaId) -> (Replica, Vec<Output>) {
    let mut r = Replica::new(Options::new(id, N), Recovered::default(), Instant::ZERO).unwrap();
    let mut out = outputs(&mut r);
    out.extend(persist_all(&mut r, 0));
    (r, out)
}

#[test]
fn the_incarnation_is_durable_before_anything_is_sent() {
    let mut r = Replica::new(Options::new(0, N), Recovered::default(), Instant::ZERO).unwrap();
    let first = outputs(&mut r);
    assert_eq!(persisted_states(&first)[0].incarnation, 1);
    assert!(sends(&first).is_empty(), "{first:?}");
    let out = tick(&mut r, 0);
    assert!(sends(&out).is_empty());
    let out = persist_all(&mut r, 1);
    assert!(
        !sends(&out).is_empty(),
        "held messages leave once it is durable"
    );
    assert_eq!(
        r.status().role,
        Role::Primary,
        "the first view's primary is 0"
    );
}

#[test]
fn a_promise_is_durable_before_the_answer_leaves_and_refuses_lower_ballots() {
    let (mut r, _) = fresh(2);
    let b = ballot(1, 1);
    let out = peer(
        &mut r,
        10,
        1,
        PEER,
        Body::Prepare {
            ballot: b,
            excluding: vec![],
        },
    );
    assert_eq!(persisted_states(&out)[0].promised, b);
    assert!(sends(&out).is_empty(), "held until the promise is durable");
    let out = persist_all(&mut r, 11);
    assert!(matches!(
        sends(&out).as_slice(),
        [(1, Body::Promise { ballot, granted: true, .. })] if *ballot == b
    ));
    // An Append of the lower ballot (view 0) is no longer acknowledged.
    let out = peer(
        &mut r,
        12,
        0,
        PEER,
        Body::Append {
            view: 0,
            established: true,
            prev_index: 0,
            prev_view: 0,
            entries: vec![],
            commit: 0,
        },
    );
    assert!(matches!(
        sends(&out).as_slice(),
        [(0, Body::AppendReply { ok: false, view, .. })] if *view == b
    ));
}

#[test]
fn a_member_accepts_only_once_it_holds_the_proposers_log() {
    let (mut r, _) = fresh(2);
    let b = ballot(1, 1);
    peer(
        &mut r,
        10,
        1,
        PEER,
        Body::Prepare {
            ballot: b,
            excluding: vec![],
        },
    );
    persist_all(&mut r, 10);
    let view = ViewDef {
        ballot: b,
        members: Members::all(N),
    };
    let entry = Entry {
        index: 1,
        view: 0,
        body: EntryBody::Noop,
    };
    let propose = Body::Propose {
        view,
        base: 0,
        voters: vec![],
        excluded: vec![],
        log_end: 1,
        log_end_view: 0,
        sent_at: Instant(5),
    };
    let out = peer(&mut r, 20, 1, PEER, propose);
    assert!(
        persisted_states(&out).is_empty(),
        "it lacks entry 1: {out:?}"
    );
    let out = peer(
        &mut r,
        21,
        1,
        PEER,
        Body::Append {
            view: b,
            established: false,
            prev_index: 0,
            prev_view: 0,
            entries: vec![entry],
            commit: 0,
        },
    );
    assert_eq!(persisted_states(&out).last().unwrap().accepted, view);
    assert!(sends(&out).is_empty(), "answers wait for the disk");
    let out = persist_all(&mut r, 22);
    assert!(sends(&out).iter().any(|(to, body)| *to == 1
        && *body
            == Body::Accepted {
                ballot: b,
                echo: Instant(5)
            }));
}

#[test]
fn a_refusal_under_a_lease_is_evidence_and_the_first_backup_proposes_at_once() {
    let (mut r, _) = fresh(1);
    // A heartbeat exchange with 0 gives 1 a lease from 0.
    let out = tick(&mut r, 50);
    let sent_at = sends(&out)
        .iter()
        .find_map(|(to, b)| match b {
            Body::Heartbeat { sent_at, .. } if *to == 0 => Some(*sent_at),
            _ => None,
        })
        .unwrap();
    peer(&mut r, 52, 0, PEER, Body::HeartbeatOk { echo: sent_at });
    let out = handle(&mut r, 60, Input::PeerRefused(0));
    assert_eq!(r.status().role, Role::Candidate);
    assert_eq!(persisted_states(&out)[0].promised, ballot(1, 1));
    let out = persist_all(&mut r, 61);
    let prepares: Vec<_> = sends(&out)
        .into_iter()
        .filter(|(_, b)| matches!(b, Body::Prepare { .. }))
        .collect();
    assert_eq!(
        prepares,
        vec![(
            2,
            Body::Prepare {
                ballot: ballot(1, 1),
                excluding: vec![(0, Exclusion::Crashed(PEER))]
            }
        )],
        "phase 1 asks only the kept members"
    );
}

#[test]
fn a_refusal_without_a_lease_is_nothing() {
    let (mut r, _) = fresh(1);
    handle(&mut r, 60, Input::PeerRefused(0));
    assert_eq!(r.status().role, Role::Backup);
}

#[test]
fn a_restarted_replica_rejoins_and_stays_quiet() {
    let (mut r, _) = fresh(1);
    persist_all(&mut r, 1);
    let state = r.state;
    let recovered = Recovered {
        protocol: Some(state),
        ..Recovered::default()
    };
    let mut r = Replica::new(Options::new(1, N), recovered, Instant(5_000_000)).unwrap();
    outputs(&mut r);
    let status = r.status();
    assert!(status.rejoining);
    assert_eq!(r.state.incarnation, 2);
    assert!(!r.leases.may_vote_or_accept(Instant(5_000_000)));
}

#[test]
fn a_restarted_view_of_one_resumes_at_once_but_not_with_a_higher_proposal() {
    let alone = ViewDef {
        ballot: ballot(4, 2),
        members: Members::one(2),
    };
    let state = Durable {
        incarnation: 3,
        promised: alone.ballot,
        accepted: alone,
        vote: false,
        established: alone,
    };
    let start = |state| {
        let recovered = Recovered {
            protocol: Some(state),
            ..Recovered::default()
        };
        let mut r = Replica::new(Options::new(2, N), recovered, Instant::ZERO).unwrap();
        outputs(&mut r);
        r.status()
    };
    assert_eq!(start(state).role, Role::Primary);
    // F4: it accepted a proposal to re-add a member: it must not act alone.
    let higher = ViewDef {
        ballot: ballot(5, 2),
        members: Members::one(2).with(1),
    };
    let status = start(Durable {
        promised: higher.ballot,
        accepted: higher,
        ..state
    });
    assert!(status.rejoining && status.role != Role::Primary);
}

/// Soak seeds 440 and 105 (2026-12-03): replica 1 and the primary 0 form `{0, 1}` (2 left
/// out as crashed, its disk later lost for good); 0 restarts and rejoins, talking but
/// silent to 1's leases. 1 keeps 0 and re-forms the view with it (leaving 0 out for silence
/// would need 2's vote), and goes on to phase 2 once 0 answered, without 2's answer (it
/// asked 2 only because someone was silent).
#[test]
fn a_rejoining_primary_is_kept_and_a_missing_answer_not_needed_blocks_nothing() {
    let (mut r, _) = fresh(1);
    let pair = ViewDef {
        ballot: ballot(1, 0),
        members: Members::one(0).with(1),
    };
    let excluded = vec![(2, Exclusion::Crashed(PEER))];
    peer(
        &mut r,
        10,
        0,
        PEER,
        Body::Prepare {
            ballot: pair.ballot,
            excluding: excluded.clone(),
        },
    );
    persist_all(&mut r, 10);
    let propose = Body::Propose {
        view: pair,
        base: 0,
        voters: vec![],
        excluded,
        log_end: 0,
        log_end_view: 0,
        sent_at: Instant(10_000),
    };
    peer(&mut r, 20, 0, PEER, propose);
    persist_all(&mut r, 20);
    let established = Body::Append {
        view: pair.ballot,
        established: true,
        prev_index: 0,
        prev_view: 0,
        entries: vec![],
        commit: 0,
    };
    peer(&mut r, 30, 0, PEER, established);
    persist_all(&mut r, 30);
    assert_eq!((r.state.accepted, r.state.established), (pair, pair));

    // 0 restarted: a new incarnation, rejoining, past its quiet interval.
    let reborn = Incarnation { counter: 2, id: 43 };
    let hello = Report {
        promised: pair.ballot,
        accepted: pair,
        vote: false,
        established: pair,
        rejoining: true,
        quiet: false,
        log_end: 0,
    };
    let mut prepared = None;
    let mut proposed = None;
    for at in (50..4_000).step_by(50) {
        let mut out = tick(&mut r, at);
        out.extend(peer(
            &mut r,
            at,
            0,
            reborn,
            Body::Hello {
                report: hello,
                answer: false,
            },
        ));
        out.extend(persist_all(&mut r, at));
        for (to, body) in sends(&out) {
            match body {
                Body::Prepare { ballot, excluding } => {
                    assert!(
                        excluding.iter().all(|&(m, _)| m != 0),
                        "the talking primary is kept: {excluding:?}"
                    );
                    if to == 0 {
                        prepared = Some(ballot);
                    }
                }
                Body::Propose { view, .. } => proposed = Some(view),
                _ => {}
            }
        }
        if let Some(b) = prepared.take() {
            // Only 0 answers; 2 is gone for good.
            let report = Report {
                promised: b,
                ..hello
            };
            let answer = Body::Promise {
                ballot: b,
                granted: true,
                report,
            };
            let out = peer(&mut r, at + 1, 0, reborn, answer);
            for (_, body) in sends(&out) {
                if let Body::Propose { view, .. } = body {
                    proposed = Some(view);
                }
            }
        }
        if proposed.is_some() {
            break;
        }
    }
    let view = proposed.expect("phase 2 starts without 2's answer");
    assert_eq!(view.members, pair.members);
    assert_eq!(view::proposer(view.ballot), 1);
}

/// Soak seed 394 (2026-12-03): an `Append` of the view its earlier life accepted must not end
/// a restarted replica's rejoining: the primary may be leaving that life out on evidence of
/// its crash (here it sent the `Append` first), and the replica would then act as a member of
/// a view that moved on without it. It comes back through a view its new incarnation accepts.
#[test]
fn a_restarted_replica_comes_back_only_in_a_view_it_accepted_in_this_life() {
    let (mut r, _) = fresh(1);
    persist_all(&mut r, 1);
    let recovered = Recovered {
        protocol: Some(r.state),
        ..Recovered::default()
    };
    let start_ms = 5_000;
    let mut r = Replica::new(Options::new(1, N), recovered, Instant(start_ms * 1000)).unwrap();
    outputs(&mut r);
    persist_all(&mut r, start_ms);
    let append = |view| Body::Append {
        view,
        established: true,
        prev_index: 0,
        prev_view: 0,
        entries: vec![],
        commit: 0,
    };
    peer(&mut r, start_ms + 10, 0, PEER, append(0));
    assert!(r.status().rejoining, "view 0 was accepted by the old life");

    // Past the quiet interval, 0 re-adds it: a proposal the new incarnation accepts.
    let mut at = start_ms + 10;
    while at < start_ms + 1_500 {
        at += 50;
        tick(&mut r, at);
    }
    let b = ballot(1, 0);
    peer(
        &mut r,
        at,
        0,
        PEER,
        Body::Prepare {
            ballot: b,
            excluding: vec![],
        },
    );
    persist_all(&mut r, at);
    let view = ViewDef {
        ballot: b,
        members: Members::all(N),
    };
    let propose = Body::Propose {
        view,
        base: 0,
        voters: vec![],
        excluded: vec![],
        log_end: 0,
        log_end_view: 0,
        sent_at: Instant(at * 1000),
    };
    peer(&mut r, at + 1, 0, PEER, propose);
    persist_all(&mut r, at + 1);
    assert_eq!(r.state.accepted, view);
    peer(&mut r, at + 2, 0, PEER, append(b));
    assert!(!r.status().rejoining, "back in a view it accepted");
}

/// Soak seeds 1606 and 1726 (2026-12-03): 0 proposed b2.0{0} (leaving 1 out), crashed
/// before it was established, and restarted. The highest view, b2.0, does not hold 1, so 1
/// may not propose on it (rule 1b), and 1 does not follow b1.0's primary either. 0, the
/// proposer of that unestablished view, re-forms it with 1 under rule 8 as soon as it reaches
/// 1, though 1 is not rejoining.
#[test]
fn a_restarted_proposer_re_forms_its_unestablished_view_with_a_live_member() {
    let established = ViewDef {
        ballot: ballot(1, 0),
        members: Members::one(0).with(1),
    };
    let own = ViewDef {
        ballot: ballot(2, 0),
        members: Members::one(0),
    };
    let recovered = Recovered {
        protocol: Some(Durable {
            incarnation: 2,
            promised: own.ballot,
            accepted: own,
            vote: false,
            established,
        }),
        ..Recovered::default()
    };
    let mut r = Replica::new(Options::new(0, N), recovered, Instant::ZERO).unwrap();
    outputs(&mut r);
    persist_all(&mut r, 0);
    assert!(r.status().rejoining);
    let live = Report {
        promised: established.ballot,
        accepted: established,
        vote: false,
        established,
        rejoining: false,
        quiet: false,
        log_end: 0,
    };
    let mut prepared = None;
    for at in (50..3_000).step_by(50) {
        let mut out = tick(&mut r, at);
        let hello = Body::Hello {
            report: live,
            answer: false,
        };
        out.extend(peer(&mut r, at, 1, PEER, hello));
        out.extend(persist_all(&mut r, at));
        prepared = sends(&out).into_iter().find_map(|(to, body)| match body {
            Body::Prepare { ballot, excluding } if to == 1 && excluding.is_empty() => Some(ballot),
            _ => None,
        });
        if let Some(b) = prepared {
            assert!(at >= 1_000, "not before its quiet interval ({at} ms)");
            let answer = Body::Promise {
                ballot: b,
                granted: true,
                report: Report {
                    promised: b,
                    ..live
                },
            };
            let mut out = peer(&mut r, at + 1, 1, PEER, answer);
            out.extend(persist_all(&mut r, at + 1));
            let proposed = sends(&out).into_iter().find_map(|(to, body)| match body {
                Body::Propose { view, base, .. } if to == 1 => Some((view, base)),
                _ => None,
            });
            let (view, base) = proposed.expect("phase 2 with 1's promise");
            assert_eq!((view.members, base), (established.members, own.ballot));
            break;
        }
    }
    assert!(prepared.is_some(), "0 re-forms its view");
}

/// Soak seed 557 (five replicas, 2026-12-03): a partition cut the cluster in two; each side
/// proposed a view leaving the other out for silence, and neither was established (no
/// majority). After the heal the two sides talked again but each still withheld its promises
/// from the other (rule 4(b): until it is a member again), so each kept seeing the other as
/// silent and proposing to leave it out, refused by the replica that still promised both: no
/// primary for good. Here 1 left 0 out (b1.1{1, 2}, never accepted by 2); once 0 talks again,
/// 1 keeps it and re-forms the view with it, still not answering 0's heartbeats meanwhile.
#[test]
fn a_member_left_out_by_a_proposal_that_never_took_is_kept_once_it_talks_again() {
    let (mut r, _) = fresh(1);
    let first = ViewDef::initial(N);
    let report_of = |promised| Report {
        promised,
        accepted: first,
        vote: false,
        established: first,
        rejoining: false,
        quiet: false,
        log_end: 0,
    };
    // 0 talks again from 1,900 ms on, once 1's first proposal without it (after the start's
    // grace of one promise, 1,260 ms) was dropped.
    let talks_from = 1_900;
    let mut left_out_by = None;
    let mut re_formed = None;
    for at in (50..6_000).step_by(50) {
        let mut out = tick(&mut r, at);
        // 2 answers our heartbeats and sends its own; 0 is cut off, then talks again.
        for (to, body) in sends(&out) {
            if let (2, Body::Heartbeat { sent_at, .. }) = (to, body) {
                peer(&mut r, at, 2, PEER, Body::HeartbeatOk { echo: sent_at });
            }
        }
        out.extend(peer(
            &mut r,
            at,
            2,
            PEER,
            Body::Heartbeat {
                sent_at: Instant(at * 1000),
                lagging: Members::default(),
            },
        ));
        if at >= talks_from {
            out.extend(peer(
                &mut r,
                at,
                0,
                PEER,
                Body::Heartbeat {
                    sent_at: Instant(at * 1000),
                    lagging: Members::default(),
                },
            ));
        }
        out.extend(persist_all(&mut r, at));
        for (to, body) in sends(&out) {
            match body {
                Body::HeartbeatOk { .. } => {
                    assert_ne!(to, 0, "no promise to 0 before it is a member again");
                }
                Body::Prepare { ballot, excluding } if at < talks_from => {
                    assert_eq!((to, excluding), (2, vec![(0, Exclusion::Silent)]));
                    let answer = Body::Promise {
                        ballot,
                        granted: true,
                        report: report_of(ballot),
                    };
                    peer(&mut r, at + 1, 2, PEER, answer);
                    persist_all(&mut r, at + 1);
                }
                Body::Prepare { ballot, excluding } => {
                    assert!(excluding.is_empty(), "0 talks: it is kept ({excluding:?})");
                    left_out_by = left_out_by.or(Some(r.state.accepted));
                    let answer = Body::Promise {
                        ballot,
                        granted: true,
                        report: report_of(ballot),
                    };
                    let mut out = peer(&mut r, at + 1, to, PEER, answer);
                    out.extend(persist_all(&mut r, at + 1));
                    re_formed = re_formed.or(sends(&out).into_iter().find_map(|(_, b)| match b {
                        Body::Propose { view, base, .. } => Some((view, base)),
                        _ => None,
                    }));
                }
                // 2 never accepts the view without 0.
                _ => {}
            }
        }
        if re_formed.is_some() {
            break;
        }
    }
    let (view, base) = re_formed.expect("1 re-forms the view with 0");
    let left_out_by = left_out_by.unwrap();
    assert_eq!(left_out_by.members, Members::one(1).with(2));
    assert_eq!((view.members, base), (Members::all(N), left_out_by.ballot));
}

/// `chat-admin remove`: the survivor of two silent replicas may not leave them out on its
/// own (silence needs a majority), but once the operator declares both hosts gone it forms a
/// view of one and serves. Removing itself, an unknown id, or a replica heard lately is
/// refused; so is any removal while rejoining.
#[test]
fn the_operator_removes_two_silent_replicas_and_the_survivor_serves_alone() {
    let (mut r, _) = fresh(0);
    for from in [1, 2] {
        let sent_at = Instant(10_000);
        let lagging = Members::default();
        peer(&mut r, 10, from, PEER, Body::Heartbeat { sent_at, lagging });
    }
    let at = |ms: u64| Instant(ms * 1000);
    assert_eq!(r.may_remove(at(20), 0), Err(RemoveRefused::Itself));
    assert_eq!(r.may_remove(at(20), 7), Err(RemoveRefused::Unknown(7)));
    assert_eq!(
        r.may_remove(at(110), 1),
        Err(RemoveRefused::Heard {
            peer: 1,
            ago_ms: 100
        })
    );
    // Silent past every lease: still no view without them.
    for ms in (100..5_000).step_by(100) {
        tick(&mut r, ms);
        persist_all(&mut r, ms);
    }
    assert_eq!(r.status().members, vec![0, 1, 2]);
    assert_eq!(r.may_remove(at(5_000), 1), Ok(()));
    handle(&mut r, 5_000, Input::Removed(1));
    handle(&mut r, 5_000, Input::Removed(2));
    for ms in (5_000..5_100).step_by(10) {
        persist_all(&mut r, ms);
        tick(&mut r, ms);
    }
    let status = r.status();
    assert_eq!(
        (status.role, status.members, status.established),
        (Role::Primary, vec![0], true)
    );
}

#[test]
fn a_rejoining_replica_removes_nobody() {
    let (r, _) = fresh(1);
    let state = r.state;
    let recovered = Recovered {
        protocol: Some(state),
        ..Recovered::default()
    };
    let restarted = Replica::new(Options::new(1, N), recovered, Instant(10_000_000)).unwrap();
    assert_eq!(
        restarted.may_remove(Instant(10_000_000), 2),
        Err(RemoveRefused::Rejoining)
    );
}

/// The acknowledgement of an `Append`: every entry it carried is now held.
fn acknowledged(append: &Body) -> Body {
    let Body::Append {
        view,
        prev_index,
        entries,
        ..
    } = append
    else {
        panic!("not an Append: {append:?}");
    };
    Body::AppendReply {
        view: *view,
        ok: true,
        index: prev_index + entries.len() as u64,
        prev_index: *prev_index,
    }
}

/// A report of the first view with `promised`, from a replica that has no log.
fn first_view_report(promised: View) -> Report {
    let first = ViewDef::initial(N);
    Report {
        promised,
        accepted: first,
        vote: false,
        established: first,
        rejoining: false,
        quiet: false,
        log_end: 0,
    }
}

fn heartbeat(at_ms: u64, lagging: Members) -> Body {
    Body::Heartbeat {
        sent_at: Instant(at_ms * 1000),
        lagging,
    }
}

/// Rule 6 (F1's schedule, one way): 2 hears nothing from the primary 0 but still talks to
/// it, so 0 keeps hearing 2 and, before rule 6, kept renewing its promise to it for ever:
/// commits stalled. Now 0 reports 2 lagging once it acknowledged nothing for the lag bound,
/// stops renewing its own promise, and once that promise ran out leaves 2 out for silence
/// with 1's vote (rule 4(b)) though 2 still talks. A refused attempt does not withdraw the
/// report: it stands until 0 acts again.
#[test]
fn the_primary_reports_a_member_that_acknowledges_nothing_lagging_and_leaves_it_out() {
    leave_out_a_member_that_acknowledges_nothing(false);
}

/// As above, but 2 answers 0's heartbeats all along (its event loop runs, its disk is
/// stalled): 0 holds a lease from it throughout, and the report still stands through the
/// refused attempt (only a lease that came back after it had lapsed withdraws it).
#[test]
fn a_member_that_answers_heartbeats_but_acknowledges_nothing_is_left_out_too() {
    leave_out_a_member_that_acknowledges_nothing(true);
}

fn leave_out_a_member_that_acknowledges_nothing(answers_heartbeats: bool) {
    let (mut r, _) = fresh(0);
    let bound = r.opts.lag_bound().as_micros() as u64 / 1000;
    let mut reported_at = None;
    let mut last_promise_to_2 = 0;
    let mut refused_at = None;
    let mut reported_after_refusal = false;
    let mut proposed = None;
    for at in (50..5_000).step_by(50) {
        let mut out = tick(&mut r, at);
        out.extend(peer(&mut r, at, 1, PEER, heartbeat(at, Members::default())));
        out.extend(peer(&mut r, at, 2, PEER, heartbeat(at, Members::default())));
        out.extend(persist_all(&mut r, at));
        for (to, body) in sends(&out) {
            match body {
                body @ Body::Append { .. } if to == 1 => {
                    peer(&mut r, at, 1, PEER, acknowledged(&body));
                }
                Body::Heartbeat { sent_at, .. } if to == 2 && answers_heartbeats => {
                    peer(&mut r, at, 2, PEER, Body::HeartbeatOk { echo: sent_at });
                }
                Body::Heartbeat { sent_at, lagging } if to == 1 => {
                    peer(&mut r, at, 1, PEER, Body::HeartbeatOk { echo: sent_at });
                    if lagging.contains(2) {
                        reported_at = reported_at.or(Some(at));
                        reported_after_refusal |= refused_at.is_some();
                    }
                    assert!(!lagging.contains(1), "1 acknowledges");
                }
                Body::HeartbeatOk { .. } if to == 2 => {
                    assert!(reported_at.is_none(), "2 is promised again at {at} ms");
                    last_promise_to_2 = at;
                }
                Body::Prepare { ballot, excluding } => {
                    assert_eq!((to, excluding), (1, vec![(2, Exclusion::Silent)]));
                    assert!(
                        at >= last_promise_to_2 + 1_260,
                        "only once 0's last promise to 2 ran out ({at} ms)"
                    );
                    // 1 refuses the first attempt (as if it still promised 2), grants the next.
                    let granted = refused_at.is_some();
                    let promised = if granted { ballot } else { 0 };
                    refused_at = refused_at.or(Some(at));
                    let answer = Body::Promise {
                        ballot,
                        granted,
                        report: first_view_report(promised),
                    };
                    let mut out = peer(&mut r, at + 1, 1, PEER, answer);
                    out.extend(persist_all(&mut r, at + 1));
                    proposed = proposed.or(sends(&out).into_iter().find_map(|(to, b)| match b {
                        Body::Propose { view, excluded, .. } if to == 1 => Some((view, excluded)),
                        _ => None,
                    }));
                }
                _ => {}
            }
        }
        if proposed.is_some() {
            break;
        }
    }
    let reported_at = reported_at.expect("2 reported lagging");
    assert!(
        (bound..=bound + 100).contains(&reported_at),
        "reported at {reported_at} ms, the bound is {bound} ms"
    );
    assert!(
        reported_after_refusal,
        "the report stands through a refused attempt"
    );
    let (view, excluded) = proposed.expect("0 proposes a view without 2");
    assert_eq!(view.members, Members::one(0).with(1));
    assert_eq!(excluded, vec![(2, Exclusion::Silent)]);
}

/// Rule 6, a member's side: 1 stops renewing its promise to 2 while its primary 0 reports 2
/// lagging (the promise already made is kept to its end: 0's phase 1 is refused until
/// then), ignores a report from anyone but its primary, and promises 2 again once the
/// report no longer names it.
#[test]
fn a_member_follows_its_primarys_lag_report_and_promises_again_once_it_clears() {
    let (mut r, _) = fresh(1);
    let answered_2 = |out: &[Output]| {
        sends(out)
            .iter()
            .any(|(to, b)| *to == 2 && matches!(b, Body::HeartbeatOk { .. }))
    };
    let out = peer(&mut r, 50, 2, PEER, heartbeat(50, Members::default()));
    assert!(answered_2(&out), "promised until 1,310 ms");
    // 2, not the primary, cannot have 0 reported.
    peer(&mut r, 60, 2, PEER, heartbeat(60, Members::one(0)));
    assert!(!r.leases.is_lagging(0));
    peer(&mut r, 100, 0, PEER, heartbeat(100, Members::one(2)));
    // 2 answers our heartbeats (we hold a lease from it): the report is 0's to withdraw,
    // not ours.
    for at in [110, 160] {
        let out = tick(&mut r, at);
        for (to, body) in sends(&out) {
            if let (2, Body::Heartbeat { sent_at, .. }) = (to, body) {
                peer(&mut r, at, 2, PEER, Body::HeartbeatOk { echo: sent_at });
            }
        }
    }
    assert!(r.leases.holds_lease_from(2, Instant(160_000)));
    let out = peer(&mut r, 170, 2, PEER, heartbeat(170, Members::default()));
    assert!(!answered_2(&out), "no renewal while 0 reports 2 lagging");

    let prepare = |ballot| Body::Prepare {
        ballot,
        excluding: vec![(2, Exclusion::Silent)],
    };
    let granted = |out: &[Output]| {
        sends(out).iter().find_map(|(to, b)| match b {
            Body::Promise { granted, .. } if *to == 0 => Some(*granted),
            _ => None,
        })
    };
    let mut out = peer(&mut r, 1_300, 0, PEER, prepare(ballot(1, 0)));
    out.extend(persist_all(&mut r, 1_300));
    assert_eq!(
        granted(&out),
        Some(false),
        "still promised to 2 until 1,310 ms"
    );
    let mut out = peer(&mut r, 1_320, 0, PEER, prepare(ballot(2, 0)));
    out.extend(persist_all(&mut r, 1_320));
    assert_eq!(granted(&out), Some(true));

    // 2 caught up: 0's report no longer names it, and 1 promises it again.
    peer(&mut r, 1_400, 0, PEER, heartbeat(1_400, Members::default()));
    let out = peer(&mut r, 1_450, 2, PEER, heartbeat(1_450, Members::default()));
    assert!(answered_2(&out));
}

/// Rule 6 does not make a briefly slow member flap: 2 still talks (its heartbeats reach 0)
/// but acknowledges nothing for 1.9 s, longer than the lag bound, so 0 reports it and stops
/// renewing its promise; 2 catches up before the promise still running ran out, the report
/// is withdrawn, 2 is promised again, and nobody proposes.
#[test]
fn a_briefly_slow_member_is_reported_then_promised_again_and_never_left_out() {
    let (mut r, _) = fresh(0);
    let slow = 500..2_400;
    let mut reported = Vec::new();
    let mut promised_2_after = false;
    for at in (50..5_000).step_by(50) {
        let mut out = tick(&mut r, at);
        out.extend(peer(&mut r, at, 1, PEER, heartbeat(at, Members::default())));
        out.extend(peer(&mut r, at, 2, PEER, heartbeat(at, Members::default())));
        out.extend(persist_all(&mut r, at));
        for (to, body) in sends(&out) {
            let answers = to == 1 || !slow.contains(&at);
            match body {
                body @ Body::Append { .. } if answers => {
                    peer(&mut r, at, to, PEER, acknowledged(&body));
                }
                Body::Heartbeat { sent_at, lagging } => {
                    if answers {
                        peer(&mut r, at, to, PEER, Body::HeartbeatOk { echo: sent_at });
                    }
                    if to == 1 && !lagging.is_empty() {
                        assert_eq!(lagging, Members::one(2));
                        reported.push(at);
                    }
                }
                Body::HeartbeatOk { .. } if to == 2 && at > slow.end => promised_2_after = true,
                Body::Prepare { .. } => panic!("a view change at {at} ms"),
                _ => {}
            }
        }
    }
    assert_eq!(
        (reported.first(), reported.last()),
        (Some(&1_500), Some(&2_400)),
        "reported from the bound after its last acknowledgement (450 ms) until it caught up"
    );
    assert!(promised_2_after, "2 is promised again");
    assert_eq!(r.status().role, Role::Primary);
}

/// Soak seed 7 (rule 6): the primary 0 reported 2 lagging while a partition cut them apart,
/// and tried to leave 2 out; that needs a majority, and the third replica was down, so the
/// attempt failed and 0 no longer acted. Once 2 answers 0's heartbeats again, the report
/// that stood through the attempt is withdrawn, and 0 re-forms the view with 2 instead of
/// trying to leave it out for ever.
#[test]
fn a_lagging_member_that_answers_again_is_no_longer_reported_by_a_primary_not_acting() {
    let (mut r, _) = fresh(0);
    let mut attempts = Vec::new();
    let mut reports = Vec::new();
    let answers_again = 3_000;
    for at in (50..6_000).step_by(50) {
        let mut out = tick(&mut r, at);
        out.extend(peer(&mut r, at, 1, PEER, heartbeat(at, Members::default())));
        out.extend(persist_all(&mut r, at));
        for (to, body) in sends(&out) {
            match body {
                body @ Body::Append { .. } if to == 1 => {
                    peer(&mut r, at, 1, PEER, acknowledged(&body));
                }
                Body::Heartbeat { sent_at, lagging } => {
                    if to == 1 || at >= answers_again {
                        peer(&mut r, at, to, PEER, Body::HeartbeatOk { echo: sent_at });
                    }
                    if to == 1 {
                        reports.push((at, lagging));
                    }
                }
                // 1 never grants: a silent exclusion fails (as if the majority were not there).
                Body::Prepare { ballot, excluding } if to == 1 => {
                    attempts.push((at, excluding));
                    let answer = Body::Promise {
                        ballot,
                        granted: false,
                        report: first_view_report(0),
                    };
                    peer(&mut r, at + 1, 1, PEER, answer);
                }
                _ => {}
            }
        }
    }
    let reported = |at| reports.iter().find(|(t, _)| *t == at).map(|(_, l)| *l);
    assert_eq!(
        reported(2_000),
        Some(Members::one(2)),
        "reported while cut off"
    );
    assert!(
        attempts
            .iter()
            .any(|(_, ex)| *ex == vec![(2, Exclusion::Silent)]),
        "0 tried to leave 2 out: {attempts:?}"
    );
    assert_eq!(
        reported(answers_again + 100),
        Some(Members::default()),
        "withdrawn once 2 answers"
    );
    let (last_at, last) = attempts.last().unwrap();
    assert!(*last_at > answers_again && last.is_empty(), "{attempts:?}");
}

/// The lost-disk trace (NOTEBOOK, session 5): a replica that lost its disk cannot report the
/// views it was in, so a view that keeps it needs a majority's answers besides its own. Here
/// 0 leaves out the crashed 2 (evidence under a lease) and keeps 1; when 1 answers knowing no
/// view, 0 does not go on with 1's answer and its own alone. With 1 reporting its views, it
/// does.
#[test]
fn a_view_keeping_a_replica_that_lost_its_disk_needs_a_counted_majority() {
    let lost = Report {
        promised: 0,
        accepted: ViewDef {
            ballot: 0,
            members: Members(0),
        },
        vote: false,
        established: ViewDef {
            ballot: 0,
            members: Members(0),
        },
        rejoining: true,
        quiet: false,
        log_end: 0,
    };
    for (report, goes_on) in [(lost, false), (first_view_report(0), true)] {
        let (mut r, mut out) = fresh(0);
        out.extend(tick(&mut r, 1));
        let sent_at = sends(&out)
            .into_iter()
            .find_map(|(to, body)| match body {
                Body::Heartbeat { sent_at, .. } if to == 2 => Some(sent_at),
                _ => None,
            })
            .expect("the primary's heartbeat to 2");
        peer(&mut r, 5, 2, PEER, Body::HeartbeatOk { echo: sent_at });
        let answer = false;
        peer(&mut r, 10, 1, PEER, Body::Hello { report, answer });
        let mut out = handle(&mut r, 20, Input::PeerRefused(2));
        out.extend(persist_all(&mut r, 20));
        // The latest: 0 may have begun adding 1 back before it saw 2's refusal.
        let ballot = sends(&out)
            .into_iter()
            .rev()
            .find_map(|(to, body)| match body {
                Body::Prepare { ballot, .. } if to == 1 => Some(ballot),
                _ => None,
            })
            .expect("a proposal leaving 2 out asks 1");
        let promise = Body::Promise {
            ballot,
            granted: true,
            report: Report {
                promised: ballot,
                ..report
            },
        };
        let mut out = peer(&mut r, 21, 1, PEER, promise);
        out.extend(persist_all(&mut r, 21));
        let proposed = sends(&out)
            .iter()
            .any(|(_, body)| matches!(body, Body::Propose { .. }));
        assert_eq!(proposed, goes_on, "{report:?}");
    }
}

/// A restarted replica left out of the primary's view learns from it before it is added
/// back (`learner`): it promises the primary's ballot first, takes committed entries only,
/// and answers once they are durable. A primary below what it promised teaches it nothing.
#[test]
fn a_rejoining_replica_learns_committed_entries_only() {
    let (mut r, _) = fresh(2);
    let recovered = Recovered {
        protocol: Some(r.state),
        ..Recovered::default()
    };
    r = Replica::new(Options::new(2, N), recovered, Instant(5_000_000)).unwrap();
    outputs(&mut r);
    persist_all(&mut r, 5_000);
    assert!(r.status().rejoining);
    // 0 is the primary of b1.0{0, 1}, which left 2 out; it committed index 2 of 3.
    let view = ballot(1, 0);
    let entry = |index| Entry {
        index,
        view,
        body: EntryBody::Noop,
    };
    let append = Body::Append {
        view,
        established: true,
        prev_index: 0,
        prev_view: 0,
        entries: vec![entry(1), entry(2), entry(3)],
        commit: 2,
    };
    let out = peer(&mut r, 5_010, 0, PEER, append.clone());
    assert_eq!(persisted_states(&out)[0].promised, view, "promises first");
    assert!(sends(&out).is_empty(), "answers once durable");
    assert_eq!(r.log.last_index(), 2, "committed entries only");
    let out = persist_all(&mut r, 5_011);
    assert!(matches!(
        sends(&out).as_slice(),
        [(
            0,
            Body::AppendReply {
                ok: true,
                index: 2,
                ..
            }
        )]
    ));
    assert_eq!(r.commit, 2);
    assert!(r.status().rejoining, "still outside the view");
    // It promised b1.0: an older primary's entries are refused.
    let older = Body::Append {
        view: ballot(0, 1),
        entries: vec![],
        prev_index: 2,
        prev_view: view,
        established: true,
        commit: 2,
    };
    let out = peer(&mut r, 5_020, 1, PEER, older);
    assert!(matches!(
        sends(&out).as_slice(),
        [(1, Body::AppendReply { ok: false, .. })]
    ));
}
