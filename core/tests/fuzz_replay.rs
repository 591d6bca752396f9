//! Replays every fuzz target's committed corpus and regression inputs through the very same
//! functions libFuzzer runs (`fuzz/src/checks.rs`), on stable Rust, in every `cargo test`.

#[path = "../../fuzz/src/checks.rs"]
mod checks;

use std::path::Path;

#[test]
fn every_corpus_and_regression_input_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut replayed = 0;
    for (name, check) in checks::TARGETS {
        assert!(
            root.join("fuzz_targets").join(format!("{name}.rs")).exists(),
            "target {name} has no fuzz_targets/{name}.rs"
        );
        for folder in ["corpus", "regressions"] {
            let dir = root.join(folder).join(name);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| check(&data));
                assert!(outcome.is_ok(), "{name}: input {} fails", path.display());
                replayed += 1;
            }
        }
        // Inputs every target must survive, corpus or not.
        for data in [&b""[..], b"\0", b"\xff\xff\xff\xff", b"\x00\x00\x00\x01\x00"] {
            check(data);
        }
    }
    println!("replayed {replayed} fuzz inputs");
}
