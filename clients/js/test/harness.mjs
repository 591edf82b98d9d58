// The real things the client suites run against: a roomcast server process, its HTTP API, HS256
// tokens, and a TCP proxy between client and server that injects faults (reset every
// connection, black-hole — sockets open, nothing forwarded — and refuse).
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import net from "node:net";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const SECRET = "roomcast-js-test-secret";
const BIN = process.env.ROOMCAST_BIN || fileURLToPath(new URL("../../../target/release/roomcast", import.meta.url));

const b64 = (v) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");

/** An HS256 JWT with `claims` and an `exp` `ttl` seconds from now. */
export function jwt(claims, ttl = 3600) {
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ ...claims, exp: Math.floor(Date.now() / 1000) + ttl })}`;
  return `${body}.${createHmac("sha256", SECRET).update(body).digest("base64url")}`;
}

/** A connect token, as a back end mints one for a page. */
export const connectToken = ({ system, sub, groups, ttl }) =>
  jwt({ systemId: system, scope: "connect", ...(sub ? { sub } : {}), ...(groups ? { groups } : {}) }, ttl);

/** A roomcast process on a free port (`args` added to the test defaults). */
export async function startServer(args = []) {
  const child = spawn(BIN, ["--listen", "127.0.0.1:0", "--shards", "2", "--jwt-secret", SECRET, ...args], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, RUST_LOG: "warn", NO_COLOR: "1" },
  });
  const lines = createInterface({ input: child.stdout });
  // Every stdout line is kept until asked for: one chunk may carry several lines.
  const queued = [];
  const waiting = [];
  lines.on("line", (l) => (waiting.length ? waiting.shift()(l) : queued.push(l)));
  const nextLine = () => (queued.length ? Promise.resolve(queued.shift()) : new Promise((r) => waiting.push(r)));
  const first = await new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`roomcast exited (${code}) before listening: is ${BIN} built?`)));
    nextLine().then(resolve);
  });
  const m = /^roomcast listening on (.+):(\d+)$/.exec(first.trim());
  if (!m) throw new Error(`unexpected first line from roomcast: ${first}`);
  const port = Number(m[2]);
  const operator = jwt({ role: "operator" });
  const server = {
    port,
    /** The server's next stdout line (e.g. "roomcast admin on ADDR" after the first). */
    nextLine,
    http: `http://127.0.0.1:${port}`,
    async api(name, system, body = {}) {
      const headers = { "Content-Type": "application/json" };
      headers.Authorization = `Bearer ${system ? jwt({ systemId: system }) : operator}`;
      if (system) headers.SystemId = system;
      const r = await fetch(`${server.http}/api/${name}`, { method: "POST", headers, body: JSON.stringify(body) });
      return { status: r.status, body: await r.json() };
    },
    async register(system) {
      const r = await server.api("register", null, { systemId: system });
      if (r.status !== 200) throw new Error(`register ${system}: ${JSON.stringify(r)}`);
    },
    /** send_to_client; the messageId of the frame. */
    async send(system, clientId, msg) {
      const r = await server.api("send_to_client", system, { clientId, msg, data: msg });
      if (r.status !== 200) throw new Error(`send_to_client: ${JSON.stringify(r)}`);
      return r.body.data.messageId;
    },
    async online(system, groupName) {
      const r = await server.api("get_online_list", system, { groupName });
      return r.body.data.list;
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return; // gone already (killed: signalCode)
      const gone = new Promise((r) => child.once("exit", r));
      child.kill("SIGKILL");
      await gone;
    },
  };
  return server;
}

/** A TCP proxy to `upstream` (a port on 127.0.0.1) that can break what crosses it. */
export class FaultProxy {
  constructor(upstream) {
    this.upstream = upstream;
    this.mode = "pass"; // "pass" | "blackhole" | "refuse"
    this.pairs = new Set();
    this.accepts = []; // Date.now() of every connection accepted
  }

  async listen() {
    this.server = net.createServer((c) => this._conn(c));
    await new Promise((r) => this.server.listen(0, "127.0.0.1", r));
    this.port = this.server.address().port;
    this.url = `ws://127.0.0.1:${this.port}`;
    return this;
  }

  _conn(c) {
    this.accepts.push(Date.now());
    if (this.mode === "refuse") return c.resetAndDestroy();
    const up = net.connect(this.upstream, "127.0.0.1");
    const pair = { c, up, holed: this.mode === "blackhole" };
    this.pairs.add(pair);
    c.on("data", (d) => pair.holed || up.write(d));
    up.on("data", (d) => pair.holed || c.write(d));
    // One side ending ends the other — but not across a black hole, where nothing crosses:
    // the other side stays open and silent (until reset() or close()).
    const end = () => {
      if (pair.holed && !pair.ending) return;
      this.pairs.delete(pair);
      c.destroy();
      up.destroy();
    };
    for (const s of [c, up]) {
      s.on("error", end);
      s.on("close", end);
    }
  }

  /** Every connection through the proxy is reset (an RST both ways), as by a network change. */
  reset() {
    for (const p of this.pairs) {
      p.ending = true;
      rst(p.c);
      rst(p.up);
    }
    this.pairs.clear();
  }

  /** From now on nothing crosses: open connections stay open and silent, new ones too. */
  blackhole() {
    this.mode = "blackhole";
    for (const p of this.pairs) p.holed = true;
  }

  /** New connections are refused (reset at accept). */
  refuse() {
    this.mode = "refuse";
  }

  /** New connections pass again (black-holed ones stay dead, as a dead path does). */
  pass() {
    this.mode = "pass";
  }

  acceptsSince(t) {
    return this.accepts.filter((a) => a >= t);
  }

  /**
   * Stops the proxy. (Seen under load with Node 20: an upstream socket destroyed while its
   * connect was under way kept an active handle that spun a core, so the test process never
   * exited: `npm test` runs node --test with --test-force-exit.)
   */
  async close() {
    this.reset();
    await new Promise((r) => this.server.close(r));
  }
}

/**
 * Resets `s` (an RST, not a FIN); one still connecting is only destroyed.
 */
function rst(s) {
  if (s.connecting) s.destroy();
  else s.resetAndDestroy();
}

/** Polls `check` (sync or async) until it returns a truthy value; fails after `ms`. */
export async function until(check, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Installs the event recorder the scenarios drive, into `g` (Node's globalThis or a page's
 * window). Self-contained: the browser suite sends its source to the page.
 */
export function installRecorder(g, Roomcast, WebSocketImpl, mint) {
  const clients = new Map();
  const names = ["connect", "message", "online", "offline", "disconnect", "reset", "error"];
  g.__rc = {
    open(name, url, opts) {
      const o = { ...opts };
      if (WebSocketImpl) o.WebSocket = WebSocketImpl;
      const rec = { events: [], tokenCalls: 0 };
      if (o.mint) {
        const claims = o.mint;
        delete o.mint;
        o.token = async () => {
          rec.tokenCalls++;
          return await mint(claims);
        };
      }
      rec.rc = new Roomcast(url, o);
      for (const ev of names) {
        rec.rc.on(ev, (a) => {
          const arg = ev === "error" ? { kind: a.kind, code: a.code, message: a.message } : a;
          rec.events.push({ ev, t: Date.now(), arg });
        });
      }
      clients.set(name, rec);
      rec.rc.connect();
    },
    events(name) {
      return JSON.parse(JSON.stringify(clients.get(name).events));
    },
    call(name, method, args) {
      const r = clients.get(name).rc[method](...args);
      return r !== null && typeof r === "object" ? undefined : r; // close() returns the client
    },
    prop(name, key) {
      const rec = clients.get(name);
      return key === "tokenCalls" ? rec.tokenCalls : rec.rc[key];
    },
    closeAll() {
      for (const rec of clients.values()) rec.rc.close();
      clients.clear();
    },
  };
}
