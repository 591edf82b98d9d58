//! Chaos soak (`churn --chaos-cmd CMD --chaos-at S1,S2,…`): while the churn scenario runs,
//! `CMD K` is run at S_K seconds after sending began (it kills something — the Redis master, a
//! node — and prints `healthy` once the cluster is whole again). From the step's start to that
//! line (or to its exit, without one) is an *unhealthy window*.
//!
//! What must hold: every message whose send was answered 200 and whose call lay wholly outside
//! the windows reaches every stayer of its group exactly once (a stayer whose node was killed:
//! the messages sent up to 200 ms before its connection closed). Every churn session wholly
//! outside the windows is told exactly once (1001 and 1002) to each stayer of its group alive
//! then. What happened inside the windows is reported, not judged: a send answered 200 while
//! only some nodes had found the new master reaches only those nodes (docs/CLUSTER.md).
//! [`finish`] judges a run: messages, notices and (with `--webhook-port`) webhooks.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::now_nanos;

/// A stayer whose connection closed misses what was sent this close to its end.
const CUT_MARGIN_NS: u64 = 200_000_000;

/// The unhealthy windows so far, (start, end) in ns since the epoch, and when each step's
/// blow fell (its `killed` line; else its start).
pub type Windows = Arc<Mutex<(Vec<(u64, u64)>, Vec<u64>)>>;

/// Runs the steps on a thread of their own.
pub fn start(cmd: String, at: Vec<f64>, since: Instant, windows: Windows) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for (k, secs) in at.iter().enumerate() {
            let due = since + Duration::from_secs_f64(*secs);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let t0 = now_nanos();
            let (mut t1, mut hit) = (None, None);
            let child = Command::new("sh").arg("-c").arg(format!("{cmd} {}", k + 1)).stdout(Stdio::piped()).spawn();
            let st = child.and_then(|mut c| {
                let out = c.stdout.take().expect("piped");
                for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                    match line.trim() {
                        "healthy" if t1.is_none() => t1 = Some(now_nanos()),
                        "killed" if hit.is_none() => hit = Some(now_nanos()),
                        _ => {}
                    }
                }
                c.wait()
            });
            let t1 = t1.unwrap_or_else(now_nanos);
            eprintln!("chaos step {} ({cmd} {}): {st:?}, unhealthy for {:.2} s", k + 1, k + 1, (t1 - t0) as f64 / 1e9);
            let mut w = windows.lock().expect("windows");
            w.0.push((t0, t1));
            w.1.push(hit.unwrap_or(t0));
        }
    })
}

fn overlaps(a: u64, b: u64, windows: &[(u64, u64)]) -> bool {
    windows.iter().any(|&(s, e)| a <= e && b >= s)
}

/// Per message: (start, end, status) of its send call.
pub type Calls = Vec<(u64, u64, u16)>;

/// For each blow: seconds from it to the first send answered 200 after the sends it made fail
/// (0: none failed in its window), i.e. how long group sends were refused.
pub fn refused_for(calls: &Calls, hits: &[u64], windows: &[(u64, u64)]) -> Vec<f64> {
    hits.iter()
        .zip(windows)
        .map(|(&k, &(_, end))| {
            let failed = calls.iter().filter(|c| c.0 >= k && c.0 <= end && c.2 != 200).map(|c| c.0).min();
            let Some(fail) = failed else { return 0.0 };
            let back = calls.iter().filter(|c| c.0 >= fail && c.2 == 200).map(|c| c.1).min();
            back.map_or(-1.0, |e| e.saturating_sub(k) as f64 / 1e9)
        })
        .collect()
}

/// Writes the messages every stayer must have (answered 200 wholly outside the windows) for
/// the workers' `verify`; returns how many calls were 200 inside a window and how many failed.
pub fn write_expected(path: &str, calls: &Calls, windows: &[(u64, u64)]) -> std::io::Result<(u64, u64)> {
    let (mut during, mut failed) = (0, 0);
    let mut healthy = Vec::new();
    for (i, &(s, e, st)) in calls.iter().enumerate() {
        match (st, overlaps(s, e, windows)) {
            (200, false) => healthy.push(json!([i, s])),
            (200, true) => during += 1,
            _ => failed += 1,
        }
    }
    std::fs::write(path, json!({ "healthy": healthy }).to_string())?;
    Ok((during, failed))
}

/// Worker side: checks its stayers (global index, closed at, indices received) against the
/// file written by [`write_expected`].
pub fn verify<'a>(
    worker: usize,
    path: &str,
    groups: usize,
    stayers: impl Iterator<Item = (usize, u64, &'a [u32])>,
) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v: Value = serde_json::from_str(&text).unwrap_or_default();
    let mut by_group: Vec<Vec<(u32, u64)>> = vec![Vec::new(); groups];
    for m in v["healthy"].as_array().into_iter().flatten() {
        let (i, s) = (m[0].as_u64().unwrap_or(0), m[1].as_u64().unwrap_or(0));
        by_group[i as usize % groups].push((i as u32, s));
    }
    let (mut checked, mut cut, mut expected, mut missing, mut dups) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut closed = Vec::new();
    let mut sample: Vec<Value> = Vec::new();
    for (global, closed_at, got) in stayers {
        let g = global % groups;
        let mut got = got.to_vec();
        got.sort_unstable();
        let n = got.len();
        got.dedup();
        dups += (n - got.len()) as u64;
        checked += 1;
        if closed_at > 0 {
            cut += 1;
            closed.push(json!([g, closed_at, global]));
        }
        for &(i, s) in &by_group[g] {
            if closed_at > 0 && s + CUT_MARGIN_NS >= closed_at {
                continue;
            }
            expected += 1;
            if got.binary_search(&i).is_err() {
                missing += 1;
                if sample.len() < 20 {
                    sample.push(json!([global, i, closed_at]));
                }
            }
        }
    }
    json!({"type": "verified", "worker": worker, "stayers": checked, "closed_stayers": cut,
        "expected": expected, "missing": missing, "duplicated": dups, "closed": closed,
        "missing_sample": sample})
}

/// The stayers the workers' `verify` found closed: (group, closed at, global index).
fn closed_stayers(verified: &[Value]) -> impl Iterator<Item = (usize, u64, u64)> + '_ {
    verified.iter().flat_map(|v| v["closed"].as_array().into_iter().flatten()).map(|c| {
        let n = |i: usize| c[i].as_u64().unwrap_or(0);
        (n(0) as usize, n(1), n(2))
    })
}

/// The churn notices under chaos: for each session wholly outside the windows (a second of
/// slack after it ends), every stayer of its group alive then must have seen one 1001 and one
/// 1002. Returns (sessions checked, skipped, notices expected, missing).
pub fn check_notices(
    churned: &[Value],
    results: &[Value],
    verified: &[Value],
    stayers: &[u64],
    windows: &[(u64, u64)],
) -> (u64, u64, u64, u64) {
    let got = crate::churn::notice_counts(results);
    let closed: Vec<(usize, u64)> = closed_stayers(verified).map(|(g, t, _)| (g, t)).collect();
    let (mut checked, mut skipped, mut expected, mut missing) = (0, 0, 0, 0);
    for c in churned {
        for s in c["sessions"].as_array().into_iter().flatten() {
            let id = s[0].as_str().unwrap_or("");
            let g = s[1].as_u64().unwrap_or(0) as usize % stayers.len().max(1);
            let (start, end) = (s[2].as_u64().unwrap_or(0), s[3].as_u64().unwrap_or(0) + 1_000_000_000);
            // Unjudged: across a window, or a stayer of its group closing meanwhile.
            if overlaps(start, end, windows) || closed.iter().any(|&(cg, t)| cg == g && t >= start && t <= end) {
                skipped += 1;
                continue;
            }
            checked += 1;
            let gone = closed.iter().filter(|&&(cg, t)| cg == g && t < start).count() as u64;
            let want = stayers[g].saturating_sub(gone);
            expected += 2 * want;
            let have = got.get(id).copied().unwrap_or([0, 0]);
            missing += want.saturating_sub(have[0]) + want.saturating_sub(have[1]);
        }
    }
    (checked, skipped, expected, missing)
}

/// The presence webhooks the soak must have received (`--webhook-port`): every churn session
/// wholly outside the windows (the notices' rule) told connected and disconnected once, and
/// if its user was its own, online and offline once; every stayer's user online once, and
/// offline once exactly when every one of its stayers was closed (the node kill), whatever
/// the churn sessions that joined it meanwhile did.
pub fn expected_hooks(
    opts: &crate::Opts,
    churned: &[Value],
    verified: &[Value],
    windows: &[(u64, u64)],
) -> crate::hooks::Expect {
    let mut clients = Vec::new();
    let mut users = Vec::new();
    for c in churned {
        for s in c["sessions"].as_array().into_iter().flatten() {
            let (start, end) = (s[2].as_u64().unwrap_or(0), s[3].as_u64().unwrap_or(0) + 1_000_000_000);
            if overlaps(start, end, windows) {
                continue;
            }
            clients.push((s[0].as_str().unwrap_or("").to_string(), 1, 1));
            if s[5].as_bool().unwrap_or(false) {
                users.push((s[4].as_str().unwrap_or("").to_string(), 1, 1));
            }
        }
    }
    let closed: std::collections::HashSet<u64> = closed_stayers(verified).map(|(_, _, global)| global).collect();
    let mut stayers: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for g in 0..opts.clients {
        let e = stayers.entry(crate::churn::stayer_user(g, opts.churn_tabs)).or_default();
        e.0 += 1;
        e.1 += u64::from(closed.contains(&(g as u64)));
    }
    users.extend(stayers.into_iter().map(|(u, (n, cut))| (u, 1, u64::from(cut == n))));
    crate::hooks::Expect { clients, users }
}

/// Chaos soak: after the sends and the churn, every stayer checks what it got against the
/// messages answered 200 outside the unhealthy windows (`chaos.rs`).
#[allow(clippy::too_many_arguments)]
pub fn finish(
    cli: &crate::Cli,
    opts: &crate::Opts,
    w: &mut crate::workers::Workers,
    out: &mut crate::report::Outcome,
    deadline: Instant,
    calls: &Calls,
    windows: &[(u64, u64)],
    stats: &crate::sender::SendStats,
    hooks: Option<&crate::hooks::Hooks>,
) -> Result<i32, String> {
    // Until 2 s without a new message (or --drain-secs): the notice counts come with it.
    w.tell_all(&format!("expect 200 0 {}", cli.drain_secs));
    w.wait_for(opts.procs, deadline, "deliver", |s| s.results.len())?;
    let path = std::env::temp_dir().join(format!("roomcast-chaos-{}.json", std::process::id()));
    let path = path.display().to_string();
    let (during, failed) = write_expected(&path, calls, windows).map_err(|e| format!("{path}: {e}"))?;
    w.tell_all(&format!("verify {path}"));
    w.wait_for(opts.procs, deadline, "verify", |s| s.verified.len())?;
    let _ = std::fs::remove_file(&path);
    let st = w.state.lock().expect("lock");
    let sum = |k: &str| st.verified.iter().map(|v| v[k].as_u64().unwrap_or(0)).sum::<u64>();
    let stayers = crate::churn::stayers_per_group(opts.clients, opts.groups);
    let (checked, skipped, expected, missing) =
        check_notices(&st.churned, &st.results, &st.verified, &stayers, windows);
    let dups: u64 = st.results.iter().map(|r| r["notice_dups"].as_u64().unwrap_or(0)).sum();
    let churn_errors: u64 = st.churned.iter().map(|c| c["errors"].as_u64().unwrap_or(0)).sum();
    let gaps: Vec<f64> = windows.iter().map(|(a, b)| (b - a) as f64 / 1e9).collect();
    out.set("chaos_windows_secs", json!(gaps));
    out.set("api_calls", json!(stats.sent));
    out.set("api_200_outside_windows", json!(calls.iter().filter(|c| c.2 == 200).count() as u64 - during));
    out.set("api_200_inside_windows", json!(during));
    out.set("api_failed", json!(failed));
    out.set("stayers", json!(sum("stayers")));
    out.set("stayers_cut_by_node_kill", json!(sum("closed_stayers")));
    out.set("expected", json!(sum("expected")));
    out.set("lost", json!(sum("missing")));
    out.set("duplicated", json!(sum("duplicated")));
    out.set("churn_sessions_checked", json!(checked));
    out.set("churn_sessions_across_windows", json!(skipped));
    out.set("churn_errors", json!(churn_errors));
    out.set("notices_expected", json!(expected));
    out.set("notices_missing", json!(missing));
    out.set("notices_duplicated", json!(dups));
    let mut bad = sum("missing") + sum("duplicated") + missing + dups;
    let want_hooks = hooks.map(|_| expected_hooks(opts, &st.churned, &st.verified, windows));
    for v in st.verified.iter().filter(|v| v["missing"].as_u64().unwrap_or(0) > 0) {
        for m in v["missing_sample"].as_array().into_iter().flatten() {
            let i = m[1].as_u64().unwrap_or(0) as usize;
            let c = calls.get(i).copied().unwrap_or_default();
            eprintln!(
                "missing: stayer {} (closed at {}) message {i}: call {}..{} status {}",
                m[0], m[2], c.0, c.1, c.2
            );
        }
    }
    eprintln!("windows: {windows:?}");
    let judged = sum("expected");
    drop(st);
    if let (Some(h), Some(want)) = (hooks, want_hooks) {
        crate::hooks::settle(h, Duration::from_secs(cli.drain_secs)); // the workers' state unlocked
        bad += crate::hooks::check(h, &want, out);
    }
    Ok(i32::from(bad > 0 || judged == 0))
}
