//! The same closed-loop pattern on etcd (cargo feature `etcd`), for a row to compare with:
//! each client puts a 100-byte value under its own keys, one put at a time; afterwards every
//! acknowledged key must be there. As the chat clients send to the primary, the etcd clients
//! put to the leader (etcd's own `benchmark put --target-leader`), so that no put is first
//! forwarded by a follower.

use crate::load::Setting;
use crate::report::{Floor, Progress, Row, Samples};
use etcd_client::{Client, GetOptions};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn run(
    endpoints: &[String],
    setting: &Setting,
    floor: &Floor,
    progress: &Progress,
) -> Result<Row, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the etcd client runtime: {e}"))?;
    runtime.block_on(drive(endpoints, setting, floor, progress))
}

/// What one client task saw: (when sent, latency) of each acknowledged put, and failures.
type Tally = (Vec<(Instant, Duration)>, u64);

async fn drive(
    endpoints: &[String],
    setting: &Setting,
    floor: &Floor,
    progress: &Progress,
) -> Result<Row, String> {
    let total = setting.warmup + setting.measure;
    let acks = Arc::new(AtomicU64::new(0));
    let leader = leader(endpoints).await?;
    let mut clients = Vec::new();
    for _ in 0..setting.clients {
        let client = Client::connect([&leader], None)
            .await
            .map_err(|e| format!("etcd {leader}: {e}"))?;
        clients.push(client);
    }
    let began = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            let (prefix, acks) = (format!("{}/{i}/", setting.tag), acks.clone());
            tokio::spawn(async move {
                let value = vec![b'x'; 100];
                let mut tally: Tally = (Vec::new(), 0);
                for n in 0u64.. {
                    let sent = Instant::now();
                    if sent - began >= total {
                        break;
                    }
                    match client
                        .put(format!("{prefix}{n:012}"), value.clone(), None)
                        .await
                    {
                        Ok(_) => {
                            tally.0.push((sent, sent.elapsed()));
                            acks.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => tally.1 += 1,
                    }
                }
                (client, prefix, tally)
            })
        })
        .collect();
    while began.elapsed() < total {
        progress.show(
            setting.clients,
            began.elapsed(),
            total,
            acks.load(Ordering::Relaxed),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    progress.clear();
    let from = began + setting.warmup;
    let (mut latencies, mut failed, mut lost) = (Vec::new(), 0, 0);
    for task in tasks {
        let (mut client, prefix, (sends, failures)) = task
            .await
            .map_err(|e| format!("an etcd client task failed: {e}"))?;
        failed += failures;
        // Every acknowledged put must be readable afterwards.
        let found = client
            .get(
                prefix.as_str(),
                Some(GetOptions::new().with_prefix().with_count_only()),
            )
            .await
            .map_err(|e| format!("etcd count: {e}"))?
            .count();
        lost += (sends.len() as u64).saturating_sub(found.max(0) as u64);
        let _ = client
            .delete(
                prefix.as_str(),
                Some(etcd_client::DeleteOptions::new().with_prefix()),
            )
            .await;
        latencies.extend(
            sends
                .into_iter()
                .filter(|(sent, _)| *sent >= from && *sent < from + setting.measure)
                .map(|(_, latency)| latency),
        );
    }
    let mut row = Row::new(
        "etcd",
        setting.clients,
        &Samples::new(latencies, setting.measure),
        floor,
    );
    row.lost = lost;
    row.failed = failed;
    Ok(row)
}

/// The endpoint of the member that says it is the leader.
async fn leader(endpoints: &[String]) -> Result<String, String> {
    for endpoint in endpoints {
        let Ok(mut client) = Client::connect([endpoint], None).await else {
            continue;
        };
        let Ok(status) = client.status().await else {
            continue;
        };
        if status
            .header()
            .is_some_and(|h| h.member_id() == status.leader())
        {
            return Ok(endpoint.clone());
        }
    }
    Err(format!(
        "etcd {endpoints:?}: no member says it is the leader"
    ))
}
