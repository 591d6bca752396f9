//! What a run is made of: the options a caller chooses, and the fault plan drawn from the seed.

use chat_core::chat::Limits;
use chat_core::replica::Faults;
use chat_core::time::Duration;
use rand::rngs::SmallRng;
use rand::Rng;
use std::path::PathBuf;

/// Settings of one run. A run is a pure function of these.
#[derive(Clone, Debug)]
pub struct SimOptions {
    pub seed: u64,
    pub replicas: u8,
    pub clients: usize,
    /// Simulated time of the busy phase (random workload, and faults if enabled); the quiet
    /// phase follows it.
    pub busy_for: Duration,
    /// Inject random network, disk and process faults during the busy phase.
    pub random_faults: bool,
    /// Clients issue random requests during the busy phase.
    pub workload: bool,
    /// Deliberate protocol bugs in every replica (checker self-tests).
    pub replica_faults: Faults,
    /// Snapshot interval of the replicas; `None`: drawn from the seed.
    pub snapshot_every: Option<u64>,
    pub limits: Limits,
    /// In the quiet phase every pending request must complete within this simulated time.
    pub liveness_bound: Duration,
    /// Print every event to stderr.
    pub verbose: bool,
    /// Hash every event into the run's trace digest (for the determinism test).
    pub trace_digest: bool,
    /// Write the client history as JSON Lines here.
    pub history_path: Option<PathBuf>,
}

impl SimOptions {
    /// The random faulty run of `seed`, as the soak and the seed tests run it.
    pub fn for_seed(seed: u64) -> SimOptions {
        SimOptions {
            seed,
            replicas: 3,
            clients: 4,
            busy_for: Duration::from_secs(20),
            random_faults: true,
            workload: true,
            replica_faults: Faults::default(),
            snapshot_every: None,
            // Small pages, so that `6|` often leaves messages queued and the drain must ask
            // again.
            limits: Limits {
                deliver_max: 3,
                ..Limits::default()
            },
            liveness_bound: Duration::from_secs(20),
            verbose: false,
            trace_digest: false,
            history_path: None,
        }
    }

    /// A run without random faults or workload, for scripted scenarios.
    pub fn scripted(seed: u64) -> SimOptions {
        SimOptions {
            random_faults: false,
            workload: true,
            ..SimOptions::for_seed(seed)
        }
    }
}

/// The fault parameters of one run, drawn from its seed.
#[derive(Clone, Debug)]
pub struct FaultPlan {
    /// Probability that a message between replicas is lost.
    pub loss: f64,
    /// Probability that a message between replicas arrives twice.
    pub duplicate: f64,
    /// Message latency is uniform in this range (microseconds); a wide range reorders.
    pub latency_us: (u64, u64),
    /// Disk sync latency range (microseconds).
    pub disk_latency_us: (u64, u64),
    /// Mean time between random fault actions; `None`: no random faults.
    pub fault_every: Option<Duration>,
    /// Relative weights of the fault actions: crash, partition, one-way cut, client cut.
    pub weights: [u32; 4],
    /// Mean time a crashed replica stays down / a partition lasts.
    pub down_for: Duration,
    pub partition_for: Duration,
    /// Probability that a crash leaves a random prefix of the unsynced bytes (a torn tail).
    pub torn: f64,
    /// Corrupt a synced record on one replica while it is down, once in the run.
    pub corrupt_once: bool,
    /// Allow every replica down at once (otherwise at most a minority).
    pub all_down: bool,
}

impl FaultPlan {
    /// No faults: a steady network and disk.
    pub fn calm() -> FaultPlan {
        FaultPlan {
            loss: 0.0,
            duplicate: 0.0,
            latency_us: (100, 2_000),
            disk_latency_us: (50, 1_000),
            fault_every: None,
            weights: [0; 4],
            down_for: Duration::from_secs(1),
            partition_for: Duration::from_secs(1),
            torn: 0.0,
            corrupt_once: false,
            all_down: false,
        }
    }

    pub fn draw(rng: &mut SmallRng) -> FaultPlan {
        let pick = |rng: &mut SmallRng, p: f64, max: f64| {
            if rng.gen_bool(p) {
                rng.gen_range(0.0..max)
            } else {
                0.0
            }
        };
        let loss = pick(rng, 0.7, 0.10);
        let duplicate = pick(rng, 0.5, 0.05);
        let latency_us = (100, rng.gen_range(1_000..=20_000));
        let disk_latency_us = if rng.gen_bool(0.2) {
            (1_000, rng.gen_range(5_000..=50_000))
        } else {
            (50, rng.gen_range(200..=5_000))
        };
        FaultPlan {
            loss,
            duplicate,
            latency_us,
            disk_latency_us,
            fault_every: Some(Duration::from_millis(rng.gen_range(500..=4_000))),
            weights: [
                rng.gen_range(1..=4),
                rng.gen_range(0..=3),
                rng.gen_range(0..=2),
                rng.gen_range(0..=2),
            ],
            down_for: Duration::from_millis(rng.gen_range(200..=4_000)),
            partition_for: Duration::from_millis(rng.gen_range(300..=5_000)),
            torn: rng.gen_range(0.0..1.0),
            corrupt_once: rng.gen_bool(0.15),
            all_down: rng.gen_bool(0.1),
        }
    }
}
