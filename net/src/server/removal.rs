//! `chat-admin remove <id>` on the server side: the signed order is checked here (the cluster
//! secret, this replica's id, the wall clock), then the replica core decides whether it may
//! take the operator's word now ([`Replica::may_remove`]).

use chat_core::ids::ReplicaId;
use chat_core::peer_auth::{ClusterSecret, RemoveOrder};
use chat_core::replica::Replica;
use chat_core::time::Instant;
use std::time::{SystemTime, UNIX_EPOCH};

/// Whether replica `me` takes `order` now; `Err` says why not, in one line.
pub(super) fn check(
    order: &RemoveOrder,
    secret: Option<&ClusterSecret>,
    replica: &Replica,
    me: ReplicaId,
    now: Instant,
) -> Result<(), String> {
    let Some(secret) = secret else {
        return Err(format!(
            "replica {me} has no cluster secret configured: it takes no removal"
        ));
    };
    let unix_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    order
        .verify(secret, me, unix_secs)
        .map_err(|e| format!("replica {me} refuses the order: {e}"))?;
    replica
        .may_remove(now, order.replica)
        .map_err(|e| format!("replica {me} refuses: {e}"))
}
