#!/usr/bin/env node
// A roomcast back end in Node.js 20+, no npm packages (node:http, node:crypto, global fetch).
//
// It shows the four things a back end does with roomcast:
//   1. mints HS256 API tokens itself (an operator token to `register` the system, a system
//      token for everything else) and registers the system;
//   2. mints a connect token for one user (scope "connect", sub = the user) and prints the
//      WebSocket URL a page would open with it;
//   3. receives the presence webhooks on 127.0.0.1, verifying each request's signature and
//      timestamp (HMAC-SHA256 of "<timestamp>.<raw body>", compared in constant time, refused
//      401 when more than 5 minutes off), and prints one line per event;
//   4. when that user's client_connected webhook names its clientId: binds it to a group,
//      sends to the group and to the user, and reads the group's online list.
//
// Run (see ../README.md):
//   export ROOMCAST_JWT_SECRET=dev-secret ROOMCAST_WEBHOOK_SECRET=hook-secret
//   node backend.js                # prints: listening http://127.0.0.1:PORT/hook
//   target/release/roomcast --webhook-url http://127.0.0.1:PORT/hook &   # same two secrets
//   # press Enter (or type the server's base URL), open the printed connect-url with any
//   # WebSocket client; close stdin (Ctrl-D) to stop.
// Settings (environment): ROOMCAST_URL (http://127.0.0.1:7800), ROOMCAST_JWT_SECRET,
// ROOMCAST_WEBHOOK_SECRET, HOOK_PORT (0: any free port), SYSTEM_ID (demo), USER_ID (alice),
// GROUP_NAME (room1).
"use strict";
const crypto = require("node:crypto");
const http = require("node:http");
const readline = require("node:readline");

function setting(name, fallback) {
  const value = process.env[name] || fallback;
  if (!value) fail(`backend.js: set ${name}`);
  return value;
}
function fail(message) {
  console.error(message);
  process.exit(1);
}

const JWT_SECRET = setting("ROOMCAST_JWT_SECRET");
const HOOK_SECRET = setting("ROOMCAST_WEBHOOK_SECRET");
const SYSTEM = setting("SYSTEM_ID", "demo"), USER = setting("USER_ID", "alice"), GROUP = setting("GROUP_NAME", "room1");

const b64url = (buf) => Buffer.from(buf).toString("base64url");

// An HS256 JWT: base64url(header).base64url(claims).base64url(HMAC-SHA256 of both).
function jwt(claims, ttl) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify({ ...claims, iat: now, exp: now + ttl }));
  const sig = crypto.createHmac("sha256", JWT_SECRET).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

// POST /api/<name>; resolves to [status, JSON answer]; exits on any status not in `accept`.
async function api(base, name, body, token, system, accept = [200]) {
  const headers = { "Content-Type": "application/json", Authorization: `Bearer ${token}` };
  if (system) headers.SystemId = system;
  let resp;
  try {
    resp = await fetch(`${base}/api/${name}`, { method: "POST", headers, body: JSON.stringify(body) });
  } catch (e) {
    fail(`roomcast ${name}: cannot reach ${base}: ${e.cause?.message ?? e.message}`);
  }
  const text = await resp.text();
  if (!accept.includes(resp.status)) fail(`roomcast ${name}: HTTP ${resp.status} ${text}`);
  return [resp.status, JSON.parse(text)];
}

// Why a webhook request is refused (null: it is roomcast's, and fresh).
function refusal(body, timestamp, signature) {
  if (!/^\d+$/.test(timestamp) || Math.abs(Date.now() / 1000 - Number(timestamp)) > 300) {
    return "missing or stale X-Roomcast-Timestamp";
  }
  const want = "sha256=" + crypto.createHmac("sha256", HOOK_SECRET).update(`${timestamp}.`).update(body).digest("hex");
  const a = Buffer.from(want), b = Buffer.from(signature);
  if (a.length !== b.length || !crypto.timingSafeEqual(a, b)) return "bad X-Roomcast-Signature";
  return null;
}

const seen = new Set(); // event ids already handled: a retried batch resends them (a real back end expires them)
let onConnected = () => {}; // told the clientId of USER's client_connected events

const hooks = http.createServer((req, res) => {
  const parts = [];
  req.on("data", (chunk) => parts.push(chunk));
  req.on("end", () => {
    const answer = (status, text) => res.writeHead(status, { "Content-Type": "text/plain" }).end(text);
    if (req.method !== "POST" || req.url !== "/hook") return answer(404, "not found");
    const body = Buffer.concat(parts);
    const header = (name) => String(req.headers[name] ?? "");
    const why = refusal(body, header("x-roomcast-timestamp"), header("x-roomcast-signature"));
    if (why) {
      console.error(`webhook refused: ${why}`);
      return answer(401, why);
    }
    for (const e of JSON.parse(body).events) {
      if (seen.has(e.id)) continue;
      seen.add(e.id);
      console.log(`webhook ${e.name} ${e.clientId || e.userId || e.groupName || e.count || ""}`);
      if (e.name === "client_connected" && e.systemId === SYSTEM && e.userId === USER) onConnected(e.clientId);
    }
    answer(200, "ok");
  });
});

async function main() {
  await new Promise((resolve) => hooks.listen(Number(setting("HOOK_PORT", "0")), "127.0.0.1", resolve));
  console.log(`listening http://127.0.0.1:${hooks.address().port}/hook`);
  console.error("start roomcast with that --webhook-url, then press Enter (or type its base URL)");
  const stdin = readline.createInterface({ input: process.stdin });
  stdin.on("close", () => process.exit(0)); // closing stdin stops the example, at any time
  const line = await new Promise((resolve) => stdin.once("line", resolve));
  const base = (line.trim() || setting("ROOMCAST_URL", "http://127.0.0.1:7800")).replace(/\/+$/, "");
  const connected = new Promise((resolve) => (onConnected = resolve));

  // 1. register the system: only an operator token may.
  const [status] = await api(base, "register", { systemId: SYSTEM }, jwt({ role: "operator" }, 300), null, [200, 409]);
  console.log(`registered ${SYSTEM}${status === 409 ? " (already)" : ""}`);
  const token = jwt({ systemId: SYSTEM }, 3600); // every other call: a token for this system only

  // 2. a connect token for USER: it opens a WebSocket as that user, and calls no API.
  const connect = jwt({ scope: "connect", systemId: SYSTEM, sub: USER }, 600);
  console.log(`connect-url ${base.replace(/^http/, "ws")}/ws?systemId=${SYSTEM}&token=${connect}`);

  // 3. + 4. the webhook tells us the clientId of USER's connection; then use it.
  const client = await connected;
  await api(base, "bind_to_group", { clientId: client, groupName: GROUP, userId: USER }, token, SYSTEM);
  console.log(`bound ${client} to ${GROUP}`);
  const hello = { sendUserId: "backend", code: 200, data: { from: "node" } };
  let [, v] = await api(base, "send_to_group", { ...hello, groupName: GROUP, msg: `hello ${GROUP}` }, token, SYSTEM);
  console.log(`sent_to_group ${GROUP} messageId=${v.data.messageId}`);
  [, v] = await api(base, "send_to_user", { ...hello, userId: USER, msg: `hello ${USER}` }, token, SYSTEM);
  console.log(`sent_to_user ${USER} messageId=${v.data.messageId} clients=${v.data.clients}`);
  [, v] = await api(base, "get_online_list", { groupName: GROUP }, token, SYSTEM);
  console.log(`online ${GROUP} count=${v.data.count} clients=${v.data.list.join(",")}`);
  console.error("serving webhooks until stdin closes");
}

main().catch((e) => fail(String(e?.stack ?? e)));
