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

#[test]
fn ws_auth_requires_a_token_for_the_system() {
    let s = Server::start_with_jwt(&["--ws-auth", "true"]);
    s.register("s1");
    let mut c = Client::connect(&s.url("/ws?systemId=s1"));
    let f = c.recv().unwrap();
    assert_eq!(f["code"], -1001);
    assert_eq!(c.close_code().map(u16::from), Some(1008));
    let t = token(Some("s2"), 60);
    let mut c = Client::connect(&s.url(&format!("/ws?systemId=s1&token={t}")));
    assert_eq!(c.recv().unwrap()["code"], -1001);
    let t = token(Some("s1"), 60);
    let mut c = Client::connect(&s.url(&format!("/ws?systemId=s1&token={t}")));
    assert_eq!(c.recv().unwrap()["code"], 0);
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
}
