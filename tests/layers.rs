//! The layers the crate docs promise, kept by reading the source: the pure protocol code names
//! nothing above it, and the cross-thread contract (`msg`) names neither the threads' modules
//! (shard, hub, cluster, server) nor anything that owns a socket.

use std::collections::BTreeSet;
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
    check(files, &["protocol", "ids", "recovery"]);
}

#[test]
fn the_cross_thread_contract_names_no_thread_module() {
    check(vec![src("msg.rs")], &["auth", "ids", "protocol", "recovery", "tls", "webhooks"]);
    check(vec![src("tls/conn.rs")], &[]);
}
