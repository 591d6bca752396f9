//! `chat-sim`: the deterministic simulator. The real `chat-core` replicas and virtual
//! clients run on a virtual network, disk and clock; everything random comes from one seed,
//! so a run is a pure function of its [`SimOptions`] and a failing seed reproduces exactly.
//!
//! - [`engine`]: the event loop, the random faults, the quiet phase, the scripting API.
//! - [`network`], [`disk`]: the virtual network and disks with their faults.
//! - [`client`], [`workload`]: virtual clients and their random chat workload.
//! - [`checker`]: linearizability, messages, agreement (liveness is judged by the engine).
//! - [`history`]: what the clients saw, also as JSON Lines (format in `sim/README.md`).

pub mod checker;
pub mod client;
pub mod clock;
pub mod disk;
pub mod engine;
pub mod history;
pub mod model;
pub mod network;
pub mod options;
pub mod passwords;
mod trace;
pub mod workload;

pub use checker::liveness::Promise;
pub use checker::{Checker, Failure};
pub use engine::{Report, Sim, Stats, Step, Target};
pub use options::{FaultKind, FaultPlan, Inject, SimOptions};

use chat_core::replica::Mutations;

/// Runs one whole run: the busy phase, the quiet phase and every checker.
pub fn run(opts: SimOptions) -> Result<Report, Failure> {
    let busy_for = opts.busy_for;
    let mut sim = Sim::new(opts);
    if let Err(failure) = sim.run_for(busy_for) {
        sim.write_history();
        return Err(failure);
    }
    sim.finish()
}

/// One random faulty run: its seed, and the switches a reproduce line carries as
/// environment variables.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RunSpec {
    /// `SIM_SEED`
    pub seed: u64,
    /// Deliberate protocol bugs (`SIM_MUTATION`, comma-separated [`Mutations::NAMES`]).
    pub mutations: Mutations,
    /// A smaller client table, so that sessions are evicted (`SIM_MAX_SESSIONS`).
    pub max_sessions: Option<u32>,
    /// Another number of replicas than 3 (`SIM_REPLICAS`).
    pub replicas: Option<u8>,
    /// Only these kinds of random fault (`SIM_INJECT`, comma-separated
    /// [`FaultKind::name`]s, or `all`); `None`: all of them.
    pub inject: Option<Inject>,
    /// Another clock drift bound than [`options::DEFAULT_MAX_CLOCK_DRIFT`]
    /// (`SIM_MAX_CLOCK_DRIFT`, a fraction: 0.01 is ±1 %).
    pub max_clock_drift: Option<f64>,
}

impl RunSpec {
    pub fn new(seed: u64) -> RunSpec {
        RunSpec {
            seed,
            ..RunSpec::default()
        }
    }

    /// Reads `SIM_SEED`, `SIM_MUTATION`, `SIM_MAX_SESSIONS`, `SIM_REPLICAS`, `SIM_INJECT` and
    /// `SIM_MAX_CLOCK_DRIFT`; `None` without `SIM_SEED`.
    pub fn from_env() -> Result<Option<RunSpec>, String> {
        let var = |name| std::env::var(name).ok();
        let Some(seed) = var("SIM_SEED") else {
            return Ok(None);
        };
        let number = |name: &str, text: String| {
            text.trim()
                .parse()
                .map_err(|e| format!("{name}={text:?}: {e}"))
        };
        Ok(Some(RunSpec {
            seed: number("SIM_SEED", seed)?,
            mutations: parse_mutations(&var("SIM_MUTATION").unwrap_or_default())?,
            max_sessions: var("SIM_MAX_SESSIONS")
                .map(|n| number("SIM_MAX_SESSIONS", n).map(|n| n as u32))
                .transpose()?,
            replicas: var("SIM_REPLICAS")
                .map(|n| number("SIM_REPLICAS", n).map(|n| n as u8))
                .transpose()?,
            inject: var("SIM_INJECT")
                .map(|list| Inject::parse(&list))
                .transpose()?,
            max_clock_drift: var("SIM_MAX_CLOCK_DRIFT")
                .map(|d| parse_drift(&d))
                .transpose()?,
        }))
    }

    pub fn options(&self) -> SimOptions {
        let mut opts = SimOptions::for_seed(self.seed);
        opts.mutations = self.mutations;
        if let Some(max) = self.max_sessions {
            opts.limits.max_sessions = max;
        }
        if let Some(n) = self.replicas {
            opts.replicas = n;
        }
        if let Some(inject) = self.inject {
            opts.inject = inject;
        }
        if let Some(drift) = self.max_clock_drift {
            opts.max_clock_drift = drift;
        }
        opts
    }

    /// The one-line command that reruns this run with full tracing.
    pub fn reproduce_command(&self) -> String {
        let names = self.mutations.names();
        let mut env = String::new();
        if !names.is_empty() {
            env += &format!("SIM_MUTATION={} ", names.join(","));
        }
        if let Some(max) = self.max_sessions {
            env += &format!("SIM_MAX_SESSIONS={max} ");
        }
        if let Some(n) = self.replicas {
            env += &format!("SIM_REPLICAS={n} ");
        }
        if let Some(inject) = self.inject {
            env += &format!("SIM_INJECT={inject} ");
        }
        if let Some(drift) = self.max_clock_drift {
            env += &format!("SIM_MAX_CLOCK_DRIFT={drift} ");
        }
        format!(
            "{env}SIM_SEED={} cargo test -p chat-sim --test reproduce -- --nocapture",
            self.seed
        )
    }
}

/// Parses a clock drift bound: a fraction in [0, 1), as `0.01` for ±1 %.
pub fn parse_drift(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(drift) if (0.0..1.0).contains(&drift) => Ok(drift),
        _ => Err(format!(
            "clock drift bound {text:?}: expected a fraction in [0, 1), as 0.01 for 1 %"
        )),
    }
}

/// A run that failed a checker or panicked.
#[derive(Clone, Debug)]
pub struct SeedFailure {
    pub seed: u64,
    /// The checker failure, or the panic message.
    pub message: String,
    /// The command that reproduces it.
    pub reproduce: String,
}

impl std::fmt::Display for SeedFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {}: {}\n{}",
            self.seed, self.message, self.reproduce
        )
    }
}

/// Runs `spec`, turning a panic (a failed assertion in the core or the simulator) into a
/// failure too.
pub fn check(spec: RunSpec) -> Result<Report, SeedFailure> {
    let outcome = std::panic::catch_unwind(|| run(spec.options()));
    let message = match outcome {
        Ok(Ok(report)) => return Ok(report),
        Ok(Err(failure)) => failure.to_string(),
        Err(panic) => {
            let text = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            format!("panicked: {text}")
        }
    };
    Err(SeedFailure {
        seed: spec.seed,
        message,
        reproduce: spec.reproduce_command(),
    })
}

/// Parses a comma-separated list of [`Mutations::NAMES`].
pub fn parse_mutations(list: &str) -> Result<Mutations, String> {
    let mut mutations = Mutations::default();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !mutations.set(name) {
            return Err(format!(
                "unknown mutation {name:?}; known: {:?}",
                Mutations::NAMES
            ));
        }
    }
    Ok(mutations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_round_trip_through_the_reproduce_line() {
        let mutations = parse_mutations("no_client_table, promise_nothing").unwrap();
        assert!(mutations.no_client_table && mutations.promise_nothing);
        assert!(!mutations.commit_with_majority);
        let spec = RunSpec {
            seed: 7,
            mutations,
            max_sessions: Some(3),
            replicas: Some(5),
            inject: Some(Inject::parse("crash,pause").unwrap()),
            max_clock_drift: Some(0.05),
        };
        assert_eq!(
            spec.reproduce_command(),
            "SIM_MUTATION=no_client_table,promise_nothing SIM_MAX_SESSIONS=3 SIM_REPLICAS=5 SIM_INJECT=crash,pause SIM_MAX_CLOCK_DRIFT=0.05 SIM_SEED=7 cargo test -p chat-sim --test reproduce -- --nocapture"
        );
        let opts = spec.options();
        assert!(opts.inject.contains(FaultKind::Pause) && !opts.inject.contains(FaultKind::Cut));
        assert_eq!(opts.max_clock_drift, 0.05);
        assert_eq!(Inject::parse("all").unwrap().to_string(), "all");
        assert!(Inject::parse("crash,bogus").is_err());
        assert!(parse_drift("1.5").is_err() && parse_drift("0").is_ok());
        assert_eq!(
            RunSpec::new(7).reproduce_command(),
            "SIM_SEED=7 cargo test -p chat-sim --test reproduce -- --nocapture"
        );
        assert_eq!(spec.options().limits.max_sessions, 3);
        assert!(parse_mutations("bogus").is_err());
    }
}
