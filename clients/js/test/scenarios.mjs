// The client against a real server through real faults, written once and run twice: in Node
// with the ws package (node.test.mjs) and in headless Chromium on the server's own
// /roomcast.js (browser.test.mjs). A driver runs the client where it lives:
//   open(name, url, options), events(name), call(name, method, args), prop(name, key), dispose()
import assert from "node:assert/strict";
import { FaultProxy, connectToken, sleep, startServer, until } from "./harness.mjs";

const SYS = "app";
/**
 * Fast clocks for tests (the defaults are in the README); the pong timeout leaves room for a
 * noisy 2-core machine, where a spurious one would add a reconnect.
 */
const FAST = { systemId: SYS, minReconnectDelay: 50, maxReconnectDelay: 500, pingInterval: 700, pongTimeout: 1500 };

const messages = (events) => events.filter((e) => e.ev === "message").map((e) => e.arg.messageId);
const of = (events, ev) => events.filter((e) => e.ev === ev).map((e) => e.arg);

/** A server (with `args`), a proxy before it, a driver; `body` runs with them; all stopped after. */
async function withSetup(makeDriver, args, body) {
  const server = await startServer(args);
  let proxy, d;
  try {
    proxy = await new FaultProxy(server.port).listen();
    d = await makeDriver(server);
    await body({ server, proxy, d });
  } finally {
    await d?.dispose();
    await proxy?.close();
    await server.stop();
  }
}

async function connected(d, name, n = 1) {
  await until(async () => of(await d.events(name), "connect").length >= n, 10_000, `${name}: connect #${n}`);
  return d.prop(name, "clientId");
}

export function scenarios(test, where, makeDriver) {
  const t = (name, fn, args = ["--ping-interval", "300ms"]) =>
    test(`${where}: ${name}`, { timeout: 60_000 }, () => withSetup(makeDriver, args, fn));

  t("every frame exactly once and in order across connection resets, with the same clientId", async ({ server, proxy, d }) => {
    await server.register(SYS);
    await d.open("a", proxy.url, FAST);
    const id = await connected(d, "a");
    const sent = [];
    for (let i = 0; i < 60; i++) {
      if (i === 20 || i === 40) proxy.reset();
      sent.push(await server.send(SYS, id, `m${i}`));
      await sleep(5);
    }
    await until(async () => messages(await d.events("a")).length >= 60, 15_000, "60 messages");
    await sleep(200); // nothing more may come
    const ev = await d.events("a");
    assert.deepEqual(messages(ev), sent, "each frame once, in the order sent");
    const connects = of(ev, "connect");
    assert.ok(connects.length >= 3, `reconnected after each reset: ${JSON.stringify(connects)}`);
    assert.ok(connects.every((c) => c.clientId === id));
    assert.ok(connects.slice(1).every((c) => c.recovered === true));
    assert.deepEqual(of(ev, "reset"), []);
    assert.ok(of(ev, "disconnect").every((x) => x.willReconnect === true));
  });

  t("a black-holed connection is found by its pongs and resumed without losing a frame", async ({ server, proxy, d }) => {
    await server.register(SYS);
    await d.open("a", proxy.url, { ...FAST, connectTimeout: 700 });
    const id = await connected(d, "a");
    const before = await server.send(SYS, id, "before");
    await until(async () => messages(await d.events("a")).includes(before), 5_000, "the first frame");
    proxy.blackhole();
    const sent = [before];
    for (let i = 0; i < 10; i++) sent.push(await server.send(SYS, id, `away${i}`));
    // No pong within pongTimeout: the client leaves the silent socket and keeps trying.
    await until(async () => of(await d.events("a"), "disconnect").length >= 1, 5_000, "the dead connection found");
    await sleep(1_000); // attempts into the black hole, given up after connectTimeout
    proxy.pass();
    await until(async () => messages(await d.events("a")).length >= 11, 10_000, "the frames sent meanwhile");
    await sleep(200);
    const ev = await d.events("a");
    assert.deepEqual(messages(ev), sent);
    const last = of(ev, "connect").at(-1);
    assert.deepEqual([last.clientId, last.recovered], [id, true]);
    assert.equal(of(ev, "disconnect")[0].code, 1006);
  });

  t("a server restarted without the session: reset with both clientIds, then live again", async ({ server, proxy, d }) => {
    await server.register(SYS);
    await d.open("a", proxy.url, FAST);
    const old = await connected(d, "a");
    const fresh = await startServer(["--ping-interval", "300ms"]);
    try {
      await fresh.register(SYS);
      // The proxy refuses meanwhile: no connect to the dead server's port, and no client on
      // the fresh server before the old connections are gone.
      proxy.refuse();
      await server.stop();
      proxy.reset();
      proxy.upstream = fresh.port;
      proxy.pass();
      await until(async () => of(await d.events("a"), "reset").length === 1, 10_000, "reset");
      const ev = await d.events("a");
      const id = await d.prop("a", "clientId");
      assert.notEqual(id, old);
      assert.deepEqual(of(ev, "reset")[0], { oldClientId: old, clientId: id });
      assert.equal(of(ev, "connect").at(-1).recovered, false);
      const m = await fresh.send(SYS, id, "after");
      await until(async () => messages(await d.events("a")).includes(m), 5_000, "a frame on the new session");
    } finally {
      await fresh.stop();
    }
  });

  t("close(): a normal close that ends the session, and no reconnect after it", async ({ server, proxy, d }) => {
    await server.register(SYS);
    await d.open("a", proxy.url, FAST);
    const id = await connected(d, "a");
    await server.api("bind_to_group", SYS, { clientId: id, groupName: "g" });
    assert.deepEqual(await server.online(SYS, "g"), [id]);
    await d.call("a", "close", []);
    assert.equal(await d.prop("a", "state"), "closed");
    const at = Date.now();
    await until(async () => (await server.online(SYS, "g")).length === 0, 5_000, "the session ended on the server");
    await sleep(1_500);
    assert.deepEqual(proxy.acceptsSince(at), [], "no connection after close()");
    const ev = await d.events("a");
    assert.deepEqual(of(ev, "disconnect").at(-1), { code: 1000, reason: "closed by the client", willReconnect: false });
  });

  t("a refusal is an error, retried no sooner than maxReconnectDelay, and never in a tight loop", async ({ proxy, d }) => {
    // The system is not registered: every connect gets the -1001 frame and a close.
    const at = Date.now();
    await d.open("a", proxy.url, { ...FAST, maxReconnectDelay: 600 });
    await sleep(3_000);
    const tries = proxy.acceptsSince(at);
    const gaps = tries.slice(1).map((x, i) => x - tries[i]);
    // Retried, never given up — and never sooner than maxReconnectDelay (at most 6 in 3 s;
    // a loaded machine may delay a timer, never advance it).
    assert.ok(tries.length >= 2 && tries.length <= 6, `${tries.length} attempts in 3 s: ${JSON.stringify(gaps)}`);
    assert.ok(gaps.every((g) => g >= 590), `attempts ${JSON.stringify(gaps)} ms apart`);
    const errors = of(await d.events("a"), "error");
    assert.ok(errors.length >= tries.length - 1, JSON.stringify(errors));
    assert.deepEqual([errors[0].kind, errors[0].code], ["refused", -1001]);
    assert.match(errors[0].message, /not registered|unknown system|register/i);
    assert.equal(await d.prop("a", "state"), "disconnected");
    assert.deepEqual(of(await d.events("a"), "connect"), []);
  });

  t("twenty clients dropped together come back spread over minReconnectDelay by the jitter", async ({ server, proxy, d }) => {
    await server.register(SYS);
    const o = { ...FAST, minReconnectDelay: 1000, maxReconnectDelay: 4000 };
    for (let i = 0; i < 20; i++) await d.open(`c${i}`, proxy.url, o);
    for (let i = 0; i < 20; i++) await connected(d, `c${i}`);
    const at = Date.now();
    proxy.reset();
    await until(() => proxy.acceptsSince(at).length >= 20, 5_000, "20 reconnects");
    const back = proxy.acceptsSince(at).map((x) => x - at);
    const spread = Math.max(...back) - Math.min(...back);
    assert.ok(spread >= 300, `reconnects at ${JSON.stringify(back)} ms: spread ${spread} ms`);
    assert.ok(Math.max(...back) < 1_500, `every first attempt within minReconnectDelay: ${JSON.stringify(back)}`);
    for (let i = 0; i < 20; i++) {
      await until(async () => of(await d.events(`c${i}`), "connect").length >= 2, 5_000, `c${i} back`);
      const connects = of(await d.events(`c${i}`), "connect");
      assert.ok(connects.slice(1).every((c) => c.recovered), JSON.stringify(connects));
    }
  });

  t(
    "connect tokens from a function: called at every fresh connect, not on a resume; their groups joined",
    async ({ server, proxy, d }) => {
      await server.register(SYS);
      await d.open("a", proxy.url, { ...FAST, mint: { system: SYS, sub: "alice", groups: ["room"], ttl: 60 } });
      const id = await connected(d, "a");
      assert.deepEqual(await server.online(SYS, "room"), [id], "the token's groups are joined at connect");
      assert.equal(await d.prop("a", "tokenCalls"), 1);
      proxy.reset();
      await connected(d, "a", 2);
      let ev = await d.events("a");
      assert.equal(of(ev, "connect")[1].recovered, true);
      assert.equal(await d.prop("a", "tokenCalls"), 1, "a resume presents its resume token only");
      // The back end ends the session: the resume is refused, and a fresh connect mints again.
      await server.api("close_client", SYS, { clientId: id });
      await until(async () => of(await d.events("a"), "reset").length === 1, 10_000, "reset");
      ev = await d.events("a");
      assert.equal(await d.prop("a", "tokenCalls"), 2);
      const now = await d.prop("a", "clientId");
      assert.deepEqual(of(ev, "reset")[0], { oldClientId: id, clientId: now });
      assert.deepEqual(await server.online(SYS, "room"), [now]);
    },
    ["--ping-interval", "300ms", "--ws-auth"],
  );
}

export { connectToken };
