//! The stale-evidence schedule of the exhaustive model (`sim/tests/model.rs`,
//! `stale_evidence_flaw_of_the_rules_as_written`; notes of 2026-12-03, session 6) played on
//! the real core. A backup `a` hears the restarted `b` while it holds a lease from `b`'s old
//! incarnation (evidence against it), while the primary `p`, whose lease from `b` had run
//! out (`b`'s messages to `p` were cut), re-adds `b` without evidence. Then `p` is killed
//! where `a` cannot see it refused, so that `b` leaves `p` out first and `a` accepts (giving
//! `b` a lease); `a`, now a backup of `b`, leaves `b` out with its old evidence and serves
//! alone; then `a` is killed and `b`, refused by `a` under that lease, leaves `a` out.

use chat_core::time::Duration;
use chat_sim::{Failure, Sim, SimOptions, Step, Target};
use Step::*;
use Target::*;

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

fn run(seed: u64, cut_for: u64, settle: u64) -> Result<(), Failure> {
    let verbose = std::env::var("STALE_VERBOSE").is_ok();
    let mut sim = Sim::new(SimOptions {
        replicas: 3,
        verbose,
        ..SimOptions::scripted(seed)
    });
    sim.run_for(ms(1000))?;
    assert!(sim.wait_for(ms(5000), |s| s.primary().is_some())?);
    let p = sim.primary().expect("checked");
    let mut backups = (0..3).filter(|&r| r != p);
    let (a, b) = (backups.next().unwrap(), backups.next().unwrap());
    sim.play(&[
        Cut(Replica(b), Replica(p)),
        Wait(ms(cut_for)),
        Kill(Replica(b)),
        Restart(Replica(b)),
        Wait(ms(30)),
        Heal,
        Wait(ms(settle)),
        Partition(vec![Replica(a)], vec![Replica(p)]),
        Kill(Replica(p)),
        Wait(ms(2000)),
        Kill(Replica(a)),
        Wait(ms(3000)),
    ])?;
    sim.finish()?;
    Ok(())
}

/// The core survives the schedule: on seed 0 (cut 1050 ms, settle 3 s) the run reaches
/// the trace's critical point (with `STALE_VERBOSE=1`: `p` re-adds the restarted `b` in b1.0{0,1,2}
/// without leaving its old incarnation out; after `p`'s kill `b` forms b2.2{1,2} and `a`
/// accepts it), but `a` never leaves `b` out: `Leases::heard` spent its evidence against
/// the old incarnation when the new one spoke again, as rule 4(a) now says
/// (`Mutation::StaleEvidence` takes it out of the model). 32 runs, about 1 s.
#[test]
fn the_stale_evidence_schedule_on_the_core() {
    let mut failed = Vec::new();
    for seed in 0..4 {
        for cut_for in [1050, 1020, 1080, 1120] {
            for settle in [3000, 2000] {
                if let Err(e) = run(seed, cut_for, settle) {
                    failed.push(format!("seed {seed} cut {cut_for} settle {settle}: {e}"));
                }
            }
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}
