//! `deploy/grafana/roomcast.json`, the Grafana dashboard, held against a live server's
//! `/metrics`: every metric its expressions name is one the server exports, and every metric
//! the server exports is on it (a new metric must get a panel). A real server process on an
//! `admin_listen` of its own.
mod util;

use std::collections::BTreeSet;

use serde_json::Value;
use util::*;

const DASHBOARD: &str = include_str!("../deploy/grafana/roomcast.json");

/// The `roomcast_*` names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("roomcast_") {
        let name: String =
            rest[i..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
        rest = &rest[i + name.len()..];
        out.push(name);
    }
    out
}

/// The metric names of a `/metrics` answer (its `# TYPE` lines).
fn exported(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(String::from)
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
            assert!(expr.contains("instance=~\"$instance\""), "panel {title:?}: {expr} ignores the node selector");
            for n in names {
                assert!(live.contains(&n), "panel {title:?} uses {n}, which the server does not export");
                used.insert(n);
            }
        }
    }
    let missing: Vec<_> = live.difference(&used).collect();
    assert!(missing.is_empty(), "metrics the server exports that no panel shows: {missing:?}");
}
