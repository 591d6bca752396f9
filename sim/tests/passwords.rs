//! Runs with accounts that have passwords: creates and right and wrong logins all happen,
//! pass every checker, and the wrong guesses get the one uniform error.

use chat_sim::{run, SimOptions};
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
            if line["type"] != "return" || !matches!(op, "CreateWithPassword" | "LoginVerified") {
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
    assert!(seen("LoginVerified", "LoggedIn").is_some(), "{outcomes:?}");
    assert!(
        seen("LoginVerified", "Error BadCredentials").is_some(),
        "{outcomes:?}"
    );
    let login_errors: Vec<_> = outcomes
        .keys()
        .filter(|(op, result)| op == "LoginVerified" && result.starts_with("Error"))
        .collect();
    assert!(
        login_errors
            .iter()
            .all(|(_, r)| r == "Error BadCredentials" || r == "Error SessionExpired"),
        "a login with a password failed otherwise than uniformly: {login_errors:?}"
    );
    eprintln!("{outcomes:?}");
}
