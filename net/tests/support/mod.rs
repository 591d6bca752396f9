//! A test cluster: replicas run on threads of the test's own process, on free local ports,
//! each with its own data directory under one temporary directory.

use chat_core::config::Config;
use chat_core::password::HashCost;
use chat_net::server::{run, ServerError, ServerOptions, Shutdown};
use std::net::TcpListener;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The test clusters' `net.max_frame_bytes`, which the tests' own connections use too.
pub const MAX_FRAME: u32 = 65_536;
/// `limits.deliver_max`: a page of that many longest messages must fit in [`MAX_FRAME`].
const DELIVER_MAX: u32 = 10;
/// The test clusters' shared secret (what a real one would be: 32 random bytes, as hex).
pub const SECRET: &[u8] = b"5f0c9a1e7b3d2c4f8a6e0b9d1c3f5a7e2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f1a\n";
/// How long the replicas may take to stop once asked.
const STOP_WITHIN: Duration = Duration::from_secs(20);

pub struct Cluster {
    pub config: Config,
    pub dir: tempfile::TempDir,
    /// The work of hashing a new password, for the replicas started from now on.
    pub password_cost: HashCost,
    servers: Vec<(Shutdown, JoinHandle<Result<(), ServerError>>)>,
}

impl Cluster {
    /// Configures `replicas` replicas on free ports, with a cluster secret file holding
    /// [`SECRET`] if `secret`, the top-level YAML lines `settings` and the lines `net` under
    /// `net:`; runs none of them yet.
    pub fn configure(replicas: usize, secret: bool, settings: &str, net: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(2 * replicas);
        let mut yaml = String::from("replicas:\n");
        for id in 0..replicas {
            yaml += &format!(
                "  - id: {id}\n    host: 127.0.0.1\n    client_port: {}\n    peer_port: {}\n",
                ports[2 * id],
                ports[2 * id + 1]
            );
        }
        yaml += &format!(
            "data_dir: {}\nheartbeat_interval_ms: 50\nelection_timeout_ms: 300\n",
            dir.path().display()
        );
        if secret {
            let path = dir.path().join("cluster.secret");
            std::fs::write(&path, SECRET).unwrap();
            yaml += &format!("cluster_secret_file: {}\n", path.display());
        }
        yaml += &format!("limits:\n  deliver_max: {DELIVER_MAX}\n");
        yaml += settings;
        yaml += &format!("net:\n  max_frame_bytes: {MAX_FRAME}\n");
        yaml += net;
        Cluster {
            config: Config::parse(&yaml).unwrap(),
            dir,
            password_cost: ServerOptions::default().password_cost,
            servers: Vec::new(),
        }
    }

    /// Runs replicas `0..running`, on the disks of any earlier run.
    pub fn run(&mut self, running: usize) {
        self.servers = (0..running as u8)
            .map(|id| {
                let shutdown = Shutdown::new();
                let opts = ServerOptions {
                    data_dir: Some(self.dir.path().join(format!("replica-{id}"))),
                    shutdown: shutdown.clone(),
                    password_cost: self.password_cost,
                    ..ServerOptions::default()
                };
                let config = self.config.clone();
                (shutdown, thread::spawn(move || run(&config, id, opts)))
            })
            .collect();
    }

    /// Asks every replica to stop and checks that each stopped cleanly.
    pub fn stop(&mut self) {
        for (shutdown, _) in &self.servers {
            shutdown.request();
        }
        let deadline = Instant::now() + STOP_WITHIN;
        for (_, thread) in std::mem::take(&mut self.servers) {
            while !thread.is_finished() {
                assert!(Instant::now() < deadline, "a replica did not stop");
                thread::sleep(Duration::from_millis(10));
            }
            thread
                .join()
                .unwrap()
                .expect("the replica stopped with an error");
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (shutdown, _) in &self.servers {
            shutdown.request();
        }
    }
}

/// Ports free right now: bound all at once (so that no two are the same), then released.
fn free_ports(n: usize) -> Vec<u16> {
    let holders: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    holders
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}
