//! The deployment pieces in `deploy/`: the systemd unit passes `systemd-analyze verify` (and
//! its offline security review stays low), and the example configuration file starts a real
//! server as it is.
mod util;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_roomcast");
const UNIT: &str = include_str!("../deploy/roomcast.service");

fn analyze(args: &[&str]) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(args)
        .output()
        .expect("systemd-analyze (Debian's systemd package; scripts/test.sh installs it)")
}

#[test]
fn the_systemd_unit_verifies() {
    // The unit runs the binary where its install notes put it; verify checks that the command
    // exists, so the copy verified here names the binary just built instead (the one change).
    let exec = "ExecStart=/usr/local/bin/roomcast --config /etc/roomcast/roomcast.toml";
    assert_eq!(UNIT.lines().filter(|l| l.starts_with("ExecStart=")).collect::<Vec<_>>(), [exec]);
    let dir = std::env::temp_dir().join(format!("roomcast-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let unit = dir.join("roomcast.service");
    std::fs::write(&unit, UNIT.replace("/usr/local/bin/roomcast", BIN)).unwrap();
    let path = unit.to_str().unwrap();
    let v = analyze(&["verify", path]);
    let err = String::from_utf8_lossy(&v.stderr);
    assert!(v.status.success() && err.trim().is_empty(), "systemd-analyze verify: {err}");
    let s = analyze(&["security", "--offline=yes", path]);
    let out = String::from_utf8_lossy(&s.stdout);
    let score: f64 = out
        .lines()
        .find_map(|l| l.split("Overall exposure level for roomcast.service: ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {out}"));
    assert!(score <= 2.0, "the hardening slipped: exposure {score}\n{out}");
    for key in
        ["DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict", "StateDirectory=roomcast", "LimitNOFILE="]
    {
        assert!(UNIT.lines().any(|l| l.starts_with(key)), "{key}");
    }
    assert!(UNIT.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    std::fs::remove_dir_all(&dir).ok();
}

/// `deploy/roomcast.toml` as shipped (only the addresses moved to free loopback ports) runs a
/// server: its keys are all known, its values valid, and what it turns on is on.
#[test]
fn the_example_config_starts_a_server() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/roomcast.toml");
    let mut child = Command::new(BIN)
        .args(["--config", config, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut listen, mut admin) = (String::new(), String::new());
    out.read_line(&mut listen).unwrap();
    out.read_line(&mut admin).unwrap();
    let addr = listen.trim().strip_prefix("roomcast listening on ").map(str::to_string);
    // ws_auth is on: a page without a connect token is refused, saying so.
    let refusal = addr.as_ref().map(|a| {
        let mut c = util::Client::connect(&format!("ws://{a}/ws?systemId=s"));
        c.recv()
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(addr.is_some(), "{listen}");
    assert!(admin.starts_with("roomcast admin on "), "admin_listen is on: {admin}");
    let refusal = refusal.flatten().expect("a refusal frame");
    assert_eq!(refusal["code"], -1001, "{refusal}");
    assert!(refusal["msg"].as_str().unwrap().contains("connect token"), "{refusal}");
}
