//! The replica's Prometheus metrics: counters and gauges the event loop and the storage thread
//! update (atomics: cheap, never blocking), and, if the configuration names `metrics_addr`,
//! an HTTP thread that serves them in the text format at `/metrics`. The registry and its
//! encoding are `prometheus-client`'s; the HTTP server is `tiny_http`'s.

use prometheus_client::encoding::{text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use tracing::{info, warn};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct OpLabel {
    pub op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ErrorLabel {
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PeerLabel {
    pub peer: u8,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct KindLabel {
    pub kind: &'static str,
}

/// Every metric of one replica; clones share the same values.
#[derive(Clone, Debug)]
pub(super) struct Metrics {
    /// Client requests received, by operation.
    pub requests: Family<OpLabel, Counter>,
    /// Replies that were errors, by error.
    pub errors: Family<ErrorLabel, Counter>,
    /// Entries committed (as this replica learned of them).
    pub commits: Counter,
    pub commit_index: Gauge,
    /// Changes of view, by the reason logged with them.
    pub view_changes: Family<ReasonLabel, Counter>,
    pub view: Gauge,
    /// 1 while this replica is the primary.
    pub is_primary: Gauge,
    /// Seconds each fsync of the log took.
    pub fsync_seconds: Histogram,
    /// On the primary: entries each backup has yet to acknowledge.
    pub replication_lag: Family<PeerLabel, Gauge>,
    /// Open connections: client, peer_in (other replicas' to us), peer_out (ours to them).
    pub connections: Family<KindLabel, Gauge>,
    /// Bytes queued on connections, not yet written to their sockets (sampled).
    pub queued_bytes: Gauge,
    /// Chat messages waiting for their recipients in the applied state, and their bytes
    /// (sampled; on backups too, as far as they have applied).
    pub chat_queued_messages: Gauge,
    pub chat_queued_bytes: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Family::default(),
            errors: Family::default(),
            commits: Counter::default(),
            commit_index: Gauge::default(),
            view_changes: Family::default(),
            view: Gauge::default(),
            is_primary: Gauge::default(),
            // 50 µs to about 3.3 s.
            fsync_seconds: Histogram::new(exponential_buckets(50e-6, 2.0, 17)),
            replication_lag: Family::default(),
            connections: Family::default(),
            queued_bytes: Gauge::default(),
            chat_queued_messages: Gauge::default(),
            chat_queued_bytes: Gauge::default(),
        }
    }
}

impl Metrics {
    fn registry(&self, replica: u8) -> Registry {
        let mut r = Registry::with_prefix_and_labels(
            "chat",
            [("replica".into(), replica.to_string().into())].into_iter(),
        );
        r.register(
            "requests",
            "Client requests received, by operation",
            self.requests.clone(),
        );
        r.register(
            "reply_errors",
            "Replies that were errors, by error",
            self.errors.clone(),
        );
        r.register("commits", "Log entries committed", self.commits.clone());
        r.register(
            "commit_index",
            "Highest committed log index",
            self.commit_index.clone(),
        );
        r.register(
            "view_changes",
            "View changes, by reason",
            self.view_changes.clone(),
        );
        r.register("view", "Current view", self.view.clone());
        r.register(
            "is_primary",
            "1 while this replica is the primary",
            self.is_primary.clone(),
        );
        r.register(
            "fsync_seconds",
            "Time of each fsync of the write-ahead log",
            self.fsync_seconds.clone(),
        );
        r.register(
            "replication_lag_entries",
            "On the primary: log entries each backup has not acknowledged",
            self.replication_lag.clone(),
        );
        r.register(
            "connections",
            "Open connections, by kind",
            self.connections.clone(),
        );
        r.register(
            "queued_bytes",
            "Bytes queued on connections, not yet written",
            self.queued_bytes.clone(),
        );
        r.register(
            "queued_messages",
            "Chat messages waiting in recipients' queues (applied state)",
            self.chat_queued_messages.clone(),
        );
        r.register(
            "queued_message_bytes",
            "Bytes of the chat messages waiting in queues (applied state)",
            self.chat_queued_bytes.clone(),
        );
        r
    }

    /// Serves `/metrics` on `addr` from a thread of its own, for the life of the process.
    pub(super) fn serve(&self, addr: SocketAddr, replica: u8) -> std::io::Result<()> {
        let server = tiny_http::Server::http(addr).map_err(std::io::Error::other)?;
        let registry = Arc::new(self.registry(replica));
        info!("metrics on http://{addr}/metrics");
        thread::Builder::new()
            .name("chat-metrics".to_owned())
            .spawn(move || {
                for request in server.incoming_requests() {
                    let response = if request.url() == "/metrics" {
                        let mut body = String::new();
                        match text::encode(&mut body, &registry) {
                            Ok(()) => tiny_http::Response::from_string(body).with_header(
                                "Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8"
                                    .parse::<tiny_http::Header>()
                                    .expect("a valid header"),
                            ),
                            Err(e) => tiny_http::Response::from_string(format!("{e}\n"))
                                .with_status_code(500),
                        }
                    } else {
                        tiny_http::Response::from_string("see /metrics\n").with_status_code(404)
                    };
                    if let Err(e) = request.respond(response) {
                        warn!("metrics: cannot answer a scrape: {e}");
                    }
                }
            })?;
        Ok(())
    }
}
