//! Leases, promises and crash evidence: issue 8's rules 3, 4 and 5 and the pause bound, on
//! this replica's own clock (the only clock it has; rates differ by at most the drift bound).
//!
//! - When Z answers Y's heartbeat sent at Y's time t, Y holds a lease from Z until t + L (on
//!   Y's clock), and Z promises not to help exclude Y until its receive time
//!   + L·(1 + drift) + margin (on Z's clock).
//! - Evidence that incarnation i of s crashed: a refusal from s's configured address, or a
//!   message from a newer incarnation of s, reaching us after we last heard from i and while
//!   we held an unexpired lease from s; or the operator's word that s's host is gone for good
//!   (`chat-admin remove`, no lease needed: [`super::RemoveRefused`] lists when it is refused).
//! - A process that just started helps exclude no one for silence for one promise: it cannot
//!   tell a silent peer from one still starting.
//! - A replica that notices its own event loop stalled for longer than the pause bound drops
//!   every lease it holds before acting again; a restarted replica neither votes nor accepts
//!   for L·(1 + drift) + margin (it lost its promises).

use super::view::{Exclusion, Incarnation, Members};
use crate::ids::ReplicaId;
use crate::time::{Duration, Instant};
use std::collections::BTreeMap;

/// Lease timing (see [`super::Options`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseOptions {
    /// L: how long an answered heartbeat lets the sender count on the answerer.
    pub lease: Duration,
    /// Bound on how much faster one replica's clock may run than another's, in millionths.
    pub max_clock_drift_ppm: u32,
    /// Added to every promise: at least the pause bound plus the time from a lease check to
    /// the action it allows.
    pub margin: Duration,
    /// A replica that sees its own event loop stalled longer than this drops its leases.
    pub pause_bound: Duration,
}

impl Default for LeaseOptions {
    /// Lease 1 s, drift 1 %, pause bound 200 ms, margin 250 ms (the pause bound plus 50 ms
    /// from a lease check to its action): a promise lasts 1.26 s.
    fn default() -> LeaseOptions {
        LeaseOptions {
            lease: Duration::from_millis(1000),
            max_clock_drift_ppm: 10_000,
            margin: Duration::from_millis(250),
            pause_bound: Duration::from_millis(200),
        }
    }
}

impl LeaseOptions {
    /// How long a promise lasts on the promiser's clock: L·(1 + drift) + margin.
    pub fn promise(&self) -> Duration {
        let drift = self.lease.as_micros() as u64 * u64::from(self.max_clock_drift_ppm) / 1_000_000;
        self.lease + Duration::from_micros(drift) + self.margin
    }

    /// The longest the replica may go without a step: half the pause bound, so that a
    /// longer gap is a stall of the process, not a quiet timer table.
    pub fn watchdog(&self) -> Duration {
        self.pause_bound / 2
    }
}

/// Proof that an incarnation is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// Its configured peer address refused a connection.
    Refused,
    /// A newer incarnation spoke.
    Succeeded(Incarnation),
    /// The operator declared its host gone for good (`chat-admin remove`).
    Removed,
}

#[derive(Clone, Debug, Default)]
struct PeerLease {
    /// The incarnation last heard from, and when.
    incarnation: Option<Incarnation>,
    heard_at: Instant,
    /// When its address last refused a connection (evidence or not).
    refused_at: Instant,
    /// Our lease from it (it will not help exclude us before then).
    held_until: Instant,
    /// Our promise to it (we help exclude it no earlier than this).
    promised_until: Instant,
    /// Promises to it are not renewed: it was excluded for silence (4b), until it rejoins.
    withheld: bool,
    /// Promises to it are not renewed while the primary reports it lagging (rule 6). Unlike
    /// `withheld` this follows the primary's latest report: a member that catches up before
    /// its promise ran out is promised again, so a briefly slow member is not left out.
    lagging: bool,
    /// While reported lagging, our lease from it ran out at some point: a lease held again
    /// since means the link came back (see [`Leases::answers_again`]).
    lease_lapsed: bool,
    /// Proof that `incarnation` crashed.
    evidence: Option<Evidence>,
}

/// This replica's leases from, and promises to, every peer.
#[derive(Debug)]
pub struct Leases {
    opts: LeaseOptions,
    peers: BTreeMap<ReplicaId, PeerLease>,
    /// Neither vote nor accept before this (set at start: promises were lost).
    quiet_until: Instant,
    /// When the last lag report we follow (rule 6) arrived, or we made ours.
    lag_reported_at: Instant,
    /// When the replica was last stepped.
    last_step: Instant,
    /// Mutations (see [`super::Mutations`]): a refusal counts without a lease; a silent
    /// member may be excluded while still promised.
    evidence_without_lease: bool,
    silent_while_promised: bool,
}

impl Leases {
    /// A process that just started: it holds no lease and, if it lived before (`restarted`:
    /// it lost the promises it made), stays quiet for one promise.
    pub fn start(
        opts: LeaseOptions,
        peers: impl IntoIterator<Item = ReplicaId>,
        now: Instant,
        restarted: bool,
        mutations: &super::Mutations,
    ) -> Leases {
        Leases {
            quiet_until: if restarted && !mutations.restarted_acts_at_once {
                now + opts.promise()
            } else {
                now
            },
            evidence_without_lease: mutations.evidence_without_lease,
            silent_while_promised: mutations.silent_exclusion_while_promised,
            opts,
            // A process that just started cannot tell a silent peer from one still starting:
            // it helps exclude no peer for silence for one promise, as if it had promised each.
            peers: peers
                .into_iter()
                .map(|p| {
                    let lease = PeerLease {
                        promised_until: now + opts.promise(),
                        ..PeerLease::default()
                    };
                    (p, lease)
                })
                .collect(),
            lag_reported_at: now,
            last_step: now,
        }
    }

    pub fn options(&self) -> LeaseOptions {
        self.opts
    }

    /// Called at the start of every step. Returns true if the event loop stalled past the
    /// pause bound, in which case every lease held is dropped before anything else happens.
    pub fn step(&mut self, now: Instant) -> bool {
        let stalled = now.saturating_sub(self.last_step) > self.opts.pause_bound;
        self.last_step = self.last_step.max(now);
        if stalled {
            for peer in self.peers.values_mut() {
                peer.held_until = Instant::ZERO;
            }
        }
        stalled
    }

    /// Whether a vote or acceptance may be given (not in the quiet period after a start).
    pub fn may_vote_or_accept(&self, now: Instant) -> bool {
        now >= self.quiet_until
    }

    /// Any message from `peer`'s `incarnation` arrived. A newer incarnation's first message
    /// is evidence against the older one (if we held a lease from it). Its next message
    /// spends that evidence (rule 4(a)): from then on we may answer the new incarnation,
    /// which promises it, and evidence against a replica must never outlive a promise to
    /// it (the stale-evidence trace, NOTEBOOK 2026-12-03). Promises are made only by
    /// answering ([`Leases::promise_to`]).
    pub fn heard(&mut self, peer: ReplicaId, incarnation: Incarnation, now: Instant) {
        let without_lease = self.evidence_without_lease;
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        match p.incarnation {
            Some(known) if incarnation < known => return, // A message from a dead life.
            Some(known) if incarnation > known => {
                if (p.held_until > now || without_lease) && p.evidence.is_none() {
                    p.evidence = Some(Evidence::Succeeded(incarnation));
                    return; // Evidence against `known`, until the new life speaks again.
                }
                *p = PeerLease {
                    withheld: p.withheld,
                    ..PeerLease::default()
                };
            }
            _ => {}
        }
        if p.evidence.is_some() {
            return; // That incarnation is gone; its successor waits until the exclusion.
        }
        p.incarnation = Some(incarnation);
        p.heard_at = now;
    }

    /// We answer `peer`'s heartbeat (or accept its proposal): we promise not to help
    /// exclude it for one promise from now, unless we withhold promises from it or it is
    /// proven crashed. Returns whether we promised (and so may answer).
    pub fn promise_to(&mut self, peer: ReplicaId, now: Instant) -> bool {
        let promise = self.opts.promise();
        let Some(p) = self.peers.get_mut(&peer) else {
            return false;
        };
        if p.withheld || p.lagging || p.evidence.is_some() {
            return false;
        }
        p.promised_until = p.promised_until.max(now + promise);
        true
    }

    /// The incarnation of `peer` last heard from.
    pub fn incarnation(&self, peer: ReplicaId) -> Option<Incarnation> {
        self.peers.get(&peer)?.incarnation
    }

    /// Whether `peer`'s last heard incarnation is proven crashed.
    pub fn has_evidence(&self, peer: ReplicaId) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.evidence.is_some())
    }

    /// `peer`'s `incarnation` answered our heartbeat that we sent at `sent_at`.
    pub fn answered(&mut self, peer: ReplicaId, incarnation: Incarnation, sent_at: Instant) {
        let lease = self.opts.lease;
        if let Some(p) = self.peers.get_mut(&peer) {
            if p.incarnation == Some(incarnation) && p.evidence.is_none() {
                p.held_until = p.held_until.max(sent_at + lease);
            }
        }
    }

    /// A connection to `peer`'s configured address was refused.
    pub fn refused(&mut self, peer: ReplicaId, now: Instant) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.refused_at = now;
            let lease = p.held_until > now || self.evidence_without_lease;
            if p.incarnation.is_some() && lease && p.evidence.is_none() {
                p.evidence = Some(Evidence::Refused);
            }
        }
    }

    /// Whether `peer` could answer a proposal now: we heard from it within a lease, and its
    /// address has not refused a connection since. Live replicas hear from each other every
    /// heartbeat (heartbeats between members, `Hello`s from everyone else).
    pub fn seems_up(&self, peer: ReplicaId, now: Instant) -> bool {
        self.peers.get(&peer).is_some_and(|p| {
            p.incarnation.is_some()
                && p.refused_at <= p.heard_at
                && now.saturating_sub(p.heard_at) <= self.opts.lease
        })
    }

    /// Whether we hold an unexpired lease from `peer`.
    pub fn holds_lease_from(&self, peer: ReplicaId, now: Instant) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.held_until > now)
    }

    /// Whether, and why, we may help leave `peer` out of a view now.
    pub fn may_exclude(&self, peer: ReplicaId, now: Instant) -> Option<Exclusion> {
        let p = self.peers.get(&peer)?;
        match (p.evidence, p.incarnation) {
            (Some(_), Some(incarnation)) => Some(Exclusion::Crashed(incarnation)),
            _ if p.promised_until <= now || self.silent_while_promised => Some(Exclusion::Silent),
            _ => None,
        }
    }

    /// Someone else proved `incarnation` of `peer` crashed: we may help exclude it at once
    /// (our promise died with its process) and ignore it from now on.
    pub fn accept_evidence(&mut self, peer: ReplicaId, incarnation: Incarnation) {
        if let Some(p) = self.peers.get_mut(&peer) {
            if p.incarnation.is_none_or(|known| known <= incarnation) {
                p.incarnation = Some(incarnation);
                p.evidence.get_or_insert(Evidence::Refused);
                p.promised_until = Instant::ZERO;
            }
        }
    }

    /// The operator declared `peer`'s host gone for good: its last incarnation heard (or, if
    /// none was heard in this life, any earlier one) counts as crashed, lease or not.
    pub fn declare_removed(&mut self, peer: ReplicaId) {
        if let Some(p) = self.peers.get_mut(&peer) {
            if p.evidence.is_none() {
                p.incarnation.get_or_insert_with(Incarnation::default);
                p.evidence = Some(Evidence::Removed);
                p.promised_until = Instant::ZERO;
            }
        }
    }

    /// When we last heard from `peer` in this life, if we did.
    pub fn last_heard(&self, peer: ReplicaId) -> Option<Instant> {
        let p = self.peers.get(&peer)?;
        p.incarnation.is_some().then_some(p.heard_at)
    }

    /// Stop renewing our promise to `peer` (it is being excluded for silence, rule 4b)
    /// until it rejoins.
    pub fn withhold(&mut self, peer: ReplicaId) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.withheld = true;
        }
    }

    /// Whether we withhold promises from `peer` (rule 4(b)) though we heard from it within
    /// `within`: it talks, and is silent to our leases only because we stopped answering it.
    pub fn withheld_but_heard(&self, peer: ReplicaId, now: Instant, within: Duration) -> bool {
        self.peers
            .get(&peer)
            .is_some_and(|p| p.withheld && now.saturating_sub(p.heard_at) <= within)
    }

    /// Rule 6: the primary reports these peers lagging (and no others): while it does, our
    /// promises to them are not renewed, so that they run out and rule 4(b) can leave them
    /// out. Withholding a promise is always safe (a promise is made only by answering);
    /// this only decides how soon a slow member may be excluded.
    pub fn report_lagging(&mut self, lagging: Members, now: Instant) {
        for (&id, p) in self.peers.iter_mut() {
            p.lagging = lagging.contains(id);
            p.lease_lapsed = p.lagging && (p.lease_lapsed || p.held_until <= now);
        }
        self.lag_reported_at = now;
    }

    /// Whether `peer`, reported lagging, answers our heartbeats again after our lease from it
    /// had run out while it was reported: the link is back. (A member that answered all
    /// along, say with a stalled disk, does not count.)
    pub fn answers_again(&self, peer: ReplicaId, now: Instant) -> bool {
        self.peers
            .get(&peer)
            .is_some_and(|p| p.lagging && p.lease_lapsed && p.held_until > now)
    }

    /// A report not renewed for longer than `within` is void (its primary went away, or we
    /// follow another view now): a stale report must not keep us from promising a member.
    pub fn expire_lag_report(&mut self, now: Instant, within: Duration) {
        if now.saturating_sub(self.lag_reported_at) > within {
            let peers: Vec<ReplicaId> = self.peers.keys().copied().collect();
            for peer in peers {
                self.clear_lagging(peer);
            }
        }
    }

    /// `peer` is no longer reported lagging.
    pub fn clear_lagging(&mut self, peer: ReplicaId) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.lagging = false;
            p.lease_lapsed = false;
        }
    }

    /// Whether the primary's latest report (or ours, as primary) has `peer` lagging.
    pub fn is_lagging(&self, peer: ReplicaId) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.lagging)
    }

    /// Every peer reported lagging.
    pub fn lagging(&self) -> Members {
        self.peers
            .iter()
            .filter(|(_, p)| p.lagging)
            .map(|(&id, _)| id)
            .collect()
    }

    /// `peer` is a member of our view again (rule 7): promises to it are renewed again.
    pub fn rejoined(&mut self, peer: ReplicaId) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.withheld = false;
        }
        self.clear_lagging(peer);
    }

    /// A view without `peer` is established: what we knew of its incarnations is spent.
    /// Its next incarnation is heard afresh (and promised again once it is a member).
    pub fn forget(&mut self, peer: ReplicaId) {
        if let Some(p) = self.peers.get_mut(&peer) {
            *p = PeerLease {
                withheld: p.withheld,
                ..PeerLease::default()
            };
        }
    }

    /// Peers we hold an unexpired lease from.
    pub fn held(&self, now: Instant) -> Vec<ReplicaId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.held_until > now)
            .map(|(&id, _)| id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::Mutations;

    fn opts() -> LeaseOptions {
        LeaseOptions::default()
    }

    fn at(ms: u64) -> Instant {
        Instant(ms * 1000)
    }

    /// A restarted replica's leases.
    fn start(peers: &[ReplicaId]) -> Leases {
        Leases::start(
            opts(),
            peers.iter().copied(),
            at(0),
            true,
            &Mutations::default(),
        )
    }

    /// `peer` heartbeats us at `ms`, we answer, and it answers ours sent then.
    fn exchange(l: &mut Leases, peer: ReplicaId, life: Incarnation, ms: u64) {
        l.heard(peer, life, at(ms));
        assert!(l.promise_to(peer, at(ms)));
        l.answered(peer, life, at(ms));
    }

    const I1: Incarnation = Incarnation { counter: 1, id: 7 };
    const I2: Incarnation = Incarnation { counter: 2, id: 9 };

    #[test]
    fn a_promise_lasts_the_lease_stretched_by_drift_plus_the_margin() {
        assert_eq!(opts().promise(), Duration::from_millis(1260));
    }

    #[test]
    fn a_restarted_replica_stays_quiet_for_one_promise_and_a_first_start_does_not() {
        let l = start(&[1, 2]);
        assert!(!l.may_vote_or_accept(at(1259)));
        assert!(l.may_vote_or_accept(at(1260)));
        let first = Leases::start(opts(), [1], at(0), false, &Mutations::default());
        assert!(first.may_vote_or_accept(at(0)));
    }

    #[test]
    fn a_peer_not_heard_since_the_start_is_silent_only_after_one_promise() {
        let first = Leases::start(opts(), [1], at(0), false, &Mutations::default());
        assert_eq!(first.may_exclude(1, at(1259)), None);
        assert_eq!(first.may_exclude(1, at(1260)), Some(Exclusion::Silent));
    }

    #[test]
    fn an_answered_heartbeat_gives_a_lease_from_its_send_time() {
        let mut l = start(&[1, 2]);
        l.heard(1, I1, at(10));
        l.answered(1, I1, at(5));
        assert!(l.holds_lease_from(1, at(1004)));
        assert!(!l.holds_lease_from(1, at(1005)));
        assert!(!l.holds_lease_from(2, at(10)));
        assert_eq!(l.held(at(10)), vec![1]);
    }

    #[test]
    fn a_refusal_under_a_lease_is_evidence_and_without_one_is_nothing() {
        let mut l = start(&[1, 2]);
        for peer in [1, 2] {
            exchange(&mut l, peer, I1, 10);
        }
        l.refused(1, at(500));
        assert_eq!(l.may_exclude(1, at(500)), Some(Exclusion::Crashed(I1)));
        l.refused(2, at(1010)); // The lease from 2 ran out at 1010.
        assert_eq!(
            l.may_exclude(2, at(1010)),
            None,
            "still promised until 1270"
        );
        assert_eq!(l.may_exclude(2, at(1270)), Some(Exclusion::Silent));
    }

    #[test]
    fn a_newer_incarnation_under_a_lease_is_evidence_against_the_older() {
        let mut l = start(&[1]);
        exchange(&mut l, 1, I1, 10);
        l.heard(1, I2, at(50));
        assert_eq!(l.may_exclude(1, at(50)), Some(Exclusion::Crashed(I1)));
        assert!(
            !l.promise_to(1, at(50)),
            "nothing is promised to a crashed life"
        );
        // Once a view without it is established, the new incarnation is heard afresh.
        l.forget(1);
        l.heard(1, I2, at(60));
        assert!(l.promise_to(1, at(60)));
        assert_eq!(l.may_exclude(1, at(60)), None);
        // A message from the dead incarnation changes nothing.
        l.heard(1, I1, at(100));
        assert_eq!(l.incarnation(1), Some(I2));
    }

    /// Rule 4(a): the new incarnation's second message spends the evidence against the old
    /// one, so that it can be promised (the stale-evidence trace).
    #[test]
    fn evidence_against_an_old_life_is_spent_when_the_new_one_speaks_again() {
        let mut l = start(&[1]);
        exchange(&mut l, 1, I1, 10);
        l.heard(1, I2, at(50));
        assert_eq!(l.may_exclude(1, at(50)), Some(Exclusion::Crashed(I1)));
        l.heard(1, I2, at(60));
        assert_eq!(l.incarnation(1), Some(I2));
        assert!(!l.has_evidence(1));
        assert!(l.promise_to(1, at(60)));
        assert_eq!(l.may_exclude(1, at(60)), None);
    }

    #[test]
    fn a_withheld_promise_expires_and_is_not_renewed() {
        let mut l = start(&[1]);
        exchange(&mut l, 1, I1, 0);
        l.withhold(1);
        assert!(!l.promise_to(1, at(1000)));
        assert_eq!(l.may_exclude(1, at(1259)), None);
        assert_eq!(l.may_exclude(1, at(1260)), Some(Exclusion::Silent));
        l.rejoined(1);
        assert!(l.promise_to(1, at(1300)));
    }

    #[test]
    fn a_lagging_peer_is_not_promised_while_reported_and_is_promised_again_after() {
        let mut l = start(&[1]);
        exchange(&mut l, 1, I1, 0);
        l.report_lagging(Members::one(1), at(0));
        assert!(l.is_lagging(1));
        assert!(!l.promise_to(1, at(1000)), "no renewal while it lags");
        assert_eq!(l.may_exclude(1, at(1259)), None);
        assert_eq!(l.may_exclude(1, at(1260)), Some(Exclusion::Silent));
        // Caught up: the primary no longer reports it, and it is promised again.
        l.report_lagging(Members::default(), at(1300));
        assert!(l.promise_to(1, at(1300)));
        assert_eq!(l.may_exclude(1, at(1300)), None);
        // Rejoining clears a report too.
        l.report_lagging(Members::one(1), at(1300));
        l.rejoined(1);
        assert!(!l.is_lagging(1));
        // And a report not renewed goes stale.
        l.report_lagging(Members::one(1), at(1400));
        l.expire_lag_report(at(1700), Duration::from_millis(300));
        assert!(l.is_lagging(1));
        l.expire_lag_report(at(1701), Duration::from_millis(300));
        assert!(!l.is_lagging(1));
    }

    #[test]
    fn a_stalled_event_loop_drops_every_lease_held() {
        let mut l = start(&[1]);
        exchange(&mut l, 1, I1, 0);
        assert!(!l.step(at(150)));
        assert!(l.holds_lease_from(1, at(150)));
        assert!(
            l.step(at(400)),
            "250 ms without a step is past the pause bound"
        );
        assert!(!l.holds_lease_from(1, at(400)));
        // And so a refusal now is no evidence.
        l.refused(1, at(401));
        assert_eq!(l.may_exclude(1, at(401)), None);
    }

    #[test]
    fn evidence_from_another_replica_frees_us_from_our_promise_at_once() {
        let mut l = start(&[1]);
        l.heard(1, I1, at(0));
        l.promise_to(1, at(0));
        assert_eq!(l.may_exclude(1, at(10)), None);
        l.accept_evidence(1, I1);
        assert_eq!(l.may_exclude(1, at(10)), Some(Exclusion::Crashed(I1)));
    }

    #[test]
    fn the_mutations_use_evidence_without_a_lease_and_skip_the_expiry() {
        let m = Mutations {
            evidence_without_lease: true,
            silent_exclusion_while_promised: true,
            ..Mutations::default()
        };
        let mut l = Leases::start(opts(), [1], at(0), true, &m);
        l.heard(1, I1, at(0));
        l.promise_to(1, at(0));
        l.refused(1, at(5000));
        assert_eq!(l.may_exclude(1, at(5000)), Some(Exclusion::Crashed(I1)));
        let mut l = Leases::start(opts(), [1], at(0), true, &m);
        l.heard(1, I1, at(0));
        l.promise_to(1, at(0));
        assert_eq!(l.may_exclude(1, at(10)), Some(Exclusion::Silent));
    }
}
