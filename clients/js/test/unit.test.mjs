// The client's own logic with a fake clock and a scripted WebSocket (no server, no network):
// backoff, the state machine, recovery bookkeeping, refusals, liveness. The suites against a
// real server are node.test.mjs (the ws package) and browser.test.mjs (Chromium).
import { test, mock, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { Roomcast, backoff } from "../src/roomcast.mjs";

/** A WebSocket the test plays the server of. */
function fakeSocketClass({ terminate = true } = {}) {
  const made = [];
  class FakeWS {
    constructor(url) {
      this.url = new URL(url);
      this.readyState = 0;
      this.sent = [];
      this.closed = null;
      this.terminated = false;
      made.push(this);
    }
    send(s) {
      this.sent.push(s);
    }
    close(code, reason) {
      if (this.readyState === 0) {
        // As the ws package does: closing a socket still connecting fails its handshake with
        // an error event, and an error event with no listener takes the process down.
        setTimeout(() => {
          if (!this.onerror) throw new Error("Unhandled 'error' event");
          this.onerror({ message: "WebSocket was closed before the connection was established" });
        }, 0);
      }
      this.closed = { code, reason };
      this.readyState = 3;
    }
    // server side
    open() {
      this.readyState = 1;
    }
    say(obj) {
      this.onmessage?.({ data: JSON.stringify(obj) });
    }
    hello(data) {
      this.open();
      this.say({ code: 0, msg: "success", data });
    }
    drop(code = 1006, reason = "") {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }
  }
  if (terminate) {
    FakeWS.prototype.terminate = function () {
      this.terminated = true;
      this.readyState = 3;
    };
  }
  return { FakeWS, made };
}

const push = (id, extra = {}) => ({ messageId: id, sendUserId: "", code: 0, msg: "m", data: "", ...extra });

function record(rc) {
  const events = [];
  for (const ev of ["connect", "message", "online", "offline", "disconnect", "reset", "error"]) {
    rc.on(ev, (a) => events.push([ev, a]));
  }
  return events;
}

const names = (events) => events.map(([e]) => e);

beforeEach(() => mock.timers.enable({ apis: ["setTimeout", "setInterval", "Date"], now: 1_000_000 }));
afterEach(() => mock.timers.reset());

/** Lets the client's async steps (the token function's promise) run. */
const settle = () => new Promise((r) => setImmediate(r));

test("backoff: the first attempt within min, then full jitter up to max", () => {
  assert.equal(backoff(0, 500, 20000, () => 0), 0);
  assert.equal(backoff(0, 500, 20000, () => 0.999), 499);
  assert.equal(backoff(3, 500, 20000, () => 0.999), 3996);
  assert.equal(backoff(10, 500, 20000, () => 0.999), 19980, "capped at max");
  assert.equal(backoff(1000, 500, 20000, () => 0.5), 10000, "no overflow for long outages");
  for (let i = 0; i < 200; i++) {
    const d = backoff(2, 100, 1000);
    assert.ok(d >= 0 && d < 400, `${d}`);
  }
});

test("options: systemId required, urls normalised, nothing opened before connect()", () => {
  const { FakeWS, made } = fakeSocketClass();
  assert.throws(() => new Roomcast("ws://h", { WebSocket: FakeWS }), /systemId/);
  assert.throws(() => new Roomcast("ftp://h", { systemId: "s", WebSocket: FakeWS }), /ws:\/\//);
  assert.throws(() => new Roomcast("ws://h", { systemId: "s", WebSocket: FakeWS, pingInterval: -1 }), /pingInterval/);
  assert.throws(() => new Roomcast("ws://h", { systemId: "s", WebSocket: FakeWS, pingInterval: 0 }), /pingInterval/);
  assert.throws(
    () => new Roomcast("ws://h", { systemId: "s", WebSocket: FakeWS, minReconnectDelay: 0, maxReconnectDelay: 0 }),
    /maxReconnectDelay must be at least 100/,
    "a zero wait after a refusal would be a tight loop",
  );
  assert.throws(
    () => new Roomcast("ws://h", { systemId: "s", WebSocket: FakeWS, minReconnectDelay: 5, maxReconnectDelay: 1 }),
    /maxReconnectDelay/,
  );
  const rc = new Roomcast("https://h:8443", { systemId: "s 1", WebSocket: FakeWS });
  assert.equal(rc.state, "disconnected");
  assert.equal(made.length, 0);
  rc.connect();
  assert.equal(rc.state, "connecting");
  const u = made[0].url;
  assert.equal(`${u.protocol}//${u.host}${u.pathname}`, "wss://h:8443/ws");
  assert.equal(u.searchParams.get("systemId"), "s 1");
  assert.equal(u.searchParams.get("recover"), "1");
  new Roomcast("http://h/push/socket?x=1", { systemId: "s", WebSocket: FakeWS, recover: false }).connect();
  assert.equal(made[1].url.pathname, "/push/socket", "a path is used as given");
  assert.equal(made[1].url.searchParams.get("x"), "1");
  assert.equal(made[1].url.searchParams.get("recover"), null);
  rc.close();
});

test("a drop resumes with the token and the last messageId; frames are handed once, in order", () => {
  const { FakeWS, made } = fakeSocketClass();
  const rc = new Roomcast("ws://h", { systemId: "s", WebSocket: FakeWS, minReconnectDelay: 100 });
  const events = record(rc);
  rc.connect();
  made[0].hello({ clientId: "c1", resumeToken: "t1", recovered: false });
  assert.equal(rc.state, "connected");
  assert.equal(rc.clientId, "c1");
  made[0].say(push("a"));
  made[0].say(push("b"));
  made[0].drop(1006);
  assert.equal(rc.state, "disconnected");
  assert.deepEqual(events.at(-1), ["disconnect", { code: 1006, reason: "", willReconnect: true }]);
  mock.timers.tick(100); // the first attempt comes within minReconnectDelay
  assert.equal(made.length, 2);
  assert.equal(made[1].url.searchParams.get("resume"), "t1");
  assert.equal(made[1].url.searchParams.get("last"), "b");
  made[1].hello({ clientId: "c1", resumeToken: "t2", recovered: true, missed: 2 });
  made[1].say(push("b")); // already handed: skipped
  made[1].say(push("c"));
  made[1].say(push("d"));
  const got = events.filter(([e]) => e === "message").map(([, f]) => f.messageId);
  assert.deepEqual(got, ["a", "b", "c", "d"]);
  assert.deepEqual(events.find(([e, a]) => e === "connect" && a.recovered), [
    "connect",
    { clientId: "c1", recovered: true, missed: 2 },
  ]);
  assert.ok(!names(events).includes("reset"));
  rc.close();
});

test("a resume the server could not honour emits reset with both clientIds", () => {
  const { FakeWS, made } = fakeSocketClass();
  const rc = new Roomcast("ws://h", { systemId: "s", WebSocket: FakeWS, minReconnectDelay: 10 });
  const events = record(rc);
  rc.connect();
  made[0].hello({ clientId: "c1", resumeToken: "t1", recovered: false });
  made[0].say(push("a"));
  made[0].drop();
  mock.timers.tick(10);
  made[1].hello({ clientId: "c2", resumeToken: "t2", recovered: false });
  assert.deepEqual(events.at(-1), ["reset", { oldClientId: "c1", clientId: "c2" }]);
  made[1].say(push("a")); // a new session: its ids are its own
  assert.equal(events.filter(([e]) => e === "message").length, 2);
  // Without recovery there is nothing to reset.
  const plain = new Roomcast("ws://h", { systemId: "s", WebSocket: FakeWS, recover: false, minReconnectDelay: 10 });
  const ev2 = record(plain);
  plain.connect();
  made[2].hello({ clientId: "p1" });
  made[2].drop();
  mock.timers.tick(10);
  assert.equal(made[3].url.searchParams.get("resume"), null);
  made[3].hello({ clientId: "p2" });
  assert.deepEqual(names(ev2), ["connect", "disconnect", "connect"]);
  rc.close();
  plain.close();
});

test("a close 1012 (restart) or 1001 (going away) reconnects with the usual backoff and resumes", () => {
  const { FakeWS, made } = fakeSocketClass();
  const rc = new Roomcast("ws://h", { systemId: "s", WebSocket: FakeWS, minReconnectDelay: 100 });
  const events = record(rc);
  rc.connect();
  made[0].hello({ clientId: "c1", resumeToken: "t1", recovered: false });
  made[0].drop(1012, "service restart");
  assert.deepEqual(events.at(-1), ["disconnect", { code: 1012, reason: "service restart", willReconnect: true }]);
  mock.timers.tick(100);
  assert.equal(made[1].url.searchParams.get("resume"), "t1");
  made[1].hello({ clientId: "c1", resumeToken: "t2", recovered: true, missed: 0 });
  made[1].drop(1001, "going away");
  mock.timers.tick(200);
  assert.equal(made[2].url.searchParams.get("resume"), "t2");
  assert.ok(!names(events).includes("error"));
  rc.close();
});

test("1001/1002 notices are messages and online/offline events with their data decoded", () => {
  const { FakeWS, made } = fakeSocketClass();
  const rc = new Roomcast("ws://h", { systemId: "s", WebSocket: FakeWS });
  const events = record(rc);
  rc.connect();
  made[0].hello({ clientId: "c1" });
  const data = JSON.stringify({ clientId: "x", extend: "e", userId: "u" });
  made[0].say(push("n1", { code: 1001, sendUserId: "u", data }));
  made[0].say(push("n2", { code: 1002, data }));
  const on = events.find(([e]) => e === "online")[1];
  assert.deepEqual([on.clientId, on.userId, on.extend, on.frame.messageId], ["x", "u", "e", "n1"]);
  assert.equal(events.find(([e]) => e === "offline")[1].frame.messageId, "n2");
  assert.deepEqual(names(events), ["connect", "message", "online", "message", "offline"]);
  rc.close();
});

test("a refusal is an error, retried no sooner than maxReconnectDelay, never given up", () => {
  const { FakeWS, made } = fakeSocketClass();
  const o = { systemId: "s", WebSocket: FakeWS, minReconnectDelay: 100, maxReconnectDelay: 1000 };
  const rc = new Roomcast("ws://h", o);
  const events = record(rc);
  rc.connect();
  for (let i = 0; i < 5; i++) {
    made[i].open();
    made[i].say({ messageId: "", sendUserId: "", code: -1001, msg: "system s is not registered", data: [] });
    made[i].drop(1008, "refused");
    mock.timers.tick(999);
    assert.equal(made.length, i + 1, "not before maxReconnectDelay");
    mock.timers.tick(101);
    assert.equal(made.length, i + 2, "tried again");
  }
  const errors = events.filter(([e]) => e === "error").map(([, err]) => [err.kind, err.code, err.message]);
  assert.equal(errors.length, 5);
  assert.deepEqual(errors[0], ["refused", -1001, "system s is not registered"]);
  assert.ok(!names(events).includes("disconnect"), "it never connected");
  rc.close();
});

test("a refused resume is followed soon by a fresh connect that calls the token function", async () => {
  const { FakeWS, made } = fakeSocketClass();
  let calls = 0;
  const token = async () => `tok${++calls}`;
  const rc = new Roomcast("ws://h", { systemId: "s", WebSocket: FakeWS, token, minReconnectDelay: 50 });
  const events = record(rc);
  rc.connect();
  await settle();
  assert.equal(made[0].url.searchParams.get("token"), "tok1");
  made[0].hello({ clientId: "c1", resumeToken: "t1", recovered: false });
  made[0].drop();
  mock.timers.tick(50);
  await settle();
  assert.equal(calls, 1, "a resume needs no connect token");
  assert.equal(made[1].url.searchParams.get("token"), null);
  made[1].open();
  made[1].say({ messageId: "", sendUserId: "", code: -1001, msg: "the session could not be resumed", data: [] });
  made[1].drop(1008);
  mock.timers.tick(100); // the second attempt's backoff: within 2 x minReconnectDelay
  await settle();
  assert.equal(made.length, 3, "within the usual backoff, not maxReconnectDelay");
  assert.equal(made[2].url.searchParams.get("resume"), null);
  assert.equal(made[2].url.searchParams.get("token"), "tok2");
  made[2].hello({ clientId: "c2", resumeToken: "t3", recovered: false });
  assert.deepEqual(events.at(-1), ["reset", { oldClientId: "c1", clientId: "c2" }]);
  rc.close();
});

test("a token function that throws is an error and a later retry", async () => {
  const { FakeWS, made } = fakeSocketClass();
  let calls = 0;
  const token = () => {
    if (++calls === 1) throw new Error("back end down");
    return "ok";
  };
  const rc = new Roomcast("ws://h", { systemId: "s", WebSocket: FakeWS, token, minReconnectDelay: 100, maxReconnectDelay: 300 });
  const events = record(rc);
  rc.connect();
  await settle();
  assert.equal(made.length, 0);
  assert.match(events[0][1].message, /back end down/);
  mock.timers.tick(800);
  await settle();
  assert.equal(made[0].url.searchParams.get("token"), "ok");
  rc.close();
});

test("no pong within pongTimeout: the socket is dropped without a close frame and resumed at once", () => {
  const { FakeWS, made } = fakeSocketClass();
  const rc = new Roomcast("ws://h", { systemId: "s", WebSocket: FakeWS, pingInterval: 1000, pongTimeout: 500 });
  const events = record(rc);
  rc.connect();
  made[0].hello({ clientId: "c1", resumeToken: "t1", recovered: false });
  mock.timers.tick(1000);
  assert.deepEqual(made[0].sent, ['{"cmd":"ping"}']);
  made[0].say({ cmd: "pong" });
  mock.timers.tick(1000);
  assert.equal(made[0].sent.length, 2);
  mock.timers.tick(499);
  assert.equal(rc.state, "connected");
  mock.timers.tick(1);
  assert.equal(made[0].terminated, true);
  assert.equal(made[0].closed, null, "no close handshake: it would end the session");
  assert.deepEqual(events.at(-1)[1], { code: 1006, reason: "no pong within pongTimeout", willReconnect: true });
  mock.timers.tick(0);
  assert.equal(made.length, 2);
  assert.equal(made[1].url.searchParams.get("resume"), "t1");
  rc.close();
});

test("where a socket cannot be dropped silently it stays open until the resume took it over", () => {
  const { FakeWS, made } = fakeSocketClass({ terminate: false });
  const rc = new Roomcast("ws://h", { systemId: "s", WebSocket: FakeWS, pingInterval: 100, pongTimeout: 100 });
  const events = record(rc);
  rc.connect();
  made[0].hello({ clientId: "c1", resumeToken: "t1", recovered: false });
  mock.timers.tick(100); // the ping
  mock.timers.tick(100); // no pong
  mock.timers.tick(0); // the reconnect, at once
  assert.equal(made.length, 2);
  assert.equal(made[0].closed, null, "left open while the resume is under way");
  // The old socket was only slow: what it still brings is handed (the browser acknowledges it
  // there), and the resume's replay of the same frame is skipped.
  made[0].say(push("late"));
  made[0].drop(1006); // its close no longer counts
  assert.equal(made.length, 2);
  made[1].hello({ clientId: "c1", resumeToken: "t2", recovered: true, missed: 1 });
  assert.deepEqual(made[0].closed, { code: undefined, reason: undefined }, "closed once resumed");
  made[1].say(push("late"));
  made[1].say(push("next"));
  assert.deepEqual(
    events.filter(([e]) => e === "message").map(([, f]) => f.messageId),
    ["late", "next"],
  );
  rc.close();
});

test("no connect frame within connectTimeout: the attempt is given up and retried with backoff", () => {
  const { FakeWS, made } = fakeSocketClass();
  const o = { systemId: "s", WebSocket: FakeWS, connectTimeout: 1000, minReconnectDelay: 100 };
  const rc = new Roomcast("ws://h", o);
  rc.connect();
  made[0].open(); // the 101, and then nothing
  mock.timers.tick(1000);
  assert.equal(made[0].terminated, true);
  mock.timers.tick(100);
  assert.equal(made.length, 2);
  rc.close();
});

test("the backoff grows over failed attempts and starts again after a connection that stayed up", () => {
  const { FakeWS, made } = fakeSocketClass();
  const o = { systemId: "s", WebSocket: FakeWS, minReconnectDelay: 100, maxReconnectDelay: 10000, stableAfter: 5000 };
  const rc = new Roomcast("ws://h", o);
  const random = Math.random;
  Math.random = () => 0.999;
  try {
    rc.connect();
    const waits = [];
    for (let i = 0; i < 4; i++) {
      const n = made.length;
      made[n - 1].drop();
      let t = 0;
      while (made.length === n) {
        mock.timers.tick(1);
        t++;
      }
      waits.push(t);
    }
    assert.deepEqual(waits, [99, 199, 399, 799], "floor(0.999 x 100 x 2^n)");
    made.at(-1).hello({ clientId: "c1" });
    mock.timers.tick(5000);
    made.at(-1).drop();
    const n = made.length;
    mock.timers.tick(98);
    assert.equal(made.length, n);
    mock.timers.tick(1);
    assert.equal(made.length, n + 1, "back to the first step");
  } finally {
    Math.random = random;
  }
  rc.close();
});

test("close(): a normal close, no reconnect, state closed; connect() starts again", () => {
  const { FakeWS, made } = fakeSocketClass();
  const rc = new Roomcast("ws://h", { systemId: "s", WebSocket: FakeWS, minReconnectDelay: 10 });
  const events = record(rc);
  rc.connect();
  made[0].hello({ clientId: "c1", resumeToken: "t1" });
  rc.close();
  assert.equal(rc.state, "closed");
  assert.deepEqual(made[0].closed, { code: 1000, reason: "closed by the client" });
  assert.deepEqual(events.at(-1), ["disconnect", { code: 1000, reason: "closed by the client", willReconnect: false }]);
  mock.timers.tick(60_000);
  assert.equal(made.length, 1);
  rc.connect();
  assert.equal(made[1].url.searchParams.get("resume"), null, "a closed session is not resumed");
  made[1].hello({ clientId: "c2" });
  assert.ok(!names(events).includes("reset"));
  rc.close();
});

test("publish sends the client command while connected; the server's refusal is an error", () => {
  const { FakeWS, made } = fakeSocketClass();
  const rc = new Roomcast("ws://h", { systemId: "s", WebSocket: FakeWS });
  const events = record(rc);
  assert.equal(rc.publish("g", { msg: "x" }), false);
  rc.connect();
  made[0].hello({ clientId: "c1" });
  assert.equal(rc.publish("g", { code: 7, msg: "hi", data: { a: 1 } }), true);
  assert.deepEqual(JSON.parse(made[0].sent[0]), { cmd: "publish", groupName: "g", code: 7, msg: "hi", data: { a: 1 } });
  made[0].say({ cmd: "error", msg: "client publishing is disabled on this server" });
  assert.equal(events.at(-1)[1].kind, "publish");
  assert.throws(() => rc.on("nope", () => {}), /no event/);
  rc.close();
});

test("a listener that throws does not stop the others or the client", () => {
  const { FakeWS, made } = fakeSocketClass();
  const rc = new Roomcast("ws://h", { systemId: "s", WebSocket: FakeWS });
  const got = [];
  rc.on("message", () => {
    throw new Error("app bug");
  });
  rc.on("message", (f) => got.push(f.messageId));
  rc.connect();
  made[0].hello({ clientId: "c1" });
  made[0].say(push("a"));
  made[0].say(push("b"));
  assert.deepEqual(got, ["a", "b"]);
  assert.equal(rc.state, "connected");
  // (The exception is rethrown from a timer, where it shows; the fake clock never runs it.)
  rc.close();
});

test("close() while a socket is still connecting fails it quietly (no unhandled error event)", () => {
  const { FakeWS, made } = fakeSocketClass({ terminate: false });
  const rc = new Roomcast("ws://h", { systemId: "s", WebSocket: FakeWS });
  rc.connect();
  assert.equal(made[0].readyState, 0);
  rc.close();
  mock.timers.tick(0); // the fake's error event: it throws if nobody listens
  assert.equal(rc.state, "closed");
  // A connect timeout on a socket still connecting too.
  const rc2 = new Roomcast("ws://h", { systemId: "s", WebSocket: FakeWS, connectTimeout: 100 });
  rc2.connect();
  mock.timers.tick(100);
  mock.timers.tick(0);
  rc2.close();
});

test("close() from a connect listener ends it there: no reset for the next connect()", () => {
  const { FakeWS, made } = fakeSocketClass();
  const rc = new Roomcast("ws://h", { systemId: "s", WebSocket: FakeWS, minReconnectDelay: 10 });
  const events = record(rc);
  let once = true;
  rc.on("connect", () => once && ((once = false), rc.close()));
  rc.connect();
  made[0].hello({ clientId: "c1", resumeToken: "t1" });
  assert.equal(rc.state, "closed");
  rc.connect();
  made[1].hello({ clientId: "c2", resumeToken: "t2" });
  assert.ok(!names(events).includes("reset"), JSON.stringify(names(events)));
  rc.close();
});

test("the browser's online event reconnects at once, but never cuts a refusal's wait short", () => {
  const listeners = new Map();
  globalThis.addEventListener = (type, fn) => listeners.set(type, fn);
  globalThis.removeEventListener = (type) => listeners.delete(type);
  try {
    const { FakeWS, made } = fakeSocketClass();
    const o = { systemId: "s", WebSocket: FakeWS, minReconnectDelay: 5000, maxReconnectDelay: 10000 };
    const rc = new Roomcast("ws://h", o);
    rc.connect();
    made[0].hello({ clientId: "c1", resumeToken: "t1" });
    made[0].drop();
    listeners.get("online")();
    assert.equal(made.length, 2, "at once, not after the backoff");
    made[1].open();
    made[1].say({ messageId: "", sendUserId: "", code: -1001, msg: "refused", data: [] });
    made[1].drop(1008);
    // A refused resume is retried with the backoff: refuse the fresh connect too.
    mock.timers.tick(10000);
    made[2].open();
    made[2].say({ messageId: "", sendUserId: "", code: -1001, msg: "refused", data: [] });
    made[2].drop(1008);
    listeners.get("online")();
    assert.equal(made.length, 3, "the refusal's wait stands");
    mock.timers.tick(15000);
    assert.equal(made.length, 4);
    rc.close();
    assert.equal(listeners.size, 0, "close() removes its listener");
  } finally {
    delete globalThis.addEventListener;
    delete globalThis.removeEventListener;
  }
});

test("a token function that never settles is given up after connectTimeout, then retried", async () => {
  const { FakeWS, made } = fakeSocketClass();
  let calls = 0;
  const token = () => (++calls === 1 ? new Promise(() => {}) : "ok");
  const o = { systemId: "s", WebSocket: FakeWS, token, connectTimeout: 1000, minReconnectDelay: 100, maxReconnectDelay: 500 };
  const rc = new Roomcast("ws://h", o);
  const events = record(rc);
  rc.connect();
  await settle();
  mock.timers.tick(1000);
  await settle();
  assert.equal(events[0][1].kind, "token");
  assert.match(events[0][1].message, /connectTimeout/);
  mock.timers.tick(600);
  await settle();
  assert.equal(made.length, 1);
  assert.equal(made[0].url.searchParams.get("token"), "ok");
  rc.close();
});

test("a pong timeout after a connection that stayed up starts the backoff again", () => {
  const { FakeWS, made } = fakeSocketClass();
  const o = { systemId: "s", WebSocket: FakeWS, minReconnectDelay: 100, maxReconnectDelay: 10000, stableAfter: 1000 };
  const rc = new Roomcast("ws://h", { ...o, pingInterval: 2000, pongTimeout: 500 });
  const random = Math.random;
  Math.random = () => 0.999;
  try {
    rc.connect();
    for (let i = 0; i < 5; i++) {
      made.at(-1).drop();
      mock.timers.tick(10000);
    }
    made.at(-1).hello({ clientId: "c1", resumeToken: "t" });
    mock.timers.tick(2000); // the ping
    mock.timers.tick(500); // no pong: resumed at once
    mock.timers.tick(0);
    const n = made.length;
    made.at(-1).drop(); // the resume fails: the first step again, not the sixth
    mock.timers.tick(99);
    assert.equal(made.length, n + 1);
  } finally {
    Math.random = random;
  }
  rc.close();
});
