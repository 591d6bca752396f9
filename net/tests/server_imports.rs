//! `net/src/server` flows one way: the event loop uses the parts (links, peers, clients,
//! passwords, handshake), and no part reaches back into the loop or into a part that uses
//! it. Read from the sources: module `a` uses module `b` if a line of `a` outside its tests
//! and comments names `super::b` or `crate::server::b` (for `mod.rs`, `b::`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

fn server_modules() -> Graph {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server");
    let sources: BTreeMap<String, String> = std::fs::read_dir(&dir)
        .expect("net/src/server")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).expect("a source file"))
        })
        .collect();
    let mut graph = Graph::new();
    for (module, source) in &sources {
        let code = source.split("#[cfg(test)]").next().unwrap_or_default();
        let mut uses = BTreeSet::new();
        for line in code.lines().map(str::trim) {
            if line.starts_with("//") {
                continue; // doc links are not imports
            }
            for other in sources.keys().filter(|other| *other != module) {
                let named = if module == "mod" {
                    line.contains(&format!("{other}::")) && !line.starts_with("mod ")
                } else {
                    line.contains(&format!("super::{other}::"))
                        || line.contains(&format!("super::{other};"))
                        || line.contains(&format!("crate::server::{other}::"))
                };
                if named {
                    uses.insert(other.clone());
                }
            }
            if module != "mod" && (line.contains("use super::{") || line.contains("super::*")) {
                uses.insert("mod".to_owned());
            }
        }
        graph.insert(module.clone(), uses);
    }
    graph
}

/// A cycle through `from`, if there is one.
fn cycle(graph: &Graph, from: &str, path: &mut Vec<String>) -> Option<Vec<String>> {
    if let Some(at) = path.iter().position(|m| m == from) {
        let mut cycle = path[at..].to_vec();
        cycle.push(from.to_owned());
        return Some(cycle);
    }
    path.push(from.to_owned());
    for next in graph.get(from).into_iter().flatten() {
        if let Some(cycle) = cycle(graph, next, path) {
            return Some(cycle);
        }
    }
    path.pop();
    None
}

#[test]
fn no_module_of_the_server_imports_back_into_one_that_uses_it() {
    let graph = server_modules();
    // The reading works: the loop's known uses are found.
    for part in ["links", "peers", "clients", "passwords", "handshake"] {
        assert!(
            graph["event_loop"].contains(part),
            "event_loop should use {part}: {graph:?}"
        );
    }
    for module in graph.keys() {
        if let Some(cycle) = cycle(&graph, module, &mut Vec::new()) {
            panic!("import cycle in net/src/server: {}", cycle.join(" -> "));
        }
    }
}
