//! Issue 8, "disk loss of one replica": a replica whose data directory holds no state asks
//! the other replicas, before it sends anything to them or serves a client, whether the
//! cluster has run with it before. If one says so, the directory was lost, wiped or replaced,
//! and starting would forget every promise and acknowledgement of the replica's earlier
//! lives (it would vote and accept again as a brand-new member): start-up is refused.
//!
//! # The rule
//!
//! Measured on real processes (three fresh `chat-server`s, `chat-admin status --json`): a
//! fresh cluster reports view 0 and commit 0 until every replica is up, then view 0, commit 1
//! and last index 1 (the first primary's no-op), and stays there while idle. A replica that
//! starts more than one promise (about 1.3 s) after the two others is left out by them
//! (silent since their start), so they report view 256 (ballot 1 of replica 0), commit 2,
//! and members without it — although it never ran. So "view > 0 or commit > 0" would refuse
//! a replica started late on the cluster's first run (three terminals). A peer's status
//! shows the cluster ran *before* this start when:
//!
//! 1. its view is the initial view 0 and its commit is above 0: in view 0 an entry commits
//!    only once every configured replica, this one included, holds it durably — an earlier
//!    life of this replica acknowledged it;
//! 2. its view is above 0, established and has this replica as a member: every member of an
//!    established view accepted it, this one included;
//! 3. it committed more entries than view changes alone make: every established view and the
//!    first primary append one no-op, so more than `1 + number(view)` committed entries means
//!    clients were served (an account, a session, a message).
//!
//! Residual risks (README, "Troubleshooting"): a wiped replica started while no other replica
//! answers, or while the others have left it out of their view and have served no client
//! since the cluster's first start, is not detected; and a replica started for the first time
//! after the others have served clients without it is refused like a wiped one (the two
//! cannot be told apart from the status): `chat-server --rejoin` brings either in.
//!
//! `--rejoin` starts on the empty directory from [`Durable::lost`]: the replica knows no
//! view, its answers count for nothing, and the primary adds it back once it holds the
//! whole log (rule 7).

use super::ServerError;
use crate::client;
use crate::tls::ClientTls;
use chat_core::config::{Config, ReplicaAddr};
use chat_core::ids::ReplicaId;
use chat_core::replica::view::{number, Durable};
use chat_core::replica::Status;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::info;

/// How long each peer has to answer (asked all at once, once each).
pub(super) const ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// What a peer said that shows the cluster ran with this replica before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RanBefore {
    pub peer: ReplicaId,
    pub view: u64,
    pub commit: u64,
}

/// Asks every other replica of `config` for its status (once each, in parallel, at most
/// `timeout`) and returns the first answer by which the cluster has run before (see the
/// module documentation), if any. Replicas that do not answer count as fresh.
pub(super) fn ask_peers(config: &Config, me: ReplicaId, timeout: Duration) -> Option<RanBefore> {
    let tls = match client::client_tls(config) {
        Ok(tls) => tls,
        // The server itself fails on the same files a moment later, with the reason.
        Err(_) => return None,
    };
    let max_frame = config.net.max_frame_bytes;
    let peers: Vec<&ReplicaAddr> = config.replicas.iter().filter(|r| r.id != me).collect();
    let answers: Vec<Status> = std::thread::scope(|scope| {
        let asks: Vec<_> = peers
            .iter()
            .map(|r| scope.spawn(|| ask(r, max_frame, tls.as_ref(), timeout)))
            .collect();
        asks.into_iter()
            .filter_map(|ask| ask.join().ok().flatten())
            .collect()
    });
    let answered = answers.len();
    let found = answers
        .into_iter()
        .filter(|s| ran_before(s, me))
        .max_by_key(|s| (s.view, s.commit))
        .map(|s| RanBefore {
            peer: s.id,
            view: s.view,
            commit: s.commit,
        });
    if found.is_none() {
        info!(
            "empty data directory: no other replica shows that the cluster ran with this one \
             before ({answered} of {} answered): starting as a new member",
            peers.len()
        );
    }
    found
}

fn ask(
    replica: &ReplicaAddr,
    max_frame: u32,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> Option<Status> {
    client::status(replica, max_frame, tls, timeout).ok()
}

/// Whether `peer`'s status shows that the cluster has run with replica `me` before (the
/// module documentation's three cases).
pub fn ran_before(peer: &Status, me: ReplicaId) -> bool {
    if peer.view == 0 {
        return peer.commit > 0;
    }
    (peer.established && peer.members.contains(&me)) || peer.commit > 1 + number(peer.view)
}

/// `--rejoin` applies only to an empty directory (a directory with state would lose it:
/// move it away first), and only in a cluster with other replicas to take the state from.
pub(super) fn check_rejoin(
    config: &Config,
    dir: &Path,
    holds_no_state: bool,
) -> Result<(), ServerError> {
    if !holds_no_state {
        return Err(ServerError::Rejoin(format!(
            "--rejoin is for a replica whose data directory was lost, but {} holds this \
             replica's state: start it without --rejoin (to rebuild it from the others, move \
             the directory away first)",
            dir.display()
        )));
    }
    if config.replicas.len() < 2 {
        return Err(ServerError::Rejoin(
            "--rejoin takes the state from the other replicas, and the configuration has no \
             other replica"
                .into(),
        ));
    }
    Ok(())
}

/// The durable state a `--rejoin` start begins from: it knows no view, and its incarnation
/// counter (the counters of its earlier lives were lost with the disk, and peers ignore
/// messages from an incarnation below one they heard) is the wall clock in microseconds,
/// far above any count of restarts.
pub(super) fn lost_state() -> Durable {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    Durable::lost(micros.max(1 << 40))
}

/// The refusal, one line.
pub(super) fn refusal(dir: &Path, found: &RanBefore) -> String {
    format!(
        "data directory {} is empty, but replica {} reports view {} and log index {}: this \
         replica's disk was lost or replaced, and it must not rejoin as if it remembered its \
         promises. To bring it back with no state, start it with --rejoin (README, \
         \"Troubleshooting\").",
        dir.display(),
        found.peer,
        found.view,
        found.commit
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_core::replica::Role;

    fn status(view: u64, commit: u64, members: &[ReplicaId], established: bool) -> Status {
        Status {
            id: 0,
            role: Role::Primary,
            view,
            primary: Some(0),
            commit,
            last_index: commit,
            log_start: 1,
            members: members.to_vec(),
            established,
            rejoining: false,
            leases: vec![],
            waiting_for: vec![],
        }
    }

    #[test]
    fn a_fresh_cluster_and_one_that_left_out_a_late_first_start_have_not_run() {
        // Waiting for this replica in the first view; then the first no-op committed... only
        // with this replica, so that one has run.
        assert!(!ran_before(&status(0, 0, &[0, 1, 2], true), 2));
        assert!(ran_before(&status(0, 1, &[0, 1, 2], true), 2));
        // Replica 2 started late: 0 and 1 left it out (ballot 1) and committed two no-ops.
        assert!(!ran_before(&status(256, 2, &[0, 1], true), 2));
        // A proposal that names replica 2 but which it has not accepted.
        assert!(!ran_before(&status(256, 2, &[0, 2], false), 2));
    }

    #[test]
    fn an_established_view_with_this_replica_or_served_clients_show_it_ran() {
        assert!(ran_before(&status(256, 2, &[0, 1, 2], true), 2));
        // An account created, then replica 2 left out.
        assert!(ran_before(&status(256, 4, &[0, 1], true), 2));
        assert!(!ran_before(&status(3 << 8, 4, &[0, 1], true), 2));
        assert!(ran_before(&status(3 << 8, 5, &[0, 1], true), 2));
    }
}
