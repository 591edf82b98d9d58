//! Log lines as an operator's tools see them: no colour codes when stderr is not a terminal
//! (files, journald, container logs), colour on a terminal unless `NO_COLOR` is set, and
//! `log_format = "json"`: one JSON object per line. A real server process each time; the
//! terminal is a pseudo-terminal made by util-linux's `script`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_roomcast");

/// The server's stderr lines up to its "roomcast started" line (then it is killed).
fn startup_lines(extra: &[&str]) -> Vec<String> {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--shards", "1"])
        .args(extra)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .env_remove("ROOMCAST_LOG_FORMAT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A server that never says it started is killed after 20 s (the test then fails).
    let pid = child.id();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(20));
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    });
    let mut lines = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let done = line.contains("roomcast started");
        lines.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(lines.last().is_some_and(|l| l.contains("roomcast started")), "{lines:?}");
    lines
}

/// What the server writes to a terminal in its first 4 s (`NO_COLOR` as given). (util-linux's
/// `script`, in Debian's essential bsdutils; the server is killed by `timeout`, whatever it was
/// doing: it needs no signal handler for that.)
fn on_a_terminal(no_color: Option<&str>) -> String {
    let cmd = format!("timeout -s KILL 4 '{BIN}' --listen 127.0.0.1:0 --shards 1");
    let mut c = Command::new("script");
    c.args(["-qec", &cmd, "/dev/null"]).env("RUST_LOG", "info").env_remove("NO_COLOR");
    c.env_remove("ROOMCAST_LOG_FORMAT");
    if let Some(v) = no_color {
        c.env("NO_COLOR", v);
    }
    let out = c.output().expect("script (util-linux) runs the server on a pseudo-terminal");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("roomcast started"), "{text}");
    text
}

#[test]
fn text_logs_are_plain_unless_on_a_terminal_without_no_color() {
    let lines = startup_lines(&[]);
    assert!(lines.iter().all(|l| !l.contains('\u{1b}')), "escape codes in a pipe: {lines:?}");
    assert!(on_a_terminal(None).contains("\u{1b}["), "a terminal gets colour");
    assert!(!on_a_terminal(Some("1")).contains('\u{1b}'), "NO_COLOR=1 turns it off");
    assert!(on_a_terminal(Some("")).contains("\u{1b}["), "an empty NO_COLOR is unset (no-color.org)");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let lines = startup_lines(&["--log-format", "json"]);
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{l}");
    }
    let started: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(started["fields"]["message"], "roomcast started");
    assert_eq!(started["fields"]["shards"], 1);
    assert_eq!(started["level"], "INFO");
}

#[test]
fn an_unknown_log_format_is_refused_at_start() {
    let out = Command::new(BIN).args(["--listen", "127.0.0.1:0", "--log-format", "xml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--log-format xml: must be text or json"));
}
