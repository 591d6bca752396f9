//! Liveness during the busy phase: every [`CHECK_EVERY`] the engine pictures the cluster
//! for [`liveness::promised`]; once the promise has held, on an unchanged picture (no
//! crash, restart, pause, resumption or change of the network since), for the busy
//! liveness bound, a client request pending since before then is a liveness failure.

use super::{Event, Phase, Sim};
use crate::checker::liveness::{self, Cluster, Process, Why, CHECK_EVERY};
use crate::checker::Failure;
use chat_core::time::Instant;

impl Sim {
    pub(super) fn schedule_liveness_check(&mut self) {
        self.schedule(self.now + CHECK_EVERY, Event::LivenessCheck);
    }

    /// The cluster as [`liveness::promised`] sees it now.
    fn liveness_picture(&self) -> Cluster {
        let processes = self
            .slots
            .iter()
            .map(|slot| match (&slot.replica, &slot.paused) {
                (Some(_), Some(_)) => Process::Paused,
                // Back on an empty disk and not added yet: it runs, but counts for no more
                // than its killed earlier life (which is what the rules see of it) until a
                // primary adds it.
                (Some(r), None) if r.status().knows_no_view() => Process::Killed,
                (Some(_), None) => Process::Running {
                    since: slot.started_at,
                },
                (None, _) if slot.host_down || slot.stopped.is_some() => Process::Gone,
                (None, _) => Process::Killed,
            })
            .collect();
        let established = self.latest_established.as_ref().map(|(view, _)| *view);
        let higher: Vec<_> = (0..self.opts.replicas)
            .filter_map(|r| self.status(r))
            .filter(|s| established.is_some_and(|view| s.view > view) && !s.established)
            .collect();
        let highest_accepted = higher
            .iter()
            .max_by_key(|s| s.view)
            .map(|s| s.members.clone())
            .unwrap_or_default();
        let mut higher_accepted: Vec<_> = higher.into_iter().flat_map(|s| s.members).collect();
        higher_accepted.sort_unstable();
        higher_accepted.dedup();
        let rejoining = (0..self.opts.replicas)
            .filter(|&r| self.status(r).is_some_and(|s| s.rejoining))
            .collect();
        Cluster {
            processes,
            rejoining,
            network_whole: !self.net.has_cuts(),
            crash_only: self.crash_only,
            view: self.latest_established.as_ref().map(|(_, v)| v.clone()),
            higher_accepted,
            highest_accepted,
        }
    }

    /// Whether the protocol promises progress now, and by which rule.
    pub fn liveness_promised(&self) -> Option<Why> {
        liveness::promised(self.opts.promise, &self.liveness_picture())
    }

    pub(super) fn check_liveness(&mut self) -> Result<(), Failure> {
        if self.phase != Phase::Busy {
            return Ok(());
        }
        self.schedule_liveness_check();
        let picture = self.liveness_picture();
        let promise = liveness::promised(self.opts.promise, &picture);
        // The rules promise progress once their conditions have held for a while: every
        // change of the faults (a replica down, paused or back, a cut or a heal) starts the
        // wait again. New views do not: views that come and go without serving are what
        // this check is for.
        let faults = Cluster {
            view: None,
            higher_accepted: Vec::new(),
            highest_accepted: Vec::new(),
            rejoining: Vec::new(),
            ..picture.clone()
        };
        if self.last_picture.as_ref() != Some(&faults) {
            self.promised_since = None;
            self.last_picture = Some(faults);
        }
        let Some(why) = promise else {
            self.promised_since = None;
            return Ok(());
        };
        let since = *self.promised_since.get_or_insert(self.now);
        let bound = self.opts.busy_liveness_bound;
        for client in &self.clients {
            let Some(pending) = client.pending() else {
                continue;
            };
            let from: Instant = pending.issued_at.max(since);
            let waited = self.now - from;
            self.stats.longest_promised_wait = self.stats.longest_promised_wait.max(waited);
            if waited > bound {
                return Err(self.liveness_failure(format!(
                    "client slot {} request {} {:?} is still pending {:?} after liveness was promised ({why:?} since {:.3} s)",
                    client.slot,
                    pending.request,
                    pending.ask,
                    waited,
                    since.micros() as f64 / 1e6
                )));
            }
        }
        Ok(())
    }
}
