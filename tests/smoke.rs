mod util;
use serde_json::json;
use util::*;

/// The thinnest slice end to end: connect → bind → send_to_group → frame on the wire.
#[test]
fn connect_bind_send_to_group() {
    let s = Server::start(&[]);
    s.register("sys");
    let mut a = s.client("sys");
    s.bind("sys", &a.id, "room", "u1");
    let online = a.expect_code(1001);
    assert_eq!(online["sendUserId"], "u1");
    let (st, v) = s.api(
        "send_to_group",
        Some("sys"),
        json!({"groupName": "room", "sendUserId": "u9", "code": 200, "msg": "hello", "data": {"x": [1, 2]}}),
    );
    assert_eq!(st, 200, "{v}");
    let m = a.expect_code(200);
    assert_eq!(m["data"], json!({"x": [1, 2]}));
    assert_eq!(m["messageId"], v["data"]["messageId"]);
}
