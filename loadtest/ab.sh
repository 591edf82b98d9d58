#!/usr/bin/env bash
# A/B of two roomcast builds: each scenario ROUNDS times, the two binaries alternating, each run
# on a freshly started server, the same load tester; prints the medians side by side.
# Usage: loadtest/ab.sh OLD_BINARY NEW_BINARY [ROUNDS] [SCENARIO...]
#   scenarios: connect fanout broadcast unicast joinstorm paced churn (default: fanout broadcast
#   unicast joinstorm). Extra server flags for both: AB_FLAGS="--shards 2". Start it from the
#   same session as everything else (no setsid: see docs/PERFORMANCE.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
old=$(realpath "$1"); new=$(realpath "$2"); shift 2
rounds=${1:-5}; shift || true
scenarios=${*:-fanout broadcast unicast joinstorm}
OUT=${OUT:-$root/target/ab}
rm -rf "$OUT"; mkdir -p "$OUT"
cd "$root"
cargo build --release -q -p roomcast-loadtest
LT=$root/target/release/roomcast-loadtest
# shellcheck source=loadtest/scenarios.sh
. "$root/loadtest/scenarios.sh"
# shellcheck source=loadtest/server-lib.sh
. "$root/loadtest/server-lib.sh"

# shellcheck disable=SC2086
start() { serve "$1" --listen 127.0.0.1:0 ${AB_FLAGS:-}; } # $1: binary → sets PID, PORT

for sc in $scenarios; do
  for r in $(seq "$rounds"); do
    for label in old new; do
      bin=$old; [ $label = new ] && bin=$new
      start "$bin"
      # shellcheck disable=SC2046
      "$LT" $(args_for "$sc") --port "$PORT" --pid "$PID" --label "$label" --time-limit 300 \
        --json "$OUT/$sc-$label-$r.json" 2>"$OUT/$sc-$label-$r.log" >/dev/null || echo "[$sc $r] $label: loadtest exit $?"
      stop
    done
  done
done
python3 "$root/loadtest/summarize.py" "$OUT" old new
