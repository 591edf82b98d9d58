//! Cluster mode, issue 26: a SIGTERMed node hands its recoverable sessions to a live node.
//! Its recovering clients get 1012 and resume through any other node with their clientIds,
//! their groups and every group frame answered 200 exactly once and in order (a steady load
//! runs through the stop); the group never hears 1001/1002 about them, no presence webhook
//! fires for them, online lists keep them, and calls naming their clientIds reach them through
//! every node afterwards. A client that did not opt in gets 1001 and leaves as today.
mod util;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tungstenite::protocol::frame::coding::CloseCode;
use util::cluster::{node, online, Redis};
use util::hooks::Receiver;
use util::*;

struct Recovering {
    c: Client,
    token: String,
}

fn recovering(s: &Server, resume: Option<(&str, &str)>) -> (Recovering, Value) {
    let mut url = "/ws?systemId=a&recover=1".to_string();
    if let Some((token, last)) = resume {
        url.push_str(&format!("&resume={token}&last={last}"));
    }
    let mut c = Client::connect(&s.url(&url));
    let hello = c.recv().expect("connect frame");
    assert_eq!(hello["code"], 0, "{hello}");
    c.id = hello["data"]["clientId"].as_str().unwrap().to_string();
    let token = hello["data"]["resumeToken"].as_str().expect("a resume token").to_string();
    (Recovering { c, token }, hello)
}

/// Group sends through `addr` every 20 ms until `stop`: the messageIds answered 200, in order.
fn steady_load(addr: std::net::SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut sent = Vec::new();
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) && n < 400 {
            n += 1;
            let body = json!({"groupName": "g", "msg": format!("m{n}")});
            let (st, v) = api_at(addr, "send_to_group", Some("a"), None, body);
            if st == 200 {
                sent.push(v["data"]["messageId"].as_str().unwrap().to_string());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        sent
    })
}

/// Whom a 1001/1002 notice is about.
fn about(f: &Value) -> String {
    let data: Value = serde_json::from_str(f["data"].as_str().unwrap_or("{}")).unwrap_or_default();
    data["clientId"].as_str().unwrap_or("").to_string()
}

/// Reads push frames until the one with messageId `until`; returns their messageIds. The one
/// notice allowed is `leaver`'s 1002 (counted in `left`).
fn read_until(c: &mut Client, until: &str, what: &str, leaver: &str, left: &mut usize) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        let f = c.recv().unwrap_or_else(|| panic!("{what}: no frame {until}; got {}: {got:?}", got.len()));
        if f["code"] == 1002 && about(&f) == leaver {
            *left += 1;
            continue;
        }
        assert_eq!(f["code"], 0, "{what}: only the group's messages: {f}");
        let id = f["messageId"].as_str().unwrap().to_string();
        let done = id == until;
        got.push(id);
        if done {
            return got;
        }
    }
}

#[test]
fn a_stopped_node_hands_its_sessions_to_a_live_node() {
    let redis = Redis::start();
    let hooks = Receiver::start(None);
    let url = hooks.url();
    let args = ["--shutdown-timeout", "1s", "--webhook-url", &url, "--webhook-batch-delay", "10ms"];
    let mut a = node(&redis, &args);
    let b = node(&redis, &args);
    let c = node(&redis, &args);
    a.register("a");
    let (mut alice, _) = recovering(&a, None);
    let (mut bob, _) = recovering(&a, None);
    let mut carol = a.client("a");
    let mut watcher = b.client("a");
    b.bind("a", &watcher.id, "g", "w");
    for (cl, user) in [(&alice.c, "alice"), (&bob.c, "bob"), (&carol, "carol")] {
        c.bind("a", &cl.id, "g", user);
    }
    let first = util::cluster::send_group(&b, "a", "g", "first");
    for cl in [&mut alice.c, &mut bob.c] {
        loop {
            let f = cl.recv().expect("frames");
            if f["messageId"] == first.as_str() {
                break;
            }
        }
    }
    hooks.wait("the joins", |ev| ev.iter().filter(|e| e["name"] == "group_joined").count() == 4);
    let before = online(&b, "a", "g");
    assert_eq!(before.len(), 4);

    let stop = Arc::new(AtomicBool::new(false));
    let load = steady_load(b.addr, stop.clone());
    std::thread::sleep(Duration::from_millis(200));
    let hooks_before = hooks.events().len();
    let ids = (alice.c.id.clone(), bob.c.id.clone());

    // SIGTERM a (the test keeps reading nothing of carol: her close reply waits the 1 s).
    let stopper = std::thread::spawn(move || {
        let st = a.terminate();
        (a, st)
    });
    // Each recovering client reads what it had, then the 1012; its last processed frame is
    // where it resumes from.
    let mut last = Vec::new();
    let mut left = [0usize; 2];
    for (i, r) in [&mut alice, &mut bob].into_iter().enumerate() {
        let mut l = first.clone();
        let code = loop {
            match r.c.ws.read() {
                Ok(tungstenite::Message::Text(t)) => {
                    let f: Value = serde_json::from_str(t.as_str()).unwrap();
                    if f["code"] == 1002 && about(&f) == carol.id {
                        left[i] += 1;
                        continue;
                    }
                    assert_eq!(f["code"], 0, "no notice about anyone but carol: {f}");
                    l = f["messageId"].as_str().unwrap().to_string();
                }
                Ok(tungstenite::Message::Close(f)) => break f.map(|f| f.code),
                Ok(_) => {}
                Err(e) => panic!("no close frame: {e}"),
            }
        };
        assert_eq!(code, Some(CloseCode::Restart));
        last.push(l);
    }
    // Alice through c, bob through b, at once (the hand-off may still be under way).
    let (mut alice2, h1) = recovering(&c, Some((&alice.token, &last[0])));
    let (mut bob2, h2) = recovering(&b, Some((&bob.token, &last[1])));
    for (h, id) in [(&h1, &ids.0), (&h2, &ids.1)] {
        assert_eq!(h["data"]["recovered"], true, "{h}");
        assert_eq!(h["data"]["clientId"], id.as_str(), "{h}");
    }
    let (a, st) = stopper.join().unwrap();
    assert!(st.is_some_and(|s| s.success()), "a exits cleanly");
    assert_eq!(carol.close_code(), Some(CloseCode::Away), "not recoverable: a plain shutdown");
    drop(a);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let sent = load.join().unwrap();
    let final_id = util::cluster::send_group(&c, "a", "g", "last");

    // Every frame answered 200 after the last each had processed, exactly once, in order.
    for (i, (r, l, who)) in [(&mut alice2, &last[0], "alice"), (&mut bob2, &last[1], "bob")].into_iter().enumerate() {
        let got = read_until(&mut r.c, &final_id, who, &carol.id, &mut left[i]);
        assert_eq!(left[i], 1, "{who} heard carol leave once");
        let from = sent.iter().position(|m| m == l).map_or(0, |i| i + 1);
        let mut want: Vec<String> = sent[from..].to_vec();
        want.push(final_id.clone());
        assert_eq!(got, want, "{who}: every frame once, in order");
    }
    // The group heard only carol leave; online lists keep alice and bob on every live node.
    let gone = util::cluster::notice(&mut watcher, 1002);
    assert_eq!(gone, before.iter().find(|i| **i == carol.id).unwrap().as_str());
    let now = online(&c, "a", "g");
    assert!(now.contains(&ids.0) && now.contains(&ids.1), "{now:?}");
    assert_eq!(online(&b, "a", "g"), now);
    // Presence webhooks: carol's departure only.
    let later = hooks.wait("carol's webhooks", |ev| ev.iter().any(|e| e["name"] == "client_disconnected"));
    for e in &later[hooks_before..] {
        let client = e["data"]["clientId"].as_str().unwrap_or("");
        assert!(client != ids.0 && client != ids.1, "no presence webhook for a handed-over session: {e}");
    }
    // Calls naming their clientIds reach them through every node.
    for (s, n) in [(&b, 1), (&c, 2)] {
        for (r, id) in [(&mut alice2, &ids.0), (&mut bob2, &ids.1)] {
            let (st, v) = s.api("send_to_client", Some("a"), json!({"clientId": id, "msg": format!("direct{n}")}));
            assert_eq!(st, 200, "{v}");
            let f = r.c.recv().expect("the direct send");
            assert_eq!(f["msg"], format!("direct{n}"));
        }
    }
    let (st, v) = c.api("unbind_from_group", Some("a"), json!({"clientId": ids.0, "groupName": "g"}));
    assert_eq!(st, 200, "{v}");
    let off = util::cluster::notice(&mut watcher, 1002);
    assert_eq!(off, ids.0, "an adopted session leaves its group as any member does");
    assert_eq!(metric(&b, "handoff_refused_total") + metric(&c, "handoff_refused_total"), 0);
    let adopted = metric(&b, "recovery_adopted_total") + metric(&c, "recovery_adopted_total");
    assert_eq!(adopted, 2, "one adopter took both");
}
