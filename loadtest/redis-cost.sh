#!/usr/bin/env bash
# What one Redis costs as a cluster grows: for each node count in NODES_LIST, a fresh Redis and
# that many nodes, CLIENTS clients (round robin over the nodes) bound to 100 groups (so every
# group has members on every node), held idle for HOLD seconds, then a paced fanout of
# MESSAGES sends at RATE/s. Redis's CPU and commands/s are sampled (cluster-sample.sh) while
# idle (heartbeats, presence) and while sending (each send is one PUBLISH that Redis copies to
# every node's subscription). Prints one table; per point, the JSON, samples and logs are in
# $OUT/N-nodes/.
# Usage: loadtest/redis-cost.sh          (env: NODES_LIST="6 12 24 51" CLIENTS=60000 RATE=200
#                                          MESSAGES=3000 HOLD=15)
# Needs redis-server and redis-cli (Debian package redis-server).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
NODES_LIST=${NODES_LIST:-6 12 24 51}
CLIENTS=${CLIENTS:-60000}
RATE=${RATE:-200}
MESSAGES=${MESSAGES:-3000}
HOLD=${HOLD:-15}
BASE=${OUT:-$root/target/redis-cost}
rm -rf "$BASE"; mkdir -p "$BASE"
cd "$root"
cargo build --release -q -p roomcast -p roomcast-loadtest --bin roomcast --bin roomcast-loadtest
LT=$root/target/release/roomcast-loadtest
# shellcheck source=cluster-lib.sh
. "$root/loadtest/cluster-lib.sh"
# shellcheck source=cluster-sample.sh
. "$root/loadtest/cluster-sample.sh"
for n in $NODES_LIST; do
  OUT=$BASE/$n-nodes; mkdir -p "$OUT"
  start_cluster "$n"
  start_sampler "$OUT/samples.txt"
  sleep 3
  "$LT" fanout --clients "$CLIENTS" --groups 100 --messages "$MESSAGES" --send-rate "$RATE" --concurrency 16 \
    --port "$PORTS" --pid "$PIDS" --procs "$n" --label "cluster-$n" --time-limit 600 --hold-secs "$HOLD" \
    --json "$OUT/paced.json" 2>"$OUT/paced.log" | sed "s/^/[$n nodes] /" || echo "[$n nodes] loadtest exit $?"
  stop_cluster
  python3 "$root/loadtest/cluster_stats.py" "$OUT" "$n" "$CLIENTS" paced >/dev/null
  sleep 5
done
python3 - "$BASE" "$CLIENTS" "$RATE" $NODES_LIST <<'PY'
import json, sys
base, clients, rate, ns = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
rows = [f"# One Redis under N nodes: {clients:,} clients in 100 groups spanning every node, sends at {rate}/s", "",
        "| nodes | Redis idle: % of a core | idle commands/s | while sending: % of a core | Redis CPU per send (µs) | commands/s | delivered msg/s | lost |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |"]
for n in ns:
    try:
        f = json.load(open(f"{base}/{n}-nodes/stats.json"))["paced"]
        rows.append(f"| {n} | {f['redis_idle_cpu_pct']:.1f} | {f['redis_idle_cmds_per_s']:,.0f} | {f.get('redis_send_cpu_pct', 0):.1f} | "
                    f"{f.get('redis_us_per_send', 0):,.1f} | {f.get('redis_send_cmds_per_s', 0):,.0f} | {f.get('delivered_per_s') or 0:,.0f} | {f.get('lost')} |")
    except (OSError, KeyError, ValueError) as e:
        rows.append(f"| {n} | (no result: {e}) | | | | | | |")
open(f"{base}/summary.md", "w").write("\n".join(rows) + "\n")
print("\n".join(rows))
PY
