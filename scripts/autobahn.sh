#!/usr/bin/env bash
# Runs the Autobahn WebSocket conformance suite (../shared/conformance/autobahn.sh, default
# case set: everything but the compression cases 12.*/13.*) against roomcast's echo path.
# Usage: scripts/autobahn.sh [CASES]   (needs target/release/roomcast: cargo build --release)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
suite=${AUTOBAHN_SCRIPT:-$root/../shared/conformance/autobahn.sh}
bin=$root/target/release/roomcast
[ -x "$bin" ] || { echo "autobahn: build first: cargo build --release" >&2; exit 2; }
out=$(mktemp)
"$bin" --listen 127.0.0.1:0 --shards 2 --echo-path /echo >"$out" 2>/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q "listening on" "$out" && break; sleep 0.1; done
addr=$(sed -n 's/^roomcast listening on //p' "$out")
[ -n "$addr" ] || { echo "autobahn: server did not start" >&2; exit 1; }
bash "$suite" "ws://$addr/echo" "${1:-*}"
