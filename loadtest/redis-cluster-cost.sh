#!/usr/bin/env bash
# One Redis against a 3-master Redis Cluster under the same load, side by side: ROUNDS rounds,
# each running both setups in turn (alternating which goes first), every time with a fresh
# Redis (or cluster, no replicas: the masters' CPU is the figure), NODES roomcast nodes, CLIENTS
# clients (round robin over the nodes) in NGROUPS groups, and a paced fanout of MESSAGES sends at
# RATE/s to random groups. Redis's CPU (every server's /proc/PID/stat, sampled twice a second) is
# taken over the send phase only (the load tester's `phase send` .. `phase sent`), and divided
# by the frames delivered: Redis CPU per delivered message, and how it spreads over the masters.
# Prints one table (medians over the rounds, and each round); raw files in $OUT.
# Usage: loadtest/redis-cluster-cost.sh   (env: ROUNDS=3 NODES=6 CLIENTS=12000 NGROUPS=1000
#                                           RATE=500 MESSAGES=10000)
# Needs redis-server and redis-cli (Debian package redis-server).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
NODES=${NODES:-6}
CLIENTS=${CLIENTS:-12000}
NGROUPS=${NGROUPS:-1000}
RATE=${RATE:-500}
MESSAGES=${MESSAGES:-10000}
BASE=${OUT:-$root/target/redis-cluster-cost}
rm -rf "$BASE"; mkdir -p "$BASE"
cd "$root"
cargo build --release -q -p roomcast -p roomcast-loadtest --bin roomcast --bin roomcast-loadtest
LT=$root/target/release/roomcast-loadtest
# shellcheck source=server-lib.sh
. "$root/loadtest/server-lib.sh"
rpids=(); npids=()
stop_all() {
  for p in "${npids[@]}" "${rpids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  npids=() rpids=()
}
trap stop_all EXIT
start_redis() { # mode dir: sets URL and rpids
  local mode=$1 dir=$2 p ports=()
  local n=1; [ "$mode" = cluster ] && n=3
  for _ in $(seq $n); do
    p=$(cluster_port); ports+=("$p"); mkdir -p "$dir/redis-$p"
    # shellcheck disable=SC2046
    redis-server --port "$p" --bind 127.0.0.1 --dir "$dir/redis-$p" --save "" --appendonly no \
      $([ "$mode" = cluster ] && echo --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000) \
      >"$dir/redis-$p.log" 2>&1 &
    rpids+=($!)
    for _ in $(seq 100); do redis-cli -p "$p" PING >/dev/null 2>&1 && break; sleep 0.1; done
  done
  if [ "$mode" = cluster ]; then
    redis-cli --cluster create $(printf '127.0.0.1:%s ' "${ports[@]}") --cluster-yes >"$dir/create.log"
    for _ in $(seq 300); do redis-cli -p "${ports[0]}" CLUSTER INFO | grep -q cluster_state:ok && break; sleep 0.1; done
    URL="redis+cluster://127.0.0.1:${ports[0]},127.0.0.1:${ports[1]}"
  else
    URL="redis://127.0.0.1:${ports[0]}"
  fi
}

run() { # mode round
  local mode=$1 dir=$BASE/$1-$2 i log p ports=()
  mkdir -p "$dir"
  start_redis "$mode" "$dir"
  for i in $(seq "$NODES"); do
    log=$dir/node$i.log
    "$root/target/release/roomcast" --listen 127.0.0.1:0 --shards 1 --redis "$URL" >"$log" 2>&1 &
    npids+=($!)
    p=$(listen_port "$log" "node $i") || exit 1
    ports+=("$p")
    for _ in $(seq 100); do curl -s "http://127.0.0.1:$p/health" | grep -q '"cluster":"up"' && break; sleep 0.1; done
  done
  python3 - "$dir/cpu.txt" "${rpids[@]}" <<'PY' &
import sys, time
out, pids = sys.argv[1], sys.argv[2:]
def ticks(p):
    try:
        f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])
    except (OSError, IndexError, ValueError):
        return -1
with open(out, "w", buffering=1) as f:
    while True:
        f.write(f"{time.time_ns()} " + " ".join(str(ticks(p)) for p in pids) + "\n")
        time.sleep(0.5)
PY
  local sampler=$!
  "$LT" fanout --clients "$CLIENTS" --groups "$NGROUPS" --messages "$MESSAGES" --send-rate "$RATE" --concurrency 16 \
    --port "$(IFS=,; echo "${ports[*]}")" --procs 2 --label "$mode" --time-limit 300 \
    --json "$dir/fanout.json" 2>"$dir/fanout.log" >/dev/null || echo "[$mode round $2] loadtest exit $?"
  kill "$sampler" 2>/dev/null || true
  stop_all
}

for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then order="single cluster"; else order="cluster single"; fi
  for mode in $order; do
    echo "round $r: $mode" >&2
    run "$mode" "$r"
    sleep 2
  done
done

python3 - "$BASE" "$ROUNDS" "$NODES" "$CLIENTS" "$NGROUPS" "$RATE" <<'PY'
import json, os, statistics, sys
base, rounds, nodes, clients, groups, rate = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
hz = os.sysconf("SC_CLK_TCK")

def result(mode, r):
    d = f"{base}/{mode}-{r}"
    j = json.load(open(f"{d}/fanout.json"))
    phase = {}
    for line in open(f"{d}/fanout.log"):
        w = line.split()
        if len(w) == 3 and w[0] == "phase":
            phase[w[1]] = int(w[2])
    rows = [list(map(int, l.split())) for l in open(f"{d}/cpu.txt") if l.strip()]
    inside = [x for x in rows if phase["send"] <= x[0] <= phase["sent"] and min(x[1:]) >= 0]
    first, last = inside[0], inside[-1]
    secs = (last[0] - first[0]) / 1e9
    per = [(b - a) / hz for a, b in zip(first[1:], last[1:])]
    delivered = j.get("delivered_per_s") or 0
    total = sum(per)
    return {
        "cpu_pct": 100 * total / secs,
        "us_per_msg": 1e6 * total / (delivered * secs) if delivered else float("nan"),
        "spread": [round(100 * p / total) if total else 0 for p in per],
        "delivered": delivered,
        "lost": j.get("lost"),
    }

res = {m: [result(m, r) for r in range(1, rounds + 1)] for m in ("single", "cluster")}
med = lambda m, k: statistics.median(x[k] for x in res[m])
out = [f"# One Redis vs a 3-master Redis Cluster: {nodes} nodes, {clients} clients in {groups} groups, sends at {rate}/s ({rounds} rounds, alternating)", "",
       "| Redis | Redis CPU, % of a core (all servers) | Redis CPU per delivered message (µs) | share of each master | delivered msg/s | lost |",
       "| --- | --- | --- | --- | --- | --- |"]
for m, name in (("single", "one Redis"), ("cluster", "Redis Cluster, 3 masters")):
    spread = " / ".join(f"{s}%" for s in res[m][len(res[m]) // 2]["spread"])
    out.append(f"| {name} | {med(m, 'cpu_pct'):.1f} | {med(m, 'us_per_msg'):.2f} | {spread} | {med(m, 'delivered'):,.0f} | {sum(x['lost'] or 0 for x in res[m])} |")
out += ["", "Per round (µs per delivered message): " + "; ".join(
    f"round {r + 1}: one {res['single'][r]['us_per_msg']:.2f}, cluster {res['cluster'][r]['us_per_msg']:.2f} ({res['cluster'][r]['spread']})" for r in range(rounds))]
ratio = statistics.median(res["cluster"][r]["us_per_msg"] / res["single"][r]["us_per_msg"] for r in range(rounds))
out.append(f"Median per-round ratio, cluster / one Redis, CPU per delivered message: {ratio:.2f}x")
open(f"{base}/summary.md", "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
