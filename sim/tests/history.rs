//! The client history written as JSON Lines has the documented shape (sim/README.md) and
//! holds every call and return of the run.

use chat_sim::{run, SimOptions};
use serde_json::Value;

#[test]
fn a_run_writes_its_history_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    let report = run(SimOptions {
        history_path: Some(path.clone()),
        ..SimOptions::for_seed(11)
    })
    .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
        .collect();
    let count = |kind: &str| lines.iter().filter(|l| l["type"] == kind).count();
    assert_eq!(count("call"), report.calls);
    assert_eq!(count("return"), report.returns);
    assert!(count("push") > 0);
    let mut last_time = 0;
    for line in &lines {
        let time = line["time_us"].as_u64().expect("time_us");
        assert!(time >= last_time, "lines are in time order");
        last_time = time;
        assert_eq!(line["client"].as_str().expect("client").len(), 32);
        assert!(line["slot"].is_u64());
        match line["type"].as_str().unwrap() {
            "call" | "return" => {
                assert!(line["request"].is_u64());
                assert!(line["op"].is_string());
                assert!(line["args"].is_object());
                assert_eq!(line["result"].is_null(), line["type"] == "call");
            }
            "push" => {
                assert!(line["conn"].is_u64());
                assert!(line["message"]["id"].is_u64());
            }
            other => panic!("unknown line type {other}"),
        }
    }
}
