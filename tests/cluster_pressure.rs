//! Cluster mode when a node's hub falls behind what Redis brings: thousands of members in one
//! group on node B, a flood of sends into it through node A. B's subscriber must never wait on
//! its hub (Redis would drop B's pub/sub connection past its output buffer limit, and every
//! frame meanwhile would be lost unseen), its heartbeats must never wait behind frames, and
//! what it cannot take must be counted exactly and make the sessions that missed it
//! unrecoverable instead of silently incomplete.
mod util;

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use util::cluster::*;
use util::rawws::RawWs;
use util::*;

const MEMBERS: usize = 2000;
const SENDERS: usize = 4;
const SENDS_EACH: usize = 1500;
/// Bytes of each frame's data: 6,000 frames of it are more than the socket buffers between
/// Redis and node B hold, so a reader that waits on its hub makes Redis drop it.
const DATA: usize = 2000;

/// Reads and discards everything `socks` receive until `stop` (the members must read, or they
/// would be closed as slow consumers).
fn drain(socks: Vec<std::net::TcpStream>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut poll = mio::Poll::new().unwrap();
        let mut socks: Vec<mio::net::TcpStream> = socks
            .into_iter()
            .map(|s| {
                s.set_nonblocking(true).unwrap();
                mio::net::TcpStream::from_std(s)
            })
            .collect();
        for (i, s) in socks.iter_mut().enumerate() {
            poll.registry().register(s, mio::Token(i), mio::Interest::READABLE).unwrap();
        }
        let mut events = mio::Events::with_capacity(1024);
        let mut buf = vec![0u8; 1 << 16];
        while !stop.load(Ordering::Relaxed) {
            poll.poll(&mut events, Some(Duration::from_millis(50))).unwrap();
            for ev in events.iter() {
                let s = &mut socks[ev.token().0];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                }
            }
        }
    })
}

#[test]
fn a_hub_that_falls_behind_loses_nothing_unseen() {
    // Redis drops a subscriber holding more than 256 kB (or 64 kB for a second) of output: so
    // tight that node B's reader must never wait for its hub (`--redis-max-stall 0`; with the
    // default 100 ms per second, a reader on a loaded 2-core machine was seen not to catch up).
    flood(&["--client-output-buffer-limit", "pubsub 256kb 64kb 1"], "0");
    // Redis's default limits and the default budget: the reader waits for its hub within the
    // budget, and still what it drops is counted exactly. (One after the other: two floods at
    // once on two cores would measure each other.)
    flood(&[], "100ms");
}

/// The flood through node A into node B's big group, with `redis_args` for Redis and
/// `max_stall` as B's `redis_max_stall`.
fn flood(redis_args: &[&str], max_stall: &str) {
    let redis = Redis::start_args(redis_args);
    let fast = ["--presence-ttl", "2s"];
    let a = node(&redis, &fast);
    let b_args = ["--shards", "1", "--hub-queue", "16", "--shard-queue", "16", "--redis-max-stall", max_stall];
    let slow = [&fast[..], &b_args[..]].concat();
    // Room for everything: what the recoverable member misses is only what was lost.
    let room =
        ["--output-hard-limit", "67108864", "--output-soft-limit", "67108864", "--recovery-max-bytes", "67108864"];
    let slow = [&slow[..], &room[..]].concat();
    let b = node(&redis, &slow);
    a.register("s");
    // B's members, drained by one thread; one plain and one recoverable member the test reads.
    let mut hb = Http::new(&b);
    let mut socks = Vec::new();
    for _ in 0..MEMBERS {
        let mut m = RawWs::connect(b.addr, "/ws?systemId=s", None);
        let id = m.data().expect("connect frame").json()["data"]["clientId"].as_str().unwrap().to_string();
        let (st, v) = hb.call("bind_to_group", "s", &json!({"clientId": id, "groupName": "g", "notify": false}));
        assert_eq!(st, 200, "{v}");
        socks.push(m.sock);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let drainer = drain(socks, stop.clone());
    let mut plain = b.client("s");
    b.bind("s", &plain.id, "g", "plain");
    let mut rc = Client::connect(&b.url("/ws?systemId=s&recover=1"));
    let hello = rc.recv().unwrap();
    let rc_id = hello["data"]["clientId"].as_str().unwrap().to_string();
    let resume = hello["data"]["resumeToken"].as_str().unwrap().to_string();
    b.bind("s", &rc_id, "g", "rc");
    plain.expect_code(1001);
    plain.expect_code(1001);

    // The flood, through A.
    let sent = SENDERS * SENDS_EACH;
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let addr = a.addr;
            std::thread::spawn(move || {
                let data = "d".repeat(DATA);
                for _ in 0..SENDS_EACH {
                    let body = json!({"groupName": "g", "msg": "f", "data": data});
                    let (st, v) = api_at(addr, "send_to_group", Some("s"), None, body);
                    assert_eq!(st, 200, "{v}");
                }
            })
        })
        .collect();
    // Members that join in the middle of the flood (their join markers may find the hub's
    // queue full): each must still become a member here.
    std::thread::sleep(Duration::from_millis(300));
    let mut late: Vec<Client> = (0..20).map(|_| b.client("s")).collect();
    for c in &late {
        let (st, v) = hb.call("bind_to_group", "s", &json!({"clientId": c.id, "groupName": "g", "notify": false}));
        assert_eq!(st, 200, "{v}");
    }
    let mut got = 0usize;
    plain.set_timeout(Duration::from_secs(20));
    for s in senders {
        s.join().unwrap();
    }
    // Everything not lost arrives; what is lost is counted: the two add up exactly.
    let lost = || metric(&b, "cluster_redis_dropped_total") + metric(&b, "cluster_redis_missed_total");
    let t = Instant::now();
    while got as u64 + lost() < sent as u64 {
        assert!(t.elapsed() < Duration::from_secs(60), "got {got}, lost {}, of {sent}", lost());
        match plain.recv() {
            Some(v) if v["msg"] == "f" => got += 1,
            Some(_) => {}
            None => panic!("nothing more for 20 s, or the connection ended: got {got}, lost {}, of {sent}", lost()),
        }
    }
    plain.expect_silence(Duration::from_millis(500));
    let lost = lost();
    assert_eq!(got as u64 + lost, sent as u64, "every frame arrived or was counted lost");
    eprintln!("pressure (redis_max_stall {max_stall}): {sent} sent, {got} delivered, {lost} counted lost");
    assert!(lost > 0, "the flood did not outrun node B's hub: the test proves nothing (raise MEMBERS or the sends)");
    assert_eq!(metric(&b, "cluster_redis_errors_total"), 0, "Redis never dropped node B's connection");

    // The flood is over: a send now reaches every member, the late ones too.
    let (st, v) = a.api("send_to_group", Some("s"), json!({"groupName": "g", "msg": "after"}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(plain.expect_code(0)["msg"], "after");
    for c in &mut late {
        c.set_timeout(Duration::from_secs(20));
        let f = loop {
            let v = c.recv().expect("a late member still gets frames");
            if v["msg"] == "after" {
                break v;
            }
        };
        assert_eq!(f["msg"], "after");
    }

    // The recoverable member never read a frame: it resumes from its connect frame. With a
    // loss, its session cannot be complete any more: a fresh one, not a silently holed one.
    socket2::SockRef::from(rc.ws.get_ref()).set_linger(Some(Duration::ZERO)).unwrap();
    drop(rc);
    wait_metric(&b, "recovery_sessions", 1, "the drop was not noticed");
    let mut back = Client::connect(&b.url(&format!("/ws?systemId=s&recover=1&resume={resume}")));
    let again = back.recv().unwrap();
    assert_eq!(again["data"]["recovered"], false, "a session that missed frames is not recovered: {again}");
    assert!(metric(&b, "recovery_losses_total") >= 1);

    // B's heartbeats went on through all of it: A never took it for dead.
    assert_eq!(metric(&a, "cluster_reaped_total"), 0, "node B was reaped while alive");
    assert!(online(&a, "s", "g").contains(&plain.id));
    stop.store(true, Ordering::Relaxed);
    drainer.join().unwrap();
}
