//! Issue 8, disk loss of one replica, on real processes: a replica whose data directory was
//! deleted after the cluster ran with it is refused at start-up (exit status 1, one line
//! naming the directory) while the others serve on; a replica whose first start comes a
//! moment after the others' (which have already left it out of their view) still starts.

#[allow(dead_code)] // the harness serves several test programs
mod support;

use chat_core::chat::{Op, Reply};
use chat_core::ids::ReplicaId;
use std::thread;
use std::time::{Duration, Instant};
use support::chat::{create, ok, WAIT};
use support::{run_expecting_exit, Cluster, REPLICAS};

/// Waits until every replica in `ids` answers with the same commit index as the others.
fn until_same_commit(cluster: &Cluster, ids: &[ReplicaId]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let commits: Vec<Option<u64>> = ids
            .iter()
            .map(|&id| cluster.status(id).map(|s| s.commit))
            .collect();
        if commits[0].is_some() && commits.iter().all(|c| *c == commits[0]) {
            return;
        }
        assert!(Instant::now() < deadline, "commits differ: {commits:?}");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_replica_whose_data_directory_was_deleted_is_refused_and_the_others_serve_on() {
    let mut cluster = Cluster::start();
    let (client, _incoming) = cluster.client();
    for user in ["ann", "bob", "cat"] {
        create(&client, user);
    }
    let all: Vec<ReplicaId> = (0..REPLICAS as ReplicaId).collect();
    // Every replica holds the accounts: the one about to lose its disk has acknowledged them.
    until_same_commit(&cluster, &all);
    let primary = cluster.wait_for_primary(None);
    let lost = (primary + 1) % REPLICAS as ReplicaId;
    cluster.kill(lost);
    let dir = cluster.data_dir(lost);
    std::fs::remove_dir_all(&dir).expect("delete the data directory");

    let started = Instant::now();
    let (status, stderr) = run_expecting_exit(cluster.server_command(lost));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let want = format!("data directory {} is empty, but replica ", dir.display());
    let line = stderr
        .lines()
        .find(|l| l.contains(&want))
        .unwrap_or_else(|| panic!("no {want:?} in:\n{stderr}"));
    assert!(
        line.contains("must not rejoin as if it remembered its promises")
            && line.contains("start it with --rejoin")
            && line.contains("\"Troubleshooting\""),
        "{line}"
    );
    assert!(
        !stderr.contains("serving clients on"),
        "refused before serving: {stderr}"
    );

    // Refused before it wrote anything: no log segment left behind (each would reserve its
    // blocks), only the lock file.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["LOCK"]);

    // The other two serve on, and the refused one sent them nothing that disturbed them.
    assert!(cluster.all_running());
    create(&client, "dan");
    let others: Vec<ReplicaId> = all.iter().copied().filter(|&id| id != lost).collect();
    until_same_commit(&cluster, &others);
    assert!(cluster.status(lost).is_none());

    // `--rejoin` brings it back with no state: the primary adds it once it holds the whole
    // log, and then it carries every acknowledged update: the other two may crash (once it
    // holds a lease from each, so that their refusals are evidence).
    cluster.start_replica_with(lost, &["--rejoin"]);
    let deadline = Instant::now() + WAIT;
    while !cluster.status(lost).is_some_and(|s| {
        s.established && s.members.contains(&lost) && !s.rejoining && s.leases.len() == 2
    }) {
        assert!(
            Instant::now() < deadline,
            "not added back: {}",
            cluster.log(lost)
        );
        thread::sleep(Duration::from_millis(50));
    }
    until_same_commit(&cluster, &all);
    for id in others {
        cluster.kill(id);
    }
    let (client, _incoming) = cluster.client();
    create(&client, "eve");
    let listed = ok(
        &client,
        Op::List {
            pattern: String::new(),
        },
    );
    let Reply::Accounts { names, .. } = listed else {
        panic!("0| -> {listed:?}");
    };
    assert_eq!(names, ["ann", "bob", "cat", "dan", "eve"]);
    assert_eq!(cluster.wait_for_primary(None), lost);
}

#[test]
fn rejoin_is_refused_on_a_directory_that_holds_state() {
    let mut cluster = Cluster::start();
    // Replica 2 has written its state (a primary may exist before the others have started).
    let (client, _incoming) = cluster.client();
    create(&client, "ann");
    until_same_commit(&cluster, &[0, 1, 2]);
    let id = 2;
    cluster.kill(id);
    let mut command = cluster.server_command(id);
    command.arg("--rejoin");
    let (status, stderr) = run_expecting_exit(command);
    assert_eq!(status.code(), Some(1), "{stderr}");
    let want = format!(
        "--rejoin is for a replica whose data directory was lost, but {} holds this replica's state",
        cluster.data_dir(id).display()
    );
    assert!(stderr.contains(&want), "{stderr}");
}

#[test]
fn a_first_start_after_the_others_left_the_replica_out_is_not_refused() {
    let mut cluster = Cluster::configure(None);
    cluster.start_replica(0);
    cluster.start_replica(1);
    cluster.wait_for_primary(None);
    // The two left replica 2 out (silent past the start's grace): the view is no longer 0.
    let deadline = Instant::now() + WAIT;
    while cluster
        .status(0)
        .is_none_or(|s| s.view == 0 || s.members.contains(&2))
    {
        assert!(Instant::now() < deadline, "replica 2 never left out");
        thread::sleep(Duration::from_millis(20));
    }
    cluster.start_replica(2);
    until_same_commit(&cluster, &[0, 1, 2]);
    assert!(cluster.all_running());
    assert!(
        cluster
            .log(2)
            .contains("empty data directory: no other replica shows that the cluster ran"),
        "{}",
        cluster.log(2)
    );
}
