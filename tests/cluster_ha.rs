//! Cluster mode beyond one plain Redis: a key prefix (two clusters on one Redis), TLS to
//! Redis (`rediss://`, certificate made here), and Sentinel failover (master + replica + three
//! Sentinels, the master SIGKILLed under clients and calls). Real processes on loopback.
mod util;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use util::cluster::*;
use util::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A directory of the test's own; removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("roomcast-ha-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn query<T: redis::FromRedisValue>(port: u16, cmd: &mut redis::Cmd) -> redis::RedisResult<T> {
    query_tls(port, None, cmd)
}

/// `ca`: speak TLS, trusting this PEM file.
fn query_tls<T: redis::FromRedisValue>(port: u16, ca: Option<&Path>, cmd: &mut redis::Cmd) -> redis::RedisResult<T> {
    let client = match ca {
        None => redis::Client::open(format!("redis://127.0.0.1:{port}"))?,
        Some(ca) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let certs = redis::TlsCertificates { client_tls: None, root_cert: Some(std::fs::read(ca).unwrap()) };
            redis::Client::build_with_tls(format!("rediss://127.0.0.1:{port}"), certs)?
        }
    };
    let mut con = client.get_connection_with_timeout(Duration::from_secs(2))?;
    con.set_read_timeout(Some(Duration::from_secs(5)))?;
    cmd.query(&mut con)
}

#[test]
fn two_clusters_share_one_redis_under_their_prefixes() {
    let redis = Redis::start();
    let blue = nodes(&redis, 2, &["--redis-prefix", "blue:"]);
    let green = node(&redis, &["--redis-prefix", "green:"]);
    blue[0].register("s");
    // The same system id is free in the other cluster.
    green.register("s");
    let (st, _) = blue[1].api("register", None, json!({"systemId": "s"}));
    assert_eq!(st, 409, "register is still unique inside one cluster");

    let mut b0 = blue[0].client("s");
    let mut b1 = blue[1].client("s");
    let mut g = green.client("s");
    blue[1].bind("s", &b0.id, "room", "u");
    blue[0].bind("s", &b1.id, "room", "u");
    green.bind("s", &g.id, "room", "u");
    for c in [&mut b0, &mut b1, &mut g] {
        c.expect_code(1001);
    }
    assert_eq!(online(&blue[0], "s", "room"), sorted(vec![b0.id.clone(), b1.id.clone()]));
    assert_eq!(online(&green, "s", "room"), vec![g.id.clone()]);

    let id = send_group(&blue[1], "s", "room", "to blue");
    for c in [&mut b0, &mut b1] {
        let v = next_message(c);
        assert_eq!(v["messageId"], id.as_str());
    }
    let gid = send_group(&green, "s", "room", "to green");
    assert_eq!(next_message(&mut g)["messageId"], gid.as_str(), "green saw nothing of blue's send first");
    b0.expect_silence(Duration::from_millis(300));
    let (st, v) = green.api("send_to_system", Some("s"), json!({"code": 0, "msg": "sys", "data": 1}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(next_message(&mut g)["msg"], "sys");
    b1.expect_silence(Duration::from_millis(300));

    // Every key either cluster wrote is under its prefix.
    let keys: Vec<String> = query(redis.port, redis::cmd("KEYS").arg("*")).unwrap();
    assert!(keys.iter().any(|k| k.starts_with("blue:")) && keys.iter().any(|k| k.starts_with("green:")), "{keys:?}");
    assert!(keys.iter().all(|k| k.starts_with("blue:") || k.starts_with("green:")), "{keys:?}");
}

#[test]
fn a_bad_prefix_or_redis_url_is_refused_at_start() {
    for (args, want) in [
        (vec!["--redis", "redis://127.0.0.1:1", "--redis-prefix", "a b"], "redis_prefix"),
        (vec!["--redis", "redis+sentinel://127.0.0.1:1"], "master name"),
        (vec!["--redis", "redis+unix:///tmp/x.sock"], "only redis:// and rediss://"),
        (vec!["--redis", "rediss://127.0.0.1:1", "--redis-ca", "/nonexistent.pem"], "redis-ca"),
        (vec!["--redis", "redis+cluster://127.0.0.1:1/2"], "no databases but 0"),
        (vec!["--redis", "redis+cluster://127.0.0.1:x"], "bad cluster port"),
        (vec!["--redis", "redis+cluster://127.0.0.1:1", "--redis-prefix", "{rc}:"], "no braces on a Redis Cluster"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_roomcast")).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// Regression: while Redis was away the broker polled its queue with a zero timeout, one
/// core at 100% for as long as the outage lasted.
#[test]
fn a_node_waiting_for_redis_stays_idle() {
    let dead = free_port();
    let url = format!("redis://127.0.0.1:{dead}");
    let s = Server::start(&["--redis", url.as_str()]);
    std::thread::sleep(Duration::from_millis(500));
    let before = s.cpu_ticks();
    std::thread::sleep(Duration::from_secs(2));
    let used = s.cpu_ticks() - before;
    // (clock ticks are 10 ms: a spinning thread would show about 200)
    assert!(used < 40, "{used} ticks of CPU in 2 s while waiting for Redis");
    assert_eq!(health(&s)["cluster"], "redis unreachable");
}

#[test]
fn rediss_carries_commands_and_pub_sub() {
    let dir = Dir::new("rediss");
    let (cert, key) = write_cert(&dir);
    let redis = Redis::start_tls(&cert, &key);
    assert!(redis.url().starts_with("rediss://"));
    let ca = cert.display().to_string();
    let n = nodes(&redis, 2, &["--redis-ca", &ca]);
    n[0].register("s");
    let mut a = n[0].client("s");
    let mut b = n[1].client("s");
    n[1].bind("s", &a.id, "g", "u");
    n[0].bind("s", &b.id, "g", "u");
    let id = send_group(&n[1], "s", "g", "over tls");
    assert_eq!(next_message(&mut a)["messageId"], id.as_str());
    assert_eq!(next_message(&mut b)["messageId"], id.as_str());
    assert_eq!(online(&n[0], "s", "g"), sorted(vec![a.id.clone(), b.id.clone()]));

    // Without the CA the certificate is not trusted: the node stays down and says so.
    let url = redis.url();
    let untrusted = Server::start(&["--redis", url.as_str()]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(health(&untrusted)["cluster"], "redis unreachable");
    let (st, _) = untrusted.api("register", None, json!({"systemId": "t"}));
    assert_eq!(st, 503);
}

/// A Sentinel process watching `master` as `mymaster`.
struct Sentinel {
    child: Child,
    port: u16,
    /// TLS only, with this certificate (also its CA).
    ca: Option<PathBuf>,
}

impl Sentinel {
    /// `tls`: (certificate, key) to serve and to reach the Redis servers with.
    fn start(dir: &Dir, master: u16, tls: Option<(&Path, &Path)>) -> Sentinel {
        let port = free_port();
        let conf = dir.0.join(format!("sentinel-{port}.conf"));
        let listen = match tls {
            None => format!("port {port}\n"),
            Some((c, k)) => format!(
                "port 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n\
                 tls-auth-clients no\ntls-replication yes\n",
                c.display(),
                k.display(),
                c.display()
            ),
        };
        std::fs::write(
            &conf,
            format!(
                "{listen}bind 127.0.0.1\ndir {}\n\
                 sentinel monitor mymaster 127.0.0.1 {master} 2\n\
                 sentinel down-after-milliseconds mymaster 1000\n\
                 sentinel failover-timeout mymaster 10000\n\
                 sentinel parallel-syncs mymaster 1\n",
                dir.0.display()
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        Sentinel { child, port, ca: tls.map(|(c, _)| c.to_path_buf()) }
    }

    /// (other Sentinels known, replicas known)
    fn knows(&self) -> (usize, usize) {
        let ca = self.ca.as_deref();
        let sentinels: Vec<redis::Value> =
            query_tls(self.port, ca, redis::cmd("SENTINEL").arg("SENTINELS").arg("mymaster")).unwrap_or_default();
        let replicas: Vec<redis::Value> =
            query_tls(self.port, ca, redis::cmd("SENTINEL").arg("REPLICAS").arg("mymaster")).unwrap_or_default();
        (sentinels.len(), replicas.len())
    }

    fn master_port(&self) -> Option<u16> {
        let addr: Vec<String> = query_tls(
            self.port,
            self.ca.as_deref(),
            redis::cmd("SENTINEL").arg("GET-MASTER-ADDR-BY-NAME").arg("mymaster"),
        )
        .ok()?;
        addr.get(1)?.parse().ok()
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A master, its replica and three Sentinels that know each other; the nodes' URL. `tls`:
/// (certificate, key) every one of them serves TLS only with (and replicates over).
fn sentinel_setup(dir: &Dir, tls: Option<(&Path, &Path)>) -> (Redis, Redis, Vec<Sentinel>, String) {
    let ca = tls.map(|(c, _)| c.display().to_string()).unwrap_or_default();
    let tls_args = ["--tls-ca-cert-file", ca.as_str(), "--tls-replication", "yes"];
    let start = |more: &[&str]| match tls {
        None => Redis::start_args(more),
        Some((c, k)) => Redis::start_tls_args(c, k, &[&tls_args[..], more].concat()),
    };
    let master = start(&[]);
    let mp = master.port.to_string();
    let replica = start(&["--replicaof", "127.0.0.1", &mp]);
    let sentinels: Vec<Sentinel> = (0..3).map(|_| Sentinel::start(dir, master.port, tls)).collect();
    let t = Instant::now();
    while sentinels.iter().any(|s| s.knows() != (2, 1)) {
        assert!(t.elapsed() < Duration::from_secs(30), "Sentinels never found each other and the replica");
        std::thread::sleep(Duration::from_millis(100));
    }
    let hosts: Vec<String> = sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
    let scheme = if tls.is_some() { "rediss+sentinel" } else { "redis+sentinel" };
    (master, replica, sentinels, format!("{scheme}://{}/mymaster", hosts.join(",")))
}

/// A self-signed certificate for 127.0.0.1 written into `dir`: (cert, key) paths.
fn write_cert(dir: &Dir) -> (PathBuf, PathBuf) {
    let c = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert, key) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
    std::fs::write(&cert, c.cert.pem()).unwrap();
    std::fs::write(&key, c.key_pair.serialize_pem()).unwrap();
    (cert, key)
}

/// The next message a client gets, past the one sent while the nodes were finding the master
/// (it reaches only the nodes that had found it: docs/CLUSTER.md).
fn next_past(c: &mut Client, during: &str) -> String {
    let got = next_message(c)["messageId"].as_str().unwrap().to_string();
    if got == during {
        return next_message(c)["messageId"].as_str().unwrap().to_string();
    }
    got
}

#[test]
fn a_forced_failover_demoting_the_live_master_is_followed() {
    let dir = Dir::new("switch");
    let (master, replica, sentinels, url) = sentinel_setup(&dir, None);
    let n: Vec<Server> = (0..2).map(|_| Server::start(&["--redis", url.as_str()])).collect();
    for s in &n {
        wait_up(s);
    }
    n[0].register("s");
    let mut a = n[1].client("s");
    n[0].bind("s", &a.id, "g", "ua");
    assert_eq!(notice(&mut a, 1001), a.id);
    let _: i64 = query(master.port, redis::cmd("WAIT").arg(1).arg(5000)).unwrap();
    let t = Instant::now();
    let _: String = query(sentinels[0].port, redis::cmd("SENTINEL").arg("FAILOVER").arg("mymaster")).unwrap();
    // The old master lives on as a replica: writes to it are refused (READONLY) until the
    // nodes move to the new one.
    while sentinels[0].master_port() != Some(replica.port) {
        assert!(t.elapsed() < Duration::from_secs(20), "Sentinel never switched");
        std::thread::sleep(Duration::from_millis(50));
    }
    let during = send_until_back(&n[0], t).1;
    for s in &n {
        wait_up(s);
    }
    let id = send_group(&n[0], "s", "g", "on the new master");
    assert_eq!(next_past(&mut a, &during), id);
    assert_eq!(online(&n[0], "s", "g"), vec![a.id.clone()]);
}

#[test]
fn sentinel_failover_keeps_clients_and_groups_and_sends_resume() {
    let dir = Dir::new("sentinel");
    let (mut master, replica, sentinels, url) = sentinel_setup(&dir, None);
    let n: Vec<Server> = (0..2).map(|_| Server::start(&["--redis", url.as_str(), "--presence-ttl", "3s"])).collect();
    for s in &n {
        wait_up(s);
    }
    n[1].register("s");
    let mut a = n[0].client("s");
    let mut b = n[0].client("s");
    n[1].bind("s", &a.id, "g", "ua");
    n[1].bind("s", &b.id, "g", "ub");
    assert_eq!(notice(&mut a, 1001), a.id);
    assert_eq!(notice(&mut a, 1001), b.id);
    assert_eq!(notice(&mut b, 1001), b.id);
    let before = send_group(&n[1], "s", "g", "before");
    assert_eq!(next_message(&mut a)["messageId"], before.as_str());
    assert_eq!(next_message(&mut b)["messageId"], before.as_str());
    // Everything written so far is on the replica (asynchronous replication, waited for here).
    let acked: i64 = query(master.port, redis::cmd("WAIT").arg(1).arg(5000)).unwrap();
    assert_eq!(acked, 1);

    master.stop();
    let killed = Instant::now();
    // Calls answer 503 at once while there is no master, never 500, never hang.
    let back = send_until_back(&n[1], killed);
    let promoted = sentinels[0].master_port();
    assert_eq!(promoted, Some(replica.port), "the replica is the master now");

    // Every node finds the new master; until the last did, a group frame reaches only the
    // nodes that did (docs/CLUSTER.md). Then the clients, still connected, get every send.
    for s in &n {
        wait_up(s);
    }
    eprintln!("every node on the new master {:?} after the kill", killed.elapsed());
    let id = send_group(&n[1], "s", "g", "healthy again");
    for c in [&mut a, &mut b] {
        assert_eq!(next_past(c, &back.1), id);
    }
    for s in &n {
        assert_eq!(online(s, "s", "g"), sorted(vec![a.id.clone(), b.id.clone()]));
    }
    let (st, _) = n[0].api("register", None, json!({"systemId": "s"}));
    assert_eq!(st, 409, "the registered system survived");
    n[0].register("s2");
    let mut c = n[1].client("s2");
    n[0].bind("s2", &c.id, "g", "uc");
    assert_eq!(notice(&mut c, 1001), c.id);
    // A client leaving after the failover is told to the others through the new master.
    drop(b);
    let gone = notice(&mut a, 1002);
    assert_ne!(gone, a.id);
}

#[test]
fn rediss_sentinel_finds_and_follows_the_master_over_tls() {
    let dir = Dir::new("tls-sentinel");
    let (cert, key) = write_cert(&dir);
    let ca = cert.display().to_string();
    let (mut master, replica, sentinels, url) = sentinel_setup(&dir, Some((&cert, &key)));
    assert!(url.starts_with("rediss+sentinel://"));
    let n: Vec<Server> = (0..2).map(|_| Server::start(&["--redis", url.as_str(), "--redis-ca", ca.as_str()])).collect();
    for s in &n {
        wait_up(s);
    }
    n[1].register("s");
    let mut a = n[0].client("s");
    n[1].bind("s", &a.id, "g", "ua");
    assert_eq!(notice(&mut a, 1001), a.id);
    let id = send_group(&n[1], "s", "g", "over tls, found through Sentinel");
    assert_eq!(next_message(&mut a)["messageId"], id.as_str());
    let _: i64 = query_tls(master.port, Some(&cert), redis::cmd("WAIT").arg(1).arg(5000)).unwrap();

    master.stop();
    let during = send_until_back(&n[1], Instant::now()).1;
    assert_eq!(sentinels[0].master_port(), Some(replica.port));
    for s in &n {
        wait_up(s);
    }
    let id = send_group(&n[1], "s", "g", "after the failover");
    assert_eq!(next_past(&mut a, &during), id);
    assert_eq!(online(&n[0], "s", "g"), vec![a.id.clone()]);
}

/// A TCP forwarder to `to` that can be cut: while cut it closes every connection it holds
/// and refuses new ones (a node behind it cannot reach Redis; the others can).
struct Cuttable {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    held: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Cuttable {
    fn start(to: u16) -> Cuttable {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::<std::net::TcpStream>::new()));
        let (c, h) = (std::sync::Arc::clone(&cut), std::sync::Arc::clone(&held));
        std::thread::spawn(move || {
            for a in l.incoming().flatten() {
                let Ok(b) = std::net::TcpStream::connect(("127.0.0.1", to)) else { continue };
                // Checked and recorded under the lock `set_cut` takes: none slips through a cut.
                let mut held = h.lock().unwrap();
                if c.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: closed
                }
                held.extend([a.try_clone().unwrap(), b.try_clone().unwrap()]);
                drop(held);
                for (mut from, mut into) in [(a.try_clone().unwrap(), b.try_clone().unwrap()), (b, a)] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut into);
                        let _ = into.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Cuttable { port, cut, held }
    }

    fn set_cut(&self, cut: bool) {
        let mut held = self.held.lock().unwrap();
        self.cut.store(cut, std::sync::atomic::Ordering::SeqCst);
        if cut {
            for s in held.drain(..) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

impl Drop for Cuttable {
    /// Closes what it forwards (its listener thread lives until the test process ends).
    fn drop(&mut self) {
        self.set_cut(true);
    }
}

/// Found by the chaos soak with users: after a Redis failover that took longer than
/// `presence_ttl`, the first node back found the others' heartbeats expired and reaped them,
/// alive: `client_disconnected` (`node_lost`) and `user_offline` for connected clients, 1002
/// to their groups. A node now reaps only once it has itself been on Redis for a whole
/// `presence_ttl`, time for every live node to beat again. (Here node 1 reaches Redis through
/// a forwarder that keeps it away 300 ms longer than node 0.)
#[test]
fn an_outage_longer_than_presence_ttl_reaps_no_live_node() {
    let redis = Redis::start();
    let rx = util::hooks::Receiver::start(None);
    let url = rx.url();
    let args = ["--presence-ttl", "1s", "--webhook-url", &url, "--webhook-batch-delay", "20ms"];
    // Each node reaches Redis through a forwarder of its own: both lose Redis, node 0 comes
    // back first, node 1 300 ms later (well within presence_ttl).
    let proxies = [Cuttable::start(redis.port), Cuttable::start(redis.port)];
    let ns: Vec<Server> = proxies
        .iter()
        .map(|p| Server::start(&[&["--redis", &format!("redis://127.0.0.1:{}", p.port)][..], &args].concat()))
        .collect();
    ns.iter().for_each(wait_up);
    ns[0].register("a");
    let (mut c0, mut c1) = (ns[0].client("a"), ns[1].client("a"));
    ns[0].bind("a", &c0.id, "room", "ann");
    notice(&mut c0, 1001);
    ns[1].bind("a", &c1.id, "room", "bob");
    assert_eq!((notice(&mut c0, 1001), notice(&mut c1, 1001)), (c1.id.clone(), c1.id.clone()));
    rx.wait("both online", |e| e.iter().filter(|e| e["name"] == "user_online").count() == 2);
    proxies.iter().for_each(|p| p.set_cut(true));
    for s in &ns {
        let t = Instant::now();
        while health(s)["cluster"] == "up" {
            assert!(t.elapsed() < Duration::from_secs(15), "a node never noticed Redis was cut off");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    std::thread::sleep(Duration::from_millis(1500)); // both heartbeats expire
    proxies[0].set_cut(false);
    wait_up(&ns[0]);
    std::thread::sleep(Duration::from_millis(300));
    proxies[1].set_cut(false);
    wait_up(&ns[1]);
    std::thread::sleep(Duration::from_millis(3000)); // three presence_ttl: any reap is done
    let lost: Vec<_> =
        rx.events().into_iter().filter(|e| e["name"] == "client_disconnected" || e["name"] == "user_offline").collect();
    assert!(lost.is_empty(), "live clients told gone: {lost:#?}");
    assert_eq!(sorted(online(&ns[1], "a", "room")), sorted(vec![c0.id.clone(), c1.id.clone()]));
    c0.expect_silence(Duration::from_millis(200));
    c1.expect_silence(Duration::from_millis(200));
}
