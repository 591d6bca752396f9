//! The scripting API for named scenarios: run for a while, crash, restart, corrupt,
//! partition, heal, and look at the replicas.

use super::{Crash, Sim, Stats};
use crate::checker::Failure;
use crate::network::Node;
use chat_core::durable::Entry;
use chat_core::ids::{OpIndex, ReplicaId};
use chat_core::replica::{Replica, Role, Status};
use chat_core::time::{Duration, Instant};

impl Sim {
    pub fn now(&self) -> Instant {
        self.now
    }

    pub fn run_for(&mut self, d: Duration) -> Result<(), Failure> {
        self.run_until(self.now + d)
    }

    /// Runs until `done` holds (checked every millisecond) or `limit` passes; returns
    /// whether it held.
    pub fn wait_for(
        &mut self,
        limit: Duration,
        done: impl Fn(&Sim) -> bool,
    ) -> Result<bool, Failure> {
        let end = self.now + limit;
        while !done(self) {
            if self.now >= end {
                return Ok(false);
            }
            self.run_until(self.now + Duration::from_millis(1))?;
        }
        Ok(true)
    }

    /// Kills replica `r`'s process (kill -9); its host stays up and refuses every connection
    /// to its ports. Its unsynced writes are lost.
    pub fn crash(&mut self, r: ReplicaId) {
        self.crash_replica(r, false, Crash::Process);
    }

    /// Kills replica `r`'s process, leaving a random prefix of its unsynced log bytes on disk.
    pub fn crash_torn(&mut self, r: ReplicaId) {
        self.crash_replica(r, true, Crash::Process);
    }

    /// Replica `r`'s host crashes (or freezes for good): silence, no refusals, until
    /// [`Sim::restart`]. Its unsynced writes are lost.
    pub fn crash_host(&mut self, r: ReplicaId) {
        self.crash_replica(r, false, Crash::Host);
    }

    /// Stops replica `r`'s process for `d` (SIGSTOP, then SIGCONT): it handles nothing and
    /// its timers wait; what reaches it waits too; its clock runs on.
    pub fn pause(&mut self, r: ReplicaId, d: Duration) {
        self.pause_replica(r, d);
    }

    pub fn restart(&mut self, r: ReplicaId) -> Result<(), Failure> {
        self.start_replica(r)
    }

    /// Flips a byte in a synced record (not the last) of the down replica `r`; returns
    /// whether its log had enough records.
    pub fn corrupt(&mut self, r: ReplicaId) -> bool {
        assert!(
            !self.is_up(r),
            "corrupt a disk only while its replica is down"
        );
        self.corrupt_disk(r)
    }

    /// Cuts the links between replicas on different sides (clients keep their links).
    pub fn partition(&mut self, sides: &[&[ReplicaId]]) {
        let sides: Vec<Vec<Node>> = sides
            .iter()
            .map(|side| side.iter().map(|&r| Node::Replica(r)).collect())
            .collect();
        self.net.partition(&sides);
        self.stats.partitions += 1;
    }

    /// Cuts replica `r` off from the other replicas.
    pub fn isolate(&mut self, r: ReplicaId) {
        let others: Vec<ReplicaId> = (0..self.opts.replicas).filter(|&o| o != r).collect();
        self.partition(&[&[r], &others]);
    }

    pub fn heal(&mut self) {
        self.net.heal();
    }

    pub fn is_up(&self, r: ReplicaId) -> bool {
        self.slots[usize::from(r)].replica.is_some()
    }

    /// Stopped for good: it refused to start from a corrupt disk.
    pub fn is_stopped(&self, r: ReplicaId) -> bool {
        self.slots[usize::from(r)].stopped.is_some()
    }

    pub fn replica(&self, r: ReplicaId) -> Option<&Replica> {
        self.slots[usize::from(r)].replica.as_ref()
    }

    pub fn status(&self, r: ReplicaId) -> Option<Status> {
        self.replica(r).map(Replica::status)
    }

    /// The live replica that is primary in the highest view, if any.
    pub fn primary(&self) -> Option<ReplicaId> {
        (0..self.opts.replicas)
            .filter_map(|r| self.status(r))
            .filter(|s| s.role == Role::Primary)
            .max_by_key(|s| s.view)
            .map(|s| s.id)
    }

    /// The highest index committed on any replica so far.
    pub fn committed(&self) -> OpIndex {
        self.commits.last_index()
    }

    pub fn committed_entry(&self, index: OpIndex) -> Option<&Entry> {
        self.commits.get(index).map(|c| &c.entry)
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Synced log bytes of replica `r` (its disk use, snapshots aside).
    pub fn wal_len(&self, r: ReplicaId) -> usize {
        self.slots[usize::from(r)].disk.wal_len()
    }

    /// Log bytes of replica `r` written but not yet synced.
    pub fn volatile_log_len(&self, r: ReplicaId) -> usize {
        self.slots[usize::from(r)].disk.volatile_log_len()
    }
}
