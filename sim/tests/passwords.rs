//! Runs with accounts that have passwords: creates and right and wrong logins all happen,
//! pass every checker, and the wrong guesses get the one uniform error.

use chat_core::replica::Mutations;
use chat_sim::{check, run, RunSpec, SimOptions};
use serde_json::Value;
use std::collections::BTreeMap;

#[test]
fn password_calls_are_made_answered_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mut outcomes: BTreeMap<(String, String), usize> = BTreeMap::new();
    for seed in [3, 11, 27] {
        let path = dir.path().join(format!("history-{seed}.jsonl"));
        run(SimOptions {
            history_path: Some(path.clone()),
            ..SimOptions::for_seed(seed)
        })
        .unwrap_or_else(|failure| panic!("seed {seed}: {failure:?}"));
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines() {
            let line: Value = serde_json::from_str(line).unwrap();
            let op = line["op"].as_str().unwrap_or_default();
            if line["type"] != "return" || !matches!(op, "CreateWithPassword" | "LoginWithPassword")
            {
                continue;
            }
            let result = match &line["result"] {
                Value::Object(map) => map.keys().next().unwrap().clone(),
                other => other.as_str().unwrap().to_owned(),
            };
            let detail = match &line["result"]["Error"] {
                Value::String(e) => e.clone(),
                Value::Object(map) => map.keys().next().unwrap().clone(),
                _ => String::new(),
            };
            *outcomes
                .entry((
                    op.to_owned(),
                    format!("{result} {detail}").trim().to_owned(),
                ))
                .or_default() += 1;
        }
    }
    let seen = |op: &str, result: &str| outcomes.get(&(op.into(), result.into())).copied();
    assert!(
        seen("CreateWithPassword", "Created").is_some(),
        "{outcomes:?}"
    );
    assert!(
        seen("LoginWithPassword", "LoggedIn").is_some(),
        "{outcomes:?}"
    );
    assert!(
        seen("LoginWithPassword", "Error BadCredentials").is_some(),
        "{outcomes:?}"
    );
    let login_errors: Vec<_> = outcomes
        .keys()
        .filter(|(op, result)| op == "LoginWithPassword" && result.starts_with("Error"))
        .collect();
    assert!(
        login_errors
            .iter()
            .all(|(_, r)| r == "Error BadCredentials" || r == "Error SessionExpired"),
        "a login with a password failed otherwise than uniformly: {login_errors:?}"
    );
    eprintln!("{outcomes:?}");
}

/// Issue 9: in these seeds a new primary used to refuse the right password of an account
/// whose creation it had not applied yet (`BadCredentials` for `2|fay|pw-fay` in seed 42).
/// They pass now, under a checker that decides every login from the client's password and the
/// state at its log position. With the stale read switched back on, the first seed that
/// meets the lag fails on exactly that (which seed it is moves with every change to the
/// simulator's schedules: seed 2 since snapshots are written in the background, 2026-12-03).
#[test]
fn a_new_primary_answers_the_right_password_rightly() {
    for seed in [42, 388] {
        if let Err(failure) = check(RunSpec::new(seed)) {
            panic!("{failure}");
        }
    }
    let failure = (0..200)
        .find_map(|seed| {
            let stale = RunSpec {
                mutations: Mutations {
                    stale_reads: true,
                    ..Mutations::default()
                },
                ..RunSpec::new(seed)
            };
            check(stale).err()
        })
        .expect("the stale read is caught within 200 seeds");
    assert!(
        failure
            .message
            .contains("the sequential model answers Some(LoggedIn"),
        "{failure}"
    );
}
