//! Cluster mode, issue 26: a SIGTERMed node hands its recoverable sessions to a live node.
//! Its recovering clients get 1012 and resume through any other node with their clientIds,
//! their groups and every group frame answered 200 exactly once and in order (a steady load
//! runs through the stop); the group never hears 1001/1002 about them, no presence webhook
//! fires for them, online lists keep them, and calls naming their clientIds reach them through
//! every node afterwards. A client that did not opt in gets 1001 and leaves as today.
mod util;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::protocol::frame::coding::CloseCode;
use util::cluster::{node, online, Redis};
use util::hooks::Receiver;
use util::*;

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
        let client = e["clientId"].as_str().unwrap_or("");
        assert!(client != ids.0 && client != ids.1, "no presence webhook for a handed-over session: {e}");
        let user = e["userId"].as_str().unwrap_or("");
        assert!(user != "alice" && user != "bob", "no user webhook for their users: {e}");
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

/// An API call that may meet a node on its way down: `None` when it could not be made.
fn try_api(addr: std::net::SocketAddr, name: &str, body: Value) -> Option<(u16, Value)> {
    use std::io::{Read, Write};
    let body = body.to_string();
    let req = format!(
        "POST /api/{name} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nSystemId: a\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(req.as_bytes()).ok()?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    if out.is_empty() {
        return None;
    }
    let (st, text) = parse_response(&out);
    Some((st, serde_json::from_str(&text).ok()?))
}

/// What one recovering client of the rolling restart saw.
#[derive(Default)]
struct Seen {
    id: String,
    /// Every push frame: (code, messageId, msg), in arrival order.
    frames: Vec<(i64, String, String)>,
    /// Close codes it got, and anything else that went wrong.
    closes: Vec<u16>,
    odd: Vec<String>,
    /// Every resume's (recovered, same clientId).
    resumes: Vec<(bool, bool)>,
}

/// Opens a recovering connection to `at` (resuming, if given): the client and its connect
/// frame, or `None` if that node did not take it.
fn open(at: std::net::SocketAddr, resume: Option<(&str, &str)>) -> Option<(Client, Value)> {
    let mut url = format!("ws://{at}/ws?systemId=a&recover=1");
    if let Some((t, l)) = resume {
        url.push_str(&format!("&resume={t}&last={l}"));
    }
    let stream = std::net::TcpStream::connect(at).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(8))).ok()?;
    let (mut ws, _) = tungstenite::client::client(url, stream).ok()?;
    let hello = loop {
        match ws.read().ok()? {
            tungstenite::Message::Text(t) => break serde_json::from_str::<Value>(t.as_str()).ok()?,
            tungstenite::Message::Close(_) => return None,
            _ => {}
        }
    };
    ws.get_ref().set_read_timeout(Some(Duration::from_millis(100))).ok()?;
    Some((Client { ws, id: String::new() }, hello))
}

/// One recovering client: reads until three direct sends came; on a 1012 it resumes through
/// another live node from the last frame it processed.
fn member(
    live: Arc<std::sync::Mutex<Vec<std::net::SocketAddr>>>,
    mut at: std::net::SocketAddr,
    ready: std::sync::mpsc::Sender<String>,
) -> Seen {
    let (mut c, hello) = open(at, None).expect("first connect");
    let mut seen = Seen { id: hello["data"]["clientId"].as_str().unwrap().into(), ..Seen::default() };
    let mut token = hello["data"]["resumeToken"].as_str().unwrap().to_string();
    ready.send(seen.id.clone()).unwrap();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) {
        match c.ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let f: Value = serde_json::from_str(t.as_str()).unwrap();
                let (id, msg) = (f["messageId"].as_str().unwrap_or(""), f["msg"].as_str().unwrap_or(""));
                seen.frames.push((f["code"].as_i64().unwrap_or(-1), id.into(), msg.into()));
                // Done after the end marker and one direct send through each of the 3 nodes.
                if seen.frames.iter().filter(|f| f.2 == "direct").count() == 3 {
                    return seen;
                }
            }
            Ok(tungstenite::Message::Close(f)) => {
                let code = f.as_ref().map_or(0, |f| u16::from(f.code));
                seen.closes.push(code);
                if code != 1012 {
                    let reason = f.map(|f| f.reason.to_string()).unwrap_or_default();
                    seen.odd.push(format!("closed {code} ({reason}) at {at}; resumes {:?}", seen.resumes));
                    return seen;
                }
                let last = seen.frames.last().map(|f| f.1.clone()).unwrap_or_default();
                let t = Instant::now();
                loop {
                    if t.elapsed() > Duration::from_secs(20) {
                        seen.odd.push("no node took the resume".into());
                        return seen;
                    }
                    let to = live.lock().unwrap().iter().copied().find(|a| *a != at);
                    if let Some((nc, hello)) = to
                        .and_then(|to| open(to, Some((&token, &last))).map(|o| (o, to)))
                        .map(|((c, h), to)| (c, h, to))
                        .map(|(c, h, to)| {
                            at = to;
                            (c, h)
                        })
                    {
                        seen.resumes
                            .push((hello["data"]["recovered"] == true, hello["data"]["clientId"] == seen.id.as_str()));
                        token = hello["data"]["resumeToken"].as_str().unwrap_or("").to_string();
                        c = nc;
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => {
                seen.odd.push(format!("socket error {e}"));
                return seen;
            }
        }
    }
    let tail: Vec<_> = seen.frames.iter().rev().take(4).cloned().collect();
    seen.odd.push(format!(
        "not 3 direct sends within 30 s; closes {:?}, resumes {:?}, last frames {tail:?}",
        seen.closes, seen.resumes
    ));
    seen
}

/// Issue 26's rolling restart: 3 nodes, 30 recovering clients in 3 groups spread over them,
/// a steady group-send load through live nodes, each node SIGTERMed and started again in
/// turn while its clients resume through the others. Judged: 1012 to recovering clients and
/// 1001 to plain ones, every resume recovered with its clientId, every send answered 200
/// arrives exactly once and in order at every member of its group, no notice about them and
/// no presence webhook for them during the run, online lists never drop them, and
/// `send_to_client` reaches each through every node afterwards.
#[test]
fn a_rolling_restart_of_three_nodes_loses_nothing() {
    const PER_NODE: usize = 10;
    const GROUPS: usize = 3;
    let redis = Redis::start();
    let hooks = Receiver::start(None);
    let url = hooks.url();
    let args = ["--shutdown-timeout", "1s", "--webhook-url", &url, "--webhook-batch-delay", "10ms"];
    let mut nodes: Vec<Server> = (0..3).map(|_| node(&redis, &args)).collect();
    nodes[0].register("a");
    let live = Arc::new(std::sync::Mutex::new(nodes.iter().map(|n| n.addr).collect::<Vec<_>>()));
    let (tx, rx) = std::sync::mpsc::channel();
    let mut members = Vec::new();
    for n in &nodes {
        for _ in 0..PER_NODE {
            let (live, tx, at) = (live.clone(), tx.clone(), n.addr);
            members.push(std::thread::spawn(move || member(live, at, tx)));
        }
    }
    let ids: Vec<String> =
        (0..members.len()).map(|_| rx.recv_timeout(Duration::from_secs(10)).expect("every member connected")).collect();
    let group_of = |k: usize| k % GROUPS;
    for (k, id) in ids.iter().enumerate() {
        // Bound through another node than its own, mostly.
        nodes[(k + 1) % nodes.len()].bind("a", id, &format!("g{}", group_of(k)), &format!("u{k}"));
    }
    let mut plain: Vec<Client> = nodes.iter().map(|n| n.client("a")).collect();
    for (k, p) in plain.iter().enumerate() {
        nodes[k].bind("a", &p.id, "plain", "p");
    }
    let joins = ids.len() + plain.len();
    let hooks_before =
        hooks.wait("the joins", |ev| ev.iter().filter(|e| e["name"] == "group_joined").count() == joins).len();
    let starts: Vec<String> =
        (0..GROUPS).map(|g| util::cluster::send_group(&nodes[0], "a", &format!("g{g}"), "start")).collect();

    let done = Arc::new(AtomicBool::new(false));
    // The load: group sends round-robin over the groups, through live nodes.
    let load = {
        let (live, done) = (live.clone(), done.clone());
        std::thread::spawn(move || {
            let mut sent: Vec<Vec<String>> = vec![Vec::new(); GROUPS];
            let mut n = 0usize;
            while !done.load(Ordering::Relaxed) && n < 3000 {
                n += 1;
                let g = n % GROUPS;
                let addrs = live.lock().unwrap().clone();
                let body = json!({"groupName": format!("g{g}"), "msg": format!("m{n}")});
                if let Some((200, v)) = try_api(addrs[n % addrs.len()], "send_to_group", body) {
                    sent[g].push(v["data"]["messageId"].as_str().unwrap().to_string());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            sent
        })
    };
    // Online lists, read through live nodes: never without one of the members.
    let watch = {
        let (live, done, ids) = (live.clone(), done.clone(), ids.clone());
        std::thread::spawn(move || {
            let mut dropped = Vec::new();
            let mut n = 0usize;
            while !done.load(Ordering::Relaxed) {
                n += 1;
                let g = n % GROUPS;
                let addrs = live.lock().unwrap().clone();
                if let Some((200, v)) =
                    try_api(addrs[n % addrs.len()], "get_online_list", json!({"groupName": format!("g{g}")}))
                {
                    let list: Vec<&str> =
                        v["data"]["list"].as_array().unwrap().iter().filter_map(|x| x.as_str()).collect();
                    for (k, id) in ids.iter().enumerate().filter(|(k, _)| group_of(*k) == g) {
                        if !list.contains(&id.as_str()) {
                            dropped.push((k, id.clone()));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            dropped
        })
    };

    std::thread::sleep(Duration::from_millis(300));
    for (i, p) in plain.iter_mut().enumerate() {
        // Roll node i: out of the live list, SIGTERM, a new process in its place.
        let addr = nodes[i].addr;
        live.lock().unwrap().retain(|a| *a != addr);
        let node_i = &mut nodes[i];
        let code = std::thread::scope(|s| {
            let h = s.spawn(|| p.close_code());
            assert!(node_i.terminate().is_some_and(|s| s.success()), "node {i} exits cleanly");
            h.join().unwrap()
        });
        assert_eq!(code, Some(CloseCode::Away), "a plain client gets 1001");
        nodes[i] = node(&redis, &args);
        live.lock().unwrap().push(nodes[i].addr);
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::Relaxed);
    let sent = load.join().unwrap();
    let dropped = watch.join().unwrap();
    for g in 0..GROUPS {
        util::cluster::send_group(&nodes[0], "a", &format!("g{g}"), "end");
    }
    // send_to_client reaches each member through every node (new processes all).
    for n in &nodes {
        for id in &ids {
            let (st, v) = n.api("send_to_client", Some("a"), json!({"clientId": id, "msg": "direct"}));
            assert_eq!(st, 200, "{id} through {}: {v}", n.addr);
        }
    }
    let seen: Vec<Seen> = members.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(dropped.is_empty(), "online lists dropped members during the run: {dropped:?}");
    let total: usize = sent.iter().map(Vec::len).sum();
    assert!(total > 100, "a steady load ran through the restarts ({total} sends)");
    for (k, s) in seen.iter().enumerate() {
        let g = group_of(ids.iter().position(|i| *i == s.id).unwrap());
        if !s.odd.is_empty() {
            let bad: Vec<_> = seen.iter().filter(|s| !s.odd.is_empty()).map(|s| (&s.id, &s.odd)).collect();
            panic!("{} of {} members: {bad:?}", bad.len(), seen.len());
        }
        assert!(!s.closes.is_empty() && s.closes.iter().all(|c| *c == 1012), "{k} {}: closes {:?}", s.id, s.closes);
        assert!(s.resumes.iter().all(|r| *r == (true, true)), "{}: resumes {:?}", s.id, s.resumes);
        let from = s.frames.iter().position(|f| f.1 == starts[g]).expect("the start marker");
        let after: Vec<&(i64, String, String)> = s.frames[from..].iter().collect();
        assert!(after.iter().all(|f| f.0 == 0), "{}: no notice during the run: {after:?}", s.id);
        let directs = after.iter().filter(|f| f.2 == "direct").count();
        assert_eq!(directs, 3, "{}: a direct send through each node", s.id);
        let got: Vec<&str> = after
            .iter()
            .filter(|f| f.2 != "direct" && f.2 != "end" && f.1 != starts[g])
            .map(|f| f.1.as_str())
            .collect();
        let want: Vec<&str> = sent[g].iter().map(String::as_str).collect();
        assert_eq!(got, want, "{}: every frame once, in order", s.id);
        assert_eq!(after.iter().filter(|f| f.2 == "end").count(), 1, "{}", s.id);
    }
    for e in &hooks.events()[hooks_before..] {
        let client = e["clientId"].as_str().unwrap_or("");
        assert!(!ids.iter().any(|id| id == client), "no presence webhook for a recovering client: {e}");
        let user = e["userId"].as_str().unwrap_or("");
        assert!(!user.starts_with('u'), "no user webhook for their users: {e}");
    }
}

/// When no live node takes them (here the only other node refuses: it would hold more than
/// its `max_recovery_sessions`), the sessions end as on a plain shutdown: their group hears
/// each leave once, their webhooks fire, online lists drop them, and a resume gets a fresh
/// session.
#[test]
fn sessions_no_node_takes_end_as_on_a_plain_shutdown() {
    let redis = Redis::start();
    let hooks = Receiver::start(None);
    let url = hooks.url();
    let args = ["--shutdown-timeout", "1s", "--webhook-url", &url, "--webhook-batch-delay", "10ms"];
    let mut a = node(&redis, &args);
    let mut b_args = args.to_vec();
    b_args.extend(["--max-recovery-sessions", "1", "--shards", "1"]);
    let b = node(&redis, &b_args);
    a.register("a");
    let (mut alice, _) = recovering(&a, None);
    let (mut bob, _) = recovering(&a, None);
    let mut watcher = b.client("a");
    for (id, user) in [(&watcher.id, "w"), (&alice.c.id, "alice"), (&bob.c.id, "bob")] {
        b.bind("a", id, "g", user);
    }
    hooks.wait("the joins", |ev| ev.iter().filter(|e| e["name"] == "group_joined").count() == 3);
    let ids = [alice.c.id.clone(), bob.c.id.clone()];
    assert!(a.terminate().is_some_and(|s| s.success()));
    for r in [&mut alice, &mut bob] {
        assert_eq!(r.c.close_code(), Some(CloseCode::Restart));
    }
    let mut gone = vec![util::cluster::notice(&mut watcher, 1002), util::cluster::notice(&mut watcher, 1002)];
    gone.sort();
    let mut want = ids.to_vec();
    want.sort();
    assert_eq!(gone, want, "each leave told once");
    watcher.expect_silence(Duration::from_millis(300));
    let ev = hooks.wait("both disconnected", |ev| {
        ids.iter().all(|id| ev.iter().any(|e| e["name"] == "client_disconnected" && e["clientId"] == id.as_str()))
    });
    for id in &ids {
        let n = ev.iter().filter(|e| e["name"] == "client_disconnected" && e["clientId"] == id.as_str()).count();
        assert_eq!(n, 1, "{id}: one client_disconnected");
    }
    assert_eq!(online(&b, "a", "g"), vec![watcher.id.clone()]);
    assert_eq!(metric(&b, "handoff_refused_total"), 1);
    let (_, hello) = recovering(&b, Some((&alice.token, "x")));
    assert_eq!(hello["data"]["recovered"], false, "{hello}");
}
