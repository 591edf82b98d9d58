//! Every JWT case on the API, and optional token auth on WebSocket connects.
mod util;

use serde_json::json;
use util::*;

fn hs(claims: serde_json::Value, secret: &str) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

fn now() -> u64 {
    roomcast::auth::now_secs()
}

#[test]
fn jwt_cases_on_the_api() {
    let s = Server::start_with_jwt(&[]);
    s.register("s1");
    s.register("s2");
    let call = |tok: Option<&str>| s.api_as("get_all_groups", Some("s1"), tok, json!({})).0;
    assert_eq!(call(None), 401, "no token");
    assert_eq!(call(Some("garbage")), 401, "garbage");
    assert_eq!(call(Some(&hs(json!({"exp": now() - 5}), SECRET))), 401, "expired");
    assert_eq!(call(Some(&hs(json!({"exp": now() + 60}), "wrong-key"))), 401, "wrong key");
    assert_eq!(call(Some(&hs(json!({"systemId": "s1"}), SECRET))), 401, "no exp");
    assert_eq!(call(Some(&hs(json!({"exp": now() + 60, "nbf": now() + 30}), SECRET))), 401, "not yet valid");
    assert_eq!(call(Some(&token(Some("s2"), 60))), 403, "other system");
    assert_eq!(call(Some(&token(Some("s1"), 60))), 200, "own system");
    assert_eq!(call(Some(&token(None, 60))), 200, "operator");
    // A token naming neither a system nor the operator role is no operator token.
    assert_eq!(call(Some(&hs(json!({"exp": now() + 60}), SECRET))), 403, "no systemId, no role");
    let plain = hs(json!({"exp": now() + 60, "systemId": null}), SECRET);
    assert_eq!(s.api_as("register", None, Some(&plain), json!({"systemId": "s4"})).0, 403, "systemId null");
    let (st, v) = s.api_as("register", None, Some(&token(Some("s1"), 60)), json!({"systemId": "s3"}));
    assert_eq!(st, 403, "a system token cannot register: {v}");
    assert_eq!(v["code"], -1);
    let (st, v) = s.api_as("get_all_groups", Some("s1"), None, json!({}));
    assert_eq!(st, 401);
    assert!(v["msg"].as_str().unwrap().contains("Authorization"), "{v}");
}

#[test]
fn es256_public_key() {
    let dir = std::env::temp_dir().join(format!("roomcast-es256-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("key.pem");
    let pubkey = dir.join("pub.pem");
    let run = |args: &[&str]| assert!(std::process::Command::new("openssl").args(args).status().unwrap().success());
    run(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key.to_str().unwrap()]);
    run(&["pkey", "-in", key.to_str().unwrap(), "-pubout", "-out", pubkey.to_str().unwrap()]);
    let s = Server::start(&["--jwt-public-key", pubkey.to_str().unwrap(), "--jwt-alg", "ES256"]);
    let enc = jsonwebtoken::EncodingKey::from_ec_pem(&std::fs::read(&key).unwrap()).unwrap();
    let good = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &json!({"exp": now() + 60, "role": "operator"}),
        &enc,
    )
    .unwrap();
    assert_eq!(s.api_as("register", None, Some(&good), json!({"systemId": "x"})).0, 200);
    assert_eq!(s.api_as("register", None, Some(&token(None, 60)), json!({"systemId": "y"})).0, 401, "HS256 refused");
    std::fs::remove_dir_all(&dir).ok();
}

fn connect_token(system: &str, sub: Option<&str>, groups: &[&str]) -> String {
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    roomcast::auth::mint_connect_hs256(SECRET.as_bytes(), system, sub, &groups, 60).unwrap()
}

/// The refusal of a connect: its -1001 frame's message, then close 1008.
fn refused(s: &Server, query: &str) -> String {
    let mut c = Client::connect(&s.url(&format!("/ws?{query}")));
    let f = c.recv().expect("a refusal frame");
    assert_eq!(f["code"], -1001, "{query}: {f}");
    assert_eq!(c.close_code().map(u16::from), Some(1008), "{query}");
    f["msg"].as_str().unwrap().to_string()
}

fn accepted(s: &Server, query: &str) -> Client {
    let mut c = Client::connect(&s.url(&format!("/ws?{query}")));
    let f = c.recv().expect("connect frame");
    assert_eq!(f["code"], 0, "{query}: {f}");
    c.id = f["data"]["clientId"].as_str().unwrap().to_string();
    c
}

/// Security review, high: with ws_auth the page's token was a system API token, accepted by
/// send_to_system and close_client. Now /ws takes connect tokens only, and the API refuses them.
#[test]
fn ws_auth_takes_connect_tokens_only_and_the_api_refuses_them() {
    let s = Server::start_with_jwt(&["--ws-auth", "true"]);
    s.register("s1");
    assert!(refused(&s, "systemId=s1").contains("?token="), "the missing token is named as a query parameter");
    let api = token(Some("s1"), 60);
    assert!(refused(&s, &format!("systemId=s1&token={api}")).contains("mint a connect token"));
    let op = token(None, 60);
    assert!(refused(&s, &format!("systemId=s1&token={op}")).contains("mint a connect token"));
    refused(&s, &format!("systemId=s1&token={}", connect_token("s2", None, &[])));
    refused(&s, "systemId=s1&token=garbage");
    let ct = connect_token("s1", None, &[]);
    let c = accepted(&s, &format!("systemId=s1&token={ct}"));
    for (name, body) in [
        ("send_to_system", json!({"msg": "x"})),
        ("close_client", json!({"clientId": c.id})),
        ("get_all_groups", json!({})),
    ] {
        let (st, v) = s.api_as(name, Some("s1"), Some(&ct), body);
        assert_eq!((st, v["msg"].as_str()), (403, Some("connect tokens cannot call the API")), "{name}");
    }
    assert_eq!(s.api_as("register", None, Some(&ct), json!({"systemId": "s3"})).0, 403);
    // A resume needs no connect token; one that cannot be honoured may not become a fresh
    // session without one.
    let msg = refused(&s, "systemId=s1&recover=1&resume=nonsense");
    assert!(msg.contains("could not be resumed") && msg.contains("?token="), "{msg}");
    let mut r = Client::connect(&s.url(&format!("/ws?systemId=s1&recover=1&token={ct}")));
    let hello = r.recv().unwrap();
    let resume = hello["data"]["resumeToken"].as_str().unwrap().to_string();
    socket2::SockRef::from(r.ws.get_ref()).set_linger(Some(std::time::Duration::ZERO)).unwrap();
    drop(r);
    wait_metric(&s, "recovery_sessions", 1, "the drop was not noticed");
    let mut back = Client::connect(&s.url(&format!("/ws?systemId=s1&recover=1&resume={resume}")));
    let f = back.recv().unwrap();
    assert_eq!((&f["data"]["recovered"], &f["data"]["clientId"]), (&json!(true), &hello["data"]["clientId"]));
    assert!(metric(&s, "connect_token_refusals_total") >= 5);
}

/// Without ws_auth a token is optional, but one that is given is checked and applied.
#[test]
fn a_token_given_without_ws_auth_is_checked() {
    let s = Server::start_with_jwt(&[]);
    s.register("s1");
    accepted(&s, "systemId=s1");
    refused(&s, "systemId=s1&token=garbage");
    assert!(refused(&s, &format!("systemId=s1&token={}", token(Some("s1"), 60))).contains("connect token"));
    accepted(&s, &format!("systemId=s1&token={}", connect_token("s1", Some("u"), &[])));
    // An open server cannot check a token at all.
    let open = Server::start(&[]);
    open.register("s1");
    assert!(refused(&open, &format!("systemId=s1&token={}", connect_token("s1", None, &[]))).contains("no JWT key"));
}

/// A connect token's sub is the connection's user and its groups are joined at connect, as
/// binds with userId = sub: notices to the members (the client itself after its connect frame),
/// online lists, binds without userId.
#[test]
fn connect_token_user_and_groups_are_applied_at_connect() {
    let s = Server::start_with_jwt(&["--max-groups-per-client", "3"]);
    s.register("s1");
    let mut bob = s.client("s1");
    s.bind("s1", &bob.id, "room", "bob");
    bob.expect_code(1001);
    let ct = connect_token("s1", Some("alice"), &["room", "lobby", "room"]);
    let mut alice = accepted(&s, &format!("systemId=s1&token={ct}"));
    let notice = alice.recv().expect("alice's own 1001 after her connect frame");
    assert_eq!(notice["code"], 1001, "{notice}");
    let n = bob.expect_code(1001);
    let data: serde_json::Value = serde_json::from_str(n["data"].as_str().unwrap()).unwrap();
    assert_eq!(data, json!({"clientId": alice.id, "extend": "", "userId": "alice"}));
    assert_eq!(n["sendUserId"], "alice");
    for g in ["room", "lobby"] {
        let (_, v) = s.api("get_online_list", Some("s1"), json!({"groupName": g}));
        assert!(v["data"]["list"].as_array().unwrap().contains(&json!(alice.id)), "{g}: {v}");
    }
    let (_, v) = s.api("get_online_list", Some("s1"), json!({"groupName": "room"}));
    assert_eq!(v["data"]["count"], 2, "room twice in the token is one membership: {v}");
    let second = alice.expect_code(1001);
    assert_ne!(second["messageId"], notice["messageId"], "one notice per group: room and lobby");
    alice.expect_silence(std::time::Duration::from_millis(100));
    let (st, _) = s.api("bind_to_group", Some("s1"), json!({"clientId": alice.id, "groupName": "third"}));
    assert_eq!(st, 200);
    let n = alice.expect_code(1001);
    let data: serde_json::Value = serde_json::from_str(n["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        (&n["sendUserId"], &data["userId"]),
        (&json!("alice"), &json!("alice")),
        "a bind without userId takes the token's sub"
    );
    let (st, _) =
        s.api("bind_to_group", Some("s1"), json!({"clientId": alice.id, "groupName": "fourth", "userId": "other"}));
    assert_eq!(st, 400, "max_groups_per_client (3) holds for token groups too");
    // Bounds as for a bind refuse the connect, naming the bound.
    let many = connect_token("s1", None, &["a", "b", "c", "d"]);
    assert!(refused(&s, &format!("systemId=s1&token={many}")).contains("max_groups_per_client"));
    let long = "g".repeat(300);
    let bad = connect_token("s1", None, &[&long]);
    assert!(refused(&s, &format!("systemId=s1&token={bad}")).contains("max_name_bytes"));
    let unregistered = connect_token("nope", None, &["room"]);
    assert!(refused(&s, &format!("systemId=nope&token={unregistered}")).contains("not registered"));
}

#[test]
fn open_api_is_refused_off_loopback() {
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_roomcast")).args(["--listen", "0.0.0.0:0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure-no-auth"));
}

#[test]
fn token_command_prints_a_working_token() {
    let s = Server::start_with_jwt(&[]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["token", "--system", "s9", "--ttl", "10m", "--jwt-secret", SECRET])
        .output()
        .unwrap();
    assert!(out.status.success());
    let t = String::from_utf8(out.stdout).unwrap();
    s.register("s9");
    assert_eq!(s.api_as("get_all_groups", Some("s9"), Some(t.trim()), json!({})).0, 200);
    assert_eq!(s.api_as("get_all_groups", Some("other"), Some(t.trim()), json!({})).0, 403);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["token", "--connect", "--system", "s9", "--user", "u1", "--group", "g1", "--jwt-secret", SECRET])
        .output()
        .unwrap();
    assert!(out.status.success());
    let ct = String::from_utf8(out.stdout).unwrap();
    let c = accepted(&s, &format!("systemId=s9&token={}", ct.trim()));
    let (_, v) = s.api("get_online_list", Some("s9"), json!({"groupName": "g1"}));
    assert_eq!(v["data"]["list"], json!([c.id]));
    assert_eq!(s.api_as("get_all_groups", Some("s9"), Some(ct.trim()), json!({})).0, 403);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["token", "--connect", "--jwt-secret", SECRET])
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--system"));
    // A token expired when printed is refused, not printed.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["token", "--system", "s9", "--ttl", "0s", "--jwt-secret", SECRET])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty() && String::from_utf8_lossy(&out.stderr).contains("--ttl must be longer than 0s"));
}
