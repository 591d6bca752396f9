//! The replica's timers in one table: `poll_timeout()` is their earliest deadline.

use crate::time::Instant;

/// Every timer a replica runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Timer {
    /// Always armed: heartbeats (leases, replication, `Hello`s), retransmissions, the check
    /// for members to exclude. Its period is at most half the pause bound, so that a longer
    /// gap between steps is a stalled process (pause detection).
    Heartbeat,
    /// A staggered or backed-off proposal may start.
    Retry,
}

impl Timer {
    /// In the order `tick` fires them when several are due.
    pub const ALL: [Timer; 2] = [Timer::Heartbeat, Timer::Retry];

    fn slot(self) -> usize {
        self as usize
    }
}

/// Deadlines by timer; a disarmed timer's deadline is [`Instant::NEVER`].
#[derive(Debug)]
pub(super) struct Timers {
    deadlines: [Instant; Timer::ALL.len()],
}

impl Timers {
    pub fn new() -> Timers {
        Timers {
            deadlines: [Instant::NEVER; Timer::ALL.len()],
        }
    }

    pub fn arm(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer.slot()] = at;
    }

    pub fn disarm(&mut self, timer: Timer) {
        self.arm(timer, Instant::NEVER);
    }

    pub fn is_armed(&self, timer: Timer) -> bool {
        self.deadlines[timer.slot()] != Instant::NEVER
    }

    pub fn is_due(&self, timer: Timer, now: Instant) -> bool {
        self.is_armed(timer) && now >= self.deadlines[timer.slot()]
    }

    /// The earliest deadline of any armed timer.
    pub fn next(&self) -> Instant {
        self.deadlines
            .iter()
            .copied()
            .min()
            .unwrap_or(Instant::NEVER)
    }
}
