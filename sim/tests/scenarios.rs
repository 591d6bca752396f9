//! Named scenarios, scripted on a calm network with the random workload running. Each ends
//! with the quiet phase and every checker. Issue 8's scenarios are in `two_crash.rs`.

use chat_core::durable::Entry;
use chat_core::ids::ReplicaId;
use chat_core::replica::Role;
use chat_core::time::Duration;
use chat_sim::{Failure, Sim, SimOptions};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

fn sim(seed: u64) -> Sim {
    Sim::new(SimOptions::scripted(seed))
}

fn primary(sim: &mut Sim) -> Result<ReplicaId, Failure> {
    assert!(
        sim.wait_for(secs(5), |s| s.primary().is_some())?,
        "no primary elected"
    );
    Ok(sim.primary().expect("just checked"))
}

#[test]
fn primary_crashes_mid_commit() -> Result<(), Failure> {
    let mut sim = sim(1);
    sim.run_for(secs(2))?;
    let p = primary(&mut sim)?;
    // Crash the primary while it holds an entry not yet committed.
    let mid_commit = sim.wait_for(secs(5), |s| {
        s.status(p).is_some_and(|st| st.last_index > st.commit)
    })?;
    assert!(mid_commit, "the primary never had an uncommitted entry");
    sim.crash(p);
    sim.run_for(secs(3))?;
    let q = sim.primary().expect("a new primary");
    assert_ne!(q, p);
    sim.restart(p)?;
    sim.run_for(secs(2))?;
    sim.finish()?;
    Ok(())
}

#[test]
fn lagging_backup_catches_up_by_snapshot() -> Result<(), Failure> {
    let mut sim = Sim::new(SimOptions {
        snapshot_every: Some(50),
        ..SimOptions::scripted(2)
    });
    sim.run_for(secs(1))?;
    let p = primary(&mut sim)?;
    let b = (p + 1) % 3;
    sim.isolate(b);
    let stopped_at = sim.status(b).expect("up").commit;
    let target = stopped_at + 300;
    assert!(
        sim.wait_for(secs(60), |s| s.committed() >= target)?,
        "too few commits"
    );
    sim.heal();
    let caught_up = sim.wait_for(secs(5), |s| {
        s.status(b).expect("up").commit >= s.committed()
    })?;
    assert!(caught_up, "the backup did not catch up");
    assert!(
        sim.stats().snapshot_chunks[usize::from(b)] > 0,
        "no snapshot transfer"
    );
    assert!(sim.status(b).expect("up").log_start > stopped_at + 1);
    // Compaction keeps every log short: a few snapshot intervals of entries at most.
    for r in 0..3 {
        assert!(
            sim.wal_len(r) < 64 * 1024,
            "replica {r} log is {} bytes",
            sim.wal_len(r)
        );
    }
    sim.finish()?;
    Ok(())
}

#[test]
fn old_primary_in_the_minority_commits_nothing() -> Result<(), Failure> {
    let mut sim = sim(3);
    sim.run_for(secs(1))?;
    let p = primary(&mut sim)?;
    let appended_before = sim.status(p).expect("up").last_index;
    sim.isolate(p);
    // Messages already in flight may still land; after that, nothing more commits there.
    sim.run_for(ms(100))?;
    let commit_then = sim.status(p).expect("up").commit;
    sim.run_for(secs(3))?;
    let q = sim.primary().expect("a primary on the majority side");
    assert_ne!(q, p, "the majority side elected a new primary");
    let old = sim.status(p).expect("up");
    let new = sim.status(q).expect("up");
    // It stepped down (check quorum) or still believes in an older view.
    assert!(old.role != Role::Primary || old.view < new.view);
    assert_eq!(old.commit, commit_then, "the isolated primary committed");
    assert!(old.commit <= new.commit);
    // What it appended alone (clients still reach it) must never commit.
    let alone: Vec<Entry> = (appended_before + 1..=old.last_index)
        .filter_map(|i| sim.replica(p).and_then(|r| r.entry(i)).cloned())
        .collect();
    assert!(
        !alone.is_empty(),
        "no client request reached the isolated primary"
    );
    sim.heal();
    sim.finish()?;
    for entry in alone {
        assert_ne!(sim.committed_entry(entry.index), Some(&entry));
    }
    Ok(())
}

#[test]
fn all_replicas_crash_and_restart() -> Result<(), Failure> {
    let mut sim = sim(4);
    sim.run_for(secs(2))?;
    for r in 0..3 {
        sim.crash(r);
    }
    sim.run_for(secs(1))?;
    for r in 0..3 {
        sim.restart(r)?;
    }
    sim.run_for(secs(2))?;
    primary(&mut sim)?;
    // Again, losing the unsynced writes of every replica at once, mid-stream.
    sim.run_for(ms(1234))?;
    for r in 0..3 {
        sim.crash_torn(r);
    }
    for r in 0..3 {
        sim.restart(r)?;
    }
    sim.run_for(secs(2))?;
    sim.finish()?;
    Ok(())
}

#[test]
fn restart_with_a_torn_log_tail() -> Result<(), Failure> {
    let mut sim = sim(5);
    sim.run_for(secs(1))?;
    let mut attempts = 0;
    while sim.stats().torn_tails_cut == 0 {
        attempts += 1;
        assert!(attempts <= 50, "never tore a record");
        let r = primary(&mut sim)?;
        assert!(sim.wait_for(secs(5), |s| s.volatile_log_len(r) > 0)?);
        sim.crash_torn(r);
        sim.run_for(ms(50))?;
        sim.restart(r)?;
        sim.run_for(ms(500))?;
    }
    sim.run_for(secs(1))?;
    sim.finish()?;
    Ok(())
}

#[test]
fn a_corrupted_record_stops_one_replica() -> Result<(), Failure> {
    let mut sim = sim(6);
    sim.run_for(secs(2))?;
    let p = primary(&mut sim)?;
    let b = (p + 1) % 3;
    sim.crash(b);
    assert!(sim.corrupt(b), "the log had records to corrupt");
    sim.restart(b)?;
    assert!(
        sim.is_stopped(b) && !sim.is_up(b),
        "a corrupt log must not serve"
    );
    // The other two carry on, through a change of primary too.
    sim.run_for(secs(1))?;
    sim.crash(p);
    sim.restart(p)?;
    sim.run_for(secs(3))?;
    sim.finish()?;
    assert!(sim.is_stopped(b));
    Ok(())
}

#[test]
fn a_killed_process_is_refused_and_a_crashed_host_is_silent() -> Result<(), Failure> {
    let mut sim = sim(7);
    sim.run_for(secs(1))?;
    let p = primary(&mut sim)?;
    let b = (p + 1) % 3;
    let refusals = sim.stats().peer_refusals;
    sim.crash_host(b);
    sim.run_for(secs(1))?;
    assert_eq!(
        sim.stats().peer_refusals,
        refusals,
        "a crashed host refused"
    );
    sim.restart(b)?;
    sim.run_for(secs(1))?;
    sim.crash(b);
    sim.run_for(secs(1))?;
    assert!(
        sim.stats().peer_refusals > refusals,
        "the primary's messages to a killed process were not refused"
    );
    sim.finish()?;
    Ok(())
}

#[test]
fn a_paused_replica_does_nothing_until_it_resumes() -> Result<(), Failure> {
    let mut sim = sim(8);
    sim.run_for(secs(1))?;
    let p = primary(&mut sim)?;
    let b = (p + 1) % 3;
    let before = sim.status(b).expect("up");
    let committed = sim.committed();
    sim.pause(b, secs(3));
    // Far past its election timeout, and the cluster commits on without it.
    sim.run_for(ms(2900))?;
    assert!(sim.is_paused(b));
    assert_eq!(sim.status(b).expect("up"), before, "a paused replica acted");
    assert!(sim.committed() > committed + 10);
    sim.run_for(ms(200))?;
    assert!(!sim.is_paused(b));
    // What was sent to it waited and is handled now.
    assert!(sim.wait_for(secs(2), |s| s.status(b).expect("up").commit > before.commit)?);
    sim.finish()?;
    Ok(())
}
