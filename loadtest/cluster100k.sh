#!/usr/bin/env bash
# 100,000 connections on this machine: Redis plus NODES roomcast nodes in cluster mode on
# loopback (one process holds at most ~19,900 sockets here), and roomcast-loadtest with one
# worker process per node. Runs a fanout (groups spanning every node, binds and sends round
# robin over the nodes) and a broadcast to one group holding every client (bound with
# "notify": false), each on freshly connected clients; prints a table and writes the JSON
# results, per-node RSS and logs to $OUT.
# Usage: loadtest/cluster100k.sh [CLIENTS] [NODES]        (defaults: 100000 6)
# Needs redis-server (Debian package redis-server).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
clients=${1:-100000}
nodes=${2:-6}
OUT=${OUT:-$root/target/cluster100k}
FANOUT_MESSAGES=${FANOUT_MESSAGES:-2000}
BROADCAST_MESSAGES=${BROADCAST_MESSAGES:-20}
PACED_MESSAGES=${PACED_MESSAGES:-600}
PACED_RATE=${PACED_RATE:-100}
mkdir -p "$OUT"
cd "$root"
cargo build --release -q -p roomcast -p roomcast-loadtest --bin roomcast --bin roomcast-loadtest
LT=$root/target/release/roomcast-loadtest
# shellcheck source=cluster-lib.sh
. "$root/loadtest/cluster-lib.sh"
start_cluster "$nodes"

# Peak RSS of each node, sampled every 500 ms.
( while true; do
    line=""
    for p in "${pids[@]}" "$REDIS"; do line="$line $(awk '/VmRSS/ {print $2}' /proc/"$p"/status 2>/dev/null || echo 0)"; done
    echo "$line"
    sleep 0.5
  done ) >"$OUT/rss.txt" &
SAMPLER=$!

run() { # name, loadtest args...
  local name=$1; shift
  "$LT" "$@" --port "$PORTS" --pid "$PIDS" --procs "$nodes" --label "cluster-$nodes" --time-limit 900 \
    --json "$OUT/$name.json" --html "$OUT/$name.html" 2>"$OUT/$name.log" | sed "s/^/[$name] /"
}
run fanout fanout --clients "$clients" --groups 100 --messages "$FANOUT_MESSAGES" --concurrency 16
run paced fanout --clients "$clients" --groups 100 --messages "$PACED_MESSAGES" --send-rate "$PACED_RATE" --concurrency 16
run broadcast broadcast --clients "$clients" --messages "$BROADCAST_MESSAGES" --concurrency 6

kill "$SAMPLER"; SAMPLER=""
python3 - "$OUT" "$nodes" "$clients" <<'EOF'
import json, sys
out, nodes, clients = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = [list(map(int, l.split())) for l in open(f"{out}/rss.txt") if l.strip()]
peak = [max(r[i] for r in rows) for i in range(nodes + 1)] if rows else [0] * (nodes + 1)
redis_peak, peak, idle = peak[nodes], peak[:nodes], rows[0][:nodes]
lines = [f"# roomcast cluster: {nodes} nodes + Redis, {clients} clients", "",
         "| run | connected | delivered | lost | delivered msg/s | p50 ms | p99 ms | max ms |",
         "| --- | --- | --- | --- | --- | --- | --- | --- |"]
for name in ("fanout", "paced", "broadcast"):
    try:
        r = json.load(open(f"{out}/{name}.json"))
    except OSError:
        continue
    lines.append(f"| {name} | {r.get('connected')} | {r.get('delivered')} | {r.get('lost')} | "
                 f"{r.get('delivered_per_s', 0):,.0f} | {r.get('latency_p50_ms')} | {r.get('latency_p99_ms')} | "
                 f"{r.get('latency_max_ms')} |")
lines += ["", "peak RSS per node (MiB): " + ", ".join(f"{p/1024:.1f}" for p in peak),
          f"peak RSS, all nodes: {sum(peak)/1024:.1f} MiB; over the idle nodes' {sum(idle)/1024:.1f} MiB: "
          f"{(sum(peak)-sum(idle))*1024/clients:.0f} B per connection (Redis excluded)",
          f"Redis peak RSS: {redis_peak/1024:.1f} MiB"]
open(f"{out}/summary.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
