//! A webhook receiver for the tests: a real HTTP/1.1 server on loopback (keep-alive) that
//! checks every batch's signature and timestamp as the docs tell receivers to, keeps the events
//! of the batches it acknowledged, and can be told to fail (500s), to redirect, to answer late,
//! or to start listening only later.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

#[derive(Default)]
pub struct State {
    /// Events of the acknowledged batches, in arrival order.
    pub events: Vec<Value>,
    /// Requests seen (answered or not).
    pub requests: usize,
    /// Batches whose signature did not verify.
    pub bad_signatures: usize,
    /// Answer the next this many requests with 500.
    pub fail_next: usize,
    /// Sleep this long before answering the next request (once).
    pub delay_next: Option<Duration>,
    /// Answer every request with `302 Found` to this URL while set.
    pub redirect_to: Option<String>,
    /// The X-Roomcast-Timestamp of each signed request, in arrival order.
    pub timestamps: Vec<u64>,
}

pub struct Receiver {
    pub port: u16,
    pub state: Arc<Mutex<State>>,
}

impl Receiver {
    /// Listens on a free port.
    pub fn start(secret: Option<&str>) -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        Self::serve(l, secret)
    }

    /// Listens on `port` (e.g. one a server was told about while nobody listened there).
    pub fn start_on(port: u16, secret: Option<&str>) -> Receiver {
        let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
        Self::serve(l, secret)
    }

    /// A free port nobody listens on (yet).
    pub fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    fn serve(l: TcpListener, secret: Option<&str>) -> Receiver {
        let port = l.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let (st, secret) = (state.clone(), secret.map(str::to_string));
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let (st, secret) = (st.clone(), secret.clone());
                std::thread::spawn(move || connection(s, &st, secret.as_deref()));
            }
        });
        Receiver { port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.port)
    }

    pub fn events(&self) -> Vec<Value> {
        self.state.lock().unwrap().events.clone()
    }

    /// Waits (bounded) until `pred` holds for the events received so far.
    pub fn wait(&self, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let t = Instant::now();
        loop {
            let ev = self.events();
            if pred(&ev) {
                return ev;
            }
            assert!(t.elapsed() < Duration::from_secs(15), "webhooks: never got {what}; got {ev:#?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn connection(s: TcpStream, st: &Mutex<State>, secret: Option<&str>) {
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let (mut len, mut sig, mut ts) = (0usize, None, None);
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap_or((h, ""));
            match k.to_ascii_lowercase().as_str() {
                "content-length" => len = v.trim().parse().unwrap_or(0),
                "x-roomcast-signature" => sig = Some(v.trim().to_string()),
                "x-roomcast-timestamp" => ts = Some(v.trim().to_string()),
                _ => {}
            }
        }
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let (fail, delay, redirect) = {
            let mut g = st.lock().unwrap();
            g.requests += 1;
            if let Some(t) = ts.as_deref().and_then(|t| t.parse().ok()) {
                g.timestamps.push(t);
            }
            let fail = g.fail_next > 0;
            if fail {
                g.fail_next -= 1;
            }
            (fail, g.delay_next.take(), g.redirect_to.clone())
        };
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        if let Some(to) = redirect {
            let resp = format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n");
            if w.write_all(resp.as_bytes()).is_err() {
                return;
            }
            continue;
        }
        let status = if fail {
            500
        } else {
            let good = match (secret, ts.as_deref()) {
                // What a receiver does: the signature over "<timestamp>.<body>", and a
                // timestamp no more than 5 minutes off.
                (Some(k), Some(t)) => {
                    let fresh = t.parse::<u64>().is_ok_and(|t| t.abs_diff(roomcast::auth::now_secs()) <= 300);
                    fresh && sig.as_deref() == Some(roomcast::webhooks::signature(k.as_bytes(), t, &body).as_str())
                }
                (Some(_), None) => false,
                (None, _) => sig.is_none() && ts.is_none(),
            };
            let mut g = st.lock().unwrap();
            if good {
                let v: Value = serde_json::from_slice(&body).expect("a JSON batch");
                g.events.extend(v["events"].as_array().unwrap().iter().cloned());
                200
            } else {
                g.bad_signatures += 1;
                401
            }
        };
        let resp = format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\nok");
        if w.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// The events about `client`, by name, in order.
pub fn names_for(events: &[Value], client: &str) -> Vec<String> {
    events.iter().filter(|e| e["clientId"] == client).map(|e| e["name"].as_str().unwrap().to_string()).collect()
}

/// POSTs `body` to a webhook receiver at `addr` with these headers, their values as raw bytes
/// (not UTF-8: what a forger may send): the status answered, 0 if none came.
pub fn post_raw(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &[u8])], body: &[u8]) -> u16 {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    )
    .into_bytes();
    for (k, v) in headers {
        req.extend_from_slice(format!("{k}: ").as_bytes());
        req.extend_from_slice(v);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    super::raw_at(addr, &req).0
}
