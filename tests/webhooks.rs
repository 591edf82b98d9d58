//! Presence webhooks against a real receiver (tests/util/hooks.rs): every event, in order,
//! signed; retries through 500s, timeouts and a receiver that is not there yet; the queue
//! bound; nothing slowed down while the receiver is away; one node and a cluster.
mod util;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use util::hooks::{names_for, Receiver};
use util::*;

const KEY: &str = "hook-secret";

fn server(rx_url: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--webhook-url", rx_url, "--webhook-secret", KEY, "--webhook-batch-delay", "20ms"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn ids_unique(events: &[Value]) {
    let mut seen = HashSet::new();
    for e in events {
        assert!(seen.insert(e["id"].as_str().unwrap().to_string()), "duplicate id in {e}");
    }
}

#[test]
fn every_presence_event_arrives_signed_and_in_order() {
    let rx = Receiver::start(Some(KEY));
    let s = server(&rx.url(), &[]);
    s.register("a");
    let mut c1 = s.client("a");
    let c2 = s.client("a");
    s.bind("a", &c1.id, "g", "u1");
    let (st, _) = s.api(
        "bind_to_group",
        Some("a"),
        json!({"clientId": c2.id, "groupName": "g", "userId": "u2", "extend": "x", "notify": false}),
    );
    assert_eq!(st, 200);
    let (st, _) = s.api("unbind_from_group", Some("a"), json!({"clientId": c1.id, "groupName": "g"}));
    assert_eq!(st, 200);
    s.bind("a", &c1.id, "h", "u1");
    c1.ws.close(None).unwrap();
    let _ = c1.ws.flush();
    let (st, _) = s.api("close_client", Some("a"), json!({"clientId": c2.id}));
    assert_eq!(st, 200);
    let ev = rx.wait("both disconnects", |e| e.iter().filter(|e| e["name"] == "client_disconnected").count() == 2);
    ids_unique(&ev);
    assert_eq!(
        names_for(&ev, &c1.id),
        ["client_connected", "group_joined", "group_left", "group_joined", "group_left", "client_disconnected"]
    );
    assert_eq!(names_for(&ev, &c2.id), ["client_connected", "group_joined", "group_left", "client_disconnected"]);
    let reason = |id: &str| {
        ev.iter().find(|e| e["clientId"] == id && e["name"] == "client_disconnected").unwrap()["reason"].clone()
    };
    assert_eq!((reason(&c1.id), reason(&c2.id)), (json!("closed"), json!("kicked")));
    // group_occupied right after the first member's join, group_vacated right after the last
    // member's leave; notify:false silences notices, not webhooks.
    let pos = |pred: &dyn Fn(&Value) -> bool| ev.iter().position(pred).unwrap();
    let first_join = pos(&|e: &Value| e["name"] == "group_joined" && e["groupName"] == "g");
    assert_eq!(ev[first_join + 1]["name"], "group_occupied");
    let c2_join = &ev[pos(&|e: &Value| e["name"] == "group_joined" && e["clientId"] == c2.id.as_str())];
    assert_eq!(
        (c2_join["userId"].as_str(), c2_join["extend"].as_str(), c2_join["systemId"].as_str()),
        (Some("u2"), Some("x"), Some("a"))
    );
    let last_leave_g = ev.iter().rposition(|e| e["name"] == "group_left" && e["groupName"] == "g").unwrap();
    assert_eq!(
        ev[last_leave_g + 1],
        json!({"id": ev[last_leave_g + 1]["id"], "name": "group_vacated", "systemId": "a", "groupName": "g", "timeMs": ev[last_leave_g + 1]["timeMs"]})
    );
    assert_eq!(ev.iter().filter(|e| e["name"] == "group_vacated").count(), 2, "g and h");
    assert_eq!(rx.state.lock().unwrap().bad_signatures, 0);
    // The receiver keeps a batch before it answers; the sender counts it once the answer is in.
    wait_metric(&s, "webhook_events_sent_total", ev.len() as u64, "the delivered events were not counted");
}

#[test]
fn failed_and_slow_answers_are_retried_in_order() {
    let rx = Receiver::start(Some(KEY));
    rx.state.lock().unwrap().fail_next = 3;
    let s = server(&rx.url(), &["--webhook-timeout", "300ms"]);
    s.register("a");
    let c = s.client("a");
    s.bind("a", &c.id, "g", "u");
    let ev = rx.wait("the join", |e| e.iter().any(|e| e["name"] == "group_occupied"));
    assert_eq!(names_for(&ev, &c.id), ["client_connected", "group_joined"]);
    assert!(rx.state.lock().unwrap().requests >= 4);
    assert!(metric(&s, "webhook_batches_failed_total") >= 3);
    assert!(metric(&s, "webhook_events_retried_total") >= 3);
    // An answer later than webhook_timeout is a failure too: the batch comes again.
    rx.state.lock().unwrap().delay_next = Some(Duration::from_millis(800));
    let before = metric(&s, "webhook_batches_failed_total");
    s.bind("a", &c.id, "h", "u");
    let ev = rx.wait("the second join", |e| e.iter().any(|e| e["name"] == "group_joined" && e["groupName"] == "h"));
    assert!(metric(&s, "webhook_batches_failed_total") > before);
    // The slow answer was taken after all, so the batch may have arrived twice: same ids.
    let h_joins: Vec<&Value> = ev.iter().filter(|e| e["name"] == "group_joined" && e["groupName"] == "h").collect();
    assert!(h_joins.iter().all(|e| e["id"] == h_joins[0]["id"]), "a retry keeps the event ids");
}

#[test]
fn a_receiver_that_comes_later_gets_everything() {
    let port = Receiver::free_port();
    let s = server(&format!("http://127.0.0.1:{port}/hooks"), &[]);
    s.register("a");
    let c = s.client("a");
    s.bind("a", &c.id, "g", "u");
    std::thread::sleep(Duration::from_millis(500));
    assert!(metric(&s, "webhook_batches_failed_total") >= 1, "connection refused counts as a failure");
    let rx = Receiver::start_on(port, Some(KEY));
    let ev = rx.wait("the queued events", |e| e.len() >= 3);
    assert_eq!(names_for(&ev, &c.id), ["client_connected", "group_joined"]);
}

#[test]
fn the_queue_is_bounded_and_nothing_waits_for_the_receiver() {
    let port = Receiver::free_port(); // nobody listens: every batch fails
    let s = server(&format!("http://127.0.0.1:{port}/hooks"), &["--webhook-queue", "5", "--webhook-batch-size", "2"]);
    s.register("a");
    let t = Instant::now();
    let clients: Vec<Client> = (0..20).map(|_| s.client("a")).collect();
    let mut h = Http::new(&s);
    for c in &clients {
        let (st, _) = h.call("bind_to_group", "a", &json!({"clientId": c.id, "groupName": "g"}));
        assert_eq!(st, 200);
        let (st, _) = h.call("send_to_group", "a", &json!({"groupName": "g"}));
        assert_eq!(st, 200);
    }
    assert!(t.elapsed() < Duration::from_secs(5), "calls were slowed down by the receiver");
    let t = Instant::now();
    while metric(&s, "webhook_events_dropped_total") < 30 {
        assert!(t.elapsed() < Duration::from_secs(5), "the bound never dropped anything");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(metric(&s, "webhook_queue_events") <= 5);
}

#[test]
fn a_recovered_blip_is_not_told_and_an_expired_session_is() {
    let rx = Receiver::start(Some(KEY));
    let s = server(&rx.url(), &["--recovery-window", "1s"]);
    s.register("a");
    let mut c = Client::connect(&s.url("/ws?systemId=a&recover=1"));
    let hello = c.recv().unwrap();
    let (id, token) = (
        hello["data"]["clientId"].as_str().unwrap().to_string(),
        hello["data"]["resumeToken"].as_str().unwrap().to_string(),
    );
    socket2::SockRef::from(c.ws.get_ref()).set_linger(Some(Duration::ZERO)).unwrap();
    drop(c);
    std::thread::sleep(Duration::from_millis(300));
    let mut back = Client::connect(&s.url(&format!("/ws?systemId=a&recover=1&resume={token}")));
    assert_eq!(back.recv().unwrap()["data"]["recovered"], true);
    socket2::SockRef::from(back.ws.get_ref()).set_linger(Some(Duration::ZERO)).unwrap();
    drop(back);
    let ev = rx.wait("the expiry", |e| e.iter().any(|e| e["name"] == "client_disconnected"));
    assert_eq!(names_for(&ev, &id), ["client_connected", "client_disconnected"]);
    assert_eq!(ev.iter().find(|e| e["name"] == "client_disconnected").unwrap()["reason"], "recovery_expired");
}

#[test]
fn cluster_events_come_once_and_a_dead_nodes_clients_are_told_by_a_survivor() {
    use util::cluster::{node, Redis};
    let rx = Receiver::start(Some(KEY));
    let redis = Redis::start();
    let args =
        ["--webhook-url", &rx.url(), "--webhook-secret", KEY, "--webhook-batch-delay", "20ms", "--presence-ttl", "1s"];
    let (mut a, b) = (node(&redis, &args), node(&redis, &args));
    a.register("s");
    let c1 = a.client("s");
    let c2 = b.client("s");
    b.bind("s", &c1.id, "g", "u1");
    a.bind("s", &c2.id, "g", "u2");
    let (st, _) = b.api("unbind_from_group", Some("s"), json!({"clientId": c2.id, "groupName": "g"}));
    assert_eq!(st, 200);
    let ev = rx.wait("the joins and the leave", |e| e.iter().filter(|e| e["name"] == "group_left").count() == 1);
    ids_unique(&ev);
    assert_eq!(names_for(&ev, &c1.id), ["client_connected", "group_joined"]);
    assert_eq!(names_for(&ev, &c2.id), ["client_connected", "group_joined", "group_left"]);
    assert_eq!(ev.iter().filter(|e| e["name"] == "group_occupied").count(), 1, "once for the cluster");
    // Node a dies: the survivor tells of its client, once.
    a.child.kill().unwrap();
    let ev = rx.wait("node_lost", |e| e.iter().any(|e| e["reason"] == "node_lost"));
    ids_unique(&ev);
    assert_eq!(names_for(&ev, &c1.id), ["client_connected", "group_joined", "group_left", "client_disconnected"]);
    let vacated = ev.iter().position(|e| e["name"] == "group_vacated").unwrap();
    assert_eq!(ev[vacated - 1]["clientId"], c1.id.as_str());
    drop(c2);
}

/// A connect token's user and groups, on one node and across a cluster: `client_connected`
/// carries the user, its groups' `group_joined` follow it, the members on every node get the
/// 1001 notice, and every node's online list has the client.
#[test]
fn connect_token_groups_are_binds_on_one_node_and_in_a_cluster() {
    use util::cluster::Redis;
    let groups = ["room".to_string()];
    let ct = |system: &str| {
        roomcast::auth::mint_connect_hs256(SECRET.as_bytes(), system, Some("alice"), &groups, 60).unwrap()
    };
    let check = |rx: &Receiver, connect_at: &Server, other: &Server| {
        connect_at.register("s");
        let mut bob = other.client("s");
        other.bind("s", &bob.id, "room", "bob");
        bob.expect_code(1001);
        let mut alice = Client::connect(&connect_at.url(&format!("/ws?systemId=s&token={}", ct("s"))));
        let hello = alice.recv().unwrap();
        alice.id = hello["data"]["clientId"].as_str().unwrap().to_string();
        let own = alice.expect_code(1001);
        let n = bob.expect_code(1001);
        assert_eq!((&own["data"], &n["sendUserId"]), (&n["data"], &json!("alice")));
        for s in [connect_at, other] {
            let (_, v) = s.api("get_online_list", Some("s"), json!({"groupName": "room"}));
            assert!(v["data"]["list"].as_array().unwrap().contains(&json!(alice.id)), "{v}");
        }
        // (In a cluster each node sends its own clients' events: bob's may come after alice's.)
        let ev = rx.wait("alice's join and bob's connect", |e| {
            names_for(e, &alice.id).len() == 2 && !names_for(e, &bob.id).is_empty()
        });
        let mine: Vec<&Value> = ev.iter().filter(|e| e["clientId"] == alice.id.as_str()).collect();
        assert_eq!((&mine[0]["name"], &mine[0]["userId"]), (&json!("client_connected"), &json!("alice")));
        assert_eq!((&mine[1]["name"], &mine[1]["userId"]), (&json!("group_joined"), &json!("alice")));
        let bob_connected = ev.iter().find(|e| e["clientId"] == bob.id.as_str()).unwrap();
        assert!(bob_connected.get("userId").is_none(), "no user, no key: {bob_connected}");
    };
    let hooks = |rx: &Receiver| {
        let v = ["--webhook-url", &rx.url(), "--webhook-batch-delay", "20ms", "--jwt-secret", SECRET];
        v.map(String::from)
    };
    let with_token = |mut s: Server| {
        s.token = Some(token(None, 3600));
        s
    };
    let rx = Receiver::start(None);
    let args = hooks(&rx);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let single = with_token(Server::start(&args));
    check(&rx, &single, &single);

    let rx = Receiver::start(None);
    let args = hooks(&rx);
    let redis = Redis::start();
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    let url = redis.url();
    args.extend(["--redis", url.as_str()]);
    let a = with_token(Server::start(&args));
    let b = with_token(Server::start(&args));
    util::cluster::wait_up(&a);
    util::cluster::wait_up(&b);
    check(&rx, &a, &b);
}

/// Security review, medium: a receiver answering 302 made roomcast send the signed events to
/// the address it named, and that 2xx counted the batch as delivered. A 3xx is a failure now.
#[test]
fn redirects_are_never_followed() {
    let internal = Receiver::start(None);
    let rx = Receiver::start(Some(KEY));
    rx.state.lock().unwrap().redirect_to = Some(internal.url());
    let s = server(&rx.url(), &[]);
    s.register("a");
    let c = s.client("a");
    let t = Instant::now();
    while rx.state.lock().unwrap().requests < 3 {
        assert!(t.elapsed() < Duration::from_secs(5), "the redirected batch was not retried");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(internal.state.lock().unwrap().requests, 0, "the redirect was followed");
    assert!(metric(&s, "webhook_batches_failed_total") >= 2);
    assert_eq!(metric(&s, "webhook_batches_ok_total"), 0);
    rx.state.lock().unwrap().redirect_to = None;
    let ev = rx.wait("the batch, once the receiver stops redirecting", |e| !names_for(e, &c.id).is_empty());
    assert_eq!(names_for(&ev, &c.id), ["client_connected"]);
    assert_eq!(internal.state.lock().unwrap().requests, 0);
}

/// Security review, medium: with the receiver down, anonymous churn pushed alice's presence
/// events out of the queue and the back end could not tell. The next batch now starts with
/// `events_dropped`, and every request is signed with a timestamp (the receiver checks both).
#[test]
fn dropped_events_are_told_and_requests_carry_a_signed_timestamp() {
    let port = Receiver::free_port();
    let s = server(&format!("http://127.0.0.1:{port}/hooks"), &["--webhook-queue", "20"]);
    s.register("a");
    let alice = s.client("a");
    s.bind("a", &alice.id, "g", "alice");
    for _ in 0..40 {
        let mut c = s.client("a");
        c.ws.close(None).unwrap();
        assert_eq!(c.close_code().map(u16::from), Some(1000), "the close handshake completes");
    }
    // Every event recorded (alice's four: connected, joined, occupied and her user_online; two
    // per churn client), so the drops are final.
    wait_metric(&s, "webhook_events_total", 4 + 2 * 40, "the events were not all recorded");
    assert!(metric(&s, "webhook_events_dropped_total") >= 60, "the bound of 20 dropped the rest");
    let dropped = metric(&s, "webhook_events_dropped_total");
    let total = metric(&s, "webhook_events_total");
    let rx = Receiver::start_on(port, Some(KEY));
    // The batch being retried when the queue overflowed goes whole (nothing is dropped from
    // under it); a later batch starts with the drop notice, then the newest events. (The
    // first batch may carry a notice too, if the queue overflowed before the sender took
    // it.) Every event is delivered or counted in a notice: exactly.
    let told = |e: &[serde_json::Value]| -> u64 {
        e.iter().filter(|e| e["name"] == "events_dropped").map(|e| e["count"].as_u64().unwrap()).sum()
    };
    let ev = rx.wait("every event delivered or told dropped", |e| {
        let delivered = e.iter().filter(|e| e["name"] != "events_dropped").count() as u64;
        told(e) == dropped && delivered + dropped == total
    });
    let notices: Vec<usize> =
        ev.iter().enumerate().filter(|(_, e)| e["name"] == "events_dropped").map(|(i, _)| i).collect();
    assert!(!notices.is_empty() && notices.len() <= 2, "one notice per batch after drops: {notices:?}");
    let at = *notices.last().unwrap();
    assert!(ev.len() - at - 1 <= 20, "at most the queue's bound after the last notice: {at} {}", ev.len());
    let last = ev.last().unwrap();
    let delivered = ev.iter().filter(|e| e["name"] != "events_dropped").count();
    if last["name"] == "events_dropped" {
        // The batch being retried held the whole bound (the sender took it late, under load:
        // seen 5 times in 25 with both cores busy): every newer event was dropped, and the
        // notice came alone after it.
        assert_eq!(delivered, 20, "only a batch filling the bound leaves nothing after the notice: {ev:#?}");
    } else {
        assert_eq!(last["name"], "client_disconnected", "the newest events came: {last}");
    }
    // Alice's join is delivered only if it was in a batch before the drops were told.
    let alice_at = ev.iter().position(|e| e["clientId"] == alice.id.as_str());
    assert!(alice_at.is_none_or(|i| i < at), "{alice_at:?} {at}");
    let g = rx.state.lock().unwrap();
    assert_eq!(g.bad_signatures, 0);
    assert!(!g.timestamps.is_empty() && g.timestamps.iter().all(|t| t.abs_diff(roomcast::auth::now_secs()) < 60));
}

/// Review finding: with the receiver down at shutdown, a given-up batch put its drop count back
/// and the sender retried a batch of only the drop notice for ever: the process never exited.
#[test]
fn a_failing_receiver_does_not_hold_up_shutdown() {
    let port = Receiver::free_port();
    let url = format!("http://127.0.0.1:{port}/hooks");
    let mut s = server(&url, &["--webhook-queue", "5", "--shutdown-timeout", "1s"]);
    s.register("a");
    let clients: Vec<Client> = (0..10).map(|_| s.client("a")).collect();
    wait_metric(&s, "webhook_events_dropped_total", 1, "nothing was dropped");
    let status = s.terminate().expect("the server exits after SIGTERM although its receiver is down");
    assert!(status.success(), "{status:?}");
    drop(clients);
}
