//! Systems that need no `register` call after a start: the `systems` setting (flag, and a list
//! in the TOML file; one node and a cluster on a real Redis), and a single node's `state_dir`
//! (the registered systems written there and read back by the next process; a state that is
//! not ours gives a clean start), and the recoverable sessions a SIGTERM writes there, resumed
//! after the next start with their clientIds, groups and unacknowledged frames, nobody told.
//! Real server processes, real WebSocket and HTTP clients, a real webhook receiver.

mod util;

use std::path::PathBuf;
use std::time::Duration;

use tungstenite::protocol::frame::coding::CloseCode;
use util::hooks::{names_for, Receiver};

use serde_json::json;
use util::*;

/// The clientId a presence notice (1001/1002, `data` a JSON string) is about.
fn about(notice: &serde_json::Value) -> String {
    let data: serde_json::Value = serde_json::from_str(notice["data"].as_str().unwrap_or("null")).unwrap();
    data["clientId"].as_str().unwrap_or_default().to_string()
}

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
    assert_eq!((&v["format"], &v["version"]), (&json!("roomcast-state"), &json!(2)), "{text}");
    assert!(v.get("sessions").is_none(), "no recoverable session, none written: {text}");

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

fn send_group(s: &Server, msg: &str) -> String {
    let (st, v) = s.api("send_to_group", Some("a"), json!({"groupName": "g", "msg": msg}));
    assert_eq!(st, 200, "{v}");
    v["data"]["messageId"].as_str().unwrap().to_string()
}

/// The next push frames of `c` up to and including the one with messageId `until`.
fn frames_until(c: &mut Client, until: &str) -> Vec<serde_json::Value> {
    let mut got = Vec::new();
    loop {
        let f = c.recv().unwrap_or_else(|| panic!("no frame {until}; got {got:?}"));
        let done = f["messageId"] == until;
        got.push(f);
        if done {
            return got;
        }
    }
}

fn online(s: &Server) -> Vec<(String, String)> {
    let (st, v) = s.api("get_online_list", Some("a"), json!({"groupName": "g", "withUsers": true}));
    assert_eq!(st, 200, "{v}");
    let mut list: Vec<(String, String)> = v["data"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["clientId"].as_str().unwrap().into(), m["userId"].as_str().unwrap().into()))
        .collect();
    list.sort();
    list
}

/// The single-node restart of issue 26: a SIGTERM closes recoverable clients with 1012 (others
/// 1001) and writes their sessions; the next process, with nothing but the same `state_dir`,
/// takes the node id back, and each client resumes with its clientId, its group and user, and
/// exactly the frames it had not processed, in order; the group's online list never dropped
/// them, no presence webhook fired for them, and a session not resumed in its window ends
/// with one 1002 as any lapsed session does.
#[test]
fn recoverable_sessions_outlive_a_restart_with_state_dir() {
    let dir = empty_dir("sessions");
    let d = dir.to_str().unwrap();
    let hooks = Receiver::start(None);
    let url = hooks.url();
    let mut s = Server::start(&[
        "--state-dir",
        d,
        "--systems",
        "a",
        "--webhook-url",
        &url,
        "--webhook-batch-delay",
        "10ms",
        "--shutdown-timeout",
        "1s",
    ]);
    let (mut alice, _) = recovering(&s, None);
    let (mut bob, _) = recovering(&s, None);
    let mut carol = s.client("a");
    for (c, user) in [(&alice.c, "alice"), (&bob.c, "bob"), (&carol, "carol")] {
        s.bind("a", &c.id, "g", user);
    }
    let m1 = send_group(&s, "m1");
    let m2 = send_group(&s, "m2");
    for c in [&mut alice.c, &mut bob.c, &mut carol] {
        frames_until(c, &m2);
    }
    let before = online(&s);
    hooks.wait("the joins", |ev| ev.iter().filter(|e| e["name"] == "group_joined").count() == 3);

    assert!(s.terminate().is_some_and(|st| st.success()));
    assert_eq!(alice.c.close_code(), Some(CloseCode::Restart));
    assert_eq!(bob.c.close_code(), Some(CloseCode::Restart));
    assert_eq!(carol.close_code(), Some(CloseCode::Away), "not recoverable: a plain shutdown");
    let text = std::fs::read_to_string(dir.join("state.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["sessions"].as_array().map(Vec::len), Some(2), "{text}");
    assert!(!text.contains(&alice.token), "the token itself is never written");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("state.json")).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "resume secrets: the owner's only ({mode:o})");

    // The next process: no --systems, no --node-id. (The window counts from the shutdown,
    // which waited up to its 1 s for carol's close reply: the test reads it only now.)
    let s = Server::start(&[
        "--state-dir",
        d,
        "--webhook-url",
        &url,
        "--webhook-batch-delay",
        "10ms",
        "--recovery-window",
        "6s",
    ]);
    assert_eq!(metric(&s, "recovery_restored_total"), 2);
    assert_eq!(metric(&s, "recovery_sessions"), 2, "both kept, detached");
    let (mut alice2, hello) = recovering(&s, Some((&alice.token, &m1)));
    assert_eq!(
        (hello["data"]["clientId"].as_str(), &hello["data"]["recovered"]),
        (Some(&*alice.c.id), &json!(true)),
        "{hello}"
    );
    // Exactly what came after m1: m2, then carol's 1002 (she left at the shutdown).
    assert_eq!(alice2.c.recv().unwrap()["msg"], "m2");
    let missed = alice2.c.recv().unwrap();
    assert_eq!((&missed["code"], about(&missed)), (&json!(1002), carol.id.clone()), "{missed}");
    assert_eq!(
        online(&s),
        before.into_iter().filter(|(id, _)| *id != carol.id).collect::<Vec<_>>(),
        "nobody dropped from g"
    );
    let m3 = send_group(&s, "m3");
    let got = frames_until(&mut alice2.c, &m3);
    assert_eq!(got.len(), 1, "m3 only: {got:?}");
    let (st, v) = s.api("send_to_client", Some("a"), json!({"clientId": alice.c.id, "msg": "direct"}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(alice2.c.recv().unwrap()["msg"], "direct");

    // Bob does not come back: his window (6 s from the shutdown) ends his session, told once.
    alice2.c.set_timeout(Duration::from_secs(10));
    let gone = alice2.c.expect_code(1002);
    assert_eq!(about(&gone), bob.c.id, "{gone}");
    assert_eq!(online(&s).len(), 1);
    let ev = hooks.wait("bob's end", |ev| names_for(ev, &bob.c.id).contains(&"client_disconnected".to_string()));
    assert_eq!(
        names_for(&ev, &alice.c.id),
        ["client_connected", "group_joined"],
        "nothing about alice across the restart"
    );
    assert_eq!(names_for(&ev, &bob.c.id), ["client_connected", "group_joined", "group_left", "client_disconnected"]);
}
