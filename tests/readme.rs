//! The README's quick start, run as written: its shell block (with a free port instead of 7800,
//! and the binary already built), and every output it shows (`# {...}` lines) must come out,
//! in order, ids aside.

use std::process::Command;

const README: &str = include_str!("../README.md");

/// The first ```sh block after `heading`.
fn block_after(heading: &str) -> &'static str {
    let from = README.find(heading).expect("the heading");
    let rest = &README[from..];
    let start = rest.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let len = rest[start..].find("\n```").expect("the block's end");
    &rest[start..start + len]
}

/// Runs of 16 or more hex digits (messageIds, clientIds) as `#`.
fn without_ids(line: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    for ch in line.chars().chain(std::iter::once(' ')) {
        if ch.is_ascii_hexdigit() {
            run.push(ch);
            continue;
        }
        out.push_str(if run.len() >= 16 { "#" } else { &run });
        run.clear();
        out.push(ch);
    }
    out.pop();
    out
}

#[test]
fn the_quick_start_runs_as_written() {
    let block = block_after("## Quick start");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // Built already (this test runs against it): the block's build line would only rebuild it.
    let script: String = block
        .lines()
        .filter(|l| !l.starts_with("cargo build"))
        .map(|l| l.replace("7800", &port.to_string()) + "\n")
        .collect();
    let dir = std::env::temp_dir().join(format!("roomcast-readme-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("target")).unwrap();
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_roomcast")).parent().unwrap();
    let release = dir.join("target/release");
    let _ = std::fs::remove_file(&release);
    std::os::unix::fs::symlink(bin_dir, &release).unwrap();
    let out = Command::new("timeout").args(["60", "bash", "-c", &script]).current_dir(&dir).output().expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the quick start failed: {stderr}\n{stdout}");
    let expected: Vec<String> =
        block.lines().filter_map(|l| l.strip_prefix("# {")).map(|l| without_ids(&format!("{{{l}"))).collect();
    assert!(expected.len() >= 7, "{expected:?}");
    let got: Vec<String> = stdout.lines().map(without_ids).collect();
    let mut at = 0;
    for e in &expected {
        match got[at..].iter().position(|g| g == e) {
            Some(i) => at += i + 1,
            None => {
                panic!("the README shows\n  {e}\nbut the quick start printed (after what matched)\n{:#?}", &got[at..])
            }
        }
    }
    assert!(!dir.join("client.log").exists(), "its last line cleans up");
    std::fs::remove_dir_all(&dir).ok();
}
