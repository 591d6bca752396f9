//! `core` must stay sans-IO: this test fails, naming file and line, if anything under
//! `core/src` mentions a filesystem, socket, thread, clock, process, environment or OS
//! randomness API. The check is textual and strict: comments count too.

use std::path::{Path, PathBuf};

/// Paths and calls that would let the outside world into the state machines.
const FORBIDDEN: &[&str] = &[
    "std::fs",
    "std::net",
    "std::thread",
    "Instant::now",
    "SystemTime::now",
    "thread_rng",
    "OsRng",
    "getrandom",
    "from_entropy",
    "std::process",
    "std::env",
];

/// Every forbidden word in `text`, as `(line number, word)`.
fn violations(text: &str) -> Vec<(usize, &'static str)> {
    text.lines()
        .enumerate()
        .flat_map(|(i, line)| {
            FORBIDDEN
                .iter()
                .filter(move |word| line.contains(*word))
                .map(move |word| (i + 1, *word))
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn core_src_uses_no_io_clock_or_os_randomness() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(
        files.iter().any(|f| f.ends_with("lib.rs")),
        "no sources found under {}",
        src.display()
    );
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable source");
        for (line, word) in violations(&text) {
            found.push(format!("{}:{line}: uses `{word}`", file.display()));
        }
    }
    assert!(
        found.is_empty(),
        "core must stay pure:\n{}",
        found.join("\n")
    );
}

#[test]
fn scanner_flags_a_socket_import() {
    let text = "use serde::Serialize;\nuse std::net::TcpStream;\n";
    assert_eq!(violations(text), vec![(2, "std::net")]);
}

#[test]
fn scanner_flags_clocks_and_randomness() {
    let text = "let t = std::time::Instant::now();\nlet r = rand::thread_rng();\n";
    assert_eq!(
        violations(text),
        vec![(1, "Instant::now"), (2, "thread_rng")]
    );
}

#[test]
fn scanner_accepts_pure_code() {
    assert!(violations("use crate::time::Instant;\nlet x = now + timeout;\n").is_empty());
}
