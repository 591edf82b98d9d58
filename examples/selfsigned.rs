//! Writes a self-signed certificate for `localhost` and its key, for local TLS runs
//! (`loadtest/compare.sh` with `TLS=1`, trying `--tls-cert`/`--tls-key` by hand).
//!
//! `cargo run --release --example selfsigned -- DIR` → `DIR/cert.pem`, `DIR/key.pem`.

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    let dir = std::path::Path::new(&dir);
    std::fs::create_dir_all(dir).expect("create the directory");
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).expect("certificate");
    std::fs::write(dir.join("cert.pem"), c.cert.pem()).expect("write cert.pem");
    std::fs::write(dir.join("key.pem"), c.key_pair.serialize_pem()).expect("write key.pem");
    println!("{}/cert.pem {}/key.pem", dir.display(), dir.display());
}
