//! The endpoints' parsing, table and OpenAPI document, without a server.

use super::*;

fn op(name: &str, body: &str) -> Result<Op, ApiError> {
    let body = api::parse_body(body.as_bytes()).unwrap();
    let r =
        Request { body: &body, node: 7, cluster: false, limits: Limits { name: 8, extend: 10, page: 3, history: 5 } };
    (find(name).unwrap().parse)(&r)
}

#[test]
fn names_are_unique_and_found() {
    for (i, e) in ENDPOINTS.iter().enumerate() {
        assert!(ENDPOINTS[..i].iter().all(|o| o.name != e.name), "{} twice", e.name);
        assert!(std::ptr::eq(find(e.name).unwrap(), *e));
    }
    assert!(find("nope").is_none());
    assert_eq!(ENDPOINTS.iter().filter(|e| e.access == Access::Operator).count(), 1);
}

/// The OpenAPI document describes exactly the endpoints of this table.
#[test]
fn the_openapi_document_matches_the_table() {
    let doc: serde_json::Value = serde_json::from_str(openapi()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for e in ENDPOINTS {
        let part: serde_json::Map<String, serde_json::Value> = serde_json::from_str(e.openapi).unwrap();
        let op = &paths[&format!("/api/{}", e.name)]["post"];
        for (k, v) in &part {
            if k != "responses" {
                assert_eq!(&op[k], v, "{}: its own {k}", e.name);
            }
        }
        let responses = op["responses"].as_object().unwrap();
        for (status, r) in part["responses"].as_object().unwrap() {
            assert_eq!(&responses[status], r, "{}: its own {status}", e.name);
        }
        assert!(responses.contains_key("200"), "{}: its success", e.name);
        for status in ERRORS {
            assert_eq!(responses[status]["$ref"], "#/components/responses/Error", "{}: {status}", e.name);
        }
        assert_eq!(op["operationId"], e.name);
        assert_eq!(op["tags"], serde_json::json!(["api"]));
        assert_eq!(op["parameters"].is_array(), e.access == Access::System, "{}: SystemId header", e.name);
    }
    let api_paths = paths.keys().filter(|p| p.starts_with("/api/") && *p != "/api/openapi.json").count();
    assert_eq!(api_paths, ENDPOINTS.len());
}

#[test]
fn bodies_become_operations() {
    let mine = ids::client_id(7, ids::ConnId { shard: 0, slot: 1, gen: 2 });
    let other = ids::client_id(8, ids::ConnId { shard: 0, slot: 1, gen: 2 });
    assert!(matches!(op("send_to_group", r#"{"groupName":"g"}"#), Ok(Op::SendToGroup { .. })));
    assert_eq!(op("send_to_group", "{}").unwrap_err().status, 400);
    assert_eq!(op("bind_to_group", &format!(r#"{{"clientId":"{mine}"}}"#)).unwrap_err().status, 400);
    let bind = op("bind_to_group", &format!(r#"{{"clientId":"{mine}","groupName":"g","notify":false}}"#));
    assert!(matches!(bind, Ok(Op::Bind { notify: false, .. })));
    assert_eq!(op("close_client", &format!(r#"{{"clientId":"{other}"}}"#)).unwrap_err().status, 404);
    assert_eq!(op("send_to_clients", r#"{"clientIds":[]}"#).unwrap_err().status, 400);
    let list = op("send_to_clients", &format!(r#"{{"clientIds":["{mine}","{other}","x"]}}"#));
    assert!(matches!(list, Ok(Op::SendToClients { clients, strict: false, .. }) if clients.len() == 1));
    // Bounds: names 8 bytes, extend 10, pages of 3.
    assert_eq!(op("send_to_group", r#"{"groupName":"123456789"}"#).unwrap_err().status, 400);
    let long_user = format!(r#"{{"clientId":"{mine}","groupName":"g","userId":"123456789"}}"#);
    assert!(op("bind_to_group", &long_user).unwrap_err().msg.contains("max_name_bytes"));
    let long_extend = format!(r#"{{"clientId":"{mine}","groupName":"g","extend":"12345678901"}}"#);
    assert!(op("bind_to_group", &long_extend).unwrap_err().msg.contains("max_extend_bytes"));
    assert!(matches!(op("get_all_groups", "{}"), Ok(Op::AllGroups { page: None })));
    let page = |b: &str| match op("get_all_groups", b) {
        Ok(Op::AllGroups { page: Some(p) }) => (p.after.to_string(), p.limit),
        other => panic!("{other:?}"),
    };
    assert_eq!(page(r#"{"limit":2}"#), ("".into(), 2));
    assert_eq!(page(r#"{"cursor":"g7","limit":50}"#), ("g7".into(), 3));
    assert_eq!(op("get_all_groups", r#"{"limit":0}"#).unwrap_err().status, 400);
    assert!(matches!(
        op("get_group_history", r#"{"groupName":"g","limit":50}"#),
        Ok(Op::GroupHistory { limit: 5, .. })
    ));
    assert_eq!(op("get_group_history", r#"{"limit":2}"#).unwrap_err().status, 400);
}
