// roomcast.js — the first-party client of the roomcast push server.
//
// Speaks roomcast's WebSocket protocol for browsers and Node 20+: reconnects with backoff and
// full jitter, session recovery (the same clientId and every frame sent meanwhile, exactly
// once and in order), dead-connection detection by application-level ping, connect tokens
// (a string, or a function called at every fresh connect) and refusals reported as `error`.
// No dependencies. The public surface is documented in clients/js/README.md and roomcast.d.ts.

const DEFAULTS = {
  recover: true,
  minReconnectDelay: 500,
  maxReconnectDelay: 20000,
  pingInterval: 20000,
  pongTimeout: 10000,
  connectTimeout: 10000,
  stableAfter: 5000,
};

/** How many recent messageIds are remembered to hand none twice. */
const SEEN_MAX = 1024;

/** The least `maxReconnectDelay`, which is also the least wait after a refusal. */
const MIN_REFUSAL_WAIT = 100;

/** The server's refusal frame code (unregistered system, bad token, a bound broken). */
const REFUSED = -1001;

const EVENTS = ["connect", "message", "online", "offline", "disconnect", "reset", "error"];

/**
 * The wait before reconnect attempt `attempt` (0 = the first after a drop): full jitter, a
 * uniform draw in [0, min(max, min * 2^attempt)) — so attempt 0 comes within `min` and a fleet
 * dropped together does not come back in step.
 */
function backoff(attempt, min, max, random = Math.random) {
  const cap = Math.min(max, min * Math.pow(2, Math.min(attempt, 30)));
  return Math.floor(random() * cap);
}

/** `ws://`, `wss://`, `http://` or `https://` host[:port][/path]; an empty path means `/ws`. */
function socketUrl(url) {
  const u = new URL(url);
  const scheme = { "ws:": "ws:", "wss:": "wss:", "http:": "ws:", "https:": "wss:" }[u.protocol];
  if (!scheme) throw new TypeError(`roomcast: url must be ws://, wss://, http:// or https://, not ${u.protocol}`);
  u.protocol = scheme;
  if (u.pathname === "" || u.pathname === "/") u.pathname = "/ws";
  u.hash = "";
  return u;
}

/** An error handed to `error` listeners: `kind` says where it came from. */
class RoomcastError extends Error {
  constructor(kind, message, code) {
    super(message);
    this.name = "RoomcastError";
    this.kind = kind; // "refused" | "token" | "socket" | "publish" | "protocol"
    if (code !== undefined) this.code = code;
  }
}

function checkOptions(o) {
  if (typeof o.systemId !== "string" || o.systemId === "") {
    throw new TypeError("roomcast: options.systemId (a non-empty string) is required");
  }
  for (const k of Object.keys(DEFAULTS)) {
    if (k !== "recover" && !(Number.isFinite(o[k]) && o[k] >= 0)) {
      throw new TypeError(`roomcast: options.${k} must be a number of milliseconds >= 0`);
    }
  }
  for (const k of ["pingInterval", "pongTimeout", "connectTimeout"]) {
    if (o[k] < 1) throw new TypeError(`roomcast: options.${k} must be at least 1 ms`);
  }
  // The least wait after a refusal: a smaller one would retry a refused connect in a tight loop.
  if (o.maxReconnectDelay < MIN_REFUSAL_WAIT) {
    throw new TypeError(`roomcast: options.maxReconnectDelay must be at least ${MIN_REFUSAL_WAIT} ms`);
  }
  if (o.maxReconnectDelay < o.minReconnectDelay) {
    throw new TypeError("roomcast: options.maxReconnectDelay must not be below minReconnectDelay");
  }
  if (o.token != null && typeof o.token !== "string" && typeof o.token !== "function") {
    throw new TypeError("roomcast: options.token must be a string or a function");
  }
}

class Roomcast {
  /**
   * @param {string} url  the server: ws://, wss://, http:// or https:// host[:port][/path]
   * @param {object} options  see roomcast.d.ts; `systemId` is required
   */
  constructor(url, options = {}) {
    const o = { ...DEFAULTS, ...options };
    checkOptions(o);
    this._url = socketUrl(url);
    this._o = o;
    this._WS = o.WebSocket || globalThis.WebSocket;
    if (typeof this._WS !== "function") {
      throw new TypeError("roomcast: no WebSocket here; pass one as options.WebSocket (in Node: the ws package)");
    }
    this._listeners = new Map(EVENTS.map((e) => [e, new Set()]));
    /** The session's clientId, once connected (kept across a drop while it may be resumed). */
    this.clientId = null;
    /** "connecting" | "connected" | "disconnected" | "closed" */
    this.state = "disconnected";
    this._stopped = true; // before connect() and after close()
    this._ws = null;
    this._stale = []; // sockets left without a close handshake (see _abandon)
    this._gen = 0; // bumped per socket: events of an older one are ignored
    this._resumeToken = null;
    this._last = null; // messageId of the last frame handed to `message` listeners
    this._seen = new Set();
    this._attempt = 0;
    this._hadSession = false;
    this._refusalWait = false;
    this._timers = { reconnect: null, ping: null, pong: null, hello: null };
    this._onOnline = () => this._online();
  }

  on(event, fn) {
    this._set(event).add(fn);
    return this;
  }

  off(event, fn) {
    this._set(event).delete(fn);
    return this;
  }

  /** Starts connecting (and reconnecting after drops) until `close()`. */
  connect() {
    if (!this._stopped) return this;
    this._stopped = false;
    this._attempt = 0;
    if (typeof globalThis.addEventListener === "function") {
      globalThis.addEventListener("online", this._onOnline);
    }
    this._open();
    return this;
  }

  /** Closes for good: a normal close (the server ends the session), no reconnect. */
  close() {
    if (this._stopped && this.state === "closed") return this;
    const wasUp = this.state === "connected";
    this._stopped = true;
    this._clearTimers();
    if (typeof globalThis.removeEventListener === "function") {
      globalThis.removeEventListener("online", this._onOnline);
    }
    const ws = this._ws;
    this._ws = null;
    this._gen++;
    if (ws) closeQuietly(ws, 1000, "closed by the client");
    this._dropStale();
    this.state = "closed";
    this._resumeToken = null;
    this._hadSession = false; // a later connect() starts afresh: no `reset` for this one
    if (wasUp) this._emit("disconnect", { code: 1000, reason: "closed by the client", willReconnect: false });
    return this;
  }

  /** Publishes to a group this client is in (needs `client_publish` on the server). */
  publish(groupName, { code = 0, msg = "", data = "" } = {}) {
    if (this.state !== "connected" || !this._ws) return false;
    this._ws.send(JSON.stringify({ cmd: "publish", groupName, code, msg, data }));
    return true;
  }

  // ---- connecting ----

  async _open() {
    const gen = ++this._gen;
    this.state = "connecting";
    const resuming = this._o.recover && this._resumeToken !== null;
    let token = null;
    if (!resuming && this._o.token != null) {
      try {
        token = typeof this._o.token === "function" ? await this._boundedToken() : this._o.token;
      } catch (e) {
        if (gen !== this._gen || this._stopped) return;
        this._emit("error", new RoomcastError("token", `roomcast: the token function failed: ${e && e.message}`));
        return this._retry(this._refusalDelay(), true);
      }
      if (gen !== this._gen || this._stopped) return;
    }
    let ws;
    try {
      ws = new this._WS(this._connectUrl(resuming, token).href);
    } catch (e) {
      this._emit("error", new RoomcastError("socket", `roomcast: cannot open the WebSocket: ${e && e.message}`));
      return this._retry(this._refusalDelay(), true);
    }
    this._ws = ws;
    const cur = { ws, gen, resuming, refused: false, upSince: 0 };
    ws.onmessage = (ev) => gen === this._gen && this._frame(cur, ev.data);
    ws.onclose = (ev) => gen === this._gen && this._closed(cur, ev.code, ev.reason);
    ws.onerror = () => {}; // a close follows
    this._timers.hello = setTimeout(() => {
      if (gen !== this._gen) return;
      const refused = cur.refused && !cur.resumeFailed; // refused, and then the close never came
      const delay = refused ? this._refusalDelay() : this._backoff();
      this._abandon(cur, "no connect frame within connectTimeout", delay, refused);
    }, this._o.connectTimeout);
  }

  /** The token function's answer, or a rejection once `connectTimeout` passed without one. */
  _boundedToken() {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no token within connectTimeout`)), this._o.connectTimeout);
      Promise.resolve()
        .then(() => this._o.token())
        .then(resolve, reject)
        .finally(() => clearTimeout(t));
    });
  }

  _connectUrl(resuming, token) {
    const u = new URL(this._url.href);
    u.searchParams.set("systemId", this._o.systemId);
    if (this._o.recover) {
      u.searchParams.set("recover", "1");
      if (resuming) {
        u.searchParams.set("resume", this._resumeToken);
        if (this._last) u.searchParams.set("last", this._last);
      }
    }
    if (token) u.searchParams.set("token", token);
    return u;
  }

  /** The connect frame: `{"code":0,"msg":"success","data":{"clientId":..}}`. */
  _hello(cur, data) {
    clearTimeout(this._timers.hello);
    const oldClientId = this.clientId;
    const recovered = cur.resuming && data.recovered === true;
    if (!recovered) {
      this._last = null;
      this._seen.clear();
    }
    this.clientId = data.clientId;
    this._resumeToken = this._o.recover && typeof data.resumeToken === "string" ? data.resumeToken : null;
    cur.upSince = Date.now();
    this.state = "connected";
    this._dropStale(); // a resume took the old connection over: its late close frame is harmless now
    this._startPing(cur);
    const missed = recovered ? data.missed || 0 : 0;
    const lost = this._o.recover && this._hadSession && !recovered;
    this._hadSession = true;
    this._emit("connect", { clientId: this.clientId, recovered, missed });
    // A listener may have closed (and even reconnected) the client: this session is over then.
    if (lost && cur.gen === this._gen) this._emit("reset", { oldClientId, clientId: this.clientId });
  }

  // ---- frames ----

  _frame(cur, text) {
    this._alive();
    const f = parseFrame(text);
    if (f === undefined) return this._emit("error", new RoomcastError("protocol", "roomcast: a frame that is not JSON"));
    if (f === null || typeof f !== "object") return;
    if (typeof f.cmd === "string") {
      if (f.cmd === "error") this._emit("error", new RoomcastError("publish", String(f.msg)));
      return; // "pong": _alive did it
    }
    if (this.state !== "connected") {
      const hello = f.code === 0 && !("messageId" in f) && f.data && typeof f.data.clientId === "string";
      if (hello) return this._hello(cur, f.data);
      if (f.code === REFUSED) return this._refused(cur, String(f.msg));
      return;
    }
    this._push(f);
  }

  /**
   * A frame on a socket left after a pong timeout, before the resume's connect frame: it was
   * only slow. Its frames are handed as usual (the browser answers the server's pings on it,
   * which acknowledge them); the resume's replay of the same frames is skipped by messageId.
   */
  _staleFrame(text) {
    if (this._stopped) return;
    const f = parseFrame(text);
    if (f !== null && typeof f === "object" && typeof f.messageId === "string") this._push(f);
  }

  _push(f) {
    const id = typeof f.messageId === "string" ? f.messageId : "";
    if (id !== "") {
      if (this._seen.has(id)) return;
      this._seen.add(id);
      if (this._seen.size > SEEN_MAX) this._seen.delete(this._seen.values().next().value);
      this._last = id;
    }
    const gen = this._gen;
    this._emit("message", f);
    if (gen !== this._gen) return; // a listener closed the client
    if (f.code === 1001 || f.code === 1002) {
      let who = {};
      try {
        who = typeof f.data === "string" ? JSON.parse(f.data) : f.data || {};
      } catch {
        who = {};
      }
      const str = (v) => (typeof v === "string" ? v : "");
      const ev = { clientId: str(who && who.clientId), userId: str(who && who.userId), extend: str(who && who.extend), frame: f };
      this._emit(f.code === 1001 ? "online" : "offline", ev);
    }
  }

  /** A -1001 frame: the server refused this connect; it closes the socket (1008) next. */
  _refused(cur, msg) {
    cur.refused = true;
    if (cur.resuming) {
      // The session is gone (and, with ws_auth, a fresh session needs a token): the next
      // attempt is a fresh connect that calls the token function.
      this._resumeToken = null;
      cur.resumeFailed = true;
    }
    this._emit("error", new RoomcastError("refused", msg, REFUSED));
  }

  // ---- liveness ----

  _startPing(cur) {
    clearInterval(this._timers.ping);
    this._timers.ping = setInterval(() => this._ping(cur), this._o.pingInterval);
  }

  _ping(cur) {
    if (cur.gen !== this._gen || this.state !== "connected") return;
    try {
      cur.ws.send('{"cmd":"ping"}');
    } catch {
      return;
    }
    if (this._timers.pong === null) {
      this._timers.pong = setTimeout(() => {
        this._timers.pong = null;
        if (cur.gen === this._gen) this._abandon(cur, "no pong within pongTimeout", 0);
      }, this._o.pongTimeout);
    }
  }

  /** Anything from the server shows the connection is alive. */
  _alive() {
    clearTimeout(this._timers.pong);
    this._timers.pong = null;
  }

  _online() {
    if (this._stopped) return;
    if (this.state === "connected" && this._ws) {
      this._ping({ ws: this._ws, gen: this._gen });
    } else if (this._timers.reconnect !== null && !this._refusalWait) {
      clearTimeout(this._timers.reconnect);
      this._timers.reconnect = null;
      this._open();
    }
  }

  /**
   * Leaves a connection that looks dead without a close handshake: a close frame that reached
   * the server late would be a normal close and end the session. Where the WebSocket cannot be
   * dropped silently (browsers), it is left open until the next connect frame (the resume takes
   * it over on the server) and closed then. Reconnects after `delay` (at once after a pong
   * timeout: the session is still there to resume).
   */
  _abandon(cur, reason, delay, refusal = false) {
    const ws = cur.ws;
    this._gen++;
    this._ws = null;
    ws.onclose = null;
    ws.onerror = () => {};
    if (typeof ws.terminate === "function") {
      ws.onmessage = null;
      ws.terminate();
    } else if (ws.readyState === 0) {
      closeQuietly(ws); // still connecting: nothing reached the server as a WebSocket yet
    } else {
      ws.onmessage = (ev) => this._staleFrame(ev.data);
      this._stale.push(ws);
      while (this._stale.length > 4) closeQuietly(this._stale.shift());
    }
    this._down(cur, 1006, reason, delay, refusal);
  }

  _dropStale() {
    for (const ws of this._stale.splice(0)) closeQuietly(ws);
  }

  // ---- drops and reconnects ----

  _closed(cur, code, reason) {
    this._ws = null;
    this._gen++;
    const refused = cur.refused && !cur.resumeFailed;
    this._down(cur, code, reason || "", refused ? this._refusalDelay() : null, refused);
  }

  /** The connection `cur` is over; the next attempt after `delay` (null: the backoff's). */
  _down(cur, code, reason, delay, refusal) {
    this._clearTimers();
    if (this._stopped) return;
    if (cur.upSince && Date.now() - cur.upSince >= this._o.stableAfter) this._attempt = 0;
    const was = this.state;
    this.state = "disconnected";
    if (was === "connected") this._emit("disconnect", { code, reason, willReconnect: true });
    if (this._stopped) return; // a listener closed the client
    this._retry(delay === null ? this._backoff() : delay, refusal);
  }

  _backoff() {
    return backoff(this._attempt++, this._o.minReconnectDelay, this._o.maxReconnectDelay);
  }

  /** A refused connect is tried again no sooner than maxReconnectDelay, with jitter above. */
  _refusalDelay() {
    return this._o.maxReconnectDelay + backoff(0, this._o.minReconnectDelay, this._o.minReconnectDelay);
  }

  /** The next attempt in `delay` ms; `refusal`: a wait after a refusal (the `online` event keeps it). */
  _retry(delay, refusal = false) {
    if (this._stopped) return;
    this.state = "disconnected";
    clearTimeout(this._timers.reconnect);
    this._refusalWait = refusal;
    this._timers.reconnect = setTimeout(() => {
      this._timers.reconnect = null;
      this._refusalWait = false;
      if (!this._stopped) this._open();
    }, delay);
  }

  _clearTimers() {
    clearTimeout(this._timers.reconnect);
    clearInterval(this._timers.ping);
    clearTimeout(this._timers.pong);
    clearTimeout(this._timers.hello);
    this._timers = { reconnect: null, ping: null, pong: null, hello: null };
  }

  // ---- events ----

  _set(event) {
    const s = this._listeners.get(event);
    if (!s) throw new TypeError(`roomcast: no event "${event}" (events: ${EVENTS.join(", ")})`);
    return s;
  }

  _emit(event, arg) {
    for (const fn of [...this._listeners.get(event)]) {
      try {
        fn(arg);
      } catch (e) {
        // A listener's exception must not break the client: report it where it shows.
        setTimeout(() => {
          throw e;
        }, 0);
      }
    }
  }
}

/** A text frame's JSON value; `undefined` when it is not JSON. */
function parseFrame(text) {
  try {
    return JSON.parse(typeof text === "string" ? text : String(text));
  } catch {
    return undefined;
  }
}

function closeQuietly(ws, code, reason) {
  try {
    ws.onmessage = ws.onclose = null;
    // Closing a socket still connecting fails its handshake, which `ws` reports as an error
    // event: without a listener, Node would take that for an unhandled error and exit.
    ws.onerror = () => {};
    if (code === undefined) ws.close();
    else ws.close(code, reason);
  } catch {
    // already closed
  }
}

export { Roomcast, RoomcastError, backoff };
export default Roomcast;
