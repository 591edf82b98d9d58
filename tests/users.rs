//! Users: a person's connections (a connect token's `sub`, else the `userId` of the first bind
//! naming one) reached, counted and closed together — `send_to_user`, `close_user`,
//! `get_user_presence`, `get_online_list` with `withUsers`, the `user_online` /
//! `user_offline` webhooks — on one node and on three nodes with a real Redis.
mod util;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use util::cluster::{node, nodes, Redis};
use util::hooks::Receiver;
use util::*;

fn connect_token(system: &str, sub: &str) -> String {
    roomcast::auth::mint_connect_hs256(SECRET.as_bytes(), system, Some(sub), &[], 60).unwrap()
}

/// A client of `system` whose connect token names `user`.
fn tab(s: &Server, system: &str, user: &str) -> Client {
    let mut c = Client::connect(&s.url(&format!("/ws?systemId={system}&token={}", connect_token(system, user))));
    let hello = c.recv().expect("connect frame");
    assert_eq!(hello["code"], 0, "{hello}");
    c.id = hello["data"]["clientId"].as_str().unwrap().to_string();
    c
}

fn send_to_user(s: &Server, system: &str, user: &str, msg: &str) -> Value {
    let (st, v) = s.api(
        "send_to_user",
        Some(system),
        json!({"userId": user, "sendUserId": "srv", "msg": msg, "data": {"m": msg}}),
    );
    assert_eq!(st, 200, "{v}");
    v["data"].clone()
}

/// `get_user_presence`'s data.
fn presence(s: &Server, system: &str, users: &[&str]) -> Value {
    let (st, v) = s.api("get_user_presence", Some(system), json!({ "userIds": users }));
    assert_eq!(st, 200, "{v}");
    v["data"].clone()
}

fn clients_of(p: &Value, user: &str) -> Vec<String> {
    let mut l: Vec<String> =
        p[user]["clients"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().into()).collect();
    l.sort();
    l
}

fn sorted(ids: &[&Client]) -> Vec<String> {
    let mut l: Vec<String> = ids.iter().map(|c| c.id.clone()).collect();
    l.sort();
    l
}

/// Binds without a notice (the tests read every frame their clients get).
fn bind(s: &Server, client: &str, group: &str, user: &str) {
    let body = json!({"clientId": client, "groupName": group, "userId": user, "notify": false});
    let (st, v) = s.api("bind_to_group", Some("a"), body);
    assert_eq!(st, 200, "bind: {v}");
}

/// The next push frame, its `msg` and `messageId`.
fn pushed(c: &mut Client) -> (String, String) {
    let v = c.recv().expect("a push frame");
    (v["msg"].as_str().unwrap().into(), v["messageId"].as_str().unwrap().into())
}

#[test]
fn a_user_is_reached_counted_and_closed_on_every_connection() {
    let s = Server::start_with_jwt(&[]);
    for sys in ["a", "b"] {
        s.register(sys);
    }
    let (mut t1, mut t2) = (tab(&s, "a", "alice"), tab(&s, "a", "alice"));
    let mut other_system = tab(&s, "b", "alice");
    // A connection without a token takes its user from its first bind naming one.
    let mut bob = s.client("a");
    bind(&s, &bob.id, "g", "bob");
    let d = send_to_user(&s, "a", "alice", "hi");
    assert_eq!(d["clients"], 2, "{d}");
    let id = d["messageId"].as_str().unwrap().to_string();
    for t in [&mut t1, &mut t2] {
        assert_eq!(pushed(t), ("hi".into(), id.clone()), "one frame, the same for every tab");
    }
    other_system.expect_silence(Duration::from_millis(300));
    bob.expect_silence(Duration::from_millis(100));
    assert_eq!(send_to_user(&s, "a", "bob", "b")["clients"], 1);
    assert_eq!(pushed(&mut bob).0, "b");
    assert_eq!(send_to_user(&s, "a", "nobody", "n")["clients"], 0);

    let p = presence(&s, "a", &["alice", "bob", "carol", "alice"]);
    assert_eq!(p.as_object().unwrap().len(), 3, "each user once: {p}");
    assert_eq!((p["alice"]["online"].clone(), clients_of(&p, "alice")), (json!(true), sorted(&[&t1, &t2])));
    assert_eq!(clients_of(&p, "bob"), [bob.id.clone()]);
    assert_eq!(p["carol"], json!({"online": false, "clients": []}));
    assert_eq!(clients_of(&presence(&s, "b", &["alice"]), "alice"), [other_system.id.clone()], "tenants apart");

    // withUsers: each member with its userId and extend; without it, upstream's answer.
    let (st, _) = s.api(
        "bind_to_group",
        Some("a"),
        json!({"clientId": t1.id, "groupName": "g", "userId": "alice", "extend": "x", "notify": false}),
    );
    assert_eq!(st, 200);
    let (_, v) = s.api("get_online_list", Some("a"), json!({"groupName": "g", "withUsers": true}));
    let mut list = v["data"]["list"].as_array().unwrap().clone();
    list.sort_by_key(|m| m["userId"].as_str().unwrap().to_string());
    let want = json!([{"clientId": t1.id, "userId": "alice", "extend": "x"}, {"clientId": bob.id, "userId": "bob", "extend": ""}]);
    assert_eq!((v["data"]["count"].clone(), Value::Array(list)), (json!(2), want));
    let (_, plain) = s.api("get_online_list", Some("a"), json!({"groupName": "g"}));
    assert!(plain["data"]["list"][0].is_string(), "{plain}");
    // A later bind naming another userId (for that group's notices, as upstream) does not
    // change whose connection it is.
    bind(&s, &bob.id, "h", "robert");
    assert_eq!(send_to_user(&s, "a", "robert", "r")["clients"], 0);
    assert_eq!(send_to_user(&s, "a", "bob", "b2")["clients"], 1);
    assert_eq!(pushed(&mut bob).0, "b2");

    let (st, v) = s.api("close_user", Some("a"), json!({"userId": "alice"}));
    assert_eq!((st, &v["data"]), (200, &json!({"clients": 2})), "{v}");
    for t in [&mut t1, &mut t2] {
        assert_eq!(t.close_code().map(u16::from), Some(1000));
    }
    assert_eq!(presence(&s, "a", &["alice"])["alice"]["online"], false);
    // bob heard alice's tab leave g (1002); the other system's alice stays.
    assert_eq!(bob.expect_code(1002)["code"], 1002);
    other_system.expect_silence(Duration::from_millis(200));
    wait_metric(&s, "users", 2, "two users left: bob, and the other system's alice");
}

#[test]
fn user_calls_refuse_bad_input() {
    let s = Server::start(&["--max-name-bytes", "16"]);
    s.register("a");
    let bad = |name: &str, body: Value| {
        let (st, v) = s.api(name, Some("a"), body.clone());
        assert_eq!(st, 400, "{name} {body}: {v}");
        v["msg"].as_str().unwrap().to_string()
    };
    assert!(bad("send_to_user", json!({"msg": "x"})).contains("userId is required"));
    assert!(bad("close_user", json!({"userId": ""})).contains("userId is required"));
    assert!(bad("send_to_user", json!({"userId": "u".repeat(17)})).contains("max_name_bytes"));
    assert!(bad("get_user_presence", json!({})).contains("userIds is required"));
    assert!(bad("get_user_presence", json!({"userIds": []})).contains("userIds is required"));
    assert!(bad("get_user_presence", json!({"userIds": ["a", ""]})).contains("empty userId"));
    let many: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();
    assert!(bad("get_user_presence", json!({ "userIds": many })).contains("1000"));
    let max: Vec<String> = (0..1000).map(|i| format!("u{i}")).collect();
    let (st, v) = s.api("get_user_presence", Some("a"), json!({ "userIds": max }));
    assert_eq!((st, v["data"].as_object().map(|o| o.len())), (200, Some(1000)), "1000 is allowed");
    let (st, _) = s.api("send_to_user", Some("nope"), json!({"userId": "u"}));
    assert_eq!(st, 404, "an unknown system");
}

/// A client with session recovery (`query` after `systemId=a&recover=1`): it, its clientId and
/// its resume token.
fn recoverable(s: &Server, query: &str) -> (Client, String, String) {
    let mut c = Client::connect(&s.url(&format!("/ws?systemId=a&recover=1{query}")));
    let hello = c.recv().expect("connect frame");
    let field = |k: &str| hello["data"][k].as_str().unwrap_or_else(|| panic!("no {k} in {hello}")).to_string();
    let (id, token) = (field("clientId"), field("resumeToken"));
    c.id = id.clone();
    (c, id, token)
}

/// Drops the connection with a reset (no close handshake) and waits until it is a kept session.
fn drop_hard(s: &Server, c: Client) {
    socket2::SockRef::from(c.ws.get_ref()).set_linger(Some(Duration::ZERO)).unwrap();
    drop(c);
    wait_metric(s, "recovery_sessions", 1, "the drop was not noticed");
}

/// Closed by `close_user`, a session cannot be resumed: the resume gets a fresh one.
#[test]
fn close_user_ends_the_sessions() {
    let s = Server::start(&[]);
    s.register("a");
    let (mut c, id, token) = recoverable(&s, "");
    bind(&s, &id, "g", "carol");
    let (st, v) = s.api("close_user", Some("a"), json!({"userId": "carol"}));
    assert_eq!((st, &v["data"]["clients"]), (200, &json!(1)));
    assert_eq!(c.close_code().map(u16::from), Some(1000));
    let mut again = Client::connect(&s.url(&format!("/ws?systemId=a&recover=1&resume={token}")));
    let hello = again.recv().unwrap();
    assert_eq!(hello["data"]["recovered"], false, "{hello}");
    assert_ne!(hello["data"]["clientId"], id);
}

/// The user webhooks of `user`, in order.
fn user_events(events: &[Value], user: &str) -> Vec<String> {
    let of_user = |e: &&Value| e["userId"] == user && e["name"].as_str().unwrap().starts_with("user_");
    events.iter().filter(of_user).map(|e| e["name"].as_str().unwrap().to_string()).collect()
}

/// Where the event named `name` (about `client`, or the user's `user_*` one) is.
fn at(events: &[Value], name: &str, key: (&str, &str)) -> usize {
    events.iter().position(|e| e["name"] == name && e[key.0] == key.1).unwrap_or_else(|| panic!("no {name} {key:?}"))
}

#[test]
fn user_online_and_offline_once_per_transition_on_one_node() {
    let rx = Receiver::start(None);
    let url = rx.url();
    let s = Server::start_with_jwt(&["--webhook-url", &url, "--webhook-batch-delay", "20ms"]);
    s.register("a");
    // The user's only connection blips and resumes: no transition.
    let (r, rid, token) = recoverable(&s, &format!("&token={}", connect_token("a", "dave")));
    drop_hard(&s, r);
    let mut r = Client::connect(&s.url(&format!("/ws?systemId=a&recover=1&resume={token}")));
    assert_eq!(r.recv().unwrap()["data"]["recovered"], true);
    // Two more tabs come and go; the first one (the resumed one) leaves last.
    let (t1, t2) = (tab(&s, "a", "dave"), tab(&s, "a", "dave"));
    drop((t1, t2));
    std::thread::sleep(Duration::from_millis(300));
    r.ws.close(None).unwrap();
    let _ = r.ws.flush();
    rx.wait("user_offline", |e| e.iter().any(|e| e["name"] == "user_offline"));
    std::thread::sleep(Duration::from_millis(300));
    let ev = rx.events();
    assert_eq!(user_events(&ev, "dave"), ["user_online", "user_offline"], "once per transition, the blip none");
    // After the client_connected that caused it; before the client_disconnected that caused it.
    assert!(at(&ev, "client_connected", ("clientId", &rid)) < at(&ev, "user_online", ("userId", "dave")));
    assert!(at(&ev, "user_offline", ("userId", "dave")) < at(&ev, "client_disconnected", ("clientId", &rid)));
    assert_eq!(ev.iter().filter(|e| e["name"] == "client_disconnected").count(), 3, "the blip is no disconnect");
}

/// An empty `sub` names nobody: the connection has no user (it used to make a user "").
#[test]
fn an_empty_sub_is_no_user() {
    let s = Server::start_with_jwt(&[]);
    s.register("a");
    let _c = tab(&s, "a", "");
    let mut other = tab(&s, "a", "x");
    assert_eq!(send_to_user(&s, "a", "x", "m")["clients"], 1, "the hub is alive");
    assert_eq!(pushed(&mut other).0, "m");
    wait_metric(&s, "users", 1, "only x is a user");
}

/// `close_user` ends a session kept for a dropped connection too: its resume gets a fresh one.
#[test]
fn close_user_ends_a_detached_session() {
    let s = Server::start(&[]);
    s.register("a");
    let (c, id, token) = recoverable(&s, "");
    bind(&s, &id, "g", "ivy");
    drop_hard(&s, c);
    let (st, v) = s.api("close_user", Some("a"), json!({"userId": "ivy"}));
    assert_eq!((st, &v["data"]["clients"]), (200, &json!(1)), "{v}");
    wait_metric(&s, "recovery_sessions", 0, "the kept session ended");
    let mut again = Client::connect(&s.url(&format!("/ws?systemId=a&recover=1&resume={token}")));
    assert_eq!(again.recv().unwrap()["data"]["recovered"], false);
}

/// Cluster mode, Redis unreachable for a while (stopped, not restarted: its data stays): a
/// user's last connection that left meanwhile gets its user_offline, and a first one that came
/// meanwhile its user_online, once Redis is back — once each.
#[test]
fn user_transitions_during_a_redis_outage_are_told_when_it_returns() {
    let redis = Redis::start();
    let rx = Receiver::start(None);
    let url = rx.url();
    let args = ["--jwt-secret", SECRET, "--presence-ttl", "1s", "--webhook-url", &url, "--webhook-batch-delay", "20ms"];
    let mut s = node(&redis, &args);
    s.token = Some(token(None, 3600));
    s.register("a");
    let gina = tab(&s, "a", "gina");
    rx.wait("gina online", |e| user_events(e, "gina") == ["user_online"]);
    let stop = |sig: &str| {
        let ok = std::process::Command::new("kill").args([sig, &redis.pid().to_string()]).status().unwrap();
        assert!(ok.success());
    };
    stop("-STOP");
    let t = Instant::now();
    while util::cluster::health(&s)["cluster"] == "up" {
        assert!(t.elapsed() < Duration::from_secs(15), "the node never noticed Redis stopped");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(gina);
    let hank = tab(&s, "a", "hank");
    std::thread::sleep(Duration::from_millis(500));
    stop("-CONT");
    util::cluster::wait_up(&s);
    rx.wait("both told", |e| user_events(e, "gina").len() == 2 && user_events(e, "hank").len() == 1);
    std::thread::sleep(Duration::from_millis(500));
    let ev = rx.events();
    assert_eq!(
        (user_events(&ev, "gina"), user_events(&ev, "hank")),
        (vec!["user_online".into(), "user_offline".into()], vec!["user_online".to_string()])
    );
    assert_eq!(clients_of(&presence(&s, "a", &["hank"]), "hank"), std::slice::from_ref(&hank.id));
    assert_eq!(presence(&s, "a", &["gina"])["gina"]["online"], false);
}

#[test]
fn a_users_connections_across_nodes_are_one_person() {
    let redis = Redis::start();
    let rx = Receiver::start(None);
    let url = rx.url();
    let args = ["--jwt-secret", SECRET, "--presence-ttl", "1s", "--webhook-url", &url, "--webhook-batch-delay", "20ms"];
    let mut n = nodes(&redis, 3, &args);
    for s in &mut n {
        s.token = Some(token(None, 3600));
    }
    n[0].register("a");
    let mut tabs: Vec<Client> = n.iter().map(|s| tab(s, "a", "erin")).collect();
    let mut frank = n[2].client("a");
    bind(&n[0], &frank.id, "g", "frank");
    let all: Vec<&Client> = tabs.iter().collect();
    let ids = sorted(&all);
    let t = Instant::now();
    while clients_of(&presence(&n[1], "a", &["erin"]), "erin") != ids {
        assert!(t.elapsed() < Duration::from_secs(5), "every node's tab in presence");
        std::thread::sleep(Duration::from_millis(20));
    }
    // One send from any node reaches every tab, once.
    let d = send_to_user(&n[1], "a", "erin", "hello");
    assert_eq!(d["clients"], 3);
    for t in tabs.iter_mut() {
        assert_eq!(pushed(t).0, "hello");
    }
    frank.expect_silence(Duration::from_millis(300));
    for t in tabs.iter_mut() {
        t.expect_silence(Duration::from_millis(50));
    }
    // withUsers from another node than the members'.
    let (_, v) = n[1].api("get_online_list", Some("a"), json!({"groupName": "g", "withUsers": true}));
    assert_eq!(v["data"]["list"], json!([{"clientId": frank.id, "userId": "frank", "extend": ""}]), "{v}");

    // The node with one tab is SIGKILLed: its tab leaves presence within the TTL, and the user
    // stays online (no user_offline).
    let gone = tabs.pop().unwrap();
    let mut dead = n.pop().unwrap();
    dead.child.kill().unwrap();
    let left = sorted(&tabs.iter().collect::<Vec<_>>());
    let t = Instant::now();
    while clients_of(&presence(&n[0], "a", &["erin"]), "erin") != left {
        assert!(t.elapsed() < Duration::from_secs(10), "the dead node's tab never left presence");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop((gone, frank));

    // close_user through node 1 closes the tabs on both nodes; user_offline comes once.
    let (st, v) = n[1].api("close_user", Some("a"), json!({"userId": "erin"}));
    assert_eq!((st, &v["data"]["clients"]), (200, &json!(2)), "{v}");
    for t in tabs.iter_mut() {
        assert_eq!(t.close_code().map(u16::from), Some(1000));
    }
    rx.wait("erin's user_offline", |e| e.iter().any(|e| e["name"] == "user_offline" && e["userId"] == "erin"));
    std::thread::sleep(Duration::from_millis(500));
    let ev: Vec<Value> = rx.events().into_iter().filter(|e| e["userId"] == "erin").collect();
    let names: Vec<&str> = ev.iter().map(|e| e["name"].as_str().unwrap()).filter(|n| n.starts_with("user_")).collect();
    assert_eq!(names, ["user_online", "user_offline"], "once per transition for the whole cluster");
    // frank's only connection was on the killed node: the survivor that reaped it said so, once.
    let frank: Vec<String> = rx
        .events()
        .iter()
        .filter(|e| e["userId"] == "frank" && e["name"].as_str().unwrap().starts_with("user_"))
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(frank, ["user_online", "user_offline"], "the reaper's user_offline");
    assert_eq!(presence(&n[1], "a", &["erin"])["erin"]["online"], false);
    // A node that comes back finds nothing of erin's.
    let mut fresh = node(&redis, &args);
    fresh.token = Some(token(None, 3600));
    assert_eq!(presence(&fresh, "a", &["erin", "frank"])["erin"]["clients"], json!([]));
}
