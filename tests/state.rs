//! Systems that need no `register` call after a start: the `systems` setting (flag, and a list
//! in the TOML file; one node and a cluster on a real Redis), and a single node's `state_dir`
//! (the registered systems written there and read back by the next process; a state that is
//! not ours gives a clean start). Real server processes, real WebSocket and HTTP clients.

mod util;

use std::path::PathBuf;

use serde_json::json;
use util::*;

/// A fresh, empty directory for one test.
fn empty_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("roomcast-test-state-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A connect to `system` is refused: the -1001 frame, naming the system.
fn refused(s: &Server, system: &str) {
    let mut c = Client::connect(&s.url(&format!("/ws?systemId={system}")));
    let frame = c.recv().expect("a refusal frame");
    assert_eq!(frame["code"], -1001, "{system}: {frame}");
    assert!(frame["msg"].as_str().unwrap().contains("not registered"), "{frame}");
}

fn already_registered(s: &Server, system: &str) {
    let (st, v) = s.api("register", None, json!({"systemId": system}));
    assert_eq!(st, 409, "{system}: {v}");
}

#[test]
fn the_systems_setting_registers_at_start_from_a_flag_and_from_the_file() {
    let s = Server::start(&["--systems", "alpha, beta,alpha"]);
    s.client("alpha");
    s.client("beta");
    already_registered(&s, "alpha");
    refused(&s, "gamma");
    assert_eq!(metric(&s, "systems"), 2);

    let dir = empty_dir("toml");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("roomcast.toml");
    std::fs::write(&file, "systems = [\"from-file\", \"second\"]\n").unwrap();
    let s = Server::start(&["--config", file.to_str().unwrap()]);
    s.client("from-file");
    s.client("second");
    refused(&s, "alpha");

    let long = "x".repeat(300);
    assert!(refused_settings(&["--systems", &long]).contains("max_name_bytes"));
    assert!(refused_settings(&["--systems", "a,,b"]).contains("empty systemId"));
}

#[test]
fn a_single_node_keeps_its_registered_systems_in_state_dir_across_a_restart() {
    let dir = empty_dir("restart");
    let d = dir.to_str().unwrap();
    let mut s = Server::start(&["--state-dir", d, "--systems", "preset"]);
    s.register("kept");
    s.register("also-kept");
    assert!(metric(&s, "state_writes_total") >= 3, "at start and after each register");
    assert!(s.terminate().is_some_and(|st| st.success()));
    let text = std::fs::read_to_string(dir.join("state.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!((&v["format"], &v["version"]), (&json!("roomcast-state"), &json!(1)), "{text}");

    // The next process, without `systems`: what was registered, and the preset too (it was
    // registered when the state was written), with no register call.
    let s = Server::start(&["--state-dir", d]);
    s.client("kept");
    s.client("also-kept");
    s.client("preset");
    already_registered(&s, "kept");
    refused(&s, "never");
    assert_eq!(metric(&s, "systems"), 3);
}

#[test]
fn a_state_that_is_not_ours_is_set_aside_and_the_node_starts_clean() {
    for (name, body) in [
        ("garbage", &b"\x00\xffnot json at all"[..]),
        ("foreign", br#"{"format":"something-else","version":1,"systems":["kept"]}"#),
        ("future", br#"{"format":"roomcast-state","version":7,"systems":["kept"]}"#),
    ] {
        let dir = empty_dir(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("state.json"), body).unwrap();
        let s = Server::start(&["--state-dir", dir.to_str().unwrap()]);
        refused(&s, "kept");
        s.register("new");
        s.client("new");
        assert_eq!(std::fs::read(dir.join("state.json.unreadable")).unwrap(), body, "{name}: kept aside as it was");
        let fresh = std::fs::read_to_string(dir.join("state.json")).unwrap();
        assert!(fresh.contains("\"new\"") && !fresh.contains("kept"), "{name}: {fresh}");
    }
}

#[test]
fn state_dir_is_refused_where_it_cannot_work() {
    let file = empty_dir("not-a-dir");
    std::fs::write(&file, b"a file").unwrap();
    let inside = file.join("state");
    assert!(refused_settings(&["--state-dir", inside.to_str().unwrap()]).contains("cannot create"));
    let dir = empty_dir("cluster");
    let err = refused_settings(&["--state-dir", dir.to_str().unwrap(), "--redis", "redis://127.0.0.1:1"]);
    assert!(err.contains("state_dir is for a single node"), "{err}");
}

#[test]
fn a_cluster_registers_the_systems_setting_in_redis() {
    let redis = cluster::Redis::start();
    let a = cluster::node(&redis, &["--systems", "preset"]);
    a.client("preset");
    // A node started without the setting learns the system from Redis.
    let b = cluster::node(&redis, &[]);
    b.client("preset");
    refused(&b, "other");
    let (st, v) = b.api("register", None, json!({"systemId": "preset"}));
    assert_eq!(st, 409, "{v}");
}
