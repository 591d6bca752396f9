//! A replica started on a data directory that is not its own, on real processes: another
//! replica's directory, or a directory of another cluster (another cluster secret), is refused
//! at start-up (exit status 1, one line naming the directory, whose it is and what this start
//! is) and left as it was; started on its own directory again, the replica rejoins.

#[allow(dead_code)] // the harness serves several test programs
mod support;

use chat_core::ids::ReplicaId;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};
use support::chat::{create, WAIT};
use support::{run_expecting_exit, Cluster, REPLICAS};

/// Runs replica `id` of `cluster` on the data directory `dir` (a start expected to be
/// refused) for at most 10 s; returns its exit status and what it wrote to stderr.
fn start_on(cluster: &Cluster, id: ReplicaId, dir: &Path) -> (ExitStatus, String) {
    run_expecting_exit(cluster.server_command_on(id, dir))
}

/// The line of `log` that holds `want`.
fn line_with<'a>(log: &'a str, want: &str) -> &'a str {
    log.lines()
        .find(|l| l.contains(want))
        .unwrap_or_else(|| panic!("no {want:?} in:\n{log}"))
}

/// Every file of `dir` with its bytes, but the lock (each start writes its pid into it).
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(name, _)| name != "LOCK")
        .map(|(name, path)| (name, std::fs::read(path).unwrap()))
        .collect()
}

/// Waits until every replica answers with the same commit index, in a view of all three.
fn until_whole(cluster: &Cluster) {
    let deadline = Instant::now() + WAIT;
    loop {
        let statuses: Vec<_> = (0..REPLICAS as ReplicaId)
            .map(|id| cluster.status(id))
            .collect();
        let whole = statuses.iter().all(|s| {
            s.as_ref().is_some_and(|s| {
                s.established
                    && s.members.len() == REPLICAS
                    && Some(s.commit) == statuses[0].as_ref().map(|s| s.commit)
            })
        });
        if whole {
            return;
        }
        assert!(Instant::now() < deadline, "not whole again: {statuses:?}");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_replica_started_on_another_replicas_directory_is_refused_naming_both() {
    let mut cluster = Cluster::start();
    let (client, _incoming) = cluster.client();
    create(&client, "ann");
    // Replica 2's directory is free only while replica 2 is down.
    cluster.kill(0);
    cluster.kill(2);
    let theirs = cluster.data_dir(2);
    let before = contents(&theirs);
    assert!(before.contains_key("IDENTITY"), "{:?}", before.keys());

    let (status, log) = start_on(&cluster, 0, &theirs);
    assert_eq!(status.code(), Some(1), "{log}");
    let line = line_with(
        &log,
        &format!("data directory {} belongs to replica 2 (", theirs.display()),
    );
    assert!(
        line.starts_with("chat-server: ")
            && line.contains(&format!(
                "{} records replica 2, cluster ",
                theirs.join("IDENTITY").display()
            ))
            && line.contains("but this is replica 0 of the cluster whose secret (")
            && line.contains("which replica 0 must not act on")
            && line.contains("Start replica 2 on it, and replica 0 on its own directory"),
        "{line}"
    );
    assert!(!log.contains("storage opened"), "refused before: {log}");
    assert_eq!(contents(&theirs), before, "left as it was");

    // Each on its own directory, both come back.
    cluster.start_replica(0);
    cluster.start_replica(2);
    create(&client, "bob");
    until_whole(&cluster);
}

#[test]
fn a_directory_of_a_cluster_with_another_secret_is_refused() {
    // Replica 0's directory of another cluster, which served a client.
    let foreign = tempfile::tempdir().unwrap();
    {
        let mut other = Cluster::start();
        let (client, _incoming) = other.client();
        create(&client, "mallory");
        other.kill_all();
        for (name, bytes) in contents(&other.data_dir(0)) {
            std::fs::write(foreign.path().join(name), bytes).unwrap();
        }
    }
    let before = contents(foreign.path());
    assert!(before.contains_key("IDENTITY"), "{:?}", before.keys());

    let mut cluster = Cluster::start();
    let (client, _incoming) = cluster.client();
    create(&client, "ann");
    cluster.kill(0);
    let (status, log) = start_on(&cluster, 0, foreign.path());
    assert_eq!(status.code(), Some(1), "{log}");
    let identity = foreign.path().join("IDENTITY");
    let line = line_with(
        &log,
        &format!(
            "data directory {} belongs to another cluster ({} records replica 0, cluster ",
            foreign.path().display(),
            identity.display()
        ),
    );
    assert!(
        line.contains("but this is replica 0 of the cluster whose secret (")
            && line.contains("a start on it would mix the two clusters' states")
            && line.contains(&format!(
                "the cluster secret was replaced on purpose, remove {} and start again",
                identity.display()
            )),
        "{line}"
    );
    assert!(!log.contains("storage opened"), "refused before: {log}");
    assert_eq!(contents(foreign.path()), before, "left as it was");

    // On its own directory it comes back.
    cluster.start_replica(0);
    create(&client, "bob");
    until_whole(&cluster);
}
