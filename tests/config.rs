//! Configuration reaches the running server from flags, `ROOMCAST_*` variables and the
//! TOML file, with flags winning.
mod util;

use util::*;

fn limit_is(s: &Server, max: usize) {
    s.register("a");
    let mut ok = s.client("a");
    ok.send_text(&"x".repeat(max));
    ok.send_text(r#"{"cmd":"ping"}"#);
    assert_eq!(ok.recv().unwrap()["cmd"], "pong");
    let mut big = s.client("a");
    big.send_text(&"x".repeat(max + 1));
    assert_eq!(big.close_code().map(u16::from), Some(1009));
}

#[test]
fn environment_variable_sets_a_limit() {
    let s = Server::start_env(&[], &[("ROOMCAST_MAX_MESSAGE_SIZE", "300")]);
    limit_is(&s, 300);
}

#[test]
fn config_file_sets_a_limit_and_flags_win() {
    let path = std::env::temp_dir().join(format!("roomcast-test-{}.toml", std::process::id()));
    std::fs::write(&path, "max_message_size = 400\nshards = 1\nping_interval = \"10s\"\n").unwrap();
    let s = Server::start(&["--config", path.to_str().unwrap()]);
    limit_is(&s, 400);
    let s = Server::start(&["--config", path.to_str().unwrap(), "--max-message-size", "500"]);
    limit_is(&s, 500);
    std::fs::remove_file(&path).ok();
}

#[test]
fn bad_config_is_refused_with_a_clear_message() {
    let path = std::env::temp_dir().join(format!("roomcast-bad-{}.toml", std::process::id()));
    std::fs::write(&path, "max_mesage_size = 400\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["--listen", "127.0.0.1:0", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("max_mesage_size"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
