//! Redis Cluster (`redis+cluster://`): the slot map, and the broker's command connection that
//! sends each command of a pipeline to the master of its key's hash slot.
//!
//! Every multi-key step roomcast runs stays inside one slot (the group's keys and channel carry
//! one hash tag: [`super::keys`]), so a pipeline splits cleanly by master. Per master the
//! commands keep their order, and a group's commands all go to one master: a group's order,
//! which is what the design relies on, holds as on one Redis. (Across groups, and between a
//! group and a node's channel, there is no order on a Redis Cluster.)
//!
//! A command answered `MOVED` (its slot has a new master: resharding, failover) is sent again
//! to the master named, and the slot map learns it — after [`MOVED_GRACE`]: the nodes
//! subscribed to the slot's channels hear from the old master that it let them go and
//! subscribe on the new one meanwhile, so what is published there after the pause reaches
//! them. `ASK` (the key moved to the target of a migration still under way) is waited out the
//! same way, [`RETRY_PAUSE`] at a time, for up to [`ASK_PATIENCE`], before it is followed
//! (`ASKING` to the target): a step run on the target during the migration would publish
//! where no node subscribes yet. `TRYAGAIN` and `CLUSTERDOWN` are sent again after a pause;
//! `NOSCRIPT` (a master that never had our scripts) loads them there and sends again. All of
//! it within [`REDIRECT_DEADLINE`]; an I/O error fails the whole pipeline, as on one Redis
//! (the broker then reconnects and re-writes this node's state).
//!
//! The redis crate's own cluster connection is not used: its pipelines refuse `EVALSHA`, which
//! every presence step is, and its slot map, which the pub/sub side needs to know where to
//! `SSUBSCRIBE`, is private to it.

use std::collections::HashMap;
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionLike, IntoConnectionInfo, RedisError, RedisResult, Value};

use super::endpoint::ClusterUrl;

/// Hash slots in a Redis Cluster.
pub const SLOTS: u16 = 16384;
/// How long one pipeline may be redirected and retried before it fails.
pub const REDIRECT_DEADLINE: Duration = Duration::from_secs(2);
/// How long an `ASK` is waited out (the migration may finish) before it is followed.
pub const ASK_PATIENCE: Duration = Duration::from_secs(1);
/// The pause before sending again what was answered `ASK`, `TRYAGAIN` or `CLUSTERDOWN`.
pub const RETRY_PAUSE: Duration = Duration::from_millis(10);
/// The pause before sending to a slot's new master what its old one answered `MOVED`.
pub const MOVED_GRACE: Duration = Duration::from_millis(50);
/// No master owns this slot (`Topology::owner`).
const NONE: u16 = u16::MAX;

/// A node's address.
pub type Addr = (String, u16);

/// The hash slot of `key` (Redis's rule: CRC16/XMODEM of the key, or of its hash tag — the part
/// between the first `{` and the next `}` when that part is not empty).
pub fn slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(key)) % SLOTS
}

/// How to reach a cluster's nodes: its seeds and what every connection uses (TLS, password).
#[derive(Clone, Debug)]
pub struct Nodes {
    url: ClusterUrl,
    ca: Option<Vec<u8>>,
}

impl Nodes {
    pub fn new(url: ClusterUrl, ca: Option<&[u8]>) -> Result<Nodes, String> {
        let nodes = Nodes { url, ca: ca.map(<[u8]>::to_vec) };
        // Checked now (a bad CA file is refused at start, as for one Redis).
        for seed in &nodes.url.seeds {
            nodes.client(seed)?;
        }
        Ok(nodes)
    }

    pub fn seeds(&self) -> &[Addr] {
        &self.url.seeds
    }

    /// A client for the node at `addr`, with the cluster's password and TLS settings.
    pub fn client(&self, (host, port): &Addr) -> Result<redis::Client, String> {
        let addr = match self.url.tls {
            false => ConnectionAddr::Tcp(host.clone(), *port),
            true => ConnectionAddr::TcpTls { host: host.clone(), port: *port, insecure: false, tls_params: None },
        };
        let info = addr.into_connection_info().map_err(|e| e.to_string())?;
        let mut settings = info.redis_settings().clone();
        if let Some(u) = &self.url.username {
            settings = settings.set_username(u);
        }
        if let Some(p) = &self.url.password {
            settings = settings.set_password(p);
        }
        let info = info.set_redis_settings(settings);
        let client = match (&self.ca, self.url.tls) {
            (Some(ca), true) => {
                let certs = redis::TlsCertificates { client_tls: None, root_cert: Some(ca.clone()) };
                redis::Client::build_with_tls(info, certs)
            }
            _ => redis::Client::open(info),
        };
        client.map_err(|e| format!("Redis Cluster node {host}:{port}: {e}"))
    }
}

/// Which master serves which slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    masters: Vec<Addr>,
    /// Per slot, its master's index in `masters` (or [`NONE`]).
    owner: Vec<u16>,
}

impl Topology {
    /// Reads a `CLUSTER SLOTS` answer given by the node at `asked` (a master listed without an
    /// address is that node). Every slot must be served: a cluster that is not is refused.
    pub fn parse(v: Value, asked: &Addr) -> Result<Topology, String> {
        let Value::Array(ranges) = v else { return Err(format!("CLUSTER SLOTS answered {v:?}")) };
        let mut t = Topology { masters: Vec::new(), owner: vec![NONE; SLOTS as usize] };
        for r in ranges {
            let Value::Array(r) = r else { return Err("a CLUSTER SLOTS entry that is not an array".into()) };
            let (Some(Value::Int(from)), Some(Value::Int(to)), Some(Value::Array(master))) =
                (r.first(), r.get(1), r.get(2))
            else {
                return Err("a CLUSTER SLOTS entry without its slots and master".into());
            };
            let host = match master.first() {
                Some(Value::BulkString(h)) if !h.is_empty() && h != b"?" => String::from_utf8_lossy(h).into_owned(),
                _ => asked.0.clone(),
            };
            let Some(Value::Int(port)) = master.get(1) else { return Err("a master without its port".into()) };
            let addr = (host, u16::try_from(*port).map_err(|_| "a bad port")?);
            let i = match t.masters.iter().position(|m| *m == addr) {
                Some(i) => i,
                None => {
                    t.masters.push(addr);
                    t.masters.len() - 1
                }
            };
            let (from, to) = ((*from).clamp(0, SLOTS as i64 - 1) as usize, (*to).clamp(0, SLOTS as i64 - 1) as usize);
            if from > to {
                return Err(format!("a CLUSTER SLOTS range {from}-{to}"));
            }
            t.owner[from..=to].iter_mut().for_each(|o| *o = i as u16);
        }
        if let Some(free) = t.owner.iter().position(|&o| o == NONE) {
            return Err(format!("the Redis Cluster does not serve every slot (slot {free} has no master)"));
        }
        Ok(t)
    }

    pub fn masters(&self) -> &[Addr] {
        &self.masters
    }

    /// The master of `slot`.
    pub fn master_of(&self, slot: u16) -> &Addr {
        let i = self.owner[slot as usize];
        debug_assert!(i != NONE, "every slot is served (checked by parse)");
        &self.masters[i as usize]
    }

    /// `slot` is served by `addr` now (a `MOVED` said so).
    fn moved(&mut self, slot: u16, addr: Addr) {
        let i = match self.masters.iter().position(|m| *m == addr) {
            Some(i) => i,
            None => {
                self.masters.push(addr);
                self.masters.len() - 1
            }
        };
        self.owner[slot as usize] = i as u16;
    }
}

/// The broker's command connection to a Redis Cluster: one connection per master.
pub struct Sharded {
    nodes: Nodes,
    topo: Topology,
    cons: HashMap<Addr, redis::Connection>,
    /// Loaded on every master connected (a new master, a promoted replica, a flushed cache).
    scripts: Vec<redis::Script>,
    timeout: Duration,
}

/// One command of a packed pipeline: its bytes and the key it is routed by.
struct Packed<'a> {
    bytes: &'a [u8],
    key: Option<&'a [u8]>,
}

/// Where a command goes in a round: by its slot's master, or (`ASK`) to a node with `ASKING`.
#[derive(Clone)]
enum Route {
    Slot(u16),
    Ask(Addr),
    /// A command without a key (`PING`): any master.
    Any,
}

impl Sharded {
    /// Learns the slot map from the first seed that answers and connects to every master.
    pub fn connect(nodes: &Nodes, scripts: Vec<redis::Script>, timeout: Duration) -> Result<Sharded, String> {
        let mut s = Sharded {
            nodes: nodes.clone(),
            topo: Topology { masters: Vec::new(), owner: Vec::new() },
            cons: HashMap::new(),
            scripts,
            timeout,
        };
        let mut why = Vec::new();
        for seed in nodes.seeds() {
            match s.open(seed).and_then(|mut c| Ok((cluster_slots(&mut c, seed)?, c))) {
                Ok((topo, con)) => {
                    s.topo = topo;
                    s.cons.insert(seed.clone(), con);
                    break;
                }
                Err(e) => why.push(format!("{}:{}: {e}", seed.0, seed.1)),
            }
        }
        if s.topo.masters.is_empty() {
            return Err(format!("no Redis Cluster seed answered ({})", why.join("; ")));
        }
        // Only masters are written to: a seed that is a replica is let go.
        s.cons.retain(|a, _| s.topo.masters.contains(a));
        for m in s.topo.masters.clone() {
            s.con(&m)?;
        }
        Ok(s)
    }

    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    /// Asks the slot map again (of `first`, if given, then of the other masters), keeps the
    /// connections to masters still listed; whether the map changed.
    pub fn refresh(&mut self, first: Option<&Addr>) -> Result<bool, String> {
        let mut ask: Vec<Addr> = first.into_iter().cloned().collect();
        ask.extend(self.topo.masters.iter().filter(|m| Some(*m) != first).cloned());
        let mut last = String::from("no master to ask");
        for a in ask {
            let got = self.con(&a).map_err(|e| e.to_string()).and_then(|c| cluster_slots(c, &a));
            match got {
                Ok(t) => {
                    let changed = t != self.topo;
                    self.topo = t;
                    let masters = &self.topo.masters;
                    self.cons.retain(|a, _| masters.contains(a));
                    return Ok(changed);
                }
                Err(e) => {
                    self.cons.remove(&a);
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Opens a connection to `addr` with the timeouts, and loads the scripts there.
    fn open(&self, addr: &Addr) -> Result<redis::Connection, String> {
        let e = |e: RedisError| format!("{}:{}: {e}", addr.0, addr.1);
        let client = self.nodes.client(addr)?;
        let mut con = client.get_connection_with_timeout(self.timeout).map_err(e)?;
        con.set_read_timeout(Some(self.timeout)).map_err(e)?;
        con.set_write_timeout(Some(self.timeout)).map_err(e)?;
        for s in &self.scripts {
            s.load(&mut con).map_err(e)?;
        }
        Ok(con)
    }

    /// The connection to `addr`, opened if there is none.
    fn con(&mut self, addr: &Addr) -> Result<&mut redis::Connection, String> {
        if !self.cons.contains_key(addr) {
            let con = self.open(addr)?;
            self.cons.insert(addr.clone(), con);
        }
        Ok(self.cons.get_mut(addr).expect("inserted"))
    }

    /// Runs packed commands, each on its slot's master, following redirections; their replies
    /// in command order (error replies as [`Value::ServerError`]).
    fn run(&mut self, packed: &[u8]) -> RedisResult<Vec<Value>> {
        let cmds = split(packed).map_err(|e| RedisError::from((redis::ErrorKind::Client, "bad pipeline", e)))?;
        let mut results: Vec<Option<Value>> = vec![None; cmds.len()];
        let mut todo: Vec<(usize, Route)> =
            cmds.iter().enumerate().map(|(i, c)| (i, c.key.map_or(Route::Any, |k| Route::Slot(slot(k))))).collect();
        let start = std::time::Instant::now();
        loop {
            let follow_ask = start.elapsed() >= ASK_PATIENCE;
            let (again, pause) =
                self.round(&cmds, &todo, &mut results, follow_ask).inspect_err(|_| self.cons.clear())?;
            if again.is_empty() || start.elapsed() + pause > REDIRECT_DEADLINE {
                break;
            }
            std::thread::sleep(pause);
            todo = again;
        }
        results
            .into_iter()
            .map(|r| {
                r.ok_or_else(|| {
                    RedisError::from((redis::ErrorKind::Io, "Redis Cluster: still redirected after retries"))
                })
            })
            .collect()
    }

    /// One round: the commands in `todo` sent to their nodes (each node's in order), their
    /// replies read; what is to be sent again, and the pause before (`follow_ask`: an `ASK` is
    /// followed at once rather than waited out).
    fn round(
        &mut self,
        cmds: &[Packed],
        todo: &[(usize, Route)],
        results: &mut [Option<Value>],
        follow_ask: bool,
    ) -> RedisResult<(Vec<(usize, Route)>, Duration)> {
        let io = |e: String| RedisError::from((redis::ErrorKind::Io, "Redis Cluster", e));
        // Per node, in command order: (index, asking).
        let mut by_node: Vec<(Addr, Vec<(usize, bool)>)> = Vec::new();
        for (i, route) in todo {
            let (addr, asking) = match route {
                Route::Slot(s) => (self.topo.master_of(*s).clone(), false),
                Route::Ask(a) => (a.clone(), true),
                Route::Any => (self.topo.masters[0].clone(), false),
            };
            match by_node.iter_mut().find(|(a, _)| *a == addr) {
                Some((_, list)) => list.push((*i, asking)),
                None => by_node.push((addr, vec![(*i, asking)])),
            }
        }
        for (addr, list) in &by_node {
            let mut bytes = Vec::new();
            for &(i, asking) in list {
                if asking {
                    bytes.extend_from_slice(b"*1\r\n$6\r\nASKING\r\n");
                }
                bytes.extend_from_slice(cmds[i].bytes);
            }
            self.con(addr).map_err(io)?.send_packed_command(&bytes)?;
        }
        let (mut again, mut pause, mut moved_to) = (Vec::new(), Duration::ZERO, None);
        let mut no_script: Vec<Addr> = Vec::new();
        for (addr, list) in &by_node {
            for &(i, asking) in list {
                let con = self.con(addr).map_err(io)?;
                if asking {
                    con.recv_response()?; // ASKING's +OK
                }
                let v = con.recv_response()?;
                let Value::ServerError(e) = &v else {
                    results[i] = Some(v);
                    continue;
                };
                let target = || e.details().and_then(|d| redirect(d, addr));
                let same = || todo.iter().find(|(j, _)| *j == i).expect("sent").1.clone();
                match (e.code(), target()) {
                    ("MOVED", Some((slot, to))) => {
                        self.topo.moved(slot, to.clone());
                        moved_to.get_or_insert(to);
                        pause = pause.max(MOVED_GRACE);
                        again.push((i, Route::Slot(slot)));
                    }
                    ("ASK", Some((_, to))) if follow_ask => again.push((i, Route::Ask(to))),
                    ("ASK" | "TRYAGAIN" | "CLUSTERDOWN", _) => {
                        pause = pause.max(RETRY_PAUSE);
                        again.push((i, same()));
                    }
                    // Loaded once this round's replies are all read (the connection has more
                    // to come: a SCRIPT LOAD now would take one of theirs).
                    ("NOSCRIPT", _) => {
                        if !no_script.contains(addr) {
                            no_script.push(addr.clone());
                        }
                        again.push((i, same()));
                    }
                    _ => results[i] = Some(v),
                }
            }
        }
        for addr in no_script {
            for s in self.scripts.clone() {
                s.load(self.con(&addr).map_err(io)?)?;
            }
        }
        again.sort_by_key(|(i, _)| *i);
        // One slot moved: others may have too, and a master that gave all its slots away
        // becomes a replica, which takes an SPUBLISH without a MOVED (and its subscribers are
        // not ours): the whole map is asked again, of the node named.
        if let Some(to) = moved_to {
            if let Err(e) = self.refresh(Some(&to)) {
                tracing::debug!("Redis Cluster slot map not refreshed after a MOVED: {e}");
            }
        }
        Ok((again, pause))
    }
}

/// A `MOVED` detail (`slot host:port`) given by the server at `from` (an empty host is its).
pub fn moved(detail: &str, from: &Addr) -> Option<(u16, Addr)> {
    redirect(detail, from)
}

/// `slot` is served by `addr` now (a refused subscription said so).
impl Sharded {
    pub fn moved(&mut self, slot: u16, addr: Addr) {
        self.topo.moved(slot, addr);
    }
}

/// A `MOVED`/`ASK` detail, `slot host:port` (an empty host: the node that answered).
fn redirect(detail: &str, from: &Addr) -> Option<(u16, Addr)> {
    let (slot, addr) = detail.trim().split_once(' ')?;
    let (host, port) = addr.rsplit_once(':')?;
    let host =
        if host.is_empty() { from.0.clone() } else { host.trim_start_matches('[').trim_end_matches(']').to_string() };
    Some((slot.parse().ok().filter(|s| *s < SLOTS)?, (host, port.parse().ok()?)))
}

fn cluster_slots(con: &mut redis::Connection, asked: &Addr) -> Result<Topology, String> {
    let v: Value = redis::cmd("CLUSTER").arg("SLOTS").query(con).map_err(|e| e.to_string())?;
    Topology::parse(v, asked)
}

/// Splits packed commands (RESP arrays of bulk strings, as the redis crate writes them) and
/// finds each one's key: the first argument, or for `EVALSHA`/`EVAL` the first of its keys.
fn split(mut buf: &[u8]) -> Result<Vec<Packed<'_>>, String> {
    fn line(buf: &mut &[u8], kind: u8) -> Result<usize, String> {
        let end = buf.windows(2).position(|w| w == b"\r\n").ok_or("a truncated command")?;
        let (head, rest) = (&buf[..end], &buf[end + 2..]);
        if head.first() != Some(&kind) {
            return Err(format!("expected '{}'", kind as char));
        }
        *buf = rest;
        std::str::from_utf8(&head[1..]).ok().and_then(|n| n.parse().ok()).ok_or_else(|| "a bad length".to_string())
    }
    let mut out = Vec::new();
    while !buf.is_empty() {
        let start = buf;
        let n = line(&mut buf, b'*')?;
        let mut args: Vec<&[u8]> = Vec::with_capacity(n);
        for _ in 0..n {
            let len = line(&mut buf, b'$')?;
            if buf.len() < len + 2 {
                return Err("a truncated argument".into());
            }
            args.push(&buf[..len]);
            buf = &buf[len + 2..];
        }
        let name = args.first().map(|a| a.to_ascii_uppercase()).unwrap_or_default();
        let key = match &name[..] {
            b"EVALSHA" | b"EVAL" => {
                match args.get(2).and_then(|k| std::str::from_utf8(k).ok()?.parse::<usize>().ok()) {
                    Some(k) if k > 0 => args.get(3).copied(),
                    _ => None,
                }
            }
            b"PING" | b"SCRIPT" | b"CLUSTER" | b"AUTH" => None,
            _ => args.get(1).copied(),
        };
        out.push(Packed { bytes: &start[..start.len() - buf.len()], key });
    }
    Ok(out)
}

impl ConnectionLike for Sharded {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        let mut v = self.run(cmd)?;
        v.pop().ok_or_else(|| RedisError::from((redis::ErrorKind::Client, "no reply")))
    }

    fn req_packed_commands(&mut self, cmd: &[u8], offset: usize, count: usize) -> RedisResult<Vec<Value>> {
        Ok(self.run(cmd)?.into_iter().skip(offset).take(count).collect())
    }

    fn get_db(&self) -> i64 {
        0
    }

    fn check_connection(&mut self) -> bool {
        self.cons.values_mut().all(|c| c.check_connection())
    }

    fn is_open(&self) -> bool {
        self.cons.values().all(|c| c.is_open())
    }
}

/// The broker's command connection: to one Redis, or to a Redis Cluster's masters.
#[allow(clippy::large_enum_variant)]
pub enum Con {
    One(redis::Connection),
    Cluster(Sharded),
}

impl ConnectionLike for Con {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        match self {
            Con::One(c) => c.req_packed_command(cmd),
            Con::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(&mut self, cmd: &[u8], offset: usize, count: usize) -> RedisResult<Vec<Value>> {
        match self {
            Con::One(c) => c.req_packed_commands(cmd, offset, count),
            Con::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Con::One(c) => c.get_db(),
            Con::Cluster(c) => c.get_db(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            Con::One(c) => c.check_connection(),
            Con::Cluster(c) => c.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            Con::One(c) => c.is_open(),
            Con::Cluster(c) => c.is_open(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_redis_and_its_hash_tags() {
        // Values from `redis-cli CLUSTER KEYSLOT`.
        assert_eq!(slot(b"chanA"), 14212);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"), "an empty tag: the whole key");
        assert_ne!(slot(b"foo{}{bar}"), slot(b"bar"));
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
        assert_eq!(slot(b"rc:g:{1:s:g}"), slot(b"rc:h:{1:s:g}"));
    }

    #[test]
    fn packed_commands_split_with_their_keys() {
        let mut p = redis::pipe();
        p.cmd("SET").arg("k1").arg("v");
        p.cmd("EVALSHA").arg("abc").arg(2).arg("key{t}").arg("other{t}").arg("x");
        p.cmd("EVALSHA").arg("abc").arg(0).arg("x");
        p.cmd("PING");
        let packed = p.get_packed_pipeline();
        let cmds = split(&packed).unwrap();
        let keys: Vec<Option<&[u8]>> = cmds.iter().map(|c| c.key).collect();
        assert_eq!(keys, vec![Some(&b"k1"[..]), Some(&b"key{t}"[..]), None, None]);
        let joined: Vec<u8> = cmds.iter().flat_map(|c| c.bytes.iter().copied()).collect();
        assert_eq!(joined, packed, "the pieces are the whole");
        assert!(split(b"*2\r\n$3\r\nGET\r\n").is_err(), "truncated");
        assert!(split(b"+OK\r\n").is_err());
    }

    #[test]
    fn redirections_name_slot_and_node() {
        let from = ("10.0.0.1".to_string(), 7000);
        assert_eq!(redirect("3999 127.0.0.1:6381", &from), Some((3999, ("127.0.0.1".into(), 6381))));
        assert_eq!(redirect("3999 :6381", &from), Some((3999, ("10.0.0.1".into(), 6381))));
        assert_eq!(redirect("12 [::1]:7002", &from), Some((12, ("::1".into(), 7002))));
        assert_eq!(redirect("99999 h:1", &from), None);
        assert_eq!(redirect("nonsense", &from), None);
    }

    #[test]
    fn a_slot_map_must_serve_every_slot() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let range = |a: i64, b: i64, host: &str, port: i64| {
            Value::Array(vec![
                Value::Int(a),
                Value::Int(b),
                Value::Array(vec![bulk(host), Value::Int(port), bulk("id")]),
            ])
        };
        let asked = ("seed".to_string(), 1);
        let t = Topology::parse(Value::Array(vec![range(0, 8000, "a", 1), range(8001, 16383, "", 2)]), &asked).unwrap();
        assert_eq!(t.master_of(0), &("a".to_string(), 1));
        assert_eq!(t.master_of(16383), &("seed".to_string(), 2), "no host: the node asked");
        assert_eq!(t.masters().len(), 2);
        let half = Topology::parse(Value::Array(vec![range(0, 8000, "a", 1)]), &asked);
        assert!(half.unwrap_err().contains("slot 8001"));
    }
}
