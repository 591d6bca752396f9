//! The protocol's steps: which actions a state enables ([`enabled`]) and what each does
//! ([`apply`]). Each rule's check names the [`Mutation`] that switches it off.

use super::state::*;
use super::{Bounds, Mutation, ProtocolModel};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// The global clock advances one tick.
    Tick,
    Crash(Id, Power),
    Restart(Id),
    /// A replica whose data directory was lost comes back with `--rejoin`: it knows no view.
    LoseDisk(Id),
    /// Heartbeat and answer both ways between two members: leases and promises (rule 3).
    Renew(Id, Id),
    /// The first gets a refusal from the second's address (rule 4a).
    Refused(Id, Id),
    /// The first hears from a newer incarnation of the second (rule 4a) — or, under `R2`,
    /// from a duplicate process posing as one.
    NewIncarnation(Id, Id),
    /// Propose a view without `silent` and `proven` (rule 4).
    Exclude {
        proposer: Id,
        silent: Mask,
        proven: Mask,
    },
    /// The primary proposes to add a returning replica (rule 7).
    Rejoin {
        proposer: Id,
        joiner: Id,
    },
    /// Everyone went down: the named proposer re-forms the highest view (rule 8).
    Recover(Id),
    /// Rule 8's fast path: a restarted view-of-one resumes at once.
    Resume(Id),
    Retransmit(Id),
    /// The replica accepts (or votes for) a proposal copy.
    Accept(Id, Msg),
    /// The proposer receives an acceptance.
    Deliver(Msg),
    /// The primary orders the next client value.
    Append(Id),
    /// The primary brings a member up to its log; the member acknowledges durably.
    Replicate(Id, Id),
    /// The primary sends its committed prefix to a returning replica outside its view (a
    /// learner, before the view change that adds it): the learner promises the primary's
    /// ballot and adopts the prefix; its acknowledgement counts for nothing.
    Teach(Id, Id),
    Commit(Id),
    /// Rule 6: the primary reports a member that acknowledged nothing for a lease lagging.
    ReportLagging(Id, Id),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |m: Mask| {
            let v: Vec<String> = ids(m).map(|i| i.to_string()).collect();
            format!("{{{}}}", v.join(","))
        };
        match self {
            Action::Tick => write!(f, "clock ticks"),
            Action::Crash(r, Power::Silent) => write!(f, "{r} goes silent (host crash)"),
            Action::Crash(r, _) => write!(f, "{r} crashes (its address refuses)"),
            Action::Restart(r) => write!(f, "{r} restarts as a new incarnation"),
            Action::LoseDisk(r) => write!(f, "{r} restarts on an empty disk (--rejoin)"),
            Action::Renew(a, b) => write!(f, "{a} and {b} renew leases"),
            Action::Refused(y, s) => write!(f, "{y} is refused by {s}'s address"),
            Action::NewIncarnation(y, s) => write!(f, "{y} hears a newer incarnation of {s}"),
            Action::Exclude {
                proposer,
                silent,
                proven,
            } => write!(
                f,
                "{proposer} proposes to exclude proven {} silent {}",
                set(*proven),
                set(*silent)
            ),
            Action::Rejoin { proposer, joiner } => write!(f, "{proposer} proposes to add {joiner}"),
            Action::Recover(p) => write!(f, "{p} proposes to re-form the view (rule 8)"),
            Action::Resume(p) => write!(f, "{p} resumes as a view of one"),
            Action::Retransmit(p) => write!(f, "{p} retransmits its proposal"),
            Action::Accept(q, Msg::Propose { view, sent_at, .. }) => {
                write!(f, "{q} accepts {view} (copy sent at {sent_at})")
            }
            Action::Accept(q, m) => write!(f, "{q} accepts {m:?}"),
            Action::Deliver(Msg::Accepted {
                from, ballot, echo, ..
            }) => write!(
                f,
                "{} receives {from}'s acceptance of b{}.{} (echo {echo})",
                ballot.proposer, ballot.num, ballot.proposer
            ),
            Action::Deliver(m) => write!(f, "deliver {m:?}"),
            Action::Append(p) => write!(f, "{p} appends a client value"),
            Action::Replicate(p, m) => write!(f, "{p} replicates to {m}"),
            Action::Teach(p, j) => write!(f, "{p} sends its committed log to learner {j}"),
            Action::Commit(p) => write!(f, "{p} commits its next index"),
            Action::ReportLagging(p, m) => write!(f, "{p} reports {m} lagging"),
        }
    }
}

impl ProtocolModel {
    fn on(&self, m: Mutation) -> bool {
        self.mutation == Some(m)
    }

    /// `a` and `b` cannot exchange anything (`Bounds::cut`).
    fn cut(&self, a: Id, b: Id) -> bool {
        a != b && self.bounds.cut == bit(a) | bit(b)
    }

    /// Rule 6: `x` does not renew its promise to `y`, which the primary of `x`'s accepted
    /// view (`x` itself, or the proposer it follows) reports lagging.
    fn withholds(&self, s: &State, x: Id, y: Id) -> bool {
        let primary = s.replicas[x as usize].accepted.primary();
        let rp = &s.replicas[primary as usize];
        self.bounds.cut != 0 && rp.up() && has(rp.lagging, y)
    }

    /// `a` promises `b` and `b` holds a lease from `a`, both to `now + lease`, unless `a`
    /// withholds (rule 6); `a` hears `b`'s incarnation.
    fn renew_one_way(&self, s: &mut State, a: Id, b: Id) {
        let (now, lease) = (s.now, self.bounds.lease);
        if !self.withholds(s, a, b) {
            s.replicas[a as usize].promise_to[b as usize] = now + lease;
            s.replicas[b as usize].lease_from[a as usize] = now + lease;
        }
        let inc = s.replicas[b as usize].incarnation;
        s.replicas[a as usize].heard[b as usize] = inc;
    }

    fn bounds(&self) -> &Bounds {
        &self.bounds
    }

    fn all(&self) -> Mask {
        ((1u16 << self.bounds.replicas) - 1) as Mask
    }

    fn majority(&self) -> u32 {
        self.bounds.replicas as u32 / 2 + 1
    }

    fn lease(&self) -> Time {
        self.bounds.lease
    }

    /// Its lease from `s` is unexpired.
    fn holds_lease(&self, s: &State, y: Id, from: Id) -> bool {
        s.now < s.replicas[y as usize].lease_from[from as usize]
    }

    /// It has let its promise not to help exclude `s` expire.
    fn promise_expired(&self, s: &State, y: Id, to: Id) -> bool {
        s.now >= s.replicas[y as usize].promise_to[to as usize]
    }

    /// The primary of its established view, promised nothing higher, and acting.
    pub fn acting_primary(&self, s: &State, p: Id) -> bool {
        let r = &s.replicas[p as usize];
        r.up()
            && !r.rejoining
            && r.established == r.accepted
            && !r.voted_only
            && r.accepted.primary() == p
            && r.promised == r.accepted.ballot
    }

    /// May it start a proposal (rule 7: not while restarted or excluded)?
    fn may_propose(&self, s: &State, p: Id) -> bool {
        let r = &s.replicas[p as usize];
        r.up()
            && !r.rejoining
            && !r.voted_only
            && has(r.accepted.members, p)
            && r.promised.num < self.bounds().max_ballot
    }

    pub fn enabled(&self, s: &State, out: &mut Vec<Action>) {
        let b = self.bounds();
        let n = b.replicas;
        if s.now < b.max_time {
            out.push(Action::Tick);
        }
        for r in 0..n {
            let rep = &s.replicas[r as usize];
            if rep.up() {
                if s.crashes < b.max_crashes {
                    out.push(Action::Crash(r, Power::Refusing));
                    if s.silent_crashes < b.max_silent {
                        out.push(Action::Crash(r, Power::Silent));
                    }
                }
            } else if s.restarts < b.max_restarts {
                out.push(Action::Restart(r));
                if s.lost_disks < b.max_lost_disks {
                    out.push(Action::LoseDisk(r));
                }
            }
        }
        for a in 0..n {
            for c in a + 1..n {
                if self.may_renew(s, a, c) {
                    out.push(Action::Renew(a, c));
                }
            }
        }
        for y in 0..n {
            for x in 0..n {
                if x != y {
                    if self.may_refuse(s, y, x) {
                        out.push(Action::Refused(y, x));
                    }
                    if self.may_hear_new_incarnation(s, y, x) {
                        out.push(Action::NewIncarnation(y, x));
                    }
                }
            }
        }
        for p in 0..n {
            self.enabled_proposals(s, p, out);
        }
        for msg in &s.network {
            match msg {
                Msg::Propose { .. } => {
                    for q in 0..n {
                        if self.may_accept(s, q, msg) {
                            out.push(Action::Accept(q, msg.clone()));
                        }
                    }
                }
                Msg::Accepted { .. } => {
                    if self.may_deliver(s, msg) {
                        out.push(Action::Deliver(msg.clone()));
                    }
                }
            }
        }
        for p in 0..n {
            if !self.acting_primary(s, p) {
                continue;
            }
            let rep = &s.replicas[p as usize];
            if s.next_value < b.max_values {
                out.push(Action::Append(p));
            }
            for m in ids(rep.accepted.members) {
                if m != p && self.may_replicate(s, p, m) {
                    out.push(Action::Replicate(p, m));
                }
            }
            for j in 0..n {
                if self.taught(s, p, j).is_some() {
                    out.push(Action::Teach(p, j));
                }
            }
            if self.may_commit(s, p) {
                out.push(Action::Commit(p));
            }
            if b.cut != 0 && !self.on(Mutation::NoLagReport) {
                for m in ids(rep.accepted.members & !bit(p) & !rep.lagging) {
                    if s.now >= rep.acked_at[m as usize] + b.lease {
                        out.push(Action::ReportLagging(p, m));
                    }
                }
            }
        }
    }

    fn may_renew(&self, s: &State, a: Id, c: Id) -> bool {
        let (ra, rc) = (&s.replicas[a as usize], &s.replicas[c as usize]);
        let fresh = s.now + self.lease();
        ra.up()
            && rc.up()
            && !self.cut(a, c)
            && !ra.rejoining
            && !rc.rejoining
            && has(ra.accepted.members, c)
            && has(rc.accepted.members, a)
            && !has(ra.evidence, c)
            && !has(rc.evidence, a)
            && (ra.lease_from[c as usize] < fresh || rc.lease_from[a as usize] < fresh)
    }

    fn may_refuse(&self, s: &State, y: Id, x: Id) -> bool {
        let ry = &s.replicas[y as usize];
        let rx = &s.replicas[x as usize];
        rx.power == Power::Refusing
            && ry.up()
            && !self.cut(y, x)
            && !ry.rejoining
            && has(ry.accepted.members, x)
            && !has(ry.evidence, x)
            && (self.holds_lease(s, y, x) || self.on(Mutation::EvidenceWithoutLease))
    }

    fn may_hear_new_incarnation(&self, s: &State, y: Id, x: Id) -> bool {
        let ry = &s.replicas[y as usize];
        let rx = &s.replicas[x as usize];
        // A first contact in this life (`heard` 0) is no evidence (core `Leases::heard`).
        let newer = ry.heard[x as usize] != 0 && rx.incarnation > ry.heard[x as usize];
        // R2: a second process started on x's data directory says hello with a bumped
        // counter and then fails to bind; without rule 5 it spoke before binding.
        let duplicate = self.on(Mutation::R2) && !s.duplicate_spoke;
        rx.up()
            && ry.up()
            && !self.cut(y, x)
            && !ry.rejoining
            && (newer || duplicate)
            && has(ry.accepted.members, x)
            && !has(ry.evidence, x)
            && (self.holds_lease(s, y, x) || self.on(Mutation::EvidenceWithoutLease))
    }

    fn enabled_proposals(&self, s: &State, p: Id, out: &mut Vec<Action>) {
        let rep = &s.replicas[p as usize];
        if !rep.up() {
            return;
        }
        if self.may_propose(s, p) {
            // Rule 4: any nonempty set of other members, each proven crashed or no longer
            // heard (its lease lapsed; a proposer has no reason to exclude others). Leases
            // and promises renew together, so the proposer's promise to it lapsed too; T3
            // does not wait for either.
            let suspects = ids((rep.accepted.members | rep.established.members) & !bit(p))
                .filter(|&x| {
                    has(rep.evidence, x)
                        || !self.holds_lease(s, p, x)
                        || has(rep.lagging, x)
                        || self.on(Mutation::T3)
                })
                .fold(0, |m, x| m | bit(x));
            let mut sub = suspects;
            while sub != 0 {
                let proven = sub & rep.evidence;
                let silent = sub & !proven;
                let kept = count(self.all() & !sub);
                if silent == 0 || kept >= self.majority() {
                    out.push(Action::Exclude {
                        proposer: p,
                        silent,
                        proven,
                    });
                }
                sub = (sub - 1) & suspects;
            }
            // Rule 7: only the primary adds a returning replica (R1: any member may): one
            // outside its view, or a restarted member (as `core` does; the model also lets
            // it simply catch up, `Replicate`), or a member that lost its disk (it knows no
            // view, so it comes back only through a view its new life accepts).
            if self.acting_primary(s, p) || self.on(Mutation::R1) {
                for j in 0..self.bounds().replicas {
                    let rj = &s.replicas[j as usize];
                    let back = !has(rep.accepted.members, j) || rj.knows_no_view() || rj.rejoining;
                    if back && rj.up() {
                        out.push(Action::Rejoin {
                            proposer: p,
                            joiner: j,
                        });
                    }
                }
            }
        }
        if rep.rejoining {
            if self.may_resume(s, p) {
                out.push(Action::Resume(p));
            } else if rep.promised.num < self.bounds().max_ballot
                && self.recovery(s).map(|(_, named)| named) == Some(p)
            {
                out.push(Action::Recover(p));
            }
        }
        if let Some(prop) = &rep.proposal {
            if prop.sends < 2 && s.now > prop.last_sent {
                out.push(Action::Retransmit(p));
            }
        }
    }

    /// Rule 8's fast path: its highest accepted-or-voted ballot is an established view
    /// whose only member is itself (F4: looks at the highest established view only).
    fn may_resume(&self, s: &State, p: Id) -> bool {
        let r = &s.replicas[p as usize];
        if self.on(Mutation::F4) || self.on(Mutation::F4KeepsPromise) {
            r.established.members == bit(p) && r.established.primary() == p
        } else {
            r.accepted == r.established && !r.voted_only && r.accepted.members == bit(p)
        }
    }

    /// Rule 8: whom a recovery waits for (every member of the highest established view any
    /// reachable replica reports, and of any higher accepted proposal: all back, all
    /// restarted) and the named proposer: the lowest id holding the highest accepted view
    /// with its log.
    fn recovery(&self, s: &State) -> Option<(Mask, Id)> {
        let n = self.bounds().replicas;
        let up: Vec<Id> = (0..n).filter(|&r| s.replicas[r as usize].up()).collect();
        let highest_established = up
            .iter()
            .map(|&r| s.replicas[r as usize].established)
            .max()?;
        let mut wait_for = highest_established.members;
        for &r in &up {
            let acc = s.replicas[r as usize].accepted;
            if acc.ballot > highest_established.ballot {
                wait_for |= acc.members;
            }
        }
        // One that lost its disk counts as missing: its disk may have held entries nobody
        // else has (AmnesiacRecovers counts it as reached).
        let everyone_back = ids(wait_for).all(|r| {
            let rep = &s.replicas[r as usize];
            rep.up()
                && rep.rejoining
                && (!rep.knows_no_view() || self.on(Mutation::AmnesiacRecovers))
        });
        if !everyone_back {
            return None;
        }
        let top = ids(wait_for)
            .map(|r| s.replicas[r as usize].accepted)
            .max()?;
        let named = ids(wait_for).find(|&r| {
            let rep = &s.replicas[r as usize];
            rep.accepted == top && !rep.voted_only && has(top.members, r)
        })?;
        Some((wait_for, named))
    }

    fn may_accept(&self, s: &State, q: Id, msg: &Msg) -> bool {
        let Msg::Propose {
            view,
            base,
            voters,
            silent,
            proven,
            ..
        } = msg
        else {
            return false;
        };
        let r = &s.replicas[q as usize];
        let ballot = view.ballot;
        if !r.up()
            || q == ballot.proposer
            || self.cut(q, ballot.proposer)
            || !has(view.members | voters, q)
            || r.accepted.ballot >= ballot
        {
            return false;
        }
        // Rule 1: it answered this ballot's phase 1 and promised nothing higher since
        // (F1: a phase-1 answer recorded nothing, so only "nothing higher" is left).
        let answered = if self.on(Mutation::F1) {
            r.promised <= ballot
        } else {
            r.promised == ballot
        };
        // Rule 1: the base is not below its own highest accepted-or-voted ballot.
        let base_ok = *base >= r.accepted.ballot || self.on(Mutation::F2);
        // Rule 3: a restarted replica neither votes nor accepts for a promise interval.
        let quiet_over = s.now >= r.quiet_until || self.on(Mutation::RestartedVotesAtOnce);
        // Rule 4b: its promise to every silent excluded member has expired (T3 drops this);
        // rule 4a needs no wait (F3 waits for proven crashed members too).
        let silent_ok =
            self.on(Mutation::T3) || ids(*silent).all(|x| self.promise_expired(s, q, x));
        let proven_ok =
            !self.on(Mutation::F3) || ids(*proven).all(|x| self.promise_expired(s, q, x));
        answered && base_ok && quiet_over && silent_ok && proven_ok
    }

    fn may_deliver(&self, s: &State, msg: &Msg) -> bool {
        let Msg::Accepted { from, ballot, .. } = msg else {
            return false;
        };
        let p = &s.replicas[ballot.proposer as usize];
        match &p.proposal {
            Some(prop) => {
                p.up()
                    && !self.cut(*from, ballot.proposer)
                    && prop.ballot == *ballot
                    && !has(prop.accepted, *from)
            }
            None => false,
        }
    }

    fn may_replicate(&self, s: &State, p: Id, m: Id) -> bool {
        let rp = &s.replicas[p as usize];
        let rm = &s.replicas[m as usize];
        let view = rp.accepted;
        // Rule 1: a phase-1 answer promises never to acknowledge an entry of a lower-ballot
        // view (StillAcks drops this).
        let fenced = rm.promised > view.ballot && !self.on(Mutation::StillAcks);
        rm.up()
            && !self.cut(p, m)
            && rm.accepted == view
            && !rm.voted_only
            && !fenced
            && (rm.log != rp.log
                || rm.established != view
                || rm.rejoining
                || rp.acked[m as usize] as usize != rp.log.len())
    }

    /// What the learner `j` holds after the primary `p` teaches it (`None`: not enabled,
    /// or nothing would change): its promise raised to `p`'s ballot, and `p`'s committed
    /// prefix in its log, whose older entries it keeps only where they agree (core
    /// `Replica::on_append` as a learner).
    fn taught(&self, s: &State, p: Id, j: Id) -> Option<(Ballot, Vec<u8>)> {
        let rp = &s.replicas[p as usize];
        let rj = &s.replicas[j as usize];
        let ballot = rp.accepted.ballot;
        let learner = j != p && !has(rp.accepted.members, j) && rj.up() && rj.rejoining;
        let unfenced = rj.promised <= ballot || self.on(Mutation::LearnsWithoutPromise);
        if !learner || self.cut(p, j) || !unfenced {
            return None;
        }
        let ballot = if self.on(Mutation::LearnsWithoutPromise) {
            rj.promised
        } else {
            ballot
        };
        let learned = if self.on(Mutation::LearnsUncommitted) {
            rp.log.len()
        } else {
            rp.commit as usize
        };
        let committed = &rp.log[..learned];
        let log = if rj.log.starts_with(committed) {
            rj.log.clone()
        } else {
            committed.to_vec()
        };
        (log != rj.log || rj.promised != ballot).then_some((ballot, log))
    }

    fn may_commit(&self, s: &State, p: Id) -> bool {
        let rp = &s.replicas[p as usize];
        let next = rp.commit + 1;
        if next as usize > rp.log.len() {
            return false;
        }
        let holders = ids(rp.accepted.members)
            .filter(|&m| rp.acked[m as usize] >= next)
            .count() as u32;
        // Rule 2: every member of the established view holds it durably.
        if self.on(Mutation::CommitWithMajority) {
            holders > count(rp.accepted.members) / 2
        } else {
            holders == count(rp.accepted.members)
        }
    }

    pub fn apply(&self, s: &State, action: Action) -> Option<State> {
        let mut s = s.clone();
        let b = self.bounds().clone();
        match action {
            Action::Tick => {
                s.now += 1;
                if b.cut != 0 {
                    // Fair heartbeats: every pair that may renew does, at once.
                    for a in 0..b.replicas {
                        for c in a + 1..b.replicas {
                            if self.may_renew(&s, a, c) {
                                self.renew_one_way(&mut s, a, c);
                                self.renew_one_way(&mut s, c, a);
                            }
                        }
                    }
                }
            }
            Action::ReportLagging(p, m) => s.replicas[p as usize].lagging |= bit(m),
            Action::Crash(r, kind) => {
                s.replicas[r as usize].power = kind;
                s.crashes += 1;
                if kind == Power::Silent {
                    s.silent_crashes += 1;
                }
                s.last_crash_at = s.now;
                s.values_before_last_crash = s.next_value;
            }
            Action::Restart(r) => {
                s.restarts += 1;
                s.replicas[r as usize].restart(s.now, b.lease);
            }
            Action::LoseDisk(r) => {
                s.restarts += 1;
                s.lost_disks += 1;
                s.replicas[r as usize].lose_disk(s.now, b.lease);
            }
            Action::Renew(a, c) => {
                self.renew_one_way(&mut s, a, c);
                self.renew_one_way(&mut s, c, a);
            }
            Action::Refused(y, x) => s.replicas[y as usize].evidence |= bit(x),
            Action::NewIncarnation(y, x) => {
                if s.replicas[x as usize].incarnation <= s.replicas[y as usize].heard[x as usize] {
                    s.duplicate_spoke = true;
                }
                s.replicas[y as usize].evidence |= bit(x);
            }
            Action::Exclude {
                proposer,
                silent,
                proven,
            } => {
                let rep = &s.replicas[proposer as usize];
                let asked = if silent != 0 {
                    self.all() & !(silent | proven)
                } else {
                    rep.accepted.members & !proven
                };
                self.propose(&mut s, proposer, Kind::Exclude { silent, proven }, asked)?;
            }
            Action::Rejoin { proposer, joiner } => {
                let asked = s.replicas[proposer as usize].accepted.members | bit(joiner);
                self.propose(&mut s, proposer, Kind::Rejoin(joiner), asked)?;
            }
            Action::Recover(p) => {
                let (asked, _) = self.recovery(&s)?;
                self.propose(&mut s, p, Kind::Recover, asked)?;
            }
            Action::Resume(p) => {
                let rep = &mut s.replicas[p as usize];
                if self.on(Mutation::F4) || self.on(Mutation::F4KeepsPromise) {
                    rep.accepted = rep.established;
                    rep.voted_only = false;
                }
                // The draft's fast path resumes as the primary of its view of one: the
                // promise it made itself for its own later proposal goes with that proposal.
                if self.on(Mutation::F4) && rep.promised.proposer == p {
                    rep.promised = rep.established.ballot;
                }
                rep.rejoining = false;
                rep.acked[p as usize] = rep.log.len() as u8;
            }
            Action::Retransmit(p) => {
                let rep = &mut s.replicas[p as usize];
                let prop = rep.proposal.as_mut()?;
                prop.sends += 1;
                prop.last_sent = s.now;
                let msg = propose_msg(rep, s.now)?;
                s.network.insert(msg);
            }
            Action::Accept(q, msg) => self.accept(&mut s, q, msg),
            Action::Deliver(msg) => self.deliver(&mut s, msg),
            Action::Append(p) => {
                let value = s.next_value;
                s.next_value += 1;
                let rep = &mut s.replicas[p as usize];
                rep.log.push(value);
                rep.acked[p as usize] = rep.log.len() as u8;
            }
            Action::Replicate(p, m) => {
                let (log, view, inc) = {
                    let rp = &s.replicas[p as usize];
                    (rp.log.clone(), rp.accepted, rp.incarnation)
                };
                let len = log.len() as u8;
                let rm = &mut s.replicas[m as usize];
                rm.log = log;
                rm.established = view;
                rm.rejoining = false;
                rm.heard[p as usize] = inc;
                let minc = rm.incarnation;
                let now = s.now;
                let rp = &mut s.replicas[p as usize];
                rp.acked[m as usize] = len;
                // Rule 6's bookkeeping, only where it is modelled (it would split states
                // that differ in nothing else).
                if b.cut != 0 {
                    rp.acked_at[m as usize] = now;
                    rp.lagging &= !bit(m);
                }
                if rp.heard[m as usize] != minc {
                    rp.heard[m as usize] = minc;
                    rp.evidence &= !bit(m);
                }
            }
            Action::Teach(p, j) => {
                let (ballot, log) = self.taught(&s, p, j)?;
                let rj = &mut s.replicas[j as usize];
                rj.promised = ballot;
                rj.log = log;
            }
            Action::Commit(p) => {
                let rep = &mut s.replicas[p as usize];
                rep.commit += 1;
                let index = rep.commit;
                let value = rep.log[index as usize - 1];
                let ballot = rep.accepted.ballot;
                if b.cut != 0 && rep.accepted.members & b.cut != b.cut {
                    s.cut_resolved = true;
                }
                if s.committed
                    .iter()
                    .any(|c| c.index == index && c.value != value)
                {
                    s.conflict = true;
                }
                if !s.committed.iter().any(|c| c.index == index) {
                    s.committed.push(Committed {
                        index,
                        value,
                        ballot,
                    });
                }
                let crash_only = s.silent_crashes == 0 && s.restarts == 0;
                if crash_only
                    && s.crashes + 1 == b.replicas
                    && value >= s.values_before_last_crash
                    && s.now == s.last_crash_at
                {
                    s.fast_failover = true;
                }
            }
        }
        Some(s)
    }

    /// Phases 1 and 2 of a proposal from `p`, asking `asked`: every one of them answers
    /// phase 1 at once (a durable promise, reporting its highest accepted-or-voted view),
    /// then the proposer checks the answers, accepts its own proposal durably and sends it.
    /// A proposal whose checks fail is not started (its promises would only restrict later
    /// steps). `None` if it cannot be made.
    fn propose(&self, s: &mut State, p: Id, kind: Kind, asked: Mask) -> Option<()> {
        let now = s.now;
        let ballot = Ballot {
            num: s.replicas[p as usize].promised.num + 1,
            proposer: p,
        };
        let mut asked = asked | bit(p);
        let (silent, proven) = match kind {
            Kind::Exclude { silent, proven } => (silent, proven),
            _ => (0, 0),
        };
        let amnesiacs = (0..self.bounds().replicas)
            .filter(|&q| s.replicas[q as usize].knows_no_view())
            .fold(0, |m, q| m | bit(q));
        if asked & amnesiacs != 0 {
            // Keeping or adding a replica that lost its disk needs a counted majority's
            // answers: the proposer asks everyone, and goes on with those that grant.
            for q in ids(self.all() & !(silent | proven) & !asked) {
                let rq = &s.replicas[q as usize];
                if rq.up() && rq.promised < ballot {
                    asked |= bit(q);
                }
            }
        }
        // Phase 1: every asked replica is reachable and promised nothing as high; it
        // reports its highest accepted-or-voted view and its highest established view.
        let mut base = s.replicas[p as usize].accepted;
        let mut established = s.replicas[p as usize].established;
        for q in ids(asked) {
            let rq = &s.replicas[q as usize];
            if !rq.up() || self.cut(p, q) || (q != p && rq.promised >= ballot) {
                return None;
            }
            base = base.max(rq.accepted);
            established = established.max(rq.established);
        }
        let members = match kind {
            Kind::Exclude { .. } => base.members & !(silent | proven),
            Kind::Rejoin(j) => base.members | bit(j),
            Kind::Recover => base.members,
        };
        let rep = &s.replicas[p as usize];
        // Rule 1: the proposer is a member of the base and every member of the new view
        // answered; rule 4b: a majority answered and the proposer's promise to each silent
        // member expired; rule 3: a restarted proposer waits out its quiet interval.
        // Rule 4: every member of the highest established view reported that the new view
        // leaves out is excluded by this proposal, under (a) or (b): exclusions of an
        // unestablished base do not carry over (M1 lets them).
        let justified =
            established.members & !members & !(silent | proven) == 0 || self.on(Mutation::M1);
        // Disk loss: an answer that knows no view is a promise but never one of 4(b)'s
        // majority (AmnesiacVotes counts it), and a view that keeps or adds such a replica
        // needs the answers of a counted majority (AmnesiacUnwitnessed drops this): its
        // forgotten views must show in someone else's answer.
        let uncounted = if self.on(Mutation::AmnesiacVotes) {
            0
        } else {
            asked & amnesiacs
        };
        let counted = count(asked & !(asked & amnesiacs));
        let witnessed = members & amnesiacs == 0
            || counted >= self.majority()
            || self.on(Mutation::AmnesiacUnwitnessed);
        let ok = has(base.members, p)
            && justified
            && witnessed
            && members & !asked == 0
            && (silent == 0 || count(asked & !uncounted) >= self.majority())
            && (now >= rep.quiet_until || self.on(Mutation::RestartedVotesAtOnce))
            && (self.on(Mutation::T3) || ids(silent).all(|x| self.promise_expired(s, p, x)))
            && (!self.on(Mutation::F3) || ids(proven).all(|x| self.promise_expired(s, p, x)));
        if !ok {
            return None;
        }
        for q in ids(asked) {
            // F1: an answer promises nothing (the proposer's own promise is its ballot).
            if q == p || !self.on(Mutation::F1) {
                s.replicas[q as usize].promised = ballot;
            }
        }
        let view = View { ballot, members };
        let rep = &mut s.replicas[p as usize];
        rep.accepted = view;
        rep.voted_only = false;
        rep.proposal = Some(Proposal {
            ballot,
            kind,
            voters: asked & !members & !uncounted,
            uncounted,
            base,
            view,
            accepted: bit(p),
            last_sent: now,
            sends: 1,
        });
        let msg = propose_msg(rep, now).expect("just made");
        s.network.insert(msg);
        self.maybe_establish(s, p);
        Some(())
    }

    fn accept(&self, s: &mut State, q: Id, msg: Msg) {
        let Msg::Propose {
            view,
            log,
            sent_at,
            proven,
            ..
        } = msg
        else {
            return;
        };
        let now = s.now;
        let lease = self.lease();
        let proposer = view.ballot.proposer;
        let proposer_inc = s.replicas[proposer as usize].incarnation;
        let r = &mut s.replicas[q as usize];
        // The proposal is a message from the proposer's incarnation (core `Leases::heard`):
        // a first contact is heard; a newer incarnation is evidence against the one heard
        // if it holds a lease from it, and otherwise replaces it (its lease and promise
        // went with it).
        let known = r.heard[proposer as usize];
        if known == 0 {
            r.heard[proposer as usize] = proposer_inc;
        } else if proposer_inc > known && !self.on(Mutation::StaleEvidence) {
            // Rule 4(a), as `core`'s `Leases::heard` does it: the proposal is at least the
            // new incarnation's second message (its `Prepare` came first), and a second
            // message from a newer incarnation replaces the old one, spending any evidence
            // against it.
            r.heard[proposer as usize] = proposer_inc;
            r.evidence &= !bit(proposer);
            r.lease_from[proposer as usize] = 0;
            r.promise_to[proposer as usize] = 0;
        } else if proposer_inc > known && !has(r.evidence, proposer) {
            if now < r.lease_from[proposer as usize] {
                r.evidence |= bit(proposer);
            } else {
                r.heard[proposer as usize] = proposer_inc;
                r.lease_from[proposer as usize] = 0;
                r.promise_to[proposer as usize] = 0;
            }
        }
        r.promised = r.promised.max(view.ballot);
        r.accepted = view;
        let member = has(view.members, q);
        r.voted_only = !member;
        // Rule 1: a member accepts only once it durably holds the proposer's whole log
        // (T2: accepts first, catches up later).
        if member && !self.on(Mutation::T2) {
            r.log = log;
        }
        // The acceptance answers the proposer like a heartbeat (rule 3).
        r.promise_to[proposer as usize] = now + lease;
        // Rule 4a: it ignores the proven-crashed incarnations from now on.
        r.evidence |= proven;
        let inc = s.replicas[q as usize].incarnation;
        s.network.insert(Msg::Accepted {
            from: q,
            inc,
            ballot: view.ballot,
            echo: sent_at,
        });
    }

    fn deliver(&self, s: &mut State, msg: Msg) {
        let Msg::Accepted {
            from,
            inc,
            ballot,
            echo,
        } = msg
        else {
            return;
        };
        let lease = self.lease();
        let p = ballot.proposer;
        let r3 = self.on(Mutation::R3);
        let rep = &mut s.replicas[p as usize];
        let Some(prop) = rep.proposal.as_mut() else {
            return;
        };
        prop.accepted |= bit(from);
        // Rule 3: the lease runs from the send time of the copy it answers (R3: of the
        // latest copy sent), if it comes from the incarnation last heard (a first contact
        // in this life is heard now; core `Leases::answered`).
        let from_time = if r3 { prop.last_sent } else { echo };
        if rep.heard[from as usize] == 0 {
            rep.heard[from as usize] = inc;
        }
        if rep.heard[from as usize] == inc {
            let until = &mut rep.lease_from[from as usize];
            *until = (*until).max(from_time + lease);
        }
        self.maybe_establish(s, p);
    }

    /// A view is established once every member accepted it and, when it excludes a silent
    /// member, a majority of the configured replicas accepted or voted (T1: once a
    /// majority did, members or not).
    fn maybe_establish(&self, s: &mut State, p: Id) {
        let rep = &s.replicas[p as usize];
        let Some(prop) = &rep.proposal else { return };
        let view = prop.view;
        let silent = matches!(prop.kind, Kind::Exclude { silent, .. } if silent != 0);
        let enough = count(prop.accepted & !prop.uncounted) >= self.majority();
        let everyone = prop.accepted & view.members == view.members;
        let done = (everyone || (self.on(Mutation::T1) && enough)) && (!silent || enough);
        if !done {
            return;
        }
        let accepted = prop.accepted;
        let log_len = rep.log.len() as u8;
        // Ghost check: every member that accepted (and still holds its acceptance: one that
        // lost its disk since holds nothing, and must be added back) holds every value
        // committed in an earlier view.
        let lost = ids(view.members & accepted).any(|m| {
            let rm = &s.replicas[m as usize];
            if rm.accepted.ballot < view.ballot {
                return false;
            }
            let log = &rm.log;
            s.committed
                .iter()
                .any(|c| c.ballot < view.ballot && log.get(c.index as usize - 1) != Some(&c.value))
        });
        s.lost |= lost;
        let rep = &mut s.replicas[p as usize];
        rep.established = view;
        rep.proposal = None;
        rep.rejoining = false;
        rep.commit = 0;
        if self.bounds.cut != 0 {
            rep.acked_at = [s.now; MAX_REPLICAS];
            rep.lagging = 0;
        }
        rep.acked = [0; MAX_REPLICAS];
        for m in ids(view.members) {
            rep.acked[m as usize] = if has(accepted, m) {
                log_len
            } else {
                // T1: the primary acts without waiting for members that did not accept.
                u8::MAX
            };
        }
    }
}

/// The proposal message of a replica in phase 2, sent at `now`.
fn propose_msg(rep: &Replica, now: Time) -> Option<Msg> {
    let prop = rep.proposal.as_ref()?;
    let view = prop.view;
    let (silent, proven) = match prop.kind {
        Kind::Exclude { silent, proven } => (silent, proven),
        _ => (0, 0),
    };
    Some(Msg::Propose {
        view,
        base: prop.base.ballot,
        voters: prop.voters,
        silent,
        proven,
        log: rep.log.clone(),
        sent_at: now,
    })
}
