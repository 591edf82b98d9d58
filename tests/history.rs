//! Group history (`get_group_history`): a group's last messages as its members received them,
//! on one node and, from Redis, on every node of a cluster.
mod util;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use util::cluster::{node, Redis};
use util::*;

fn history(s: &Server, group: &str, limit: Option<u64>) -> (u16, Value) {
    let mut body = json!({"groupName": group});
    if let Some(l) = limit {
        body["limit"] = json!(l);
    }
    s.api("get_group_history", Some("a"), body)
}

fn send(s: &Server, group: &str, i: i64) {
    let (st, v) =
        s.api("send_to_group", Some("a"), json!({"groupName": group, "code": i, "msg": "m", "data": {"i": i}}));
    assert_eq!(st, 200, "{v}");
}

#[test]
fn history_is_off_by_default() {
    let s = Server::start(&[]);
    s.register("a");
    let (st, v) = history(&s, "g", None);
    assert_eq!(st, 404, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("history_size"), "{v}");
}

#[test]
fn the_last_messages_of_a_group_as_members_received_them() {
    let s = Server::start(&["--history-size", "3", "--history-ttl", "2s"]);
    s.register("a");
    let mut c = s.client("a");
    s.bind("a", &c.id, "g", "u");
    c.expect_code(1001);
    // A group nobody is in keeps nothing.
    send(&s, "empty", 1);
    assert_eq!(history(&s, "empty", None).1["data"], json!([]));
    let mut received = Vec::new();
    for i in 0..5 {
        send(&s, "g", i);
        received.push(c.recv().unwrap());
    }
    let (st, v) = history(&s, "g", None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"], Value::Array(received[2..].to_vec()), "the last 3, oldest first, as received");
    assert_eq!(history(&s, "g", Some(2)).1["data"], Value::Array(received[3..].to_vec()));
    assert_eq!(history(&s, "g", Some(50)).1["data"].as_array().unwrap().len(), 3, "at most history_size");
    // The history outlives the members, then goes with history_ttl.
    let (st, _) = s.api("unbind_from_group", Some("a"), json!({"clientId": c.id, "groupName": "g"}));
    assert_eq!(st, 200);
    send(&s, "g", 5);
    assert_eq!(history(&s, "g", None).1["data"][2]["code"], 5);
    let t = Instant::now();
    while history(&s, "g", None).1["data"] != json!([]) {
        assert!(t.elapsed() < Duration::from_secs(6), "history never expired");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The gauge follows at the hub's next sweep (reads filter by age at once).
    while metric(&s, "history_messages") != 0 {
        assert!(t.elapsed() < Duration::from_secs(10), "history_messages never came back to 0");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_node_answers_the_same_history() {
    let redis = Redis::start();
    let args = ["--history-size", "4"];
    let (a, b) = (node(&redis, &args), node(&redis, &args));
    a.register("a");
    let mut c = b.client("a");
    a.bind("a", &c.id, "g", "u");
    c.expect_code(1001);
    let mut received = Vec::new();
    for i in 0..6 {
        send(if i % 2 == 0 { &a } else { &b }, "g", i);
        received.push(c.recv().unwrap());
    }
    for s in [&a, &b] {
        let (st, v) = history(s, "g", None);
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["data"], Value::Array(received[2..].to_vec()));
        assert_eq!(history(s, "g", Some(1)).1["data"], Value::Array(received[5..].to_vec()));
    }
    assert_eq!(history(&a, "nobody", None).1["data"], json!([]));
}
