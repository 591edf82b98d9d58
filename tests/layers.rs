//! The layers the crate docs promise, kept by reading the source: the pure protocol code names
//! nothing above it, the cross-thread contract (`msg`) names neither the threads' modules
//! (shard, hub, cluster, server) nor anything that owns a socket, and no two top-level modules
//! name each other, directly or through others (tests included).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The `crate::<module>` names used in `file`'s code (comments left out).
fn uses(file: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            found.insert(name);
        }
    }
    found
}

fn check(files: Vec<std::path::PathBuf>, allowed: &[&str]) {
    assert!(!files.is_empty());
    for f in files {
        let bad: Vec<String> = uses(&f).into_iter().filter(|m| !allowed.contains(&m.as_str())).collect();
        assert!(bad.is_empty(), "{} names crate::{bad:?}, above its layer (allowed: {allowed:?})", f.display());
    }
}

fn src(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(rel)
}

#[test]
fn protocol_code_names_nothing_above_it() {
    let dir = src("protocol");
    let files = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).collect();
    check(files, &["protocol", "ids"]);
}

#[test]
fn the_cross_thread_contract_names_no_thread_module() {
    check(vec![src("msg.rs")], &["auth", "handoff", "ids", "protocol", "recovery", "state", "tls", "webhooks"]);
    check(vec![src("handoff.rs"), src("aliases.rs")], &["ids", "state"]);
    check(vec![src("tls/conn.rs")], &[]);
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Top-level module → the other top-level modules its files name.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for e in std::fs::read_dir(src("")).unwrap().flatten() {
        let p = e.path();
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        if name == "lib" || name == "main" {
            continue;
        }
        let mut files = Vec::new();
        match p.is_dir() {
            true => rust_files(&p, &mut files),
            false => files.push(p.clone()),
        }
        let named: BTreeSet<String> = files.iter().flat_map(|f| uses(f)).filter(|m| *m != name).collect();
        graph.entry(name).or_insert_with(BTreeSet::new).extend(named);
    }
    graph
}

#[test]
fn no_module_names_one_that_names_it_back() {
    let graph = module_graph();
    assert!(graph.len() > 10, "read the modules: {graph:?}");
    // Depth-first from each module: reaching itself again is a circle.
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        while let Some((m, path)) = stack.pop() {
            for next in graph.get(&m).into_iter().flatten() {
                assert!(next != start, "an import circle: {} -> {next}", path.join(" -> "));
                if seen.insert(next.clone()) {
                    stack.push((next.clone(), [path.clone(), vec![next.clone()]].concat()));
                }
            }
        }
    }
}
