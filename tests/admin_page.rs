//! The admin page on the admin listener (`GET /admin`, `GET /admin/stats`): served there and
//! never on the main port, self-contained (its Content-Security-Policy allows nothing from
//! another origin, and it names no external URL), read-only, and its figures are the server's
//! (systems, groups, clients, largest groups). Real server, raw HTTP. (The page in a real
//! browser: clients/js/test/admin-page.test.mjs.)
mod util;

use std::net::SocketAddr;

use serde_json::{json, Value};
use util::*;

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    raw_at(addr, format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
}

fn stats(admin: SocketAddr) -> Value {
    let (st, body) = get(admin, "/admin/stats");
    assert_eq!(st, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn the_page_is_served_on_the_admin_listener_only_and_loads_nothing_from_elsewhere() {
    let s = Server::start(&["--admin-listen", "127.0.0.1:0"]);
    let admin = s.admin.unwrap();
    let req = b"GET /admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let mut c = std::net::TcpStream::connect(admin).unwrap();
    std::io::Write::write_all(&mut c, req).unwrap();
    let mut raw = String::new();
    std::io::Read::read_to_string(&mut c, &mut raw).unwrap();
    let (head, page) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("Content-Type: text/html"), "{head}");
    assert!(head.contains("Content-Security-Policy: default-src 'none';"), "{head}");
    assert!(!head.contains("connect-src *") && head.contains("connect-src 'self'"), "{head}");
    for stat in ["connections", "systems", "groups", "messages_per_second", "recovery_sessions"] {
        assert!(page.contains(&format!("data-stat=\"{stat}\"")), "no data-stat {stat}");
    }
    for external in ["src=", "href=", "http://", "https://", "@import", "url("] {
        assert!(!page.contains(external), "the page names something to load: {external}");
    }
    assert_eq!(get(s.addr, "/admin").0, 404, "the main port never serves it");
    assert_eq!(get(s.addr, "/admin/stats").0, 404);
    let post = b"POST /admin/stats HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_at(admin, post).0, 405, "read-only");
}

#[test]
fn the_stats_are_the_servers_own() {
    let s = Server::start(&["--admin-listen", "127.0.0.1:0"]);
    let admin = s.admin.unwrap();
    for sys in ["a", "b"] {
        s.register(sys);
    }
    let a: Vec<Client> = (0..3).map(|_| s.client("a")).collect();
    let _b = s.client("b");
    s.bind("a", &a[0].id, "room", "ann");
    s.bind("a", &a[1].id, "room", "bob");
    s.bind("a", &a[2].id, "hall", "ann");
    let v = stats(admin);
    assert_eq!((v["mode"].as_str(), v["redis"].is_null()), (Some("single"), true), "{v}");
    let m = &v["metrics"];
    assert_eq!((m["ws_clients"].as_u64(), m["systems"].as_u64(), m["groups"].as_u64()), (Some(4), Some(2), Some(2)));
    let top = &v["systems"]["top"];
    assert_eq!(v["systems"]["total"], 2);
    assert_eq!(
        top[0],
        json!({"system": "a", "clients": 3, "users": 2, "groups": 2,
               "largest": [{"group": "room", "members": 2}, {"group": "hall", "members": 1}]})
    );
    assert_eq!(top[1], json!({"system": "b", "clients": 1, "users": 0, "groups": 0, "largest": []}));
    // Push messages queued to clients are counted, exactly (the page's messages per second is
    // their rate): a group send to 2 members is 2, whatever HTTP answers went out meanwhile.
    let queued = || stats(admin)["metrics"]["messages_queued_total"].as_u64().unwrap();
    let before = queued();
    let (st, _) = s.api("send_to_group", Some("a"), json!({"groupName": "room", "msg": "hi"}));
    assert_eq!(st, 200);
    let t = std::time::Instant::now();
    while queued() < before + 2 {
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "the two members' messages never counted");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(queued(), before + 2, "nothing else counts as a message");
}
