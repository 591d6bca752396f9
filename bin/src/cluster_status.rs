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

/// A short reason a replica did not answer (for the table, and `chat-admin remove`): the
/// client library's errors name the address and the raw OS error.
pub fn why_down(error: &str, timeout: Duration) -> String {
    if error.contains("os error 111") {
        "connection refused: not running".to_owned()
    } else if error.contains("os error 11)") || error.contains("timed out") {
        format!("no answer within {} ms", timeout.as_millis())
    } else {
        error.to_owned()
    }
}

/// Whether the cluster can serve clients, judged from the answers (issue 8's rules): a primary
/// of the highest view any replica reports, that view established (every member accepted it),
/// and every member of it up — a commit needs every member, so a member that is down stops
/// the cluster until the primary's view leaves it out (at once on evidence of a crash, after
/// the lease on silence).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub serving: bool,
    pub primary: Option<ReplicaId>,
    pub view: Option<View>,
    pub up: usize,
    /// Replicas in the configuration.
    pub configured: usize,
    /// "serving: primary 2, view 7 (members 1, 2), 3 of 3 up" or "NOT SERVING: ...".
    pub summary: String,
}

pub fn verdict(answers: &[Answer]) -> Verdict {
    let replicas = answers.len();
    let up: Vec<&Status> = answers
        .iter()
        .filter_map(|a| a.status.as_ref().ok())
        .collect();
    let is_up = |id: &ReplicaId| up.iter().any(|s| s.id == *id);
    let view = up.iter().map(|s| s.view).max();
    let primary = up
        .iter()
        .find(|s| s.role == Role::Primary && Some(s.view) == view);
    let waiting = up.iter().find(|s| !s.waiting_for.is_empty());
    let n_up = up.len();
    let summary = match primary {
        _ if n_up == 0 => format!("NOT SERVING: no replica answered (0 of {replicas} up)"),
        Some(p) if !p.established => format!(
            "NOT SERVING: primary {} is installing view {} (members {}); {n_up} of {replicas} up",
            p.id,
            p.view,
            ids(&p.members)
        ),
        Some(p) => {
            let missing: Vec<ReplicaId> = p.members.iter().copied().filter(|m| !is_up(m)).collect();
            if missing.is_empty() {
                format!(
                    "serving: primary {}, view {} (members {}), {n_up} of {replicas} up",
                    p.id,
                    p.view,
                    ids(&p.members)
                )
            } else {
                format!(
                    "NOT SERVING: primary {} of view {} waits for member {} (down) until a new \
                     view leaves it out ({n_up} of {replicas} up)",
                    p.id,
                    p.view,
                    ids(&missing)
                )
            }
        }
        None => match waiting {
            Some(w) => format!(
                "NOT SERVING: everyone went down; replica {} waits for replica {} before the \
                 view is formed again ({n_up} of {replicas} up)",
                w.id,
                ids(&w.waiting_for)
            ),
            None => format!(
                "NOT SERVING: no primary yet (forming a view{}; {n_up} of {replicas} up)",
                view.map_or(String::new(), |v| format!(" after view {v}"))
            ),
        },
    };
    Verdict {
        serving: summary.starts_with("serving"),
        primary: primary.map(|p| p.id),
        view,
        up: n_up,
        configured: replicas,
        summary,
    }
}

/// "0, 2", or "none".
fn ids(ids: &[ReplicaId]) -> String {
    if ids.is_empty() {
        return "none".to_owned();
    }
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// "0,2" for a table cell, "-" when empty.
fn cell(ids: &[ReplicaId]) -> String {
    if ids.is_empty() {
        return "-".to_owned();
    }
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The table: one row per replica, lag measured from the highest commit number seen.
pub fn table(answers: &[Answer]) -> String {
    let top = answers
        .iter()
        .filter_map(|a| a.status.as_ref().ok().map(|s| s.commit))
        .max();
    let mut out = format!(
        "{:<3} {:<22} {:<5} {:<9} {:>6} {:>8} {:>8} {:>6}  {:<9} {:<7} {}\n",
        "id",
        "address",
        "state",
        "role",
        "view",
        "commit",
        "last",
        "lag",
        "members",
        "leases",
        "waits"
    );
    for a in answers {
        out += &match &a.status {
            Ok(s) => format!(
                "{:<3} {:<22} {:<5} {:<9} {:>6} {:>8} {:>8} {:>6}  {:<9} {:<7} {}\n",
                s.id,
                a.address,
                "up",
                role_name(s),
                s.view,
                s.commit,
                s.last_index,
                lag(top, s.commit),
                // An asterisk: not every member has accepted the view yet.
                format!(
                    "{}{}",
                    cell(&s.members),
                    if s.established { "" } else { "*" }
                ),
                cell(&s.leases),
                cell(&s.waiting_for),
            ),
            Err(e) => format!("{:<3} {:<22} {:<5} ({e})\n", a.id, a.address, "down"),
        };
    }
    out
}

fn lag(top: Option<OpIndex>, commit: OpIndex) -> OpIndex {
    top.unwrap_or(commit).saturating_sub(commit)
}

/// The role as the table shows it; a replica coming back (restarted or left out) is
/// "rejoining" until the primary's view has it again.
pub fn role_name(status: &Status) -> &'static str {
    match status.role {
        _ if status.rejoining => "rejoining",
        Role::Primary => "primary",
        Role::Backup => "backup",
        Role::Candidate => "proposing",
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
    #[serde(skip_serializing_if = "Option::is_none")]
    members: Option<&'a [ReplicaId]>,
    /// Whether every member accepted the view.
    #[serde(skip_serializing_if = "Option::is_none")]
    established: Option<bool>,
    /// Peers this replica holds an unexpired lease from.
    #[serde(skip_serializing_if = "Option::is_none")]
    leases: Option<&'a [ReplicaId]>,
    /// Everyone went down: whom this replica waits for.
    #[serde(skip_serializing_if = "Option::is_none")]
    waiting_for: Option<&'a [ReplicaId]>,
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
                role: s.map(role_name),
                view: s.map(|s| s.view),
                primary: s.and_then(|s| s.primary),
                commit: s.map(|s| s.commit),
                last_index: s.map(|s| s.last_index),
                log_start: s.map(|s| s.log_start),
                lag: s.map(|s| lag(top, s.commit)),
                members: s.map(|s| s.members.as_slice()),
                established: s.map(|s| s.established),
                leases: s.map(|s| s.leases.as_slice()),
                waiting_for: s.map(|s| s.waiting_for.as_slice()),
            }
        })
        .collect();
    serde_json::to_string(&Json { verdict, replicas }).expect("plain data serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(id: ReplicaId, role: Role, view: View, members: &[ReplicaId]) -> Answer {
        Answer {
            id,
            address: format!("127.0.0.1:700{id}"),
            status: Ok(Status {
                id,
                role,
                view,
                primary: (role != Role::Candidate).then_some(members[0]),
                commit: 10,
                last_index: 10,
                log_start: 1,
                members: members.to_vec(),
                established: true,
                rejoining: false,
                leases: Vec::new(),
                waiting_for: Vec::new(),
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

    fn status(answer: &mut Answer) -> &mut Status {
        answer.status.as_mut().unwrap()
    }

    #[test]
    fn a_primary_with_every_member_of_its_view_up_serves_even_alone() {
        let answers = [
            up(0, Role::Backup, 7, &[2, 0]),
            down(1),
            up(2, Role::Primary, 7, &[2, 0]),
        ];
        let v = verdict(&answers);
        assert!(v.serving);
        assert_eq!(
            v.summary,
            "serving: primary 2, view 7 (members 2, 0), 2 of 3 up"
        );
        // Two crashes: the survivor serves alone in its view of one.
        let v = verdict(&[down(0), down(1), up(2, Role::Primary, 9, &[2])]);
        assert_eq!(
            v.summary,
            "serving: primary 2, view 9 (members 2), 1 of 3 up"
        );
    }

    #[test]
    fn a_member_down_an_unestablished_view_or_no_primary_is_not_serving_with_the_reason() {
        let v = verdict(&[down(0), down(1), down(2)]);
        assert!(!v.serving);
        assert_eq!(v.summary, "NOT SERVING: no replica answered (0 of 3 up)");

        let v = verdict(&[
            up(0, Role::Primary, 7, &[0, 1, 2]),
            up(1, Role::Backup, 7, &[0, 1, 2]),
            down(2),
        ]);
        assert!(!v.serving);
        assert_eq!(
            v.summary,
            "NOT SERVING: primary 0 of view 7 waits for member 2 (down) until a new view \
             leaves it out (2 of 3 up)"
        );

        let mut installing = up(0, Role::Primary, 8, &[0, 1]);
        status(&mut installing).established = false;
        let v = verdict(&[installing, up(1, Role::Backup, 7, &[0, 1, 2]), down(2)]);
        assert_eq!(
            v.summary,
            "NOT SERVING: primary 0 is installing view 8 (members 0, 1); 2 of 3 up"
        );

        let v = verdict(&[
            up(0, Role::Candidate, 9, &[0, 1]),
            up(1, Role::Candidate, 8, &[0, 1]),
            down(2),
        ]);
        assert_eq!(
            v.summary,
            "NOT SERVING: no primary yet (forming a view after view 9; 2 of 3 up)"
        );

        let mut waiting = up(1, Role::Backup, 9, &[0, 1]);
        status(&mut waiting).waiting_for = vec![0];
        let v = verdict(&[down(0), waiting, down(2)]);
        assert_eq!(
            v.summary,
            "NOT SERVING: everyone went down; replica 1 waits for replica 0 before the view \
             is formed again (1 of 3 up)"
        );

        // An old primary whose view was superseded does not count.
        let v = verdict(&[
            up(0, Role::Primary, 3, &[0, 1, 2]),
            up(1, Role::Candidate, 4, &[1, 2]),
            down(2),
        ]);
        assert!(!v.serving, "{}", v.summary);
    }

    #[test]
    fn the_table_shows_members_leases_and_whom_a_replica_waits_for() {
        let mut primary = up(0, Role::Primary, 7, &[0, 1]);
        status(&mut primary).leases = vec![1];
        let mut rejoining = up(2, Role::Backup, 5, &[0, 1, 2]);
        status(&mut rejoining).rejoining = true;
        status(&mut rejoining).established = false;
        let text = table(&[primary, up(1, Role::Backup, 7, &[0, 1]), rejoining]);
        let rows: Vec<&str> = text.lines().collect();
        assert!(rows[0].ends_with("members   leases  waits"), "{text}");
        assert!(
            rows[1].contains("primary") && rows[1].contains("0,1       1       -"),
            "{text}"
        );
        assert!(
            rows[3].contains("rejoining") && rows[3].contains("0,1,2*"),
            "{text}"
        );
    }

    #[test]
    fn json_has_the_verdict_and_each_replica() {
        let answers = [
            up(0, Role::Primary, 7, &[0, 1]),
            up(1, Role::Backup, 7, &[0, 1]),
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
        assert_eq!(value["replicas"][0]["members"], serde_json::json!([0, 1]));
        assert_eq!(value["replicas"][0]["established"], true);
        assert!(!text.contains('\n'));
    }
}
