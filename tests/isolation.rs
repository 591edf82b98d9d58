//! Tenant isolation: system B can never see, reach, bind or close anything of system A.
mod util;

use std::time::Duration;

use serde_json::json;
use util::*;

#[test]
fn another_system_cannot_touch_my_clients() {
    let s = Server::start_with_jwt(&[]);
    s.register("a");
    s.register("b");
    let mut a1 = s.client("a");
    s.bind("a", &a1.id, "room", "u");
    a1.expect_code(1001);
    let id = a1.id.clone();
    let b_tok = token(Some("b"), 60);
    let b = |name: &str, body: serde_json::Value| s.api_as(name, Some("b"), Some(&b_tok), body).0;
    assert_eq!(b("send_to_client", json!({"clientId": id, "code": 1})), 404);
    assert_eq!(b("bind_to_group", json!({"clientId": id, "groupName": "room"})), 404);
    assert_eq!(b("unbind_from_group", json!({"clientId": id, "groupName": "room"})), 404);
    assert_eq!(b("close_client", json!({"clientId": id})), 404);
    assert_eq!(b("send_to_clients", json!({"clientIds": [id], "code": 2})), 200);
    assert_eq!(b("send_to_group", json!({"groupName": "room", "code": 3})), 200);
    assert_eq!(b("send_to_system", json!({"code": 4})), 200);
    let (_, v) = s.api_as("get_online_list", Some("b"), Some(&b_tok), json!({"groupName": "room"}));
    assert_eq!(v["data"], json!({"count": 0, "list": []}));
    let (_, v) = s.api_as("get_all_groups", Some("b"), Some(&b_tok), json!({}));
    assert_eq!(v["data"], json!({}));
    // A system token for b cannot act as a with a forged header either.
    assert_eq!(s.api_as("send_to_client", Some("a"), Some(&b_tok), json!({"clientId": id})).0, 403);
    a1.expect_silence(Duration::from_millis(300));
    let (_, v) = s.api("get_online_list", Some("a"), json!({"groupName": "room"}));
    assert_eq!(v["data"]["list"], json!([id]));
}

#[test]
fn unregistered_system_is_refused_at_ws() {
    let s = Server::start(&[]);
    let mut c = Client::connect(&s.url("/ws?systemId=ghost"));
    let f = c.recv().unwrap();
    assert_eq!(f["code"], -1001);
    assert!(f["msg"].as_str().unwrap().contains("not registered"), "{f}");
    assert_eq!(c.close_code().map(u16::from), Some(1008));
}
