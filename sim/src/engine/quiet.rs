//! The end of a run: the quiet phase, then the final checks.
//!
//! Faults stop, the network heals, paused replicas resume, every replica that is not
//! stopped for good restarts.
//! Each client finishes its pending request; then one client lists every account, logs in to
//! each and takes its queue, so that a lost message shows. The replicas must then catch up
//! with each other. Every step is bounded in simulated time (liveness).

use super::{Phase, Report, Sim};
use crate::checker::model::Model;
use crate::checker::{linearizability, messages, Checker, Failure};
use crate::client::Mode;
use chat_core::chat::{ChatError, Reply};
use chat_core::time::{Duration, Instant};
use std::fs::File;
use std::io::BufWriter;

/// How often the quiet phase looks at its progress.
const SLICE: Duration = Duration::from_millis(10);

impl Sim {
    /// Runs the quiet phase and every checker. The history is written (if asked) either way.
    pub fn finish(&mut self) -> Result<Report, Failure> {
        let result = self.quiet().and_then(|()| self.final_checks());
        self.write_history();
        result
    }

    /// Writes the client history as JSON Lines, if the options name a file.
    pub fn write_history(&self) {
        let Some(path) = &self.opts.history_path else {
            return;
        };
        let written =
            File::create(path).and_then(|file| self.history.write_json_lines(BufWriter::new(file)));
        if let Err(e) = written {
            eprintln!("cannot write the history to {}: {e}", path.display());
        }
    }

    fn quiet(&mut self) -> Result<(), Failure> {
        self.phase = Phase::Quiet;
        let start = self.now;
        if self.trace.on() {
            self.trace.record(start, format_args!("quiet phase"));
        }
        self.net.heal();
        self.net.stop_faults();
        self.resume_all()?;
        for r in 0..self.opts.replicas {
            self.start_replica(r)?;
        }
        for client in &mut self.clients {
            client.finish();
        }
        let bound = self.opts.liveness_bound;
        if !self.run_while(start, None, |sim| sim.clients.iter().any(|c| c.busy()))? {
            return Ok(());
        }
        self.with_client(0, |client, ctx| client.drain(ctx));
        if !self.run_while(start, None, |sim| sim.clients[0].mode() != Mode::Done)? {
            return Ok(());
        }
        let catch_up = self.now + bound;
        self.run_while(start, Some(catch_up), |sim| !sim.caught_up())?;
        Ok(())
    }

    /// Runs while `busy` holds. Fails if a pending request is older than the liveness bound
    /// (counted from its call, or from `start` for older ones), or if `deadline` passes —
    /// unless the protocol promises no progress then (a replica stopped for good by a
    /// corrupted disk is needed): then it gives up, records it and returns `false`.
    fn run_while(
        &mut self,
        start: Instant,
        deadline: Option<Instant>,
        busy: impl Fn(&Sim) -> bool,
    ) -> Result<bool, Failure> {
        let bound = self.opts.liveness_bound;
        while busy(self) {
            let late = self.clients.iter().any(|client| {
                client
                    .pending()
                    .is_some_and(|p| self.now > p.issued_at.max(start) + bound)
            }) || deadline.is_some_and(|d| self.now > d);
            if late && self.liveness_promised().is_none() {
                self.stats.quiet_unpromised = true;
                if self.trace.on() {
                    self.trace.record(
                        self.now,
                        format_args!("quiet phase: no progress promised, liveness not judged"),
                    );
                }
                return Ok(false);
            }
            for client in &self.clients {
                let Some(pending) = client.pending() else {
                    continue;
                };
                if self.now > pending.issued_at.max(start) + bound {
                    return Err(self.liveness_failure(format!(
                        "client slot {} request {} {:?} is still pending {:?} into the quiet phase ({} attempts)",
                        client.slot,
                        pending.request,
                        pending.ask,
                        self.now - start,
                        pending.attempts
                    )));
                }
            }
            if deadline.is_some_and(|d| self.now > d) {
                let commits = self.replica_commits();
                return Err(self.liveness_failure(format!(
                    "the replicas did not catch up with index {}: {commits}",
                    self.commits.last_index()
                )));
            }
            self.run_until(self.now + SLICE)?;
        }
        Ok(true)
    }

    pub(super) fn liveness_failure(&self, what: String) -> Failure {
        let statuses: Vec<String> = (0..self.opts.replicas)
            .map(
                |r| match (self.status(r), &self.slots[usize::from(r)].stopped) {
                    (Some(s), _) => format!(
                        "r{r} {:?} view {} primary {:?} commit {} last {}",
                        s.role, s.view, s.primary, s.commit, s.last_index
                    ),
                    (None, Some(why)) => format!("r{r} stopped: {why}"),
                    (None, None) => format!("r{r} down"),
                },
            )
            .collect();
        Failure::new(
            Checker::Liveness,
            self.now,
            format!(
                "{what}\n  replicas: {}\n  promised: {:?}; latest established view {}",
                statuses.join("; "),
                self.liveness_promised(),
                match &self.latest_established {
                    Some((view, v)) => format!(
                        "{view} members {:?} since {:.3} s",
                        v.members,
                        v.since.micros() as f64 / 1e6
                    ),
                    None => "none seen".to_string(),
                }
            ),
        )
    }

    fn replica_commits(&self) -> String {
        (0..self.opts.replicas)
            .filter_map(|r| self.status(r).map(|s| format!("r{r} commit {}", s.commit)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Every live replica has committed and applied everything committed anywhere.
    fn caught_up(&self) -> bool {
        let last = self.commits.last_index();
        self.slots
            .iter()
            .filter_map(|s| s.replica.as_ref())
            .all(|replica| replica.commit_index() == last && replica.applied_index() == last)
    }

    fn final_checks(&mut self) -> Result<Report, Failure> {
        let now = self.now;
        // Agreement of what the live replicas still hold in memory.
        for r in 0..self.opts.replicas {
            let Some(replica) = self.replica(r) else {
                continue;
            };
            let status = replica.status();
            for index in status.log_start..=status.commit {
                let held = replica.entry(index);
                let committed = self.commits.get(index).map(|c| &c.entry);
                if held != committed {
                    return Err(Failure::new(
                        Checker::Agreement,
                        now,
                        format!(
                            "replica {r} holds {held:?} at committed index {index}, but {committed:?} was committed"
                        ),
                    ));
                }
            }
        }
        let ops = self.history.operations();
        let model = Model::replay(&self.commits, &self.opts.limits, &ops);
        linearizability::check(&ops, &self.commits, &model, now)?;
        // Every message shown needs the drain, which an unpromised quiet phase may not reach.
        messages::check(&self.history, &model, now, !self.stats.quiet_unpromised)?;
        for r in 0..self.opts.replicas {
            let Some(replica) = self.replica(r) else {
                continue;
            };
            let (applied, digest) = replica.applied_digest();
            if applied == model.last_index && digest != model.digest {
                return Err(Failure::new(
                    Checker::Agreement,
                    now,
                    format!(
                        "replica {r}'s state at index {applied} (digest {digest:08x}) is not the sequential model's ({:08x})",
                        model.digest
                    ),
                ));
            }
        }
        Ok(Report {
            seed: self.opts.seed,
            sim_time: now,
            committed: self.commits.last_index(),
            calls: ops.len(),
            returns: ops.iter().filter(|op| op.ret.is_some()).count(),
            messages: model.messages.len(),
            expired: ops
                .iter()
                .filter(|op| matches!(op.ret, Some((_, Reply::Error(ChatError::SessionExpired)))))
                .count(),
            stats: self.stats.clone(),
            trace_digest: self.trace.digest(),
        })
    }
}
