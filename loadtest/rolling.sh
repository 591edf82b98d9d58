#!/usr/bin/env bash
# Rolling restart under load (issue 26): 3 roomcast nodes on one Redis (all on loopback, all
# started here), recovering clients spread over them, a paced fanout through them, and each
# node in turn SIGTERMed and started again on its port while its clients resume through the
# others (the `rolling` scenario of the load tester), while churning clients come and go. A step prints "killed" at the SIGTERM
# and "healthy" once the new process is up. The load tester judges every message answered
# 200: once and in order at every member of its group (lost, sequence gaps, duplicates), every
# resume recovered, and no 1001/1002 (presence flaps; the clients are bound without notices).
# Exit status non-zero on any of them.
#   loadtest/rolling.sh                                  # 3 x 1000 clients, about 45 s
#   CLIENTS=15000 PROCS=3 loadtest/rolling.sh            # 3 x 5000 (the README's figure)
# (CLIENTS, NGROUPS, MESSAGES, RATE, PROCS, CHURNERS, AT set the load; other load-tester options
# follow.) CHURNERS threads per worker keep connecting, binding with notices and leaving:
# every churn session that completes is told exactly once (1001 and 1002) to each member.
# Results: target/rolling/rolling.json; node logs beside it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=loadtest/server-lib.sh
. "$root/loadtest/server-lib.sh"
OUT=${OUT:-$root/target/rolling}
ulimit -n 20000 2>/dev/null || true
node_up() {
  local r
  r=$( { exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET /health HTTP/1.0\r\n\r\n' >&3 && timeout 2 cat <&3; } 2>/dev/null) || return 1
  [[ $r == *'"cluster":"up"'* ]]
}
# start_node I: node I (1-based) on its port, in the background; its pid in $OUT/node-I.pid.
start_node() {
  # shellcheck source=/dev/null
  . "$OUT/state"
  local i=$1 port=${nports[$(($1 - 1))]}
  "$root/target/release/roomcast" --listen "127.0.0.1:$port" --shards 1 --redis "redis://127.0.0.1:$rport" \
    --presence-ttl 3s --max-connections 20000 >>"$OUT/node$i.log" 2>&1 &
  echo $! >"$OUT/node-$i.pid"
  for _ in $(seq 150); do node_up "$port" && return 0; sleep 0.1; done
  echo "rolling: node $i did not come up" >&2
  return 1
}

if [ "${1:-}" = step ]; then
  # One step of the roll: node $2 SIGTERMed, waited for, started again on its port.
  i=$2
  pid=$(cat "$OUT/node-$i.pid")
  kill -TERM "$pid"
  echo killed
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$pid" 2>/dev/null; then echo "rolling: node $i did not exit in 15 s" >&2; exit 1; fi
  echo "rolling: node $i stopped: $(grep -c 'handed to a live node' "$OUT/node$i.log") hand-off line(s)" >&2
  start_node "$i"
  echo healthy
  exit 0
fi

command -v redis-server >/dev/null || { echo "redis-server is needed (apt-get install redis-server)"; exit 1; }
rm -rf "$OUT"; mkdir -p "$OUT"
cargo build --release -q --manifest-path "$root/Cargo.toml" -p roomcast -p roomcast-loadtest --bin roomcast --bin roomcast-loadtest
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/redis.log" 2>&1 &
echo $! >"$OUT/redis.pid"
cleanup() {
  for f in "$OUT"/node-*.pid "$OUT/redis.pid"; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do redis-cli -p "$rport" PING >/dev/null 2>&1 && break; sleep 0.1; done
ports=("$(free_port)" "$(free_port)" "$(free_port)")
{
  echo "rport=$rport"
  echo "nports=(${ports[*]})"
} >"$OUT/state"
for i in 1 2 3; do start_node "$i"; done
echo "redis :$rport, nodes ${ports[*]}" >&2
P=$(IFS=,; echo "${ports[*]}")
"$root/target/release/roomcast-loadtest" rolling --port "$P" \
  --clients "${CLIENTS:-3000}" --groups "${NGROUPS:-30}" --messages "${MESSAGES:-6000}" \
  --send-rate "${RATE:-150}" --procs "${PROCS:-2}" --churners "${CHURNERS:-2}" \
  --chaos-cmd "OUT=$OUT $root/loadtest/rolling.sh step" --chaos-at "${AT:-8,18,28}" \
  --time-limit 300 --drain-secs 15 --label rolling --json "$OUT/rolling.json" "$@"
