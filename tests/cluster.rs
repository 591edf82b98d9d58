//! Cluster mode: a real `redis-server` on a free loopback port and three `roomcast` node
//! processes; every endpoint across nodes, isolation, and the failure cases (a node killed,
//! Redis restarted, a node restarted).
mod util;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use util::cluster::*;
use util::*;

#[test]
fn every_endpoint_works_across_nodes() {
    let redis = Redis::start();
    let n = nodes(&redis, 3, &[]);
    n[0].register("sys");
    let (st, v) = n[1].api("register", None, json!({"systemId": "sys"}));
    assert_eq!(st, 409, "register is unique cluster-wide: {v}");

    // A system registered on node 0 is known on node 2 (looked up in Redis).
    let mut c0 = n[0].client("sys");
    let mut c1 = n[1].client("sys");
    let mut c2 = n[2].client("sys");
    let mut refused = Client::connect(&n[2].url("/ws?systemId=nope"));
    assert_eq!(refused.recv().unwrap()["code"], -1001);

    // Binds of remote clients, with notices reaching members on every node once.
    // (A member is told of its own arrival too, as upstream does.)
    n[1].bind("sys", &c0.id, "room", "u0");
    assert_eq!(notice(&mut c0, 1001), c0.id);
    n[2].bind("sys", &c1.id, "room", "u1");
    assert_eq!(notice(&mut c0, 1001), c1.id);
    assert_eq!(notice(&mut c1, 1001), c1.id);
    n[0].bind("sys", &c2.id, "room", "u2");
    let c2id = c2.id.clone();
    for c in [&mut c0, &mut c1, &mut c2] {
        let v = c.expect_code(1001);
        assert_eq!(v["sendUserId"], "u2");
        let data: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["clientId"], c2id.as_str());
    }
    // Read-your-writes from any node.
    let all = sorted(vec![c0.id.clone(), c1.id.clone(), c2.id.clone()]);
    for s in &n {
        assert_eq!(online(s, "sys", "room"), all);
    }
    let (st, v) = n[0].api("get_all_groups", Some("sys"), json!({}));
    assert_eq!(st, 200);
    let mut g: Vec<String> = v["data"]["room"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().into()).collect();
    g.sort();
    assert_eq!(g, all);

    // send_to_group: everyone once, in the order sent, even when one caller sends through
    // a different node each time.
    let ids: Vec<String> = (0..30).map(|i| send_group(&n[i % 3], "sys", "room", &format!("m{i}"))).collect();
    for c in [&mut c0, &mut c1, &mut c2] {
        let got: Vec<String> = (0..ids.len()).map(|_| next_message(c)["messageId"].as_str().unwrap().into()).collect();
        assert_eq!(got, ids);
    }
    let ordered: Vec<String> = (0..20).map(|i| send_group(&n[1], "sys", "room", &format!("o{i}"))).collect();
    for c in [&mut c0, &mut c1, &mut c2] {
        for id in &ordered {
            assert_eq!(next_message(c)["messageId"], id.as_str());
        }
    }

    // send_to_client to a client of another node; unknown clients of a live node: 404.
    let (st, v) =
        n[0].api("send_to_client", Some("sys"), json!({"clientId": c2.id, "code": 0, "msg": "direct", "data": 1}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(next_message(&mut c2)["msg"], "direct");
    let bogus = format!("{}{:020x}", &c1.id[..8], 0xdead_beefu64);
    let (st, _) = n[0].api("send_to_client", Some("sys"), json!({"clientId": bogus, "code": 0, "msg": "x", "data": 1}));
    assert_eq!(st, 404);
    let dead_node = format!("{:08x}{}", 0x0bad_0bad_u32, &c1.id[8..]);
    let (st, _) =
        n[0].api("send_to_client", Some("sys"), json!({"clientId": dead_node, "code": 0, "msg": "x", "data": 1}));
    assert_eq!(st, 404);

    // send_to_clients and send_to_system from a third node.
    let (st, _) = n[2].api(
        "send_to_clients",
        Some("sys"),
        json!({"clientIds": [c0.id, c1.id, c2.id], "code": 0, "msg": "list", "data": 1}),
    );
    assert_eq!(st, 200);
    for c in [&mut c0, &mut c1, &mut c2] {
        assert_eq!(next_message(c)["msg"], "list");
    }
    // Sends to one client through alternating other nodes (forwarded) keep their order.
    let ids: Vec<String> = (0..21)
        .map(|i| {
            let (name, body) = match i % 2 {
                0 => ("send_to_clients", json!({"clientIds": [c2.id], "code": 0, "msg": "u", "data": i})),
                _ => ("send_to_client", json!({"clientId": c2.id, "code": 0, "msg": "u", "data": i})),
            };
            let (st, v) = n[(i / 2) % 2].api(name, Some("sys"), body);
            assert_eq!(st, 200, "{v}");
            v["data"]["messageId"].as_str().unwrap().to_string()
        })
        .collect();
    for id in &ids {
        assert_eq!(next_message(&mut c2)["messageId"], id.as_str());
    }
    let (st, _) = n[1].api("send_to_system", Some("sys"), json!({"code": 0, "msg": "all", "data": 1}));
    assert_eq!(st, 200);
    for c in [&mut c0, &mut c1, &mut c2] {
        assert_eq!(next_message(c)["msg"], "all");
    }

    // Unbind a remote client: 1002 for the others, gone from the list everywhere.
    let (st, _) = n[0].api("unbind_from_group", Some("sys"), json!({"clientId": c1.id, "groupName": "room"}));
    assert_eq!(st, 200);
    for c in [&mut c0, &mut c2] {
        assert_eq!(notice(c, 1002), c1.id);
    }
    assert_eq!(online(&n[2], "sys", "room"), sorted(vec![c0.id.clone(), c2.id.clone()]));
    send_group(&n[0], "sys", "room", "after-unbind");
    c1.expect_silence(Duration::from_millis(300));

    // close_client of a remote client.
    let (st, _) = n[1].api("close_client", Some("sys"), json!({"clientId": c2.id}));
    assert_eq!(st, 200);
    assert_eq!(c2.close_code().map(u16::from), Some(1000), "close_client closes with 1000");
    assert_eq!(notice(&mut c0, 1002), c2.id);
    assert_eq!(online(&n[1], "sys", "room"), vec![c0.id.clone()]);
    c0.expect_silence(Duration::from_millis(300));
}

#[test]
fn disconnect_notices_reach_other_nodes_exactly_once() {
    let redis = Redis::start();
    let n = nodes(&redis, 3, &[]);
    n[2].register("s");
    let mut a = n[0].client("s");
    let mut b = n[1].client("s");
    let c = n[2].client("s");
    for (x, s) in [(&a.id, &n[2]), (&b.id, &n[0]), (&c.id, &n[1])] {
        s.bind("s", x, "g", "u");
    }
    assert_eq!(notice(&mut a, 1001), a.id);
    assert_eq!(notice(&mut a, 1001), b.id);
    assert_eq!(notice(&mut a, 1001), c.id);
    assert_eq!(notice(&mut b, 1001), b.id);
    assert_eq!(notice(&mut b, 1001), c.id);
    let cid = c.id.clone();
    drop(c);
    for m in [&mut a, &mut b] {
        assert_eq!(notice(m, 1002), cid);
        m.expect_silence(Duration::from_millis(400));
    }
    assert_eq!(online(&n[0], "s", "g"), sorted(vec![a.id.clone(), b.id.clone()]));
}

#[test]
fn tenants_stay_apart_across_nodes() {
    let redis = Redis::start();
    let n = nodes(&redis, 3, &[]);
    n[0].register("alpha");
    n[1].register("beta");
    let mut b = n[1].client("beta");
    n[2].bind("beta", &b.id, "g", "u");
    assert_eq!(notice(&mut b, 1001), b.id);
    // alpha's caller names beta's client from every node: not found, nothing delivered.
    for s in &n {
        let (st, _) =
            s.api("send_to_client", Some("alpha"), json!({"clientId": b.id, "code": 0, "msg": "x", "data": 1}));
        assert_eq!(st, 404);
        let (st, _) = s.api("bind_to_group", Some("alpha"), json!({"clientId": b.id, "groupName": "g"}));
        assert_eq!(st, 404);
        let (st, _) = s.api("close_client", Some("alpha"), json!({"clientId": b.id}));
        assert_eq!(st, 404);
        assert!(online(s, "alpha", "g").is_empty());
        send_group(s, "alpha", "g", "x");
        let (st, v) = s.api("get_all_groups", Some("alpha"), json!({}));
        assert_eq!((st, &v["data"]), (200, &json!({})));
    }
    b.expect_silence(Duration::from_millis(300));
    assert_eq!(online(&n[0], "beta", "g"), vec![b.id.clone()]);
}

#[test]
fn a_killed_node_leaves_presence_within_the_ttl() {
    let redis = Redis::start();
    let ttl = ["--presence-ttl", "1s"];
    let n = nodes(&redis, 3, &ttl);
    n[0].register("s");
    let mut a = n[0].client("s");
    let mut b = n[1].client("s");
    let c = n[2].client("s");
    for x in [&a.id, &b.id, &c.id] {
        n[0].bind("s", x, "g", "u");
    }
    for _ in 0..3 {
        notice(&mut a, 1001);
    }
    for _ in 0..2 {
        notice(&mut b, 1001);
    }
    let cid = c.id.clone();
    let mut dead = n.into_iter();
    let (n0, n1, mut n2) = (dead.next().unwrap(), dead.next().unwrap(), dead.next().unwrap());
    n2.child.kill().unwrap(); // SIGKILL
    let t = Instant::now();
    for m in [&mut a, &mut b] {
        m.set_timeout(Duration::from_secs(10));
        assert_eq!(notice(m, 1002), cid);
    }
    assert!(t.elapsed() < Duration::from_secs(5), "reaped after {:?}", t.elapsed());
    assert_eq!(online(&n1, "s", "g"), sorted(vec![a.id.clone(), b.id.clone()]));
    // One survivor reaped it: the notice came once.
    a.expect_silence(Duration::from_millis(1500));
    let (st, _) = n0.api("send_to_client", Some("s"), json!({"clientId": cid, "code": 0, "msg": "x", "data": 1}));
    assert_eq!(st, 404);
    drop(c);
}

#[test]
fn redis_restart_local_delivery_continues_and_cluster_recovers() {
    let mut redis = Redis::start();
    let n = nodes(&redis, 3, &["--presence-ttl", "2s"]);
    n[0].register("s");
    let mut a = n[0].client("s");
    let mut b = n[1].client("s");
    n[0].bind("s", &a.id, "g", "u");
    n[0].bind("s", &b.id, "g", "u");
    assert_eq!(notice(&mut a, 1001), a.id);
    assert_eq!(notice(&mut a, 1001), b.id);
    assert_eq!(notice(&mut b, 1001), b.id);

    redis.stop();
    // Every node notices the loss (its pub/sub connection closes), without any call.
    let t = Instant::now();
    while n.iter().any(|s| health(s)["cluster"] == "up") {
        assert!(t.elapsed() < Duration::from_secs(10), "Redis loss not noticed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Cluster-wide calls: a clear 503, quickly.
    let t = Instant::now();
    let (st, v) = n[0].api("get_online_list", Some("s"), json!({"groupName": "g"}));
    assert_eq!(st, 503, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("Redis"), "{v}");
    let (st, _) = n[2].api("bind_to_group", Some("s"), json!({"clientId": a.id, "groupName": "g2"}));
    assert_eq!(st, 503);
    assert!(metric(&n[0], "cluster_unavailable_total") >= 1);
    assert!(metric(&n[2], "cluster_unavailable_total") >= 1);
    assert!(t.elapsed() < Duration::from_secs(3));
    // Group sends are refused whole (a retry cannot duplicate); local delivery keeps working.
    let (st, _) = n[0].api("send_to_group", Some("s"), json!({"groupName": "g", "code": 0, "msg": "no", "data": 1}));
    assert_eq!(st, 503);
    let (st, v) =
        n[0].api("send_to_client", Some("s"), json!({"clientId": a.id, "code": 0, "msg": "local", "data": 1}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(next_message(&mut a)["msg"], "local");

    redis.spawn(); // same port, empty data
    for s in &n {
        wait_up(s);
    }
    // Presence, registrations and subscriptions are back.
    assert_eq!(online(&n[2], "s", "g"), sorted(vec![a.id.clone(), b.id.clone()]));
    let (st, _) = n[2].api("register", None, json!({"systemId": "s"}));
    assert_eq!(st, 409);
    let id = send_group(&n[0], "s", "g", "back");
    assert_eq!(next_message(&mut b)["messageId"], id.as_str());
    assert_eq!(next_message(&mut a)["messageId"], id.as_str());
}

#[test]
fn a_restarted_node_leaves_no_stale_presence() {
    let redis = Redis::start();
    let a_node = node(&redis, &[]);
    let fixed = ["--node-id", "00c0ffee", "--presence-ttl", "60s"];
    let mut b_node = node(&redis, &fixed);
    a_node.register("s");
    let mut a = a_node.client("s");
    let b = b_node.client("s");
    a_node.bind("s", &a.id, "g", "u");
    a_node.bind("s", &b.id, "g", "u");
    assert_eq!(notice(&mut a, 1001), a.id);
    assert_eq!(notice(&mut a, 1001), b.id);
    b_node.child.kill().unwrap();
    let _ = b_node.child.wait();
    drop(b_node);
    // Restarted long before its 60 s TTL: it clears what its last life left behind.
    let b_node = node(&redis, &fixed);
    assert_eq!(notice(&mut a, 1002), b.id);
    assert_eq!(online(&a_node, "s", "g"), vec![a.id.clone()]);
    assert_eq!(online(&b_node, "s", "g"), vec![a.id.clone()]);
    drop(b);
}

#[test]
fn a_stopped_node_removes_its_presence_at_once() {
    let redis = Redis::start();
    let ttl = ["--presence-ttl", "60s"];
    let a_node = node(&redis, &ttl);
    let mut b_node = node(&redis, &ttl);
    a_node.register("s");
    let mut a = a_node.client("s");
    let mut b = b_node.client("s");
    a_node.bind("s", &a.id, "g", "u");
    a_node.bind("s", &b.id, "g", "u");
    assert_eq!(notice(&mut a, 1001), a.id);
    assert_eq!(notice(&mut a, 1001), b.id);
    let status = b_node.terminate().expect("the node exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    assert_eq!(b.close_code(), Some(tungstenite::protocol::frame::coding::CloseCode::Away));
    // Not after the 60 s TTL: now, with one notice.
    assert_eq!(notice(&mut a, 1002), b.id);
    assert_eq!(online(&a_node, "s", "g"), vec![a.id.clone()]);
    a.expect_silence(Duration::from_millis(300));
}

#[test]
fn a_node_receives_only_groups_it_has_members_in() {
    let redis = Redis::start();
    let n = nodes(&redis, 3, &[]);
    n[0].register("s");
    let mut a = n[0].client("s");
    let mut b = n[1].client("s");
    let _c = n[2].client("s"); // node 2 has a client, but in no group
    n[0].bind("s", &a.id, "g", "u");
    n[0].bind("s", &b.id, "g", "u");
    // The joins' notices came through Redis too: count from after they arrived.
    assert_eq!(notice(&mut a, 1001), a.id);
    assert_eq!(notice(&mut a, 1001), b.id);
    assert_eq!(notice(&mut b, 1001), b.id);
    let before: Vec<u64> = n.iter().map(|s| metric(s, "cluster_received_total")).collect();
    let ids: Vec<String> = (0..10).map(|i| send_group(&n[0], "s", "g", &format!("m{i}"))).collect();
    for id in &ids {
        assert_eq!(next_message(&mut a)["messageId"], id.as_str());
        assert_eq!(next_message(&mut b)["messageId"], id.as_str());
    }
    let after: Vec<u64> = n.iter().map(|s| metric(s, "cluster_received_total")).collect();
    assert_eq!(after[1] - before[1], 10, "node 1 holds a member: it gets each message once");
    assert_eq!(after[2], before[2], "node 2 holds no member of g: it gets nothing");
    // The origin node delivered locally; it skips its own copies (same count as node 1).
    assert_eq!(after[0] - before[0], 10);
    // Once its last member leaves, node 1 stops receiving the group.
    let (st, _) =
        n[2].api("unbind_from_group", Some("s"), json!({"clientId": b.id, "groupName": "g", "notify": false}));
    assert_eq!(st, 200);
    let mid = metric(&n[1], "cluster_received_total");
    send_group(&n[0], "s", "g", "late");
    assert_eq!(next_message(&mut a)["msg"], "late");
    assert_eq!(metric(&n[1], "cluster_received_total"), mid);
    b.expect_silence(Duration::from_millis(200));
}

#[test]
fn concurrent_joins_across_nodes_are_told_in_one_order() {
    let redis = Redis::start();
    let n = nodes(&redis, 3, &[]);
    n[0].register("s");
    let mut clients: Vec<Client> = (0..24).map(|i| n[i % 3].client("s")).collect();
    let ids: Vec<String> = clients.iter().map(|c| c.id.clone()).collect();
    // Three callers bind at once, each through another node than the clients'.
    std::thread::scope(|sc| {
        for (t, node) in n.iter().enumerate() {
            let ids = &ids;
            sc.spawn(move || {
                let mut h = Http::new(node);
                for id in ids.iter().skip(t).step_by(3) {
                    let (st, v) = h.call("bind_to_group", "s", &json!({"clientId": id, "groupName": "g"}));
                    assert_eq!(st, 200, "{v}");
                }
            });
        }
    });
    // Each member hears of itself and of everyone who joined after it: for any two
    // clients exactly one heard of the other, and 24·25/2 notices in all.
    let mut heard: Vec<std::collections::HashSet<String>> = vec![Default::default(); clients.len()];
    let t = Instant::now();
    while heard.iter().map(|h| h.len()).sum::<usize>() < 24 * 25 / 2 && t.elapsed() < Duration::from_secs(10) {
        for (c, h) in clients.iter_mut().zip(heard.iter_mut()) {
            c.set_timeout(Duration::from_millis(100));
            while let Some(v) = c.recv() {
                assert_eq!(v["code"], 1001, "{v}");
                let data: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
                assert!(h.insert(data["clientId"].as_str().unwrap().to_string()), "a notice came twice");
            }
        }
    }
    for (c, h) in clients.iter_mut().zip(&heard) {
        assert!(h.contains(&c.id));
        c.expect_silence(Duration::from_millis(100));
    }
    assert_eq!(heard.iter().map(|h| h.len()).sum::<usize>(), 24 * 25 / 2);
    for i in 0..ids.len() {
        for j in i + 1..ids.len() {
            assert!(heard[i].contains(&ids[j]) ^ heard[j].contains(&ids[i]), "{i} and {j}");
        }
    }
}

#[test]
fn a_node_starts_without_redis_answers_503_and_joins_when_redis_appears() {
    let mut redis = Redis::start();
    redis.stop(); // the port is known, nothing listens there yet
    let url = redis.url();
    let s = Server::start(&["--redis", &url]);
    assert_eq!(health(&s)["cluster"], "redis unreachable");
    let t = Instant::now();
    let (st, v) = s.api("register", None, json!({"systemId": "s"}));
    assert_eq!(st, 503, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("Redis"), "{v}");
    let mut c = Client::connect(&s.url("/ws?systemId=s"));
    let refused = c.recv().expect("a refusal frame");
    assert_eq!(refused["code"], -1001, "{refused}");
    assert!(refused["msg"].as_str().unwrap().contains("Redis"), "{refused}");
    assert!(t.elapsed() < Duration::from_secs(3), "answers must not wait for Redis");
    redis.spawn();
    wait_up(&s);
    s.register("s");
    let c = s.client("s");
    s.bind("s", &c.id, "g", "u");
    assert_eq!(online(&s, "s", "g"), vec![c.id.clone()]);
}

#[test]
fn a_password_protected_redis_works_for_commands_and_pub_sub() {
    let redis = Redis::start_with(Some("s3cret"));
    let n = nodes(&redis, 2, &[]);
    n[0].register("s");
    let mut a = n[0].client("s");
    let mut b = n[1].client("s");
    n[1].bind("s", &a.id, "g", "u");
    n[0].bind("s", &b.id, "g", "u");
    let id = send_group(&n[1], "s", "g", "hi");
    assert_eq!(next_message(&mut a)["messageId"], id.as_str());
    assert_eq!(next_message(&mut b)["messageId"], id.as_str());
}

#[test]
fn client_publish_reaches_members_on_other_nodes() {
    let redis = Redis::start();
    let n = nodes(&redis, 2, &["--client-publish"]);
    n[0].register("s");
    let mut a = n[0].client("s");
    let mut b = n[1].client("s");
    n[1].bind("s", &a.id, "g", "ua");
    n[0].bind("s", &b.id, "g", "ub");
    a.send_text(r#"{"cmd":"publish","groupName":"g","code":7,"msg":"from a","data":{"x":1}}"#);
    for c in [&mut b, &mut a] {
        let v = next_message(c);
        assert_eq!(
            (v["code"].as_i64(), v["msg"].as_str(), v["sendUserId"].as_str()),
            (Some(7), Some("from a"), Some("ua"))
        );
        assert_eq!(v["data"], json!({"x": 1}));
    }
}

#[test]
fn two_running_nodes_with_one_node_id_are_reported() {
    let redis = Redis::start();
    let same = ["--node-id", "0000abcd", "--presence-ttl", "600ms"];
    let a = node(&redis, &same);
    let b = node(&redis, &same);
    let t = Instant::now();
    while metric(&a, "cluster_node_id_conflicts_total") + metric(&b, "cluster_node_id_conflicts_total") == 0 {
        assert!(t.elapsed() < Duration::from_secs(5), "the conflict went unnoticed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A restart under the same id (the previous process gone) is not a conflict.
    let mut only = node(&redis, &["--node-id", "0000beef", "--presence-ttl", "600ms"]);
    only.child.kill().unwrap();
    let _ = only.child.wait();
    let again = node(&redis, &["--node-id", "0000beef", "--presence-ttl", "600ms"]);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(metric(&again, "cluster_node_id_conflicts_total"), 0);
}

/// Correctness review: an API call waiting for an answer was exempt from every timeout and not
/// read, so a call nobody answered held its connection for ever. It now gets 503 within
/// request_timeout (here before the cluster's own 5 s bound on forwarded calls).
#[test]
fn a_call_nobody_answers_gets_503_within_request_timeout() {
    let redis = Redis::start();
    let a = node(&redis, &["--request-timeout", "1s"]);
    let b = node(&redis, &[]);
    a.register("sys");
    let c = b.client("sys");
    // b stops answering anything (its process is stopped: wait until every thread is).
    unsafe { libc::kill(b.child.id() as i32, libc::SIGSTOP) };
    let stopped = || {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", b.child.id())).unwrap();
        tasks.flatten().all(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('T'))
        })
    };
    let t = Instant::now();
    while !stopped() {
        assert!(t.elapsed() < Duration::from_secs(5), "node b did not stop");
        std::thread::sleep(Duration::from_millis(5));
    }
    let (st, v) = a.api("bind_to_group", Some("sys"), json!({"clientId": c.id, "groupName": "g"}));
    unsafe { libc::kill(b.child.id() as i32, libc::SIGCONT) };
    assert_eq!(st, 503, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("request_timeout"), "{v}");
    assert_eq!(metric(&a, "api_timeouts_total"), 1);
    // The late answer of the cluster's own bound finds nobody waiting; the node serves on.
    std::thread::sleep(Duration::from_millis(4500));
    assert_eq!(a.api("get_all_groups", Some("sys"), json!({})).0, 200);
}
