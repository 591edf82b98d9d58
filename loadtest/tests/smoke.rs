//! The harness against a real roomcast process: every scenario runs, reports JSON, and
//! nothing is lost.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Server(Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn server() -> Server {
    server_with(&[])
}

fn server_with(extra: &[&str]) -> Server {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo).args(["build", "-q", "--bin", "roomcast"]).current_dir(root).status().unwrap();
    assert!(st.success());
    let mut child = Command::new(format!("{root}/target/debug/roomcast"))
        .args(["--listen", "127.0.0.1:0", "--shards", "2"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line.trim().rsplit(':').next().unwrap().parse().unwrap();
    Server(child, port)
}

fn run(s: &Server, args: &[&str]) -> serde_json::Value {
    let out = std::env::temp_dir().join(format!("lt-{}-{}.json", std::process::id(), args[0]));
    let st = Command::new(env!("CARGO_BIN_EXE_roomcast-loadtest"))
        .args(args)
        .args(["--port", &s.1.to_string(), "--pid", &s.0.id().to_string(), "--time-limit", "60", "--drain-secs", "10"])
        .args(["--json", out.to_str().unwrap(), "--system", args[0]])
        .status()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    std::fs::remove_file(&out).ok();
    assert!(st.success(), "{v}");
    v
}

#[test]
fn every_scenario_runs_without_loss() {
    let s = server();
    let v = run(&s, &["connect", "--clients", "300", "--procs", "2"]);
    assert_eq!(v["connected"], 300);
    assert!(v["rss_per_connection_bytes"].as_f64().unwrap() > 0.0);
    let v = run(&s, &["fanout", "--clients", "300", "--groups", "7", "--messages", "50", "--procs", "2"]);
    assert_eq!(v["lost"], 0, "{v}");
    let expected = v["expected"].as_u64().unwrap();
    assert!(expected >= 300 * 50 / 7, "{v}");
    assert_eq!(v["delivered"].as_u64(), Some(expected));
    let v = run(&s, &["broadcast", "--clients", "200", "--messages", "20"]);
    assert_eq!(v["delivered"], 200 * 20, "{v}");
    let v = run(&s, &["unicast", "--clients", "100", "--messages", "300", "--procs", "2"]);
    assert_eq!((v["delivered"].as_u64(), v["lost"].as_u64()), (Some(300), Some(0)), "{v}");
    // Users of 3 tabs (the last one has 2): every send_to_user reaches each tab; by clientIds
    // the same.
    for by_ids in [false, true] {
        let mut args = vec!["users", "--clients", "98", "--tabs", "3", "--messages", "200", "--procs", "2"];
        if by_ids {
            args.push("--by-ids");
        }
        let v = run(&s, &args);
        let expected = v["expected"].as_u64().unwrap();
        assert!(expected > 200 * 2, "{v}");
        assert_eq!((v["delivered"].as_u64(), v["lost"].as_u64()), (Some(expected), Some(0)), "{v}");
    }
    let v = run(&s, &["joinstorm", "--clients", "60"]);
    assert_eq!(v["delivered"], 60 * 61 / 2, "{v}");
    let v = run(
        &s,
        &[
            "churn",
            "--clients",
            "100",
            "--groups",
            "4",
            "--messages",
            "300",
            "--send-rate",
            "300",
            "--churners",
            "2",
            "--procs",
            "2",
        ],
    );
    assert_eq!(v["lost"], 0, "{v}");
    assert!(v["churn_sessions"].as_u64().unwrap() > 0, "{v}");
    assert!(v["notices_expected"].as_u64().unwrap() > 0, "{v}");
    assert_eq!((v["notices_missing"].as_u64(), v["notices_duplicated"].as_u64()), (Some(0), Some(0)), "{v}");
    // Session recovery: clients dropped (reset) and resuming during a paced fanout, then all
    // at once; every message exactly once and in order.
    let v = run(
        &s,
        &[
            "recover",
            "--clients",
            "200",
            "--groups",
            "5",
            "--messages",
            "400",
            "--send-rate",
            "200",
            "--drop-rate",
            "40",
        ],
    );
    assert_eq!((v["lost"].as_u64(), v["resume_failed"].as_u64()), (Some(0), Some(0)), "{v}");
    assert!(v["resumed"].as_u64().unwrap() >= 40, "{v}");
    assert_eq!((v["sequence_gaps"].as_u64(), v["duplicated_or_reordered"].as_u64()), (Some(0), Some(0)), "{v}");
    let v = run(&s, &["reconnect", "--clients", "300", "--groups", "3", "--messages", "30", "--procs", "2"]);
    assert_eq!((v["lost"].as_u64(), v["resumed"].as_u64()), (Some(0), Some(300)), "{v}");
    assert_eq!((v["sequence_gaps"].as_u64(), v["duplicated_or_reordered"].as_u64()), (Some(0), Some(0)), "{v}");
}

/// `--tls` and `--compression` on the load tester's side, against a server with both.
#[test]
fn fanout_over_tls_with_compression() {
    let dir = std::env::temp_dir().join(format!("lt-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.join("cert.pem"), c.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), c.key_pair.serialize_pem()).unwrap();
    let (cert, key) = (dir.join("cert.pem").display().to_string(), dir.join("key.pem").display().to_string());
    let s = server_with(&["--tls-cert", &cert, "--tls-key", &key, "--compression"]);
    let v = run(
        &s,
        &[
            "fanout",
            "--tls",
            "--compression",
            "--payload",
            "600",
            "--clients",
            "200",
            "--groups",
            "5",
            "--messages",
            "40",
            "--procs",
            "2",
        ],
    );
    assert_eq!((v["lost"].as_u64(), v["api_errors"].as_u64()), (Some(0), Some(0)), "{v}");
    assert_eq!(v["compressed_frames"].as_u64(), v["delivered"].as_u64(), "every delivered frame came compressed: {v}");
    assert!(v["wire_bytes_per_frame"].as_f64().unwrap() < 600.0, "{v}");
    std::fs::remove_dir_all(&dir).ok();
}
