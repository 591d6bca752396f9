//! Installing views: phases 1 and 2 on the proposer's and the acceptor's side (rule 1),
//! establishing (1d), who proposes and whom it leaves out (rule 4), leases by heartbeat
//! (rule 3), rejoin through the primary (rule 7) and everyone-down (rule 8).

use super::primary::PrimaryState;
use super::role::RoleState;
use super::timers::Timer;
use super::view::{self, Exclusion, Incarnation, Members, ViewDef};
use super::{Body, Heard, Persist, PersistId, Report};
use crate::durable::{EntryBody, Record};
use crate::ids::{OpIndex, ReplicaId, View};
use crate::time::{Duration, Instant};
use rand::Rng;
use std::collections::BTreeMap;

/// Who a proposal leaves out, and why.
type Exclusions = Vec<(ReplicaId, Exclusion)>;

/// Phase 1 of our own proposal.
#[derive(Debug)]
pub(super) struct Preparing {
    pub ballot: View,
    kind: Kind,
    /// Everyone whose promise we need (ourselves included).
    asked: Members,
    answers: BTreeMap<ReplicaId, Report>,
    /// Our own promise: the answers count once it is durable.
    own: PersistId,
    started: Instant,
}

impl Preparing {
    /// Who answered, knowing no view (its disk was lost): its answer is a promise like any
    /// other, but it forgot what its earlier lives promised and voted for, so it is never
    /// one of the majority that leaving out a silent member needs (rule 4(b)).
    fn uncounted(&self) -> Members {
        self.answers
            .iter()
            .filter(|(_, r)| r.knows_no_view())
            .map(|(&m, _)| m)
            .collect()
    }
}

/// What a proposal changes.
#[derive(Clone, Debug)]
enum Kind {
    /// Rule 4: leave these out (an empty list re-forms the base view).
    Exclude(Vec<(ReplicaId, Exclusion)>),
    /// Rule 7: the primary adds a returning replica.
    Rejoin(ReplicaId),
    /// Rule 8: everyone went down; the named proposer re-forms the highest view.
    Recover,
}

/// Phase 2 of our own proposal.
#[derive(Debug)]
pub(super) struct Proposal {
    pub view: ViewDef,
    base: View,
    excluded: Vec<(ReplicaId, Exclusion)>,
    voters: Members,
    /// Members that answered knowing no view: not counted towards a majority.
    uncounted: Members,
    /// Who accepted (or voted), ourselves included once our acceptance is durable.
    accepted: Members,
    /// Our own acceptance.
    own: PersistId,
    log_end: OpIndex,
    log_end_view: View,
    /// Started, or last saw a member catch up (a long catch-up is not a failure).
    pub(super) started: Instant,
    /// Appends start once our acceptance is durable (after the `Propose` copies).
    replicating: bool,
}

/// A `Propose` as received.
#[derive(Clone, Debug)]
pub(super) struct Proposed {
    pub view: ViewDef,
    pub base: View,
    pub voters: Members,
    pub excluded: Vec<(ReplicaId, Exclusion)>,
    pub log_end: OpIndex,
    pub log_end_view: View,
    pub sent_at: Instant,
}

/// Acceptor: a proposal that passed every check, waiting for the proposer's log.
#[derive(Debug)]
pub(super) struct PendingAccept {
    pub view: ViewDef,
    from: ReplicaId,
    proposed: Proposed,
}

impl super::Replica {
    fn majority(&self) -> usize {
        usize::from(self.opts.replica_count) / 2 + 1
    }

    /// A report heard recently enough to act on (rule 8).
    fn fresh(&self, heard: &Heard) -> bool {
        self.now.saturating_sub(heard.at) <= self.opts.election_timeout
    }

    // ----- heartbeats and leases (rule 3) -----

    pub(super) fn on_heartbeat_timer(&mut self) {
        let period = self
            .opts
            .heartbeat_interval
            .min(self.opts.leases.watchdog());
        self.timers.arm(Timer::Heartbeat, self.now + period);
        self.release_snapshot_bytes();
        // Rule 6: a lag report its primary stopped renewing is void.
        self.leases
            .expire_lag_report(self.now, self.opts.election_timeout);
        if self.rejoining || !self.is_member() {
            let message = self.message(Body::Hello {
                report: self.report(),
                answer: true,
            });
            for peer in self.peers().collect::<Vec<_>>() {
                self.send_after_persist(peer, message.clone());
            }
        } else {
            let lagging = self.lagging_report();
            let message = self.message(Body::Heartbeat {
                sent_at: self.now,
                lagging,
            });
            let me = self.opts.id;
            for peer in self.partners().iter().filter(|&p| p != me) {
                self.send_now(peer, message.clone());
            }
        }
        self.retransmit();
        self.primary_heartbeat();
        self.maybe_propose();
    }

    /// Rule 6, the primary's side: what our heartbeats report lagging. While we act as the
    /// primary, the members that acknowledged no replication within the lag bound, and we
    /// stop renewing our own promises to them too. While we are still the proposer of our
    /// established view but do not act (our proposal to leave a lagging member out is
    /// under way, or was refused and will be tried again), replication has stopped and
    /// acknowledgements cannot be judged: the last report stands (withdrawing it would let
    /// the shared helper promise the lagging member again and refuse us for ever), except
    /// for a member we hold a lease from again after it had lapsed: it answers our
    /// heartbeats, the link is back, and leaving it out would need a majority that may not
    /// be there (soak seed 7: a healed partition with the third replica down, the primary
    /// kept trying to leave out a backup that talked to it again, and never acted). A member
    /// that answered all along (a stalled disk) stays reported. Empty from everyone else
    /// (only the primary's report counts).
    fn lagging_report(&mut self) -> Members {
        if !self.we_make_lag_report() {
            return Members::default(); // Our flags are our primary's report: leave them.
        }
        let lagging = if self.is_acting_primary() {
            self.lagging()
        } else {
            let answers: Members = self
                .leases
                .lagging()
                .iter()
                .filter(|&peer| self.leases.answers_again(peer, self.now))
                .collect();
            self.leases.lagging().without(answers)
        };
        self.leases.report_lagging(lagging, self.now);
        lagging
    }

    /// Whether we make the lag report (rule 6): we are the primary of our established view
    /// and the proposer of the view we accepted, which is that view or our own proposal in
    /// phase 2. The report must stand while that proposal (which may leave the lagging
    /// member out) is being accepted: a helper that saw it withdrawn would promise the member
    /// again and refuse phase 2 (soak seed 5303). Members follow the report of the proposer
    /// of the view they accepted (`on_heartbeat`).
    fn we_make_lag_report(&self) -> bool {
        let (s, me) = (&self.state, self.opts.id);
        s.established.primary() == me && s.accepted.primary() == me
    }

    pub(super) fn on_heartbeat(&mut self, from: ReplicaId, sent_at: Instant, lagging: Members) {
        let ours = !self.rejoining && self.is_member() && self.partners().contains(from);
        if ours && self.state.accepted.primary() == from {
            // Rule 6: our primary's report of lagging members, also while we do not know
            // that its view is established: a member fenced off its appends by a higher
            // promise never learns that, and would otherwise keep promising the lagging
            // member and refuse every view without it (soak seed 10227). Following a report
            // only withholds promises, which is always safe.
            self.leases.report_lagging(lagging, self.now);
        }
        if ours {
            if self.leases.promise_to(from, self.now) {
                let message = self.message(Body::HeartbeatOk { echo: sent_at });
                self.send_now(from, message);
            }
        } else if !self.partners().contains(from) {
            // It is not in our view: tell it where we stand (it may have been left out).
            let message = self.message(Body::Hello {
                report: self.report(),
                answer: false,
            });
            self.send_after_persist(from, message);
        }
    }

    pub(super) fn on_hello(&mut self, from: ReplicaId, report: Report, answer: bool) {
        self.reports.insert(
            from,
            Heard {
                report,
                at: self.now,
            },
        );
        if answer {
            let message = self.message(Body::Hello {
                report: self.report(),
                answer: false,
            });
            self.send_after_persist(from, message);
        }
        self.learn_exclusion(&report);
        if self.is_acting_primary() {
            if !self.members().contains(from) {
                self.teach(from, &report);
                self.maybe_add(from, &report);
            } else if report.rejoining {
                // A restarted member still in our view comes back through a view change
                // its new incarnation accepts (rule 7), once we hold no evidence of its
                // crash (that leaves it out first); meanwhile it takes our log.
                self.send_append(from);
                self.maybe_add(from, &report);
            }
        } else if self.rejoining {
            self.maybe_recover();
        }
    }

    /// A view we are not in was established above ours: we were left out, and rejoin
    /// through its primary (rule 7).
    fn learn_exclusion(&mut self, report: &Report) {
        let newer = report.established.ballot > self.state.accepted.ballot;
        if newer && !report.established.members.contains(self.opts.id) && !self.rejoining {
            self.rejoining = true;
            self.pending_accept = None;
            self.step_down(None);
        }
    }

    /// Whom we exchange heartbeats (leases and promises) with: the members of our accepted
    /// and established views. (More promises only restrict us; a member of the established
    /// view left out by an unestablished proposal may still be needed back.)
    fn partners(&self) -> Members {
        self.state
            .accepted
            .members
            .union(self.state.established.members)
    }

    // ----- who proposes what (rules 4, 7, 8) -----

    /// Members of every view we know of that may still matter: our accepted and established
    /// views and any higher accepted view a peer reported lately.
    pub(super) fn frontier(&self) -> Members {
        let mine = self.state.accepted.ballot;
        self.reports
            .values()
            .filter(|h| self.fresh(h) && h.report.accepted.ballot > mine)
            .fold(
                self.state
                    .accepted
                    .members
                    .union(self.state.established.members),
                |m, h| m.union(h.report.accepted.members),
            )
    }

    /// Whether `peer`'s last report (however old) says it lost its disk and knows no view.
    fn knows_no_view(&self, peer: ReplicaId) -> bool {
        self.reports
            .get(&peer)
            .is_some_and(|h| h.report.knows_no_view())
    }

    /// Whether `peer` reported lately that it is rejoining (restarted or left out): it waits
    /// to be added back rather than being silent.
    fn is_rejoining(&self, peer: ReplicaId) -> bool {
        self.reports
            .get(&peer)
            .is_some_and(|h| self.fresh(h) && h.report.rejoining)
    }

    /// Members we may leave out now, and why (rule 4): proven crashed, or silent past both
    /// our lease from it and our promise to it. A member we stopped promising for a silent
    /// exclusion that never took (a healed partition) but that talks to us is no suspect:
    /// each side of the heal would otherwise keep leaving the other out, refused by every
    /// replica that still promises both (soak seed 557, five replicas).
    fn suspects(&self) -> Vec<(ReplicaId, Exclusion)> {
        let me = self.opts.id;
        let talks = |m| {
            !self.is_rejoining(m)
                && self
                    .leases
                    .withheld_but_heard(m, self.now, self.opts.election_timeout)
        };
        self.frontier()
            .iter()
            .filter(|&m| m != me)
            .filter_map(|m| match self.leases.may_exclude(m, self.now) {
                Some(Exclusion::Silent) if !self.silent_to_us(m) => None,
                Some(Exclusion::Silent) if talks(m) && !self.we_report_lagging(m) => None,
                other => other.map(|why| (m, why)),
            })
            .collect()
    }

    /// Whether `m`, whose promise from us ran out, is silent enough for us to leave out under
    /// rule 4(b): our lease from it ran out too, or the primary reports it lagging (rule 6:
    /// a slow member may still answer heartbeats while it acknowledges no replication; what
    /// 4(b) needs is only that every helper's promise to it ran out).
    fn silent_to_us(&self, m: ReplicaId) -> bool {
        !self.leases.holds_lease_from(m, self.now) || self.we_report_lagging(m)
    }

    /// Whether `m` is lagging by our own report, as the primary (rule 6). A backup's copy of
    /// its primary's report only stops its promises; what the primary did not see itself
    /// does not make a member a suspect.
    fn we_report_lagging(&self, m: ReplicaId) -> bool {
        self.we_make_lag_report() && self.leases.is_lagging(m)
    }

    /// Starts a proposal if one is called for: the primary leaves out members it may; a
    /// member whose primary it may leave out (or whose view it proposed and does not act in)
    /// proposes after a stagger by rank, so that usually one replica proposes; a rejoining
    /// replica proposes only under rule 8. A member that is silent to our leases but still
    /// talks (it restarted and is rejoining) is kept: when it is the primary, the view is
    /// re-formed with it (it proposes nothing while rejoining, and leaving it out for silence
    /// needs a majority that may be down); phase 1 may still show it must go (rule 4(c)).
    pub(super) fn maybe_propose(&mut self) {
        if self.rejoining {
            self.maybe_recover();
            return;
        }
        let idle = matches!(self.role, RoleState::Backup { .. }) || self.is_acting_primary();
        if !self.is_member() || !idle || !self.leases.may_vote_or_accept(self.now) {
            return;
        }
        let me = self.opts.id;
        let primary = self.state.accepted.primary();
        let suspects = self.suspects();
        let primary_suspect = suspects.iter().any(|&(m, _)| m == primary);
        let mut exclude: Vec<(ReplicaId, Exclusion)> = suspects
            .iter()
            .copied()
            .filter(|&(m, why)| why != Exclusion::Silent || !self.is_rejoining(m))
            .collect();
        let wanted = if self.is_acting_primary() {
            !exclude.is_empty()
        } else {
            primary_suspect || primary == me
        };
        if !wanted {
            self.suspect_since = None;
            return;
        }
        let out: Members = exclude.iter().map(|&(m, _)| m).collect();
        let kept = Members::all(self.opts.replica_count).without(out);
        let silent = exclude.iter().any(|(_, why)| *why == Exclusion::Silent);
        // Replicas we have not heard from lately, or whose address refuses, cannot answer
        // now: a proposal that needs them would only fail, and our promise of its ballot
        // would fence the view we are in (its primary, only frozen, found itself fenced
        // when it woke, and had to re-form its view).
        let answering = kept
            .iter()
            .filter(|&m| m == me || self.leases.seems_up(m, self.now))
            .count();
        if silent && answering < self.majority() {
            // Rule 4(b) needs a majority of the configured replicas: leave out only the
            // proven crashed.
            exclude.retain(|(_, why)| *why != Exclusion::Silent);
            let primary_out = exclude.iter().any(|&(m, _)| m == primary);
            if self.is_acting_primary() && exclude.is_empty() || !(primary_out || primary == me) {
                return;
            }
        }
        if !self.is_acting_primary() && primary != me {
            // Stagger: the lowest kept member of the view goes first.
            let rank = self
                .members()
                .iter()
                .filter(|&m| kept.contains(m) && m != primary)
                .position(|m| m == me)
                .unwrap_or(0) as u32;
            let since = *self.suspect_since.get_or_insert(self.now);
            let at = since + self.opts.heartbeat_interval * 2 * rank;
            if self.now < at {
                self.timers.arm(Timer::Retry, at);
                return;
            }
        }
        self.propose_exclusion(exclude);
    }

    /// New evidence that `peer` crashed. A proposal of ours still waiting for its promise or
    /// acceptance would wait for ever (until the back-off retries it): it starts again at once,
    /// leaving `peer` out. A crashed process cannot duel, so skipping the back-off costs no
    /// liveness, and a higher ballot is always safe.
    pub(super) fn on_evidence(&mut self, peer: ReplicaId) {
        let proven = matches!(
            self.leases.may_exclude(peer, self.now),
            Some(Exclusion::Crashed(_))
        );
        let waits_on_peer = match &self.role {
            RoleState::Preparing(p) => p.asked.contains(peer) && !p.answers.contains_key(&peer),
            RoleState::Primary(primary) => primary
                .proposal
                .as_ref()
                .is_some_and(|q| q.view.members.contains(peer) && !q.accepted.contains(peer)),
            RoleState::Backup { .. } => false,
        };
        if proven && waits_on_peer {
            self.step_down(None);
            self.next_proposal_at = self.now;
        }
        self.maybe_propose();
    }

    fn propose_exclusion(&mut self, excluded: Vec<(ReplicaId, Exclusion)>) {
        if self.now < self.next_proposal_at {
            self.timers.arm(Timer::Retry, self.next_proposal_at);
            return;
        }
        let out: Members = excluded.iter().map(|&(m, _)| m).collect();
        // Anyone silent (even a rejoiner we do not mean to leave out yet, whom phase 1 may
        // show must go) needs a majority of the configured replicas: ask them all.
        let silent = self
            .suspects()
            .iter()
            .any(|(_, why)| *why == Exclusion::Silent);
        let asked = if silent {
            Members::all(self.opts.replica_count).without(out)
        } else {
            self.frontier().without(out)
        };
        self.start_proposal(Kind::Exclude(excluded), asked);
    }

    /// Rule 7: the primary adds a rejoining replica that may accept.
    fn maybe_add(&mut self, joiner: ReplicaId, report: &Report) {
        let ready = report.rejoining || report.vote || !report.accepted.members.contains(joiner);
        if !ready || report.quiet || self.now < self.next_proposal_at {
            return;
        }
        if self.leases.has_evidence(joiner) || !self.leases.may_vote_or_accept(self.now) {
            return;
        }
        if !self.learner_ready(joiner, report) {
            return; // Still learning our log: adding it now would pause clients longer.
        }
        let asked = self.members().with(joiner);
        self.start_proposal(Kind::Rejoin(joiner), asked);
    }

    /// Rule 8's fast path: the established view of one, itself, is also the highest it
    /// accepted (the mutation looks at the established view only).
    pub(super) fn may_resume_alone(&self) -> bool {
        let s = &self.state;
        let alone = s.established.members == Members::one(self.opts.id);
        if self.opts.mutations.view_of_one_ignores_accepted {
            return alone && s.established.primary() == self.opts.id;
        }
        alone && s.accepted == s.established && !s.vote
    }

    /// The mutation `view_of_one_ignores_accepted`: forgets a higher accepted ballot (and
    /// the promise that goes with it) and resumes in the established view of one.
    pub(super) fn resume_in_established_view(&mut self) {
        self.state.accepted = self.state.established;
        self.state.promised = self.state.established.ballot;
        self.state.vote = false;
        self.persist_state();
    }

    /// Rule 8: whom a rejoining replica waits for, and whether it is the named proposer.
    fn recovery(&self) -> (Members, Option<ReplicaId>) {
        let me = self.opts.id;
        let mut reports: BTreeMap<ReplicaId, Report> = self
            .reports
            .iter()
            .filter(|(_, h)| self.fresh(h))
            .map(|(&id, h)| (id, h.report))
            .collect();
        reports.insert(me, self.report());
        let highest = reports
            .values()
            .map(|r| r.established)
            .max()
            .expect("our own report");
        let wait_for = reports
            .values()
            .filter(|r| r.accepted.ballot > highest.ballot)
            .fold(highest.members, |m, r| m.union(r.accepted.members));
        // Above the highest established view sits an unestablished one: nobody can act
        // in either until it is re-formed (its members do not follow the established
        // view, and only its members may propose on it), so every replica waited for need
        // only be reachable, not rejoining too.
        let above = reports
            .values()
            .any(|r| r.accepted.ballot > highest.ballot && !r.vote);
        let missing: Members = wait_for
            .iter()
            // One that lost its disk counts as missing: its disk may have held entries
            // nobody else has (it went on alone, then lost it).
            .filter(|m| {
                !reports
                    .get(m)
                    .is_some_and(|r| (r.rejoining || above) && !r.knows_no_view())
            })
            .collect();
        if !missing.is_empty() {
            return (missing, None);
        }
        let top = wait_for.iter().map(|m| reports[&m].accepted).max();
        let named = wait_for.iter().find(|m| {
            let r = &reports[m];
            Some(r.accepted) == top && !r.vote && r.accepted.members.contains(*m)
        });
        (wait_for, named)
    }

    /// The replicas a rejoining replica waits for (rule 8), for the status.
    pub(super) fn waiting_for(&self) -> Vec<ReplicaId> {
        if !self.rejoining || self.state.knows_no_view() {
            return Vec::new();
        }
        match self.recovery() {
            (missing, None) => missing.iter().collect(),
            _ => Vec::new(),
        }
    }

    fn maybe_recover(&mut self) {
        if !matches!(self.role, RoleState::Backup { .. }) || self.now < self.next_proposal_at {
            return;
        }
        if self.state.knows_no_view() {
            return; // It lost its disk: it waits to be added back (rule 7), never re-forms.
        }
        if !self.leases.may_vote_or_accept(self.now) {
            return;
        }
        if let (wait_for, Some(named)) = self.recovery() {
            if named == self.opts.id {
                self.start_proposal(Kind::Recover, wait_for);
            }
        }
    }

    // ----- phase 1 -----

    fn start_proposal(&mut self, kind: Kind, asked: Members) {
        let me = self.opts.id;
        // Keeping or adding a replica that lost its disk needs a majority's answers besides
        // its own (`phase_two_view`): ask everyone.
        let asked = if asked.iter().any(|m| self.knows_no_view(m)) {
            Members::all(self.opts.replica_count)
        } else {
            asked
        };
        // Above every ballot we know of: a refused phase 1 reported the promise it met.
        let seen = self
            .reports
            .values()
            .map(|h| h.report.promised)
            .fold(self.state.promised, View::max);
        let ballot = view::ballot(view::number(seen) + 1, me);
        self.state.promised = ballot;
        let own = self.persist_state();
        self.pending_accept = None;
        self.suspect_since = None;
        self.back_off();
        let excluding = match &kind {
            Kind::Exclude(list) => list.clone(),
            _ => Vec::new(),
        };
        let asked = asked.with(me);
        self.role = RoleState::Preparing(Preparing {
            ballot,
            kind,
            asked,
            answers: BTreeMap::from([(me, self.report())]),
            own,
            started: self.now,
        });
        let message = self.message(Body::Prepare { ballot, excluding });
        for peer in asked.iter().filter(|&p| p != me) {
            self.send_after_persist(peer, message.clone());
        }
    }

    /// The next proposal waits a random time in `[election_timeout / 2, election_timeout)`.
    fn back_off(&mut self) {
        let base = self.opts.election_timeout.as_micros() as u64 / 2;
        let jitter = self.rng.gen_range(0..base.max(1));
        self.next_proposal_at = self.now + Duration::from_micros(base + jitter);
    }

    /// Drops our proposal (phase 1 or 2) and tries again later if still needed.
    fn abandon(&mut self) {
        self.step_down(None);
        self.timers.arm(Timer::Retry, self.next_proposal_at);
    }

    pub(super) fn on_prepare(
        &mut self,
        from: ReplicaId,
        ballot: View,
        excluding: Vec<(ReplicaId, Exclusion)>,
    ) {
        // A replica that would refuse phase 2 (it still promises a member left out for
        // silence) promises nothing, so that it is not fenced off its healthy primary.
        let still_promised = excluding.iter().any(|&(m, why)| {
            why == Exclusion::Silent
                && m != self.opts.id
                && self.leases.may_exclude(m, self.now).is_none()
        });
        // A replica left out of our established view rejoins through its primary (rule 7):
        // it proposes nothing, and is told so by our report.
        let outsider = !self.rejoining
            && self.state.established == self.state.accepted
            && !self.members().contains(from);
        // A copy of a `Prepare` we answered already is granted again (nothing new promised).
        let again = ballot == self.state.promised && view::proposer(ballot) == from;
        let granted = again || (ballot > self.state.promised && !still_promised && !outsider);
        if granted && !again {
            if !self.opts.mutations.promise_nothing {
                self.state.promised = ballot;
                self.persist_state();
            }
            if self
                .pending_accept
                .as_ref()
                .is_some_and(|p| p.view.ballot < ballot)
            {
                self.pending_accept = None;
            }
            if !matches!(self.role, RoleState::Backup { .. }) {
                self.step_down(None);
            }
        }
        let message = self.message(Body::Promise {
            ballot,
            granted,
            report: self.report(),
        });
        self.send_after_persist(from, message);
    }

    pub(super) fn on_promise(
        &mut self,
        from: ReplicaId,
        ballot: View,
        granted: bool,
        report: Report,
    ) {
        self.reports.insert(
            from,
            Heard {
                report,
                at: self.now,
            },
        );
        self.learn_exclusion(&report);
        let RoleState::Preparing(p) = &mut self.role else {
            return;
        };
        if p.ballot != ballot {
            return;
        }
        if granted {
            p.answers.insert(from, report);
            self.maybe_finish_phase_one();
        } else if report.promised != ballot {
            self.abandon();
        }
    }

    /// With every promise in (our own durable), checks rule 1b and rule 4 and goes on to
    /// phase 2, or drops the proposal.
    pub(super) fn maybe_finish_phase_one(&mut self) {
        let RoleState::Preparing(p) = &self.role else {
            return;
        };
        let answered: Members = p.answers.keys().copied().collect();
        if self.durable_id < p.own {
            return;
        }
        // The answers in so far may already carry the proposal: it then goes on as if only
        // those who answered had been asked (a `Prepare` to the others only made them
        // promise more). Otherwise wait for every answer, and drop it if even they fail.
        let everyone = p.asked.is_subset(answered);
        match self.phase_two_view(p) {
            Some((view, base, excluded)) => {
                let out: Members = excluded.iter().map(|&(m, _)| m).collect();
                let uncounted = p.uncounted();
                let voters = answered
                    .without(view.members)
                    .without(out)
                    .without(uncounted);
                self.start_phase_two(view, base, excluded, voters, uncounted);
            }
            None if everyone => {
                // A higher view that leaves us out was accepted (and may be established
                // unseen): we can never propose on it (rule 1b), and each new attempt would
                // only pre-empt its members' own re-forming of it (soak seed 76124: two
                // proposers outbidding each other for 20 s). We were left out: rejoin.
                let me = self.opts.id;
                let base = p.answers.values().map(|r| r.accepted).max();
                if base.is_some_and(|b| !b.members.contains(me)) {
                    self.rejoining = true;
                    self.pending_accept = None;
                }
                self.abandon();
            }
            None => {}
        }
    }

    /// Rule 1b and 4: the new view, its base and its exclusions, if the answers allow it.
    fn phase_two_view(&self, p: &Preparing) -> Option<(ViewDef, View, Exclusions)> {
        let me = self.opts.id;
        let base = p.answers.values().map(|r| r.accepted).max()?;
        let established = p.answers.values().map(|r| r.established).max()?;
        let (members, reasons) = match &p.kind {
            Kind::Exclude(list) => {
                // Members of the highest established view that answered and are not left out
                // stay (or come back): they hold promises, so nobody acts meanwhile, and they
                // adopt our log before accepting.
                let out: Members = list.iter().map(|&(m, _)| m).collect();
                let back = established.members.without(base.members);
                let answered: Members = p.answers.keys().copied().collect();
                let back = Members(back.0 & answered.0);
                (base.members.union(back).without(out), list.clone())
            }
            Kind::Rejoin(joiner) => (base.members.with(*joiner), Vec::new()),
            // Everyone went down and every replica waited for is back: re-form the highest
            // view with all of them (no one acts meanwhile, all promised this ballot), so
            // that no member of the highest established view needs excluding (rule 4(c)).
            Kind::Recover => (base.members.union(p.asked), Vec::new()),
        };
        // Everyone left out of the base or of the highest established view is excluded by
        // this proposal itself (rule 4(c): nothing carries over from an unestablished base).
        let left_out = base.members.union(established.members).without(members);
        let mut excluded: Vec<(ReplicaId, Exclusion)> = reasons
            .into_iter()
            .filter(|&(m, _)| left_out.contains(m))
            .collect();
        if matches!(p.kind, Kind::Exclude(_)) {
            // Left out of a view phase 1 showed us: with a reason of our own, if we have one.
            for m in left_out.iter().filter(|&m| m != me) {
                if excluded.iter().all(|&(x, _)| x != m) {
                    match self.leases.may_exclude(m, self.now) {
                        Some(Exclusion::Silent) if !self.silent_to_us(m) => {}
                        Some(why) => excluded.push((m, why)),
                        None => {}
                    }
                }
            }
        }
        let justified = left_out
            .iter()
            .all(|m| excluded.iter().any(|&(x, _)| x == m));
        let silent: Vec<ReplicaId> = excluded
            .iter()
            .filter(|(_, why)| *why == Exclusion::Silent)
            .map(|&(m, _)| m)
            .collect();
        // Those left out do not help (a replica never votes to leave itself out).
        let answered: Members = p.answers.keys().copied().collect();
        let uncounted = p.uncounted();
        let helpers = answered
            .without(excluded.iter().map(|&(m, _)| m).collect())
            .without(uncounted);
        let silent_ok = silent.iter().all(|&m| {
            matches!(
                self.leases.may_exclude(m, self.now),
                Some(Exclusion::Silent)
            ) && self.silent_to_us(m)
        }) && (silent.is_empty() || helpers.len() >= self.majority());
        // A member that lost its disk cannot report the views it was in: a view above our
        // base that left us out, formed with it, would go unseen. Any view that left out a
        // live replica took a majority's votes (4(b)), so a counted majority's answers show
        // it (the lost-disk trace in the NOTEBOOK, session 5).
        let witnessed =
            !members.intersects(uncounted) || answered.without(uncounted).len() >= self.majority();
        let ok = base.members.contains(me)
            && justified
            && silent_ok
            && witnessed
            && members.is_subset(answered)
            && !members.is_empty()
            && self.leases.may_vote_or_accept(self.now);
        ok.then_some((
            ViewDef {
                ballot: p.ballot,
                members,
            },
            base.ballot,
            excluded,
        ))
    }

    // ----- phase 2 -----

    fn start_phase_two(
        &mut self,
        view: ViewDef,
        base: View,
        excluded: Vec<(ReplicaId, Exclusion)>,
        voters: Members,
        uncounted: Members,
    ) {
        let me = self.opts.id;
        self.state.accepted = view;
        self.accepted_in_this_life = true;
        self.state.vote = false;
        // A view of one that leaves nobody out for silence is established by our own
        // acceptance: record both at once. Recorded apart, a crash between the two left us,
        // restarted, waiting (rule 8) for a member of the view this one replaced, which may
        // never come back (crash-only seed 4608: its disk was corrupt).
        let silent = excluded.iter().any(|(_, why)| *why == Exclusion::Silent);
        if view.members == Members::one(me) && !silent {
            self.state.established = view;
        }
        let own = self.persist_state();
        self.use_exclusions(&excluded);
        let log_end = self.log.last_index();
        let log_end_view = self.log.last_view();
        let proposal = Proposal {
            view,
            base,
            excluded,
            voters,
            uncounted,
            accepted: Members::default(),
            own,
            log_end,
            log_end_view,
            started: self.now,
            replicating: false,
        };
        let peers = view.members.iter().filter(|&m| m != me);
        let mut primary = PrimaryState::new(peers, log_end + 1, Some(proposal), self.now);
        for entry in self.log.entries_after(self.commit) {
            if let EntryBody::Request(r) = &entry.body {
                primary.pending.insert(r.client, r.request);
            }
        }
        self.role = RoleState::Primary(primary);
        self.send_proposal();
        self.maybe_establish();
    }

    /// Sends (or resends) our proposal to every member and voter that has not accepted it,
    /// once our own acceptance is durable.
    fn send_proposal(&mut self) {
        let me = self.opts.id;
        let now = self.now;
        let Some(p) = self.role.primary_ref().and_then(|p| p.proposal.as_ref()) else {
            return;
        };
        let message = self.message(Body::Propose {
            view: p.view,
            base: p.base,
            voters: p.voters.iter().collect(),
            excluded: p.excluded.clone(),
            log_end: p.log_end,
            log_end_view: p.log_end_view,
            sent_at: now,
        });
        let to = p
            .view
            .members
            .union(p.voters)
            .without(p.accepted)
            .without(Members::one(me));
        for peer in to.iter() {
            self.send_after_persist(peer, message.clone());
        }
    }

    /// Heartbeat: resend what is unanswered; drop a proposal that has taken too long.
    fn retransmit(&mut self) {
        let timeout = self.opts.election_timeout;
        let now = self.now;
        match &self.role {
            RoleState::Preparing(p) => {
                if now.saturating_sub(p.started) > timeout {
                    return self.abandon();
                }
                let message = self.message(Body::Prepare {
                    ballot: p.ballot,
                    excluding: match &p.kind {
                        Kind::Exclude(list) => list.clone(),
                        _ => Vec::new(),
                    },
                });
                let answered: Members = p.answers.keys().copied().collect();
                for peer in p.asked.without(answered).iter() {
                    self.send_after_persist(peer, message.clone());
                }
            }
            RoleState::Primary(PrimaryState {
                proposal: Some(p), ..
            }) => {
                if now.saturating_sub(p.started) > timeout {
                    return self.abandon();
                }
                self.send_proposal();
            }
            _ => {}
        }
    }

    pub(super) fn on_propose(&mut self, from: ReplicaId, p: Proposed) {
        let me = self.opts.id;
        let ballot = p.view.ballot;
        if view::proposer(ballot) != from {
            return;
        }
        if self.state.accepted.ballot == ballot {
            // A copy of what we accepted already: answer it again (its own send time). The
            // answer gives its proposer a lease, so it must carry a promise (rule 3): an older
            // primary's lag report of the proposer of the view we accepted is moot (rule 6).
            self.leases.clear_lagging(from);
            self.leases.promise_to(from, self.now);
            let message = self.message(Body::Accepted {
                ballot,
                echo: p.sent_at,
            });
            self.send_after_persist(from, message);
            return;
        }
        let answered = if self.opts.mutations.promise_nothing {
            self.state.promised <= ballot
        } else {
            self.state.promised == ballot
        };
        let member = p.view.members.contains(me);
        let checks = answered
            && p.base >= self.state.accepted.ballot
            && self.state.accepted.ballot < ballot
            && (member || p.voters.contains(me))
            && self.leases.may_vote_or_accept(self.now)
            && p.excluded.iter().all(|&(m, why)| match why {
                Exclusion::Silent => self.leases.may_exclude(m, self.now).is_some(),
                Exclusion::Crashed(_) => true,
            });
        if !checks {
            return;
        }
        if !member {
            // A vote (rule 4b): durable, without the log. We are not in the view.
            return self.accept(from, p, true);
        }
        if self.opts.mutations.accept_before_log {
            return self.accept(from, p, false);
        }
        self.pending_accept = Some(PendingAccept {
            view: p.view,
            from,
            proposed: p,
        });
        self.try_accept_pending();
    }

    /// Accepts the pending proposal once we hold the proposer's log up to its end (rule 1c):
    /// anything after it goes.
    pub(super) fn try_accept_pending(&mut self) {
        let Some(pending) = &self.pending_accept else {
            return;
        };
        let (log_end, log_end_view) = (pending.proposed.log_end, pending.proposed.log_end_view);
        if self.state.promised > pending.view.ballot {
            self.pending_accept = None;
            return;
        }
        if self.log.view_at(log_end) != Some(log_end_view) || self.commit > log_end {
            return;
        }
        let pending = self.pending_accept.take().expect("checked above");
        if self.log.last_index() > log_end {
            self.truncate_log(log_end + 1);
            self.persist(Persist::Records(vec![Record::TruncateFrom(log_end + 1)]));
        }
        self.accept(pending.from, pending.proposed, false);
    }

    /// Records the acceptance (or vote) durably, then answers it.
    fn accept(&mut self, from: ReplicaId, p: Proposed, vote: bool) {
        self.state.promised = self.state.promised.max(p.view.ballot);
        self.state.accepted = p.view;
        self.accepted_in_this_life = true;
        self.state.vote = vote;
        self.persist_state();
        self.use_exclusions(&p.excluded);
        if vote {
            self.rejoining = true;
        }
        self.step_down(None);
        // The acceptance answers the proposer like a heartbeat (rule 3), so it promises: an
        // older primary's lag report of the proposer, now our primary, is moot (rule 6).
        self.leases.clear_lagging(from);
        self.leases.promise_to(from, self.now);
        let message = self.message(Body::Accepted {
            ballot: p.view.ballot,
            echo: p.sent_at,
        });
        self.send_after_persist(from, message);
    }

    /// Helping to exclude: a proven-crashed incarnation is ignored from now on (its evidence
    /// is kept, to reuse); a silent member is promised nothing more until it rejoins.
    fn use_exclusions(&mut self, excluded: &[(ReplicaId, Exclusion)]) {
        for &(m, why) in excluded {
            match why {
                Exclusion::Crashed(life) => self.leases.accept_evidence(m, life),
                Exclusion::Silent => self.leases.withhold(m),
            }
        }
    }

    pub(super) fn on_accepted(
        &mut self,
        from: ReplicaId,
        life: Incarnation,
        ballot: View,
        echo: Instant,
    ) {
        self.leases.answered(from, life, echo);
        let now = self.now;
        let Some(primary) = self.role.as_primary() else {
            return;
        };
        let Some(p) = primary.proposal.as_mut() else {
            return;
        };
        if p.view.ballot != ballot {
            return;
        }
        p.accepted = p.accepted.with(from);
        let log_end = p.log_end;
        if let Some(progress) = primary.peers.get_mut(&from) {
            // It holds our log up to its end, durably.
            progress.acked_at = now;
            progress.matched = progress.matched.max(log_end);
            progress.next = progress.next.max(log_end + 1);
        }
        self.maybe_establish();
    }

    /// Rule 1d: established once every member accepted (and a majority of the configured
    /// replicas, when someone is left out for silence). Then the primary acts.
    pub(super) fn maybe_establish(&mut self) {
        let me = self.opts.id;
        let majority = self.majority();
        let early = self.opts.mutations.act_before_established;
        let durable = self.durable_id;
        let Some(primary) = self.role.as_primary() else {
            return;
        };
        let Some(p) = primary.proposal.as_mut() else {
            return;
        };
        if durable < p.own {
            return;
        }
        p.accepted = p.accepted.with(me);
        let start_replicating = !p.replicating;
        p.replicating = true;
        let silent = p.excluded.iter().any(|(_, why)| *why == Exclusion::Silent);
        let everyone = p.view.members.is_subset(p.accepted) || early;
        let done = everyone && (!silent || p.accepted.without(p.uncounted).len() >= majority);
        if done {
            primary.proposal = None;
            self.state.established = self.state.accepted;
            self.persist_state();
            self.rejoining = false;
            self.forget_excluded();
            // Before anything commits in the new view: an attachment held meanwhile replays
            // its session's earlier pushes ahead of any new one.
            self.release_held_clients();
            self.append_entry(EntryBody::Noop);
            self.primary_heartbeat();
        } else if start_replicating {
            self.primary_heartbeat();
        }
    }

    /// Becomes the primary of an established view without a proposal (the first view at
    /// the first start, or rule 8's view of one).
    pub(super) fn become_primary_of_established(&mut self) {
        let me = self.opts.id;
        let peers = self.state.accepted.members.iter().filter(|&m| m != me);
        let mut primary = PrimaryState::new(peers, self.log.last_index() + 1, None, self.now);
        for entry in self.log.entries_after(self.commit) {
            if let EntryBody::Request(r) = &entry.body {
                primary.pending.insert(r.client, r.request);
            }
        }
        self.role = RoleState::Primary(primary);
        self.append_entry(EntryBody::Noop);
    }

    /// A view is established: what we knew of the incarnations it leaves out is spent, and
    /// its members are promised again.
    pub(super) fn forget_excluded(&mut self) {
        let members = self.state.established.members;
        for peer in self.peers().collect::<Vec<_>>() {
            if members.contains(peer) {
                self.leases.rejoined(peer);
            } else {
                self.leases.forget(peer);
            }
        }
    }

    /// Follows `primary` (if known) as a backup, dropping a proposer's or primary's state.
    pub(super) fn step_down(&mut self, primary: Option<ReplicaId>) {
        self.role = RoleState::Backup { primary };
    }
}
