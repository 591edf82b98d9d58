#!/usr/bin/env bash
# One roomcast build, two ways of making the same deliveries: scenario A and scenario B (from
# loadtest/scenarios.sh) alternating ROUNDS times, each on a freshly started server; prints the
# medians side by side (B / A). Written for send_to_user against send_to_clients to the same
# clientIds: loadtest/ab-calls.sh target/release/roomcast usersbyids users 5
# Usage: loadtest/ab-calls.sh BINARY SCENARIO_A SCENARIO_B [ROUNDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$(realpath "$1"); a=$2; b=$3; rounds=${4:-5}
OUT=${OUT:-$root/target/ab-calls}
rm -rf "$OUT"; mkdir -p "$OUT"
cd "$root"
cargo build --release -q -p roomcast-loadtest
LT=$root/target/release/roomcast-loadtest
# shellcheck source=loadtest/scenarios.sh
. "$root/loadtest/scenarios.sh"
# shellcheck source=loadtest/server-lib.sh
. "$root/loadtest/server-lib.sh"
# Both results go under scenario A's first word (its kind: the metrics summarize.py reads).
kind=$(args_for "$a" | cut -d' ' -f1)
for r in $(seq "$rounds"); do
  # Alternating which goes first: a run leaves TIME_WAIT sockets and warm caches to the next.
  order="$a $b"; [ $((r % 2)) = 0 ] && order="$b $a"
  for sc in $order; do
    serve "$bin" --listen 127.0.0.1:0
    # shellcheck disable=SC2046
    "$LT" $(args_for "$sc") --port "$PORT" --pid "$PID" --label "$sc" --time-limit 300 \
      --json "$OUT/$kind-$sc-$r.json" 2>"$OUT/$kind-$sc-$r.log" >/dev/null || echo "[$sc $r]: loadtest exit $?"
    stop
  done
done
python3 "$root/loadtest/summarize.py" "$OUT" "$a" "$b"
