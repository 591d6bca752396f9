//! `chat-bench recovery`: fills a local cluster with queued messages, then times restarts —
//! a backup killed and restarted (until it serves status, until it has caught up), and every
//! replica killed at once and restarted (until a client request succeeds, until all caught
//! up) — and reports memory per queued message.

use crate::cluster::Cluster;
use crate::report::ms;
use chat_core::chat::{Op, Reply};
use chat_core::config::Config;
use chat_core::ids::{OpIndex, ReplicaId};
use chat_net::client::{Client, ClientOptions};
use std::thread;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Messages to queue before the restarts
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    messages: u64,
    /// Client threads filling the cluster
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    clients: u32,
    /// Characters of each message's text
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(8..=1000))]
    text: u32,
    #[arg(long, default_value_t = 3)]
    replicas: usize,
}

pub fn run(args: &Args) -> Result<(), String> {
    let cluster = Cluster::start(args.replicas, Duration::from_secs(3600), false)?;
    cluster.wait_for_primary(Duration::from_secs(30))?;
    let rss_before: Vec<Option<u64>> = cluster.replica_ids().map(|id| cluster.rss_kb(id)).collect();
    println!(
        "filling {} replicas with {} messages of {} characters from {} clients",
        args.replicas, args.messages, args.text, args.clients
    );
    let began = Instant::now();
    fill(&cluster.config, args)?;
    let took = began.elapsed();
    println!(
        "filled in {:.1} s ({:.0} sends/s)",
        took.as_secs_f64(),
        args.messages as f64 / took.as_secs_f64()
    );
    let commit = cluster.wait_for_primary(Duration::from_secs(30))?.commit;
    wait_caught_up(
        &cluster,
        cluster.replica_ids(),
        commit,
        Duration::from_secs(120),
    )?;
    let per_message = |before: Option<u64>, after: Option<u64>| {
        let grown = after?.saturating_sub(before?) * 1024;
        Some(grown as f64 / args.messages as f64)
    };
    let budget = 2.0 * f64::from(args.text) + 100.0;
    for (id, before) in cluster.replica_ids().zip(&rss_before) {
        if let Some(bytes) = per_message(*before, cluster.rss_kb(id)) {
            println!(
                "replica {id}: {bytes:.0} bytes of RSS per queued message \
                 (target: at most 2 x text + 100 = {budget:.0})"
            );
        }
    }

    let primary = cluster.wait_for_primary(Duration::from_secs(30))?;
    let backup = cluster
        .replica_ids()
        .find(|&id| id != primary.id)
        .ok_or("a backup restart needs at least two replicas")?;
    cluster.kill(backup)?;
    let began = Instant::now();
    cluster.spawn(backup)?;
    let up = wait_until(Duration::from_secs(120), || {
        cluster.status(backup).is_some()
    })?;
    let caught = wait_caught_up(&cluster, [backup], primary.commit, Duration::from_secs(300))?;
    println!(
        "backup {backup} restarted: answers after {:.0} ms, caught up (commit {}) after {:.0} ms",
        ms(up - began),
        primary.commit,
        ms(caught - began)
    );

    let commit = cluster.wait_for_primary(Duration::from_secs(30))?.commit;
    for id in cluster.replica_ids() {
        cluster.kill(id)?;
    }
    let began = Instant::now();
    for id in cluster.replica_ids() {
        cluster.spawn(id)?;
    }
    let serving = first_reply(&cluster.config, Duration::from_secs(120))?;
    let caught = wait_caught_up(
        &cluster,
        cluster.replica_ids(),
        commit,
        Duration::from_secs(300),
    )?;
    println!(
        "all {} replicas restarted: a client served after {:.0} ms, all caught up after {:.0} ms",
        args.replicas,
        ms(serving - began),
        ms(caught - began)
    );
    Ok(())
}

/// Queues `args.messages` messages for users who stay logged out.
fn fill(config: &Config, args: &Args) -> Result<(), String> {
    let per_client = args.messages.div_ceil(u64::from(args.clients));
    // Recipients' queues hold at most `max_queue` each: spread over enough of them.
    let per_queue = u64::from(config.limits.max_queue).max(1) * 9 / 10;
    let recipients_each = per_client.div_ceil(per_queue.max(1)) as usize;
    let text = "x".repeat(args.text as usize);
    let threads: Vec<_> = (0..args.clients)
        .map(|i| {
            let (config, text) = (config.clone(), text.clone());
            let count = per_client.min(args.messages.saturating_sub(u64::from(i) * per_client));
            thread::spawn(move || -> Result<(), String> {
                let (client, _incoming) = Client::connect(&config).map_err(|e| e.to_string())?;
                let to: Vec<String> = (0..recipients_each).map(|k| format!("q{i}-{k}")).collect();
                for user in &to {
                    request(&client, Op::Create { user: user.clone() })?;
                }
                let me = format!("f{i}");
                request(&client, Op::Create { user: me.clone() })?;
                request(&client, Op::Login { user: me })?;
                for n in 0..count {
                    let to = to[n as usize % to.len()].clone();
                    match request(
                        &client,
                        Op::Send {
                            to,
                            text: text.clone(),
                        },
                    )? {
                        Reply::Sent { .. } => {}
                        other => return Err(format!("send: unexpected reply {other:?}")),
                    }
                }
                Ok(())
            })
        })
        .collect();
    for thread in threads {
        thread.join().map_err(|_| "a client thread panicked")??;
    }
    Ok(())
}

fn request(client: &Client, op: Op) -> Result<Reply, String> {
    let what = format!("{op:?}");
    client.request(op).map_err(|e| format!("{what}: {e}"))
}

/// Polls `done` every 5 ms; the instant it first held.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> Result<Instant, String> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return Ok(Instant::now());
        }
        thread::sleep(Duration::from_millis(5));
    }
    Err(format!("not done within {} s", limit.as_secs()))
}

/// Waits until each of `ids` has committed at least `commit`.
fn wait_caught_up(
    cluster: &Cluster,
    ids: impl IntoIterator<Item = ReplicaId>,
    commit: OpIndex,
    limit: Duration,
) -> Result<Instant, String> {
    let ids: Vec<ReplicaId> = ids.into_iter().collect();
    wait_until(limit, || {
        ids.iter()
            .all(|&id| cluster.status(id).is_some_and(|s| s.commit >= commit))
    })
    .map_err(|e| format!("replicas {ids:?} did not reach commit {commit}: {e}"))
}

/// The instant a new client session first got an answer from a primary.
fn first_reply(config: &Config, limit: Duration) -> Result<Instant, String> {
    let options = ClientOptions {
        reply_timeout: Duration::from_millis(200),
        give_up_after: Some(limit),
        connect_timeout: Duration::from_millis(200),
        first_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        ..ClientOptions::default()
    };
    let (client, _incoming) = Client::connect_with(config, options).map_err(|e| e.to_string())?;
    request(
        &client,
        Op::List {
            pattern: "f0".into(),
        },
    )?;
    Ok(Instant::now())
}
