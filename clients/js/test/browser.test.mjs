// The client in headless Chromium (Debian's chromium, driven by puppeteer-core): each test's
// page loads the server's own GET /roomcast.js with a plain <script src> and runs the same
// scenarios as in Node (scenarios.mjs), through the fault-injecting proxy.
import { after, before, test } from "node:test";
import { createServer } from "node:http";
import puppeteer from "puppeteer-core";
import assert from "node:assert/strict";
import { connectToken, installRecorder, startServer } from "./harness.mjs";
import { scenarios } from "./scenarios.mjs";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
let browser;

let site;

before(async () => {
  // The application's page: another origin than the push server's, as in production.
  const pages = createServer((req, res) => {
    const push = new URL(req.url, "http://x").searchParams.get("push") || "";
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
    res.end(`<!doctype html><title>roomcast.js test</title><script src="${push}/roomcast.js"></script>`);
  });
  await new Promise((r) => pages.listen(0, "127.0.0.1", r));
  pages.unref();
  site = `http://127.0.0.1:${pages.address().port}`;
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  await browser?.close();
});

async function browserDriver(server) {
  const page = await browser.newPage();
  page.on("pageerror", (e) => console.error("page error:", e.message));
  await page.exposeFunction("__mint", (claims) => connectToken(claims));
  // A page of the application's own origin that loads the client from the push server.
  await page.goto(`${site}/?push=${encodeURIComponent(server.http)}`);
  await page.waitForFunction(() => typeof window.Roomcast === "function", { timeout: 10_000 });
  await page.evaluate(`(${installRecorder})(window, window.Roomcast, null, window.__mint)`);
  return {
    open: (name, url, opts) => page.evaluate((n, u, o) => window.__rc.open(n, u, o), name, url, opts),
    events: (name) => page.evaluate((n) => window.__rc.events(n), name),
    call: (name, method, args) => page.evaluate((n, m, a) => window.__rc.call(n, m, a), name, method, args),
    prop: (name, key) => page.evaluate((n, k) => window.__rc.prop(n, k), name, key),
    dispose: async () => {
      await page.evaluate(() => window.__rc.closeAll()).catch(() => {});
      await page.close();
    },
  };
}

scenarios(test, "chromium", browserDriver);

test("chromium: examples/chat works as its README says: two users, presence, a message each way", { timeout: 60_000 }, async () => {
  const server = await startServer(["--ws-auth", "--client-publish"]);
  const pages = [];
  try {
    await server.register("chat");
    const page = async (user) => {
      const token = connectToken({ system: "chat", sub: user, groups: ["lobby"], ttl: 600 });
      const p = await browser.newPage();
      pages.push(p);
      const url = new URL("../../../examples/chat/index.html", import.meta.url);
      url.search = new URLSearchParams({ server: server.http, token }).toString();
      await p.goto(url.href);
      await p.waitForFunction(() => document.getElementById("state").textContent === "connected", { timeout: 10_000 });
      return p;
    };
    const alice = await page("alice");
    const bob = await page("bob");
    const log = (p) => p.evaluate(() => document.getElementById("log").innerText);
    await alice.waitForFunction(() => document.getElementById("who").textContent.includes("bob"), { timeout: 5_000 });
    await bob.type("#text", "hello alice");
    await bob.click("button");
    await alice.waitForFunction(() => document.getElementById("log").innerText.includes("bob: hello alice"), { timeout: 5_000 });
    await server.api("send_to_group", "chat", { groupName: "lobby", sendUserId: "moderator", code: 200, msg: "chat", data: "welcome!" });
    await bob.waitForFunction(() => document.getElementById("log").innerText.includes("moderator: welcome!"), { timeout: 5_000 });
    assert.match(await log(bob), /bob: hello alice/, "the sender sees its own message too");
    await alice.close();
    pages.shift();
    await bob.waitForFunction(() => document.getElementById("log").innerText.includes("alice left"), { timeout: 5_000 });
  } finally {
    for (const p of pages) await p.close();
    await server.stop();
  }
});
