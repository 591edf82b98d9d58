#!/usr/bin/env bash
# Runs one load-test scenario against a fresh cluster: its own redis-server and NODES
# roomcast nodes (--shards 1 each) on loopback; the load tester gets every node's port and
# pid. Example (churn across 3 nodes: nothing lost, every notice exactly once):
#   loadtest/cluster.sh 3 churn --clients 2000 --groups 20 --messages 4000 --send-rate 400 --churners 4 --procs 3
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
nodes=${1:?usage: loadtest/cluster.sh NODES SCENARIO [loadtest options]}; shift
OUT=${OUT:-$root/target/cluster}
mkdir -p "$OUT"
command -v redis-server >/dev/null || { echo "redis-server is needed (apt-get install redis-server)"; exit 1; }
cargo build --release -q --manifest-path "$root/Cargo.toml" --bin roomcast -p roomcast -p roomcast-loadtest
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${REDIS:-}" ] && kill "$REDIS" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
RPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/redis.log" 2>&1 &
REDIS=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$RPORT") 2>/dev/null && break; sleep 0.1; done
ports=()
for i in $(seq "$nodes"); do
  log=$OUT/node$i.log
  "$root/target/release/roomcast" --listen 127.0.0.1:0 --shards 1 --redis "redis://127.0.0.1:$RPORT" >"$log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do grep -q "listening on" "$log" && break; sleep 0.1; done
  port=$(sed -n 's/.*listening on [0-9.]*:\([0-9]*\).*/\1/p' "$log" | head -1)
  [ -n "$port" ] || { echo "node $i did not start"; cat "$log"; exit 1; }
  ports+=("$port")
  for _ in $(seq 100); do curl -s "http://127.0.0.1:$port/health" | grep -q '"cluster":"up"' && break; sleep 0.1; done
done
"$root/target/release/roomcast-loadtest" "$@" --port "$(IFS=,; echo "${ports[*]}")" \
  --pid "$(IFS=,; echo "${pids[*]}")" --label "cluster-$nodes"
