//! The README's webhook verification snippets (Python and JavaScript), taken from the README
//! itself, run as real receivers against a real roomcast: they accept its signed requests and
//! refuse the same request replayed with an old timestamp or a changed body.
mod util;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use util::*;

const KEY: &str = "verify-secret";

/// The README's first fenced block of `lang` after the "Verifying the signature" paragraph.
fn snippet(lang: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let from = readme.find("**Verifying the signature.**").expect("the README's verification paragraph");
    let rest = &readme[from..];
    let open = format!("```{lang}\n");
    let start = rest.find(&open).unwrap_or_else(|| panic!("no {lang} block")) + open.len();
    let end = rest[start..].find("```").unwrap() + start;
    rest[start..end].to_string()
}

const PY_SERVER: &str = r#"
import http.server, sys
secret = sys.argv[2].encode()
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        ts, sig = self.headers.get("X-Roomcast-Timestamp", ""), self.headers.get("X-Roomcast-Signature", "")
        ok = verified(secret, body, ts, sig)
        replay = verified(secret, body, str(int(ts) - 400), sig) if ts.isascii() and ts.isdigit() else True
        changed = verified(secret, body + b" ", ts, sig)
        print("ok" if ok and not replay and not changed else "bad", flush=True)
        self.send_response(200 if ok else 401)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

const JS_SERVER: &str = r#"
const http = require("http");
const secret = process.argv[2];
http.createServer((req, res) => {
  const parts = [];
  req.on("data", (c) => parts.push(c));
  req.on("end", () => {
    const body = Buffer.concat(parts);
    const ts = req.headers["x-roomcast-timestamp"] || "", sig = req.headers["x-roomcast-signature"] || "";
    const ok = verified(secret, body, ts, sig);
    const replay = verified(secret, body, String(Number(ts) - 400), sig);
    const changed = verified(secret, Buffer.concat([body, Buffer.from(" ")]), ts, sig);
    console.log(ok && !replay && !changed ? "ok" : "bad");
    res.writeHead(ok ? 200 : 401, { "Content-Length": 0 });
    res.end();
  });
}).listen(0, "127.0.0.1", function () { console.log(this.address().port); });
"#;

/// Runs `program` (the snippet plus a server around it) and a roomcast posting to it; the
/// receiver must verify the first request and refuse its replay.
fn receiver_verifies(interpreter: &str, flag: &str, program: String) {
    // The key twice: `python3 -c P A B` has it as sys.argv[2], `node -e P A B` as process.argv[2].
    let mut rx = Killed(
        Command::new(interpreter)
            .args([flag, &program, KEY, KEY])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{interpreter} is needed for this test: {e}")),
    );
    let mut out = BufReader::new(rx.0.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port: u16 = line.trim().parse().unwrap_or_else(|_| panic!("{interpreter}: no port: {line:?}"));
    let url = format!("http://127.0.0.1:{port}/hooks");
    let s = Server::start(&["--webhook-url", &url, "--webhook-secret", KEY, "--webhook-batch-delay", "10ms"]);
    s.register("a");
    let _c = s.client("a");
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ok", "{interpreter}: the README's snippet did not accept roomcast's request");
    wait_metric(&s, "webhook_batches_ok_total", 1, "the batch was not acknowledged");
    // A forged signature of the right length with a non-ASCII byte (a naive length check
    // passes, then a comparison of unequal byte lengths throws): refused, and the receiver
    // keeps serving.
    let now = roomcast::auth::now_secs().to_string();
    let mut odd = b"sha256=".to_vec();
    odd.extend([b'0'; 63]);
    odd.push(0xe9);
    for sig in [odd, b"sha256=00".to_vec()] {
        assert_eq!(post_signed(port, now.as_bytes(), &sig), 401, "{interpreter}: a forged signature {sig:?}");
    }
    // A timestamp of a non-ASCII digit ("¹" in Latin-1: Python's isdigit() says yes, int() throws).
    assert_eq!(post_signed(port, &[0xb9], b"sha256=00"), 401, "{interpreter}: a forged timestamp");
}

/// A child process killed when dropped: a failed assertion must not leave the receiver
/// running (it holds the test's stderr, and `cargo test` would wait for it).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// POSTs `{}` with these timestamp and signature headers (raw bytes) to the receiver on
/// `port`: its status, 0 if it did not answer at all.
fn post_signed(port: u16, ts: &[u8], sig: &[u8]) -> u16 {
    let headers = [("X-Roomcast-Timestamp", ts), ("X-Roomcast-Signature", sig)];
    util::hooks::post_raw(([127, 0, 0, 1], port).into(), "/hooks", &headers, b"{}")
}

#[test]
fn the_readme_python_snippet_verifies_real_requests() {
    receiver_verifies("python3", "-c", format!("{}\n{PY_SERVER}", snippet("python")));
}

#[test]
fn the_readme_js_snippet_verifies_real_requests() {
    receiver_verifies("node", "-e", format!("{}\n{JS_SERVER}", snippet("js")));
}
