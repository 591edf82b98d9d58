//! Cluster mode on a Redis Cluster (`redis+cluster://`): six real `redis-server`s (three
//! masters, a replica each) started by the test, roomcast nodes as processes. Groups spread over
//! the masters on sharded pub/sub; a master SIGKILLed under clients and calls is replaced by its
//! replica without restarting a node; a slot migration (`redis-cli --cluster reshard`) under a
//! steady send loses nothing. (`tests/cluster.rs` runs whole against a Redis Cluster too, with
//! `ROOMCAST_TEST_REDIS=cluster`.)
mod util;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use util::cluster::*;
use util::*;

/// The cluster's masters: (member index, node id), from `CLUSTER NODES`.
fn masters(rc: &Redis) -> Vec<(usize, String)> {
    let live = rc.members.iter().find(|m| !m.cli(&["PING"]).is_empty()).expect("a member up");
    let nodes = live.cli(&["CLUSTER", "NODES"]);
    let mut out = Vec::new();
    for line in nodes.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() < 8 || !f[2].contains("master") || f[2].contains("fail") {
            continue;
        }
        let port: u16 = f[1].split(['@', ':']).nth(1).unwrap().parse().unwrap();
        let i = rc.members.iter().position(|m| m.port == port).unwrap();
        out.push((i, f[0].to_string()));
    }
    out.sort();
    out
}

/// The member serving the slot of `key` as master.
fn master_of(rc: &Redis, key: &str) -> usize {
    let live = rc.members.iter().find(|m| !m.cli(&["PING"]).is_empty()).expect("a member up");
    let slot: u16 = live.cli(&["CLUSTER", "KEYSLOT", key]).trim().parse().unwrap();
    let slots = live.cli(&["CLUSTER", "SLOTS"]);
    // redis-cli prints each range as: from, to, master host, master port, id, replicas…
    let lines: Vec<&str> = slots.lines().collect();
    let mut i = 0;
    while i + 3 < lines.len() {
        if let (Ok(from), Ok(to)) = (lines[i].parse::<u16>(), lines[i + 1].parse::<u16>()) {
            if (from..=to).contains(&slot) {
                let port: u16 = lines[i + 3].parse().unwrap();
                return rc.members.iter().position(|m| m.port == port).unwrap();
            }
        }
        i += 1;
    }
    panic!("no master for slot {slot}: {slots}");
}

#[test]
fn groups_spread_over_the_masters_on_sharded_pub_sub() {
    let rc = Redis::start_cluster(None);
    let n = nodes(&rc, 2, &[]);
    n[1].register("s");
    let mut clients: Vec<Client> = (0..24).map(|_| n[0].client("s")).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        n[1].bind("s", &c.id, &format!("g{i}"), "u");
        assert_eq!(notice(c, 1001), c.id);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let id = send_group(&n[1], "s", &format!("g{i}"), "hi");
        assert_eq!(next_message(c)["messageId"], id.as_str());
    }
    // Every master holds some groups' channels (sharded), none a classic one.
    let ms = masters(&rc);
    assert_eq!(ms.len(), 3);
    for (i, _) in &ms {
        let m = &rc.members[*i];
        let sharded = m.cli(&["PUBSUB", "SHARDCHANNELS", "rc:g:*"]);
        assert!(sharded.lines().count() >= 1, "master {} has no group channel", m.port);
        assert_eq!(m.cli(&["PUBSUB", "CHANNELS"]).trim(), "", "classic channels on {}", m.port);
        assert!(m.cli(&["DBSIZE"]).trim().parse::<u64>().unwrap() > 0, "master {} holds no key", m.port);
    }
    let (st, v) = n[0].api("get_all_groups", Some("s"), json!({}));
    assert_eq!(st, 200);
    assert_eq!(v["data"].as_object().unwrap().len(), 24, "{v}");
    // A group emptied leaves the index (on another master than the group) by the broker's
    // own update, before any read could tidy it.
    let index_master = &rc.members[master_of(&rc, "rc:gs:1:s")];
    let listed = || index_master.cli(&["ZRANGE", "rc:gs:1:s", "0", "-1"]);
    assert!(listed().lines().any(|l| l == "g0"));
    drop(clients.remove(0));
    let t = Instant::now();
    while listed().lines().any(|l| l == "g0") {
        assert!(t.elapsed() < Duration::from_secs(5), "g0 still in the index: {}", listed());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(listed().lines().count(), 23);
    let (_, v) = n[1].api("get_all_groups", Some("s"), json!({}));
    assert!(v["data"].get("g0").is_none() && v["data"].as_object().unwrap().len() == 23, "{v}");
}

#[test]
fn rediss_cluster_carries_commands_and_pub_sub() {
    let dir = std::env::temp_dir().join(format!("roomcast-rediss-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, c.cert.pem()).unwrap();
    std::fs::write(&key, c.key_pair.serialize_pem()).unwrap();
    let rc = Redis::start_cluster_tls(&cert, &key);
    assert!(rc.url().starts_with("rediss+cluster://"), "{}", rc.url());
    let ca = cert.display().to_string();
    let n = nodes(&rc, 2, &["--redis-ca", &ca]);
    n[0].register("s");
    let mut clients: Vec<Client> = (0..6).map(|i| n[i % 2].client("s")).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        n[(i + 1) % 2].bind("s", &c.id, &format!("g{i}"), "u");
        assert_eq!(notice(c, 1001), c.id);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let id = send_group(&n[i % 2], "s", &format!("g{i}"), "over tls");
        assert_eq!(next_message(c)["messageId"], id.as_str());
    }
    assert_eq!(online(&n[1], "s", "g0"), vec![clients[0].id.clone()]);
    // Without the CA the certificates are not trusted: the node stays down and says so.
    let url = rc.url();
    let untrusted = Server::start(&["--redis", url.as_str()]);
    std::thread::sleep(Duration::from_secs(1)); // the trusted nodes were up in less
    assert_eq!(health(&untrusted)["cluster"], "redis unreachable");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_killed_master_is_replaced_by_its_replica_without_restarting_a_node() {
    let mut rc = Redis::start_cluster(None);
    let n = nodes(&rc, 2, &["--presence-ttl", "3s"]);
    n[1].register("s");
    let mut a = n[0].client("s");
    let mut b = n[0].client("s");
    n[1].bind("s", &a.id, "g", "ua");
    n[1].bind("s", &b.id, "g", "ub");
    assert_eq!(notice(&mut a, 1001), a.id);
    assert_eq!(notice(&mut a, 1001), b.id);
    assert_eq!(notice(&mut b, 1001), b.id);
    let before = send_group(&n[1], "s", "g", "before");
    assert_eq!(next_message(&mut a)["messageId"], before.as_str());
    assert_eq!(next_message(&mut b)["messageId"], before.as_str());
    // The master of the group's slot, with everything written so far on its replica.
    let victim = master_of(&rc, "rc:g:{1:s:g}");
    let acked = rc.members[victim].cli(&["WAIT", "1", "5000"]);
    assert_eq!(acked.trim(), "1");

    rc.members[victim].stop();
    let killed = Instant::now();
    let (_, during) = send_until_back(&n[1], killed);
    for s in &n {
        wait_up(s);
    }
    eprintln!("every node on the new masters {:?} after the kill", killed.elapsed());
    let promoted = master_of(&rc, "rc:g:{1:s:g}");
    assert_ne!(promoted, victim, "a replica serves the slot now");
    let id = send_group(&n[1], "s", "g", "healthy again");
    for c in [&mut a, &mut b] {
        // Before it, only sends of the outage: the first answered 200 (`during`), and perhaps
        // some answered 503 whose publish had gone through (503: not known to be sent).
        let mut skipped = Vec::new();
        loop {
            let v = next_message(c);
            if v["messageId"] == id.as_str() {
                break;
            }
            assert_eq!(v["msg"], "after", "only sends of the outage come before: {v}");
            skipped.push(v["messageId"].as_str().unwrap().to_string());
        }
        eprintln!(
            "{} outage sends arrived before (the 200 one among them: {})",
            skipped.len(),
            skipped.contains(&during)
        );
    }
    for s in &n {
        assert_eq!(online(s, "s", "g"), sorted(vec![a.id.clone(), b.id.clone()]), "presence intact");
    }
    let (st, _) = n[0].api("register", None, json!({"systemId": "s"}));
    assert_eq!(st, 409, "the registered system survived");
    drop(b);
    let gone = notice(&mut a, 1002);
    assert_ne!(gone, a.id);
}

/// `redis-cli --cluster reshard` moving all of one master's slots to another while group sends
/// flow steadily through both nodes: every send answered 200 reaches every member, once and in
/// order (nothing more comes); a join into a moved group after it works.
#[test]
fn a_slot_migration_under_load_loses_nothing() {
    const GROUPS: usize = 12;
    let rc = Redis::start_cluster(None);
    let n = Arc::new(nodes(&rc, 2, &[]));
    n[1].register("s");
    let mut members: Vec<Client> = (0..GROUPS).map(|_| n[0].client("s")).collect();
    for (i, c) in members.iter_mut().enumerate() {
        n[1].bind("s", &c.id, &format!("g{i}"), "u");
        assert_eq!(notice(c, 1001), c.id);
        c.set_timeout(Duration::from_secs(10));
    }
    // From the master serving most of the groups.
    let ms = masters(&rc);
    let owners: Vec<usize> = (0..GROUPS).map(|i| master_of(&rc, &format!("rc:g:{{1:s:g{i}}}"))).collect();
    let count = |m: &(usize, String)| owners.iter().filter(|&&o| o == m.0).count();
    let from = ms.iter().max_by_key(|m| count(m)).unwrap();
    let to = ms.iter().find(|m| m.0 != from.0).unwrap();
    let moving = count(from);
    assert!(moving > 0);
    eprintln!("{moving} of {GROUPS} groups on the master whose slots move");

    let sent: Arc<Mutex<Vec<Vec<String>>>> = Arc::new(Mutex::new(vec![Vec::new(); GROUPS]));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (n, sent, stop) = (n.clone(), sent.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut refused = 0;
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                let g = k % GROUPS;
                let (st, v) = n[k % 2].api(
                    "send_to_group",
                    Some("s"),
                    json!({"groupName": format!("g{g}"), "code": 0, "msg": "m", "data": k}),
                );
                match st {
                    200 => sent.lock().unwrap()[g].push(v["data"]["messageId"].as_str().unwrap().to_string()),
                    503 => refused += 1,
                    _ => panic!("{st} {v}"),
                }
                k += 1;
                std::thread::sleep(Duration::from_millis(3));
            }
            refused
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let out = Command::new("redis-cli")
        .args(["--cluster", "reshard", &format!("127.0.0.1:{}", rc.members[0].port)])
        .args(["--cluster-from", &from.1, "--cluster-to", &to.1, "--cluster-slots", "5461", "--cluster-yes"])
        .output()
        .unwrap();
    assert!(out.status.success(), "reshard: {}", String::from_utf8_lossy(&out.stdout));
    eprintln!("reshard took {:?}", started.elapsed());
    rc.wait_cluster_ok();
    // A client joining after the move, into a moved group.
    let moved_group = (0..GROUPS).find(|i| master_of(&rc, &format!("rc:g:{{1:s:g{i}}}")) == to.0).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let refused = sender.join().unwrap();
    let sent = sent.lock().unwrap().clone();
    let total: usize = sent.iter().map(Vec::len).sum();
    eprintln!("{total} sends answered 200, {refused} answered 503");
    assert!(total > 100, "the load ran: {total}");
    for (g, (c, ids)) in members.iter_mut().zip(&sent).enumerate() {
        let got: Vec<String> =
            (0..ids.len()).map(|_| next_message(c)["messageId"].as_str().unwrap().to_string()).collect();
        assert_eq!(&got, ids, "group g{g}: every send answered 200, once and in order");
        c.expect_silence(Duration::from_millis(100));
    }
    let mut late = n[0].client("s");
    n[1].bind("s", &late.id, &format!("g{moved_group}"), "late");
    assert_eq!(notice(&mut late, 1001), late.id);
    let id = send_group(&n[0], "s", &format!("g{moved_group}"), "after the move");
    assert_eq!(next_message(&mut late)["messageId"], id.as_str());
    for s in n.iter() {
        assert_eq!(metric(s, "cluster_redis_missed_total"), 0, "no node saw a gap");
    }
    let moved: u64 = n.iter().map(|s| metric(s, "cluster_resubscribed_total")).sum();
    eprintln!("{moved} channels subscribed again on their new master");
    assert!(moved > 0, "the nodes followed the moved channels");
}
