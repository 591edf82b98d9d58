//! Session recovery (`recover=1`): a client that drops gets its clientId, groups and every
//! missed frame back, exactly once and in order; everything else about sessions (window,
//! bounds, takeover, refusals) against a real server. Drops are resets (`SO_LINGER` 0), as
//! when a network goes away.
mod util;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use util::*;

/// A client that opted in: its connection, clientId and current resume token.
struct Rc {
    c: Client,
    token: String,
}

/// Connects with `recover=1` (and a resume, if given); returns the client and its connect frame.
fn connect(s: &Server, system: &str, resume: Option<(&str, Option<&str>)>) -> (Rc, Value) {
    let mut url = format!("/ws?systemId={system}&recover=1");
    if let Some((token, last)) = resume {
        url.push_str(&format!("&resume={token}"));
        if let Some(l) = last {
            url.push_str(&format!("&last={l}"));
        }
    }
    let mut c = Client::connect(&s.url(&url));
    let hello = c.recv().expect("connect frame");
    assert_eq!(hello["code"], 0, "{hello}");
    c.id = hello["data"]["clientId"].as_str().unwrap().to_string();
    let token = hello["data"]["resumeToken"].as_str().expect("a resume token").to_string();
    (Rc { c, token }, hello)
}

/// Drops the connection with a reset (no close handshake).
fn drop_hard(c: Client) {
    socket2::SockRef::from(c.ws.get_ref()).set_linger(Some(Duration::ZERO)).unwrap();
    drop(c);
}

fn send_group(s: &Server, group: &str, msg: &str) -> String {
    let (st, v) = s.api("send_to_group", Some("a"), json!({"groupName": group, "msg": msg, "data": {"m": msg}}));
    assert_eq!(st, 200, "{v}");
    v["data"]["messageId"].as_str().unwrap().to_string()
}

/// Waits until the server counts the dropped connection as a detached session.
fn wait_detached(s: &Server, n: u64) {
    wait_metric(s, "recovery_sessions", n, "the drop was not noticed");
}

fn online(s: &Server, group: &str) -> Vec<String> {
    let (_, v) = s.api("get_online_list", Some("a"), json!({"groupName": group}));
    v["data"]["list"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
}

#[test]
fn only_clients_that_opt_in_see_the_new_keys() {
    let s = Server::start(&[]);
    s.register("a");
    let mut plain = Client::connect(&s.url("/ws?systemId=a"));
    let hello = plain.recv().unwrap();
    assert_eq!(hello.as_object().unwrap().len(), 3);
    assert_eq!(hello["data"].as_object().unwrap().keys().collect::<Vec<_>>(), ["clientId"]);
    let (r, hello) = connect(&s, "a", None);
    assert_eq!(hello["data"]["recovered"], false);
    assert_eq!(r.token.len(), 60);
    assert!(r.token.starts_with(&r.c.id), "the token names the session");
}

#[test]
fn a_dropped_client_gets_its_session_and_every_missed_frame_once_in_order() {
    let s = Server::start(&[]);
    s.register("a");
    let (mut r, _) = connect(&s, "a", None);
    let mut other = s.client("a");
    s.bind("a", &r.c.id, "g", "ua");
    s.bind("a", &other.id, "g", "ub");
    r.c.expect_code(1001);
    r.c.expect_code(1001);
    other.expect_code(1001);
    let seen = send_group(&s, "g", "before");
    assert_eq!(r.c.expect_code(0)["messageId"], seen.as_str());
    other.expect_code(0);
    let id = r.c.id.clone();
    drop_hard(r.c);
    wait_detached(&s, 1);
    // While detached: still a member, its groups are not told, sends to it are answered.
    assert!(online(&s, "g").contains(&id));
    let mut missed = vec![send_group(&s, "g", "m1")];
    let (st, v) = s.api("send_to_client", Some("a"), json!({"clientId": id, "msg": "direct"}));
    assert_eq!(st, 200, "{v}");
    missed.push(v["data"]["messageId"].as_str().unwrap().to_string());
    let (st, v) = s.api("send_to_system", Some("a"), json!({"msg": "all"}));
    assert_eq!(st, 200);
    missed.push(v["data"]["messageId"].as_str().unwrap().to_string());
    let third = s.client("a");
    s.bind("a", &third.id, "g", "uc"); // a 1001 notice for the session too
    missed.push(String::new());
    missed.push(send_group(&s, "g", "m2"));
    // The member that stayed saw no 1002 for the blip.
    for _ in 0..4 {
        let v = other.recv().unwrap();
        assert_ne!(v["code"], 1002, "{v}");
    }
    let (mut back, hello) = connect(&s, "a", Some((&r.token, Some(&seen))));
    assert_eq!(hello["data"]["recovered"], true, "{hello}");
    assert_eq!(hello["data"]["clientId"], id.as_str());
    assert_eq!(hello["data"]["missed"], missed.len());
    assert_ne!(back.token, r.token, "a new token for the next resume");
    for want in &missed {
        let v = back.c.recv().unwrap();
        if want.is_empty() {
            assert_eq!(v["code"], 1001, "{v}");
        } else {
            assert_eq!(v["messageId"], want.as_str(), "{v}");
        }
    }
    // Then live traffic, and nothing twice.
    let live = send_group(&s, "g", "live");
    assert_eq!(back.c.recv().unwrap()["messageId"], live.as_str());
    back.c.expect_silence(Duration::from_millis(200));
    assert_eq!(metric(&s, "recovery_resumed_total"), 1);
    assert_eq!(metric(&s, "recovery_sessions"), 0);
}

#[test]
fn a_resume_with_nothing_received_gets_everything_since_the_connect_frame() {
    let s = Server::start(&[]);
    s.register("a");
    let (r, _) = connect(&s, "a", None);
    let id = r.c.id.clone();
    s.bind("a", &id, "g", "u");
    drop_hard(r.c);
    wait_detached(&s, 1);
    let m = send_group(&s, "g", "x");
    let (mut back, hello) = connect(&s, "a", Some((&r.token, None)));
    assert_eq!((hello["data"]["recovered"].as_bool(), hello["data"]["missed"].as_u64()), (Some(true), Some(2)));
    assert_eq!(back.c.recv().unwrap()["code"], 1001);
    assert_eq!(back.c.recv().unwrap()["messageId"], m.as_str());
}

#[test]
fn the_window_ends_a_session_with_exactly_one_1002() {
    let s = Server::start(&["--recovery-window", "1s"]);
    s.register("a");
    let (r, _) = connect(&s, "a", None);
    let mut other = s.client("a");
    let id = r.c.id.clone();
    s.bind("a", &id, "g", "u");
    s.bind("a", &other.id, "g", "u");
    other.expect_code(1001);
    drop_hard(r.c);
    wait_detached(&s, 1);
    other.set_timeout(Duration::from_secs(5));
    let gone = other.expect_code(1002);
    assert!(gone["data"].as_str().unwrap().contains(&id));
    other.expect_silence(Duration::from_millis(500));
    assert!(!online(&s, "g").contains(&id));
    assert_eq!(metric(&s, "recovery_expired_total"), 1);
    let (fresh, hello) = connect(&s, "a", Some((&r.token, None)));
    assert_eq!(hello["data"]["recovered"], false);
    assert_ne!(fresh.c.id, id);
    assert_eq!(metric(&s, "recovery_refused_unknown_total"), 1);
}

#[test]
fn a_normal_close_ends_the_session_at_once() {
    let s = Server::start(&[]);
    s.register("a");
    let (mut r, _) = connect(&s, "a", None);
    let mut other = s.client("a");
    s.bind("a", &r.c.id, "g", "u");
    s.bind("a", &other.id, "g", "u");
    other.expect_code(1001);
    r.c.ws.close(None).unwrap();
    let _ = r.c.ws.flush();
    other.expect_code(1002);
    let (_, hello) = connect(&s, "a", Some((&r.token, None)));
    assert_eq!(hello["data"]["recovered"], false);
}

#[test]
fn a_resume_takes_over_a_connection_that_still_looks_open() {
    let s = Server::start(&[]);
    s.register("a");
    let (mut r, _) = connect(&s, "a", None);
    s.bind("a", &r.c.id, "g", "u");
    r.c.expect_code(1001);
    let seen = send_group(&s, "g", "one");
    assert_eq!(r.c.expect_code(0)["messageId"], seen.as_str());
    let next = send_group(&s, "g", "two");
    // The old connection is still up; the client resumes from elsewhere, having seen "one".
    let (mut back, hello) = connect(&s, "a", Some((&r.token, Some(&seen))));
    assert_eq!((hello["data"]["recovered"].as_bool(), hello["data"]["missed"].as_u64()), (Some(true), Some(1)));
    assert_eq!(hello["data"]["clientId"], r.c.id.as_str());
    assert_eq!(back.c.recv().unwrap()["messageId"], next.as_str());
    // The old connection is closed; live traffic goes to the new one.
    r.c.set_timeout(Duration::from_secs(5));
    let mut closed = false;
    for _ in 0..10 {
        match r.c.ws.read() {
            Ok(tungstenite::Message::Text(_)) => continue,
            _ => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "the old connection was closed");
    let live = send_group(&s, "g", "three");
    assert_eq!(back.c.recv().unwrap()["messageId"], live.as_str());
    assert_eq!(metric(&s, "recovery_takeovers_total"), 1);
}

#[test]
fn resumes_that_cannot_be_honoured_get_a_fresh_session() {
    let s = Server::start(&[]);
    s.register("a");
    s.register("b");
    let (r, _) = connect(&s, "a", None);
    let id = r.c.id.clone();
    drop_hard(r.c);
    wait_detached(&s, 1);
    let refused = |token: &str, system: &str, last: Option<&str>| {
        let (fresh, hello) = connect(&s, system, Some((token, last)));
        assert_eq!(hello["data"]["recovered"], false, "{hello}");
        assert_ne!(fresh.c.id, id);
        fresh
    };
    refused("nonsense", "a", None);
    let mut forged = r.token.clone();
    forged.replace_range(59.., if r.token.ends_with('0') { "1" } else { "0" });
    refused(&forged, "a", None);
    refused(&r.token, "b", None);
    assert_eq!(metric(&s, "recovery_refused_unknown_total"), 1);
    assert_eq!(metric(&s, "recovery_refused_secret_total"), 1);
    assert_eq!(metric(&s, "recovery_refused_system_total"), 1);
    // None of those touched the session: its own token still works, once.
    let (_, hello) = connect(&s, "a", Some((&r.token, None)));
    assert_eq!(hello["data"]["recovered"], true);
    refused(&r.token, "a", None);
    assert_eq!(metric(&s, "recovery_refused_secret_total"), 2, "a used token");
}

#[test]
fn a_last_no_longer_held_ends_the_old_session_and_gives_a_fresh_one() {
    let s = Server::start(&[]);
    s.register("a");
    let (r, _) = connect(&s, "a", None);
    let mut other = s.client("a");
    s.bind("a", &r.c.id, "g", "u");
    s.bind("a", &other.id, "g", "u");
    other.expect_code(1001);
    let id = r.c.id.clone();
    drop_hard(r.c);
    wait_detached(&s, 1);
    let (fresh, hello) = connect(&s, "a", Some((&r.token, Some("0123456789abcdef"))));
    assert_eq!(hello["data"]["recovered"], false);
    assert_ne!(fresh.c.id, id);
    // The old session ended at once: its group was told, once.
    other.expect_code(1002);
    assert_eq!(metric(&s, "recovery_refused_last_total"), 1);
    assert_eq!(metric(&s, "recovery_sessions"), 0);
}

#[test]
fn a_detached_session_past_its_byte_bound_ends() {
    let s = Server::start(&["--recovery-max-bytes", "2000"]);
    s.register("a");
    let (r, _) = connect(&s, "a", None);
    let mut other = s.client("a");
    s.bind("a", &r.c.id, "g", "u");
    s.bind("a", &other.id, "g", "u");
    other.expect_code(1001);
    drop_hard(r.c);
    wait_detached(&s, 1);
    for i in 0..10 {
        let (st, _) = s.api("send_to_group", Some("a"), json!({"groupName": "g", "data": "x".repeat(300), "code": i}));
        assert_eq!(st, 200);
    }
    let t = Instant::now();
    while metric(&s, "recovery_overflows_total") != 1 {
        assert!(t.elapsed() < Duration::from_secs(5), "the bound was never hit");
        std::thread::sleep(Duration::from_millis(10));
    }
    loop {
        let v = other.recv().expect("frames");
        if v["code"] == 1002 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5));
    }
    let (_, hello) = connect(&s, "a", Some((&r.token, None)));
    assert_eq!(hello["data"]["recovered"], false);
}

#[test]
fn close_client_ends_a_detached_session() {
    let s = Server::start(&[]);
    s.register("a");
    let (r, _) = connect(&s, "a", None);
    let id = r.c.id.clone();
    drop_hard(r.c);
    wait_detached(&s, 1);
    let (st, _) = s.api("close_client", Some("a"), json!({"clientId": id}));
    assert_eq!(st, 200);
    let t = Instant::now();
    while metric(&s, "recovery_sessions") != 0 {
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(10));
    }
    let (_, hello) = connect(&s, "a", Some((&r.token, None)));
    assert_eq!(hello["data"]["recovered"], false);
}

/// Frames the client has surely received (its pong answered a later ping) are not kept: the
/// history of a connected session that reads is about one ping interval long.
#[test]
fn acknowledged_frames_are_not_kept() {
    let s = Server::start(&["--ping-interval", "200ms"]);
    s.register("a");
    let (mut r, _) = connect(&s, "a", None);
    s.bind("a", &r.c.id, "g", "u");
    for i in 0..5 {
        send_group(&s, "g", &i.to_string());
    }
    for _ in 0..6 {
        r.c.recv().unwrap();
    }
    let t = Instant::now();
    while metric(&s, "recovery_kept_bytes") != 0 {
        // Reading answers the server's pings.
        r.c.expect_silence(Duration::from_millis(100));
        assert!(t.elapsed() < Duration::from_secs(5), "frames stayed kept after their pongs");
    }
}

/// A client that goes silent (no pong: its network is gone) is detached at the idle timeout
/// and can resume.
#[test]
fn a_silent_client_is_kept_at_the_idle_timeout() {
    let s = Server::start(&["--idle-timeout", "1s", "--ping-interval", "300ms"]);
    s.register("a");
    let (r, _) = connect(&s, "a", None);
    let id = r.c.id.clone();
    wait_detached(&s, 1);
    let (_, hello) = connect(&s, "a", Some((&r.token, None)));
    assert_eq!(
        (hello["data"]["recovered"].as_bool(), hello["data"]["clientId"].as_str()),
        (Some(true), Some(id.as_str()))
    );
    drop(r);
}

/// Cluster mode: a session survives a drop, with calls made through another node meanwhile
/// (group sends, a direct send, an online list), and resumes through its own node.
#[test]
fn cluster_sessions_resume_through_their_node() {
    use util::cluster::{node, Redis};
    let redis = Redis::start();
    let (a, b) = (node(&redis, &[]), node(&redis, &[]));
    a.register("a");
    let (r, _) = connect(&a, "a", None);
    let id = r.c.id.clone();
    b.bind("a", &id, "g", "u");
    drop_hard(r.c);
    wait_detached(&a, 1);
    let m1 = send_group(&b, "g", "while away");
    let (st, v) = b.api("send_to_client", Some("a"), json!({"clientId": id, "msg": "direct"}));
    assert_eq!(st, 200, "{v}");
    assert!(online(&b, "g").contains(&id), "still online across the cluster");
    let (mut back, hello) = connect(&a, "a", Some((&r.token, None)));
    assert_eq!(
        (hello["data"]["recovered"].as_bool(), hello["data"]["missed"].as_u64()),
        (Some(true), Some(3)),
        "{hello}"
    );
    assert_eq!(back.c.recv().unwrap()["code"], 1001);
    assert_eq!(back.c.recv().unwrap()["messageId"], m1.as_str());
    assert_eq!(back.c.recv().unwrap()["msg"], "direct");
}

/// Cluster mode: a resume through another node. The session stays with the node its clientId
/// names; the client's new connection is on the other node and its frames are relayed: missed
/// frames, then live group and direct sends, acknowledgements, a second drop and a resume back
/// through the first node, and at the end a normal close that its group hears once.
#[test]
fn a_resume_through_another_node_is_relayed() {
    use util::cluster::{node, Redis};
    let redis = Redis::start();
    let args = ["--ping-interval", "300ms"];
    let (a, b) = (node(&redis, &args), node(&redis, &args));
    a.register("a");
    let mut other = b.client("a");
    let (r, _) = connect(&a, "a", None);
    let id = r.c.id.clone();
    b.bind("a", &other.id, "g", "o");
    b.bind("a", &id, "g", "u");
    other.expect_code(1001);
    other.expect_code(1001);
    drop_hard(r.c);
    wait_detached(&a, 1);
    let m1 = send_group(&b, "g", "while away");
    other.expect_code(0);
    // Through node b: the same session, the missed frame, then live traffic from any node.
    let (mut back, hello) = connect(&b, "a", Some((&r.token, None)));
    assert_eq!(hello["data"]["recovered"], true, "{hello}");
    assert_eq!(hello["data"]["clientId"], id.as_str());
    assert_eq!(hello["data"]["missed"], 2);
    assert_eq!(back.c.recv().unwrap()["code"], 1001);
    assert_eq!(back.c.recv().unwrap()["messageId"], m1.as_str());
    let m2 = send_group(&a, "g", "live");
    assert_eq!(back.c.recv().unwrap()["messageId"], m2.as_str());
    let (st, v) = b.api("send_to_client", Some("a"), json!({"clientId": id, "msg": "direct"}));
    assert_eq!(st, 200, "{v}");
    let direct = back.c.recv().unwrap();
    assert_eq!(direct["msg"], "direct");
    assert!(online(&a, "g").contains(&id));
    assert_eq!(metric(&a, "recovery_relayed"), 1);
    assert_eq!(metric(&b, "recovery_edges"), 1);
    // The client acknowledges through b (pongs to the relayed pings): node a stops keeping
    // what it received. (The gauge is refreshed by the sweep: first see it count them.)
    let t = Instant::now();
    while metric(&a, "recovery_kept_bytes") == 0 {
        assert!(t.elapsed() < Duration::from_secs(5), "nothing kept for the session");
        std::thread::sleep(Duration::from_millis(20));
    }
    while metric(&a, "recovery_kept_bytes") != 0 {
        back.c.expect_silence(Duration::from_millis(100));
        assert!(t.elapsed() < Duration::from_secs(10), "acknowledgements did not reach the owner");
    }
    // Dropped again, it resumes through node a, from the last frame it processed.
    let token = back.token.clone();
    drop_hard(back.c);
    let t = Instant::now();
    while metric(&a, "recovery_sessions") != 1 {
        assert!(t.elapsed() < Duration::from_secs(5), "the edge's drop did not reach the owner");
        std::thread::sleep(Duration::from_millis(10));
    }
    let m3 = send_group(&b, "g", "away again");
    // The frame crosses Redis to node a on its own time: resume once a keeps it for the session.
    let t = Instant::now();
    while metric(&a, "recovery_kept_bytes") == 0 {
        assert!(t.elapsed() < Duration::from_secs(5), "the frame sent away never reached a");
        std::thread::sleep(Duration::from_millis(20));
    }
    let last = direct["messageId"].as_str().unwrap();
    let (mut home, hello) = connect(&a, "a", Some((&token, Some(last))));
    assert_eq!(
        (hello["data"]["recovered"].as_bool(), hello["data"]["missed"].as_u64()),
        (Some(true), Some(1)),
        "{hello}"
    );
    assert_eq!(home.c.recv().unwrap()["messageId"], m3.as_str());
    // Nobody in the group heard of either blip; a normal close ends the session once.
    home.c.ws.close(None).unwrap();
    let _ = home.c.ws.flush();
    let gone = other.expect_code(1002);
    assert!(gone["data"].as_str().unwrap().contains(&id));
    other.expect_silence(Duration::from_millis(300));
}

/// Cluster mode: close_client on a session relayed through another node closes the client
/// there, and a resume through a node whose session node is unreachable gets a fresh session.
#[test]
fn close_client_reaches_a_relayed_client() {
    use util::cluster::{node, Redis};
    let redis = Redis::start();
    let (a, b) = (node(&redis, &[]), node(&redis, &[]));
    a.register("a");
    let (r, _) = connect(&a, "a", None);
    let id = r.c.id.clone();
    drop_hard(r.c);
    wait_detached(&a, 1);
    let (mut back, hello) = connect(&b, "a", Some((&r.token, None)));
    assert_eq!(hello["data"]["recovered"], true, "{hello}");
    let (st, v) = b.api("close_client", Some("a"), json!({"clientId": id}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(back.c.close_code().map(u16::from), Some(1000));
    assert_eq!(metric(&a, "recovery_relayed"), 0);
    assert_eq!(metric(&a, "recovery_sessions"), 0);
    // A token naming a node that is not running: fresh session at once.
    let mut dead = back.token.clone();
    dead.replace_range(0..8, "deadbeef");
    let (fresh, hello) = connect(&b, "a", Some((&dead, None)));
    assert_eq!(hello["data"]["recovered"], false, "{hello}");
    assert_ne!(fresh.c.id, id);
}

/// A handshake that may be refused: the client and its connect frame, or the HTTP status.
fn try_connect(s: &Server, query: &str) -> Result<(Client, Value), u16> {
    let url = s.url(&format!("/ws?{query}"));
    let stream = std::net::TcpStream::connect(s.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    match tungstenite::client::client(url.as_str(), stream) {
        Ok((ws, _)) => {
            let mut c = Client { ws, id: String::new() };
            let hello = c.recv().expect("connect frame");
            c.id = hello["data"]["clientId"].as_str().unwrap_or_default().to_string();
            Ok((c, hello))
        }
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => Err(r.status().as_u16()),
        Err(e) => panic!("handshake: {e}"),
    }
}

/// Security review, medium (reproduced): with `--max-connections-per-ip 3 --max-connections
/// 10`, 40 rounds of connect with recover=1, bind, reset were all accepted: 40 ghost members
/// in the group, every one in every fan-out. A kept session counts against its address until
/// it ends; a resume is never refused for bringing its own session back.
#[test]
fn kept_sessions_count_against_the_connection_bounds() {
    let s = Server::start(&["--max-connections-per-ip", "3", "--max-connections", "10", "--shards", "1"]);
    s.register("a");
    let mut kept = Vec::new();
    let mut refused = 0;
    for _ in 0..40 {
        match try_connect(&s, "systemId=a&recover=1") {
            Ok((c, hello)) => {
                s.bind("a", &c.id, "g", "u");
                kept.push((c.id.clone(), hello["data"]["resumeToken"].as_str().unwrap().to_string()));
                drop_hard(c);
                wait_detached(&s, kept.len() as u64);
            }
            Err(status) => {
                assert_eq!(status, 429, "refused by max_connections_per_ip");
                refused += 1;
            }
        }
    }
    assert_eq!((kept.len(), refused), (3, 37));
    assert_eq!(online(&s, "g").len(), 3, "no ghost members beyond the bound");
    assert!(metric(&s, "refused_per_ip_total") >= 37);
    // Each kept session comes back, although its address is at the bound.
    let (id, token) = &kept[0];
    let (mut back, hello) = try_connect(&s, &format!("systemId=a&recover=1&resume={token}")).expect("a resume");
    assert_eq!((&hello["data"]["recovered"], hello["data"]["clientId"].as_str()), (&json!(true), Some(id.as_str())));
    // Its own bind's notice (never acknowledged) and the two later binds'.
    assert_eq!(hello["data"]["missed"], 3, "{hello}");
    for _ in 0..3 {
        back.expect_code(1001);
    }
    back.expect_silence(Duration::from_millis(100));
    // Ended sessions free their place.
    let (st, _) = s.api("close_client", Some("a"), json!({"clientId": kept[1].0}));
    assert_eq!(st, 200);
    assert!(try_connect(&s, "systemId=a").is_ok());
}

/// max_connections counts kept sessions too; past max_recovery_sessions the oldest one ends,
/// its groups told once.
#[test]
fn max_connections_and_max_recovery_sessions_bound_kept_sessions() {
    let s = Server::start(&["--max-connections", "4", "--max-recovery-sessions", "2", "--shards", "1"]);
    s.register("a");
    let mut watcher = s.client("a");
    s.bind("a", &watcher.id, "g", "w");
    watcher.expect_code(1001);
    let mut sessions = Vec::new();
    for i in 0..3 {
        let (rc, _) = connect(&s, "a", None);
        s.bind("a", &rc.c.id, "g", &format!("u{i}"));
        watcher.expect_code(1001);
        sessions.push((rc.c.id.clone(), rc.token.clone()));
        drop_hard(rc.c);
        wait_detached(&s, (i as u64 + 1).min(2));
    }
    // The third kept session pushed out the first: one 1002, about it.
    let off = watcher.expect_code(1002);
    assert!(off["data"].as_str().unwrap().contains(&sessions[0].0), "{off}");
    assert_eq!(metric(&s, "recovery_evictions_total"), 1);
    assert_eq!(metric(&s, "recovery_sessions"), 2);
    let (mut fresh, hello) = connect(&s, "a", Some((&sessions[0].1, None)));
    assert_eq!(hello["data"]["recovered"], false, "the evicted session is gone");
    // Watcher + fresh connected, two kept: max_connections (4) is reached for a fresh session.
    assert_eq!(try_connect(&s, "systemId=a").err(), Some(503));
    // A resume is not a fresh session.
    let (_back, hello) = try_connect(&s, &format!("systemId=a&recover=1&resume={}", sessions[1].1)).unwrap();
    assert_eq!(hello["data"]["recovered"], true);
    fresh.c.expect_silence(Duration::from_millis(50));
    watcher.expect_silence(Duration::from_millis(50));
}

/// Review finding: a session detached, resumed and detached again kept its first place in the
/// eviction order, so max_recovery_sessions ended it first instead of the oldest kept one.
#[test]
fn max_recovery_sessions_ends_the_session_kept_longest() {
    let s = Server::start(&["--max-recovery-sessions", "2", "--shards", "1"]);
    s.register("a");
    let mut watcher = s.client("a");
    s.bind("a", &watcher.id, "g", "w");
    watcher.expect_code(1001);
    let join = |u: &str, w: &mut Client| {
        let (rc, _) = connect(&s, "a", None);
        s.bind("a", &rc.c.id, "g", u);
        w.expect_code(1001);
        rc
    };
    let a = join("a", &mut watcher);
    let a_id = a.c.id.clone();
    drop_hard(a.c);
    wait_detached(&s, 1);
    let (a2, hello) = connect(&s, "a", Some((&a.token, None)));
    assert_eq!(hello["data"]["recovered"], true);
    let b = join("b", &mut watcher);
    let b_id = b.c.id.clone();
    drop_hard(b.c);
    wait_detached(&s, 1);
    drop_hard(a2.c); // a is kept again, after b
    wait_detached(&s, 2);
    let c = join("c", &mut watcher);
    drop_hard(c.c); // three kept, two allowed: b, kept longest, ends
    let off = watcher.expect_code(1002);
    let gone = off["data"].as_str().unwrap();
    assert!(gone.contains(&b_id) && !gone.contains(&a_id), "{off}");
    watcher.expect_silence(Duration::from_millis(200));
    assert_eq!(metric(&s, "recovery_evictions_total"), 1);
}
