#!/usr/bin/env bash
# The connect and joinstorm comparisons again, measured by a second, independent client
# (loadtest/peers/xcheck.js: Node.js and the `ws` package) instead of roomcast-loadtest, so
# docs/PERFORMANCE.md's ratios can be checked with another client. Same protocol as compare.sh: Bun and
# roomcast alternating, ROUNDS times, each on a freshly started server warmed up first (by
# this client: 3,000 connects); medians.  Usage: loadtest/xcheck.sh [ROUNDS] [connect|joinstorm...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-3}; shift || true
scenarios=${*:-connect joinstorm}
OUT=${OUT:-$root/target/xcheck}
rm -rf "$OUT"; mkdir -p "$OUT"
cd "$root"
cargo build --release -q -p roomcast --bin roomcast
(cd loadtest/peers && { [ -x node_modules/.bin/bun ] && [ -d node_modules/ws ]; } || npm install --no-audit --no-fund --silent)
X=(node "$root/loadtest/peers/xcheck.js")
# shellcheck source=loadtest/server-lib.sh
. "$root/loadtest/server-lib.sh"

start() { # $1: roomcast|bun → sets PID, PORT
  case $1 in
    roomcast) serve "$root/target/release/roomcast" --listen 127.0.0.1:0 ;;
    bun) serve bun_peer ;;
  esac
}

for sc in $scenarios; do
  for r in $(seq "$rounds"); do
    for s in $(in_order "$r"); do
      start "$s"
      timeout 120 "${X[@]}" connect "$PORT" "$PID" 3000 >/dev/null || true # warm-up, not counted
      sleep 1
      timeout 180 "${X[@]}" "$sc" "$PORT" "$PID" | tee "$OUT/$sc-$s-$r.json" | sed "s/^/[$sc $r $s] /" ||
        echo "[$sc $r] $s: xcheck exit $?"
      stop
    done
  done
done
python3 "$root/loadtest/summarize.py" "$OUT"
