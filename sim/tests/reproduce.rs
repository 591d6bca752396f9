//! Reruns one seed with a trace of every event:
//! `SIM_SEED=<seed> cargo test -p chat-sim --test reproduce -- --nocapture`.
//! Optional: `SIM_FAULT=<name>[,<name>]` (deliberate protocol bugs), `SIM_MAX_SESSIONS=<n>`
//! (a smaller client table), `SIM_REPLICAS=<n>`, `SIM_HISTORY=<file>` (write the client
//! history as JSON Lines).
//! Without `SIM_SEED` it does nothing.

use chat_sim::{run, RunSpec, SimOptions};

#[test]
fn reproduce() {
    let Some(spec) = RunSpec::from_env().expect("valid SIM_* variables") else {
        eprintln!("set SIM_SEED=<seed> to rerun a seed");
        return;
    };
    let opts = SimOptions {
        verbose: true,
        history_path: std::env::var_os("SIM_HISTORY").map(Into::into),
        ..spec.options()
    };
    match run(opts) {
        Ok(report) => eprintln!("seed {} passed: {report:#?}", spec.seed),
        Err(failure) => panic!(
            "seed {}: {failure}\n{}",
            spec.seed,
            spec.reproduce_command()
        ),
    }
}
