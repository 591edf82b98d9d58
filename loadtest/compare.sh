#!/usr/bin/env bash
# Runs each scenario against roomcast and the Bun reference, alternating, ROUNDS times, each
# run on a freshly started server; prints the medians and ratios and writes every JSON result
# to $OUT. Usage: loadtest/compare.sh [ROUNDS] [SCENARIO...]
#   scenarios: connect massconnect fanout broadcast unicast joinstorm paced churn scale
#   (default: all but scale). Each measured run follows a warm-up on the same fresh server.
#   connect runs at least CONNECT_ROUNDS (default 21) rounds: a round takes seconds, and its
#   CPU per connection moves ±10% from run to run on a shared machine, so a ratio near a
#   target needs that many pairs (summarize.py prints their median and a 95% interval).
#   TLS=1: both servers terminate TLS (a self-signed certificate made for the run) and the
#   load tester speaks https/wss (not for churn).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-3}; shift || true
scenarios=${*:-connect massconnect fanout broadcast unicast joinstorm paced churn}
OUT=${OUT:-$root/target/compare}
mkdir -p "$OUT"
cd "$root"
cargo build --release -q -p roomcast -p roomcast-loadtest --bin roomcast --bin roomcast-loadtest
[ -x loadtest/peers/node_modules/.bin/bun ] || (cd loadtest/peers && npm install --no-audit --no-fund --silent)
LT=$root/target/release/roomcast-loadtest
tls_flags=() lt_tls=()
if [ "${TLS:-0}" = 1 ]; then
  cargo run --release -q --example selfsigned -- "$OUT/tls" >/dev/null
  tls_flags=(--tls-cert "$OUT/tls/cert.pem" --tls-key "$OUT/tls/key.pem")
  lt_tls=(--tls)
  export TLS_CERT=$OUT/tls/cert.pem TLS_KEY=$OUT/tls/key.pem   # read by bun-server.js
fi

# shellcheck source=loadtest/scenarios.sh
. "$root/loadtest/scenarios.sh"
# shellcheck source=loadtest/server-lib.sh
. "$root/loadtest/server-lib.sh"

start() { # $1: roomcast|bun|roomcast1 → sets PID, PORT
  case $1 in
    roomcast)  serve "$root/target/release/roomcast" --listen 127.0.0.1:0 "${tls_flags[@]}" ;;
    roomcast1) serve "$root/target/release/roomcast" --listen 127.0.0.1:0 --shards 1 "${tls_flags[@]}" ;;
    bun)       serve bun_peer ;;
  esac
}
# Before each measured run, on the fresh server: connects and sends not counted, so a JIT peer
# (Bun) runs compiled code when the measurement starts. roomcast gets the same.
warm() {
  "$LT" connect --clients 3000 --procs 2 --connect-rate 1000000 --connect-inflight 64 --port "$PORT" "${lt_tls[@]}" \
    --time-limit 60 >/dev/null 2>&1 || true
  "$LT" fanout --clients 300 --groups 10 --messages 3000 --port "$PORT" "${lt_tls[@]}" --time-limit 60 >/dev/null 2>&1 || true
  sleep 1
}

for sc in $scenarios; do
  [ "$sc" = scale ] && continue
  n=$rounds
  [ "$sc" = connect ] && [ "$n" -lt "${CONNECT_ROUNDS:-21}" ] && n=${CONNECT_ROUNDS:-21}
  for r in $(seq "$n"); do
    for s in $(in_order "$r"); do
      start "$s"
      warm
      # shellcheck disable=SC2046
      "$LT" $(args_for "$sc") "${lt_tls[@]}" --port "$PORT" --pid "$PID" --label "$s" --time-limit 300 \
        --json "$OUT/$sc-$s-$r.json" 2>"$OUT/$sc-$s-$r.log" | sed "s/^/[$sc $r] /" || echo "[$sc $r] $s: loadtest exit $?"
      stop
    done
  done
done
if [[ " $scenarios " == *" scale "* ]]; then
  for r in $(seq "$rounds"); do
    for s in roomcast1 roomcast; do
      start "$s"
      "$LT" $(args_for fanout) --port "$PORT" --pid "$PID" --label "$s" --time-limit 300 \
        --json "$OUT/scale-$s-$r.json" 2>"$OUT/scale-$s-$r.log" | sed "s/^/[scale $r] /" || true
      stop
    done
  done
fi
python3 "$root/loadtest/summarize.py" "$OUT"
