// The server's admin page (GET /admin on admin_listen) in headless Chromium (Debian's chromium,
// driven by puppeteer-core): it loads, asks nothing of another origin, follows 50 clients
// connecting and 20 leaving within seconds, shows a delivery rate under load, and renders
// (a screenshot that is not blank) — on a single node and on a 2-node cluster with its own
// redis-server. It lives beside roomcast.js's browser suite to share its harness and browser;
// it does not use the client.
import { after, before, test } from "node:test";
import { spawn } from "node:child_process";
import { connect, createServer } from "node:net";
import { mkdirSync, writeFileSync } from "node:fs";
import assert from "node:assert/strict";
import puppeteer from "puppeteer-core";
import WebSocket from "ws";
import { sleep, startServer, until } from "./harness.mjs";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = new URL("../../../target/admin-page/", import.meta.url);
let browser;

before(async () => {
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
});

const freePort = () =>
  new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

/** A redis-server of the test's own (Debian's package), on a free port. */
async function startRedis() {
  const port = await freePort();
  const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    stdio: "ignore",
  });
  child.once("error", (e) => console.error(`redis-server (Debian's package) is needed for the cluster case: ${e.message}`));
  const listening = () =>
    new Promise((r) => {
      const c = connect(port, "127.0.0.1");
      c.once("connect", () => (c.destroy(), r(true)));
      c.once("error", () => r(false));
    });
  await until(listening, 10_000, "redis-server listening").catch((e) => {
    child.kill("SIGKILL");
    throw e;
  });
  return { url: `redis://127.0.0.1:${port}`, stop: () => child.kill("SIGKILL") };
}

/** A server (or cluster node) with an admin listener; `admin` is the page's origin. */
async function withAdmin(extra = []) {
  const server = await startServer(["--admin-listen", "127.0.0.1:0", ...extra]);
  const line = await server.nextLine();
  const m = /^roomcast admin on (.+)$/.exec(line.trim());
  if (!m) throw new Error(`unexpected line from roomcast: ${line}`);
  return { ...server, admin: `http://${m[1]}` };
}

function openClients(server, system, n) {
  return Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise((resolve, reject) => {
          const ws = new WebSocket(`ws://127.0.0.1:${server.port}/ws?systemId=${system}`);
          // The connect frame: the client is in.
          ws.once("message", (m) => resolve(Object.assign(ws, { id: JSON.parse(m).data.clientId })));
          ws.once("error", reject);
        }),
    ),
  );
}

const stat = (page, name) => page.$eval(`[data-stat="${name}"]`, (el) => el.textContent);

async function waitStat(page, name, want, what) {
  await page.waitForFunction((n, w) => document.querySelector(`[data-stat="${n}"]`)?.textContent === w, { timeout: 10_000 }, name, want)
    .catch(async () => assert.fail(`${what}: data-stat ${name} is ${await stat(page, name)}, not ${want}`));
}

/** Loads the page of `watched`, drives `nodes` (clients spread over them), checks what it shows. */
async function drive(label, watched, nodes) {
  const page = await browser.newPage();
  await page.setViewport({ width: 1100, height: 800 });
  const foreign = [];
  page.on("request", (r) => {
    if (!r.url().startsWith(watched.admin + "/")) foreign.push(r.url());
  });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text())); // CSP refusals too
  await page.goto(`${watched.admin}/admin`);
  await waitStat(page, "mode", label, "the page's first poll");
  await nodes[0].register("sys");
  // 50 clients, split over the nodes; the page counts what its node holds.
  const per = nodes.map((_, i) => Math.floor(50 / nodes.length) + (i < 50 % nodes.length ? 1 : 0));
  const opened = (await Promise.all(nodes.map((n, i) => openClients(n, "sys", per[i])))).flat();
  const here = (k) => String(k * per[nodes.indexOf(watched)] / 50);
  await waitStat(page, "connections", here(50), "50 clients connected");
  // 20 leave (the same share of each node).
  const leaving = [];
  let at = 0;
  for (const n of per) {
    leaving.push(...opened.slice(at, at + (n * 20) / 50));
    at += n;
  }
  await Promise.all(leaving.map((ws) => new Promise((r) => { ws.once("close", r); ws.close(); })));
  await waitStat(page, "connections", here(30), "20 clients left");
  await waitStat(page, "systems", "1", "one system");
  if (nodes.length > 1) {
    // Every node's figures, read from Redis (each writes them with its heartbeat).
    await waitStat(page, "nodes", String(nodes.length), "the nodes table");
    const total = () =>
      page.$$eval('[data-stat="node_connections"]', (els) => els.reduce((n, el) => n + Number(el.textContent), 0));
    await until(async () => (await total()) === 30, 10_000, "the nodes' connections adding up to 30").catch(async (e) =>
      assert.fail(`${e.message}: ${await total()}`),
    );
  }
  // Groups: the 30 who stay, in three groups of 15, 10 and 5 (each with members on every node).
  const stay = opened.filter((ws) => !leaving.includes(ws));
  const groups = stay.map((_, i) => ["lobby", "lobby", "lobby", "quiz", "quiz", "stage"][i % 6]);
  await Promise.all(stay.map((ws, i) => nodes[0].api("bind_to_group", "sys", { clientId: ws.id, groupName: groups[i], userId: `u${i % 12}` })));
  await waitStat(page, "groups", "3", "three groups");
  // Under load: sends to the whole system for 3 s; the page must show a rate above 0.
  let seen = 0;
  let shot = null;
  const until5 = Date.now() + 5000;
  while (Date.now() < until5 && !shot) {
    await Promise.all(Array.from({ length: 10 }, () => nodes[0].api("send_to_system", "sys", { msg: "load" })));
    seen = Math.max(seen, Number(await stat(page, "messages_per_second")));
    // Taken under load, once the chart has a few points.
    if (seen > 0 && Date.now() > until5 - 2000) shot = await page.screenshot({ type: "png" });
  }
  // At least one send's worth of messages to this node's 30 / 15 clients each second.
  assert.ok(seen >= Number(here(30)), `${label}: messages per second only ${seen} under load`);
  const rows = await page.$$eval("#systems tr", (trs) => trs.map((tr) => tr.textContent));
  const sys = rows.find((t) => t.startsWith("sys"));
  assert.ok(sys && sys.includes("lobby (") && sys.includes("quiz ("), `${label}: the systems table: ${rows}`);
  // It renders: a screenshot of the page differs from one of a blank page and holds far more.
  const blank = await browser.newPage();
  await blank.setViewport({ width: 1100, height: 800 });
  const empty = await blank.screenshot({ type: "png" });
  await blank.close();
  assert.ok(shot.length > 3 * empty.length, `${label}: screenshot ${shot.length} B vs blank ${empty.length} B`);
  mkdirSync(SHOTS, { recursive: true });
  writeFileSync(new URL(`admin-${label}.png`, SHOTS), shot);
  assert.deepEqual(foreign, [], `${label}: requests to another origin`);
  assert.deepEqual(errors, [], `${label}: script errors`);
  await page.close();
  for (const ws of opened) ws.terminate();
}

test("chromium: the admin page follows a single node", { timeout: 60_000 }, async () => {
  const s = await withAdmin();
  try {
    await drive("single", s, [s]);
  } finally {
    await s.stop();
  }
});

test("chromium: the admin page follows a cluster node", { timeout: 90_000 }, async () => {
  let redis;
  const nodes = [];
  try {
    redis = await startRedis();
    for (let i = 0; i < 2; i++) nodes.push(await withAdmin(["--redis", redis.url, "--presence-ttl", "2s"]));
    const up = async (n) => (await (await fetch(`${n.admin}/health`)).json()).cluster === "up";
    for (const n of nodes) await until(() => up(n), 10_000, "a node on Redis");
    await drive("cluster", nodes[0], nodes);
  } finally {
    for (const n of nodes) await n.stop();
    redis?.stop();
  }
});
