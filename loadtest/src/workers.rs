//! The parent's side of the worker processes: spawning them, what they said so far, and
//! telling them what to do next.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// What the workers have said so far.
#[derive(Default)]
pub struct Collected {
    pub ready: Vec<Value>,
    pub bound: Vec<Value>,
    pub churned: Vec<Value>,
    pub resumed: Vec<Value>,
    pub results: Vec<Value>,
    pub verified: Vec<Value>,
    pub progress: Vec<Value>,
    /// Every 250 ms: (seconds since start, delivered so far, p50 µs, p99 µs of the last
    /// interval, worst worker) for the report.
    pub series: Vec<(f64, u64, u64, u64)>,
    pub failed: Option<String>,
    /// Stops the series sampler.
    pub done: bool,
    /// What the run is doing now, for the progress lines.
    pub phase: &'static str,
}

pub struct Workers {
    children: Vec<Child>,
    stdins: Vec<ChildStdin>,
    pub state: Arc<Mutex<Collected>>,
    /// API calls sent so far (progress lines).
    pub sent: Arc<std::sync::atomic::AtomicU64>,
}

impl Workers {
    pub fn spawn(procs: usize) -> std::io::Result<Workers> {
        let exe = std::env::current_exe()?;
        let args: Vec<String> = std::env::args().skip(1).collect();
        let state = Arc::new(Mutex::new(Collected { progress: vec![Value::Null; procs], ..Default::default() }));
        let (mut children, mut stdins) = (Vec::new(), Vec::new());
        for i in 0..procs {
            let mut child = Command::new(&exe)
                .args(&args)
                .args(["--worker", &i.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()?;
            stdins.push(child.stdin.take().expect("piped stdin"));
            let out = child.stdout.take().expect("piped stdout");
            let st = state.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
                    let mut s = st.lock().expect("collector lock");
                    match v["type"].as_str() {
                        Some("ready") => s.ready.push(v),
                        Some("bound") => s.bound.push(v),
                        Some("churned") => s.churned.push(v),
                        Some("resumed") => s.resumed.push(v),
                        Some("result") => s.results.push(v),
                        Some("verified") => s.verified.push(v),
                        Some("progress") => {
                            let w = v["worker"].as_u64().unwrap_or(0) as usize;
                            if w < s.progress.len() {
                                s.progress[w] = v;
                            }
                        }
                        Some("timeout") => s.failed = Some("a worker hit --time-limit".into()),
                        _ => {}
                    }
                }
            });
            children.push(child);
        }
        // Every 250 ms: a point of the report's time series; every second: a progress line.
        let (st, sent) = (state.clone(), Arc::new(std::sync::atomic::AtomicU64::new(0)));
        let sent2 = sent.clone();
        let start = Instant::now();
        std::thread::spawn(move || {
            for tick in 1u64.. {
                std::thread::sleep(Duration::from_millis(250));
                let mut s = st.lock().expect("collector lock");
                if s.done {
                    return;
                }
                let (mut conn, mut recv, mut p50, mut p99) = (0, 0, 0, 0);
                for p in &s.progress {
                    conn += p["connected"].as_u64().unwrap_or(0);
                    recv += p["received"].as_u64().unwrap_or(0);
                    p50 = p50.max(p["p50_us"].as_u64().unwrap_or(0));
                    p99 = p99.max(p["p99_us"].as_u64().unwrap_or(0));
                }
                let t = start.elapsed().as_secs_f64();
                s.series.push((t, recv, p50, p99));
                if tick % 4 == 0 {
                    let worst = s.series.iter().rev().take(4).map(|x| x.3).max().unwrap_or(0);
                    eprintln!(
                        "[{} {t:.0}s] connected={conn} sent={} delivered={recv} p99(last 1s)={:.2}ms",
                        s.phase,
                        sent2.load(std::sync::atomic::Ordering::Relaxed),
                        worst as f64 / 1e3
                    );
                }
            }
        });
        Ok(Workers { children, stdins, state, sent })
    }

    pub fn set_phase(&self, phase: &'static str) {
        self.state.lock().expect("collector lock").phase = phase;
    }

    pub fn tell(&mut self, i: usize, cmd: &str) {
        let _ = writeln!(self.stdins[i], "{cmd}");
        let _ = self.stdins[i].flush();
    }

    pub fn tell_all(&mut self, cmd: &str) {
        for i in 0..self.stdins.len() {
            self.tell(i, cmd);
        }
    }

    /// Waits until `pick(state)` has `n` entries.
    pub fn wait_for(
        &self,
        n: usize,
        deadline: Instant,
        what: &'static str,
        pick: impl Fn(&Collected) -> usize,
    ) -> Result<(), String> {
        self.set_phase(what);
        loop {
            {
                let s = self.state.lock().expect("collector lock");
                if pick(&s) >= n {
                    return Ok(());
                }
                if let Some(f) = &s.failed {
                    return Err(f.clone());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("--time-limit reached while waiting for {what}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.tell_all("quit");
        for c in &mut self.children {
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(3) {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
