//! What a run is made of: the options a caller chooses, and the fault plan drawn from the seed.

use crate::checker::liveness::Promise;
use chat_core::chat::Limits;
use chat_core::replica::Mutations;
use chat_core::time::Duration;
use rand::rngs::SmallRng;
use rand::Rng;
use std::path::PathBuf;

/// The drift bound of the replicas' clocks unless a run says otherwise.
pub const DEFAULT_MAX_CLOCK_DRIFT: f64 = 0.01;

/// The longest process pause within the fault model (issue 8's pause bound, the protocol's
/// default): random [`FaultKind::Pause`]s stay within it; [`FaultKind::LongPause`] goes
/// beyond it.
pub const DEFAULT_PAUSE_BOUND: Duration = Duration::from_millis(200);

/// A kind of random fault of the busy phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// kill -9 of a replica process on a host that stays up: every connection to its ports,
    /// peer and client, is refused at once (replicas get `Input::PeerRefused`).
    Crash,
    /// The host of a replica crashes or freezes: silence, no refusal.
    HostCrash,
    /// The replica process stops (SIGSTOP) for at most the pause bound
    /// ([`SimOptions::pause_bound`]): it handles nothing, its timers do not fire, messages
    /// to it wait; its clock jumps when it resumes.
    Pause,
    /// A pause longer than the pause bound (up to 1-5 s): outside the fault model. The
    /// protocol cannot prevent what a replica does with a lease it checked just before the
    /// pause; it must notice its own stall when it resumes and drop its leases before it acts.
    /// Never in `all`: name it (`all,long_pause`).
    LongPause,
    /// The replicas split in two sides (clients join one side each); silence across.
    Partition,
    /// One replica's messages to another are dropped (a one-way cut).
    Cut,
    /// A client and a replica cannot reach each other.
    ClientCut,
}

impl FaultKind {
    /// In declaration order, so that `kind as usize` indexes it.
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Crash,
        FaultKind::HostCrash,
        FaultKind::Pause,
        FaultKind::LongPause,
        FaultKind::Partition,
        FaultKind::Cut,
        FaultKind::ClientCut,
    ];

    /// Within the fault model: the kinds `all` means.
    pub fn in_model(self) -> bool {
        self != FaultKind::LongPause
    }

    /// The name `SIM_INJECT` and `--inject` take.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::HostCrash => "host_crash",
            FaultKind::Pause => "pause",
            FaultKind::LongPause => "long_pause",
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
    /// Every kind within the fault model (not [`FaultKind::LongPause`]): the default.
    pub const ALL: Inject =
        Inject(((1 << FaultKind::ALL.len()) - 1) & !(1 << FaultKind::LongPause as u8));
    pub const NONE: Inject = Inject(0);

    pub fn with(self, kind: FaultKind) -> Inject {
        Inject(self.0 | 1 << kind as u8)
    }

    pub fn contains(self, kind: FaultKind) -> bool {
        self.0 & 1 << kind as u8 != 0
    }

    /// Only process crashes: the schedules in which issue 8's rules promise liveness
    /// whenever one member of the current view is up.
    pub fn crash_only(self) -> bool {
        self == Inject::NONE.with(FaultKind::Crash)
    }

    /// Parses a comma-separated list of kind names (`crash,pause`), where `all` stands for
    /// every kind within the model (`all,long_pause` adds pauses beyond it).
    pub fn parse(list: &str) -> Result<Inject, String> {
        let mut set = Inject::NONE;
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "all" {
                set = Inject(set.0 | Inject::ALL.0);
                continue;
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
        let all = self.0 & Inject::ALL.0 == Inject::ALL.0;
        let mut names: Vec<&str> = if all { vec!["all"] } else { Vec::new() };
        names.extend(
            FaultKind::ALL
                .into_iter()
                .filter(|&k| self.contains(k) && !(all && k.in_model()))
                .map(FaultKind::name),
        );
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
    /// The longest pause within the fault model: random pauses of kind
    /// [`FaultKind::Pause`] last at most this long, those of kind [`FaultKind::LongPause`]
    /// longer.
    pub pause_bound: Duration,
    /// Clients issue random requests during the busy phase.
    pub workload: bool,
    /// Deliberate protocol bugs in every replica (checker self-tests).
    pub mutations: Mutations,
    /// Snapshot interval of the replicas; `None`: drawn from the seed.
    pub snapshot_every: Option<u64>,
    pub limits: Limits,
    /// In the quiet phase every pending request must complete within this simulated time.
    pub liveness_bound: Duration,
    /// Which protocol's liveness promise the busy phase holds the replicas to
    /// ([`crate::checker::liveness::promised`]).
    pub promise: Promise,
    /// In the busy phase, once liveness has been promised without a break for this long,
    /// every request pending since before then must have completed: a client's reply
    /// timeout (2 s) and backoff (up to 1 s) while it finds the primary, an election and a
    /// catch-up fit several times over.
    pub busy_liveness_bound: Duration,
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
            pause_bound: DEFAULT_PAUSE_BOUND,
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
            promise: Promise::TwoCrash,
            busy_liveness_bound: Duration::from_secs(10),
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
    pub weights: [u32; FaultKind::ALL.len()],
    /// Mean time a crashed replica (process or host) stays down / a partition lasts.
    pub down_for: Duration,
    pub partition_for: Duration,
    /// The longest of the pauses beyond the pause bound ([`FaultKind::LongPause`]).
    pub long_pause_max: Duration,
    /// Probability that a crash leaves a random prefix of the unsynced bytes (a torn tail).
    pub torn: f64,
    /// Corrupt a synced record on one replica while it is down, once in the run.
    pub corrupt_once: bool,
    /// Allow every replica down at once (otherwise at most a minority).
    pub all_down: bool,
    /// How long a replica's driver takes, after an input, before it carries out the
    /// replica's outputs; inputs that arrive meanwhile join the batch (as in `chat-net`'s
    /// event loop, which carries them out once per turn). Zero: after every input.
    pub driver_turn: Duration,
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
            weights: [0; FaultKind::ALL.len()],
            down_for: Duration::from_secs(1),
            partition_for: Duration::from_secs(1),
            long_pause_max: Duration::from_secs(1),
            torn: 0.0,
            corrupt_once: false,
            all_down: false,
            driver_turn: Duration::ZERO,
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
                    FaultKind::HostCrash | FaultKind::Pause | FaultKind::LongPause => {
                        rng.gen_range(0..=2)
                    }
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
            long_pause_max: Duration::from_millis(rng.gen_range(1_000..=5_000)),
            torn: rng.gen_range(0.0..1.0),
            corrupt_once: rng.gen_bool(0.15),
            all_down: rng.gen_bool(0.1),
            // Drawn last, so that the draws above are those of earlier versions.
            driver_turn: if rng.gen_bool(0.5) {
                Duration::from_micros(rng.gen_range(1..=2_000))
            } else {
                Duration::ZERO
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_pauses_are_outside_all_and_named_on_their_own() {
        let all = Inject::parse("all").unwrap();
        assert!(all.contains(FaultKind::Pause) && !all.contains(FaultKind::LongPause));
        let more = Inject::parse("all,long_pause").unwrap();
        assert!(more.contains(FaultKind::LongPause) && more.contains(FaultKind::Crash));
        assert_eq!(more.to_string(), "all,long_pause");
        assert_eq!(Inject::parse(&more.to_string()).unwrap(), more);
        assert_eq!(
            Inject::parse("pause,crash").unwrap().to_string(),
            "crash,pause"
        );
        assert!(Inject::parse("crash").unwrap().crash_only());
        assert!(!Inject::parse("crash,pause").unwrap().crash_only());
    }

    #[test]
    fn a_plan_keeps_its_parameters_whatever_is_injected() {
        use rand::SeedableRng;
        let draw = |inject| FaultPlan::draw(&mut SmallRng::seed_from_u64(9), inject);
        let (all, crash) = (draw(Inject::ALL), draw(Inject::parse("crash").unwrap()));
        assert_eq!(all.long_pause_max, crash.long_pause_max);
        assert_eq!(all.weights[FaultKind::Crash as usize], crash.weights[0]);
        assert_eq!(all.weights[FaultKind::LongPause as usize], 0);
    }
}
