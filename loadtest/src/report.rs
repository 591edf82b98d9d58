//! Results: /proc sampling, the one-line summary, the JSON result and the HTML report.

use std::fmt::Write as _;

use serde_json::{json, Map, Value};

use crate::{Cli, Opts};

/// RSS and CPU time of the sampled server processes, summed.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub rss_kib: u64,
    pub cpu_secs: f64,
    /// On-CPU time of every thread, in ns (`/proc/PID/task/*/schedstat`; 0 if unreadable):
    /// finer than `cpu_secs`, which counts 10 ms ticks.
    pub cpu_ns: u64,
}

/// Reads `/proc/PID/status` (VmRSS) and `/proc/PID/stat` (utime + stime) of each pid.
pub fn sample(pids: &[u32]) -> Option<Sample> {
    if pids.is_empty() {
        return None;
    }
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut s = Sample { rss_kib: 0, cpu_secs: 0.0, cpu_ns: 0 };
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        s.rss_kib += status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        s.cpu_secs += (f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / tick;
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            s.cpu_ns += stat.split(' ').next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Some(s)
}

/// The result being built.
pub struct Outcome {
    fields: Map<String, Value>,
    json: Option<String>,
    html: Option<String>,
}

impl Outcome {
    pub fn new(cli: &Cli, opts: &Opts) -> Self {
        let mut fields = Map::new();
        fields.insert("label".into(), json!(cli.label));
        fields.insert("scenario".into(), json!(format!("{:?}", cli.scenario).to_lowercase()));
        fields.insert("clients".into(), json!(cli.clients));
        fields.insert("groups".into(), json!(cli.groups));
        fields.insert("messages".into(), json!(cli.messages));
        fields.insert("concurrency".into(), json!(cli.concurrency));
        fields.insert("payload".into(), json!(cli.payload));
        fields.insert("send_rate".into(), json!(cli.send_rate));
        fields.insert("procs".into(), json!(opts.procs));
        fields.insert("ports".into(), json!(cli.port));
        Outcome { fields, json: cli.json.clone(), html: cli.html.clone() }
    }

    pub fn set(&mut self, k: &str, v: Value) {
        self.fields.insert(k.into(), v);
    }

    /// Prints the summary line, writes the JSON and HTML outputs.
    pub fn finish(mut self, series: &[(f64, u64, u64, u64)]) -> Result<(), String> {
        self.fields.insert("series".into(), json!(series));
        let v = Value::Object(self.fields.clone());
        let mut line = String::new();
        for k in [
            "label",
            "scenario",
            "connected",
            "connect_rate_per_s",
            "api_req_per_s",
            "delivered",
            "lost",
            "delivered_per_s",
            "latency_p50_ms",
            "latency_p99_ms",
            "rss_per_connection_bytes",
            "server_cpu_us_per_frame",
            "wire_bytes_per_frame",
        ] {
            if let Some(x) = self.fields.get(k) {
                let s = match x {
                    Value::Number(n) if n.is_f64() => format!("{:.3}", n.as_f64().unwrap_or(0.0)),
                    other => other.to_string(),
                };
                let _ = write!(line, "{k}={s} ");
            }
        }
        println!("{}", line.trim_end());
        if let Some(p) = &self.json {
            std::fs::write(p, serde_json::to_string_pretty(&v).unwrap_or_default())
                .map_err(|e| format!("write {p}: {e}"))?;
        }
        if let Some(p) = &self.html {
            std::fs::write(p, html(&v, series)).map_err(|e| format!("write {p}: {e}"))?;
        }
        Ok(())
    }
}

/// One SVG line chart (no scripts, no external assets).
fn chart(title: &str, unit: &str, xs: &[f64], lines: &[(&str, &str, Vec<f64>)]) -> String {
    let (w, h, pad) = (640.0, 240.0, 40.0);
    let xmax = xs.iter().cloned().fold(1e-9, f64::max);
    let ymax = lines.iter().flat_map(|l| l.2.iter().cloned()).fold(1e-9, f64::max) * 1.1;
    let mut s = format!(
        r#"<figure><figcaption>{title}</figcaption><svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg">"#
    );
    let _ = write!(
        s,
        r##"<rect x="{pad}" y="10" width="{}" height="{}" fill="none" stroke="#999"/>"##,
        w - pad - 10.0,
        h - pad - 10.0
    );
    let _ = write!(
        s,
        r#"<text x="2" y="18" font-size="11">{ymax:.1} {unit}</text><text x="{pad}" y="{}" font-size="11">0 s</text><text x="{}" y="{}" font-size="11">{xmax:.1} s</text>"#,
        h - 22.0,
        w - 40.0,
        h - 22.0
    );
    for (li, (name, color, ys)) in lines.iter().enumerate() {
        let pts: Vec<String> = xs
            .iter()
            .zip(ys)
            .map(|(x, y)| {
                format!("{:.1},{:.1}", pad + x / xmax * (w - pad - 10.0), 10.0 + (h - pad - 10.0) * (1.0 - y / ymax))
            })
            .collect();
        let _ = write!(s, r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#, pts.join(" "));
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" font-size="12" fill="{color}">{name}</text>"#,
            pad + 10.0 + li as f64 * 120.0,
            h - 8.0
        );
    }
    s.push_str("</svg></figure>");
    s
}

fn html(v: &Value, series: &[(f64, u64, u64, u64)]) -> String {
    // Delivered per second between consecutive samples, placed at the interval's end.
    let rate: Vec<(f64, f64)> = series
        .windows(2)
        .map(|w| (w[1].0, w[1].1.saturating_sub(w[0].1) as f64 / (w[1].0 - w[0].0).max(1e-3)))
        .collect();
    let xs: Vec<f64> = rate.iter().map(|r| r.0).collect();
    let rates: Vec<f64> = rate.iter().map(|r| r.1).collect();
    let p50: Vec<f64> = series.iter().skip(1).map(|s| s.2 as f64 / 1e3).collect();
    let p99: Vec<f64> = series.iter().skip(1).map(|s| s.3 as f64 / 1e3).collect();
    let mut rows = String::new();
    if let Value::Object(m) = v {
        for (k, x) in m.iter().filter(|(k, _)| *k != "series") {
            let shown = match x {
                Value::Number(n) if n.is_f64() => {
                    let f = n.as_f64().unwrap_or(0.0);
                    if f.abs() >= 100.0 {
                        format!("{f:.0}")
                    } else {
                        format!("{f:.3}")
                    }
                }
                Value::String(t) => t.clone(),
                other => other.to_string(),
            };
            let _ = write!(rows, "<tr><td>{k}</td><td>{shown}</td></tr>");
        }
    }
    let charts = if xs.len() < 2 {
        "<p>(run too short for charts: fewer than three 250 ms samples)</p>".to_string()
    } else {
        chart("Delivered messages per second", "msg/s", &xs, &[("delivered/s", "#1f77b4", rates)])
            + &chart(
                "End-to-end latency per 250 ms interval (worst worker)",
                "ms",
                &xs,
                &[("p50", "#2ca02c", p50), ("p99", "#d62728", p99)],
            )
    };
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>roomcast-loadtest: {label} {scenario}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}}td{{padding:2px 12px;border-bottom:1px solid #eee}}figure{{display:inline-block;margin:1em}}</style></head>
<body><h1>{label} — {scenario}</h1>{charts}<h2>Result</h2><table>{rows}</table></body></html>"#,
        label = v["label"].as_str().unwrap_or(""),
        scenario = v["scenario"].as_str().unwrap_or(""),
    )
}
