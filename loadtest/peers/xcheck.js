// Cross-check client: the connect and joinstorm comparisons measured by a second, independent
// client (Node.js and the `ws` package, nothing shared with roomcast-loadtest), so a ratio in
// docs/PERFORMANCE.md can be checked with a client other than our own.
//
//   node xcheck.js connect   PORT PID [clients=10000] [inflight=64] [procs=2]
//   node xcheck.js joinstorm PORT PID [clients=2000] [procs=2] [concurrency=16]
//
// connect: `procs` processes open `clients` WebSockets in all, each keeping `inflight`
// handshakes waiting (closed loop); a connection counts when its connect frame arrives.
// joinstorm: `clients` connect, then each is bound into one group with notices on (HTTP,
// `concurrency` keep-alive connections); the C(C+1)/2 online notices must all arrive.
// Server CPU comes from /proc/PID/task/*/schedstat (every thread, ns). Prints one JSON line.
"use strict";
const { fork } = require("child_process");
const fs = require("fs");
const http = require("http");
const WebSocket = require("ws");

const SYSTEM = "xcheck";
const now = () => Number(process.hrtime.bigint()) / 1e9; // CLOCK_MONOTONIC: same in every process

function cpuSecs(pid) {
  let ns = 0;
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(fs.readFileSync(`/proc/${pid}/task/${t}/schedstat`, "utf8").split(" ")[0]);
    } catch {} // a thread that just ended
  }
  return ns / 1e9;
}

function post(agent, port, path, body) {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = http.request(
      { agent, host: "127.0.0.1", port, path, method: "POST",
        headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(data), SystemId: SYSTEM } },
      (res) => { res.resume(); res.on("end", () => resolve(res.statusCode)); });
    req.on("error", reject);
    req.end(data);
  });
}

// ---- worker: opens its share of connections and counts what arrives ----
function worker() {
  let counting = false, notices = 0, lastNotice = 0;
  const socks = [];
  process.on("message", (m) => {
    if (m.cmd === "connect") connectAll(m);
    if (m.cmd === "count") {
      counting = true;
      setInterval(() => process.send({ notices, lastNotice }), 50);
    }
    if (m.cmd === "exit") { for (const s of socks) s.terminate(); process.exit(0); }
  });
  function connectAll({ port, n, inflight }) {
    const lat = [], ids = [];
    let started = 0, done = 0, failed = 0;
    const t0 = now();
    const one = () => {
      if (started >= n) return;
      started++;
      const t = now();
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?systemId=${SYSTEM}`, { perMessageDeflate: false });
      let first = true;
      ws.on("message", (data) => {
        if (first) {
          first = false;
          lat.push(now() - t);
          ids.push(JSON.parse(data.toString()).data.clientId);
          socks.push(ws);
          if (++done + failed === n) process.send({ connected: done, failed, secs: now() - t0, lat, ids });
          else one();
        } else if (counting && data.includes('"code":1001')) {
          notices++;
          lastNotice = now();
        }
      });
      ws.on("error", () => { if (first) { first = false; failed++; if (done + failed === n) process.send({ connected: done, failed, secs: now() - t0, lat, ids }); else one(); } });
    };
    for (let i = 0; i < Math.min(inflight, n); i++) one();
  }
}

// ---- main ----
async function main() {
  const [scenario, portS, pidS] = process.argv.slice(2);
  const port = Number(portS), pid = Number(pidS);
  const arg = (i, d) => Number(process.argv[5 + i] ?? d);
  const connect = scenario === "connect";
  const clients = arg(0, connect ? 10000 : 2000);
  const inflight = connect ? arg(1, 64) : 64;
  const procs = connect ? arg(2, 2) : arg(1, 2);
  const concurrency = connect ? 1 : arg(2, 16);
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const st = await post(agent, port, "/api/register", { systemId: SYSTEM });
  if (st !== 200 && st !== 409) throw new Error(`register: HTTP ${st}`);

  const kids = [...Array(procs)].map(() => fork(__filename, ["worker"]));
  await new Promise((r) => setTimeout(r, 300)); // workers started
  const cpu0 = cpuSecs(pid);
  const results = await Promise.all(kids.map((k, i) => new Promise((resolve) => {
    k.once("message", resolve);
    const n = Math.floor(clients / procs) + (i < clients % procs ? 1 : 0);
    k.send({ cmd: "connect", port, n, inflight });
  })));
  const cpu1 = cpuSecs(pid);
  const connected = results.reduce((a, r) => a + r.connected, 0);
  const lat = results.flatMap((r) => r.lat).sort((a, b) => a - b);
  const q = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] * 1e3 : 0);
  const out = { client: "xcheck (node ws)", scenario, connected, failed: results.reduce((a, r) => a + r.failed, 0) };
  if (connect) {
    Object.assign(out, {
      connect_rate_per_s: connected / Math.max(...results.map((r) => r.secs)),
      server_cpu_us_per_connection: ((cpu1 - cpu0) * 1e6) / connected,
      handshake_p50_ms: q(0.5), handshake_p99_ms: q(0.99),
    });
  } else {
    const counts = kids.map(() => ({ notices: 0, lastNotice: 0 }));
    kids.forEach((k, i) => { k.on("message", (m) => { counts[i] = m; }); k.send({ cmd: "count" }); });
    await new Promise((r) => setTimeout(r, 200));
    const ids = results.flatMap((r) => r.ids);
    const expected = (ids.length * (ids.length + 1)) / 2;
    const c0 = cpuSecs(pid), t0 = now();
    let next = 0;
    await Promise.all([...Array(concurrency)].map(async () => {
      while (next < ids.length) {
        const i = next++;
        const s = await post(agent, port, "/api/bind_to_group", { clientId: ids[i], groupName: "storm", userId: `u${i}` });
        if (s !== 200) throw new Error(`bind: HTTP ${s}`);
      }
    }));
    const deadline = now() + 60;
    const total = () => counts.reduce((a, c) => a + c.notices, 0);
    while (total() < expected && now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 100)); // the last counts
    const end = Math.max(...counts.map((c) => c.lastNotice));
    Object.assign(out, {
      expected, delivered: total(), lost: expected - total(), storm_secs: end - t0,
      delivered_per_s: total() / (end - t0), server_cpu_secs: cpuSecs(pid) - c0,
    });
  }
  console.log(JSON.stringify(out));
  kids.forEach((k) => k.send({ cmd: "exit" }));
  agent.destroy();
}

if (process.argv[2] === "worker") worker();
else main().catch((e) => { console.error(e); process.exit(1); });
