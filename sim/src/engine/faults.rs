//! Random faults of the busy phase, drawn from the run's [`crate::options::FaultPlan`]:
//! process crashes (refusals) and host crashes (silence), both with lost or torn unsynced
//! writes and once perhaps a corrupted record, and their restarts (a replica stopped on a
//! corrupt disk is brought back later on an empty one, as `chat-server --rejoin`); pauses of a replica
//! process, within the pause bound or (only if asked: outside the model) beyond it; symmetric and one-way partitions
//! between replicas, and cuts between a client and a replica. Partitions heal after a while;
//! crashed replicas restart and paused ones resume after a while.
//!
//! Also the mechanics of a pause: events that reach a paused replica wait, in order, and are
//! handled when it resumes (TCP keeps what was sent to a stopped process).

use super::{Crash, Event, Sim};
use crate::checker::Failure;
use crate::network::Node;
use crate::options::FaultKind;
use chat_core::ids::ReplicaId;
use chat_core::time::Duration;
use rand::seq::SliceRandom;
use rand::Rng;

impl Sim {
    pub(super) fn schedule_fault_tick(&mut self) {
        let Some(every) = self.plan.fault_every else {
            return;
        };
        let wait = self.random_duration(every);
        self.schedule(self.now + wait, Event::FaultTick);
    }

    /// Uniform in [0, 2 * mean).
    fn random_duration(&mut self, mean: Duration) -> Duration {
        let mean = mean.as_micros() as u64;
        Duration::from_micros(self.rng.gen_range(0..2 * mean.max(1)))
    }

    pub(super) fn inject_fault(&mut self) -> Result<(), Failure> {
        let weights = self.plan.weights;
        let total: u32 = weights.iter().sum();
        if total == 0 {
            return Ok(());
        }
        let mut pick = self.rng.gen_range(0..total);
        let mut index = 0;
        while pick >= weights[index] {
            pick -= weights[index];
            index += 1;
        }
        let kind = FaultKind::ALL[index];
        let network = matches!(kind, FaultKind::Partition | FaultKind::Cut);
        if network && self.opts.replicas < 2 {
            return Ok(()); // nothing to partition
        }
        match kind {
            FaultKind::Crash => self.random_crash(Crash::Process),
            FaultKind::HostCrash => self.random_crash(Crash::Host),
            FaultKind::Pause | FaultKind::LongPause => {
                self.random_pause(kind == FaultKind::LongPause);
                Ok(())
            }
            FaultKind::Partition => {
                self.random_partition();
                Ok(())
            }
            FaultKind::Cut => {
                let n = self.opts.replicas;
                let from = self.rng.gen_range(0..n);
                let to = (from + self.rng.gen_range(1..n)) % n;
                self.trace_fault(format_args!("cut r{from} -> r{to}"));
                self.crash_only = false;
                self.net.cut_one_way(Node::Replica(from), Node::Replica(to));
                self.schedule_heal();
                Ok(())
            }
            FaultKind::ClientCut => {
                let slot = self.rng.gen_range(0..self.clients.len());
                let r = self.rng.gen_range(0..self.opts.replicas);
                self.trace_fault(format_args!("cut client {slot} <-> r{r}"));
                self.crash_only = false;
                self.net
                    .partition(&[vec![Node::Client(slot)], vec![Node::Replica(r)]]);
                self.break_cut_connections();
                self.schedule_heal();
                Ok(())
            }
        }
    }

    pub(super) fn trace_fault(&mut self, what: std::fmt::Arguments) {
        if self.trace.on() {
            self.trace.record(self.now, format_args!("fault: {what}"));
        }
    }

    /// Crashes a live replica (its process or its host) if the plan allows one more down;
    /// otherwise restarts one.
    fn random_crash(&mut self, crash: Crash) -> Result<(), Failure> {
        let n = self.opts.replicas;
        let up: Vec<ReplicaId> = (0..n).filter(|&r| self.is_up(r)).collect();
        let down = usize::from(n) - up.len();
        let max_down = if self.plan.all_down {
            usize::from(n)
        } else if self.opts.inject.crash_only() {
            // Issue 8: with process crashes alone, any n - 1 may be down.
            usize::from(n - 1)
        } else {
            usize::from(n - 1) / 2
        };
        if down >= max_down || up.is_empty() {
            let restartable: Vec<ReplicaId> = (0..n).filter(|&r| !self.is_up(r)).collect();
            if let Some(&r) = restartable.choose(&mut self.rng) {
                if self.slots[usize::from(r)].stopped.is_some() {
                    // The operator rebuilds a replica stopped on a corrupt disk: an empty
                    // directory and `chat-server --rejoin`.
                    self.trace_fault(format_args!("r{r} rejoins on an empty disk"));
                    self.lose_disk(r);
                }
                self.start_replica(r)?;
            }
            return Ok(());
        }
        let r = *up.choose(&mut self.rng).expect("not empty");
        let torn = self.rng.gen_bool(self.plan.torn);
        self.crash_replica(r, torn, crash);
        let corrupt_now = self.plan.corrupt_once
            && self.stats.corruptions == 0
            && self.slots.iter().all(|s| s.stopped.is_none())
            && self.rng.gen_bool(0.5);
        if corrupt_now {
            self.corrupt_disk(r);
        }
        let wait = self.random_duration(self.plan.down_for);
        self.schedule(self.now + wait, Event::Restart { replica: r });
        Ok(())
    }

    /// Pauses a live replica that is not paused yet, within the pause bound or, if `long`,
    /// beyond it (up to the plan's `long_pause_max`), and schedules its resumption.
    fn random_pause(&mut self, long: bool) {
        let running: Vec<ReplicaId> = (0..self.opts.replicas)
            .filter(|&r| self.is_up(r) && !self.is_paused(r))
            .collect();
        let Some(&r) = running.choose(&mut self.rng) else {
            return;
        };
        let bound = self.opts.pause_bound.as_micros() as u64;
        let micros = if long {
            let max = self.plan.long_pause_max.as_micros() as u64;
            self.rng.gen_range(bound + 1..=max.max(bound + 1))
        } else {
            self.rng.gen_range(1_000.min(bound)..=bound)
        };
        self.pause_replica(r, Duration::from_micros(micros));
    }

    /// Stops replica `r`'s process for `d` (nothing if it is down or already paused).
    pub(super) fn pause_replica(&mut self, r: ReplicaId, d: Duration) {
        let slot = &mut self.slots[usize::from(r)];
        if slot.replica.is_none() || slot.paused.is_some() {
            return;
        }
        slot.paused = Some(Vec::new());
        let life = slot.life;
        self.stats.pauses += 1;
        self.crash_only = false;
        self.trace_fault(format_args!("pause r{r} for {d:?}"));
        self.schedule(self.now + d, Event::Resume { replica: r, life });
    }

    /// `event`, unless it is for a paused replica: then it waits for the resumption.
    pub(super) fn hold_if_paused(&mut self, event: Event) -> Option<Event> {
        let to = match &event {
            Event::Peer { to, .. } | Event::PeerRefused { to, .. } => *to,
            Event::DiskSynced { replica, .. }
            | Event::SnapshotWritten { replica, .. }
            | Event::Drain { replica, .. } => *replica,
            Event::ToReplica { conn, .. } => match self.conns.get(conn) {
                Some(c) => c.replica,
                None => return Some(event),
            },
            _ => return Some(event),
        };
        match &mut self.slots[usize::from(to)].paused {
            Some(held) => {
                held.push(event);
                None
            }
            None => Some(event),
        }
    }

    /// Replica `r` carries on, if it is still paused in that life: it handles what reached
    /// it meanwhile, in order; its timers (set in its clock, which ran on) fire next.
    pub(super) fn resume(&mut self, r: ReplicaId, life: u64) -> Result<(), Failure> {
        let slot = &mut self.slots[usize::from(r)];
        if slot.life != life {
            return Ok(());
        }
        let Some(held) = slot.paused.take() else {
            return Ok(());
        };
        self.trace_fault(format_args!("resume r{r} ({} events waited)", held.len()));
        for event in held {
            self.dispatch(event)?;
        }
        Ok(())
    }

    /// Resumes every paused replica (the quiet phase).
    pub(super) fn resume_all(&mut self) -> Result<(), Failure> {
        for r in 0..self.opts.replicas {
            let life = self.slots[usize::from(r)].life;
            self.resume(r, life)?;
        }
        Ok(())
    }

    pub fn is_paused(&self, r: ReplicaId) -> bool {
        self.slots[usize::from(r)].paused.is_some()
    }

    /// Flips a byte in a synced record of the (down) replica `r`. Returns whether it could.
    pub(super) fn corrupt_disk(&mut self, r: ReplicaId) -> bool {
        debug_assert!(!self.is_up(r));
        let slot = &mut self.slots[usize::from(r)];
        let Some(at) = slot.disk.corrupt(&mut self.rng) else {
            return false;
        };
        slot.corrupted = true;
        self.stats.corruptions += 1;
        self.trace_fault(format_args!("corrupt r{r} log byte {at}"));
        true
    }

    /// Splits the replicas in two non-empty sides; each client joins one side at random.
    fn random_partition(&mut self) {
        let n = self.opts.replicas;
        let mut order: Vec<ReplicaId> = (0..n).collect();
        order.shuffle(&mut self.rng);
        let cut = self.rng.gen_range(1..usize::from(n));
        let mut sides = vec![
            order[..cut]
                .iter()
                .map(|&r| Node::Replica(r))
                .collect::<Vec<_>>(),
            order[cut..].iter().map(|&r| Node::Replica(r)).collect(),
        ];
        for slot in 0..self.clients.len() {
            let side = self.rng.gen_range(0..2);
            sides[side].push(Node::Client(slot));
        }
        self.trace_fault(format_args!("partition {sides:?}"));
        self.crash_only = false;
        self.net.partition(&sides);
        self.break_cut_connections();
        self.stats.partitions += 1;
        self.schedule_heal();
    }

    fn schedule_heal(&mut self) {
        let wait = self.random_duration(self.plan.partition_for);
        self.schedule(self.now + wait, Event::Heal);
    }
}
