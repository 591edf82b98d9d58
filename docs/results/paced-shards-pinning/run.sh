#!/usr/bin/env bash
# Paced fanout p99: --shards 2 vs 1, load generator and server free or pinned (taskset), alternating.
# docs/PERFORMANCE.md "Paced fanout p99: shards and pinning". Needs target/release/roomcast and
# roomcast-loadtest (cargo build --release --workspace). Usage: docs/results/paced-shards-pinning/run.sh
set -u
cd "$(dirname "$0")/../../.."
export OUT=${OUT:-/tmp/paced}; rm -rf "$OUT"; mkdir -p "$OUT"
LT=target/release/roomcast-loadtest
for r in 1 2 3; do
  for cfg in s2 s1 s2pin s1pin; do
    shards=${cfg:1:1}
    spin=""; lpin=""
    case $cfg in *pin) spin="taskset -c 0"; lpin="taskset -c 1";; esac
    $spin target/release/roomcast --listen 127.0.0.1:0 --shards $shards > $OUT/server.log 2>&1 &
    PID=$!
    for _ in $(seq 50); do PORT=$(grep -o "127.0.0.1:[0-9]*" $OUT/server.log | head -1 | cut -d: -f2); [ -n "$PORT" ] && break; sleep 0.1; done
    $lpin $LT fanout --clients 2000 --groups 20 --messages 1000 --send-rate 100 --port $PORT --pid $PID --json $OUT/$cfg-$r.json > /dev/null 2>$OUT/$cfg-$r.log
    kill $PID; wait $PID 2>/dev/null; sleep 0.5
  done
done
python3 - <<'PY'
import json,os,statistics
out=os.environ["OUT"]
for cfg in ("s2","s1","s2pin","s1pin"):
    v=[json.load(open(f"{out}/{cfg}-{r}.json")) for r in (1,2,3)]
    v=[x.get("result",x) for x in v]
    p99=[x["latency_p99_ms"] for x in v]; p50=[x["latency_p50_ms"] for x in v]; lost=[x["lost"] for x in v]
    print(cfg, "p99", p99, "median", statistics.median(p99), "p50 median", statistics.median(p50), "lost", lost)
PY
