//! Random faults of the busy phase, drawn from the run's [`crate::options::FaultPlan`]:
//! crashes (with lost or torn unsynced writes, and once perhaps a corrupted record) and
//! restarts, symmetric and one-way partitions between replicas, and cuts between a client and
//! a replica. Partitions heal after a while; crashed replicas restart after a while.

use super::{Event, Sim};
use crate::checker::Failure;
use crate::network::Node;
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
        if self.opts.replicas < 2 {
            return self.random_crash(); // nothing to partition
        }
        let mut pick = self.rng.gen_range(0..total);
        let mut kind = 0;
        while pick >= weights[kind] {
            pick -= weights[kind];
            kind += 1;
        }
        match kind {
            0 => self.random_crash(),
            1 => {
                self.random_partition();
                Ok(())
            }
            2 => {
                let n = self.opts.replicas;
                let from = self.rng.gen_range(0..n);
                let to = (from + self.rng.gen_range(1..n)) % n;
                self.trace_fault(format_args!("cut r{from} -> r{to}"));
                self.net.cut_one_way(Node::Replica(from), Node::Replica(to));
                self.schedule_heal();
                Ok(())
            }
            _ => {
                let slot = self.rng.gen_range(0..self.clients.len());
                let r = self.rng.gen_range(0..self.opts.replicas);
                self.trace_fault(format_args!("cut client {slot} <-> r{r}"));
                self.net
                    .partition(&[vec![Node::Client(slot)], vec![Node::Replica(r)]]);
                self.break_cut_connections();
                self.schedule_heal();
                Ok(())
            }
        }
    }

    fn trace_fault(&mut self, what: std::fmt::Arguments) {
        if self.trace.on() {
            self.trace.record(self.now, format_args!("fault: {what}"));
        }
    }

    /// Crashes a live replica if the plan allows one more down; otherwise restarts one.
    fn random_crash(&mut self) -> Result<(), Failure> {
        let n = self.opts.replicas;
        let up: Vec<ReplicaId> = (0..n).filter(|&r| self.is_up(r)).collect();
        let down = usize::from(n) - up.len();
        let max_down = if self.plan.all_down {
            usize::from(n)
        } else {
            usize::from(n - 1) / 2
        };
        if down >= max_down || up.is_empty() {
            let restartable: Vec<ReplicaId> = (0..n)
                .filter(|&r| !self.is_up(r) && self.slots[usize::from(r)].stopped.is_none())
                .collect();
            if let Some(&r) = restartable.choose(&mut self.rng) {
                self.start_replica(r)?;
            }
            return Ok(());
        }
        let r = *up.choose(&mut self.rng).expect("not empty");
        let torn = self.rng.gen_bool(self.plan.torn);
        self.crash_replica(r, torn);
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
