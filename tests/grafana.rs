//! `deploy/grafana/roomcast.json`, the Grafana dashboard, held against a live server's
//! `/metrics`: every metric its expressions name is one the server exports, and every metric
//! the server exports is on it (a new metric must get a panel); counters only as rates, gauges
//! never; every metric filtered by the node selector. A real server process on an
//! `admin_listen` of its own.
mod util;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use util::*;

const DASHBOARD: &str = include_str!("../deploy/grafana/roomcast.json");

const SELECTOR: &str = "{instance=~\"$instance\"}";

/// The `roomcast_*` names in a PromQL expression, each with whether it is the argument of a
/// `rate(`; every one must carry the node selector.
fn metric_names(expr: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = expr[at..].find("roomcast_").map(|i| i + at) {
        let name: String =
            expr[i..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
        assert!(expr[i + name.len()..].starts_with(SELECTOR), "{expr}: {name} without the node selector");
        out.push((name.clone(), expr[..i].ends_with("rate(")));
        at = i + name.len();
    }
    out
}

/// The metrics of a `/metrics` answer and their kinds (its `# TYPE` lines).
fn exported(body: &str) -> BTreeMap<String, String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, k)| (n.to_string(), k.to_string()))
        .collect()
}

#[test]
fn the_dashboard_uses_exactly_the_metrics_the_server_exports() {
    let s = Server::start(&["--admin-listen", "127.0.0.1:0"]);
    let admin = s.admin.expect("admin address");
    let req = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (status, body) = raw_at(admin, req);
    assert_eq!(status, 200, "{body}");
    let live = exported(&body);
    assert!(live.len() > 50, "{body}");

    let d: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let mut used = BTreeSet::new();
    let panels = d["panels"].as_array().expect("panels");
    for p in panels.iter().filter(|p| p["type"] != "row") {
        let title = p["title"].as_str().unwrap_or("?");
        let targets = p["targets"].as_array().filter(|t| !t.is_empty());
        let targets = targets.unwrap_or_else(|| panic!("panel {title:?} has no query"));
        assert_eq!(p["datasource"]["uid"], "${datasource}", "panel {title:?}: the dashboard's datasource variable");
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_else(|| panic!("panel {title:?}: a target without expr"));
            let names = metric_names(expr);
            assert!(!names.is_empty(), "panel {title:?}: {expr} names no roomcast metric");
            for (n, rated) in names {
                let kind = live
                    .get(&n)
                    .unwrap_or_else(|| panic!("panel {title:?} uses {n}, which the server does not export"));
                // A counter only as a rate; a gauge never.
                assert_eq!(rated, kind == "counter", "panel {title:?}: {expr}: {n} is a {kind}");
                used.insert(n);
            }
        }
    }
    let missing: Vec<_> = live.keys().filter(|n| !used.contains(*n)).collect();
    assert!(missing.is_empty(), "metrics the server exports that no panel shows: {missing:?}");
}
