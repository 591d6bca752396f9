//! What a run is made of: the options a caller chooses, and the fault plan drawn from the seed.

use chat_core::chat::Limits;
use chat_core::replica::Mutations;
use chat_core::time::Duration;
use rand::rngs::SmallRng;
use rand::Rng;
use std::path::PathBuf;

/// The drift bound of the replicas' clocks unless a run says otherwise.
pub const DEFAULT_MAX_CLOCK_DRIFT: f64 = 0.01;

/// A kind of random fault of the busy phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// kill -9 of a replica process on a host that stays up: every connection to its ports,
    /// peer and client, is refused at once (replicas get `Input::PeerRefused`).
    Crash,
    /// The host of a replica crashes or freezes: silence, no refusal.
    HostCrash,
    /// The replica process stops (SIGSTOP) for a while: it handles nothing, its timers do
    /// not fire, messages to it wait; its clock jumps when it resumes.
    Pause,
    /// The replicas split in two sides (clients join one side each); silence across.
    Partition,
    /// One replica's messages to another are dropped (a one-way cut).
    Cut,
    /// A client and a replica cannot reach each other.
    ClientCut,
}

impl FaultKind {
    /// In declaration order, so that `kind as usize` indexes it.
    pub const ALL: [FaultKind; 6] = [
        FaultKind::Crash,
        FaultKind::HostCrash,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Cut,
        FaultKind::ClientCut,
    ];

    /// The name `SIM_INJECT` and `--inject` take.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::HostCrash => "host_crash",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Cut => "cut",
            FaultKind::ClientCut => "client_cut",
        }
    }
}

/// A set of [`FaultKind`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inject(u8);

impl Inject {
    pub const ALL: Inject = Inject((1 << FaultKind::ALL.len()) - 1);
    pub const NONE: Inject = Inject(0);

    pub fn with(self, kind: FaultKind) -> Inject {
        Inject(self.0 | 1 << kind as u8)
    }

    pub fn contains(self, kind: FaultKind) -> bool {
        self.0 & 1 << kind as u8 != 0
    }

    /// Parses a comma-separated list of kind names (`crash,pause`), or `all`.
    pub fn parse(list: &str) -> Result<Inject, String> {
        let mut set = Inject::NONE;
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "all" {
                return Ok(Inject::ALL);
            }
            let kind = FaultKind::ALL
                .into_iter()
                .find(|k| k.name() == name)
                .ok_or_else(|| {
                    let known: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                    format!("unknown fault kind {name:?}; known: {known:?} or all")
                })?;
            set = set.with(kind);
        }
        Ok(set)
    }
}

impl std::fmt::Display for Inject {
    /// The list [`Inject::parse`] reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == Inject::ALL {
            return f.write_str("all");
        }
        let names: Vec<&str> = FaultKind::ALL
            .into_iter()
            .filter(|&k| self.contains(k))
            .map(FaultKind::name)
            .collect();
        f.write_str(&names.join(","))
    }
}

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
    /// Which kinds of random fault may be injected (the others get weight zero).
    pub inject: Inject,
    /// Each replica's clock runs at a rate within this fraction of real time (0.01: ±1 %),
    /// drawn from the seed.
    pub max_clock_drift: f64,
    /// Clients issue random requests during the busy phase.
    pub workload: bool,
    /// Deliberate protocol bugs in every replica (checker self-tests).
    pub mutations: Mutations,
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
            inject: Inject::ALL,
            max_clock_drift: DEFAULT_MAX_CLOCK_DRIFT,
            workload: true,
            mutations: Mutations::default(),
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
    /// Relative weights of the fault actions, indexed by [`FaultKind`].
    pub weights: [u32; 6],
    /// Mean time a crashed replica (process or host) stays down / a partition lasts.
    pub down_for: Duration,
    pub partition_for: Duration,
    /// Probability that a pause is long (over the election timeout: up to `long_pause_max`)
    /// rather than short (up to the election timeout).
    pub long_pause: f64,
    pub long_pause_max: Duration,
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
            weights: [0; 6],
            down_for: Duration::from_secs(1),
            partition_for: Duration::from_secs(1),
            long_pause: 0.0,
            long_pause_max: Duration::from_secs(1),
            torn: 0.0,
            corrupt_once: false,
            all_down: false,
        }
    }

    /// The plan of a random faulty run; kinds not in `inject` get weight zero (every
    /// parameter is drawn all the same, so the others do not change with `inject`).
    pub fn draw(rng: &mut SmallRng, inject: Inject) -> FaultPlan {
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
            weights: FaultKind::ALL.map(|kind| {
                let weight = match kind {
                    FaultKind::Crash => rng.gen_range(1..=4),
                    FaultKind::HostCrash | FaultKind::Pause => rng.gen_range(0..=2),
                    FaultKind::Partition => rng.gen_range(0..=3),
                    FaultKind::Cut | FaultKind::ClientCut => rng.gen_range(0..=2),
                };
                if inject.contains(kind) {
                    weight
                } else {
                    0
                }
            }),
            down_for: Duration::from_millis(rng.gen_range(200..=4_000)),
            partition_for: Duration::from_millis(rng.gen_range(300..=5_000)),
            long_pause: rng.gen_range(0.0..1.0),
            long_pause_max: Duration::from_millis(rng.gen_range(1_000..=5_000)),
            torn: rng.gen_range(0.0..1.0),
            corrupt_once: rng.gen_bool(0.15),
            all_down: rng.gen_bool(0.1),
        }
    }
}
