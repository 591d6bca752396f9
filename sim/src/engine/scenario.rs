//! The scripting API for named scenarios: run for a while, crash, restart, corrupt,
//! partition, heal, and look at the replicas; and a small vocabulary of [`Step`]s that
//! [`Sim::play`] carries out, for scenarios written as data.

use super::{Crash, Sim, Stats};
use crate::checker::Failure;
use crate::disk::Disk;
use crate::history::{Kind, Operation};
use crate::network::Node;
use chat_core::durable::Entry;
use chat_core::ids::{OpIndex, ReplicaId, View};
use chat_core::replica::Input;
use chat_core::replica::{Replica, Role, Status};
use chat_core::time::{Duration, Instant};
use std::collections::BTreeMap;

/// How long a step that targets the primary waits for there to be one.
const PRIMARY_WAIT: Duration = Duration::from_secs(5);

/// Which replicas a [`Step`] acts on, found when the step runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Replica `r`.
    Replica(ReplicaId),
    /// The current primary: the live replica that is primary in the highest view. If there
    /// is none yet, the step first waits for one (up to 5 s; then the scenario fails on
    /// liveness).
    Primary,
    /// The `k`-th (from 0, in id order) live replica that is not the current primary
    /// (waiting for a primary as [`Target::Primary`] does).
    Backup(usize),
    /// Every live replica that is not the current primary, at once.
    Backups,
    /// The replicas that step `i` of the scenario (from 0) acted on.
    SameAs(usize),
}

/// One step of a scenario. Targets are found when the step starts; a step with several
/// targets acts on all of them at the same instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// kill -9: the process dies, its host stays up and refuses connections to its ports.
    Kill(Target),
    /// The host crashes or freezes: silence, no refusals, until restarted.
    CrashHost(Target),
    /// The process stops (SIGSTOP) for this long, then carries on.
    Pause(Target, Duration),
    /// Starts the process again (from its disk).
    Restart(Target),
    /// Starts the (down) process again on an empty disk, as `chat-server --rejoin`.
    RestartWithLostDisk(Target),
    /// `chat-admin remove`: the operator declares these replicas' hosts gone for good; every
    /// running replica that may take it ([`chat_core::replica::Replica::may_remove`]) does.
    OperatorRemoves(Target),
    /// Cuts every replica link between the two sides, both ways (clients keep their links).
    Partition(Vec<Target>, Vec<Target>),
    /// Drops every message from the first replica(s) to the second, one way (as a sender
    /// whose connection broke and whose reconnect backoff has not come round yet).
    Cut(Target, Target),
    /// Mends every cut.
    Heal,
    Wait(Duration),
    /// Expectation: within this time the cluster commits an entry it had not committed when
    /// the step began, and after that a client gets a reply. Otherwise the scenario fails on
    /// liveness.
    ServesWithin(Duration),
}

impl Sim {
    /// Carries out `steps` in order, failing on the first checker failure or unmet
    /// expectation. Safety is checked all along; [`Sim::finish`] ends the run.
    pub fn play(&mut self, steps: &[Step]) -> Result<(), Failure> {
        let mut acted_on: Vec<Vec<ReplicaId>> = Vec::with_capacity(steps.len());
        for (i, step) in steps.iter().enumerate() {
            let sides = self.resolve_step(i, step, &acted_on)?;
            if self.trace.on() {
                self.trace
                    .record(self.now, format_args!("step {i}: {step:?} on {sides:?}"));
            }
            let targets: Vec<ReplicaId> = sides.concat();
            match step {
                Step::Kill(_) => targets.iter().for_each(|&r| self.crash(r)),
                Step::CrashHost(_) => targets.iter().for_each(|&r| self.crash_host(r)),
                Step::Pause(_, d) => targets.iter().for_each(|&r| self.pause(r, *d)),
                Step::Restart(_) => {
                    for &r in &targets {
                        self.restart(r)?;
                    }
                }
                Step::OperatorRemoves(_) => {
                    for &r in &targets {
                        self.operator_removes(r)?;
                    }
                }
                Step::RestartWithLostDisk(_) => {
                    for &r in &targets {
                        self.lose_disk(r);
                        self.restart(r)?;
                    }
                }
                Step::Partition(..) => {
                    let sides: Vec<&[ReplicaId]> = sides.iter().map(Vec::as_slice).collect();
                    self.partition(&sides);
                }
                Step::Cut(..) => {
                    for &from in &sides[0] {
                        for &to in &sides[1] {
                            self.cut(from, to);
                        }
                    }
                }
                Step::Heal => self.heal(),
                Step::Wait(d) => self.run_for(*d)?,
                Step::ServesWithin(d) => {
                    if !self.serves_within(*d)? {
                        return Err(self.liveness_failure(format!(
                            "scenario step {i} ({step:?}): nothing was committed and answered in time"
                        )));
                    }
                }
            }
            acted_on.push(targets);
        }
        Ok(())
    }

    /// The replicas step `i` acts on, in groups: the two sides of a partition, or one.
    fn resolve_step(
        &mut self,
        i: usize,
        step: &Step,
        acted_on: &[Vec<ReplicaId>],
    ) -> Result<Vec<Vec<ReplicaId>>, Failure> {
        match step {
            Step::Kill(t)
            | Step::CrashHost(t)
            | Step::Pause(t, _)
            | Step::Restart(t)
            | Step::RestartWithLostDisk(t)
            | Step::OperatorRemoves(t) => Ok(vec![self.resolve(i, *t, acted_on)?]),
            Step::Partition(a, b) => Ok(vec![
                self.resolve_all(i, a, acted_on)?,
                self.resolve_all(i, b, acted_on)?,
            ]),
            Step::Cut(from, to) => Ok(vec![
                self.resolve(i, *from, acted_on)?,
                self.resolve(i, *to, acted_on)?,
            ]),
            Step::Heal | Step::Wait(_) | Step::ServesWithin(_) => Ok(Vec::new()),
        }
    }

    fn resolve_all(
        &mut self,
        i: usize,
        targets: &[Target],
        acted_on: &[Vec<ReplicaId>],
    ) -> Result<Vec<ReplicaId>, Failure> {
        let mut all = Vec::new();
        for &t in targets {
            all.extend(self.resolve(i, t, acted_on)?);
        }
        Ok(all)
    }

    fn resolve(
        &mut self,
        i: usize,
        target: Target,
        acted_on: &[Vec<ReplicaId>],
    ) -> Result<Vec<ReplicaId>, Failure> {
        let primary = match target {
            Target::Replica(r) => return Ok(vec![r]),
            Target::SameAs(step) => {
                let Some(replicas) = acted_on.get(step) else {
                    panic!("scenario step {i} refers to step {step}, which has not run yet");
                };
                return Ok(replicas.clone());
            }
            Target::Primary | Target::Backup(_) | Target::Backups => {
                if !self.wait_for(PRIMARY_WAIT, |s| s.primary().is_some())? {
                    return Err(self.liveness_failure(format!(
                        "scenario step {i} targets {target:?}, but no replica became primary within {PRIMARY_WAIT:?}"
                    )));
                }
                self.primary().expect("just checked")
            }
        };
        let backups = (0..self.opts.replicas).filter(|&r| self.is_up(r) && r != primary);
        Ok(match target {
            Target::Primary => vec![primary],
            Target::Backups => backups.collect(),
            Target::Backup(k) => match backups.clone().nth(k) {
                Some(r) => vec![r],
                None => panic!("scenario step {i}: there is no live backup {k}"),
            },
            Target::Replica(_) | Target::SameAs(_) => unreachable!("returned above"),
        })
    }

    /// Whether, within `d`, an entry not committed now is committed and then a client gets a
    /// reply.
    fn serves_within(&mut self, d: Duration) -> Result<bool, Failure> {
        let deadline = self.now + d;
        let committed = self.committed();
        if !self.wait_for(d, |s| s.committed() > committed)? {
            return Ok(false);
        }
        let since = self.now;
        self.wait_for(deadline - since, |s| {
            s.history
                .events
                .iter()
                .rev()
                .take_while(|e| e.time >= since)
                .any(|e| matches!(e.kind, Kind::Return(_)))
        })
    }

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

    /// `chat-admin remove removed`: every running (not paused) replica that may take the
    /// operator's word now does.
    pub fn operator_removes(&mut self, removed: ReplicaId) -> Result<(), Failure> {
        for r in 0..self.opts.replicas {
            let slot = &self.slots[usize::from(r)];
            let now = slot.clock.read(self.now);
            let takes = slot.paused.is_none()
                && slot
                    .replica
                    .as_ref()
                    .is_some_and(|replica| replica.may_remove(now, removed).is_ok());
            if takes {
                self.trace_fault(format_args!("r{r} takes the removal of r{removed}"));
                self.input(r, Input::Removed(removed))?;
            }
        }
        Ok(())
    }

    /// Replaces the down replica `r`'s disk by an empty one (a lost or wiped data
    /// directory, or a corrupt one the operator removed); it next starts knowing no view.
    pub fn lose_disk(&mut self, r: ReplicaId) {
        assert!(!self.is_up(r), "lose a disk only while its replica is down");
        let slot = &mut self.slots[usize::from(r)];
        slot.disk = Disk::new();
        slot.disk_lost = true;
        self.stats.empty_disk_rejoins += 1;
        slot.stopped = None;
        slot.corrupted = false;
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
        self.crash_only = false;
    }

    /// Drops every message from replica `from` to replica `to` (one way) until healed.
    pub fn cut(&mut self, from: ReplicaId, to: ReplicaId) {
        self.net.cut_one_way(Node::Replica(from), Node::Replica(to));
        self.crash_only = false;
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

    /// Every view in which a replica was seen acting as primary so far, with that replica.
    pub fn primaries(&self) -> &BTreeMap<View, ReplicaId> {
        &self.primaries
    }

    /// The longest time any client request spent waiting for its reply between `from` and
    /// now (a request called before `from` counts from `from`; one still pending, until
    /// now), with that request; `None` if no request was outstanding then.
    pub fn longest_wait_since(&self, from: Instant) -> Option<(Duration, Operation)> {
        self.history
            .operations()
            .into_iter()
            .filter(|op| op.ret.as_ref().is_none_or(|(at, _)| *at >= from))
            .map(|op| {
                let end = op.ret.as_ref().map_or(self.now, |(at, _)| *at);
                (end - op.call.max(from), op)
            })
            .max_by_key(|(wait, _)| *wait)
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
