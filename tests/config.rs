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

/// SO_REUSEPORT must not let a second server silently share a port (it would take half the
/// connections): the second one refuses to start.
#[test]
fn a_second_server_on_the_same_port_refuses_to_start() {
    let s = Server::start(&[]);
    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["--listen", &s.addr.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    let status = loop {
        if let Some(st) = second.try_wait().unwrap() {
            break st;
        }
        if t.elapsed() > std::time::Duration::from_secs(5) {
            let _ = second.kill();
            panic!("a second server started on the same port");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("in use"), "{err}");
    s.register("still-mine");
}

#[test]
fn a_bad_redis_url_is_refused_with_a_clear_message() {
    for url in ["http://example.com", "redis://", "rediss://127.0.0.1:6379/#insecure", "redis+sentinel://h:1"] {
        let err = refused_settings(&["--redis", url]);
        assert!(err.contains("redis"), "{url}: {err}");
    }
}

/// Security review, low: `--help` printed ROOMCAST_REDIS and ROOMCAST_WEBHOOK_URL from the
/// environment, passwords included; a bad value echoed the webhook URL as given; an
/// out-of-range duration wrapped silently.
#[test]
fn secrets_in_the_environment_are_never_printed() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_roomcast"))
            .args(args)
            .env("ROOMCAST_REDIS", "redis://:redispw@127.0.0.1:1")
            .env("ROOMCAST_WEBHOOK_URL", "ftp://hook:hookpw@example.invalid/x?key=hookkey")
            .env("ROOMCAST_WEBHOOK_SECRET", "whsecret")
            .env("ROOMCAST_JWT_SECRET", "jwtsecret")
            .output()
            .unwrap();
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let (code, help) = run(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(help.contains("ROOMCAST_REDIS") && help.contains("ROOMCAST_WEBHOOK_URL"), "{help}");
    let (code, err) = run(&["--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("webhook_url"), "{err}");
    for secret in ["redispw", "hookpw", "hookkey", "whsecret", "jwtsecret"] {
        assert!(!help.contains(secret), "--help shows {secret}");
        assert!(!err.contains(secret), "the error shows {secret}: {err}");
    }
    assert!(refused_settings(&["--idle-timeout", "50d"]).contains("idle_timeout = 50.0 days"));
}

/// A bound that is a share of each second cannot be more than one.
#[test]
fn a_redis_max_stall_over_a_second_is_refused() {
    let err = refused_settings(&["--redis-max-stall", "2s"]);
    assert!(err.contains("redis_max_stall") && err.contains("at most 1s"), "{err}");
}
