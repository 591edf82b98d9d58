#!/usr/bin/env bash
# Paced fanout p99, roomcast against Bun, each free or pinned apart (server on core 0, load
# generator on core 1), the four alternating in every round, a fresh warmed-up server per run
# (compare.sh's warm-up and its "paced" scenario). docs/PERFORMANCE.md "Paced fanout p99".
# Usage: docs/results/paced-bun-pinning/run.sh [ROUNDS]    (results in $OUT, default /tmp/paced-bun)
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
rounds=${1:-5}
export OUT=${OUT:-/tmp/paced-bun}; rm -rf "$OUT"; mkdir -p "$OUT"
cd "$root"
cargo build --release -q -p roomcast -p roomcast-loadtest --bin roomcast --bin roomcast-loadtest
[ -x loadtest/peers/node_modules/.bin/bun ] || (cd loadtest/peers && npm install --no-audit --no-fund --silent)
LT=$root/target/release/roomcast-loadtest
# shellcheck source=../../../loadtest/scenarios.sh
. loadtest/scenarios.sh
# shellcheck source=../../../loadtest/server-lib.sh
. loadtest/server-lib.sh
warm() {
  "$LT" connect --clients 3000 --procs 2 --connect-rate 1000000 --connect-inflight 64 --port "$PORT" >/dev/null 2>&1 || true
  "$LT" fanout --clients 300 --groups 10 --messages 3000 --port "$PORT" >/dev/null 2>&1 || true
  sleep 1
}
for r in $(seq "$rounds"); do
  order="roomcast bun roomcastpin bunpin"; [ $((r % 2)) = 0 ] && order="bunpin roomcastpin bun roomcast"
  for cfg in $order; do
    spin=(); lpin=()
    case $cfg in *pin) spin=(taskset -c 0); lpin=(taskset -c 1) ;; esac
    case $cfg in
      roomcast*) serve "${spin[@]}" "$root/target/release/roomcast" --listen 127.0.0.1:0 ;;
      bun*) serve "${spin[@]}" bash -c "cd '$root/loadtest/peers' && exec node_modules/.bin/bun bun-server.js 0" ;;
    esac
    warm
    # shellcheck disable=SC2046
    "${lpin[@]}" "$LT" $(args_for paced) --port "$PORT" --pid "$PID" --label "$cfg" --json "$OUT/$cfg-$r.json" \
      >/dev/null 2>"$OUT/$cfg-$r.log" || echo "$cfg $r: loadtest exit $?"
    stop
  done
done
python3 - "$OUT" "$rounds" <<'PY'
import json, statistics as st, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def runs(cfg):
    return [json.load(open(f"{out}/{cfg}-{r}.json")) for r in range(1, rounds + 1)]
print("| arrangement | roomcast p99 (ms) | Bun p99 (ms) | roomcast / Bun (median of per-round ratios) | p50 roomcast / Bun | lost |")
print("| --- | --- | --- | --- | --- | --- |")
for name, rc, bun in (("free", "roomcast", "bun"), ("pinned apart", "roomcastpin", "bunpin")):
    a, b = runs(rc), runs(bun)
    ratio = [x["latency_p99_ms"] / y["latency_p99_ms"] for x, y in zip(a, b)]
    print(f"| {name} | {', '.join(str(x['latency_p99_ms']) for x in a)} | {', '.join(str(y['latency_p99_ms']) for y in b)} | "
          f"**{st.median(ratio):.2f}x** ({', '.join(f'{v:.2f}' for v in ratio)}) | "
          f"{st.median(x['latency_p50_ms'] for x in a):.2f} / {st.median(y['latency_p50_ms'] for y in b):.2f} | "
          f"{sum(x['lost'] for x in a)} / {sum(y['lost'] for y in b)} |")
PY
