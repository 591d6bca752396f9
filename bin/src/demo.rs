//! `chat demo`'s replicas: child processes that it starts, watches and lets the user crash,
//! freeze and bring back from the chat prompt (`:kill N`, `:pause N`, `:resume N`,
//! `:restart N`, `:status`), the fault-tolerance playground.
//!
//! It never reports a replica it did not see answer: start-up waits for each one to answer a
//! status request (or reports why it stopped, from its log), and a replica that exits on its
//! own is announced with a one-line notice.

use crate::cluster_status;
use crate::process::ServerProcess;
use crate::repl::Extension;
use chat_core::config::Config;
use chat_core::ids::ReplicaId;
use chat_core::replica::{Role, Status};
use chat_net::client;
use chat_net::storage::DirLock;
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// How long a starting replica may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the replicas may take to elect a primary at start.
const PRIMARY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a replica may take to stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often the watcher looks for replicas that exited on their own.
const WATCH_EVERY: Duration = Duration::from_millis(200);
/// How long `:status` waits for each replica (a paused one never answers).
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);

/// The demo's own commands, for `help`.
pub const HELP: &str = "\
demo commands (the replicas are child processes of this demo):
  :status              the cluster table, and whether it can serve
  :kill N              kill -9 replica N (a crash: its port refuses connections)
  :pause N             SIGSTOP replica N (a frozen host: connected, silent)
  :resume N            SIGCONT a paused replica
  :restart N           stop replica N if it runs (SIGTERM), then start it again";

/// What the demo did to a replica, or saw happen to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Running,
    Paused,
    Killed,
    /// Exited by itself (announced); `:restart` brings it back.
    Exited,
}

#[derive(Debug)]
struct Slot {
    id: ReplicaId,
    process: Option<ServerProcess>,
    state: State,
}

type Slots = Arc<Mutex<Vec<Slot>>>;

fn lock(slots: &Slots) -> MutexGuard<'_, Vec<Slot>> {
    slots
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where the replicas' files are and how to start one.
#[derive(Clone, Debug)]
pub struct Layout {
    pub config: Config,
    /// The file the replicas read.
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    /// This program: its hidden `replica --id N` subcommand runs one replica.
    pub exe: PathBuf,
}

impl Layout {
    pub fn replica_dir(&self, id: ReplicaId) -> PathBuf {
        self.data_dir.join(format!("replica-{id}"))
    }

    pub fn log_path(&self, id: ReplicaId) -> PathBuf {
        self.data_dir.join(format!("replica-{id}.log"))
    }

    /// Refuses, before anything starts, if a replica's data directory is locked by a live
    /// process or one of its ports is taken.
    pub fn check_free(&self) -> Result<(), String> {
        for r in &self.config.replicas {
            DirLock::check(&self.replica_dir(r.id)).map_err(|e| {
                format!(
                    "{e}: is another `chat demo` or a `chat-server` running on it? \
                     Stop that one first (or use another folder)"
                )
            })?;
            for (what, port) in [("client", r.client_port), ("peer", r.peer_port)] {
                TcpListener::bind((r.host.as_str(), port)).map_err(|e| {
                    format!(
                        "replica {}'s {what} port {}:{port} is not free ({e}): is another \
                         `chat demo` or `chat-server` running?",
                        r.id, r.host
                    )
                })?;
            }
        }
        Ok(())
    }

    fn spawn(&self, id: ReplicaId) -> Result<ServerProcess, String> {
        let mut command = Command::new(&self.exe);
        command
            .arg("replica")
            .arg("--config")
            .arg(&self.config_path)
            .arg("--id")
            .arg(id.to_string());
        ServerProcess::spawn(command, &self.log_path(id))
            .map_err(|e| format!("cannot start replica {id}: {e}"))
    }

    /// The last line replica `id` logged (its error, when it stopped at start-up).
    fn last_log_line(&self, id: ReplicaId) -> String {
        let text = std::fs::read_to_string(self.log_path(id)).unwrap_or_default();
        text.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("(its log is empty)")
            .to_owned()
    }

    fn status(&self, id: ReplicaId, timeout: Duration) -> Option<Status> {
        let r = self.config.replica(id)?;
        let tls = client::client_tls(&self.config).ok()?;
        client::status(r, self.config.net.max_frame_bytes, tls.as_ref(), timeout).ok()
    }
}

/// The running replicas. Dropping it stops them all.
pub struct Demo {
    layout: Layout,
    slots: Slots,
    notices: Option<Receiver<String>>,
    stop_watching: Arc<AtomicBool>,
}

impl Demo {
    /// Starts every replica and returns once each has answered and a primary is elected; if
    /// any stops or stays silent, stops them all and says why.
    pub fn start(layout: Layout) -> Result<Demo, String> {
        let slots: Slots = Arc::default();
        let (tx, notices) = mpsc::channel();
        let demo = Demo {
            layout,
            slots,
            notices: Some(notices),
            stop_watching: Arc::default(),
        };
        for r in &demo.layout.config.replicas {
            let process = demo.layout.spawn(r.id)?;
            lock(&demo.slots).push(Slot {
                id: r.id,
                process: Some(process),
                state: State::Running,
            });
        }
        let ids: Vec<ReplicaId> = demo.layout.config.replicas.iter().map(|r| r.id).collect();
        let failures: Vec<String> = ids
            .iter()
            .filter_map(|&id| demo.wait_up(id, START_TIMEOUT).err())
            .collect();
        if !failures.is_empty() {
            return Err(failures.join("\n"));
        }
        demo.wait_for_primary()?;
        demo.watch(tx);
        Ok(demo)
    }

    /// A function that stops every replica (for a signal handler).
    pub fn stopper(&self) -> impl Fn() + Send + 'static {
        let slots = self.slots.clone();
        move || stop_all(&slots)
    }

    /// The replicas' process ids, for the start-up message.
    pub fn pids(&self) -> Vec<(ReplicaId, u32)> {
        lock(&self.slots)
            .iter()
            .filter_map(|s| Some((s.id, s.process.as_ref()?.pid())))
            .collect()
    }

    /// Waits until replica `id` answers a status request; if it exits first or stays
    /// silent, says so with the last line of its log.
    fn wait_up(&self, id: ReplicaId, limit: Duration) -> Result<Status, String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exit_status(id) {
                return Err(format!(
                    "replica {id} stopped ({status}): {}\n  (log: {})",
                    self.layout.last_log_line(id),
                    self.layout.log_path(id).display()
                ));
            }
            if let Some(status) = self.layout.status(id, STATUS_TIMEOUT) {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "replica {id} did not answer within {} s; its log ends with: {}\n  (log: {})",
                    limit.as_secs(),
                    self.layout.last_log_line(id),
                    self.layout.log_path(id).display()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn exit_status(&self, id: ReplicaId) -> Option<ExitStatus> {
        let mut slots = lock(&self.slots);
        let slot = slots.iter_mut().find(|s| s.id == id)?;
        slot.process.as_mut()?.exited()
    }

    fn wait_for_primary(&self) -> Result<(), String> {
        let deadline = Instant::now() + PRIMARY_TIMEOUT;
        loop {
            let primary = self.layout.config.replicas.iter().any(|r| {
                self.layout
                    .status(r.id, STATUS_TIMEOUT)
                    .is_some_and(|s| s.role == Role::Primary)
            });
            if primary {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no primary after {} s; see the logs in {}",
                    PRIMARY_TIMEOUT.as_secs(),
                    self.layout.data_dir.display()
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Announces, once, each replica that exits without the demo stopping it.
    fn watch(&self, notices: Sender<String>) {
        let (slots, stop, layout) = (
            self.slots.clone(),
            self.stop_watching.clone(),
            self.layout.clone(),
        );
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(WATCH_EVERY);
                let mut slots = lock(&slots);
                for slot in slots.iter_mut() {
                    if !matches!(slot.state, State::Running | State::Paused) {
                        continue;
                    }
                    let Some(status) = slot.process.as_mut().and_then(ServerProcess::exited) else {
                        continue;
                    };
                    slot.state = State::Exited;
                    // A signal from outside says nothing the log would explain.
                    let why = match status.code() {
                        Some(_) => {
                            format!("{status}; its log ends: {}", layout.last_log_line(slot.id))
                        }
                        None => status.to_string(),
                    };
                    let notice = format!(
                        "* replica {} exited on its own ({why}); `:restart {}` brings it back",
                        slot.id, slot.id
                    );
                    if notices.send(notice).is_err() {
                        return;
                    }
                }
            }
        });
    }

    /// Runs one `:command`; returns what to print.
    pub fn command(&mut self, line: &str) -> String {
        let mut words = line.trim_start_matches(':').split_whitespace();
        let name = words.next().unwrap_or("");
        let arg = words.next();
        if name == "status" {
            return self.status_text();
        }
        if !matches!(name, "kill" | "pause" | "resume" | "restart") {
            return format!("error: unknown demo command `:{name}` (type `help`)");
        }
        let id = match arg.map(str::parse::<ReplicaId>) {
            Some(Ok(id)) if self.layout.config.replica(id).is_some() => id,
            _ => {
                let last = self.layout.config.replicas.len() - 1;
                return format!("error: `:{name}` needs a replica id from 0 to {last}");
            }
        };
        match name {
            "kill" => self.kill(id),
            "pause" => self.pause(id),
            "resume" => self.resume(id),
            _ => self.restart(id),
        }
    }

    fn with_slot<T>(&self, id: ReplicaId, f: impl FnOnce(&mut Slot) -> T) -> T {
        let mut slots = lock(&self.slots);
        let slot = slots
            .iter_mut()
            .find(|s| s.id == id)
            .expect("checked against the configuration");
        f(slot)
    }

    fn kill(&self, id: ReplicaId) -> String {
        self.with_slot(id, |slot| match (&mut slot.process, slot.state) {
            (Some(process), State::Running | State::Paused) => {
                process.kill();
                slot.state = State::Killed;
                format!(
                    "replica {id} killed (kill -9): its ports now refuse connections; \
                     `:restart {id}` brings it back"
                )
            }
            _ => format!("replica {id} is not running (`:restart {id}` starts it)"),
        })
    }

    fn pause(&self, id: ReplicaId) -> String {
        self.with_slot(id, |slot| match (&mut slot.process, slot.state) {
            (Some(process), State::Running) => {
                process.pause();
                slot.state = State::Paused;
                format!(
                    "replica {id} paused (SIGSTOP): its connections stay open but it answers \
                     nothing, like a frozen host; `:resume {id}` wakes it"
                )
            }
            (_, State::Paused) => format!("replica {id} is already paused"),
            _ => format!("replica {id} is not running"),
        })
    }

    fn resume(&self, id: ReplicaId) -> String {
        self.with_slot(id, |slot| match (&mut slot.process, slot.state) {
            (Some(process), State::Paused) => {
                process.resume();
                slot.state = State::Running;
                format!("replica {id} resumed (SIGCONT)")
            }
            _ => format!("replica {id} is not paused"),
        })
    }

    fn restart(&self, id: ReplicaId) -> String {
        let stopped = self.with_slot(id, |slot| {
            let old = slot.process.take();
            slot.state = State::Killed;
            old
        });
        if let Some(mut old) = stopped {
            old.terminate(STOP_GRACE);
        }
        let process = match self.layout.spawn(id) {
            Ok(process) => process,
            Err(e) => return format!("error: {e}"),
        };
        let pid = process.pid();
        self.with_slot(id, |slot| {
            slot.process = Some(process);
            slot.state = State::Running;
        });
        match self.wait_up(id, START_TIMEOUT) {
            Ok(s) => {
                // Rule 8: the sole member of its last view resumes as primary at once.
                let then = if s.role == Role::Primary {
                    "it serves at once (it was the last view's only member)"
                } else {
                    "it catches up from the primary"
                };
                format!(
                    "replica {id} restarted (pid {pid}): {} in view {}, log up to {}; {then}",
                    cluster_status::role_name(&s),
                    s.view,
                    s.last_index
                )
            }
            Err(e) => {
                // The watcher must not announce it again.
                self.with_slot(id, |slot| slot.state = State::Exited);
                format!("error: {e}")
            }
        }
    }

    /// `:status`: the table, the verdict, and what the demo did to each process.
    fn status_text(&self) -> String {
        let answers = cluster_status::query(&self.layout.config, STATUS_TIMEOUT);
        let mut out = cluster_status::table(&answers);
        out += &cluster_status::verdict(&answers).summary;
        out += "\nprocesses:";
        for slot in lock(&self.slots).iter() {
            let pid = slot.process.as_ref().map(ServerProcess::pid);
            let _ = match (slot.state, pid) {
                (State::Running, Some(pid)) => write!(out, " {} running (pid {pid});", slot.id),
                (State::Paused, Some(pid)) => write!(out, " {} PAUSED (pid {pid});", slot.id),
                (State::Killed, _) => write!(out, " {} killed;", slot.id),
                (_, _) => write!(out, " {} exited;", slot.id),
            };
        }
        out.pop();
        out
    }
}

impl Extension for Demo {
    fn help(&self) -> &str {
        HELP
    }

    fn run(&mut self, line: &str) -> Result<String, String> {
        Ok(self.command(line))
    }

    fn notices(&mut self) -> Option<Receiver<String>> {
        self.notices.take()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.stop_watching.store(true, Ordering::Relaxed);
        stop_all(&self.slots);
    }
}

/// SIGTERM to every replica (SIGKILL after the grace period), all at once.
fn stop_all(slots: &Slots) {
    let mut slots = lock(slots);
    for slot in slots.iter_mut() {
        // The watcher must not take these exits for crashes.
        slot.state = State::Killed;
    }
    thread::scope(|scope| {
        for process in slots.iter_mut().filter_map(|s| s.process.as_mut()) {
            scope.spawn(|| process.terminate(STOP_GRACE));
        }
    });
}
