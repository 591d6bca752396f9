//! The cluster as `chat-admin status` and the demo's `:status` show it: every replica asked
//! for its status at once, a table, a one-line verdict on whether the cluster can serve, and
//! the same as JSON.

use chat_core::config::Config;
use chat_core::ids::{OpIndex, ReplicaId, View};
use chat_core::replica::{Role, Status};
use chat_net::client;
use serde::Serialize;
use std::time::Duration;

/// What one replica answered, or why it did not.
#[derive(Clone, Debug)]
pub struct Answer {
    pub id: ReplicaId,
    /// `host:client_port`.
    pub address: String,
    pub status: Result<Status, String>,
}

/// Asks every replica of `config` at once; one that does not answer within `timeout` is down.
pub fn query(config: &Config, timeout: Duration) -> Vec<Answer> {
    let max_frame = config.net.max_frame_bytes;
    let tls = client::client_tls(config);
    let tls = &tls;
    std::thread::scope(|scope| {
        let asks: Vec<_> = config
            .replicas
            .iter()
            .map(|r| {
                scope.spawn(move || match tls {
                    Ok(tls) => client::status(r, max_frame, tls.as_ref(), timeout),
                    Err(e) => Err(e.clone()),
                })
            })
            .collect();
        config
            .replicas
            .iter()
            .zip(asks)
            .map(|(r, ask)| Answer {
                id: r.id,
                address: format!("{}:{}", r.host, r.client_port),
                status: ask
                    .join()
                    .unwrap_or(Err(client::ClientError::Stopped))
                    .map_err(|e| why_down(&e.to_string(), timeout)),
            })
            .collect()
    })
}

/// A short reason for the table: the client library's errors name the address (already in
/// the table) and the raw OS error.
fn why_down(error: &str, timeout: Duration) -> String {
    if error.contains("os error 111") {
        "connection refused: not running".to_owned()
    } else if error.contains("os error 11)") || error.contains("timed out") {
        format!("no answer within {} ms", timeout.as_millis())
    } else {
        error.to_owned()
    }
}

/// Whether the cluster can serve clients, judged from the answers: a primary of the highest
/// view any replica reports, with a majority of the configured replicas up in that view
/// (the majority protocol commits nothing with fewer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub serving: bool,
    pub primary: Option<ReplicaId>,
    pub view: Option<View>,
    pub up: usize,
    /// Replicas in the configuration.
    pub configured: usize,
    /// "serving: primary 2, view 7, 3 of 3 up" or "NOT SERVING: ...".
    pub summary: String,
}

pub fn verdict(answers: &[Answer]) -> Verdict {
    let replicas = answers.len();
    let majority = replicas / 2 + 1;
    let up: Vec<&Status> = answers
        .iter()
        .filter_map(|a| a.status.as_ref().ok())
        .collect();
    let view = up.iter().map(|s| s.view).max();
    let primary = up
        .iter()
        .find(|s| s.role == Role::Primary && Some(s.view) == view)
        .map(|s| s.id);
    let following = |p: ReplicaId| {
        up.iter()
            .filter(|s| Some(s.view) == view && (s.id == p || s.primary == Some(p)))
            .count()
    };
    let n_up = up.len();
    let summary = match primary.zip(view) {
        _ if n_up == 0 => format!("NOT SERVING: no replica answered (0 of {replicas} up)"),
        _ if n_up < majority => {
            format!("NOT SERVING: only {n_up} of {replicas} up; a majority ({majority}) is needed")
        }
        Some((p, v)) if following(p) >= majority => {
            format!("serving: primary {p}, view {v}, {n_up} of {replicas} up")
        }
        Some((p, v)) => format!(
            "NOT SERVING: primary {p} of view {v} has {} of the {majority} replicas it needs \
             in its view ({n_up} of {replicas} up)",
            following(p)
        ),
        None => format!(
            "NOT SERVING: no primary yet (electing{}; {n_up} of {replicas} up)",
            view.map_or(String::new(), |v| format!(" in view {v}"))
        ),
    };
    Verdict {
        serving: summary.starts_with("serving"),
        primary,
        view,
        up: n_up,
        configured: replicas,
        summary,
    }
}

/// The table: one row per replica, lag measured from the highest commit number seen.
pub fn table(answers: &[Answer]) -> String {
    let top = answers
        .iter()
        .filter_map(|a| a.status.as_ref().ok().map(|s| s.commit))
        .max();
    let mut out = format!(
        "{:<3} {:<22} {:<5} {:<9} {:>6} {:>8} {:>8} {:>6}\n",
        "id", "address", "state", "role", "view", "commit", "last", "lag"
    );
    for a in answers {
        out += &match &a.status {
            Ok(s) => format!(
                "{:<3} {:<22} {:<5} {:<9} {:>6} {:>8} {:>8} {:>6}\n",
                s.id,
                a.address,
                "up",
                role_name(s.role),
                s.view,
                s.commit,
                s.last_index,
                lag(top, s.commit)
            ),
            Err(e) => format!("{:<3} {:<22} {:<5} ({e})\n", a.id, a.address, "down"),
        };
    }
    out
}

fn lag(top: Option<OpIndex>, commit: OpIndex) -> OpIndex {
    top.unwrap_or(commit).saturating_sub(commit)
}

pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Primary => "primary",
        Role::Backup => "backup",
        Role::Candidate => "candidate",
    }
}

/// `chat-admin status --json`: the verdict's fields, then one object per replica.
#[derive(Serialize)]
struct Json<'a> {
    #[serde(flatten)]
    verdict: &'a Verdict,
    replicas: Vec<JsonReplica<'a>>,
}

#[derive(Serialize)]
struct JsonReplica<'a> {
    id: ReplicaId,
    address: &'a str,
    up: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    view: Option<View>,
    #[serde(skip_serializing_if = "Option::is_none")]
    primary: Option<ReplicaId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    commit: Option<OpIndex>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_index: Option<OpIndex>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_start: Option<OpIndex>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lag: Option<OpIndex>,
}

/// One JSON object (one line) with the verdict and every replica.
pub fn json(answers: &[Answer], verdict: &Verdict) -> String {
    let top = answers
        .iter()
        .filter_map(|a| a.status.as_ref().ok().map(|s| s.commit))
        .max();
    let replicas = answers
        .iter()
        .map(|a| {
            let s = a.status.as_ref().ok();
            JsonReplica {
                id: a.id,
                address: &a.address,
                up: s.is_some(),
                error: a.status.as_ref().err().map(String::as_str),
                role: s.map(|s| role_name(s.role)),
                view: s.map(|s| s.view),
                primary: s.and_then(|s| s.primary),
                commit: s.map(|s| s.commit),
                last_index: s.map(|s| s.last_index),
                log_start: s.map(|s| s.log_start),
                lag: s.map(|s| lag(top, s.commit)),
            }
        })
        .collect();
    serde_json::to_string(&Json { verdict, replicas }).expect("plain data serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(id: ReplicaId, role: Role, view: View, primary: Option<ReplicaId>) -> Answer {
        Answer {
            id,
            address: format!("127.0.0.1:700{id}"),
            status: Ok(Status {
                id,
                role,
                view,
                primary,
                commit: 10,
                last_index: 10,
                log_start: 1,
                members: vec![0, 1, 2],
                established: true,
                rejoining: false,
                leases: vec![],
                waiting_for: vec![],
            }),
        }
    }

    fn down(id: ReplicaId) -> Answer {
        Answer {
            id,
            address: format!("127.0.0.1:700{id}"),
            status: Err("connection refused".into()),
        }
    }

    #[test]
    fn a_primary_with_a_majority_in_its_view_serves() {
        let answers = [
            up(0, Role::Backup, 7, Some(2)),
            down(1),
            up(2, Role::Primary, 7, Some(2)),
        ];
        let v = verdict(&answers);
        assert!(v.serving);
        assert_eq!(v.summary, "serving: primary 2, view 7, 2 of 3 up");
    }

    #[test]
    fn too_few_up_or_no_primary_is_not_serving_with_the_reason() {
        let v = verdict(&[up(0, Role::Candidate, 9, None), down(1), down(2)]);
        assert!(!v.serving);
        assert_eq!(
            v.summary,
            "NOT SERVING: only 1 of 3 up; a majority (2) is needed"
        );
        let v = verdict(&[down(0), down(1), down(2)]);
        assert_eq!(v.summary, "NOT SERVING: no replica answered (0 of 3 up)");
        let v = verdict(&[
            up(0, Role::Candidate, 9, None),
            up(1, Role::Candidate, 8, None),
            down(2),
        ]);
        assert_eq!(
            v.summary,
            "NOT SERVING: no primary yet (electing in view 9; 2 of 3 up)"
        );
        // An old primary whose view was superseded does not count.
        let v = verdict(&[
            up(0, Role::Primary, 3, Some(0)),
            up(1, Role::Candidate, 4, None),
            down(2),
        ]);
        assert!(!v.serving, "{}", v.summary);
    }

    #[test]
    fn json_has_the_verdict_and_each_replica() {
        let answers = [
            up(0, Role::Primary, 7, Some(0)),
            up(1, Role::Backup, 7, Some(0)),
            down(2),
        ];
        let text = json(&answers, &verdict(&answers));
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["serving"], true);
        assert_eq!(value["primary"], 0);
        assert_eq!(value["up"], 2);
        assert_eq!(value["replicas"][1]["role"], "backup");
        assert_eq!(value["replicas"][2]["up"], false);
        assert_eq!(value["replicas"][2]["error"], "connection refused");
        assert!(!text.contains('\n'));
    }
}
