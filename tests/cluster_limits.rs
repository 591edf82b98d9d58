//! Cluster mode under hostile or heavy calls: what one call may cost Redis and the broker.
mod util;

use serde_json::json;
use util::cluster::*;
use util::*;

/// The clientId of `id` moved to node `node` (8 hex digits): a well-formed id of a node that
/// does not exist.
fn on_node(id: &str, node: u32) -> String {
    format!("{node:08x}{}", &id[8..])
}

/// Regression (security review, high): one `send_to_clients` naming many made-up node ids
/// published one copy of the frame per id (1,000 ids x 100 KB = 100 MB into Redis). Now only
/// nodes alive get forwards, and a made-up node's client is unknown at once.
#[test]
fn made_up_node_ids_cost_redis_nothing() {
    let redis = Redis::start();
    let n = nodes(&redis, 2, &[]);
    n[0].register("s");
    let mut b = n[1].client("s");
    let data = "x".repeat(20_000);
    let mut ids: Vec<String> = (0..500).map(|i| on_node(&b.id, 0xf000_0000 + i)).collect();
    ids.push(b.id.clone());
    let before = metric(&n[0], "cluster_published_total");
    let (st, v) = n[0].api("send_to_clients", Some("s"), json!({"clientIds": ids, "msg": "one", "data": data}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(next_message(&mut b)["msg"], "one");
    let published = metric(&n[0], "cluster_published_total") - before;
    assert!(published <= 1, "{published} publishes for one live node");
    // One made-up client: 404 at once, nothing published.
    let fake = on_node(&b.id, 0xf000_0001);
    for (name, body) in [
        ("send_to_client", json!({"clientId": fake, "data": 1})),
        ("bind_to_group", json!({"clientId": fake, "groupName": "g"})),
        ("close_client", json!({"clientId": fake})),
    ] {
        let (st, v) = n[0].api(name, Some("s"), body);
        assert_eq!(st, 404, "{name}: {v}");
    }
    assert_eq!(metric(&n[0], "cluster_published_total") - before, published);
    // A node that joins later is reachable at once: it announces itself.
    let late = node(&redis, &[]);
    let mut c = late.client("s");
    let (st, v) = n[0].api("send_to_client", Some("s"), json!({"clientId": c.id, "msg": "hi late"}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(next_message(&mut c)["msg"], "hi late");
}

/// The frame bytes waiting for the broker are bounded (`broker_queue_bytes`): past it, sends
/// answer 503 at once instead of growing the queue, and the gauge comes back to 0.
#[test]
fn frame_bytes_waiting_for_the_broker_are_bounded() {
    let redis = Redis::start();
    let n = nodes(&redis, 2, &["--broker-queue-bytes", "300000", "--max-body-size", "2000000"]);
    n[0].register("s");
    let b = n[1].client("s");
    let data = "y".repeat(400_000);
    let body = json!({"clientIds": [b.id.clone()], "data": data});
    let mut statuses = Vec::new();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (addr, body) = (n[0].addr, body.clone());
            std::thread::spawn(move || {
                (0..4).map(|_| api_at(addr, "send_to_clients", Some("s"), None, body.clone()).0).collect::<Vec<_>>()
            })
        })
        .collect();
    for t in threads {
        statuses.extend(t.join().unwrap());
    }
    assert!(statuses.iter().all(|s| *s == 200 || *s == 503), "{statuses:?}");
    assert!(statuses.contains(&503), "32 sends of 400 KB never found the 300 KB bound: {statuses:?}");
    assert!(metric(&n[0], "cluster_unavailable_total") >= 1);
    let t = std::time::Instant::now();
    while metric(&n[0], "cluster_broker_queue_bytes") != 0 {
        assert!(t.elapsed() < std::time::Duration::from_secs(10), "queue bytes never drained");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(b);
}

/// A client's publish passes the same availability check as the API's sends: while Redis is
/// unreachable it is refused with an error frame (before: queued for the broker, dropped).
#[test]
fn client_publish_is_refused_while_redis_is_away() {
    let mut redis = Redis::start();
    let n = node(&redis, &["--client-publish"]);
    n.register("s");
    let mut a = n.client("s");
    n.bind("s", &a.id, "g", "u");
    a.expect_code(1001);
    redis.stop();
    let t = std::time::Instant::now();
    while health(&n)["cluster"] == "up" {
        assert!(t.elapsed() < std::time::Duration::from_secs(10), "Redis loss not noticed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    a.send_text(r#"{"cmd":"publish","groupName":"g","msg":"x"}"#);
    let v = a.recv().expect("an answer to the publish");
    assert_eq!(v["cmd"], "error", "{v}");
    assert!(v["msg"].as_str().unwrap().contains("Redis"), "{v}");
}

/// Cluster mode reads `get_all_groups` a page at a time from Redis (a sorted set of names, one
/// `HKEYS` per group of the page: no call walks the whole system), with the same answers and
/// bounds as a single node, from any node.
#[test]
fn all_groups_pages_across_nodes() {
    let redis = Redis::start();
    let n = nodes(&redis, 2, &["--groups-page-size", "2", "--max-groups-per-client", "5"]);
    n[0].register("s");
    let a = n[0].client("s");
    let b = n[1].client("s");
    for (i, g) in ["d", "a", "c", "b", "e"].iter().enumerate() {
        let who = if i % 2 == 0 { &a } else { &b };
        n[1 - i % 2].bind("s", &who.id, g, "u");
    }
    n[0].bind("s", &a.id, "a", "u");
    let (st, v) = n[1].api("get_all_groups", Some("s"), json!({}));
    assert_eq!(st, 400, "{v}");
    for s in &n {
        let mut seen = Vec::new();
        let mut cursor = String::new();
        for _ in 0..10 {
            let (st, v) = s.api("get_all_groups", Some("s"), json!({"cursor": cursor}));
            assert_eq!(st, 200, "{v}");
            let groups = v["data"]["groups"].as_object().unwrap().clone();
            assert!(groups.len() <= 2, "{v}");
            for (g, ids) in &groups {
                let want = if g == "a" { 2 } else { 1 };
                assert_eq!(ids.as_array().unwrap().len(), want, "{g}: {v}");
            }
            seen.extend(groups.keys().cloned());
            cursor = v["data"]["cursor"].as_str().unwrap().to_string();
            if cursor.is_empty() {
                break;
            }
        }
        assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    }
    // The groups-per-client bound holds for a client of another node too (a is in a, c, d, e).
    n[1].bind("s", &a.id, "x", "u");
    let (st, v) = n[1].api("bind_to_group", Some("s"), json!({"clientId": a.id, "groupName": "y"}));
    assert_eq!(st, 400, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("max_groups_per_client"), "{v}");
}
