//! The cluster configuration, read from `config.yaml` (the file is read by the driver; this
//! module only parses and checks text, so it stays pure).

use crate::chat::Limits;
use crate::ids::ReplicaId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub replicas: Vec<ReplicaAddr>,
    /// Replica `i` keeps its log and snapshots in `<data_dir>/replica-<i>`.
    #[serde(default = "default_data_dir")]
    pub data_dir: String,
    /// A file holding the cluster's shared secret (at least 32 bytes), with which replicas
    /// prove to each other who they are. Without it, peers are checked by address only.
    #[serde(default)]
    pub cluster_secret_file: Option<String>,
    /// An idle primary sends a heartbeat this often.
    #[serde(default = "default_heartbeat_interval_ms")]
    pub heartbeat_interval_ms: u64,
    /// A backup that hears no primary for a random time in [t, 2t) starts a view change.
    #[serde(default = "default_election_timeout_ms")]
    pub election_timeout_ms: u64,
    /// Snapshot and compact the log after this many new entries.
    #[serde(default = "default_snapshot_every")]
    pub snapshot_every: u64,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub net: NetLimits,
    /// Timing of the two-crash protocol's leases (issue 8, rule 3).
    #[serde(default)]
    pub leases: LeaseSettings,
    /// Certificates for TLS on client and peer links; without it, links are plaintext.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
}

/// The files of the `tls:` section (read by the driver; `chat-admin new-tls DIR` writes them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The certificate authority (PEM) that issued every replica's certificate: clients
    /// check the replicas against it, and replicas check each other.
    pub ca: String,
    /// A replica's certificate chain and private key (PEM); `{id}` stands for its id, so
    /// that one configuration serves every replica.
    pub certificate: String,
    pub key: String,
}

impl TlsFiles {
    /// The certificate and key files of replica `id`.
    pub fn replica_files(&self, id: ReplicaId) -> (String, String) {
        let of = |path: &str| path.replace("{id}", &id.to_string());
        (of(&self.certificate), of(&self.key))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaAddr {
    pub id: ReplicaId,
    pub host: String,
    pub client_port: u16,
    pub peer_port: u16,
}

/// Limits of the network layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetLimits {
    /// Largest frame, in bytes; a larger length prefix closes the connection.
    pub max_frame_bytes: u32,
    /// Most open client connections per replica.
    pub max_connections: u32,
    /// Most open connections from one peer address.
    pub max_connections_per_address: u32,
    /// A connection must complete its handshake within this time.
    pub handshake_timeout_ms: u64,
    /// A frame started but not finished within this time closes the connection.
    pub partial_frame_timeout_ms: u64,
    /// `host:port`: if set, replica `i` serves Prometheus metrics over HTTP on
    /// `host:(port + i)` at `/metrics` (so replicas sharing a machine do not collide).
    pub metrics_addr: Option<String>,
    /// A client connection that sends nothing for this long is closed (its client
    /// reconnects when it needs to, and keeps its session).
    pub client_idle_timeout_ms: u64,
    /// Sessions one client connection may open: this many per second, after a burst of
    /// `session_open_burst_per_connection`. Over it, `OpenSession` is dropped unanswered
    /// (the client retries later).
    pub session_opens_per_s_per_connection: u32,
    pub session_open_burst_per_connection: u32,
    /// The same over all the client connections from one address.
    pub session_opens_per_s_per_address: u32,
    pub session_open_burst_per_address: u32,
    /// For this long after its last event, a replica's loop polls for the next without
    /// sleeping (yielding to any thread that is ready). It saves the wake-up of an idle CPU
    /// on every hop of a request, at the price of CPU time that would otherwise be idle;
    /// 0 never spins.
    pub poll_spin_us: u64,
}

impl Default for NetLimits {
    fn default() -> Self {
        NetLimits {
            max_frame_bytes: crate::codec::frame::DEFAULT_MAX_FRAME,
            max_connections: 1024,
            max_connections_per_address: 256,
            handshake_timeout_ms: 5_000,
            partial_frame_timeout_ms: 10_000,
            metrics_addr: None,
            client_idle_timeout_ms: 300_000,
            session_opens_per_s_per_connection: 1,
            session_open_burst_per_connection: 5,
            session_opens_per_s_per_address: 20,
            session_open_burst_per_address: 100,
            poll_spin_us: 500,
        }
    }
}

/// The `leases:` section: the fault model's timing bounds (README, "What each mode
/// tolerates"). The defaults make a promise last 1.26 s.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseSettings {
    /// L: how long a peer's answer to a heartbeat lets a replica count on that peer.
    pub lease_ms: u64,
    /// Bound on how much faster one replica's clock may run than another's, in millionths
    /// (10000 = 1 %).
    pub max_clock_drift_ppm: u32,
    /// A replica that notices its own process stalled longer than this drops its leases
    /// before it acts again; a longer stall that goes unnoticed is outside the model.
    pub pause_bound_ms: u64,
    /// Added to every promise: at least the pause bound plus the time from a lease check
    /// to the action it allows.
    pub margin_ms: u64,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        let d = crate::replica::LeaseOptions::default();
        LeaseSettings {
            lease_ms: d.lease.as_millis() as u64,
            max_clock_drift_ppm: d.max_clock_drift_ppm,
            pause_bound_ms: d.pause_bound.as_millis() as u64,
            margin_ms: d.margin.as_millis() as u64,
        }
    }
}

impl LeaseSettings {
    pub fn options(&self) -> crate::replica::LeaseOptions {
        use crate::time::Duration;
        crate::replica::LeaseOptions {
            lease: Duration::from_millis(self.lease_ms),
            max_clock_drift_ppm: self.max_clock_drift_ppm,
            margin: Duration::from_millis(self.margin_ms),
            pause_bound: Duration::from_millis(self.pause_bound_ms),
        }
    }
}

fn default_snapshot_every() -> u64 {
    10_000
}

fn default_data_dir() -> String {
    "./data".to_owned()
}

fn default_heartbeat_interval_ms() -> u64 {
    100
}

fn default_election_timeout_ms() -> u64 {
    1000
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: {0}")]
    Yaml(#[from] serde_norway::Error),
    #[error("config: {key}: {problem}")]
    Invalid { key: String, problem: String },
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

impl Config {
    /// Parses and checks the text of a `config.yaml`.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = serde_norway::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let n = self.replicas.len();
        if n == 0 || n > 9 || n.is_multiple_of(2) {
            return Err(invalid(
                "replicas",
                format!("need an odd count from 1 to 9, got {n}"),
            ));
        }
        let mut ids = BTreeSet::new();
        let mut ports = BTreeSet::new();
        for (i, r) in self.replicas.iter().enumerate() {
            if !ids.insert(r.id) {
                return Err(invalid(
                    format!("replicas[{i}].id"),
                    format!("duplicate id {}", r.id),
                ));
            }
            for (key, port) in [("client_port", r.client_port), ("peer_port", r.peer_port)] {
                if port == 0 {
                    return Err(invalid(
                        format!("replicas[{i}].{key}"),
                        "port 0 is not allowed",
                    ));
                }
                if !ports.insert((r.host.clone(), port)) {
                    return Err(invalid(
                        format!("replicas[{i}].{key}"),
                        format!("duplicate port {}:{port}", r.host),
                    ));
                }
            }
            if r.host.is_empty() {
                return Err(invalid(format!("replicas[{i}].host"), "must not be empty"));
            }
        }
        if ids.iter().copied().ne(0..n as ReplicaId) {
            return Err(invalid(
                "replicas",
                format!("ids must be 0..{} (each once)", n - 1),
            ));
        }
        if self.heartbeat_interval_ms == 0 {
            return Err(invalid("heartbeat_interval_ms", "must be positive"));
        }
        if self.election_timeout_ms < 2 * self.heartbeat_interval_ms {
            return Err(invalid(
                "election_timeout_ms",
                "must be at least twice heartbeat_interval_ms",
            ));
        }
        let leases = &self.leases;
        if leases.lease_ms < 2 * self.heartbeat_interval_ms {
            // A lease is renewed by heartbeats: at least two per lease.
            return Err(invalid(
                "leases.lease_ms",
                "must be at least twice heartbeat_interval_ms",
            ));
        }
        if leases.max_clock_drift_ppm > 100_000 {
            return Err(invalid(
                "leases.max_clock_drift_ppm",
                "must be at most 100000 (10 %)",
            ));
        }
        if leases.pause_bound_ms < 2 {
            return Err(invalid("leases.pause_bound_ms", "must be at least 2"));
        }
        if leases.margin_ms < leases.pause_bound_ms {
            return Err(invalid(
                "leases.margin_ms",
                "must be at least leases.pause_bound_ms",
            ));
        }
        if self.snapshot_every == 0 {
            return Err(invalid("snapshot_every", "must be positive"));
        }
        if let Some(addr) = &self.net.metrics_addr {
            let port = split_host_port(addr)
                .filter(|(host, port)| !host.is_empty() && *port != 0)
                .map(|(_, port)| port)
                .ok_or_else(|| {
                    invalid("net.metrics_addr", "must be host:port, e.g. 127.0.0.1:9100")
                })?;
            if usize::from(port) + n - 1 > usize::from(u16::MAX) {
                return Err(invalid(
                    "net.metrics_addr",
                    format!("port {port} + {} (one per replica) is past 65535", n - 1),
                ));
            }
        }
        for (key, value) in [
            (
                "net.client_idle_timeout_ms",
                self.net.client_idle_timeout_ms,
            ),
            (
                "net.session_opens_per_s_per_connection",
                self.net.session_opens_per_s_per_connection.into(),
            ),
            (
                "net.session_open_burst_per_connection",
                self.net.session_open_burst_per_connection.into(),
            ),
            (
                "net.session_opens_per_s_per_address",
                self.net.session_opens_per_s_per_address.into(),
            ),
            (
                "net.session_open_burst_per_address",
                self.net.session_open_burst_per_address.into(),
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be positive"));
            }
        }
        if self.net.max_frame_bytes < 4096 {
            return Err(invalid("net.max_frame_bytes", "must be at least 4096"));
        }
        // Every reply must fit in a frame: the largest are a full `6|` page and a full `0|`.
        let l = &self.limits;
        let frame = u64::from(self.net.max_frame_bytes);
        let message = 4 * u64::from(l.max_text_chars) + u64::from(l.max_name_bytes) + 32;
        if l.deliver_max == 0 || u64::from(l.deliver_max) * message + 64 > frame {
            return Err(invalid(
                "limits.deliver_max",
                "must be at least 1, and a page of that many longest messages must fit in \
                 net.max_frame_bytes",
            ));
        }
        // A `5|` of the longest text must be orderable: requests up to an eighth of a frame
        // are (`replica::Options::max_append_bytes` is a quarter, a request at most half).
        if message + 64 > frame / 8 {
            return Err(invalid(
                "net.max_frame_bytes",
                "must be at least 8 times the largest message (4 bytes per character)",
            ));
        }
        // The largest reply must fit in the client table by itself.
        if l.max_client_table_bytes < frame + crate::service::ROW_BYTES {
            return Err(invalid(
                "limits.max_client_table_bytes",
                "must hold at least one reply of net.max_frame_bytes",
            ));
        }
        let names = u64::from(l.list_max) * (u64::from(l.max_name_bytes) + 8) + 64;
        if l.list_max == 0 || names > frame {
            return Err(invalid(
                "limits.list_max",
                "must be at least 1, and that many longest names must fit in net.max_frame_bytes",
            ));
        }
        Ok(())
    }

    pub fn replica(&self, id: ReplicaId) -> Option<&ReplicaAddr> {
        self.replicas.iter().find(|r| r.id == id)
    }

    /// Where replica `id` serves its metrics, if `net.metrics_addr` is set: host and
    /// port + id.
    pub fn metrics_addr_of(&self, id: ReplicaId) -> Option<(String, u16)> {
        let (host, port) = split_host_port(self.net.metrics_addr.as_deref()?)?;
        Some((host.to_owned(), port.checked_add(u16::from(id))?))
    }
}

/// `host:port` or `[v6]:port` into host (without brackets) and port.
fn split_host_port(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some((host, port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = include_str!("../../config.yaml");

    #[test]
    fn checked_in_config_is_valid() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.replicas.len(), 3);
    }

    #[test]
    fn metrics_addr_gives_each_replica_its_own_port() {
        let with =
            |addr: &str| GOOD.replace("net:\n", &format!("net:\n  metrics_addr: \"{addr}\"\n"));
        let c = Config::parse(&with("127.0.0.1:9100")).unwrap();
        assert_eq!(c.metrics_addr_of(2), Some(("127.0.0.1".to_owned(), 9102)));
        let c = Config::parse(&with("[::1]:9100")).unwrap();
        assert_eq!(c.metrics_addr_of(0), Some(("::1".to_owned(), 9100)));
        assert_eq!(Config::parse(GOOD).unwrap().metrics_addr_of(0), None);
        for bad in ["9100", "host:", ":9100", "h:0", "h:65534"] {
            let e = err(&with(bad));
            assert!(e.contains("metrics_addr"), "{bad}: {e}");
        }
    }

    fn err(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn unknown_key_is_named() {
        let e = err(&format!("{GOOD}\nbogus_key: 1\n"));
        assert!(e.contains("bogus_key"), "{e}");
    }

    #[test]
    fn missing_field_is_named() {
        let e = err("data_dir: ./data\n");
        assert!(e.contains("replicas"), "{e}");
        let e = err("replicas:\n  - id: 0\n    host: 127.0.0.1\n    client_port: 7000\n");
        assert!(e.contains("peer_port"), "{e}");
    }

    /// Only the replicas must be written: everything else has the defaults of the
    /// checked-in `config.yaml` (less its secret and TLS files, which are optional).
    #[test]
    fn a_config_of_only_replicas_takes_the_defaults() {
        let only: String = GOOD.split("\ndata_dir:").next().unwrap().to_owned() + "\n";
        let c = Config::parse(&only).unwrap();
        let full = Config::parse(GOOD).unwrap();
        assert_eq!(
            c,
            Config {
                cluster_secret_file: None,
                tls: None,
                ..full
            }
        );
    }

    #[test]
    fn replies_must_fit_in_a_frame() {
        let e = err(&GOOD.replace("deliver_max: 100", "deliver_max: 100000"));
        assert!(e.contains("limits.deliver_max"), "{e}");
    }

    #[test]
    fn tls_files_name_each_replica() {
        let tls = Config::parse(GOOD).unwrap().tls.unwrap();
        assert_eq!(tls.ca, "./data/tls/ca.pem");
        let files = (
            "./data/tls/replica-2.pem".to_owned(),
            "./data/tls/replica-2.key".to_owned(),
        );
        assert_eq!(tls.replica_files(2), files);
        let (without, _) = GOOD.split_once("\ntls:\n").unwrap();
        assert_eq!(Config::parse(without).unwrap().tls, None);
        let e = err(&format!("{without}\ntls:\n  ca: t/ca.pem\n"));
        assert!(e.contains("certificate"), "{e}");
    }

    #[test]
    fn lease_settings_default_to_the_protocol_defaults_and_are_checked() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.leases.options(), crate::replica::LeaseOptions::default());
        let (head, tail) = GOOD.split_once("leases:\n").unwrap();
        let (_, after) = tail.split_once("\n# ").unwrap();
        let without = format!("{head}# {after}");
        assert_eq!(
            Config::parse(&without).unwrap().leases,
            LeaseSettings::default()
        );
        let with = |section: &str| format!("{without}\nleases:\n{section}");
        let c = Config::parse(&with("  lease_ms: 2000\n")).unwrap();
        assert_eq!(c.leases.lease_ms, 2000);
        assert_eq!(c.leases.margin_ms, 250, "the others keep their defaults");
        for (bad, key) in [
            ("  lease_ms: 150\n", "leases.lease_ms"),
            (
                "  max_clock_drift_ppm: 200000\n",
                "leases.max_clock_drift_ppm",
            ),
            ("  pause_bound_ms: 0\n", "leases.pause_bound_ms"),
            ("  pause_bound_ms: 300\n", "leases.margin_ms"),
            ("  lease: 1\n", "lease"),
        ] {
            let e = err(&with(bad));
            assert!(e.contains(key), "{bad}: {e}");
        }
    }

    #[test]
    fn duplicate_id_and_port_are_named() {
        let e = err(&GOOD.replacen("id: 1", "id: 0", 1));
        assert!(e.contains("replicas[1].id"), "{e}");
        let e = err(&GOOD.replacen("client_port: 7001", "client_port: 7000", 1));
        assert!(e.contains("replicas[1].client_port"), "{e}");
    }
}
