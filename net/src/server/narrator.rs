//! What an operator reads in the log about the protocol (issue 8's two-crash protocol),
//! derived in the driver from what passes through it (peer messages in and out, refused
//! connects, the replica's status after each turn), so that the core stays free of logging.
//! Views are ballots (`number << 8 | proposer`) and are printed as such. At info, one line per
//! event, with its reason:
//! - this replica proposes a view, and whom it leaves out and why ("proposing view 512
//!   (members 0): leaving out replica 1 (its process crashed: the peer port refused
//!   connections)"); a proposer that keeps failing and retrying the same proposal says so at
//!   most once every 5 s, with how many failed and why the last one did (the rest at debug);
//! - it becomes primary of a view every member accepted, follows a primary, steps down;
//! - it rejoins (restarted, or left out of a view) and is a member again;
//! - everyone went down (rule 8): whom it waits for, once and then every 5 s while it lasts;
//! - catch-ups: entries received while behind the primary's commit point (from 64 entries),
//!   snapshot transfers, with what was transferred and how long it took.
//!
//! Metrics: view changes by reason (the labels in `reason`), commits, the commit index, the view,
//! `is_primary`, and on the primary the replication lag per backup.

use super::metrics::{Metrics, PeerLabel, ReasonLabel};
use chat_core::ids::{OpIndex, ReplicaId, View};
use chat_core::replica::view::{proposer, Exclusion, Incarnation};
use chat_core::replica::{Body, PeerMessage, Role, Status};
use chat_core::time::{Duration, Instant};
use std::collections::{BTreeMap, BTreeSet};
use tracing::{debug, info};

/// A catch-up shorter than this many entries is ordinary replication, logged at debug only.
const CATCH_UP_ENTRIES: u64 = 64;

/// How often a repeated proposal, or the wait for replicas to come back, is logged at info.
const REPEAT_LOG_EVERY: Duration = Duration::from_secs(5);

/// A restarted replica waits for everyone until it hears from them: it says whom it waits for
/// (rule 8) only after this long, longer than a peer's longest reconnect backoff (2 s, in
/// `peers.rs`), so that a primary that is up has spoken by then.
const WAIT_GRACE: Duration = Duration::from_secs(3);

/// The reason labels of the `view_changes` metric.
pub(super) mod reason {
    /// The new view leaves out a member proven crashed (refused connect, newer incarnation).
    pub const MEMBER_CRASHED: &str = "member_crashed";
    /// The new view leaves out a member silent past its lease.
    pub const MEMBER_SILENT: &str = "member_silent";
    /// The new view adds a replica back (rule 7).
    pub const REJOIN: &str = "rejoin";
    /// The same members again: after a failed proposal, or after everyone went down.
    pub const RE_FORM: &str = "re_form";
    /// A higher view that leaves someone out for a reason this replica did not see.
    pub const HIGHER_VIEW: &str = "higher_view";
}

/// Entries received while this backup was behind the primary's commit point.
#[derive(Debug)]
struct CatchUp {
    from: ReplicaId,
    since: Instant,
    start_index: OpIndex,
    entries: u64,
}

/// A snapshot arriving in chunks.
#[derive(Debug)]
struct Incoming {
    from: ReplicaId,
    since: Instant,
    last_index: OpIndex,
    bytes: u64,
}

/// What was last logged of the replica's place in the protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    role: Role,
    view: View,
    primary: Option<ReplicaId>,
    members: Vec<ReplicaId>,
    rejoining: bool,
}

impl Seen {
    fn of(status: &Status) -> Seen {
        Seen {
            role: status.role,
            view: status.view,
            primary: status.primary,
            members: status.members.clone(),
            rejoining: status.rejoining,
        }
    }
}

/// This replica's own proposal, from its first `Prepare` (or from its phase 2, if it asked
/// no one else), until it is established or fails.
#[derive(Debug)]
struct Proposing {
    ballot: View,
    since: Instant,
    announced: bool,
    phase_two: bool,
    /// Whom the `Prepare` (phase 1) or the `Propose` (phase 2) went to, and who answered.
    asked: BTreeSet<ReplicaId>,
    answered: BTreeSet<ReplicaId>,
    /// A replica that refused it, and the higher view it had promised.
    refused_by: Option<(ReplicaId, View)>,
}

/// Rule 8: whom this replica waits for (as last logged), since when, and when it last said so.
#[derive(Debug)]
struct Waiting {
    whom: Vec<ReplicaId>,
    since: Instant,
    said: Option<Instant>,
}

/// Proposals that keep being retried: what was last said at info and when, and what failed
/// since.
#[derive(Debug, Default)]
struct Retries {
    said: Option<(Instant, String)>,
    failed: u32,
    last_failure: String,
}

#[derive(Debug)]
pub(super) struct Narrator {
    me: ReplicaId,
    election_timeout: Duration,
    pub(super) metrics: Metrics,
    seen: Seen,
    /// The last view this replica led or followed as established, and its members.
    settled: (View, Vec<ReplicaId>),
    commit: OpIndex,
    /// When each peer was last heard from, when its peer port last refused us, and when a
    /// newer incarnation of it first spoke (evidence of a crash, rule 4a).
    heard: BTreeMap<ReplicaId, Instant>,
    refused: BTreeMap<ReplicaId, Instant>,
    lives: BTreeMap<ReplicaId, Incarnation>,
    restarted: BTreeMap<ReplicaId, Instant>,
    /// Peers the operator declared gone for good (`chat-admin remove`), until a newer
    /// incarnation of them speaks.
    removed: BTreeSet<ReplicaId>,
    /// Who sent the latest message of a view higher than ours.
    higher_view_from: Option<(ReplicaId, View)>,
    /// The latest established view reported to us that leaves us out.
    left_out_of: Option<View>,
    /// The latest reasons seen for leaving replicas out (in a `Prepare` or `Propose`).
    excluded: Option<(View, Vec<(ReplicaId, Exclusion)>)>,
    proposing: Option<Proposing>,
    retries: Retries,
    /// Rule 8: whom we wait for.
    waiting: Option<Waiting>,
    /// When a replica that is not rejoining (a primary's `Append`, a `Hello` reporting it is
    /// not rejoining) was last heard: then not everyone went down.
    live_peer: Option<Instant>,
    /// The highest commit number the primary has told us of.
    primary_commit: OpIndex,
    catch_up: Option<CatchUp>,
    snapshot_in: Option<Incoming>,
    /// Snapshots being sent to backups: since when, how big, up to which index.
    snapshots_out: BTreeMap<ReplicaId, (Instant, u64, OpIndex)>,
    /// On the primary: the highest index each backup acknowledged.
    acked: BTreeMap<ReplicaId, OpIndex>,
    /// The info lines, for the tests.
    #[cfg(test)]
    said: Vec<String>,
}

impl Narrator {
    /// `_replicas` (the configured count) is not needed by the wording any more.
    pub(super) fn new(status: &Status, election_timeout: Duration, metrics: Metrics) -> Narrator {
        metrics.view.set(status.view as i64);
        metrics.commit_index.set(status.commit as i64);
        // A replica may start as primary (the first view's primary, or a view of one).
        metrics
            .is_primary
            .set(i64::from(status.role == Role::Primary));
        let mut narrator = Narrator {
            me: status.id,
            election_timeout,
            metrics,
            seen: Seen::of(status),
            settled: (status.view, status.members.clone()),
            commit: status.commit,
            heard: BTreeMap::new(),
            refused: BTreeMap::new(),
            lives: BTreeMap::new(),
            restarted: BTreeMap::new(),
            removed: BTreeSet::new(),
            higher_view_from: None,
            left_out_of: None,
            excluded: None,
            proposing: None,
            retries: Retries::default(),
            waiting: None,
            live_peer: None,
            primary_commit: 0,
            catch_up: None,
            snapshot_in: None,
            snapshots_out: BTreeMap::new(),
            acked: BTreeMap::new(),
            #[cfg(test)]
            said: Vec::new(),
        };
        if status.rejoining && status.knows_no_view() {
            narrator.say(
                true,
                "its data directory was lost: rejoining with no state through the primary of \
                 the current view, which adds it back once it holds the whole log"
                    .to_owned(),
            );
        } else if status.rejoining {
            narrator.say(
                true,
                format!(
                    "restarted: rejoining through the primary of the current view (last \
                     accepted view {}, members {})",
                    status.view,
                    list(&status.members)
                ),
            );
        }
        narrator
    }

    /// The operator declared `peer`'s host gone for good, and the replica took it.
    pub(super) fn on_removed(&mut self, peer: ReplicaId) {
        self.removed.insert(peer);
        self.say(
            true,
            format!(
                "the operator removed replica {peer} (chat-admin remove): it counts as crashed"
            ),
        );
    }

    /// A message from peer `from`, before the replica handles it; `status` as it was.
    pub(super) fn on_peer_message(
        &mut self,
        now: Instant,
        from: ReplicaId,
        message: &PeerMessage,
        status: &Status,
    ) {
        self.heard.insert(from, now);
        let life = self.lives.entry(from).or_insert(message.life);
        if message.life > *life {
            *life = message.life;
            self.restarted.insert(from, now);
            // A new process on the removed host: what the operator removed was its last.
            self.removed.remove(&from);
        }
        if let Some(view) = message.view().filter(|&v| v > status.view) {
            self.higher_view_from = Some((from, view));
        }
        if let Body::Hello { report, .. } | Body::Promise { report, .. } = &message.body {
            let established = report.established;
            if established.ballot > status.view && !established.members.contains(self.me) {
                self.left_out_of = Some(established.ballot);
            }
        }
        let ours = |ballot: View| self.proposing.as_ref().is_some_and(|p| p.ballot == ballot);
        match &message.body {
            Body::Append {
                entries, commit, ..
            } => {
                self.live_peer = Some(now);
                self.primary_commit = self.primary_commit.max(*commit);
                if !entries.is_empty() {
                    if let Some(c) = &mut self.catch_up {
                        c.entries += entries.len() as u64;
                    } else if status.last_index + (entries.len() as u64) < *commit {
                        self.catch_up = Some(CatchUp {
                            from,
                            since: now,
                            start_index: status.last_index,
                            entries: entries.len() as u64,
                        });
                    }
                }
            }
            Body::Hello { report, .. } if !report.rejoining => self.live_peer = Some(now),
            Body::Prepare { ballot, excluding } => self.record_excluded(*ballot, excluding),
            Body::Propose { view, excluded, .. } => self.record_excluded(view.ballot, excluded),
            Body::Promise {
                ballot,
                granted,
                report,
            } if ours(*ballot) => {
                let p = self.proposing.as_mut().expect("ours");
                if *granted {
                    p.answered.insert(from);
                } else if report.promised > *ballot {
                    p.refused_by = Some((from, report.promised));
                }
            }
            Body::Accepted { ballot, .. } if ours(*ballot) => {
                let p = self.proposing.as_mut().expect("ours");
                if p.phase_two {
                    p.answered.insert(from);
                }
            }
            Body::SnapshotChunk {
                meta,
                offset: 0,
                total_len,
                ..
            } => {
                self.snapshot_in = Some(Incoming {
                    from,
                    since: now,
                    last_index: meta.last_index,
                    bytes: *total_len,
                });
            }
            Body::AppendReply {
                ok: true, index, ..
            } => {
                let acked = self.acked.entry(from).or_default();
                *acked = (*acked).max(*index);
            }
            Body::AppendReply {
                ok: false, view, ..
            } => {
                // A member fenced by a higher promise.
                if let Some(p) = self.proposing.as_mut().filter(|p| *view > p.ballot) {
                    p.refused_by = Some((from, *view));
                }
            }
            Body::SnapshotReply {
                last_index, offset, ..
            } => {
                if let Some((since, bytes, index)) = self.snapshots_out.get(&from).copied() {
                    if *offset == bytes && *last_index == index {
                        self.snapshots_out.remove(&from);
                        self.say(
                            true,
                            format!(
                                "replica {from} installed our snapshot up to index {index}: \
                                 {bytes} bytes in {} ms",
                                ms(now, since)
                            ),
                        );
                    }
                }
            }
            _ => {}
        }
    }

    /// A message the replica sends to `to`.
    pub(super) fn on_send(&mut self, now: Instant, to: ReplicaId, message: &PeerMessage) {
        match &message.body {
            Body::Prepare { ballot, excluding } => {
                if self.proposing.as_ref().is_some_and(|p| p.ballot > *ballot) {
                    return; // held until a write was durable, and superseded meanwhile
                }
                self.record_excluded(*ballot, excluding);
                if self.proposing.as_ref().is_none_or(|p| p.ballot != *ballot) {
                    // A new ballot while the last one was pending: that one failed.
                    self.proposal_failed(now);
                    self.proposing = Some(Proposing::new(*ballot, now, false));
                }
                let p = self.proposing.as_mut().expect("set above");
                p.asked.insert(to);
            }
            Body::Propose { view, excluded, .. } => {
                self.record_excluded(view.ballot, excluded);
                if let Some(p) = self.proposing.as_mut().filter(|p| p.ballot == view.ballot) {
                    if !p.phase_two {
                        p.phase_two = true;
                        p.asked.clear();
                        p.answered.clear();
                    }
                    p.asked.insert(to);
                }
            }
            Body::SnapshotChunk {
                meta,
                offset: 0,
                total_len,
                ..
            } => {
                // A chunk at offset 0 starts a transfer, or restarts it with a newer snapshot.
                let index = meta.last_index;
                if self.snapshots_out.get(&to).is_none_or(|s| s.2 != index) {
                    self.say(
                        true,
                        format!(
                            "replica {to} is behind the start of our log: sending it a snapshot \
                             up to index {index} ({total_len} bytes)"
                        ),
                    );
                    self.snapshots_out.insert(to, (now, *total_len, index));
                }
            }
            _ => {}
        }
    }

    /// A connect to `to`'s peer port was refused: its process is down.
    pub(super) fn on_refused(&mut self, now: Instant, to: ReplicaId) {
        self.refused.insert(to, now);
    }

    /// After the replica's outputs of a turn: logs what changed, updates the metrics.
    pub(super) fn after_turn(&mut self, now: Instant, status: &Status) {
        if status.commit > self.commit {
            self.metrics.commits.inc_by(status.commit - self.commit);
            self.commit = status.commit;
            self.metrics.commit_index.set(status.commit as i64);
        }
        // A `Prepare` sent this turn (phase 1 leaves the accepted view as it was), unless a
        // higher ballot of ours was accepted in the same turn (it was held for a write, and
        // superseded meanwhile).
        if let Some(p) = self.proposing.as_mut().filter(|p| !p.announced) {
            if p.ballot < status.view {
                self.proposing = None;
            } else {
                p.announced = true;
                let (ballot, asked) = (p.ballot, p.asked.clone());
                self.announce_prepare(now, ballot, &asked, status);
            }
        }
        if Seen::of(status) != self.seen {
            self.changed(now, status);
            self.seen = Seen::of(status);
        }
        self.check_waiting(now, status);
        self.check_catch_up(now, status);
        if status.role == Role::Primary {
            for (&peer, &acked) in &self.acked {
                let lag = status.last_index.saturating_sub(acked);
                self.metrics
                    .replication_lag
                    .get_or_create(&PeerLabel { peer })
                    .set(lag as i64);
            }
        }
    }

    fn changed(&mut self, now: Instant, status: &Status) {
        let old = self.seen.clone();
        let me = self.me;
        let view = status.view;
        let members = list(&status.members);
        let new_view = view != old.view;
        let left: Vec<ReplicaId> = old
            .members
            .iter()
            .filter(|m| !status.members.contains(m))
            .copied()
            .collect();
        let added: Vec<ReplicaId> = status
            .members
            .iter()
            .filter(|m| !old.members.contains(m))
            .copied()
            .collect();
        let reasons = self.exclusions_for(view, &left);
        if new_view {
            // A rejoining replica back in a view (or one that adds a replica back).
            let rejoin = !added.is_empty() || (old.rejoining && status.members.contains(&me));
            let reason = label(&reasons, &left, rejoin);
            self.metrics
                .view_changes
                .get_or_create(&ReasonLabel { reason })
                .inc();
            self.metrics.view.set(view as i64);
        }
        self.metrics
            .is_primary
            .set(i64::from(status.role == Role::Primary));
        if status.role != Role::Primary {
            self.acked.clear();
            self.snapshots_out.clear();
            self.metrics.replication_lag.clear();
        }

        // Our own proposal in phase 2 (the accepted view is now ours).
        if new_view && view > old.view && proposer(view) == me {
            if self.proposing.as_ref().is_none_or(|p| p.ballot != view) {
                // It asked no one else (everyone else it kept was left out): no `Prepare`
                // went out, so it is announced now.
                self.proposal_failed(now);
                let mut p = Proposing::new(view, now, true);
                p.announced = true;
                self.proposing = Some(p);
                let rest = if reasons.is_empty() {
                    format!("to re-form the view (members {members})")
                } else {
                    format!(
                        "(members {members}): leaving out {}",
                        self.why_list(&reasons)
                    )
                };
                self.announce(now, view, rest);
            } else {
                self.say(
                    false,
                    format!(
                        "phase 2 of view {view} (members {members}): waiting for every member \
                         to accept it"
                    ),
                );
            }
        }

        let rejoined = old.rejoining && !status.rejoining;
        if status.rejoining && !old.rejoining {
            let out_of = match self.left_out_of.filter(|&v| v > old.view) {
                Some(v) => format!("view {v}"),
                None if !status.members.contains(&me) => format!("view {view}"),
                None => "a newer view".to_owned(),
            };
            self.say(
                true,
                format!("left out of {out_of}: rejoining through the primary of the current view"),
            );
        }
        let prefix = if rejoined { "rejoined: " } else { "" };
        match (status.role, status.primary) {
            (Role::Primary, _) if old.role != Role::Primary || new_view || rejoined => {
                let note = self.retry_note();
                self.succeeded(status);
                self.say(
                    true,
                    format!(
                        "{prefix}primary of view {view} (members {members}); every member \
                         accepted it{note}"
                    ),
                );
            }
            (Role::Backup, primary) => {
                if old.role == Role::Candidate {
                    self.proposal_failed(now);
                }
                let stepping_down = if old.role == Role::Primary && !status.rejoining {
                    let cause = match self.higher_view_from {
                        Some((from, v)) if v > old.view => {
                            format!(" (a higher view, {v}, from replica {from})")
                        }
                        _ => String::new(),
                    };
                    format!("stepping down as primary of view {}{cause}", old.view)
                } else {
                    String::new()
                };
                match primary {
                    Some(p) if p != me && (old.primary != Some(p) || new_view || rejoined) => {
                        let why = if rejoined {
                            String::new()
                        } else {
                            self.what_changed(status)
                        };
                        let head = if stepping_down.is_empty() {
                            prefix.to_owned()
                        } else {
                            format!("{stepping_down}: ")
                        };
                        self.succeeded(status);
                        self.say(
                            true,
                            format!(
                                "{head}following primary {p} in view {view} (members \
                                 {members}){why}"
                            ),
                        );
                    }
                    _ if !stepping_down.is_empty() => self.say(true, stepping_down),
                    _ if rejoined => self.say(
                        true,
                        format!("rejoined: member of view {view} (members {members})"),
                    ),
                    _ if new_view => self.say(
                        false,
                        format!(
                            "accepted view {view} from replica {} (members {members}), not \
                             established yet",
                            proposer(view)
                        ),
                    ),
                    _ => self.say(false, format!("backup in view {view}, no primary known")),
                }
            }
            _ => {}
        }
    }

    /// Logs the proposal whose `Prepare` went out this turn: what it means to leave out, or
    /// whom to add back, and the members it expects.
    fn announce_prepare(
        &mut self,
        now: Instant,
        ballot: View,
        asked: &BTreeSet<ReplicaId>,
        status: &Status,
    ) {
        let excluding = match &self.excluded {
            Some((b, list)) if *b == ballot => list.clone(),
            _ => Vec::new(),
        };
        let mut members: BTreeSet<ReplicaId> = status.members.iter().copied().collect();
        members.insert(self.me);
        let rest = if excluding.is_empty() {
            let added: Vec<ReplicaId> = asked
                .iter()
                .filter(|m| !members.contains(m))
                .copied()
                .collect();
            members.extend(asked);
            let members = list(&members);
            if status.rejoining {
                format!("to re-form the view after everyone went down (members {members})")
            } else if added.is_empty() {
                format!("to re-form the view (members {members})")
            } else {
                format!("(members {members}): adding back {}", replicas(&added))
            }
        } else {
            for (m, _) in &excluding {
                members.remove(m);
            }
            format!(
                "(members {}): leaving out {}",
                list(&members),
                self.why_list(&excluding)
            )
        };
        self.announce(now, ballot, rest);
    }

    /// A proposal line: at info, unless the same proposal (all but its ballot) was said at
    /// info less than `REPEAT_LOG_EVERY` ago; then at debug, counted.
    fn announce(&mut self, now: Instant, ballot: View, rest: String) {
        let line = format!("proposing view {ballot} {rest}");
        let repeat =
            self.retries.said.as_ref().is_some_and(|(at, said)| {
                *said == rest && now.saturating_sub(*at) < REPEAT_LOG_EVERY
            });
        if repeat {
            self.say(false, line);
        } else {
            let note = self.retry_note();
            self.retries = Retries {
                said: Some((now, rest)),
                ..Retries::default()
            };
            self.say(true, format!("{line}{note}"));
        }
    }

    /// How many proposals failed since the last info line, and why the last one did.
    fn retry_note(&self) -> String {
        match self.retries.failed {
            0 => String::new(),
            1 => format!(" (after a failed proposal: {})", self.retries.last_failure),
            n => format!(
                " (after {n} failed proposals; the last: {})",
                self.retries.last_failure
            ),
        }
    }

    /// Our pending proposal, if any, failed (a new ballot, or we went back to backup).
    /// (One never announced was superseded within its turn: not counted.)
    fn proposal_failed(&mut self, now: Instant) {
        let Some(p) = self.proposing.take().filter(|p| p.announced) else {
            return;
        };
        let why = if let Some((from, promised)) = p.refused_by {
            format!("replica {from} had promised view {promised}")
        } else {
            let missing: Vec<String> = p
                .asked
                .difference(&p.answered)
                .map(|&m| {
                    let refused = self.refused.get(&m).is_some_and(|&r| r >= p.since);
                    if refused {
                        format!("{m} (its peer port refused connections)")
                    } else {
                        m.to_string()
                    }
                })
                .collect();
            let what = if p.phase_two { "acceptance" } else { "promise" };
            match missing.len() {
                0 => "the answers did not allow it".to_owned(),
                1 => format!(
                    "no {what} from replica {} in {} ms",
                    missing[0],
                    ms(now, p.since)
                ),
                _ => format!(
                    "no {what} from replicas {} in {} ms",
                    missing.join(", "),
                    ms(now, p.since)
                ),
            }
        };
        self.say(
            false,
            format!("proposal of view {} failed: {why}", p.ballot),
        );
        self.retries.failed += 1;
        self.retries.last_failure = why;
    }

    /// A view is established with us in it: the retries are over, old evidence is spent.
    fn succeeded(&mut self, status: &Status) {
        self.settled = (status.view, status.members.clone());
        self.proposing = None;
        self.retries = Retries::default();
        self.restarted.retain(|m, _| !status.members.contains(m));
    }

    /// ", which left out replica 0 (why)" or ", which added back replica 2": how the view a
    /// follower now follows differs from the last one it followed or led.
    fn what_changed(&self, status: &Status) -> String {
        let (view, members) = &self.settled;
        if *view == status.view {
            return String::new();
        }
        let left: Vec<ReplicaId> = members
            .iter()
            .filter(|m| !status.members.contains(m))
            .copied()
            .collect();
        let reasons = self.exclusions_for(status.view, &left);
        let added: Vec<ReplicaId> = status
            .members
            .iter()
            .filter(|m| !members.contains(m))
            .copied()
            .collect();
        let mut parts = Vec::new();
        if !reasons.is_empty() {
            parts.push(format!("left out {}", self.why_list(&reasons)));
        }
        if !added.is_empty() {
            parts.push(format!("added back {}", replicas(&added)));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(", which {}", parts.join(" and "))
        }
    }

    fn record_excluded(&mut self, ballot: View, list: &[(ReplicaId, Exclusion)]) {
        if self.excluded.as_ref().is_none_or(|(b, _)| ballot >= *b) {
            self.excluded = Some((ballot, list.to_vec()));
        }
    }

    /// Why each of `left` is out of view `ballot`: as a `Prepare` or `Propose` of that ballot
    /// said, or else as far as this replica saw (a refusal or a newer incarnation, else
    /// silence).
    fn exclusions_for(&self, ballot: View, left: &[ReplicaId]) -> Vec<(ReplicaId, Exclusion)> {
        let said = match &self.excluded {
            Some((b, list)) if *b == ballot => list.as_slice(),
            _ => &[],
        };
        left.iter()
            .map(|&m| match said.iter().find(|(x, _)| *x == m) {
                Some(&found) => found,
                None if self.evidence(m).is_some() => {
                    (m, Exclusion::Crashed(Incarnation::default()))
                }
                None => (m, Exclusion::Silent),
            })
            .collect()
    }

    /// What this replica saw of `m`'s crash: a refusal since it last heard from `m`, or a
    /// newer incarnation of `m`, whichever came last.
    fn evidence(&self, m: ReplicaId) -> Option<&'static str> {
        let refused = self
            .refused
            .get(&m)
            .filter(|&&r| self.heard.get(&m).is_none_or(|&h| r >= h));
        if self.removed.contains(&m) {
            return Some("its host was removed by the operator");
        }
        match (refused, self.restarted.get(&m)) {
            (Some(r), Some(s)) if s > r => Some("its process restarted: a newer incarnation spoke"),
            (Some(_), _) => Some("its process crashed: the peer port refused connections"),
            (None, Some(_)) => Some("its process restarted: a newer incarnation spoke"),
            (None, None) => None,
        }
    }

    /// "replica 1 (why) and replica 2 (why)".
    fn why_list(&self, reasons: &[(ReplicaId, Exclusion)]) -> String {
        let parts: Vec<String> = reasons
            .iter()
            .map(|&(m, why)| {
                let text = match why {
                    Exclusion::Crashed(_) => self.evidence(m).unwrap_or("its process crashed"),
                    Exclusion::Silent => "silent past its lease",
                };
                format!("replica {m} ({text})")
            })
            .collect();
        match parts.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
            _ => parts.join(""),
        }
    }

    /// Rule 8: whom a replica that found no primary waits for, once it has waited
    /// `WAIT_GRACE`, then when it changes and every `REPEAT_LOG_EVERY` while it lasts. While a replica that
    /// is not rejoining is heard, a primary is up and this is a rejoin: debug.
    fn check_waiting(&mut self, now: Instant, status: &Status) {
        if status.waiting_for.is_empty() {
            if self.waiting.take().is_some() {
                self.say(false, "no longer waiting for other replicas".to_owned());
            }
            return;
        }
        let w = self.waiting.get_or_insert_with(|| Waiting {
            whom: Vec::new(),
            since: now,
            said: None,
        });
        let due = now.saturating_sub(w.since) >= WAIT_GRACE
            && (w.whom != status.waiting_for
                || w.said
                    .is_none_or(|at| now.saturating_sub(at) >= REPEAT_LOG_EVERY));
        if !due {
            return;
        }
        w.whom = status.waiting_for.clone();
        w.said = Some(now);
        let whom = replicas(&status.waiting_for);
        let someone_up = self
            .live_peer
            .is_some_and(|at| now.saturating_sub(at) <= self.election_timeout);
        if someone_up {
            self.say(false, format!("rejoining: {whom} not back yet"));
        } else {
            self.say(
                true,
                format!(
                    "everyone went down: waiting for {whom} (members of the last established \
                     view) before the view is formed again"
                ),
            );
        }
    }

    fn check_catch_up(&mut self, now: Instant, status: &Status) {
        if let Some(s) = self.snapshot_in.take() {
            if status.log_start > s.last_index || status.commit >= s.last_index {
                self.say(
                    true,
                    format!(
                        "installed a snapshot from replica {} up to index {}: {} bytes in {} ms",
                        s.from,
                        s.last_index,
                        s.bytes,
                        ms(now, s.since)
                    ),
                );
            } else {
                self.snapshot_in = Some(s);
            }
        }
        if let Some(c) = self.catch_up.take() {
            if status.last_index >= self.primary_commit {
                let line = format!(
                    "caught up with primary {}: {} entries (index {} to {}) in {} ms",
                    c.from,
                    c.entries,
                    c.start_index + 1,
                    status.last_index,
                    ms(now, c.since)
                );
                self.say(c.entries >= CATCH_UP_ENTRIES, line);
            } else {
                self.catch_up = Some(c);
            }
        }
    }

    /// Logs a line at info (else debug).
    fn say(&mut self, at_info: bool, line: String) {
        if at_info {
            info!("{line}");
            #[cfg(test)]
            self.said.push(line);
        } else {
            debug!("{line}");
        }
    }
}

impl Proposing {
    fn new(ballot: View, since: Instant, phase_two: bool) -> Proposing {
        Proposing {
            ballot,
            since,
            announced: false,
            phase_two,
            asked: BTreeSet::new(),
            answered: BTreeSet::new(),
            refused_by: None,
        }
    }
}

/// The `view_changes` label of a new view: whom it leaves out and why, or whether it brings a
/// replica back.
fn label(reasons: &[(ReplicaId, Exclusion)], left: &[ReplicaId], rejoin: bool) -> &'static str {
    if reasons
        .iter()
        .any(|(_, why)| matches!(why, Exclusion::Crashed(_)))
    {
        reason::MEMBER_CRASHED
    } else if !reasons.is_empty() {
        reason::MEMBER_SILENT
    } else if rejoin {
        reason::REJOIN
    } else if left.is_empty() {
        reason::RE_FORM
    } else {
        reason::HIGHER_VIEW
    }
}

fn ms(now: Instant, since: Instant) -> u128 {
    now.saturating_sub(since).as_millis()
}

/// "0, 1, 2"
fn list<'a>(ids: impl IntoIterator<Item = &'a ReplicaId>) -> String {
    let ids: BTreeSet<_> = ids.into_iter().collect();
    let ids: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    ids.join(", ")
}

/// "replica 1" or "replicas 0, 2"
fn replicas(ids: &[ReplicaId]) -> String {
    match ids {
        [one] => format!("replica {one}"),
        _ => format!("replicas {}", list(ids)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_core::replica::view::{Members, ViewDef};
    use chat_core::replica::Report;

    const SECOND: u64 = 1_000_000;

    fn at(micros: u64) -> Instant {
        Instant(micros)
    }

    fn status(id: ReplicaId, role: Role, view: View, members: &[ReplicaId]) -> Status {
        Status {
            id,
            role,
            view,
            primary: match role {
                Role::Primary => Some(id),
                _ => None,
            },
            commit: 0,
            last_index: 0,
            log_start: 1,
            members: members.to_vec(),
            established: role != Role::Candidate,
            rejoining: false,
            leases: Vec::new(),
            waiting_for: Vec::new(),
        }
    }

    fn following(id: ReplicaId, primary: ReplicaId, view: View, members: &[ReplicaId]) -> Status {
        Status {
            primary: Some(primary),
            ..status(id, Role::Backup, view, members)
        }
    }

    fn narrator(status: &Status) -> Narrator {
        Narrator::new(status, Duration::from_millis(1000), Metrics::default())
    }

    fn message(counter: u64, body: Body) -> PeerMessage {
        PeerMessage {
            life: Incarnation { counter, id: 7 },
            body,
        }
    }

    fn report(promised: View, rejoining: bool) -> Report {
        let view = ViewDef::initial(3);
        Report {
            promised,
            accepted: view,
            vote: false,
            established: view,
            rejoining,
            quiet: false,
            log_end: 0,
        }
    }

    fn prepare(ballot: View, excluding: Vec<(ReplicaId, Exclusion)>) -> PeerMessage {
        message(1, Body::Prepare { ballot, excluding })
    }

    fn changes(n: &Narrator, reason: &'static str) -> u64 {
        n.metrics
            .view_changes
            .get_or_create(&ReasonLabel { reason })
            .get()
    }

    #[test]
    fn both_backups_crash_and_the_primary_carries_on_alone() {
        // Phase 1 asks no one (both left out as crashed): no `Prepare` goes out.
        let mut n = narrator(&status(0, Role::Primary, 0, &[0, 1, 2]));
        n.on_refused(at(SECOND), 1);
        n.on_refused(at(SECOND), 2);
        n.after_turn(at(SECOND), &status(0, Role::Candidate, 0, &[0, 1, 2]));
        n.after_turn(at(SECOND + 2), &status(0, Role::Candidate, 512, &[0]));
        n.after_turn(at(SECOND + 4), &status(0, Role::Primary, 512, &[0]));
        assert_eq!(
            n.said,
            [
                "proposing view 512 (members 0): leaving out replica 1 (its process crashed: \
                 the peer port refused connections) and replica 2 (its process crashed: the \
                 peer port refused connections)",
                "primary of view 512 (members 0); every member accepted it",
            ]
        );
        assert_eq!(changes(&n, reason::MEMBER_CRASHED), 1);
        assert_eq!(n.metrics.is_primary.get(), 1);
    }

    #[test]
    fn a_prepare_superseded_while_held_is_not_announced() {
        // Replica 1's crash, then replica 2's: the `Prepare` leaving out 1 goes out only
        // once view 512, which leaves out both and asks no one, is accepted.
        let mut n = narrator(&status(0, Role::Primary, 0, &[0, 1, 2]));
        n.on_refused(at(SECOND), 1);
        n.after_turn(at(SECOND), &status(0, Role::Candidate, 0, &[0, 1, 2]));
        n.on_refused(at(SECOND), 2);
        n.after_turn(at(SECOND), &status(0, Role::Candidate, 0, &[0, 1, 2]));
        let excluding = vec![(1, Exclusion::Crashed(Incarnation::default()))];
        n.on_send(at(SECOND + 1), 2, &prepare(256, excluding));
        n.after_turn(at(SECOND + 1), &status(0, Role::Candidate, 512, &[0]));
        n.after_turn(at(SECOND + 2), &status(0, Role::Primary, 512, &[0]));
        assert_eq!(n.said.len(), 2);
        assert!(n.said[0].starts_with("proposing view 512 (members 0): leaving out replica 1"));
        assert_eq!(
            n.said[1],
            "primary of view 512 (members 0); every member accepted it"
        );
    }

    #[test]
    fn a_silent_member_is_left_out_in_two_phases() {
        let mut n = narrator(&status(0, Role::Primary, 0, &[0, 1, 2]));
        n.after_turn(at(SECOND), &status(0, Role::Candidate, 0, &[0, 1, 2]));
        n.on_send(at(SECOND), 1, &prepare(512, vec![(2, Exclusion::Silent)]));
        n.after_turn(at(SECOND), &status(0, Role::Candidate, 0, &[0, 1, 2]));
        let promise = Body::Promise {
            ballot: 512,
            granted: true,
            report: report(512, false),
        };
        let s = status(0, Role::Candidate, 0, &[0, 1, 2]);
        n.on_peer_message(at(SECOND + 1), 1, &message(1, promise), &s);
        n.after_turn(at(SECOND + 2), &status(0, Role::Candidate, 512, &[0, 1]));
        n.after_turn(at(SECOND + 4), &status(0, Role::Primary, 512, &[0, 1]));
        assert_eq!(
            n.said,
            [
                "proposing view 512 (members 0, 1): leaving out replica 2 (silent past its lease)",
                "primary of view 512 (members 0, 1); every member accepted it",
            ]
        );
        assert_eq!(changes(&n, reason::MEMBER_SILENT), 1);
    }

    #[test]
    fn a_failing_proposal_is_said_once_every_five_seconds() {
        let mut n = narrator(&following(0, 1, 1, &[0, 1, 2]));
        let mut ballot = 512;
        for step in 0..8u64 {
            let now = at(SECOND + step * 800_000);
            n.on_send(now, 2, &prepare(ballot, vec![(1, Exclusion::Silent)]));
            n.after_turn(now, &status(0, Role::Candidate, 1, &[0, 1, 2]));
            let refusal = Body::Promise {
                ballot,
                granted: false,
                report: report(ballot + 1, false),
            };
            let s = status(0, Role::Candidate, 1, &[0, 1, 2]);
            n.on_peer_message(now, 2, &message(1, refusal), &s);
            n.after_turn(now, &status(0, Role::Backup, 1, &[0, 1, 2]));
            ballot += 256;
        }
        assert_eq!(
            n.said,
            [
                "proposing view 512 (members 0, 2): leaving out replica 1 (silent past its lease)",
                "proposing view 2304 (members 0, 2): leaving out replica 1 (silent past its \
                 lease) (after 7 failed proposals; the last: replica 2 had promised view 2049)",
            ]
        );
    }

    #[test]
    fn a_backup_follows_the_new_primary_and_says_who_was_left_out() {
        let mut n = narrator(&following(2, 0, 0, &[0, 1, 2]));
        n.on_refused(at(SECOND), 0);
        let propose = Body::Propose {
            view: ViewDef {
                ballot: 769,
                members: Members(0b110),
            },
            base: 0,
            voters: Vec::new(),
            excluded: vec![(0, Exclusion::Crashed(Incarnation::default()))],
            log_end: 0,
            log_end_view: 0,
            sent_at: at(SECOND),
        };
        let s = following(2, 0, 0, &[0, 1, 2]);
        n.on_peer_message(at(SECOND + 1), 1, &message(1, propose), &s);
        n.after_turn(at(SECOND + 2), &status(2, Role::Backup, 769, &[1, 2]));
        n.after_turn(at(SECOND + 3), &following(2, 1, 769, &[1, 2]));
        assert_eq!(
            n.said,
            [
                "following primary 1 in view 769 (members 1, 2), which left out replica 0 (its \
              process crashed: the peer port refused connections)"
            ]
        );
        assert_eq!(changes(&n, reason::MEMBER_CRASHED), 1);
    }

    #[test]
    fn a_primary_steps_down_for_a_higher_view() {
        let mut n = narrator(&status(0, Role::Primary, 512, &[0, 1]));
        let s = status(0, Role::Primary, 512, &[0, 1]);
        n.on_peer_message(at(SECOND), 1, &prepare(769, Vec::new()), &s);
        n.after_turn(at(SECOND), &status(0, Role::Backup, 512, &[0, 1]));
        assert_eq!(
            n.said,
            ["stepping down as primary of view 512 (a higher view, 769, from replica 1)"]
        );
        assert_eq!(n.metrics.is_primary.get(), 0);
    }

    #[test]
    fn a_restarted_replica_rejoins_through_the_primary() {
        let mut restarted = status(2, Role::Backup, 512, &[0, 1, 2]);
        restarted.rejoining = true;
        let mut n = narrator(&restarted);
        let s = restarted.clone();
        n.on_peer_message(at(SECOND), 0, &prepare(768, Vec::new()), &s);
        let mut accepted = status(2, Role::Backup, 768, &[0, 1, 2]);
        accepted.rejoining = true;
        n.after_turn(at(SECOND), &accepted);
        n.after_turn(at(SECOND + 1), &following(2, 0, 768, &[0, 1, 2]));
        assert_eq!(
            n.said,
            [
                "restarted: rejoining through the primary of the current view (last accepted \
                 view 512, members 0, 1, 2)",
                "rejoined: following primary 0 in view 768 (members 0, 1, 2)",
            ]
        );
    }

    #[test]
    fn a_replica_started_with_rejoin_says_it_has_no_state() {
        let mut lost = status(2, Role::Backup, 0, &[]);
        lost.rejoining = true;
        let n = narrator(&lost);
        assert_eq!(
            n.said,
            [
                "its data directory was lost: rejoining with no state through the primary of the \
              current view, which adds it back once it holds the whole log"
            ]
        );
    }

    #[test]
    fn the_primary_adds_back_a_rejoining_replica() {
        let mut n = narrator(&status(0, Role::Primary, 512, &[0, 1]));
        n.after_turn(at(SECOND), &status(0, Role::Candidate, 512, &[0, 1]));
        n.on_send(at(SECOND), 1, &prepare(768, Vec::new()));
        n.on_send(at(SECOND), 2, &prepare(768, Vec::new()));
        n.after_turn(at(SECOND), &status(0, Role::Candidate, 512, &[0, 1]));
        n.after_turn(at(SECOND + 2), &status(0, Role::Candidate, 768, &[0, 1, 2]));
        n.after_turn(at(SECOND + 3), &status(0, Role::Primary, 768, &[0, 1, 2]));
        assert_eq!(
            n.said,
            [
                "proposing view 768 (members 0, 1, 2): adding back replica 2",
                "primary of view 768 (members 0, 1, 2); every member accepted it",
            ]
        );
        assert_eq!(changes(&n, reason::REJOIN), 1);
    }

    #[test]
    fn a_replica_left_out_learns_it_and_rejoins() {
        let mut n = narrator(&following(2, 0, 0, &[0, 1, 2]));
        let mut report = report(512, false);
        report.established = ViewDef {
            ballot: 512,
            members: Members(0b011),
        };
        let hello = Body::Hello {
            report,
            answer: false,
        };
        let s = following(2, 0, 0, &[0, 1, 2]);
        n.on_peer_message(at(SECOND), 0, &message(1, hello), &s);
        let mut left_out = status(2, Role::Backup, 0, &[0, 1, 2]);
        left_out.rejoining = true;
        n.after_turn(at(SECOND), &left_out);
        let mut accepted = status(2, Role::Backup, 768, &[0, 1, 2]);
        accepted.rejoining = true;
        n.after_turn(at(2 * SECOND), &accepted);
        n.after_turn(at(2 * SECOND), &following(2, 0, 768, &[0, 1, 2]));
        assert_eq!(
            n.said,
            [
                "left out of view 512: rejoining through the primary of the current view",
                "rejoined: following primary 0 in view 768 (members 0, 1, 2)",
            ]
        );
        assert_eq!(changes(&n, reason::REJOIN), 1);
    }

    #[test]
    fn everyone_down_says_whom_it_waits_for_every_five_seconds() {
        let mut waiting = status(1, Role::Backup, 512, &[0, 1, 2]);
        waiting.rejoining = true;
        waiting.waiting_for = vec![0, 2];
        let mut n = narrator(&waiting);
        n.said.clear();
        for step in 0..17u64 {
            n.after_turn(at(step * SECOND / 2), &waiting);
        }
        waiting.waiting_for = vec![2];
        n.after_turn(at(8_100_000), &waiting);
        let line = |whom: &str| {
            format!(
                "everyone went down: waiting for {whom} (members of the last established \
                 view) before the view is formed again"
            )
        };
        assert_eq!(
            n.said,
            [
                line("replicas 0, 2"),
                line("replicas 0, 2"),
                line("replica 2")
            ]
        );
        // A primary answers: only the rejoin's first moments, at debug.
        n.said.clear();
        let hello = Body::Hello {
            report: report(512, false),
            answer: false,
        };
        n.on_peer_message(at(20 * SECOND), 0, &message(1, hello), &waiting);
        n.after_turn(at(20 * SECOND), &waiting);
        assert!(n.said.is_empty());
    }
}
