#!/usr/bin/env python3
"""A roomcast back end in Python, standard library only (http.server, urllib.request, hmac).

It shows the four things a back end does with roomcast:
  1. mints HS256 API tokens itself (an operator token to `register` the system, a system
     token for everything else) and registers the system;
  2. mints a connect token for one user (scope "connect", sub = the user) and prints the
     WebSocket URL a page would open with it;
  3. receives the presence webhooks on 127.0.0.1, verifying each request's signature and
     timestamp (HMAC-SHA256 of "<timestamp>.<raw body>", compared in constant time, refused
     401 when more than 5 minutes off), and prints one line per event;
  4. when that user's client_connected webhook names its clientId: binds it to a group,
     sends to the group and to the user, and reads the group's online list.

Run (see ../README.md):
  export ROOMCAST_JWT_SECRET=dev-secret ROOMCAST_WEBHOOK_SECRET=hook-secret
  python3 backend.py             # prints: listening http://127.0.0.1:PORT/hook
  target/release/roomcast --webhook-url http://127.0.0.1:PORT/hook &   # same two secrets
  # press Enter (or type the server's base URL), open the printed connect-url with any
  # WebSocket client; close stdin (Ctrl-D) to stop.
Settings (environment): ROOMCAST_URL (http://127.0.0.1:7800), ROOMCAST_JWT_SECRET,
ROOMCAST_WEBHOOK_SECRET, HOOK_PORT (0: any free port), SYSTEM_ID (demo), USER_ID (alice),
GROUP_NAME (room1).
"""
import base64, hashlib, hmac, http.server, json, os, queue, sys, threading, time
import urllib.error, urllib.request


def setting(name, default=None):
    value = os.environ.get(name) or default
    if not value:
        sys.exit(f"backend.py: set {name}")
    return value


JWT_SECRET = setting("ROOMCAST_JWT_SECRET").encode()
HOOK_SECRET = setting("ROOMCAST_WEBHOOK_SECRET").encode()
SYSTEM, USER, GROUP = setting("SYSTEM_ID", "demo"), setting("USER_ID", "alice"), setting("GROUP_NAME", "room1")

out_lock = threading.Lock()


def say(line):
    with out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def compact(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()  # roomcast relays `data` byte for byte


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwt(claims: dict, ttl: int) -> str:
    """An HS256 JWT: base64url(header).base64url(claims).base64url(HMAC-SHA256 of both)."""
    now = int(time.time())
    head = b64url(compact({"alg": "HS256", "typ": "JWT"}))
    body = b64url(compact({**claims, "iat": now, "exp": now + ttl}))
    sig = hmac.new(JWT_SECRET, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(sig)}"


def api(base, name, body, token, system=None, accept=(200,)):
    """POST /api/<name>; returns (status, JSON answer); exits on any status not in `accept`."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    if system:
        headers["SystemId"] = system
    req = urllib.request.Request(f"{base}/api/{name}", compact(body), headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, text = resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:  # any non-2xx answer
        status, text = e.code, e.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as e:
        sys.exit(f"roomcast {name}: cannot reach {base}: {e}")
    if status not in accept:
        sys.exit(f"roomcast {name}: HTTP {status} {text}")
    return status, json.loads(text)


def refusal(body: bytes, timestamp: str, signature: str):
    """Why a webhook request is refused (None: it is roomcast's, and fresh)."""
    if not (timestamp.isascii() and timestamp.isdigit()) or abs(time.time() - int(timestamp)) > 300:  # "¹".isdigit()
        return "missing or stale X-Roomcast-Timestamp"
    want = "sha256=" + hmac.new(HOOK_SECRET, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want.encode(), signature.encode()):
        return "bad X-Roomcast-Signature"
    return None


seen = set()  # event ids already handled: a retried batch resends them (a real back end expires them)
connected = queue.Queue()  # clientIds of USER's client_connected events; None: stdin closed
stdin_closed = threading.Event()


class Hooks(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive with roomcast's sender

    def do_POST(self):
        try:
            body = self.rfile.read(int(self.headers.get("Content-Length", "")))
        except ValueError:
            return self.answer(411, "Content-Length required")
        if self.path != "/hook":
            return self.answer(404, "not found")
        why = refusal(body, self.headers.get("X-Roomcast-Timestamp", ""), self.headers.get("X-Roomcast-Signature", ""))
        if why:
            print(f"webhook refused: {why}", file=sys.stderr, flush=True)
            return self.answer(401, why)
        for e in json.loads(body)["events"]:
            with out_lock:
                fresh = e["id"] not in seen
                seen.add(e["id"])
            if not fresh:
                continue
            subject = e.get("clientId") or e.get("userId") or e.get("groupName") or e.get("count", "")
            say(f"webhook {e['name']} {subject}")
            if e["name"] == "client_connected" and e["systemId"] == SYSTEM and e.get("userId") == USER:
                connected.put(e["clientId"])
        self.answer(200, "ok")

    def answer(self, status, text):
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # quiet: one line per event is printed above
        pass


def main():
    hooks = http.server.ThreadingHTTPServer(("127.0.0.1", int(setting("HOOK_PORT", "0"))), Hooks)
    hooks.daemon_threads = True
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    say(f"listening http://127.0.0.1:{hooks.server_address[1]}/hook")
    print("start roomcast with that --webhook-url, then press Enter (or type its base URL)", file=sys.stderr)
    line = sys.stdin.readline()
    if not line:
        return
    base = (line.strip() or setting("ROOMCAST_URL", "http://127.0.0.1:7800")).rstrip("/")
    threading.Thread(target=watch_stdin, daemon=True).start()

    # 1. register the system: only an operator token may.
    status, _ = api(base, "register", {"systemId": SYSTEM}, jwt({"role": "operator"}, 300), accept=(200, 409))
    say(f"registered {SYSTEM}" + (" (already)" if status == 409 else ""))
    token = jwt({"systemId": SYSTEM}, 3600)  # every other call: a token for this system only

    # 2. a connect token for USER: it opens a WebSocket as that user, and calls no API.
    connect = jwt({"scope": "connect", "systemId": SYSTEM, "sub": USER}, 600)
    ws = base.replace("http", "ws", 1)
    say(f"connect-url {ws}/ws?systemId={SYSTEM}&token={connect}")

    # 3. + 4. the webhook tells us the clientId of USER's connection; then use it.
    client = connected.get()
    if client is None:
        return
    api(base, "bind_to_group", {"clientId": client, "groupName": GROUP, "userId": USER}, token, SYSTEM)
    say(f"bound {client} to {GROUP}")
    hello = {"sendUserId": "backend", "code": 200, "data": {"from": "python"}}
    _, v = api(base, "send_to_group", {**hello, "groupName": GROUP, "msg": f"hello {GROUP}"}, token, SYSTEM)
    say(f"sent_to_group {GROUP} messageId={v['data']['messageId']}")
    _, v = api(base, "send_to_user", {**hello, "userId": USER, "msg": f"hello {USER}"}, token, SYSTEM)
    say(f"sent_to_user {USER} messageId={v['data']['messageId']} clients={v['data']['clients']}")
    _, v = api(base, "get_online_list", {"groupName": GROUP}, token, SYSTEM)
    say(f"online {GROUP} count={v['data']['count']} clients={','.join(v['data']['list'])}")

    print("serving webhooks until stdin closes", file=sys.stderr, flush=True)
    stdin_closed.wait()


def watch_stdin():
    """Closing stdin stops the example, at any time."""
    while sys.stdin.readline():
        pass
    stdin_closed.set()
    connected.put(None)


if __name__ == "__main__":
    main()
