//! Connection lifecycle: idle timeout, slot reuse, notices exactly once under churn,
//! graceful shutdown.
mod util;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use tungstenite::Message;
use util::*;

#[test]
fn idle_peer_is_closed_and_goes_offline() {
    let s = Server::start(&["--ping-interval", "300ms", "--idle-timeout", "1s"]);
    s.register("a");
    let mut watcher = s.client("a");
    let silent = s.client("a");
    s.bind("a", &watcher.id, "g", "w");
    s.bind("a", &silent.id, "g", "s");
    watcher.expect_code(1001);
    watcher.expect_code(1001);
    // `silent` never reads again, so it never answers a ping; `watcher` reads (and its
    // client library answers pings), so it stays.
    let off = watcher.expect_code(1002);
    assert!(off["data"].as_str().unwrap().contains(&silent.id));
    watcher.expect_silence(Duration::from_millis(1500));
    assert!(metric(&s, "idle_closes_total") >= 1);
    let (_, v) = s.api("get_online_list", Some("a"), json!({"groupName": "g"}));
    assert_eq!(v["data"]["list"], json!([watcher.id]));
    drop(silent);
}

#[test]
fn a_reused_slot_never_gets_the_previous_clients_messages() {
    let s = Server::start(&["--shards", "1"]);
    s.register("a");
    let old = s.client("a");
    let old_id = old.id.clone();
    drop(old);
    // Wait until the server has freed the slot.
    for _ in 0..100 {
        if metric(&s, "ws_clients") == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut new = s.client("a");
    assert_eq!(&new.id[12..20], &old_id[12..20], "same slot: {} vs {old_id}", new.id);
    assert_ne!(new.id, old_id, "a new generation");
    assert_eq!(s.api("send_to_client", Some("a"), json!({"clientId": old_id, "code": 1})).0, 404);
    assert_eq!(s.api("bind_to_group", Some("a"), json!({"clientId": old_id, "groupName": "g"})).0, 404);
    assert_eq!(s.api("send_to_clients", Some("a"), json!({"clientIds": [old_id], "code": 2})).0, 200);
    new.expect_silence(Duration::from_millis(300));
}

#[test]
fn online_and_offline_notices_exactly_once_under_churn() {
    let s = Server::start(&[]);
    s.register("a");
    let mut watcher = s.client("a");
    s.bind("a", &watcher.id, "g", "w");
    watcher.expect_code(1001);
    let n = 30;
    let mut clients: Vec<Client> = (0..n).map(|_| s.client("a")).collect();
    let ids: Vec<String> = clients.iter().map(|c| c.id.clone()).collect();
    std::thread::scope(|sc| {
        for chunk in ids.chunks(10) {
            let s = &s;
            sc.spawn(move || {
                for id in chunk {
                    s.bind("a", id, "g", "u");
                    s.bind("a", id, "g", "u"); // a no-op: no second notice
                }
            });
        }
    });
    // A third leave by close_client, a third by dropping TCP, a third by a close frame.
    std::thread::scope(|sc| {
        let (by_api, rest) = clients.split_at_mut(10);
        let (by_drop, by_close) = rest.split_at_mut(10);
        let s = &s;
        sc.spawn(move || {
            for c in by_api.iter() {
                assert_eq!(s.api("close_client", Some("a"), json!({"clientId": c.id})).0, 200);
                // Racing a second close of the same client is harmless.
                s.api("close_client", Some("a"), json!({"clientId": c.id}));
            }
        });
        sc.spawn(move || {
            for c in by_drop.iter_mut() {
                let _ = c.ws.get_mut().shutdown(std::net::Shutdown::Both);
            }
        });
        sc.spawn(move || {
            for c in by_close.iter_mut() {
                let _ = c.ws.close(None);
                let _ = c.ws.flush();
            }
        });
    });
    let mut online: HashMap<String, u32> = HashMap::new();
    let mut offline: HashMap<String, u32> = HashMap::new();
    watcher.set_timeout(Duration::from_millis(1500));
    while let Some(v) = watcher.recv() {
        let inner: serde_json::Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        let id = inner["clientId"].as_str().unwrap().to_string();
        match v["code"].as_i64() {
            Some(1001) => *online.entry(id).or_default() += 1,
            Some(1002) => *offline.entry(id).or_default() += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    for id in &ids {
        assert_eq!(online.get(id), Some(&1), "1001 for {id}");
        assert_eq!(offline.get(id), Some(&1), "1002 for {id}");
    }
    assert_eq!(online.len(), n);
    assert_eq!(offline.len(), n);
    let (_, v) = s.api("get_online_list", Some("a"), json!({"groupName": "g"}));
    assert_eq!(v["data"]["list"], json!([watcher.id]));
}

#[test]
fn graceful_shutdown_closes_clients_with_1001_and_exits_zero() {
    let mut s = Server::start(&[]);
    s.register("a");
    let mut a = s.client("a");
    let mut b = s.client("a");
    let status = s.terminate().expect("exits within the bound");
    assert!(status.success(), "{status:?}");
    for c in [&mut a, &mut b] {
        let code = loop {
            match c.ws.read() {
                Ok(Message::Close(f)) => break f.map(|f| u16::from(f.code)),
                Ok(_) => continue,
                Err(_) => break None,
            }
        };
        assert_eq!(code, Some(1001));
    }
    assert!(std::net::TcpStream::connect(s.addr).is_err(), "no longer accepting");
}

/// Security review, high: with a fixed node id, the first connections after a restart got
/// exactly the clientIds of the first ones before it, so a back end holding an old id reached
/// a different user.
#[test]
fn a_restarted_node_never_reuses_a_clientid() {
    let run = || {
        let s = Server::start(&["--node-id", "7", "--shards", "1"]);
        s.register("a");
        let ids: Vec<String> = (0..3).map(|_| s.client("a").id).collect();
        (s, ids)
    };
    let (mut s, before) = run();
    s.terminate();
    let (s, after) = run();
    assert_eq!(before[0][..8], after[0][..8], "the same node id");
    for old in &before {
        assert!(!after.contains(old), "{old} handed out again: {before:?} {after:?}");
        let (st, _) = s.api("send_to_client", Some("a"), json!({"clientId": old, "msg": "x"}));
        assert_eq!(st, 404, "an old clientId reaches nobody");
    }
}
