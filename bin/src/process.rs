//! Replica child processes that cannot outlive their owner: dropping a [`ServerProcess`] kills
//! it (`chat demo` stops its replicas on exit; the tests kill every process they start). Also
//! [`local_replicas`], the addresses for replicas started on this machine.

use std::fs::{File, OpenOptions};
use std::io;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
}

impl ServerProcess {
    /// Starts `command` with its output appended to the file `log`.
    pub fn spawn(mut command: Command, log: &Path) -> io::Result<ServerProcess> {
        let out = append(log)?;
        let err = out.try_clone()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()?;
        Ok(ServerProcess { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: the process stops at once, without finishing anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGSTOP: the process freezes where it is (its sockets stay open, nothing answers).
    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT: a paused process carries on.
    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&mut self, signal: libc::c_int) {
        if let Ok(None) = self.child.try_wait() {
            if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
                // SAFETY: kill(2) with a valid signal has no memory effects; the pid is our
                // own child, which has not been reaped yet (try_wait returned None).
                unsafe { libc::kill(pid, signal) };
            }
        }
    }

    /// SIGTERM (and SIGCONT, in case it is paused), then SIGKILL if it has not exited after
    /// `grace`.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        self.signal(libc::SIGTERM);
        self.resume();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        None
    }

    /// The exit status, if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `replicas:` section of a configuration for `n` replicas on 127.0.0.1, on ports free
/// right now.
pub fn local_replicas(n: usize) -> io::Result<String> {
    let ports = free_ports(2 * n)?;
    let mut text = String::from("replicas:\n");
    for (id, pair) in ports.chunks(2).enumerate() {
        text += &format!(
            "  - id: {id}\n    host: 127.0.0.1\n    client_port: {}\n    peer_port: {}\n",
            pair[0], pair[1]
        );
    }
    Ok(text)
}

/// Ports bound all at once (so that no two are the same), then released.
fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    let holders = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()?;
    holders
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Why [`run_replica`] failed: the configuration could not be loaded, or the replica stopped
/// with an error.
#[derive(Debug)]
pub enum ReplicaError {
    Config(String),
    Server(chat_net::server::ServerError),
}

impl std::fmt::Display for ReplicaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplicaError::Config(e) => f.write_str(e),
            ReplicaError::Server(e) => e.fmt(f),
        }
    }
}

/// Runs replica `id` of the configuration `config` (found as [`crate::settings::load`] does)
/// until SIGINT or SIGTERM, as `chat-server [--config PATH] --id N [--data-dir DIR] [--rejoin]` does.
/// The caller sets up logging.
pub fn run_replica(
    config: Option<&Path>,
    id: chat_core::ids::ReplicaId,
    data_dir: Option<std::path::PathBuf>,
    rejoin: bool,
) -> Result<(), ReplicaError> {
    let config = crate::settings::load(config)
        .map_err(ReplicaError::Config)?
        .config;
    let options = chat_net::server::ServerOptions {
        data_dir,
        rejoin,
        handle_signals: true,
        ..chat_net::server::ServerOptions::default()
    };
    chat_net::server::run(&config, id, options).map_err(ReplicaError::Server)
}
