#!/usr/bin/env bash
# A million connections on this machine: Redis plus NODES roomcast nodes in cluster mode on
# loopback (a process holds at most ~19,900 sockets here: 51 nodes of 19,608) and
# roomcast-loadtest with one worker process per node. Each run connects CLIENTS fresh clients
# (round robin over the nodes), binds them, holds them idle for HOLD seconds (what connections
# cost at rest: memory per connection in the nodes and the kernel, Redis's heartbeat and
# presence load), then:
#   fanout: 100 groups of 10,000 spanning every node, FANOUT_MESSAGES sends as fast as
#           answered (600,000 frames by default: a burst the kernel can buffer; 300 sends put
#           3,000,000 frames in flight, 3.2 GiB of TCP buffers, past tcp_mem, and the nodes'
#           Redis links and their clients' pongs then stalled behind them: docs/PERFORMANCE.md);
#   churn:  CHURN_GROUPS groups, CHURN_MESSAGES sends at CHURN_RATE/s while one churner per
#           worker keeps connecting, binding (notices on) and leaving: every 1001/1002 exactly
#           once, nothing lost for the stayers.
# Prints a table (cluster_stats.py) and writes it, the JSON results, samples and logs to $OUT.
# Usage: loadtest/cluster1m.sh [CLIENTS] [NODES]        (defaults: 1000000 51; RUNS="fanout churn")
# Needs redis-server and redis-cli (Debian package redis-server); ~24 GiB of RAM is plenty.
#
# As root it runs in a network namespace of its own whose TCP hash table of established
# connections has EHASH (default 2097152) buckets (net.ipv4.tcp_child_ehash_entries, Linux
# 6.1+): the table the kernel sizes at boot (262,144 buckets on this machine) holds 2,000,000
# loopback sockets in chains of ~8, and the lookup of every segment's socket
# (__inet_lookup_established) then took 23 % of all CPU. EHASH=0: the machine's own table.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
EHASH=${EHASH:-2097152}
command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
  { echo "redis-server and redis-cli are needed (apt-get install redis-server)"; exit 1; }
if [ -z "${CLUSTER1M_NETNS:-}" ]; then
  # Built here, before moving into a namespace that has only loopback.
  (cd "$root" && cargo build --release -q -p roomcast -p roomcast-loadtest --bin roomcast --bin roomcast-loadtest)
  HOST_TCP_MEM=$(cat /proc/sys/net/ipv4/tcp_mem 2>/dev/null || echo '?'); export HOST_TCP_MEM
fi
if [ "$EHASH" != 0 ] && [ -z "${CLUSTER1M_NETNS:-}" ] && [ "$(id -u)" = 0 ] &&
   [ -e /proc/sys/net/ipv4/tcp_child_ehash_entries ] && command -v ip >/dev/null; then
  ns=rc1m-$$
  old=$(cat /proc/sys/net/ipv4/tcp_child_ehash_entries)
  # The setting is the host's: put it back whatever happens (it only sizes namespaces made
  # while it is set).
  trap 'echo "$old" >/proc/sys/net/ipv4/tcp_child_ehash_entries; ip netns del "$ns" 2>/dev/null || true' EXIT
  echo "$EHASH" >/proc/sys/net/ipv4/tcp_child_ehash_entries
  ip netns add "$ns"
  echo "$old" >/proc/sys/net/ipv4/tcp_child_ehash_entries
  ip netns exec "$ns" ip link set lo up
  CLUSTER1M_NETNS=$ns ip netns exec "$ns" "$0" "$@"
  exit $?
fi
clients=${1:-1000000}
nodes=${2:-51}
OUT=${OUT:-$root/target/cluster1m}
HOLD=${HOLD:-20}
FANOUT_MESSAGES=${FANOUT_MESSAGES:-60}
CHURN_GROUPS=${CHURN_GROUPS:-10000}
CHURN_MESSAGES=${CHURN_MESSAGES:-3000}
CHURN_RATE=${CHURN_RATE:-100}
RUNS=${RUNS:-fanout churn}
rm -rf "$OUT"; mkdir -p "$OUT"
cd "$root"
LT=$root/target/release/roomcast-loadtest
# shellcheck source=cluster-lib.sh
. "$root/loadtest/cluster-lib.sh"
# shellcheck source=cluster-sample.sh
. "$root/loadtest/cluster-sample.sh"
per_node=$(( (clients + nodes - 1) / nodes ))
limit=$(ulimit -n)
[ "$per_node" -lt $((limit - 100)) ] || { echo "$per_node clients per node do not fit $limit open files: more NODES"; exit 1; }
{ echo "network namespace: ${CLUSTER1M_NETNS:-none (the host namespace)}"
  echo "established-connection hash buckets: $(cat /proc/sys/net/ipv4/tcp_ehash_entries 2>/dev/null || echo '?')"
  echo "tcp_mem (pages, the host's): ${HOST_TCP_MEM:-?}"; } | tee "$OUT/kernel.txt"
started=$(date +%s)
start_cluster "$nodes"
echo "cluster of $nodes nodes up in $(( $(date +%s) - started )) s" >&2
start_sampler "$OUT/samples.txt"
sleep 3   # the idle baseline: first samples before any client

run() { # name, loadtest args...
  local name=$1; shift
  "$LT" "$@" --port "$PORTS" --pid "$PIDS" --procs "$nodes" --label "cluster-$nodes" --time-limit 1500 \
    --hold-secs "$HOLD" --json "$OUT/$name.json" 2>"$OUT/$name.log" | sed "s/^/[$name] /" || echo "[$name] loadtest exit $?"
  quiet
}
# Until Redis is back to its idle load (the nodes remove a million clients' presence after a run,
# a LEAVE step each: a run started 5 s after the previous one connected at half the rate).
commands() { redis-cli -p "$REDIS_PORT" info stats 2>/dev/null | awk -F: '/^total_commands_processed/ {printf "%d", $2}' || true; }
quiet() {
  local a b
  for _ in $(seq 300); do
    a=$(commands)
    sleep 2
    b=$(commands)
    [ -n "$a" ] && [ -n "$b" ] && [ $((b - a)) -lt $((nodes * 40)) ] && return 0
  done
  echo "Redis still busy after 10 minutes; going on" >&2
}
for r in $RUNS; do
  case $r in
    fanout) run fanout fanout --clients "$clients" --groups 100 --messages "$FANOUT_MESSAGES" --concurrency 16 ;;
    churn) run churn churn --clients "$clients" --groups "$CHURN_GROUPS" --messages "$CHURN_MESSAGES" \
      --send-rate "$CHURN_RATE" --churners 1 --concurrency 16 ;;
    *) echo "unknown run '$r' (RUNS: fanout churn)"; exit 2 ;;
  esac
done
kill "$SAMPLER" 2>/dev/null || true; SAMPLER=""
# shellcheck disable=SC2086
python3 "$root/loadtest/cluster_stats.py" "$OUT" "$nodes" "$clients" $RUNS
