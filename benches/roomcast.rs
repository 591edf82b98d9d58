//! Criterion benches of the per-message path: `cargo bench`.
//!
//! - `frame_build`: one push frame (JSON + WebSocket header) into a shared buffer
//! - `json_parse`: an API body with serde_json (borrowed `RawValue` data, what the server
//!   uses) vs simd-json (DOM parse, then `data` re-serialized to keep it as JSON)
//! - `http_parse`: one API request head
//! - `ws_upgrade`: a browser's upgrade request to its 101 + connect frame (the protocol work
//!   of one WebSocket connect, no sockets)
//! - `hub_fanout`: the hub routing one `send_to_group` to a 10,000-member group on 2 shards
//! - `output_queue`: 64 shared frames queued on a connection and flushed by `writev` into a
//!   mock writer

use std::io::{self, IoSlice, Write};
use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use roomcast::hub::{Hub, ShardLink};
use roomcast::ids::ConnId;
use roomcast::metrics::HubStats;
use roomcast::msg::{Command, Op, ShardMsg, SystemRef};
use roomcast::protocol::{api, http};
use roomcast::shard::{Buf, OutQueue};

const BODY: &[u8] = br#"{"groupName":"room-42","sendUserId":"user-1234","code":200,"msg":"chat","data":{"text":"hello everyone, this is a chat message of typical size","ts":1763779200123,"tags":["a","b"]}}"#;

fn frame_build(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_build");
    let body = api::parse_body(BODY).unwrap();
    let big = format!(r#"{{"data":"{}"}}"#, "x".repeat(4000));
    let big_body = api::parse_body(big.as_bytes()).unwrap();
    for (name, data) in [("100B", body.data), ("4KB", big_body.data)] {
        let len = api::push_frame("9fa54bdbbf2778cb", "user-1234", 200, "chat", data).len();
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(name, |b| {
            b.iter(|| api::push_frame(black_box("9fa54bdbbf2778cb"), "user-1234", 200, "chat", data))
        });
    }
    g.finish();
}

/// permessage-deflate: one compression per message (shared by every compressing recipient)
/// and one inflation per compressed client message, at the default level 1.
fn deflate(c: &mut Criterion) {
    use roomcast::protocol::deflate::{Deflater, Inflater};
    let mut g = c.benchmark_group("deflate");
    let words = ["the", "room", "is", "open", "and", "we", "play", "next", "round", "score", "team", "wins"];
    let text: String = (0..120).map(|i| words[(i * 7 + i / 3) % words.len()]).collect::<Vec<_>>().join(" ");
    let body = format!(
        r#"{{"messageId":"9fa54bdbbf2778cb","sendUserId":"user-1234","code":200,"msg":"chat","data":{{"text":"{text}"}}}}"#
    );
    let mut d = Deflater::new(1);
    let z = d.frame(0x1, body.as_bytes()).expect("compressible");
    let zp = roomcast::protocol::ws::payload(&z).to_vec();
    println!("deflate: {} bytes -> {} bytes", body.len(), zp.len());
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("compress_600B", |b| b.iter(|| d.frame(0x1, black_box(body.as_bytes()))));
    let mut i = Inflater::default();
    g.bench_function("inflate_600B", |b| b.iter(|| i.message(black_box(&zp), 8192)));
    g.finish();
}

fn json_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("json_parse");
    g.throughput(Throughput::Bytes(BODY.len() as u64));
    g.bench_function("serde_json_rawvalue", |b| {
        b.iter(|| {
            let body = api::parse_body(black_box(BODY)).unwrap();
            black_box((body.group_name.as_deref().map(str::len), body.data.map(|d| d.get().len())))
        })
    });
    g.bench_function("simd_json_dom", |b| {
        b.iter_batched(
            || BODY.to_vec(),
            |mut buf| {
                use simd_json::prelude::*;
                let v = simd_json::to_borrowed_value(&mut buf).unwrap();
                let group = v.get_str("groupName").map(str::len);
                let data = v.get("data").map(|d| simd_json::to_string(d).unwrap().len());
                black_box((group, data))
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn http_parse(c: &mut Criterion) {
    let req = format!(
        "POST /api/send_to_group HTTP/1.1\r\nHost: 127.0.0.1:7800\r\nSystemId: sys\r\nAuthorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3NjM3ODAwMDB9.sig\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        BODY.len()
    );
    let mut g = c.benchmark_group("http_parse");
    g.throughput(Throughput::Bytes(req.len() as u64));
    g.bench_function("api_request_head", |b| {
        b.iter(|| http::parse_head(black_box(req.as_bytes()), 8192, 1 << 20).unwrap())
    });
    g.finish();
}

/// A browser-like upgrade request (Chrome's headers) to the bytes of the 101 and the connect
/// frame, as the shard builds them for a client of a system it knows.
pub const UPGRADE: &[u8] = b"GET /ws?systemId=chat-prod HTTP/1.1\r\nHost: rt.example.com\r\nConnection: Upgrade\r\nPragma: no-cache\r\nCache-Control: no-cache\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\nUpgrade: websocket\r\nOrigin: https://app.example.com\r\nSec-WebSocket-Version: 13\r\nAccept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-US,en;q=0.9\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

fn ws_upgrade(c: &mut Criterion) {
    let mut g = c.benchmark_group("ws_upgrade");
    let conn = ConnId { shard: 1, slot: 4242, gen: 987_654 };
    g.bench_function("request_to_101_and_connect_frame", |b| {
        b.iter(|| {
            let head = http::parse_head(black_box(UPGRADE), 8192, 0).unwrap().unwrap();
            let system = head.query_param("systemId").unwrap();
            let mut out = http::switching_protocols(head.ws_key.unwrap(), None, None);
            let id = roomcast::ids::client_id_buf(7, conn);
            api::push_welcome_frame(&mut out, id.as_str());
            (system.len(), bytes::Bytes::from(out))
        })
    });
    g.finish();
}

fn hub_fanout(c: &mut Criterion) {
    const MEMBERS: u32 = 10_000;
    const SHARDS: usize = 2;
    let polls: Vec<mio::Poll> = (0..SHARDS).map(|_| mio::Poll::new().unwrap()).collect();
    let mut links = Vec::new();
    let mut rxs = Vec::new();
    let mut reply_rxs = Vec::new();
    for p in &polls {
        let (tx, rx) = crossbeam_channel::bounded(1 << 16);
        let (replies, replies_rx) = crossbeam_channel::bounded(1 << 16);
        links.push(ShardLink { tx, replies, waker: Arc::new(mio::Waker::new(p.registry(), mio::Token(0)).unwrap()) });
        rxs.push(rx);
        reply_rxs.push(replies_rx);
    }
    let args = roomcast::config::ServeArgs {
        notify_max_group_size: Some(0),
        node_id: Some(roomcast::config::NodeId(1)),
        ..Default::default()
    };
    let cfg = Arc::new(args.resolve().expect("valid settings"));
    let mut hub = Hub::new(cfg, links, Arc::new(HubStats::default()), None, None);
    let from = ConnId { shard: 0, slot: u32::MAX, gen: 1 };
    hub.handle(Command::Api { from, system: "s".into(), op: Op::Register, answered: false });
    for i in 0..MEMBERS {
        let conn = ConnId { shard: (i % SHARDS as u32) as u16, slot: i, gen: 1 };
        hub.handle(Command::Connect { conn, system: SystemRef::Name("s".into()), welcomed: false, grant: None });
        let client = roomcast::ids::ClientRef { node: 1, conn };
        let op = Op::Bind { client, group: "g".into(), user_id: Some("".into()), extend: "".into(), notify: false };
        hub.handle(Command::Api { from, system: "s".into(), op, answered: false });
    }
    let drain = |rxs: &[crossbeam_channel::Receiver<ShardMsg>]| {
        let mut targets = 0;
        for rx in rxs {
            while let Ok(m) = rx.try_recv() {
                if let ShardMsg::Deliver { targets: t, .. } = m {
                    targets += t.len();
                }
            }
        }
        targets
    };
    drain(&rxs);
    for r in &reply_rxs {
        while r.try_recv().is_ok() {}
    }
    let frame = api::push_frame("9fa54bdbbf2778cb", "u", 200, "m", None);
    let mut g = c.benchmark_group("hub_fanout");
    g.throughput(Throughput::Elements(MEMBERS as u64));
    g.bench_function("send_to_group_10k_members_2_shards", |b| {
        b.iter(|| {
            let op = Op::SendToGroup { group: "g".into(), frame: frame.clone(), message_id: "m".into() };
            hub.handle(Command::Api { from, system: "s".into(), op, answered: true });
            assert_eq!(drain(&rxs), MEMBERS as usize);
        })
    });
    g.finish();
}

/// Accepts everything, like a socket with room.
struct Sink(usize);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let n = bufs.iter().map(|b| b.len()).sum();
        self.0 += n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn output_queue(c: &mut Criterion) {
    // As on the delivery path: one shard-local handle per message, cloned per recipient.
    let frame: Buf = Buf::new(api::push_frame("9fa54bdbbf2778cb", "user-1234", 200, "chat", None));
    let mut g = c.benchmark_group("output_queue");
    g.throughput(Throughput::Elements(64));
    g.bench_function("queue_64_frames_then_writev", |b| {
        let mut sink = Sink(0);
        b.iter(|| {
            let mut q = OutQueue::default();
            for _ in 0..64 {
                q.push_shared(frame.clone());
            }
            let (n, calls) = q.write_to(&mut sink).unwrap();
            black_box((n, calls))
        })
    });
    g.finish();
}

criterion_group!(benches, frame_build, deflate, json_parse, http_parse, ws_upgrade, hub_fanout, output_queue);
criterion_main!(benches);
