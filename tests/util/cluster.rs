//! Cluster-mode helpers: a `redis-server` of the test's own on a free loopback port (or, with
//! `ROOMCAST_TEST_REDIS=cluster`, a Redis Cluster of six: [`Redis::start_cluster`]), and
//! `roomcast` nodes started against it.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{Client, Server};

/// A `redis-server` of our own; killed on drop.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    password: Option<&'static str>,
    /// More `redis-server` arguments (`--replicaof`, TLS files…).
    extra: Vec<String>,
    /// Serves TLS only, on `port`.
    tls: bool,
    /// A Redis Cluster's servers (this one then is only their handle: `url`, `stop`, `spawn`
    /// act on them all).
    pub members: Vec<Redis>,
    /// A cluster member keeps its directory (its `nodes.conf`) across `stop` and `spawn`.
    keep_dir: bool,
    /// TLS: the CA `redis-cli` trusts.
    ca: Option<std::path::PathBuf>,
}

/// A free port for a Redis Cluster server: at most 55535, with the port 10000 above it (its
/// cluster bus) free too (Redis refuses higher ones).
fn cluster_port() -> u16 {
    loop {
        let port = fastrand::u16(20000..=55535);
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10000) {
            return port;
        }
    }
}

/// Whether the tests run against a Redis Cluster (`ROOMCAST_TEST_REDIS=cluster`).
pub fn on_redis_cluster() -> bool {
    std::env::var("ROOMCAST_TEST_REDIS").is_ok_and(|v| v == "cluster")
}

impl Redis {
    /// One Redis, or a Redis Cluster with `ROOMCAST_TEST_REDIS=cluster`.
    pub fn start() -> Redis {
        Self::start_with(None)
    }

    pub fn start_with(password: Option<&'static str>) -> Redis {
        if on_redis_cluster() {
            return Self::start_cluster(password);
        }
        Self::launch(password, Vec::new(), false)
    }

    /// A Redis Cluster: three masters with a replica each (`redis-cli --cluster create`),
    /// `cluster-node-timeout` 1 s, ready (`cluster_state:ok` on every server).
    pub fn start_cluster(password: Option<&'static str>) -> Redis {
        Self::cluster(password, None, 1)
    }

    /// A Redis Cluster of three masters serving TLS only (the bus and replication too), with
    /// this certificate and key (PEM files; the certificate is its own CA).
    pub fn start_cluster_tls(cert: &std::path::Path, key: &std::path::Path) -> Redis {
        Self::cluster(None, Some((cert, key)), 0)
    }

    fn cluster(
        password: Option<&'static str>,
        tls: Option<(&std::path::Path, &std::path::Path)>,
        replicas: usize,
    ) -> Redis {
        // A replica takes over however long ago it last heard from its master (validity
        // factor 0: one that synced and idled would refuse to, and the shard stay down).
        let conf = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "1000",
            "--cluster-replica-validity-factor",
            "0",
        ];
        let mut extra: Vec<String> = conf.iter().map(|a| a.to_string()).collect();
        if let Some(p) = password {
            extra.extend(["--masterauth".to_string(), p.to_string()]);
        }
        if let Some((cert, key)) = tls {
            let (cert, key) = (cert.display().to_string(), key.display().to_string());
            extra.extend([
                "--tls-cert-file".into(),
                cert.clone(),
                "--tls-key-file".into(),
                key,
                "--tls-ca-cert-file".into(),
                cert,
            ]);
            extra.extend(
                ["--tls-auth-clients", "no", "--tls-cluster", "yes", "--tls-replication", "yes"].map(String::from),
            );
        }
        let ca = tls.map(|(cert, _)| cert.to_path_buf());
        let members: Vec<Redis> = (0..3 * (1 + replicas))
            .map(|_| {
                let port = cluster_port();
                let mut r = Redis {
                    child: None,
                    port,
                    password,
                    extra: extra.clone(),
                    tls: tls.is_some(),
                    members: Vec::new(),
                    keep_dir: true,
                    ca: ca.clone(),
                };
                r.spawn();
                r
            })
            .collect();
        let mut create = Command::new("redis-cli");
        if let Some(ca) = &ca {
            create.arg("--tls").arg("--cacert").arg(ca);
        }
        create.arg("--cluster").arg("create");
        create.args(members.iter().map(|m| format!("127.0.0.1:{}", m.port)));
        create.args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"]);
        if let Some(p) = password {
            create.args(["-a", p, "--no-auth-warning"]);
        }
        let out = create.output().expect("redis-cli must be installed (apt-get install redis-server)");
        assert!(out.status.success(), "redis-cli --cluster create: {}", String::from_utf8_lossy(&out.stdout));
        let handle = Redis {
            child: None,
            port: members[0].port,
            password,
            extra: Vec::new(),
            tls: tls.is_some(),
            members,
            keep_dir: false,
            ca,
        };
        handle.wait_cluster_ok();
        handle
    }

    /// Waits until every running member says `cluster_state:ok` and agrees on the masters.
    pub fn wait_cluster_ok(&self) {
        let t = Instant::now();
        loop {
            let ok = self
                .members
                .iter()
                .filter(|m| m.child.is_some())
                .all(|m| m.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"));
            if ok {
                return;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "the Redis Cluster did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `redis-cli` against this server: its output (empty if it failed).
    pub fn cli(&self, args: &[&str]) -> String {
        let mut c = Command::new("redis-cli");
        if let Some(ca) = &self.ca {
            c.arg("--tls").arg("--cacert").arg(ca);
        }
        c.args(["-p", &self.port.to_string()]);
        if let Some(p) = self.password {
            c.args(["-a", p, "--no-auth-warning"]);
        }
        let out = c.args(args).output().expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A plain `redis-server` with more arguments.
    pub fn start_args(extra: &[&str]) -> Redis {
        Self::launch(None, extra.iter().map(|a| a.to_string()).collect(), false)
    }

    /// A `redis-server` serving TLS only, with this certificate and key (PEM files).
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> Redis {
        Self::start_tls_args(cert, key, &[])
    }

    /// A TLS-only `redis-server` with more arguments (`--replicaof`, `--tls-replication yes`…).
    pub fn start_tls_args(cert: &std::path::Path, key: &std::path::Path, more: &[&str]) -> Redis {
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        let mut extra = vec!["--tls-cert-file".into(), cert, "--tls-key-file".into(), key];
        extra.extend(["--tls-auth-clients", "no"].iter().chain(more).map(|a| a.to_string()));
        Self::launch(None, extra, true)
    }

    /// On a free loopback port.
    fn launch(password: Option<&'static str>, extra: Vec<String>, tls: bool) -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut r = Redis { child: None, port, password, extra, tls, members: Vec::new(), keep_dir: false, ca: None };
        r.spawn();
        r
    }

    /// Starts the server (again: a cluster's members all, and waits for the cluster).
    pub fn spawn(&mut self) {
        if !self.members.is_empty() {
            self.members.iter_mut().for_each(Redis::spawn);
            return self.wait_cluster_ok();
        }
        let mut args = match self.tls {
            false => vec!["--port".to_string(), self.port.to_string()],
            true => {
                ["--port", "0", "--tls-port"].map(String::from).into_iter().chain([self.port.to_string()]).collect()
            }
        };
        args.extend(self.extra.iter().cloned());
        // Its own empty directory: a replica's full sync writes dump.rdb there, and a later
        // redis-server started in the same directory would load it.
        let dir = self.dir();
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&dir);
        }
        std::fs::create_dir_all(&dir).unwrap();
        args.extend(["--dir".to_string(), dir.display().to_string()]);
        args.extend(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"].map(String::from));
        if let Some(p) = self.password {
            args.extend(["--requirepass".to_string(), p.to_string()]);
        }
        let child = Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        self.child = Some(child);
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(t.elapsed() < Duration::from_secs(10), "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn dir(&self) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("roomcast-redis-{}-{}", std::process::id(), self.port))
    }

    /// Kills the server at once (SIGKILL), as a crash would (a cluster's members all; they
    /// come back with their data gone and their cluster membership kept).
    pub fn stop(&mut self) {
        self.members.iter_mut().for_each(Redis::stop);
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // (A cluster's handle has no directory of its own: its port is its first member's.)
        if !self.keep_dir && self.members.is_empty() {
            let _ = std::fs::remove_dir_all(self.dir());
        }
    }

    /// The running server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn url(&self) -> String {
        if !self.members.is_empty() {
            let seeds: Vec<String> = self.members.iter().take(3).map(|m| format!("127.0.0.1:{}", m.port)).collect();
            let auth = self.password.map(|p| format!(":{p}@")).unwrap_or_default();
            let scheme = if self.tls { "rediss+cluster" } else { "redis+cluster" };
            return format!("{scheme}://{auth}{}", seeds.join(","));
        }
        if self.tls {
            return format!("rediss://127.0.0.1:{}", self.port);
        }
        match self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        if self.keep_dir {
            let _ = std::fs::remove_dir_all(self.dir());
        }
    }
}

pub fn health(s: &Server) -> Value {
    let (_, body) = s.raw(b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n");
    serde_json::from_str(&body).unwrap()
}

pub fn wait_up(s: &Server) {
    let t = Instant::now();
    while health(s)["cluster"] != "up" {
        assert!(t.elapsed() < Duration::from_secs(15), "node never reached Redis: {}", health(s));
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn node(redis: &Redis, extra: &[&str]) -> Server {
    let url = redis.url();
    let mut args = vec!["--redis", url.as_str()];
    args.extend_from_slice(extra);
    let s = Server::start(&args);
    wait_up(&s);
    s
}

pub fn nodes(redis: &Redis, n: usize, extra: &[&str]) -> Vec<Server> {
    (0..n).map(|_| node(redis, extra)).collect()
}

pub fn online(s: &Server, system: &str, group: &str) -> Vec<String> {
    let (st, v) = s.api("get_online_list", Some(system), json!({"groupName": group}));
    assert_eq!(st, 200, "{v}");
    let mut l: Vec<String> = v["data"]["list"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().into()).collect();
    assert_eq!(v["data"]["count"], l.len());
    l.sort();
    l
}

pub fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

pub fn send_group(s: &Server, system: &str, group: &str, msg: &str) -> String {
    let (st, v) =
        s.api("send_to_group", Some(system), json!({"groupName": group, "code": 0, "msg": msg, "data": {"n": 1}}));
    assert_eq!(st, 200, "{v}");
    v["data"]["messageId"].as_str().unwrap().to_string()
}

/// The clientId in the next notice with `code` (1001 online, 1002 offline), skipping other frames.
pub fn notice(c: &mut Client, code: i64) -> String {
    let v = c.expect_code(code);
    let data: Value = serde_json::from_str(v["data"].as_str().expect("notice data is a JSON string")).unwrap();
    data["clientId"].as_str().unwrap().to_string()
}

/// The next frame that is not a 1001/1002 notice.
pub fn next_message(c: &mut Client) -> Value {
    loop {
        let v = c.recv().expect("a frame");
        if v["code"] != 1001 && v["code"] != 1002 {
            return v;
        }
    }
}

/// Sends to group "g" of system "s" through `s` until one is answered 200 (only 503 before it, each call
/// quick); returns how long that took and the message id.
pub fn send_until_back(s: &Server, since: Instant) -> (Duration, String) {
    let mut refused = 0;
    loop {
        let call = Instant::now();
        let (st, v) =
            s.api("send_to_group", Some("s"), json!({"groupName": "g", "code": 0, "msg": "after", "data": 1}));
        assert!(call.elapsed() < Duration::from_secs(4), "a call hung for {:?}", call.elapsed());
        if st == 200 {
            eprintln!("group sends back {:?} after the failover began ({refused} calls answered 503)", since.elapsed());
            return (since.elapsed(), v["data"]["messageId"].as_str().unwrap().to_string());
        }
        assert_eq!(st, 503, "{v}");
        refused += 1;
        assert!(since.elapsed() < Duration::from_secs(30), "sends never came back");
        std::thread::sleep(Duration::from_millis(100));
    }
}
