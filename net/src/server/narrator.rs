//! What an operator reads in the log about the protocol, derived in the driver from what
//! passes through it (peer messages in and out, refused connects, the replica's status after
//! each turn), so that the core stays free of logging:
//! - every change of role or view, at info, with its reason ("no message from primary 0 for
//!   1200 ms; its peer port refuses connections (process down)");
//! - every catch-up: entries received while behind the primary's commit point, or a snapshot
//!   transfer, with what was transferred and how long it took;
//! - the matching metrics (view changes by reason, commits, replication lag per backup).

use super::metrics::{Metrics, PeerLabel, ReasonLabel};
use chat_core::ids::{OpIndex, ReplicaId, View};
use chat_core::replica::{Body, PeerMessage, Role, Status};
use chat_core::time::{Duration, Instant};
use std::collections::{BTreeMap, BTreeSet};
use tracing::{debug, info};

/// A catch-up shorter than this many entries is ordinary replication, logged at debug only.
const CATCH_UP_ENTRIES: u64 = 64;

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

#[derive(Debug)]
pub(super) struct Narrator {
    me: ReplicaId,
    majority: usize,
    election_timeout: Duration,
    pub(super) metrics: Metrics,
    /// Role, view and primary as last logged.
    logged: (Role, View, Option<ReplicaId>),
    commit: OpIndex,
    /// When each peer was last heard from, and when its peer port last refused us.
    heard: BTreeMap<ReplicaId, Instant>,
    refused: BTreeMap<ReplicaId, Instant>,
    /// Who sent the latest message of a view higher than ours.
    higher_view_from: Option<(ReplicaId, View)>,
    /// Granted votes received in our current candidacy.
    votes: BTreeSet<ReplicaId>,
    /// The highest commit number the primary has told us of.
    primary_commit: OpIndex,
    catch_up: Option<CatchUp>,
    snapshot_in: Option<Incoming>,
    /// Snapshots being sent to backups: since when, how big, up to which index.
    snapshots_out: BTreeMap<ReplicaId, (Instant, u64, OpIndex)>,
    /// On the primary: the highest index each backup acknowledged.
    acked: BTreeMap<ReplicaId, OpIndex>,
    /// A replica that cannot win an election retries every election timeout: the reason is
    /// logged at info once every `RETRY_LOG_EVERY` (when it was, and how many retries since),
    /// the other retries at debug.
    retries: Option<(Instant, u32)>,
}

/// How often a replica that keeps failing to win an election says so at info.
const RETRY_LOG_EVERY: Duration = Duration::from_secs(5);

impl Narrator {
    pub(super) fn new(
        status: &Status,
        replicas: usize,
        election_timeout: Duration,
        metrics: Metrics,
    ) -> Narrator {
        metrics.view.set(status.view as i64);
        metrics.commit_index.set(status.commit as i64);
        // A replica may start as primary (the first view's primary, or a view of one).
        metrics
            .is_primary
            .set(i64::from(status.role == Role::Primary));
        Narrator {
            me: status.id,
            majority: replicas / 2 + 1,
            election_timeout,
            metrics,
            logged: (status.role, status.view, status.primary),
            commit: status.commit,
            heard: BTreeMap::new(),
            refused: BTreeMap::new(),
            higher_view_from: None,
            votes: BTreeSet::new(),
            primary_commit: 0,
            catch_up: None,
            snapshot_in: None,
            snapshots_out: BTreeMap::new(),
            acked: BTreeMap::new(),
            retries: None,
        }
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
        if let Some(view) = message.view().filter(|&v| v > status.view) {
            self.higher_view_from = Some((from, view));
        }
        match &message.body {
            Body::Append {
                entries, commit, ..
            } => {
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
            Body::Promise {
                ballot, granted, ..
            } if *granted && *ballot == status.view => {
                self.votes.insert(from);
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
            Body::SnapshotReply {
                last_index, offset, ..
            } => {
                if let Some((since, bytes, index)) = self.snapshots_out.get(&from).copied() {
                    if *offset == bytes && *last_index == index {
                        self.snapshots_out.remove(&from);
                        info!(
                            "replica {from} installed our snapshot up to index {index}: {bytes} \
                             bytes in {} ms",
                            ms(now, since)
                        );
                    }
                }
            }
            _ => {}
        }
    }

    /// A message the replica sends to `to`.
    pub(super) fn on_send(&mut self, now: Instant, to: ReplicaId, message: &PeerMessage) {
        if let Body::SnapshotChunk {
            meta,
            offset: 0,
            total_len,
            ..
        } = &message.body
        {
            // A chunk at offset 0 starts a transfer, or restarts it with a newer snapshot.
            let index = meta.last_index;
            if self.snapshots_out.get(&to).is_none_or(|s| s.2 != index) {
                info!(
                    "replica {to} is behind the start of our log: sending it a snapshot up to \
                     index {index} ({total_len} bytes)"
                );
                self.snapshots_out.insert(to, (now, *total_len, index));
            }
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
        let current = (status.role, status.view, status.primary);
        if current != self.logged {
            self.role_changed(now, status);
            self.logged = current;
        }
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

    fn role_changed(&mut self, now: Instant, status: &Status) {
        let (was, old_view, old_primary) = self.logged;
        let (reason, text) = match status.role {
            Role::Candidate => self.why_election(now, was, old_view, old_primary),
            Role::Primary => (
                "elected",
                format!(
                    "elected primary of view {} with the votes of replicas {}",
                    status.view,
                    list(self.votes.iter().chain([&self.me]))
                ),
            ),
            Role::Backup => self.why_backup(was, old_view, status),
        };
        if status.view != old_view {
            self.metrics
                .view_changes
                .get_or_create(&ReasonLabel { reason })
                .inc();
            self.metrics.view.set(status.view as i64);
        }
        self.metrics
            .is_primary
            .set(i64::from(status.role == Role::Primary));
        if status.role != Role::Primary {
            self.acked.clear();
            self.snapshots_out.clear();
            self.metrics.replication_lag.clear();
        }
        if status.role == Role::Candidate && (was != Role::Candidate || status.view != old_view) {
            self.votes.clear();
        }
        if reason != "election_timeout" {
            self.retries = None;
            info!("{text}");
            return;
        }
        match &mut self.retries {
            Some((since, count)) if now.saturating_sub(*since) < RETRY_LOG_EVERY => {
                *count += 1;
                debug!("{text}");
            }
            retries => {
                let quiet = retries.map_or(0, |(_, count)| count);
                *retries = Some((now, 0));
                if quiet > 0 {
                    info!(
                        "{text} ({quiet} more tries in the last {} s)",
                        RETRY_LOG_EVERY.as_secs()
                    );
                } else {
                    info!("{text}");
                }
            }
        }
    }

    /// Why this replica started an election: the reason label and the log line.
    fn why_election(
        &self,
        now: Instant,
        was: Role,
        old_view: View,
        old_primary: Option<ReplicaId>,
    ) -> (&'static str, String) {
        let next = old_view + 1;
        match (was, old_primary) {
            (Role::Primary, _) => {
                let heard = self.heard_within(now, self.election_timeout);
                (
                    "lost_majority",
                    format!(
                        "stepping down and starting an election for view {next}: heard from \
                         only replicas {} within {} ms (a majority is {})",
                        list(heard.iter().chain([&self.me])),
                        self.election_timeout.as_millis(),
                        self.majority
                    ),
                )
            }
            (Role::Candidate, _) => (
                "election_timeout",
                format!(
                    "the election for view {old_view} got votes from replicas {} (a majority is \
                     {}): trying again in view {next}",
                    list(self.votes.iter().chain([&self.me])),
                    self.majority
                ),
            ),
            (Role::Backup, Some(p)) if p != self.me => {
                let silent = self
                    .heard
                    .get(&p)
                    .map_or("since this replica started".to_owned(), |&at| {
                        format!("for {} ms", ms(now, at))
                    });
                let refused = self
                    .refused
                    .get(&p)
                    .is_some_and(|&r| self.heard.get(&p).is_none_or(|&h| r >= h));
                if refused {
                    (
                        "primary_down",
                        format!(
                            "replica {p} (the primary) refused connections, its process is \
                             down: no message from it {silent}; starting an election for view \
                             {next}"
                        ),
                    )
                } else {
                    (
                        "primary_silent",
                        format!(
                            "no message from primary {p} {silent}: starting an election for \
                             view {next}"
                        ),
                    )
                }
            }
            _ => (
                "no_primary",
                format!("no primary heard from: starting an election for view {next}"),
            ),
        }
    }

    fn why_backup(&self, was: Role, old_view: View, status: &Status) -> (&'static str, String) {
        let view = status.view;
        let cause = match self.higher_view_from {
            Some((from, v)) if v == view && view > old_view => {
                format!("replica {from} moved to view {view}")
            }
            _ => format!("view {view}"),
        };
        let text = match (was, status.primary) {
            (Role::Primary, _) => format!("stepping down as primary: {cause}"),
            (_, Some(p)) if view == old_view => format!("following primary {p} in view {view}"),
            (_, Some(p)) => format!("following primary {p}: {cause}"),
            (_, None) => format!("backup, no primary yet: {cause} (an election is running)"),
        };
        ("higher_view", text)
    }

    fn heard_within(&self, now: Instant, within: Duration) -> Vec<ReplicaId> {
        self.heard
            .iter()
            .filter(|(_, &at)| now.saturating_sub(at) <= within)
            .map(|(&id, _)| id)
            .collect()
    }

    fn check_catch_up(&mut self, now: Instant, status: &Status) {
        if let Some(s) = &self.snapshot_in {
            if status.log_start > s.last_index || status.commit >= s.last_index {
                info!(
                    "installed a snapshot from replica {} up to index {}: {} bytes in {} ms",
                    s.from,
                    s.last_index,
                    s.bytes,
                    ms(now, s.since)
                );
                self.snapshot_in = None;
            }
        }
        if let Some(c) = &self.catch_up {
            if status.last_index >= self.primary_commit {
                let line = format!(
                    "caught up with primary {}: {} entries (index {} to {}) in {} ms",
                    c.from,
                    c.entries,
                    c.start_index + 1,
                    status.last_index,
                    ms(now, c.since)
                );
                if c.entries >= CATCH_UP_ENTRIES {
                    info!("{line}");
                } else {
                    debug!("{line}");
                }
                self.catch_up = None;
            }
        }
    }
}

fn ms(now: Instant, since: Instant) -> u128 {
    now.saturating_sub(since).as_millis()
}

fn list<'a>(ids: impl Iterator<Item = &'a ReplicaId>) -> String {
    let ids: BTreeSet<_> = ids.collect();
    let ids: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    ids.join(", ")
}
