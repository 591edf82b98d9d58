# Sourced by the load-test scripts: starting a server on port 0 and learning its port.
# (The caller sets `root` and, for `serve`, `OUT`.)

# listen_port LOG NAME: waits up to 10 s for the "listening on" line in LOG and prints the
# port; fails, showing LOG, if there is none. Use as `port=$(listen_port …) || exit 1`.
listen_port() {
  local port
  for _ in $(seq 100); do grep -q "listening on" "$1" && break; sleep 0.1; done
  port=$(sed -n 's/.*listening on [0-9.]*:\([0-9]*\).*/\1/p' "$1" | head -1)
  [ -n "$port" ] || { echo "$2 did not start" >&2; cat "$1" >&2; return 1; }
  echo "$port"
}

# serve CMD...: starts CMD in the background (output in $OUT/server.log); sets PID and PORT.
serve() {
  "$@" >"$OUT/server.log" 2>&1 &
  PID=$!
  PORT=$(listen_port "$OUT/server.log" "server $1") || exit 1
}

# stop: ends the server `serve` started.
stop() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; sleep 0.5; }

# The Bun reference server (loadtest/peers/bun-server.js) on port 0, for `serve`.
bun_peer() { cd "$root/loadtest/peers" && exec node_modules/.bin/bun bun-server.js 0; }

# in_order ROUND: "bun roomcast" in odd rounds, "roomcast bun" in even ones. A run leaves
# TIME_WAIT sockets and warm caches to the next, so a fixed order would favour one side.
in_order() { if [ $(($1 % 2)) = 1 ]; then echo "bun roomcast"; else echo "roomcast bun"; fi; }

# A free port for a Redis Cluster server: at most 55535, with the one 10000 above it (its
# cluster bus) free too (Redis refuses higher ones).
cluster_port() { python3 -c 'import random, socket
while True:
    p = random.randint(20000, 55535)
    try:
        for q in (p, p + 10000):
            s = socket.socket(); s.bind(("127.0.0.1", q)); s.close()
        print(p); break
    except OSError: pass'; }
